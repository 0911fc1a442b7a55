//! Retention policies: which snapshots `cairn forget` keeps, and why.
//!
//! Pure arithmetic over snapshot times, hosts, paths and tags, with no I/O,
//! so it is tested on its own (including property tests). The rules follow
//! restic's `forget`, which operators already know:
//!
//! - Snapshots are grouped (by default by host and paths; see [`GroupBy`])
//!   and each group is judged on its own.
//! - Within a group, snapshots are taken newest first. `last N` keeps the N
//!   newest. `hourly/daily/weekly/monthly/yearly N` keep, for each of the N
//!   most recent hours (days, ISO weeks, months, years) that hold a
//!   snapshot, the newest snapshot of that period. Periods are computed in
//!   UTC, whatever the local time zone of the hosts.
//! - `within D` keeps every snapshot taken within D (for example `7d`,
//!   `2w`, `1m`, `1y`, `36h`, `1y6m`) before the group's *newest* snapshot,
//!   not before now: a host that stopped backing up does not lose its last
//!   backups to the passing of time. Years and months are calendar ones.
//! - `tag T` keeps every snapshot carrying the tag T.
//! - A snapshot is kept when any rule keeps it; every rule that does is
//!   recorded as a reason. Snapshots with the same time are ordered by id,
//!   so the result does not depend on the order snapshots are listed in.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use cairn_store::{Id, Snapshot};

use crate::units::civil_from_days;
use serde::Serialize;

/// A span of time for `--keep-within`: calendar years and months, days
/// (weeks count as 7 days) and hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize)]
pub struct Within {
    /// Calendar years.
    pub years: u32,
    /// Calendar months.
    pub months: u32,
    /// Days (weeks included).
    pub days: u32,
    /// Hours.
    pub hours: u32,
}

/// A `--keep-within` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {0:?}: use numbers with units y (years), m (months), w (weeks), d (days), h (hours), e.g. 7d, 2w, 1y6m, 36h"
)]
pub struct WithinError(pub String);

impl FromStr for Within {
    type Err = WithinError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || WithinError(s.to_string());
        let mut out = Within::default();
        let mut number: Option<u32> = None;
        let mut any = false;
        for c in s.trim().chars() {
            if let Some(d) = c.to_digit(10) {
                number = Some(
                    number
                        .unwrap_or(0)
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(d))
                        .ok_or_else(bad)?,
                );
                continue;
            }
            let n = number.take().ok_or_else(bad)?;
            let slot = match c {
                'y' => &mut out.years,
                'm' => &mut out.months,
                'w' => {
                    out.days = n
                        .checked_mul(7)
                        .and_then(|w| out.days.checked_add(w))
                        .ok_or_else(bad)?;
                    any = true;
                    continue;
                }
                'd' => &mut out.days,
                'h' => &mut out.hours,
                _ => return Err(bad()),
            };
            *slot = slot.checked_add(n).ok_or_else(bad)?;
            any = true;
        }
        if number.is_some() || !any {
            return Err(bad());
        }
        Ok(out)
    }
}

impl fmt::Display for Within {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut wrote = false;
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n > 0 {
                write!(f, "{n}{unit}")?;
                wrote = true;
            }
        }
        if !wrote {
            f.write_str("0h")?;
        }
        Ok(())
    }
}

impl Within {
    /// The earliest time (seconds since the epoch, UTC) within this span
    /// before `time`: calendar years and months back (a day past the end
    /// of the month rolls over, as in Go's `AddDate`), then days and hours.
    pub fn start_before(&self, time: i64) -> i64 {
        let days = time.div_euclid(86_400);
        let secs = time.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let months = y * 12 + (m - 1) - i64::from(self.years) * 12 - i64::from(self.months);
        let (ny, nm) = (months.div_euclid(12), months.rem_euclid(12) + 1);
        let days = days_from_civil(ny, nm, 1) + (d - 1) - i64::from(self.days);
        days * 86_400 + secs - i64::from(self.hours) * 3600
    }
}

/// The rules of a retention policy; a zero count disables its rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Keep the N newest snapshots.
    pub last: u32,
    /// Keep the newest snapshot of each of the N most recent hours.
    pub hourly: u32,
    /// ... days.
    pub daily: u32,
    /// ... ISO weeks (Monday to Sunday).
    pub weekly: u32,
    /// ... months.
    pub monthly: u32,
    /// ... years.
    pub yearly: u32,
    /// Keep every snapshot within this span before the group's newest.
    pub within: Option<Within>,
    /// Keep every snapshot carrying any of these tags.
    pub tags: Vec<String>,
}

impl Policy {
    /// Whether no rule is set (such a policy would keep nothing).
    pub fn is_empty(&self) -> bool {
        self.last == 0
            && self.hourly == 0
            && self.daily == 0
            && self.weekly == 0
            && self.monthly == 0
            && self.yearly == 0
            && self.within.is_none()
            && self.tags.is_empty()
    }
}

/// Why a snapshot is kept.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// One of the N newest.
    Last,
    /// Newest of its hour.
    Hourly,
    /// Newest of its day.
    Daily,
    /// Newest of its ISO week.
    Weekly,
    /// Newest of its month.
    Monthly,
    /// Newest of its year.
    Yearly,
    /// Within the span before the group's newest.
    Within(Within),
    /// Carries this tag.
    Tag(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Last => f.write_str("last"),
            Reason::Hourly => f.write_str("hourly"),
            Reason::Daily => f.write_str("daily"),
            Reason::Weekly => f.write_str("weekly"),
            Reason::Monthly => f.write_str("monthly"),
            Reason::Yearly => f.write_str("yearly"),
            Reason::Within(w) => write!(f, "within {w}"),
            Reason::Tag(t) => write!(f, "tag {t}"),
        }
    }
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Which snapshot properties separate groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupBy {
    /// By host name.
    pub host: bool,
    /// By the set of source paths.
    pub paths: bool,
    /// By the set of tags.
    pub tags: bool,
}

impl Default for GroupBy {
    /// Host and paths, like restic.
    fn default() -> Self {
        GroupBy {
            host: true,
            paths: true,
            tags: false,
        }
    }
}

/// A `--group-by` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid --group-by {0:?}: use a comma-separated list of host, paths, tags, or an empty string for one group"
)]
pub struct GroupByError(pub String);

impl FromStr for GroupBy {
    type Err = GroupByError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut g = GroupBy {
            host: false,
            paths: false,
            tags: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" => g.host = true,
                "paths" | "path" => g.paths = true,
                "tags" | "tag" => g.tags = true,
                _ => return Err(GroupByError(s.to_string())),
            }
        }
        Ok(g)
    }
}

/// What a group's snapshots share.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Default)]
pub struct GroupKey {
    /// The host, when grouping by host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The sorted paths, when grouping by paths.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    /// The sorted tags, when grouping by tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

impl GroupKey {
    fn of(s: &Snapshot, by: GroupBy) -> Self {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v.dedup();
            v
        };
        GroupKey {
            hostname: by.host.then(|| s.hostname.clone()),
            paths: by.paths.then(|| sorted(&s.paths)),
            tags: by.tags.then(|| sorted(&s.tags)),
        }
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(h) = &self.hostname {
            parts.push(format!("host {h}"));
        }
        if let Some(p) = &self.paths {
            parts.push(format!("paths [{}]", p.join(", ")));
        }
        if let Some(t) = &self.tags {
            parts.push(format!("tags [{}]", t.join(", ")));
        }
        if parts.is_empty() {
            f.write_str("all snapshots")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// The verdict on one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The snapshot.
    pub id: Id,
    /// Its time (seconds since the epoch, UTC).
    pub time: i64,
    /// Whether it is kept.
    pub keep: bool,
    /// The rules that keep it (empty when it goes).
    pub reasons: Vec<Reason>,
}

/// One group's verdicts, newest snapshot first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// What the group's snapshots share.
    pub key: GroupKey,
    /// Its snapshots, newest first.
    pub decisions: Vec<Decision>,
}

/// Applies `policy` to `snapshots`, grouped by `group_by`. Groups come in
/// key order, each group's snapshots newest first.
pub fn apply(snapshots: &[(Id, Snapshot)], policy: &Policy, group_by: GroupBy) -> Vec<Group> {
    let mut groups: BTreeMap<GroupKey, Vec<&(Id, Snapshot)>> = BTreeMap::new();
    for s in snapshots {
        groups
            .entry(GroupKey::of(&s.1, group_by))
            .or_default()
            .push(s);
    }
    groups
        .into_iter()
        .map(|(key, mut members)| {
            members.sort_by(|a, b| {
                (b.1.time, b.1.time_nanos, b.0).cmp(&(a.1.time, a.1.time_nanos, a.0))
            });
            Group {
                key,
                decisions: judge(&members, policy),
            }
        })
        .collect()
}

/// The rules that count periods: their reason, count and period key.
type BucketRule = (Reason, u32, fn(i64) -> i64);

/// Judges one group, given newest first.
fn judge(members: &[&(Id, Snapshot)], policy: &Policy) -> Vec<Decision> {
    let rules: [BucketRule; 6] = [
        (Reason::Last, policy.last, |_| 0),
        (Reason::Hourly, policy.hourly, |t| t.div_euclid(3600)),
        (Reason::Daily, policy.daily, |t| t.div_euclid(86_400)),
        (Reason::Weekly, policy.weekly, iso_week_key),
        (Reason::Monthly, policy.monthly, |t| {
            let (y, m, _) = civil_from_days(t.div_euclid(86_400));
            y * 12 + m
        }),
        (Reason::Yearly, policy.yearly, |t| {
            civil_from_days(t.div_euclid(86_400)).0
        }),
    ];
    let mut left: Vec<u32> = rules.iter().map(|r| r.1).collect();
    let mut last_key: Vec<Option<i64>> = vec![None; rules.len()];
    let within_start = policy.within.and_then(|w| {
        members
            .first()
            .map(|newest| (w, w.start_before(newest.1.time), newest.1.time_nanos))
    });
    members
        .iter()
        .map(|(id, s)| {
            let mut reasons = Vec::new();
            for (i, (reason, _, key_of)) in rules.iter().enumerate() {
                if left[i] == 0 {
                    continue;
                }
                // keep-last: every snapshot is its own period.
                let key = if *reason == Reason::Last {
                    None
                } else {
                    Some(key_of(s.time))
                };
                if key.is_none() || key != last_key[i] {
                    reasons.push(reason.clone());
                    last_key[i] = key;
                    left[i] -= 1;
                }
            }
            if let Some((w, start, nanos)) = within_start
                && (s.time, s.time_nanos) >= (start, nanos)
            {
                reasons.push(Reason::Within(w));
            }
            for t in &policy.tags {
                if s.tags.contains(t) && !reasons.contains(&Reason::Tag(t.clone())) {
                    reasons.push(Reason::Tag(t.clone()));
                }
            }
            Decision {
                id: *id,
                time: s.time,
                keep: !reasons.is_empty(),
                reasons,
            }
        })
        .collect()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm); `d` may exceed the month's length (it rolls over).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The ISO 8601 week of a time, as `year * 100 + week`.
fn iso_week_key(t: i64) -> i64 {
    let days = t.div_euclid(86_400);
    // 1970-01-01 was a Thursday; Monday is 0.
    let weekday = (days + 3).rem_euclid(7);
    let thursday = days - weekday + 3;
    let year = civil_from_days(thursday).0;
    let week = (thursday - days_from_civil(year, 1, 1)) / 7 + 1;
    year * 100 + week
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests {
    use super::*;
    use cairn_store::SnapshotKind;
    use proptest::prelude::*;
    use std::collections::HashSet;

    /// 2025-12-01 00:00:00 UTC, a Monday.
    const MON: i64 = 1_764_547_200;

    fn snap(i: u8, time: i64, host: &str, tags: &[&str]) -> (Id, Snapshot) {
        (
            Id([i; 32]),
            Snapshot {
                time,
                time_nanos: 0,
                hostname: host.into(),
                username: "u".into(),
                kind: SnapshotKind::Files,
                paths: vec!["/data".into()],
                tags: tags.iter().map(|t| t.to_string()).collect(),
                parent: None,
                root: Id([0; 32]),
                program_version: "t".into(),
                stats: Default::default(),
                original: None,
            },
        )
    }

    fn kept(groups: &[Group]) -> Vec<Id> {
        let mut v: Vec<Id> = groups
            .iter()
            .flat_map(|g| g.decisions.iter().filter(|d| d.keep).map(|d| d.id))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn durations_parse_and_print() {
        let w: Within = "1y6m2w3d36h".parse().unwrap();
        assert_eq!(
            w,
            Within {
                years: 1,
                months: 6,
                days: 17,
                hours: 36
            }
        );
        assert_eq!(w.to_string(), "1y6m17d36h");
        for bad in ["", "7", "d", "7x", "-1d", "99999999999d", "1d2"] {
            assert!(bad.parse::<Within>().is_err(), "{bad}");
        }
    }

    #[test]
    fn calendar_arithmetic() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for d in [-1000, 0, 11_016, 20_000, 100_000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        // 2024-03-31 minus one month: "2024-02-31" rolls over to 03-02.
        let t = days_from_civil(2024, 3, 31) * 86_400 + 3600;
        let m1 = Within {
            months: 1,
            ..Default::default()
        };
        assert_eq!(
            m1.start_before(t),
            days_from_civil(2024, 3, 2) * 86_400 + 3600
        );
        let y1 = Within {
            years: 1,
            hours: 2,
            ..Default::default()
        };
        assert_eq!(
            y1.start_before(t),
            days_from_civil(2023, 3, 31) * 86_400 - 3600
        );
        // ISO weeks: 2020-12-31 (Thu) is in 2020-W53, 2021-01-04 (Mon) in
        // 2021-W01, 2019-12-30 (Mon) in 2020-W01.
        let day = |y, m, d| days_from_civil(y, m, d) * 86_400;
        assert_eq!(iso_week_key(day(2020, 12, 31)), 202_053);
        assert_eq!(iso_week_key(day(2021, 1, 3)), 202_053);
        assert_eq!(iso_week_key(day(2021, 1, 4)), 202_101);
        assert_eq!(iso_week_key(day(2019, 12, 30)), 202_001);
        assert_eq!(iso_week_key(MON), iso_week_key(MON + 6 * 86_400 + 86_399));
        assert_ne!(iso_week_key(MON), iso_week_key(MON - 1));
    }

    #[test]
    fn daily_keeps_the_newest_of_each_recent_day_with_reasons() {
        // Two snapshots a day for five days.
        let snaps: Vec<_> = (0..10u8)
            .map(|i| {
                snap(
                    i,
                    MON + i64::from(i / 2) * 86_400 + i64::from(i % 2) * 3600,
                    "h",
                    &[],
                )
            })
            .collect();
        let policy = Policy {
            daily: 3,
            last: 1,
            ..Default::default()
        };
        let groups = apply(&snaps, &policy, GroupBy::default());
        assert_eq!(groups.len(), 1);
        let d = &groups[0].decisions;
        assert_eq!(d[0].id, Id([9; 32]));
        assert_eq!(d[0].reasons, vec![Reason::Last, Reason::Daily]);
        assert_eq!(kept(&groups), vec![Id([5; 32]), Id([7; 32]), Id([9; 32])]);
        assert!(d.iter().all(|d| d.keep != d.reasons.is_empty()));
    }

    #[test]
    fn weekly_monthly_yearly_within_and_tags() {
        let day = 86_400;
        let snaps = vec![
            snap(1, MON - 400 * day, "h", &[]),     // previous year
            snap(2, MON - 40 * day, "h", &[]),      // October
            snap(3, MON - 8 * day, "h", &["keep"]), // previous-but-one week
            snap(4, MON - day, "h", &[]),           // Sunday, previous week
            snap(5, MON, "h", &[]),                 // Monday
            snap(6, MON + 2 * day, "h", &[]),       // Wednesday
        ];
        let weekly = Policy {
            weekly: 2,
            ..Default::default()
        };
        assert_eq!(
            kept(&apply(&snaps, &weekly, GroupBy::default())),
            vec![Id([4; 32]), Id([6; 32])]
        );
        let monthly = Policy {
            monthly: 3,
            yearly: 5,
            ..Default::default()
        };
        // December: 6; November: 4; October: 2; yearly: 6 (2025), 1 (2024).
        assert_eq!(
            kept(&apply(&snaps, &monthly, GroupBy::default())),
            vec![Id([1; 32]), Id([2; 32]), Id([4; 32]), Id([6; 32])]
        );
        let within = Policy {
            within: Some("3d".parse().unwrap()),
            tags: vec!["keep".into()],
            ..Default::default()
        };
        let groups = apply(&snaps, &within, GroupBy::default());
        assert_eq!(
            kept(&groups),
            vec![Id([3; 32]), Id([4; 32]), Id([5; 32]), Id([6; 32])]
        );
        let three = groups[0]
            .decisions
            .iter()
            .find(|d| d.id == Id([3; 32]))
            .unwrap();
        assert_eq!(three.reasons, vec![Reason::Tag("keep".into())]);
    }

    #[test]
    fn groups_are_judged_apart() {
        let snaps = vec![
            snap(1, MON, "a", &[]),
            snap(2, MON + 1, "a", &[]),
            snap(3, MON, "b", &[]),
        ];
        let last1 = Policy {
            last: 1,
            ..Default::default()
        };
        let groups = apply(&snaps, &last1, GroupBy::default());
        assert_eq!(groups.len(), 2);
        assert_eq!(kept(&groups), vec![Id([2; 32]), Id([3; 32])]);
        let one: GroupBy = "".parse().unwrap();
        assert_eq!(kept(&apply(&snaps, &last1, one)), vec![Id([2; 32])]);
        assert!("host,bogus".parse::<GroupBy>().is_err());
        assert_eq!(
            "host,tags".parse::<GroupBy>().unwrap(),
            GroupBy {
                host: true,
                paths: false,
                tags: true
            }
        );
    }

    fn arb_snapshots() -> impl Strategy<Value = Vec<(Id, Snapshot)>> {
        prop::collection::vec((0i64..3 * 366 * 86_400, 0u8..3, any::<bool>()), 0..60).prop_map(
            |v| {
                v.into_iter()
                    .enumerate()
                    .map(|(i, (offset, host, tagged))| {
                        let mut s =
                            snap(i as u8, MON - offset, ["a", "b", "c"][host as usize], &[]);
                        if tagged {
                            s.1.tags.push("t".into());
                        }
                        // Some equal times, to exercise the tie-break.
                        if i % 5 == 0 {
                            s.1.time = MON;
                        }
                        s
                    })
                    .collect()
            },
        )
    }

    fn arb_policy() -> impl Strategy<Value = Policy> {
        (
            (0u32..5, 0u32..5, 0u32..5, 0u32..5, 0u32..5, 0u32..5),
            prop::option::of(0u32..40),
            any::<bool>(),
        )
            .prop_map(
                |((last, hourly, daily, weekly, monthly, yearly), within, tag)| Policy {
                    last,
                    hourly,
                    daily,
                    weekly,
                    monthly,
                    yearly,
                    within: within.map(|d| Within {
                        days: d,
                        ..Default::default()
                    }),
                    tags: if tag { vec!["t".into()] } else { vec![] },
                },
            )
    }

    proptest! {
        #[test]
        fn keep_last_keeps_exactly_the_newest(snaps in arb_snapshots(), n in 0u32..70) {
            let policy = Policy { last: n, ..Default::default() };
            let groups = apply(&snaps, &policy, "".parse().unwrap());
            let mut all: Vec<&(Id, Snapshot)> = snaps.iter().collect();
            all.sort_by_key(|s| std::cmp::Reverse((s.1.time, s.0)));
            let want: HashSet<Id> = all.iter().take(n as usize).map(|s| s.0).collect();
            let got: HashSet<Id> = kept(&groups).into_iter().collect();
            prop_assert_eq!(got.len(), (n as usize).min(snaps.len()));
            prop_assert_eq!(got, want);
        }

        #[test]
        fn verdicts_are_consistent_and_order_independent(
            snaps in arb_snapshots(),
            policy in arb_policy(),
            seed in any::<u64>(),
        ) {
            let groups = apply(&snaps, &policy, GroupBy::default());
            // Every snapshot judged once; kept exactly when a rule keeps it.
            let judged: usize = groups.iter().map(|g| g.decisions.len()).sum();
            prop_assert_eq!(judged, snaps.len());
            for g in &groups {
                for d in &g.decisions {
                    prop_assert_eq!(d.keep, !d.reasons.is_empty());
                }
                // A counting rule keeps at most its count.
                for (reason, n) in [
                    (Reason::Last, policy.last),
                    (Reason::Hourly, policy.hourly),
                    (Reason::Daily, policy.daily),
                    (Reason::Weekly, policy.weekly),
                    (Reason::Monthly, policy.monthly),
                    (Reason::Yearly, policy.yearly),
                ] {
                    let c = g.decisions.iter().filter(|d| d.reasons.contains(&reason)).count();
                    prop_assert!(c <= n as usize);
                }
                // Tagged snapshots are always kept; so is the newest one
                // whenever a counting rule is set.
                if !policy.tags.is_empty() {
                    for d in &g.decisions {
                        let s = snaps.iter().find(|s| s.0 == d.id).unwrap();
                        if s.1.tags.contains(&"t".to_string()) {
                            prop_assert!(d.keep);
                        }
                    }
                }
                let counting = policy.last + policy.hourly + policy.daily
                    + policy.weekly + policy.monthly + policy.yearly;
                if counting > 0 || policy.within.is_some() {
                    prop_assert!(g.decisions[0].keep);
                }
            }
            // Shuffled input, same verdicts.
            let mut shuffled = snaps.clone();
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            prop_assert_eq!(apply(&shuffled, &policy, GroupBy::default()), groups);
        }

        #[test]
        fn period_rules_keep_the_newest_of_each_of_the_most_recent_periods(
            snaps in arb_snapshots(),
            n in 1u32..10,
            rule in 0usize..4,
        ) {
            // The oracle: periods from the formatted UTC time (an
            // independent calendar implementation), "YYYY-MM-DD HH".
            let (policy, prefix) = match rule {
                0 => (Policy { hourly: n, ..Default::default() }, 13),
                1 => (Policy { daily: n, ..Default::default() }, 10),
                2 => (Policy { monthly: n, ..Default::default() }, 7),
                _ => (Policy { yearly: n, ..Default::default() }, 4),
            };
            let period = |t: i64| crate::units::format_time(t)[..prefix].to_string();
            let groups = apply(&snaps, &policy, "".parse().unwrap());
            let mut periods: Vec<String> = snaps.iter().map(|s| period(s.1.time)).collect();
            periods.sort_unstable_by(|a, b| b.cmp(a));
            periods.dedup();
            periods.truncate(n as usize);
            let mut want = Vec::new();
            for p in periods {
                let newest = snaps
                    .iter()
                    .filter(|s| period(s.1.time) == p)
                    .max_by_key(|s| (s.1.time, s.0))
                    .unwrap();
                want.push(newest.0);
            }
            want.sort();
            prop_assert_eq!(kept(&groups), want);
        }

        #[test]
        fn keep_within_keeps_exactly_the_window_before_the_newest(
            snaps in arb_snapshots(),
            days in 0u32..400,
        ) {
            let w = Within { days, ..Default::default() };
            let policy = Policy { within: Some(w), ..Default::default() };
            let groups = apply(&snaps, &policy, "".parse().unwrap());
            let newest = snaps.iter().map(|s| s.1.time).max();
            let mut want: Vec<Id> = snaps
                .iter()
                .filter(|s| newest.is_some_and(|n| s.1.time >= n - i64::from(days) * 86_400))
                .map(|s| s.0)
                .collect();
            want.sort();
            prop_assert_eq!(kept(&groups), want);
        }
    }
}
