//! Log lines of unattended runs, for people and for the journal, and the
//! `--json` event stream of `cairn run`.
//!
//! Under systemd, standard error goes to the journal, which reads a
//! `<N>` prefix on each line as its syslog priority (sd-daemon(3)): errors
//! (3) and warnings (4) then show in `journalctl -p warning` and in red,
//! the rest is info (6). systemd sets `JOURNAL_STREAM` to the device and
//! inode of the stream it connected; the prefix is written only when
//! standard error is still that stream, so that a terminal or a file
//! redirected from within the service never sees it.
//!
//! With `cairn run --json`, standard output carries one JSON object per
//! line: `start`, `stage`, `warning`, `error` and `end` events, for a
//! wrapper or orchestrator to follow a run without parsing text.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// How much a line matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something failed.
    Error,
    /// Something was skipped or looks wrong; the run goes on.
    Warning,
    /// Progress.
    Info,
}

impl Level {
    /// The level of a message: `error...` and `warning...` lines are
    /// errors and warnings, everything else info.
    pub fn of(message: &str) -> Level {
        if message.starts_with("error") {
            Level::Error
        } else if message.starts_with("warning") {
            Level::Warning
        } else {
            Level::Info
        }
    }

    /// The syslog priority (sd-daemon(3)).
    pub fn priority(self) -> u8 {
        match self {
            Level::Error => 3,
            Level::Warning => 4,
            Level::Info => 6,
        }
    }
}

/// Whether `JOURNAL_STREAM`'s value `value` (`DEVICE:INODE`, decimal) names
/// the stream with `dev` and `ino`.
pub fn names_stream(value: &str, dev: u64, ino: u64) -> bool {
    value
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

/// Whether standard error is connected to the journal (checked once).
pub fn stderr_is_journal() -> bool {
    static JOURNAL: OnceLock<bool> = OnceLock::new();
    *JOURNAL.get_or_init(|| {
        let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
            return false;
        };
        match rustix::fs::fstat(std::io::stderr()) {
            Ok(st) => names_stream(&value.to_string_lossy(), st.st_dev, st.st_ino),
            Err(_) => false,
        }
    })
}

/// The `<N>` prefix for `message` when standard error is the journal,
/// else nothing.
pub fn priority_prefix(message: &str) -> String {
    if stderr_is_journal() {
        format!("<{}>", Level::of(message).priority())
    } else {
        String::new()
    }
}

/// Whether `--json` events go to standard output.
static EVENTS: AtomicBool = AtomicBool::new(false);

/// Turns the JSON event stream on.
pub fn enable_events() {
    EVENTS.store(true, Ordering::Relaxed);
}

/// Writes event `kind` with `fields` (an object) as one line on standard
/// output, when the stream is on.
pub fn event(kind: &str, fields: serde_json::Value) {
    if !EVENTS.load(Ordering::Relaxed) {
        return;
    }
    let mut object = serde_json::Map::new();
    object.insert("event".into(), kind.into());
    object.insert(
        "time".into(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
            .into(),
    );
    if let serde_json::Value::Object(f) = fields {
        object.extend(f);
    }
    let line = format!("{}\n", serde_json::Value::Object(object));
    // A closed pipe must not stop a backup.
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
}

/// Logs `line` on standard error as `cairn: line` (with its priority under
/// the journal); warnings and errors are also events.
pub fn log(line: &str) {
    eprintln!("{}cairn: {line}", priority_prefix(line));
    match Level::of(line) {
        Level::Error => event("error", serde_json::json!({ "message": line })),
        Level::Warning => event("warning", serde_json::json!({ "message": line })),
        Level::Info => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_the_message() {
        assert_eq!(Level::of("error: cannot thaw").priority(), 3);
        assert_eq!(Level::of("warning: skipped /x").priority(), 4);
        assert_eq!(Level::of("job web: started").priority(), 6);
    }

    #[test]
    fn the_journal_stream_is_matched_by_device_and_inode() {
        assert!(names_stream("8:12345", 8, 12345));
        assert!(!names_stream("8:12345", 8, 12346));
        assert!(!names_stream("8", 8, 0));
        assert!(!names_stream("x:1", 0, 1));
    }
}
