//! End-to-end tests of jobs: install into a fake root with
//! scripts/install.sh, then `cairn run` and `cairn schedule` through the
//! installed binary, against a local repository.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::{Env, fill};

/// A fake root with cairn installed, a repository and a job configuration.
struct Jobs {
    env: Env,
    root: PathBuf,
}

impl Jobs {
    fn new() -> Jobs {
        let env = Env::new();
        env.ok(&["init", "-q", "--kdf-memory", "1", "--kdf-iterations", "1"]);
        let root = env.path("root");
        let out = install(&root, &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let data = env.path("data");
        std::fs::create_dir_all(data.join("sub")).unwrap();
        std::fs::write(data.join("a.bin"), fill(1, 300_000)).unwrap();
        std::fs::write(data.join("sub/b.txt"), b"hello jobs\n").unwrap();
        Jobs { env, root }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.env.path(name)
    }

    fn cairn_path(&self) -> PathBuf {
        self.root.join("usr/local/bin/cairn")
    }

    fn config_path(&self) -> PathBuf {
        self.root.join("etc/cairn/cairn.toml")
    }

    /// Writes the configuration: job `web` backing up `data`, with `extra`
    /// lines in its table and `tables` after it.
    fn configure(&self, extra: &str, tables: &str) {
        let p = |n: &str| self.path(n).display().to_string();
        let config = format!(
            "state_dir = \"{}\"\nruntime_dir = \"{}\"\nmetrics_dir = \"{}\"\ncache_dir = \"{}\"\n\n[jobs.web]\nrepository = \"{}\"\npassword_file = \"{}\"\npaths = [\"{}\"]\ntags = [\"nightly\"]\nschedule = \"*-*-* 02:30\"\nnice = 5\nionice = \"idle\"\n{extra}\n{tables}",
            p("state"),
            p("run"),
            p("metrics"),
            p("cache"),
            p("repo"),
            p("pw"),
            p("data"),
        );
        std::fs::write(self.config_path(), config).unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.cairn_path());
        cmd.args(args)
            .env("CAIRN_CONFIG", self.config_path())
            .current_dir(self.path(""));
        // The job's settings come from the file alone.
        for var in [
            "CAIRN_REPO",
            "CAIRN_PASSWORD_FILE",
            "CAIRN_PASSWORD_COMMAND",
            "CAIRN_KEY_FILE",
            "CAIRN_CACHE_DIR",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn spawn_run(&self) -> Child {
        self.command(&["run", "web"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn status(&self) -> serde_json::Value {
        let data = std::fs::read(self.path("state/web.status.json")).unwrap();
        serde_json::from_slice(&data).unwrap()
    }

    fn history(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path("state/web.history.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn metrics(&self) -> String {
        std::fs::read_to_string(self.path("metrics/cairn_web.prom")).unwrap()
    }

    fn snapshots(&self) -> Vec<String> {
        let list = self.env.json(&["snapshots", "--json"]);
        list.as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn install(root: &Path, extra: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install.sh");
    Command::new("sh")
        .arg(script)
        .arg("--root")
        .arg(root)
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_cairn"))
        .args(extra)
        .output()
        .unwrap()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Waits until `path` exists (the test's side of a hook's handshake).
fn wait_for(path: &Path, child: &mut Child) {
    for _ in 0..6000 {
        if path.exists() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the run ended ({status}) before {} appeared",
                path.display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{} never appeared", path.display());
}

#[test]
fn install_run_twice_and_the_status_metrics_and_history_follow() {
    let jobs = Jobs::new();
    // The installed files.
    assert_eq!(mode(&jobs.cairn_path()), 0o755);
    assert_eq!(mode(&jobs.config_path()), 0o600);
    assert_eq!(mode(&jobs.root.join("var/lib/cairn")), 0o700);
    // The commented default parses: it declares no job.
    let out = jobs.run(&["schedule", "status", "web", "--root", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("jobs defined: none"),
        "{}",
        text(&out.stderr)
    );

    jobs.configure(
        "check = \"all\"",
        "[jobs.web.retention]\nkeep_last = 1\n\n[jobs.web.hooks]\npost = \"echo $CAIRN_RESULT $CAIRN_SNAPSHOT >> post.txt\"\n",
    );
    let out = jobs.run(&["run", "web"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let first = jobs.status();
    assert_eq!(first["job"], "web");
    assert_eq!(first["result"], "success");
    assert_eq!(first["exit_code"], 0);
    assert_eq!(first["bytes_read"], 300_000 + 11);
    assert_eq!(first["files"], 2);
    assert!(first["bytes_stored"].as_u64().unwrap() > 0);
    let snap1 = first["snapshot"].as_str().unwrap().to_string();
    assert_eq!(jobs.snapshots(), std::slice::from_ref(&snap1));
    assert_eq!(jobs.file("post.txt"), format!("success {snap1}\n"));
    assert_eq!(mode(&jobs.path("state")), 0o700);
    assert_eq!(mode(&jobs.path("state/web.status.json")), 0o600);
    assert_eq!(mode(&jobs.path("state/web.history.jsonl")), 0o600);

    // A change, a second run: a new snapshot; keep_last = 1 forgets the first.
    std::fs::write(jobs.path("data/sub/b.txt"), b"hello again\n").unwrap();
    let out = jobs.run(&["run", "web"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let second = jobs.status();
    let snap2 = second["snapshot"].as_str().unwrap().to_string();
    assert_ne!(snap1, snap2);
    assert_eq!(second["bytes_read"], 12, "only the changed file is read");
    assert_eq!(second["snapshots_forgotten"], 1);
    assert_eq!(jobs.snapshots(), std::slice::from_ref(&snap2));
    let history = jobs.history();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0], first);
    assert_eq!(history[1], second);
    let metrics = jobs.metrics();
    // The same instant as the status file's end (serde_json's float
    // parsing may differ from the written value in the last bit).
    let end = second["end"].as_f64().unwrap();
    let success: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cairn_last_success_timestamp_seconds{job=\"web\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no last-success metric in {metrics}"));
    assert!(
        (success - end).abs() < 1e-3,
        "{success} vs {end}\n{metrics}"
    );
    assert!(
        metrics.contains("cairn_last_run_bytes_read{job=\"web\"} 12\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cairn_last_exit_code{job=\"web\"} 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cairn_last_run_errors{job=\"web\"} 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE cairn_last_run_duration_seconds gauge\n"),
        "{metrics}"
    );

    // Uninstall keeps the configuration; --purge removes it.
    let out = install(&jobs.root, &["--uninstall"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!jobs.cairn_path().exists());
    assert!(jobs.config_path().exists());
    let out = install(&jobs.root, &["--uninstall", "--purge"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!jobs.config_path().exists());
    assert!(!jobs.root.join("var/lib/cairn").exists());
}

#[test]
fn reinstalling_keeps_the_configuration() {
    let jobs = Jobs::new();
    jobs.configure("", "");
    let before = std::fs::read(jobs.config_path()).unwrap();
    let out = install(&jobs.root, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("kept"), "{}", text(&out.stdout));
    assert_eq!(std::fs::read(jobs.config_path()).unwrap(), before);
}

#[test]
fn a_failing_pre_hook_aborts_the_backup_and_runs_the_failure_hook() {
    let jobs = Jobs::new();
    jobs.configure(
        "",
        "[jobs.web.hooks]\npre = \"echo preparing; echo cannot quiesce >&2; exit 7\"\npost = \"touch post-ran\"\non_failure = \"echo $CAIRN_RESULT $CAIRN_EXIT_CODE \\\"$CAIRN_ERROR\\\" > failed.txt\"\n",
    );
    let out = jobs.run(&["run", "web"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("hook pre: preparing"), "{stderr}");
    assert!(stderr.contains("hook pre: cannot quiesce"), "{stderr}");
    assert!(
        stderr.contains("the pre hook failed, so the backup did not run"),
        "{stderr}"
    );
    assert!(jobs.snapshots().is_empty(), "no snapshot");
    assert!(!jobs.path("post-ran").exists());
    let failed = jobs.file("failed.txt");
    assert!(
        failed.starts_with("failed 1 the pre hook failed"),
        "{failed}"
    );
    assert!(failed.contains("exit status: 7"), "{failed}");
    let status = jobs.status();
    assert_eq!(status["result"], "failed");
    assert_eq!(status["exit_code"], 1);
    assert_eq!(status["snapshot"], serde_json::Value::Null);
    assert!(
        status["errors"][0]
            .as_str()
            .unwrap()
            .contains("cannot quiesce"),
        "{status}"
    );
    assert!(status["last_success"].is_null());
    let metrics = jobs.metrics();
    assert!(
        !metrics.contains("cairn_last_success_timestamp_seconds"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cairn_last_exit_code{job=\"web\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cairn_last_run_errors{job=\"web\"} 1\n"),
        "{metrics}"
    );
}

#[test]
fn an_overlapping_run_is_refused_with_its_exit_code() {
    let jobs = Jobs::new();
    jobs.configure(
        "",
        "[jobs.web.hooks]\npre = \"touch started; while [ ! -e release ]; do sleep 0.01; done\"\n",
    );
    let mut first = jobs.spawn_run();
    wait_for(&jobs.path("started"), &mut first);
    let out = jobs.run(&["run", "web"]);
    assert_eq!(out.status.code(), Some(13), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("job \"web\" is already running"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("(process {})", first.id())),
        "{stderr}"
    );
    std::fs::write(jobs.path("release"), b"").unwrap();
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The refused run recorded nothing: one run in the history.
    assert_eq!(jobs.history().len(), 1);
    assert_eq!(jobs.status()["result"], "success");
    let help = text(&jobs.run(&["--help"]).stdout);
    assert!(help.contains("13  the job is already running"), "{help}");
}

fn freeze_config(jobs: &Jobs, extra: &str) {
    jobs.configure(
        &format!(
            "freeze = [\"{}\"]\nfreezer = \"command\"\nfreeze_command = \"echo freeze $CAIRN_FREEZE_PATH >> events\"\nthaw_command = \"echo thaw $CAIRN_FREEZE_PATH >> events\"\n{extra}",
            jobs.path("data").display()
        ),
        "[jobs.web.hooks]\non_failure = \"echo on_failure >> events\"\n",
    );
}

#[test]
fn the_freeze_is_always_thawed() {
    let jobs = Jobs::new();
    let data = jobs.path("data").display().to_string();
    let frozen_and_thawed = format!("freeze {data}\nthaw {data}\n");

    // Success: the freeze spans the backup.
    freeze_config(&jobs, "");
    let out = jobs.run(&["run", "web"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(jobs.file("events"), frozen_and_thawed);
    assert_eq!(jobs.snapshots().len(), 1);

    // The snapshot command fails while frozen: thawed, no backup.
    std::fs::remove_file(jobs.path("events")).unwrap();
    freeze_config(
        &jobs,
        &format!("snapshot_create = \"exit 3\"\nsnapshot_paths = [\"{data}\"]"),
    );
    let out = jobs.run(&["run", "web"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("snapshot_create failed"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        jobs.file("events"),
        format!("{frozen_and_thawed}on_failure\n")
    );
    assert_eq!(jobs.snapshots().len(), 1, "no new snapshot");

    // SIGTERM while frozen (the snapshot command hangs): thawed, the
    // interrupted run recorded, the exit code 128 + 15.
    std::fs::remove_file(jobs.path("events")).unwrap();
    freeze_config(
        &jobs,
        &format!(
            "snapshot_create = \"touch in-snapshot; while true; do sleep 0.01; done\"\nsnapshot_paths = [\"{data}\"]"
        ),
    );
    let mut child = jobs.spawn_run();
    wait_for(&jobs.path("in-snapshot"), &mut child);
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", text(&out.stderr));
    assert_eq!(jobs.file("events"), frozen_and_thawed);
    let status = jobs.status();
    assert_eq!(status["result"], "interrupted");
    assert_eq!(status["exit_code"], 143);
    assert_eq!(jobs.history().len(), 3);
    assert_eq!(jobs.snapshots().len(), 1);
}

#[test]
fn configuration_errors_name_the_file_line_and_key() {
    let jobs = Jobs::new();
    jobs.configure("keep_lats = 3", "");
    let out = jobs.run(&["run", "web"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let config = std::fs::read_to_string(jobs.config_path()).unwrap();
    let line = config
        .lines()
        .position(|l| l.starts_with("keep_lats"))
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!(
            "{}:{line}:1: key \"keep_lats\": unknown field",
            jobs.config_path().display()
        )),
        "{stderr}"
    );
    jobs.configure("", "");
    let out = jobs.run(&["run", "nosuch"]);
    assert!(
        text(&out.stderr).contains("no job \"nosuch\""),
        "{}",
        text(&out.stderr)
    );
}

fn schedule(jobs: &Jobs, args: &[&str]) -> String {
    let root = jobs.root.display().to_string();
    let mut all = vec!["schedule"];
    all.extend_from_slice(args);
    all.extend(["--root", root.as_str(), "web"]);
    let out = jobs.run(&all);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn schedules_install_idempotently_with_systemd_and_cron() {
    let jobs = Jobs::new();
    jobs.configure("randomized_delay = \"20m\"", "");
    std::fs::create_dir_all(jobs.root.join("run/systemd/system")).unwrap();
    let service = jobs.root.join("etc/systemd/system/cairn-web.service");
    let timer = jobs.root.join("etc/systemd/system/cairn-web.timer");

    assert_eq!(schedule(&jobs, &["status"]), "job web: not scheduled\n");
    let out = schedule(&jobs, &["install"]);
    assert!(
        out.contains(&format!("wrote {}", service.display())),
        "{out}"
    );
    assert!(
        out.contains("would run: systemctl daemon-reload\n"),
        "{out}"
    );
    assert!(
        out.contains("would run: systemctl enable --now cairn-web.timer\n"),
        "{out}"
    );
    let unit = std::fs::read_to_string(&service).unwrap();
    assert!(
        unit.contains(
            "ExecStart='/usr/local/bin/cairn' run --config '/etc/cairn/cairn.toml' web\n"
        ),
        "paths as the installed system sees them: {unit}"
    );
    assert!(unit.contains("Nice=5\nIOSchedulingClass=idle\n"), "{unit}");
    let t = std::fs::read_to_string(&timer).unwrap();
    for line in [
        "OnCalendar=*-*-* 02:30\n",
        "RandomizedDelaySec=1200\n",
        "Persistent=true\n",
    ] {
        assert!(t.contains(line), "{line}: {t}");
    }
    // Again: nothing written, no reload.
    let out = schedule(&jobs, &["install"]);
    assert!(
        out.contains(&format!("unchanged {}", timer.display())),
        "{out}"
    );
    assert!(!out.contains("daemon-reload"), "{out}");
    assert!(out.contains("already up to date"), "{out}");
    assert_eq!(
        schedule(&jobs, &["status"]),
        "job web: scheduled with systemd, up to date\n"
    );
    // A changed configuration shows as out of date.
    jobs.configure("randomized_delay = \"5m\"", "");
    assert!(schedule(&jobs, &["status"]).contains("out of date"));
    // Cron cannot be installed beside it.
    let root = jobs.root.display().to_string();
    let out = jobs.run(&["schedule", "install", "--cron", "--root", &root, "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("already scheduled with systemd"),
        "{}",
        text(&out.stderr)
    );

    let out = schedule(&jobs, &["remove"]);
    assert!(
        out.contains("would run: systemctl disable --now cairn-web.timer\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!("removed {}", service.display())),
        "{out}"
    );
    assert!(!service.exists() && !timer.exists());
    assert_eq!(schedule(&jobs, &["remove"]), "job web was not scheduled\n");

    // Cron, forced.
    let cron = jobs.root.join("etc/cron.d/cairn-web");
    let out = schedule(&jobs, &["install", "--cron"]);
    assert!(out.contains(&format!("wrote {}", cron.display())), "{out}");
    assert!(!out.contains("systemctl"), "{out}");
    let entry = std::fs::read_to_string(&cron).unwrap();
    assert!(
        entry.contains("\n30 2 * * * root '/usr/local/bin/cairn' run --config '/etc/cairn/cairn.toml' --random-delay 300 web\n"),
        "{entry}"
    );
    assert!(schedule(&jobs, &["install", "--cron"]).contains("unchanged"));
    assert_eq!(
        schedule(&jobs, &["status"]),
        "job web: scheduled with cron, up to date\n"
    );
    let out = schedule(&jobs, &["remove"]);
    assert!(
        out.contains(&format!("removed {}", cron.display())),
        "{out}"
    );
    assert!(!out.contains("systemctl"), "{out}");

    // Without systemd running, cron is chosen.
    std::fs::remove_dir_all(jobs.root.join("run")).unwrap();
    assert!(schedule(&jobs, &["install"]).contains("scheduled with cron"));
}
