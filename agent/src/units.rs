//! Byte sizes as people write and read them.
//!
//! Chunk sizes are powers of two, so the command line takes binary multiples
//! (`64K` and `64KiB` both mean 65,536 bytes) and reports use them too.
//! Throughput is the exception: it is given in decimal MB/s, the unit disk
//! and network speeds are quoted in.

use std::fmt;
use std::str::FromStr;

/// Why a size given on the command line was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeError {
    input: String,
    reason: &'static str,
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid size {:?}: {}; write a number of bytes with an optional \
             binary suffix K, M or G (KiB, MiB, GiB), for example 64K or 1MiB",
            self.input, self.reason
        )
    }
}

impl std::error::Error for SizeError {}

/// Parses a size such as `65536`, `64K`, `64KiB`, `1m` or `1 MiB`.
///
/// Suffixes are binary (K = 1024) and case-insensitive; the trailing `B` or
/// `iB` is optional.
pub fn parse_size(input: &str) -> Result<usize, SizeError> {
    let error = |reason| SizeError {
        input: input.to_owned(),
        reason,
    };
    let s = input.trim();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, suffix) = s.split_at(digits_end);
    if digits.is_empty() {
        return Err(error("it does not start with a number"));
    }
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(error("unknown suffix")),
    };
    let number: usize = digits
        .parse()
        .map_err(|_| error("the number is too large"))?;
    number
        .checked_mul(1usize << shift)
        .ok_or_else(|| error("the size is too large"))
}

/// Formats a byte count for people: exact binary multiples as `64 KiB`,
/// other counts of a KiB or more with two decimals (`1.50 GiB`), small
/// counts as `123 B`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    while unit + 1 < UNITS.len() && bytes >= 1u64 << (10 * (unit + 1)) {
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes} B");
    }
    let scale = 1u64 << (10 * unit);
    if bytes.is_multiple_of(scale) {
        format!("{} {}", bytes / scale, UNITS[unit])
    } else {
        format!("{:.2} {}", bytes as f64 / scale as f64, UNITS[unit])
    }
}

/// A share of a pack, as a percentage (`10%` or `10`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percent(pub f64);

impl FromStr for Percent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let n: f64 = t
            .strip_suffix('%')
            .unwrap_or(t)
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a percentage (e.g. 10%)"))?;
        if !(0.0..=100.0).contains(&n) {
            return Err(format!("{s:?} is not between 0% and 100%"));
        }
        Ok(Percent(n / 100.0))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_suffixed_sizes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("64kib"), Ok(64 << 10));
        assert_eq!(parse_size("64 KiB"), Ok(64 << 10));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("1MB"), Ok(1 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("12b"), Ok(12));
    }

    #[test]
    fn refuses_bad_sizes_with_a_hint() {
        for bad in [
            "",
            "K",
            "-1",
            "1.5M",
            "64Q",
            "99999999999999999999999",
            "1 TiB",
        ] {
            let err = parse_size(bad).expect_err(bad).to_string();
            assert!(err.contains("for example 64K"), "{bad}: {err}");
        }
        assert!(parse_size(&format!("{}G", usize::MAX >> 8)).is_err());
    }

    #[test]
    fn formats_bytes() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1024), "1 KiB");
        assert_eq!(format_bytes(64 << 10), "64 KiB");
        assert_eq!(format_bytes(1536), "1.50 KiB");
        assert_eq!(format_bytes(3 << 30), "3 GiB");
        assert_eq!(format_bytes(u64::MAX), "16384.00 PiB");
    }
}

/// The date of a day since 1970-01-01: (year, month 1-12, day 1-31), in
/// the proleptic Gregorian calendar (Howard Hinnant's civil-from-days).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for seconds since the Unix epoch.
pub fn format_time(unix: i64) -> String {
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(unix.div_euclid(86_400));
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod time_tests {
    use super::{Percent, format_time};

    #[test]
    fn civil_time() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(1_764_633_600), "2025-12-02 00:00:00");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00:00");
    }

    #[test]
    fn percentages_parse_with_or_without_the_sign() {
        assert_eq!("10%".parse::<Percent>(), Ok(Percent(0.10)));
        assert_eq!(" 25 ".parse::<Percent>(), Ok(Percent(0.25)));
        assert_eq!("0%".parse::<Percent>(), Ok(Percent(0.0)));
        assert!("101%".parse::<Percent>().is_err());
        assert!("-1".parse::<Percent>().is_err());
        assert!("ten".parse::<Percent>().is_err());
    }
}
