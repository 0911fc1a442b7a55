//! `cairn schedule`: the systemd timer, or the cron entry, that runs a job.
//!
//! systemd is preferred when it runs the machine (`/run/systemd/system`
//! exists): its timers catch up on runs missed while the machine was off
//! (`Persistent=true`), spread a fleet's start times (`RandomizedDelaySec`)
//! and apply the job's priority (`Nice`, `IOSchedulingClass`). Elsewhere an
//! `/etc/cron.d` entry runs `cairn run --random-delay`. Everything happens
//! under a root directory (`/` normally, a scratch directory in tests), and
//! installing twice writes nothing the second time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::config::Job;

/// Which scheduler runs the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduler {
    /// A systemd service and timer.
    Systemd,
    /// An /etc/cron.d entry.
    Cron,
}

impl Scheduler {
    /// systemd if it runs the system under `root`, else cron.
    pub fn detect(root: &Path) -> Scheduler {
        if root.join("run/systemd/system").is_dir() {
            Scheduler::Systemd
        } else {
            Scheduler::Cron
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Scheduler::Systemd => "systemd",
            Scheduler::Cron => "cron",
        }
    }
}

/// A file to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFile {
    /// Where, under the root.
    pub path: PathBuf,
    /// Its content.
    pub content: String,
}

/// Why a job cannot be scheduled.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The job has no `schedule`.
    #[error(
        "job {0:?} has no schedule: add e.g. schedule = \"daily\" or \"*-*-* 02:30\" to its table"
    )]
    NoSchedule(String),
    /// The schedule has no cron equivalent this translation knows.
    #[error(
        "job {job:?}: cannot turn schedule {schedule:?} into a cron entry (known: minutely, hourly, daily, weekly, monthly, yearly, HH:MM, *-*-* HH:MM); add cron = \"MIN HOUR DOM MON DOW\" to the job"
    )]
    NoCronEquivalent {
        /// The job.
        job: String,
        /// Its schedule.
        schedule: String,
    },
    /// A value would break the unit file it goes into.
    #[error(
        "job {job:?}: {what} holds a line break or '%'; it cannot go into a unit file or crontab"
    )]
    Unsafe {
        /// The job.
        job: String,
        /// Which value.
        what: &'static str,
    },
    /// A file could not be written or removed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// `write` or `remove`.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The path of a job's files under `root`.
pub fn unit_paths(root: &Path, scheduler: Scheduler, job: &str) -> Vec<PathBuf> {
    match scheduler {
        Scheduler::Systemd => {
            let dir = root.join("etc/systemd/system");
            vec![
                dir.join(format!("cairn-{job}.service")),
                dir.join(format!("cairn-{job}.timer")),
            ]
        }
        Scheduler::Cron => vec![root.join(format!("etc/cron.d/cairn-{job}"))],
    }
}

/// `path` as seen from inside `root` (the installed system's view).
pub fn inside(root: &Path, path: &Path) -> PathBuf {
    match path.strip_prefix(root) {
        Ok(rest) if root != Path::new("/") => Path::new("/").join(rest),
        _ => path.to_path_buf(),
    }
}

/// The cron time fields for an OnCalendar `schedule`, for the forms that
/// have one.
pub fn cron_fields(schedule: &str) -> Option<String> {
    let s = schedule.trim();
    let fixed = match s {
        "minutely" => Some("* * * * *"),
        "hourly" => Some("0 * * * *"),
        "daily" => Some("0 0 * * *"),
        "weekly" => Some("0 0 * * 1"),
        "monthly" => Some("0 0 1 * *"),
        "yearly" | "annually" => Some("0 0 1 1 *"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let time = s.strip_prefix("*-*-*").map_or(s, str::trim);
    let mut parts = time.split(':');
    let hour = parts.next()?;
    let minute = parts.next()?;
    if parts.next().is_some_and(|sec| sec.parse::<u8>() != Ok(0)) {
        return None;
    }
    let number = |t: &str, max: u8| t.parse::<u8>().ok().filter(|v| *v <= max);
    let minute = number(minute, 59)?;
    if hour == "*" {
        return Some(format!("{minute} * * * *"));
    }
    Some(format!("{minute} {} * * *", number(hour, 23)?))
}

/// How often a cron line's time fields fire, for the regular shapes
/// [`cron_fields`] writes (every minute, hour, day, week, month or year);
/// `None` for any other.
pub fn cron_period(fields: &str) -> Option<Duration> {
    const DAY: u64 = 86_400;
    let f: Vec<&str> = fields.split_whitespace().collect();
    let [minute, hour, dom, month, dow] = f.as_slice() else {
        return None;
    };
    let fixed = |t: &str| t.parse::<u32>().is_ok();
    let secs = match (*minute, *hour, *dom, *month, *dow) {
        ("*", "*", "*", "*", "*") => 60,
        (m, "*", "*", "*", "*") if fixed(m) => 3600,
        (m, h, "*", "*", "*") if fixed(m) && fixed(h) => DAY,
        (m, h, "*", "*", w) if fixed(m) && fixed(h) && fixed(w) => 7 * DAY,
        (m, h, d, "*", "*") if fixed(m) && fixed(h) && fixed(d) => 31 * DAY,
        (m, h, d, mo, "*") if fixed(m) && fixed(h) && fixed(d) && fixed(mo) => 366 * DAY,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// The longest gap between two runs of `job` by its schedule (its `cron`
/// line, else its `schedule`), when it has a regular one.
pub fn job_period(job: &Job) -> Option<Duration> {
    match (&job.cron, &job.schedule) {
        (Some(cron), _) => cron_period(cron),
        (None, Some(schedule)) => cron_fields(schedule).and_then(|f| cron_period(&f)),
        (None, None) => None,
    }
}

fn unsafe_text(job: &str, what: &'static str, text: &str) -> Result<(), ScheduleError> {
    if text.contains(['\n', '\r', '%']) {
        return Err(ScheduleError::Unsafe {
            job: job.to_string(),
            what,
        });
    }
    Ok(())
}

/// The files that schedule `job` with `scheduler`, running `exe` with the
/// configuration `config` (both as seen on the installed system).
pub fn unit_files(
    root: &Path,
    scheduler: Scheduler,
    name: &str,
    job: &Job,
    exe: &Path,
    config: &Path,
) -> Result<Vec<UnitFile>, ScheduleError> {
    let schedule = job
        .schedule
        .as_deref()
        .ok_or_else(|| ScheduleError::NoSchedule(name.to_string()))?;
    unsafe_text(name, "schedule", schedule)?;
    let (exe, config) = (exe.display().to_string(), config.display().to_string());
    unsafe_text(name, "the cairn path", &exe)?;
    unsafe_text(name, "the configuration path", &config)?;
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let paths = unit_paths(root, scheduler, name);
    let delay = job.randomized_delay.0.as_secs();
    let header = format!(
        "# cairn backup job {name}: written by `cairn schedule install {name}`;\n# remove with `cairn schedule remove {name}`. Edit the job in {config}, then install again.\n"
    );
    Ok(match scheduler {
        Scheduler::Systemd => {
            let mut priority = String::new();
            if let Some(nice) = job.nice {
                priority += &format!("Nice={}\n", nice.0);
            }
            if let Some(io) = job.ionice {
                priority += &format!("IOSchedulingClass={}\n", io.class_name());
                if let Some(level) = io.level() {
                    priority += &format!("IOSchedulingPriority={level}\n");
                }
            }
            let service = format!(
                "{header}[Unit]\nDescription=cairn backup job {name}\nWants=network-online.target\nAfter=network-online.target\n\n[Service]\nType=oneshot\nExecStart={} run --config {} {name}\n{priority}",
                quote(&exe),
                quote(&config)
            );
            let timer = format!(
                "{header}[Unit]\nDescription=Schedule of cairn backup job {name}\n\n[Timer]\nOnCalendar={schedule}\nRandomizedDelaySec={delay}\nPersistent=true\nUnit=cairn-{name}.service\n\n[Install]\nWantedBy=timers.target\n"
            );
            vec![
                UnitFile {
                    path: paths[0].clone(),
                    content: service,
                },
                UnitFile {
                    path: paths[1].clone(),
                    content: timer,
                },
            ]
        }
        Scheduler::Cron => {
            let fields = match &job.cron {
                Some(c) => {
                    unsafe_text(name, "cron", c)?;
                    c.trim().to_string()
                }
                None => cron_fields(schedule).ok_or_else(|| ScheduleError::NoCronEquivalent {
                    job: name.to_string(),
                    schedule: schedule.to_string(),
                })?,
            };
            let entry = format!(
                "{header}SHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n{fields} root {} run --config {} --random-delay {delay} {name}\n",
                quote(&exe),
                quote(&config)
            );
            vec![UnitFile {
                path: paths[0].clone(),
                content: entry,
            }]
        }
    })
}

/// What installing did to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Written (new or changed).
    Written(PathBuf),
    /// Already as wanted.
    Unchanged(PathBuf),
}

/// Writes `files` (0644), leaving those already right alone. Returns what
/// happened to each.
pub fn install(files: &[UnitFile]) -> Result<Vec<Change>, ScheduleError> {
    let mut out = Vec::new();
    for f in files {
        if std::fs::read_to_string(&f.path).is_ok_and(|c| c == f.content) {
            out.push(Change::Unchanged(f.path.clone()));
            continue;
        }
        let io = |source| ScheduleError::Io {
            op: "write",
            path: f.path.clone(),
            source,
        };
        if let Some(dir) = f.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        super::files::write_atomic(&f.path, f.content.as_bytes(), 0o644).map_err(io)?;
        out.push(Change::Written(f.path.clone()));
    }
    Ok(out)
}

/// Removes the job's files of both schedulers under `root`; returns those
/// that existed.
pub fn remove(root: &Path, job: &str) -> Result<Vec<PathBuf>, ScheduleError> {
    let mut removed = Vec::new();
    for scheduler in [Scheduler::Systemd, Scheduler::Cron] {
        for path in unit_paths(root, scheduler, job) {
            match std::fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(ScheduleError::Io {
                        op: "remove",
                        path,
                        source,
                    });
                }
            }
        }
    }
    Ok(removed)
}

/// The state of a job's schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Nothing installed.
    NotInstalled,
    /// Installed with this scheduler and up to date.
    Installed(Scheduler),
    /// Installed with this scheduler, but different from what the
    /// configuration gives now (or incomplete): install again.
    Outdated(Scheduler),
}

/// Compares what is installed under `root` with `wanted` (the files for
/// each scheduler; `None` when the job cannot be scheduled with it).
pub fn state(root: &Path, job: &str, wanted: &dyn Fn(Scheduler) -> Option<Vec<UnitFile>>) -> State {
    for scheduler in [Scheduler::Systemd, Scheduler::Cron] {
        let paths = unit_paths(root, scheduler, job);
        if !paths.iter().any(|p| p.exists()) {
            continue;
        }
        let current = wanted(scheduler).is_some_and(|files| {
            files
                .iter()
                .all(|f| std::fs::read_to_string(&f.path).is_ok_and(|c| c == f.content))
        });
        return if current {
            State::Installed(scheduler)
        } else {
            State::Outdated(scheduler)
        };
    }
    State::NotInstalled
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::job::config::Config;

    fn job(extra: &str) -> Job {
        let text = format!(
            "[jobs.web]\nrepository = \"/r\"\npassword_file = \"/p\"\npaths = [\"/srv\"]\nnice = 10\nionice = \"best-effort:7\"\n{extra}"
        );
        let c = Config::parse(&text, Path::new("c.toml")).unwrap();
        c.jobs["web"].clone()
    }

    #[test]
    fn periods_of_regular_schedules() {
        let p = |s: &str| {
            cron_fields(s)
                .and_then(|f| cron_period(&f))
                .map(|d| d.as_secs())
        };
        assert_eq!(p("minutely"), Some(60));
        assert_eq!(p("hourly"), Some(3600));
        assert_eq!(p("*-*-* 02:30"), Some(86_400));
        assert_eq!(p("daily"), Some(86_400));
        assert_eq!(p("weekly"), Some(7 * 86_400));
        assert_eq!(p("monthly"), Some(31 * 86_400));
        assert_eq!(p("yearly"), Some(366 * 86_400));
        assert_eq!(cron_period("*/5 * * * *"), None);
        assert_eq!(cron_period("0 2"), None);
    }

    #[test]
    fn cron_translation() {
        assert_eq!(cron_fields("daily").unwrap(), "0 0 * * *");
        assert_eq!(cron_fields("02:30").unwrap(), "30 2 * * *");
        assert_eq!(cron_fields("*-*-* 23:05:00").unwrap(), "5 23 * * *");
        assert_eq!(cron_fields("*:15").unwrap(), "15 * * * *");
        assert_eq!(cron_fields("Mon *-*-* 02:00"), None);
        assert_eq!(cron_fields("25:00"), None);
        assert_eq!(cron_fields("02:30:10"), None);
    }

    #[test]
    fn systemd_units_carry_the_schedule_and_priority() {
        let root = Path::new("/fake");
        let j = job("schedule = \"*-*-* 02:30\"\nrandomized_delay = \"1h\"");
        let files = unit_files(
            root,
            Scheduler::Systemd,
            "web",
            &j,
            Path::new("/usr/local/bin/cairn"),
            Path::new("/etc/cairn/cairn.toml"),
        )
        .unwrap();
        assert_eq!(
            files[0].path,
            Path::new("/fake/etc/systemd/system/cairn-web.service")
        );
        assert!(files[0].content.contains(
            "ExecStart='/usr/local/bin/cairn' run --config '/etc/cairn/cairn.toml' web\n"
        ));
        assert!(
            files[0]
                .content
                .contains("Nice=10\nIOSchedulingClass=best-effort\nIOSchedulingPriority=7\n")
        );
        for line in [
            "OnCalendar=*-*-* 02:30\n",
            "RandomizedDelaySec=3600\n",
            "Persistent=true\n",
            "WantedBy=timers.target\n",
        ] {
            assert!(files[1].content.contains(line), "{line}");
        }
    }

    #[test]
    fn cron_needs_a_translatable_schedule_or_an_explicit_one() {
        let exe = Path::new("/bin/cairn");
        let cfg = Path::new("/c.toml");
        let e = unit_files(
            Path::new("/"),
            Scheduler::Cron,
            "web",
            &job("schedule = \"Mon 02:00\""),
            exe,
            cfg,
        )
        .unwrap_err();
        assert!(e.to_string().contains("cron = "), "{e}");
        let f = unit_files(
            Path::new("/"),
            Scheduler::Cron,
            "web",
            &job("schedule = \"Mon 02:00\"\ncron = \"0 2 * * 1\""),
            exe,
            cfg,
        )
        .unwrap();
        assert!(f[0].content.contains(
            "\n0 2 * * 1 root '/bin/cairn' run --config '/c.toml' --random-delay 900 web\n"
        ));
        let e = unit_files(Path::new("/"), Scheduler::Cron, "web", &job(""), exe, cfg).unwrap_err();
        assert!(matches!(e, ScheduleError::NoSchedule(_)));
    }

    #[test]
    fn paths_inside_the_root() {
        assert_eq!(
            inside(Path::new("/tmp/r"), Path::new("/tmp/r/usr/bin/cairn")),
            Path::new("/usr/bin/cairn")
        );
        assert_eq!(
            inside(Path::new("/tmp/r"), Path::new("/opt/cairn")),
            Path::new("/opt/cairn")
        );
        assert_eq!(
            inside(Path::new("/"), Path::new("/usr/bin/cairn")),
            Path::new("/usr/bin/cairn")
        );
    }
}
