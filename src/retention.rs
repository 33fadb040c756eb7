//! Retention rules: which backups to keep, with restic's `keep-*` semantics.
//!
//! Pure: rules are values and [`decide`] is a function of the rules, a time
//! zone and the backups. It needs no clock: like restic, `keep-within` counts
//! back from the newest backup, not from now. This module never lists, reads
//! or deletes anything; `plan` feeds it the inventory and turns its answer
//! into prune actions.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Days, Months, NaiveDateTime, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// Why retention rules are not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("`{0}` is not a duration like `7d`, `36h` or `1y6m`")]
    Within(String),
}

/// A `keep-within` duration in restic's calendar units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Within {
    pub years: u32,
    pub months: u32,
    pub days: u32,
    pub hours: u32,
}

impl Within {
    pub fn is_zero(&self) -> bool {
        *self == Within::default()
    }
}

impl FromStr for Within {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = || Error::Within(text.to_owned());
        let mut within = Within::default();
        let mut number = String::new();
        for character in text.chars() {
            if character.is_ascii_digit() {
                number.push(character);
                continue;
            }
            let value: u32 = number.parse().map_err(|_| fail())?;
            number.clear();
            let slot = match character {
                'y' => &mut within.years,
                'm' => &mut within.months,
                'd' => &mut within.days,
                'h' => &mut within.hours,
                _ => return Err(fail()),
            };
            *slot = slot.checked_add(value).ok_or_else(fail)?;
        }
        if !number.is_empty() || text.is_empty() {
            return Err(fail());
        }
        Ok(within)
    }
}

impl fmt::Display for Within {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ];
        let mut wrote = false;
        for (value, unit) in parts.into_iter().filter(|(value, _)| *value > 0) {
            write!(formatter, "{value}{unit}")?;
            wrote = true;
        }
        if !wrote {
            formatter.write_str("0h")?;
        }
        Ok(())
    }
}

/// Validated retention rules. A missing rule keeps nothing by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
    pub within: Option<Within>,
}

impl Retention {
    /// Whether any rule keeps at least one backup.
    pub fn keeps_something(&self) -> bool {
        [
            self.last,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
        ]
        .iter()
        .any(|count| *count > 0)
            || self.within.is_some_and(|within| !within.is_zero())
    }
}

/// One backup as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub created_at: DateTime<Utc>,
}

/// A retention rule, named after its `keep-*` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
    Within,
}

impl Rule {
    fn word(self) -> &'static str {
        match self {
            Rule::Last => "last",
            Rule::Hourly => "hourly",
            Rule::Daily => "daily",
            Rule::Weekly => "weekly",
            Rule::Monthly => "monthly",
            Rule::Yearly => "yearly",
            Rule::Within => "within",
        }
    }

    /// What one slot of a counting rule holds, in the plural.
    fn slots(self) -> &'static str {
        match self {
            Rule::Last | Rule::Within => "backups",
            Rule::Hourly => "hours",
            Rule::Daily => "days",
            Rule::Weekly => "weeks",
            Rule::Monthly => "months",
            Rule::Yearly => "years",
        }
    }

    /// The calendar bucket of a local time, as shown to users; two times
    /// share a bucket exactly when their labels are equal. `Last` and
    /// `Within` have no calendar bucket.
    fn bucket(self, local: &DateTime<Tz>) -> Option<String> {
        let label = match self {
            Rule::Last | Rule::Within => return None,
            Rule::Hourly => format!(
                "{:04}-{:02}-{:02} {:02}:00",
                local.year(),
                local.month(),
                local.day(),
                local.hour()
            ),
            Rule::Daily => format!(
                "{:04}-{:02}-{:02}",
                local.year(),
                local.month(),
                local.day()
            ),
            Rule::Weekly => {
                let week = local.iso_week();
                format!("{:04}-W{:02}", week.year(), week.week())
            }
            Rule::Monthly => format!("{:04}-{:02}", local.year(), local.month()),
            Rule::Yearly => format!("{:04}", local.year()),
        };
        Some(label)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.word())
    }
}

/// Why a backup is kept: one rule and the bucket it fills.
///
/// Displays as `last 1 of 3`, `hourly 2026-11-25 13:00`, `daily 2026-11-20`,
/// `weekly 2026-W46` (ISO week), `monthly 2026-11`, `yearly 2026` or
/// `within 7d`, followed by ` (oldest)` when `oldest` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keep {
    pub rule: Rule,
    /// The bucket, as displayed after the rule: `1 of 3` for `keep-last`,
    /// `2026-11-20` for `keep-daily`, the duration for `keep-within`.
    pub bucket: String,
    /// Kept only by restic's rule that a counting rule with slots left over
    /// keeps the oldest backup, although a newer backup already holds its
    /// bucket.
    pub oldest: bool,
}

impl fmt::Display for Keep {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} {}", self.rule, self.bucket)?;
        if self.oldest {
            formatter.write_str(" (oldest)")?;
        }
        Ok(())
    }
}

/// The decision for one candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub id: String,
    pub created_at: DateTime<Utc>,
    /// Empty when retention does not keep it.
    pub keep: Vec<Keep>,
    /// For a backup not kept: one line per active rule saying why that rule
    /// does not keep it.
    pub not_kept: Vec<String>,
}

impl Verdict {
    pub fn kept(&self) -> bool {
        !self.keep.is_empty()
    }
}

/// Applies `retention` to `candidates` (any order), with hours, days, weeks,
/// months and years taken in `timezone`. Returns one verdict per candidate,
/// newest first (by `created_at`, then `id` descending).
///
/// This is restic's `ApplyPolicy`: walking from the newest backup, a counting
/// rule keeps a backup whose bucket differs from the last bucket it kept,
/// until its count is used up, and keeps the oldest backup if it still has
/// count left then. `keep-within` keeps backups newer than the duration
/// before the newest backup. Unlike restic, rules that keep nothing keep
/// nothing (restic keeps everything under an empty policy); policy checks
/// reject such rules.
pub fn decide(retention: &Retention, timezone: Tz, candidates: &[Candidate]) -> Vec<Verdict> {
    let mut order: Vec<&Candidate> = candidates.iter().collect();
    order.sort_by(|left, right| {
        right
            .created_at
            .cmp(&left.created_at)
            .then_with(|| right.id.cmp(&left.id))
    });
    let Some(newest) = order.first().map(|candidate| candidate.created_at) else {
        return Vec::new();
    };
    let mut tallies: Vec<Tally> = [
        (Rule::Last, retention.last),
        (Rule::Hourly, retention.hourly),
        (Rule::Daily, retention.daily),
        (Rule::Weekly, retention.weekly),
        (Rule::Monthly, retention.monthly),
        (Rule::Yearly, retention.yearly),
    ]
    .into_iter()
    .filter(|(_, count)| *count > 0)
    .map(|(rule, count)| Tally {
        rule,
        count,
        kept: 0,
        last: None,
    })
    .collect();
    let window = retention
        .within
        .filter(|within| !within.is_zero())
        .map(|within| Window {
            within,
            start: window_start(newest, within, timezone),
            newest: newest.with_timezone(&timezone),
        });
    let oldest_index = order.len() - 1;
    order
        .into_iter()
        .enumerate()
        .map(|(index, candidate)| {
            let local = candidate.created_at.with_timezone(&timezone);
            let mut keep = Vec::new();
            let mut not_kept = Vec::new();
            for tally in &mut tallies {
                // Every backup is its own `keep-last` bucket.
                let bucket = tally
                    .rule
                    .bucket(&local)
                    .unwrap_or_else(|| index.to_string());
                match tally.offer(bucket, &candidate.id, index == oldest_index) {
                    Ok(reason) => keep.push(reason),
                    Err(reason) => not_kept.push(reason),
                }
            }
            if let Some(window) = &window {
                match window.offer(candidate.created_at) {
                    Ok(reason) => keep.push(reason),
                    Err(reason) => not_kept.push(reason),
                }
            }
            if !keep.is_empty() {
                not_kept.clear();
            } else if not_kept.is_empty() {
                not_kept.push("no keep-* rule is set".to_owned());
            }
            Verdict {
                id: candidate.id.clone(),
                created_at: candidate.created_at,
                keep,
                not_kept,
            }
        })
        .collect()
}

/// A counting rule while [`decide`] walks the backups, newest first.
struct Tally {
    rule: Rule,
    count: u32,
    kept: u32,
    /// The bucket this rule kept last, and the backup that holds it.
    last: Option<(String, String)>,
}

impl Tally {
    /// Keeps the backup with this bucket, or says why not.
    fn offer(&mut self, bucket: String, id: &str, oldest: bool) -> Result<Keep, String> {
        let repeated = self.last.as_ref().is_some_and(|(last, _)| *last == bucket);
        if self.kept < self.count && (!repeated || oldest) {
            self.kept += 1;
            let label = match self.rule {
                Rule::Last => format!("{} of {}", self.kept, self.count),
                _ => bucket.clone(),
            };
            self.last = Some((bucket, id.to_owned()));
            return Ok(Keep {
                rule: self.rule,
                bucket: label,
                oldest: repeated,
            });
        }
        let filled = format!(
            "keep-{} {} is filled by newer {}",
            self.rule,
            self.count,
            self.rule.slots()
        );
        Err(match &self.last {
            Some((last, holder)) if repeated => format!("{} {last} is kept by {holder}", self.rule),
            Some((last, _)) if self.rule != Rule::Last => format!("{filled} (oldest kept: {last})"),
            _ => filled,
        })
    }
}

/// `keep-within`, measured back from the newest backup.
struct Window {
    within: Within,
    /// Backups newer than this are kept; `None` when the window reaches back
    /// beyond the calendar, so every backup is in it.
    start: Option<DateTime<Utc>>,
    newest: DateTime<Tz>,
}

impl Window {
    fn offer(&self, created_at: DateTime<Utc>) -> Result<Keep, String> {
        if self.start.is_none_or(|start| created_at > start) {
            return Ok(Keep {
                rule: Rule::Within,
                bucket: self.within.to_string(),
                oldest: false,
            });
        }
        Err(format!(
            "older than {} before the newest backup ({})",
            self.within,
            self.newest.format("%Y-%m-%d %H:%M %:z")
        ))
    }
}

/// `newest` minus `within`, as restic computes it: years, months and days on
/// the calendar in `timezone` (in UTC when that local time is ambiguous or
/// does not exist), then hours as elapsed time. A month back from 31 March is
/// the last day of February. `None` when that is before the calendar's start.
fn window_start(newest: DateTime<Utc>, within: Within, timezone: Tz) -> Option<DateTime<Utc>> {
    let months = within.years.checked_mul(12)?.checked_add(within.months)?;
    let back = |time: NaiveDateTime| {
        time.checked_sub_months(Months::new(months))?
            .checked_sub_days(Days::new(within.days.into()))
    };
    let local = back(newest.with_timezone(&timezone).naive_local())
        .and_then(|time| timezone.from_local_datetime(&time).single())
        .map(|time| time.with_timezone(&Utc));
    let day = local.or_else(|| back(newest.naive_utc()).map(|time| time.and_utc()))?;
    day.checked_sub_signed(TimeDelta::hours(within.hours.into()))
}

/// Safety backups `backup restore` takes before it replaces a target (tagged
/// `pre-restore`) are not the policy's backups: the policy's retention and
/// schedule never see them. They are kept by this fixed rule instead: the
/// newest [`PRE_RESTORE_KEEP_LAST`], and any younger than
/// [`PRE_RESTORE_KEEP_DAYS`] days.
pub const PRE_RESTORE_KEEP_LAST: usize = 3;
/// See [`PRE_RESTORE_KEEP_LAST`].
pub const PRE_RESTORE_KEEP_DAYS: i64 = 7;

/// Which pre-restore backups to keep, newest first: `Ok(rule)` for a kept
/// one, `Err(reason)` for one to prune. Pure; `now` is an argument.
pub fn decide_pre_restore(
    candidates: &[Candidate],
    now: DateTime<Utc>,
) -> Vec<(Candidate, Result<String, String>)> {
    let mut order: Vec<&Candidate> = candidates.iter().collect();
    order.sort_by(|left, right| {
        right
            .created_at
            .cmp(&left.created_at)
            .then_with(|| right.id.cmp(&left.id))
    });
    let within = TimeDelta::days(PRE_RESTORE_KEEP_DAYS);
    order
        .into_iter()
        .enumerate()
        .map(|(index, candidate)| {
            let verdict = if index < PRE_RESTORE_KEEP_LAST {
                Ok(format!(
                    "pre-restore: last {} of {PRE_RESTORE_KEEP_LAST}",
                    index + 1
                ))
            } else if now - candidate.created_at < within {
                Ok(format!("pre-restore: within {PRE_RESTORE_KEEP_DAYS}d"))
            } else {
                Err(format!(
                    "pre-restore safety backup older than {PRE_RESTORE_KEEP_DAYS} days and not among the {PRE_RESTORE_KEEP_LAST} newest"
                ))
            };
            (candidate.clone(), verdict)
        })
        .collect()
}

/// How well the backups fill one counting rule's most recent periods: the
/// view `backup status` takes of retention.
///
/// Displays as `weekly: 2 of 4, missing 2026-W44, 2026-W45`, or `daily: 7 of 7`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Compliance {
    /// `last`, `hourly`, `daily`, `weekly`, `monthly` or `yearly`.
    pub rule: String,
    /// The rule's count (`keep-weekly: 4` wants 4).
    pub wanted: u32,
    /// How many of those the history can hold yet: fewer than `wanted` while
    /// the history is younger than the rule reaches back.
    pub expected: u32,
    /// How many of the expected periods (backups, for `last`) hold a backup.
    pub present: u32,
    /// The expected periods without a backup, newest first.
    pub missing: Vec<String>,
    /// The period of the oldest backup, when the history is too young to fill the rule.
    pub history_starts: Option<String>,
}

impl Compliance {
    pub fn compliant(&self) -> bool {
        self.missing.is_empty() && self.present >= self.expected
    }
}

impl fmt::Display for Compliance {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{}: {} of {}",
            self.rule, self.present, self.wanted
        )?;
        if !self.missing.is_empty() {
            write!(formatter, ", missing {}", self.missing.join(", "))?;
        } else if self.present < self.expected {
            write!(formatter, ", {} missing", self.expected - self.present)?;
        }
        if let Some(start) = &self.history_starts {
            write!(formatter, " (history starts {start})")?;
        }
        Ok(())
    }
}

/// Counts schedule ticks in `[start, end)`, stopping at `limit`.
pub type TickCounter<'a> = &'a dyn Fn(DateTime<Utc>, DateTime<Utc>, usize) -> usize;

/// Whether `candidates` (complete backups only) fill each counting rule of
/// `retention`: for `keep-daily 7`, the 7 most recent days that the schedule
/// ticks in, counted back from the newest backup's day, must each hold a
/// backup. Periods before the oldest backup are not expected (a young
/// history is not a violation), nor are periods without a tick (`keep-hourly`
/// under a daily schedule expects one backup a day). `keep-within` expects
/// nothing. Buckets are the same as [`decide`]'s, in `timezone`.
pub fn compliance(
    retention: &Retention,
    timezone: Tz,
    candidates: &[Candidate],
    ticks: TickCounter,
) -> Vec<Compliance> {
    let mut results = Vec::new();
    let Some(newest) = candidates
        .iter()
        .map(|candidate| candidate.created_at)
        .max()
    else {
        return results;
    };
    let oldest = candidates
        .iter()
        .map(|candidate| candidate.created_at)
        .min()
        .unwrap_or(newest);
    if retention.last > 0 {
        let wanted = retention.last;
        let since_oldest = ticks(
            oldest + TimeDelta::seconds(1),
            newest + TimeDelta::seconds(1),
            wanted as usize,
        );
        let expected = wanted.min(1 + since_oldest as u32);
        let present = wanted.min(candidates.len() as u32);
        results.push(Compliance {
            rule: Rule::Last.to_string(),
            wanted,
            expected,
            present,
            missing: Vec::new(),
            history_starts: None,
        });
    }
    for (rule, wanted) in [
        (Rule::Hourly, retention.hourly),
        (Rule::Daily, retention.daily),
        (Rule::Weekly, retention.weekly),
        (Rule::Monthly, retention.monthly),
        (Rule::Yearly, retention.yearly),
    ] {
        if wanted == 0 {
            continue;
        }
        let mut compliance = Compliance {
            rule: rule.to_string(),
            wanted,
            expected: 0,
            present: 0,
            missing: Vec::new(),
            history_starts: None,
        };
        let mut cursor = newest;
        // Bounded: a schedule that never ticks in a period skips it.
        for _ in 0..100_000 {
            let local = cursor.with_timezone(&timezone);
            let Some((start, end)) = period(rule, &local) else {
                break;
            };
            if end <= oldest {
                break;
            }
            if ticks(start, end, 1) > 0 {
                compliance.expected += 1;
                let held = candidates
                    .iter()
                    .any(|candidate| candidate.created_at >= start && candidate.created_at < end);
                if held {
                    compliance.present += 1;
                } else {
                    compliance
                        .missing
                        .push(rule.bucket(&local).unwrap_or_default());
                }
                if compliance.expected == wanted {
                    break;
                }
            }
            cursor = start - TimeDelta::seconds(1);
        }
        if compliance.expected < wanted {
            compliance.history_starts = rule.bucket(&oldest.with_timezone(&timezone));
        }
        results.push(compliance);
    }
    results
}

/// The calendar period (hour, day, ISO week, month, year) of `local`, as UTC
/// instants `[start, end)`. A period boundary the clock skips starts at the
/// first minute after the jump.
fn period(rule: Rule, local: &DateTime<Tz>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let date = local.date_naive();
    let (start, end) = match rule {
        Rule::Last | Rule::Within => return None,
        Rule::Hourly => {
            let start = date.and_hms_opt(local.hour(), 0, 0)?;
            (start, start + TimeDelta::hours(1))
        }
        Rule::Daily => {
            let start = date.and_hms_opt(0, 0, 0)?;
            (start, start + TimeDelta::days(1))
        }
        Rule::Weekly => {
            let monday = date - TimeDelta::days(date.weekday().num_days_from_monday().into());
            let start = monday.and_hms_opt(0, 0, 0)?;
            (start, start + TimeDelta::days(7))
        }
        Rule::Monthly => {
            let start = date.with_day(1)?.and_hms_opt(0, 0, 0)?;
            (start, start.checked_add_months(Months::new(1))?)
        }
        Rule::Yearly => {
            let start = date.with_day(1)?.with_month(1)?.and_hms_opt(0, 0, 0)?;
            (start, start.checked_add_months(Months::new(12))?)
        }
    };
    let instant = |wall: NaiveDateTime| {
        (0..=24 * 60).find_map(|minutes| {
            local
                .timezone()
                .from_local_datetime(&(wall + TimeDelta::minutes(minutes)))
                .earliest()
                .map(|time| time.with_timezone(&Utc))
        })
    };
    Some((instant(start)?, instant(end)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_restic_durations() {
        for (text, expected) in [
            (
                "7d",
                Within {
                    days: 7,
                    ..Within::default()
                },
            ),
            (
                "1y6m",
                Within {
                    years: 1,
                    months: 6,
                    ..Within::default()
                },
            ),
            (
                "2d12h",
                Within {
                    days: 2,
                    hours: 12,
                    ..Within::default()
                },
            ),
            ("0h", Within::default()),
        ] {
            assert_eq!(text.parse::<Within>(), Ok(expected), "{text}");
            assert_eq!(expected.to_string(), text);
        }
        for text in ["", "7", "d", "7w", "1.5d", "-1d", "99999999999d"] {
            assert!(text.parse::<Within>().is_err(), "{text}");
        }
    }

    /// Rules written compactly: `last=3 daily=7 within=2d`.
    fn rules(text: &str) -> Retention {
        let mut retention = Retention::default();
        for pair in text.split_whitespace() {
            let (key, value) = pair.split_once('=').unwrap();
            match key {
                "within" => retention.within = Some(value.parse().unwrap()),
                _ => {
                    let count = value.parse().unwrap();
                    match key {
                        "last" => retention.last = count,
                        "hourly" => retention.hourly = count,
                        "daily" => retention.daily = count,
                        "weekly" => retention.weekly = count,
                        "monthly" => retention.monthly = count,
                        "yearly" => retention.yearly = count,
                        _ => panic!("unknown rule {key}"),
                    }
                }
            }
        }
        retention
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    /// Backups named after their time, like the engine names them.
    fn backups(times: &[&str]) -> Vec<Candidate> {
        times
            .iter()
            .map(|time| {
                let created_at = at(time);
                Candidate {
                    id: created_at.format("%Y%m%dT%H%M%SZ").to_string(),
                    created_at,
                }
            })
            .collect()
    }

    /// One line per verdict: `<id> keep <reasons>` or `<id> drop <why not>`.
    fn render(verdicts: &[Verdict]) -> Vec<String> {
        verdicts
            .iter()
            .map(|verdict| {
                if verdict.kept() {
                    let reasons: Vec<String> = verdict.keep.iter().map(Keep::to_string).collect();
                    format!("{} keep {}", verdict.id, reasons.join(", "))
                } else {
                    format!("{} drop {}", verdict.id, verdict.not_kept.join("; "))
                }
            })
            .collect()
    }

    struct Case {
        name: &'static str,
        rules: &'static str,
        timezone: Tz,
        backups: &'static [&'static str],
        /// Worked out by hand from restic's rules, newest first.
        expected: &'static [&'static str],
    }

    fn check(cases: &[Case]) {
        for case in cases {
            let verdicts = decide(&rules(case.rules), case.timezone, &backups(case.backups));
            assert_eq!(render(&verdicts), case.expected, "{}", case.name);
        }
    }

    #[test]
    fn keeps_the_newest_backups_by_count() {
        check(&[
            Case {
                name: "keep-last only",
                rules: "last=3",
                timezone: Tz::UTC,
                backups: &[
                    "2026-11-20T03:00:00Z",
                    "2026-11-20T01:00:00Z",
                    "2026-11-20T05:00:00Z",
                    "2026-11-20T02:00:00Z",
                    "2026-11-20T04:00:00Z",
                ],
                expected: &[
                    "20261120T050000Z keep last 1 of 3",
                    "20261120T040000Z keep last 2 of 3",
                    "20261120T030000Z keep last 3 of 3",
                    "20261120T020000Z drop keep-last 3 is filled by newer backups",
                    "20261120T010000Z drop keep-last 3 is filled by newer backups",
                ],
            },
            Case {
                name: "fewer backups than keep-last: all kept, none as the oldest",
                rules: "last=5",
                timezone: Tz::UTC,
                backups: &["2026-11-20T01:00:00Z", "2026-11-20T02:00:00Z"],
                expected: &[
                    "20261120T020000Z keep last 1 of 5",
                    "20261120T010000Z keep last 2 of 5",
                ],
            },
        ]);
    }

    #[test]
    fn breaks_ties_on_time_by_id_descending() {
        let same = at("2026-11-20T01:00:00Z");
        let candidates = ["a", "c", "b"].map(|id| Candidate {
            id: id.to_owned(),
            created_at: same,
        });
        let verdicts = decide(&rules("last=1 daily=1"), Tz::UTC, &candidates);
        assert_eq!(
            render(&verdicts),
            [
                "c keep last 1 of 1, daily 2026-11-20",
                "b drop keep-last 1 is filled by newer backups; daily 2026-11-20 is kept by c",
                "a drop keep-last 1 is filled by newer backups; daily 2026-11-20 is kept by c",
            ]
        );
    }

    #[test]
    fn keeps_the_newest_backup_of_each_period() {
        check(&[
            Case {
                name: "daily with several backups a day",
                rules: "daily=2",
                timezone: Tz::UTC,
                backups: &[
                    "2026-11-20T08:00:00Z",
                    "2026-11-20T20:00:00Z",
                    "2026-11-21T09:00:00Z",
                    "2026-11-21T10:00:00Z",
                    "2026-11-21T23:00:00Z",
                    "2026-11-22T01:00:00Z",
                ],
                expected: &[
                    "20261122T010000Z keep daily 2026-11-22",
                    "20261121T230000Z keep daily 2026-11-21",
                    "20261121T100000Z drop daily 2026-11-21 is kept by 20261121T230000Z",
                    "20261121T090000Z drop daily 2026-11-21 is kept by 20261121T230000Z",
                    "20261120T200000Z drop keep-daily 2 is filled by newer days (oldest kept: 2026-11-21)",
                    "20261120T080000Z drop keep-daily 2 is filled by newer days (oldest kept: 2026-11-21)",
                ],
            },
            Case {
                // 2026 has 53 ISO weeks: W53 runs Monday 28 December to
                // Sunday 3 January 2027, and 4 January 2027 starts 2027-W01.
                name: "weekly across the new year",
                rules: "weekly=3",
                timezone: Tz::UTC,
                backups: &[
                    "2026-12-20T12:00:00Z",
                    "2026-12-24T12:00:00Z",
                    "2026-12-28T12:00:00Z",
                    "2026-12-31T12:00:00Z",
                    "2027-01-02T12:00:00Z",
                    "2027-01-04T12:00:00Z",
                    "2027-01-05T12:00:00Z",
                ],
                expected: &[
                    "20270105T120000Z keep weekly 2027-W01",
                    "20270104T120000Z drop weekly 2027-W01 is kept by 20270105T120000Z",
                    "20270102T120000Z keep weekly 2026-W53",
                    "20261231T120000Z drop weekly 2026-W53 is kept by 20270102T120000Z",
                    "20261228T120000Z drop weekly 2026-W53 is kept by 20270102T120000Z",
                    "20261224T120000Z keep weekly 2026-W52",
                    "20261220T120000Z drop keep-weekly 3 is filled by newer weeks (oldest kept: 2026-W52)",
                ],
            },
            Case {
                name: "monthly and yearly in UTC",
                rules: "monthly=3 yearly=2",
                timezone: Tz::UTC,
                backups: &[
                    "2024-06-01T12:00:00Z",
                    "2025-01-15T12:00:00Z",
                    "2025-12-31T23:00:00Z",
                    "2026-02-10T12:00:00Z",
                    "2026-02-20T12:00:00Z",
                    "2026-03-05T12:00:00Z",
                ],
                expected: &[
                    "20260305T120000Z keep monthly 2026-03, yearly 2026",
                    "20260220T120000Z keep monthly 2026-02",
                    "20260210T120000Z drop monthly 2026-02 is kept by 20260220T120000Z; yearly 2026 is kept by 20260305T120000Z",
                    "20251231T230000Z keep monthly 2025-12, yearly 2025",
                    "20250115T120000Z drop keep-monthly 3 is filled by newer months (oldest kept: 2025-12); yearly 2025 is kept by 20251231T230000Z",
                    "20240601T120000Z drop keep-monthly 3 is filled by newer months (oldest kept: 2025-12); keep-yearly 2 is filled by newer years (oldest kept: 2025)",
                ],
            },
            Case {
                // 2025-12-31 23:00 UTC is New Year's midnight in Berlin.
                name: "monthly and yearly in Berlin",
                rules: "monthly=3 yearly=2",
                timezone: chrono_tz::Europe::Berlin,
                backups: &[
                    "2024-06-01T12:00:00Z",
                    "2025-01-15T12:00:00Z",
                    "2025-12-31T23:00:00Z",
                    "2026-02-10T12:00:00Z",
                    "2026-02-20T12:00:00Z",
                    "2026-03-05T12:00:00Z",
                ],
                expected: &[
                    "20260305T120000Z keep monthly 2026-03, yearly 2026",
                    "20260220T120000Z keep monthly 2026-02",
                    "20260210T120000Z drop monthly 2026-02 is kept by 20260220T120000Z; yearly 2026 is kept by 20260305T120000Z",
                    "20251231T230000Z keep monthly 2026-01",
                    "20250115T120000Z keep yearly 2025",
                    "20240601T120000Z drop keep-monthly 3 is filled by newer months (oldest kept: 2026-01); keep-yearly 2 is filled by newer years (oldest kept: 2025)",
                ],
            },
        ]);
    }

    #[test]
    fn keeps_the_oldest_backup_while_slots_are_left() {
        check(&[
            Case {
                name: "more daily slots than days",
                rules: "daily=5",
                timezone: Tz::UTC,
                backups: &[
                    "2026-11-20T10:00:00Z",
                    "2026-11-20T12:00:00Z",
                    "2026-11-21T10:00:00Z",
                ],
                expected: &[
                    "20261121T100000Z keep daily 2026-11-21",
                    "20261120T120000Z keep daily 2026-11-20",
                    "20261120T100000Z keep daily 2026-11-20 (oldest)",
                ],
            },
            Case {
                name: "only rules with slots left keep the oldest",
                rules: "last=1 daily=3",
                timezone: Tz::UTC,
                backups: &[
                    "2026-11-21T08:00:00Z",
                    "2026-11-21T09:00:00Z",
                    "2026-11-21T10:00:00Z",
                ],
                expected: &[
                    "20261121T100000Z keep last 1 of 1, daily 2026-11-21",
                    "20261121T090000Z drop keep-last 1 is filled by newer backups; daily 2026-11-21 is kept by 20261121T100000Z",
                    "20261121T080000Z keep daily 2026-11-21 (oldest)",
                ],
            },
            Case {
                name: "an oldest backup in a bucket of its own is kept plainly",
                rules: "daily=5",
                timezone: Tz::UTC,
                backups: &["2026-11-20T10:00:00Z", "2026-11-21T10:00:00Z"],
                expected: &[
                    "20261121T100000Z keep daily 2026-11-21",
                    "20261120T100000Z keep daily 2026-11-20",
                ],
            },
        ]);
    }

    #[test]
    fn keeps_backups_within_a_duration_of_the_newest() {
        check(&[
            Case {
                name: "two days back from the newest backup, not from now",
                rules: "within=2d",
                timezone: Tz::UTC,
                backups: &[
                    "2026-11-20T00:00:00Z",
                    "2026-11-23T12:00:00Z",
                    "2026-11-23T12:01:00Z",
                    "2026-11-25T12:00:00Z",
                ],
                expected: &[
                    "20261125T120000Z keep within 2d",
                    "20261123T120100Z keep within 2d",
                    "20261123T120000Z drop older than 2d before the newest backup (2026-11-25 12:00 +00:00)",
                    "20261120T000000Z drop older than 2d before the newest backup (2026-11-25 12:00 +00:00)",
                ],
            },
            Case {
                // Go's AddDate would overflow 31 February into 3 March.
                name: "a month back from 31 March is the end of February",
                rules: "within=1m",
                timezone: Tz::UTC,
                backups: &[
                    "2026-02-28T09:30:00Z",
                    "2026-02-28T10:30:00Z",
                    "2026-03-31T10:00:00Z",
                ],
                expected: &[
                    "20260331T100000Z keep within 1m",
                    "20260228T103000Z keep within 1m",
                    "20260228T093000Z drop older than 1m before the newest backup (2026-03-31 10:00 +00:00)",
                ],
            },
            Case {
                // 12:00 CEST on 29 March back one calendar day is 12:00 CET on
                // 28 March, 23 hours earlier; then 2 hours more.
                name: "days count on the calendar in the time zone, hours as elapsed time",
                rules: "within=1d2h",
                timezone: chrono_tz::Europe::Berlin,
                backups: &[
                    "2026-03-28T08:30:00Z",
                    "2026-03-28T09:30:00Z",
                    "2026-03-29T10:00:00Z",
                ],
                expected: &[
                    "20260329T100000Z keep within 1d2h",
                    "20260328T093000Z keep within 1d2h",
                    "20260328T083000Z drop older than 1d2h before the newest backup (2026-03-29 12:00 +02:00)",
                ],
            },
            Case {
                name: "the same day in UTC is 24 hours",
                rules: "within=1d2h",
                timezone: Tz::UTC,
                backups: &[
                    "2026-03-28T07:30:00Z",
                    "2026-03-28T08:30:00Z",
                    "2026-03-29T10:00:00Z",
                ],
                expected: &[
                    "20260329T100000Z keep within 1d2h",
                    "20260328T083000Z keep within 1d2h",
                    "20260328T073000Z drop older than 1d2h before the newest backup (2026-03-29 10:00 +00:00)",
                ],
            },
            Case {
                // 02:30 on 25 October happens twice in Berlin, so the day is
                // taken back in UTC: 2026-10-26 01:30Z becomes 2026-10-25 01:30Z.
                name: "an ambiguous local start falls back to UTC",
                rules: "within=1d",
                timezone: chrono_tz::Europe::Berlin,
                backups: &[
                    "2026-10-25T01:00:00Z",
                    "2026-10-25T01:40:00Z",
                    "2026-10-26T01:30:00Z",
                ],
                expected: &[
                    "20261026T013000Z keep within 1d",
                    "20261025T014000Z keep within 1d",
                    "20261025T010000Z drop older than 1d before the newest backup (2026-10-26 02:30 +01:00)",
                ],
            },
            Case {
                name: "a zero duration keeps nothing and gives no reason",
                rules: "daily=1 within=0h",
                timezone: Tz::UTC,
                backups: &["2026-11-20T01:00:00Z", "2026-11-20T02:00:00Z"],
                expected: &[
                    "20261120T020000Z keep daily 2026-11-20",
                    "20261120T010000Z drop daily 2026-11-20 is kept by 20261120T020000Z",
                ],
            },
        ]);
    }

    #[test]
    fn rules_that_keep_nothing_keep_nothing() {
        let verdicts = decide(
            &Retention::default(),
            Tz::UTC,
            &backups(&["2026-11-20T01:00:00Z"]),
        );
        assert_eq!(
            render(&verdicts),
            ["20261120T010000Z drop no keep-* rule is set"]
        );
        assert!(decide(&rules("last=1"), Tz::UTC, &[]).is_empty());
    }

    #[test]
    fn counts_periods_in_the_time_zone() {
        let backups_ = &[
            "2026-11-20T12:00:00Z",
            "2026-11-20T23:30:00Z",
            "2026-11-21T12:00:00Z",
        ];
        check(&[
            Case {
                name: "daily in UTC",
                rules: "daily=2",
                timezone: Tz::UTC,
                backups: backups_,
                expected: &[
                    "20261121T120000Z keep daily 2026-11-21",
                    "20261120T233000Z keep daily 2026-11-20",
                    "20261120T120000Z drop daily 2026-11-20 is kept by 20261120T233000Z",
                ],
            },
            Case {
                // 23:30 UTC is 00:30 the next day in Berlin.
                name: "daily in Berlin",
                rules: "daily=2",
                timezone: chrono_tz::Europe::Berlin,
                backups: backups_,
                expected: &[
                    "20261121T120000Z keep daily 2026-11-21",
                    "20261120T233000Z drop daily 2026-11-21 is kept by 20261121T120000Z",
                    "20261120T120000Z keep daily 2026-11-20",
                ],
            },
        ]);
    }

    #[test]
    fn counts_a_repeated_local_hour_once() {
        // Berlin, 25 October 2026: at 01:00 UTC clocks go from 03:00 CEST back
        // to 02:00 CET, so 00:10Z, 00:50Z, 01:10Z and 01:50Z all fall in the
        // local hour 02:00.
        let backups_ = &[
            "2026-10-24T23:50:00Z",
            "2026-10-25T00:10:00Z",
            "2026-10-25T00:50:00Z",
            "2026-10-25T01:10:00Z",
            "2026-10-25T01:50:00Z",
            "2026-10-25T02:10:00Z",
        ];
        check(&[
            Case {
                name: "fall back in Berlin",
                rules: "hourly=10",
                timezone: chrono_tz::Europe::Berlin,
                backups: backups_,
                expected: &[
                    "20261025T021000Z keep hourly 2026-10-25 03:00",
                    "20261025T015000Z keep hourly 2026-10-25 02:00",
                    "20261025T011000Z drop hourly 2026-10-25 02:00 is kept by 20261025T015000Z",
                    "20261025T005000Z drop hourly 2026-10-25 02:00 is kept by 20261025T015000Z",
                    "20261025T001000Z drop hourly 2026-10-25 02:00 is kept by 20261025T015000Z",
                    "20261024T235000Z keep hourly 2026-10-25 01:00",
                ],
            },
            Case {
                name: "the same backups in UTC",
                rules: "hourly=10",
                timezone: Tz::UTC,
                backups: backups_,
                expected: &[
                    "20261025T021000Z keep hourly 2026-10-25 02:00",
                    "20261025T015000Z keep hourly 2026-10-25 01:00",
                    "20261025T011000Z drop hourly 2026-10-25 01:00 is kept by 20261025T015000Z",
                    "20261025T005000Z keep hourly 2026-10-25 00:00",
                    "20261025T001000Z drop hourly 2026-10-25 00:00 is kept by 20261025T005000Z",
                    "20261024T235000Z keep hourly 2026-10-24 23:00",
                ],
            },
        ]);
    }

    #[test]
    fn skips_a_local_hour_that_does_not_exist() {
        // Berlin, 29 March 2026: at 01:00 UTC clocks jump from 02:00 CET to
        // 03:00 CEST; there is no hour 02:00.
        check(&[Case {
            name: "spring forward in Berlin",
            rules: "hourly=3",
            timezone: chrono_tz::Europe::Berlin,
            backups: &[
                "2026-03-29T00:30:00Z",
                "2026-03-29T00:59:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-29T01:30:00Z",
                "2026-03-29T02:00:00Z",
            ],
            expected: &[
                "20260329T020000Z keep hourly 2026-03-29 04:00",
                "20260329T013000Z keep hourly 2026-03-29 03:00",
                "20260329T010000Z drop hourly 2026-03-29 03:00 is kept by 20260329T013000Z",
                "20260329T005900Z keep hourly 2026-03-29 01:00",
                "20260329T003000Z drop hourly 2026-03-29 01:00 is kept by 20260329T005900Z",
            ],
        }]);
    }

    #[test]
    fn compares_buckets_with_the_last_kept_one_like_restic() {
        // Chatham, 5 April 2026: at 14:00 UTC clocks go from 03:45 +13:45 back
        // to 02:45 +12:45, so local hours run 02, 03, 02, 03. restic compares
        // each bucket with the last one kept, not with all kept so far, so it
        // keeps hour 03 twice.
        check(&[Case {
            name: "fall back in Chatham",
            rules: "hourly=3",
            timezone: chrono_tz::Pacific::Chatham,
            backups: &[
                "2026-04-04T13:05:00Z",
                "2026-04-04T13:25:00Z",
                "2026-04-04T14:05:00Z",
                "2026-04-04T14:25:00Z",
            ],
            expected: &[
                "20260404T142500Z keep hourly 2026-04-05 03:00",
                "20260404T140500Z keep hourly 2026-04-05 02:00",
                "20260404T132500Z keep hourly 2026-04-05 03:00",
                "20260404T130500Z drop keep-hourly 3 is filled by newer hours (oldest kept: 2026-04-05 03:00)",
            ],
        }]);
    }

    mod properties {
        use std::collections::{BTreeMap, BTreeSet};

        use chrono::{LocalResult, NaiveDate, Offset};
        use proptest::prelude::*;
        use proptest::sample::Index;

        use super::*;

        const ZONES: [Tz; 6] = [
            Tz::UTC,
            chrono_tz::Europe::Berlin,
            chrono_tz::America::New_York,
            chrono_tz::Asia::Kolkata,
            chrono_tz::Australia::Lord_Howe,
            chrono_tz::Pacific::Chatham,
        ];
        const COUNTING: [Rule; 6] = [
            Rule::Last,
            Rule::Hourly,
            Rule::Daily,
            Rule::Weekly,
            Rule::Monthly,
            Rule::Yearly,
        ];
        const DAY: i64 = 86_400;

        fn start() -> DateTime<Utc> {
            at("2025-01-01T00:00:00Z")
        }

        /// Hours in which some zone of [`ZONES`] changes its offset, from 2025
        /// to 2027, so that histories crowd around them.
        fn transitions() -> Vec<DateTime<Utc>> {
            let mut found = Vec::new();
            for zone in ZONES {
                let offset = |time: DateTime<Utc>| time.with_timezone(&zone).offset().fix();
                let mut time = start();
                while time < at("2028-01-01T00:00:00Z") {
                    let next = time + TimeDelta::hours(1);
                    if offset(time) != offset(next) {
                        found.push(time);
                    }
                    time = next;
                }
            }
            found
        }

        /// 0–60 backups around a few anchors, some far apart, some in the
        /// same day, hour, minute or second.
        fn history() -> impl Strategy<Value = Vec<Candidate>> {
            let anywhere =
                (0..3 * 365 * DAY).prop_map(|seconds| start() + TimeDelta::seconds(seconds));
            let anchor = prop_oneof![anywhere, prop::sample::select(transitions())];
            let spread = prop_oneof![
                Just(0),
                -60..60i64,
                -3_600..3_600i64,
                -DAY..DAY,
                -30 * DAY..30 * DAY,
                -365 * DAY..365 * DAY,
            ];
            (
                prop::collection::vec(anchor, 1..=5),
                prop::collection::vec((any::<Index>(), spread), 0..=60),
            )
                .prop_map(|(anchors, picks)| {
                    picks
                        .into_iter()
                        .enumerate()
                        .map(|(number, (pick, offset))| Candidate {
                            id: format!("b{number:02}"),
                            created_at: *pick.get(&anchors) + TimeDelta::seconds(offset),
                        })
                        .collect()
                })
        }

        fn retention() -> impl Strategy<Value = Retention> {
            let within = (0..=1u32, 0..=3u32, 0..=10u32, 0..=48u32).prop_map(
                |(years, months, days, hours)| Within {
                    years,
                    months,
                    days,
                    hours,
                },
            );
            (prop::array::uniform6(0..=6u32), prop::option::of(within)).prop_map(
                |([last, hourly, daily, weekly, monthly, yearly], within)| Retention {
                    last,
                    hourly,
                    daily,
                    weekly,
                    monthly,
                    yearly,
                    within,
                },
            )
        }

        fn count(retention: &Retention, rule: Rule) -> u32 {
            match rule {
                Rule::Last => retention.last,
                Rule::Hourly => retention.hourly,
                Rule::Daily => retention.daily,
                Rule::Weekly => retention.weekly,
                Rule::Monthly => retention.monthly,
                Rule::Yearly => retention.yearly,
                Rule::Within => 0,
            }
        }

        /// Order of age: a larger key is newer.
        fn age(candidate: &Candidate) -> (DateTime<Utc>, &str) {
            (candidate.created_at, &candidate.id)
        }

        /// The calendar period of a backup, as numbers that order like time
        /// (except across a fall-back that is not a whole hour).
        fn period(rule: Rule, candidate: &Candidate, timezone: Tz) -> (i32, u32, u32, u32) {
            let local = candidate.created_at.with_timezone(&timezone);
            match rule {
                Rule::Hourly => (local.year(), local.month(), local.day(), local.hour()),
                Rule::Daily => (local.year(), local.month(), local.day(), 0),
                Rule::Weekly => (local.iso_week().year(), local.iso_week().week(), 0, 0),
                Rule::Monthly => (local.year(), local.month(), 0, 0),
                Rule::Yearly => (local.year(), 0, 0, 0),
                Rule::Last | Rule::Within => unreachable!(),
            }
        }

        /// Whether a rule's periods never go back as time goes forward.
        fn monotone(rule: Rule, timezone: Tz, candidates: &[Candidate]) -> bool {
            if rule == Rule::Last {
                return true;
            }
            let mut sorted: Vec<&Candidate> = candidates.iter().collect();
            sorted.sort_by(|left, right| age(left).cmp(&age(right)));
            sorted
                .windows(2)
                .all(|pair| period(rule, pair[0], timezone) <= period(rule, pair[1], timezone))
        }

        /// The ids a counting rule keeps, written from the rule's definition:
        /// the newest backup of each of the N most recent periods, plus the
        /// oldest backup when there are fewer than N periods.
        fn reference_rule(
            rule: Rule,
            count: u32,
            timezone: Tz,
            candidates: &[Candidate],
        ) -> BTreeSet<String> {
            let count = count as usize;
            let mut kept = BTreeSet::new();
            let Some(oldest) = candidates
                .iter()
                .min_by(|left, right| age(left).cmp(&age(right)))
            else {
                return kept;
            };
            if rule == Rule::Last {
                let mut sorted: Vec<&Candidate> = candidates.iter().collect();
                sorted.sort_by(|left, right| age(right).cmp(&age(left)));
                return sorted
                    .into_iter()
                    .take(count)
                    .map(|candidate| candidate.id.clone())
                    .collect();
            }
            let mut periods: BTreeMap<_, &Candidate> = BTreeMap::new();
            for candidate in candidates {
                let newest = periods
                    .entry(period(rule, candidate, timezone))
                    .or_insert(candidate);
                if age(candidate) > age(newest) {
                    *newest = candidate;
                }
            }
            kept.extend(
                periods
                    .values()
                    .rev()
                    .take(count)
                    .map(|candidate| candidate.id.clone()),
            );
            if periods.len() < count {
                kept.insert(oldest.id.clone());
            }
            kept
        }

        fn days_in_month(year: i32, month: u32) -> u32 {
            (28..=31)
                .rev()
                .find(|day| NaiveDate::from_ymd_opt(year, month, *day).is_some())
                .unwrap()
        }

        /// Years, months and days back on a wall clock, clamping the day of
        /// the month.
        fn wall_clock_back(time: NaiveDateTime, within: Within) -> NaiveDateTime {
            let months = i64::from(time.year()) * 12 + i64::from(time.month0())
                - i64::from(within.years) * 12
                - i64::from(within.months);
            let year = i32::try_from(months.div_euclid(12)).unwrap();
            let month = u32::try_from(months.rem_euclid(12)).unwrap() + 1;
            let day = time.day().min(days_in_month(year, month));
            let date = NaiveDate::from_ymd_opt(year, month, day).unwrap()
                - TimeDelta::days(within.days.into());
            date.and_time(time.time())
        }

        fn reference_within(
            within: Within,
            timezone: Tz,
            candidates: &[Candidate],
        ) -> BTreeSet<String> {
            let Some(newest) = candidates
                .iter()
                .map(|candidate| candidate.created_at)
                .max()
            else {
                return BTreeSet::new();
            };
            if within == Within::default() {
                return BTreeSet::new();
            }
            let local = wall_clock_back(newest.with_timezone(&timezone).naive_local(), within);
            let day = match timezone.from_local_datetime(&local) {
                LocalResult::Single(time) => time.to_utc(),
                _ => wall_clock_back(newest.naive_utc(), within).and_utc(),
            };
            let start = day - TimeDelta::hours(within.hours.into());
            candidates
                .iter()
                .filter(|candidate| candidate.created_at > start)
                .map(|candidate| candidate.id.clone())
                .collect()
        }

        fn kept_ids(verdicts: &[Verdict]) -> BTreeSet<String> {
            verdicts
                .iter()
                .filter(|verdict| verdict.kept())
                .map(|verdict| verdict.id.clone())
                .collect()
        }

        fn kept_by(rule: Rule, verdicts: &[Verdict]) -> BTreeSet<String> {
            verdicts
                .iter()
                .filter(|verdict| verdict.keep.iter().any(|keep| keep.rule == rule))
                .map(|verdict| verdict.id.clone())
                .collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]

            #[test]
            fn agrees_with_the_definition(
                retention in retention(),
                timezone in prop::sample::select(ZONES.to_vec()),
                candidates in history(),
            ) {
                let verdicts = decide(&retention, timezone, &candidates);

                // One verdict per candidate, newest first.
                let mut expected: Vec<(DateTime<Utc>, String)> = candidates
                    .iter()
                    .map(|candidate| (candidate.created_at, candidate.id.clone()))
                    .collect();
                expected.sort();
                expected.reverse();
                let got: Vec<(DateTime<Utc>, String)> = verdicts
                    .iter()
                    .map(|verdict| (verdict.created_at, verdict.id.clone()))
                    .collect();
                prop_assert_eq!(got, expected);

                let mut all_monotone = true;
                let mut reference = BTreeSet::new();
                for rule in COUNTING {
                    let count = count(&retention, rule);
                    if count == 0 {
                        prop_assert!(kept_by(rule, &verdicts).is_empty());
                        continue;
                    }
                    let decided = kept_by(rule, &verdicts);
                    let defined = reference_rule(rule, count, timezone, &candidates);
                    if monotone(rule, timezone, &candidates) {
                        prop_assert_eq!(&decided, &defined, "{}", rule);
                    } else {
                        // Only a fall-back that is not on the hour (Chatham's
                        // 03:45 to 02:45) makes local hours go back; there
                        // restic's rule (compare with the last bucket kept)
                        // and the definition part. See
                        // `compares_buckets_with_the_last_kept_one_like_restic`.
                        prop_assert_eq!(timezone, chrono_tz::Pacific::Chatham);
                        prop_assert_eq!(rule, Rule::Hourly);
                        prop_assert!(decided.len() <= count as usize + 1);
                        all_monotone = false;
                    }
                    reference.extend(defined);
                }
                let within = retention.within.unwrap_or_default();
                let in_window = reference_within(within, timezone, &candidates);
                prop_assert_eq!(&kept_by(Rule::Within, &verdicts), &in_window);
                reference.extend(in_window.iter().cloned());
                if all_monotone {
                    prop_assert_eq!(kept_ids(&verdicts), reference);
                }

                // "(oldest)" marks only the oldest backup, and only when a
                // newer backup holds the same bucket for that rule.
                for (position, verdict) in verdicts.iter().enumerate() {
                    for keep in verdict.keep.iter().filter(|keep| keep.oldest) {
                        prop_assert_eq!(position, verdicts.len() - 1);
                        let label = keep.rule.bucket(&verdict.created_at.with_timezone(&timezone));
                        let held = verdicts[..position].iter().any(|newer| {
                            newer.keep.iter().any(|other| {
                                other.rule == keep.rule && Some(&other.bucket) == label.as_ref()
                            })
                        });
                        prop_assert!(held, "{} (oldest) without a newer holder", keep.rule);
                    }
                }

                // The newest backup is kept whenever anything is.
                if verdicts.iter().any(Verdict::kept) {
                    prop_assert!(verdicts[0].kept());
                }

                // At most the counts, the window and one oldest per rule.
                let active = COUNTING
                    .iter()
                    .filter(|rule| count(&retention, **rule) > 0)
                    .count();
                let slots: usize = COUNTING
                    .iter()
                    .map(|rule| count(&retention, *rule) as usize)
                    .sum();
                prop_assert!(kept_ids(&verdicts).len() <= slots + in_window.len() + active);

                // Every backup dropped says why, once per active rule; a kept
                // one says nothing.
                let reasons = active + usize::from(!within.is_zero());
                for verdict in &verdicts {
                    if verdict.kept() {
                        prop_assert!(verdict.not_kept.is_empty());
                    } else {
                        prop_assert_eq!(verdict.not_kept.len(), reasons.max(1));
                    }
                }

                // Idempotent: the kept backups, decided again, are all kept,
                // each by the same rules. It holds because every backup a rule
                // keeps survives, so each rule meets the same bucket changes
                // (a bucket's newest backup is still its newest) and uses its
                // count on the same backups; the newest backup, and so the
                // keep-within window, stays the same; and the "oldest" extra
                // only fires when the rule had fewer buckets than slots, in
                // which case the oldest backup itself survived.
                let survivors: Vec<Candidate> = candidates
                    .iter()
                    .filter(|candidate| kept_ids(&verdicts).contains(&candidate.id))
                    .cloned()
                    .collect();
                let again = decide(&retention, timezone, &survivors);
                prop_assert_eq!(kept_ids(&again), kept_ids(&verdicts));
                for rule in COUNTING.into_iter().chain([Rule::Within]) {
                    prop_assert_eq!(kept_by(rule, &again), kept_by(rule, &verdicts), "{}", rule);
                }
            }
        }
    }

    #[test]
    fn pre_restore_backups_keep_the_newest_three_and_a_week() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        let candidates: Vec<Candidate> = [1, 2, 3, 5, 6, 20, 30]
            .iter()
            .map(|days| Candidate {
                id: format!("d{days:02}"),
                created_at: now - TimeDelta::days(*days),
            })
            .collect();
        let verdicts: Vec<(String, bool)> = decide_pre_restore(&candidates, now)
            .into_iter()
            .map(|(candidate, verdict)| (candidate.id, verdict.is_ok()))
            .collect();
        let expected: Vec<(String, bool)> = [
            ("d01", true),
            ("d02", true),
            ("d03", true),
            ("d05", true),
            ("d06", true),
            ("d20", false),
            ("d30", false),
        ]
        .iter()
        .map(|(id, kept)| ((*id).to_owned(), *kept))
        .collect();
        assert_eq!(verdicts, expected);
        // Old ones are kept while they are among the newest three.
        let old: Vec<Candidate> = candidates[5..].to_vec();
        assert!(
            decide_pre_restore(&old, now)
                .iter()
                .all(|(_, verdict)| verdict.is_ok())
        );
    }

    /// Ticks of a daily schedule at 01:00 UTC in `[start, end)`.
    fn daily_ticks(start: DateTime<Utc>, end: DateTime<Utc>, limit: usize) -> usize {
        let mut tick = start.date_naive().and_hms_opt(1, 0, 0).unwrap().and_utc();
        if tick < start {
            tick += TimeDelta::days(1);
        }
        let mut count = 0;
        while tick < end && count < limit {
            count += 1;
            tick += TimeDelta::days(1);
        }
        count
    }

    fn compliance_lines(rules_text: &str, times: &[&str]) -> Vec<String> {
        compliance(&rules(rules_text), Tz::UTC, &backups(times), &daily_ticks)
            .iter()
            .map(|compliance| format!("{compliance} ok={}", compliance.compliant()))
            .collect()
    }

    #[test]
    fn compliance_names_the_missing_periods() {
        // Sunday 1 November 2026 ends ISO week 44; Monday the 16th starts
        // week 47, the 23rd week 48: weeks 45 and 46 have no backup.
        let times = [
            "2026-10-20T01:00:00Z",
            "2026-11-01T01:00:00Z",
            "2026-11-16T01:00:00Z",
            "2026-11-23T01:00:00Z",
            "2026-11-24T01:00:00Z",
            "2026-11-25T01:00:00Z",
        ];
        assert_eq!(
            compliance_lines("last=3 daily=3 weekly=4 monthly=2", &times),
            [
                "last: 3 of 3 ok=true",
                "daily: 3 of 3 ok=true",
                "weekly: 2 of 4, missing 2026-W46, 2026-W45 ok=false",
                "monthly: 2 of 2 ok=true",
            ]
        );
        // Reaching back to week 44, which has one.
        assert_eq!(
            compliance_lines("weekly=5", &times[1..]),
            ["weekly: 3 of 5, missing 2026-W46, 2026-W45 ok=false"]
        );
    }

    #[test]
    fn a_young_history_is_compliant() {
        let times = ["2026-11-24T01:00:00Z", "2026-11-25T01:00:00Z"];
        assert_eq!(
            compliance_lines("last=7 daily=7 weekly=4", &times),
            [
                "last: 2 of 7 ok=true",
                "daily: 2 of 7 (history starts 2026-11-24) ok=true",
                "weekly: 1 of 4 (history starts 2026-W48) ok=true",
            ]
        );
        assert!(compliance(&rules("daily=7"), Tz::UTC, &[], &daily_ticks).is_empty());
    }

    #[test]
    fn periods_without_a_tick_are_not_expected() {
        // keep-hourly under a daily schedule: one backup a day is enough.
        let times = [
            "2026-11-23T01:00:00Z",
            "2026-11-24T01:00:00Z",
            "2026-11-25T01:00:00Z",
        ];
        assert_eq!(
            compliance_lines("hourly=3", &times),
            ["hourly: 3 of 3 ok=true"]
        );
    }
}
