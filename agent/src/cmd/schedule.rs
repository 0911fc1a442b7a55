//! `cairn schedule install|remove|status JOB`: the systemd timer or cron
//! entry that runs a job (see `cairn::job::schedule`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use cairn::exit::Outcome;
use cairn::job::config::{Config, Job};
use cairn::job::schedule::{self, Change, Scheduler, State, UnitFile};

use super::common::{ConfigArgs, print};

/// Options of `cairn schedule`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

/// What to do.
#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Write the job's systemd service and timer (or cron entry) and
    /// enable it; doing it again changes nothing.
    Install(Target),
    /// Disable and remove the job's timer or cron entry.
    Remove(Target),
    /// Show whether the job is scheduled, and whether that matches the
    /// configuration.
    Status(Target),
}

/// The job and where to act.
#[derive(Debug, clap::Args)]
struct Target {
    #[command(flatten)]
    config: ConfigArgs,
    /// Act on this directory as the root of the system (for images and
    /// tests); systemctl is not run, only printed.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Use a cron entry even where systemd runs.
    #[arg(long, conflicts_with = "systemd")]
    cron: bool,
    /// Use systemd units even where it does not seem to run.
    #[arg(long)]
    systemd: bool,
    /// The job, as named in the configuration.
    #[arg(value_name = "JOB")]
    job: String,
}

impl Target {
    fn root(&self) -> &Path {
        self.root.as_deref().unwrap_or(Path::new("/"))
    }

    fn scheduler(&self) -> Scheduler {
        match (self.cron, self.systemd) {
            (true, _) => Scheduler::Cron,
            (_, true) => Scheduler::Systemd,
            _ => Scheduler::detect(self.root()),
        }
    }

    /// The files for `scheduler`, naming this cairn and configuration as
    /// the installed system sees them.
    fn files(&self, job: &Job, scheduler: Scheduler) -> anyhow::Result<Vec<UnitFile>> {
        let exe = std::env::current_exe().context("cannot find the path of cairn itself")?;
        let config = std::path::absolute(&self.config.config)
            .with_context(|| format!("cannot resolve {}", self.config.config.display()))?;
        let root = self.root();
        Ok(schedule::unit_files(
            root,
            scheduler,
            &self.job,
            job,
            &schedule::inside(root, &exe),
            &schedule::inside(root, &config),
        )?)
    }

    /// Runs `systemctl args`, or prints it with --root.
    fn systemctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let line = format!("systemctl {}", args.join(" "));
        if self.root.is_some() {
            print(&format!("would run: {line}\n"))?;
            return Ok(());
        }
        let status = Command::new("systemctl")
            .args(args)
            .status()
            .with_context(|| format!("cannot run {line}"))?;
        if !status.success() {
            anyhow::bail!("{line} failed ({status})");
        }
        Ok(())
    }
}

/// Runs `cairn schedule`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    match args.action {
        Action::Install(t) => install(&t),
        Action::Remove(t) => remove(&t),
        Action::Status(t) => status(&t),
    }
}

fn install(t: &Target) -> anyhow::Result<Outcome> {
    let (_, job): (Config, Job) = t.config.job(&t.job)?;
    let scheduler = t.scheduler();
    let files = t.files(&job, scheduler)?;
    // A job moved from one scheduler to the other must not run twice.
    let other = match scheduler {
        Scheduler::Systemd => Scheduler::Cron,
        Scheduler::Cron => Scheduler::Systemd,
    };
    for path in schedule::unit_paths(t.root(), other, &t.job) {
        if path.exists() {
            anyhow::bail!(
                "job {:?} is already scheduled with {} ({}); run `cairn schedule remove {}` first",
                t.job,
                other.name(),
                path.display(),
                t.job
            );
        }
    }
    let changes = schedule::install(&files)?;
    let mut out = String::new();
    let mut changed = false;
    for c in &changes {
        match c {
            Change::Written(p) => {
                changed = true;
                out += &format!("wrote {}\n", p.display());
            }
            Change::Unchanged(p) => out += &format!("unchanged {}\n", p.display()),
        }
    }
    print(&out)?;
    if scheduler == Scheduler::Systemd {
        if changed {
            t.systemctl(&["daemon-reload"])?;
        }
        t.systemctl(&["enable", "--now", &format!("cairn-{}.timer", t.job)])?;
    }
    print(&format!(
        "job {} is scheduled with {}{}\n",
        t.job,
        scheduler.name(),
        if changed { "" } else { " (already up to date)" }
    ))?;
    Ok(Outcome::Clean)
}

fn remove(t: &Target) -> anyhow::Result<Outcome> {
    let timer = schedule::unit_paths(t.root(), Scheduler::Systemd, &t.job);
    if timer.iter().any(|p| p.exists()) {
        t.systemctl(&["disable", "--now", &format!("cairn-{}.timer", t.job)])?;
    }
    let removed = schedule::remove(t.root(), &t.job)?;
    let mut out = String::new();
    for p in &removed {
        out += &format!("removed {}\n", p.display());
    }
    print(&out)?;
    if removed.iter().any(|p| timer.contains(p)) {
        t.systemctl(&["daemon-reload"])?;
    }
    print(&if removed.is_empty() {
        format!("job {} was not scheduled\n", t.job)
    } else {
        format!("job {} is no longer scheduled\n", t.job)
    })?;
    Ok(Outcome::Clean)
}

fn status(t: &Target) -> anyhow::Result<Outcome> {
    let (_, job): (Config, Job) = t.config.job(&t.job)?;
    let state = schedule::state(t.root(), &t.job, &|s| t.files(&job, s).ok());
    print(&match state {
        State::NotInstalled => format!("job {}: not scheduled\n", t.job),
        State::Installed(s) => format!("job {}: scheduled with {}, up to date\n", t.job, s.name()),
        State::Outdated(s) => format!(
            "job {}: scheduled with {}, but out of date with the configuration: run `cairn schedule install {}`\n",
            t.job,
            s.name(),
            t.job
        ),
    })?;
    Ok(Outcome::Clean)
}
