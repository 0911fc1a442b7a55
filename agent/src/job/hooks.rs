//! Hook commands: `pre`, `post`, `on_failure`, and the freeze and snapshot
//! commands, each run via `/bin/sh -c` with a timeout and its output logged.
//!
//! A hook runs in its own process group so that a timeout (or a signal to
//! cairn) kills everything it started, not just the shell. Its standard
//! output and error are logged line by line on cairn's standard error
//! (which systemd sends to the journal and cron to mail), prefixed with the
//! hook's name; the last lines go into the error when it fails.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};

/// Lines of a failed hook's output quoted in its error.
const TAIL_LINES: usize = 5;
/// How often a running hook is polled for its exit.
const POLL: Duration = Duration::from_millis(20);

/// The process group of the hook running now (0: none), for the signal
/// handler to kill.
static RUNNING: AtomicI32 = AtomicI32::new(0);

/// A command to run.
#[derive(Debug, Clone)]
pub struct Hook<'a> {
    /// Its name in logs and errors (`pre`, `freeze`, ...).
    pub name: &'a str,
    /// The shell command.
    pub command: &'a str,
    /// The longest it may run.
    pub timeout: Duration,
    /// Extra environment variables (CAIRN_JOB, CAIRN_RESULT, ...).
    pub env: &'a [(String, String)],
}

/// Why a hook failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The shell could not be started.
    #[error("hook {name}: cannot start /bin/sh: {source}")]
    Spawn {
        /// The hook.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It exited unsuccessfully.
    #[error("hook {name} failed ({status}){tail}")]
    Failed {
        /// The hook.
        name: String,
        /// How it ended.
        status: String,
        /// `: ` and its last lines of output, or empty.
        tail: String,
    },
    /// It ran past its timeout and was killed.
    #[error(
        "hook {name} did not finish within {seconds} s and was killed; raise hooks.timeout or fix the command"
    )]
    TimedOut {
        /// The hook.
        name: String,
        /// The timeout.
        seconds: u64,
    },
}

/// Kills the process group of the hook running now, if any (for signal
/// handlers: it only reads an atomic and calls kill).
pub fn kill_running() {
    let pgid = RUNNING.swap(0, Ordering::SeqCst);
    if let Some(pid) = Pid::from_raw(pgid) {
        let _ = kill_process_group(pid, Signal::KILL);
    }
}

/// Runs `hook`, logging each line of its output with `log`.
pub fn run(hook: &Hook<'_>, log: &(dyn Fn(&str) + Sync)) -> Result<(), HookError> {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(hook.command)
        .envs(hook.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed; sigemptyset and
    // pthread_sigmask are. It unblocks the signals `cairn run` blocks in
    // its threads (see `signals`), so that the hook can be interrupted.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|source| HookError::Spawn {
        name: hook.name.to_string(),
        source,
    })?;
    let pgid = child.id() as i32;
    RUNNING.store(pgid, Ordering::SeqCst);
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let started = Instant::now();
    let result = std::thread::scope(|scope| {
        let readers: Vec<_> = [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|e| Box::new(e) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        .map(|pipe| {
            let tail = tail.clone();
            scope.spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    log(&format!("hook {}: {line}", hook.name));
                    if let Ok(mut t) = tail.lock() {
                        if t.len() == TAIL_LINES {
                            t.pop_front();
                        }
                        t.push_back(line);
                    }
                }
            })
        })
        .collect();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if started.elapsed() >= hook.timeout => {
                    if let Some(pid) = Pid::from_raw(pgid) {
                        let _ = kill_process_group(pid, Signal::KILL);
                    }
                    let _ = child.wait();
                    break Err(HookError::TimedOut {
                        name: hook.name.to_string(),
                        seconds: hook.timeout.as_secs(),
                    });
                }
                Ok(None) => std::thread::sleep(POLL),
                Err(source) => {
                    break Err(HookError::Spawn {
                        name: hook.name.to_string(),
                        source,
                    });
                }
            }
        };
        // Whatever the shell left running in its group would keep the
        // pipes open: it is killed, so that the readers reach the end.
        if let Some(pid) = Pid::from_raw(pgid) {
            let _ = kill_process_group(pid, Signal::KILL);
        }
        for r in readers {
            let _ = r.join();
        }
        status
    });
    RUNNING.store(0, Ordering::SeqCst);
    let status = result?;
    if status.success() {
        return Ok(());
    }
    let lines: Vec<String> = tail
        .lock()
        .map(|t| t.iter().cloned().collect())
        .unwrap_or_default();
    Err(HookError::Failed {
        name: hook.name.to_string(),
        status: status.to_string(),
        tail: if lines.is_empty() {
            String::new()
        } else {
            format!(": {}", lines.join(" / "))
        },
    })
}

/// The logger of `cairn run`: standard error, prefixed with `cairn: `
/// (and a syslog priority under the journal; see [`crate::log`]).
pub fn log_stderr(line: &str) {
    crate::log::log(line);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn hook<'a>(command: &'a str, env: &'a [(String, String)], timeout: u64) -> Hook<'a> {
        Hook {
            name: "pre",
            command,
            timeout: Duration::from_secs(timeout),
            env,
        }
    }

    fn run_logged(h: &Hook<'_>) -> (Result<(), HookError>, Vec<String>) {
        let lines = Mutex::new(Vec::new());
        let r = run(h, &|l| lines.lock().unwrap().push(l.to_string()));
        let mut lines = lines.into_inner().unwrap();
        lines.sort();
        (r, lines)
    }

    #[test]
    fn output_is_logged_and_the_environment_passed() {
        let env = [("CAIRN_JOB".to_string(), "web".to_string())];
        let (r, lines) = run_logged(&hook("echo out $CAIRN_JOB; echo err >&2", &env, 60));
        r.unwrap();
        assert_eq!(lines, ["hook pre: err", "hook pre: out web"]);
    }

    #[test]
    fn failures_quote_the_last_lines() {
        let (r, _) = run_logged(&hook(
            "for i in 1 2 3 4 5 6 7; do echo $i; done; exit 3",
            &[],
            60,
        ));
        let e = r.unwrap_err().to_string();
        assert!(e.starts_with("hook pre failed (exit status: 3): "), "{e}");
        assert!(e.ends_with("3 / 4 / 5 / 6 / 7"), "{e}");
    }

    #[test]
    fn a_hook_past_its_timeout_is_killed_with_its_children() {
        // The shell's child would keep the output pipe open forever: the
        // whole group is killed.
        let (r, _) = run_logged(&hook("sleep 1000 & sleep 1000", &[], 0));
        assert!(
            matches!(r, Err(HookError::TimedOut { seconds: 0, .. })),
            "{r:?}"
        );
    }
}
