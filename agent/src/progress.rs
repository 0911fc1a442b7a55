//! A progress line on the terminal: bytes done, rate and time left.
//!
//! Shown only on a terminal (never when output is piped or in JSON mode) and
//! redrawn at most five times a second, so it costs nothing measurable.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::units::format_bytes;

/// A throttled progress line on standard error.
pub struct Progress {
    enabled: bool,
    total: u64,
    label: String,
    start: Instant,
    last: Mutex<Instant>,
}

impl Progress {
    /// A progress line for `total` bytes (0 when unknown), shown if `enabled`.
    pub fn new(enabled: bool, label: &str, total: u64) -> Self {
        let now = Instant::now();
        Progress {
            enabled,
            total,
            label: label.to_string(),
            start: now,
            last: Mutex::new(now),
        }
    }

    /// Reports `done` bytes; redraws if enough time has passed.
    pub fn update(&self, done: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if now.duration_since(*last) < Duration::from_millis(200) {
                return;
            }
            *last = now;
        }
        let secs = now.duration_since(self.start).as_secs_f64().max(1e-3);
        let rate = done as f64 / secs;
        let mut line = format!("\r{}: {}", self.label, format_bytes(done));
        if self.total > 0 {
            let pct = done as f64 * 100.0 / self.total as f64;
            line += &format!(" of {} ({pct:.0}%)", format_bytes(self.total));
            if rate > 0.0 && done < self.total {
                let left = (self.total - done) as f64 / rate;
                line += &format!(", ETA {}", format_duration(left));
            }
        }
        line += &format!(", {}/s   ", format_bytes(rate as u64));
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(line.as_bytes());
        let _ = err.flush();
    }

    /// Clears the line.
    pub fn finish(&self) {
        if self.enabled {
            let _ = std::io::stderr().write_all(b"\r\x1b[2K");
        }
    }
}

/// `1h02m`, `3m05s`, `12s`.
pub fn format_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(format_duration(5.2), "5s");
        assert_eq!(format_duration(185.0), "3m05s");
        assert_eq!(format_duration(3720.0), "1h02m");
    }
}
