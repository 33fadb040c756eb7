//! When backups are due: a 5-field crontab expression read in an IANA time zone.
//!
//! Pure: every function takes the instant it reasons about as an argument and
//! never reads the clock. Parsing accepts standard crontab syntax only
//! (numbers, names, `*`, `,`, `-`, `/` and the `@hourly`-style nicknames), so
//! every schedule can also be written into a real crontab.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// Why a schedule is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("invalid cron expression `{expression}`: {reason}")]
    Cron { expression: String, reason: String },
    #[error("unknown time zone `{0}`")]
    TimeZone(String),
}

/// The nicknames crontab understands (besides `@reboot`, which is no schedule).
pub const NICKNAMES: [&str; 7] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// Month and weekday names crontab accepts.
const NAMES: [&str; 19] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec", "sun",
    "mon", "tue", "wed", "thu", "fri", "sat",
];

/// A parsed schedule.
#[derive(Clone)]
pub struct Schedule {
    expression: String,
    cron: Cron,
    timezone: Tz,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "Schedule({:?} in {})",
            self.expression, self.timezone
        )
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression && self.timezone == other.timezone
    }
}

impl Schedule {
    /// Parses `expression` (5 fields or a nickname) in the time zone `timezone`.
    pub fn parse(expression: &str, timezone: &str) -> Result<Schedule, Error> {
        let timezone = parse_timezone(timezone)?;
        let cron = parse_cron(expression)?;
        Ok(Schedule {
            expression: expression.trim().to_owned(),
            cron,
            timezone,
        })
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The first tick strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.timezone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|tick| tick.with_timezone(&Utc))
    }

    /// The last tick at or before `at`.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&self.timezone);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|tick| tick.with_timezone(&Utc))
    }
}

/// Parses an IANA time zone name.
pub fn parse_timezone(name: &str) -> Result<Tz, Error> {
    Tz::from_str(name).map_err(|_| Error::TimeZone(name.to_owned()))
}

/// The closest known time zone name, for "did you mean" hints.
pub fn timezone_names() -> impl Iterator<Item = &'static str> {
    chrono_tz::TZ_VARIANTS
        .iter()
        .map(|timezone| timezone.name())
}

fn parse_cron(expression: &str) -> Result<Cron, Error> {
    let trimmed = expression.trim();
    let fail = |reason: String| Error::Cron {
        expression: expression.to_owned(),
        reason,
    };
    if trimmed.starts_with('@') {
        if !NICKNAMES
            .iter()
            .any(|nickname| nickname.eq_ignore_ascii_case(trimmed))
        {
            return Err(fail(format!(
                "unknown nickname; use one of {}",
                NICKNAMES.join(", ")
            )));
        }
    } else {
        let fields = trimmed.split_whitespace().count();
        if fields != 5 {
            return Err(fail(format!(
                "{fields} field{} where crontab takes 5 (minute hour day-of-month month day-of-week)",
                if fields == 1 { "" } else { "s" }
            )));
        }
        check_ranges(trimmed).map_err(fail)?;
        if let Some(character) = trimmed.chars().find(|character| {
            !(character.is_ascii_alphanumeric() || " \t*,-/".contains(*character))
        }) {
            return Err(fail(format!("`{character}` is not crontab syntax")));
        }
        // Letters only as month and weekday names (jan, mon); not `L`, `W` or `#`-style extensions.
        if let Some(word) = trimmed
            .split(|character: char| !character.is_ascii_alphabetic())
            .filter(|word| !word.is_empty())
            .find(|word| !NAMES.contains(&word.to_ascii_lowercase().as_str()))
        {
            return Err(fail(format!(
                "`{word}` is not crontab syntax (names are jan..dec and sun..sat)"
            )));
        }
    }
    // croner's `@midnight` is missing; it means the same as `@daily`.
    let normalized = if trimmed.eq_ignore_ascii_case("@midnight") {
        "@daily"
    } else {
        trimmed
    };
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(normalized)
        .map_err(|error| fail(error.to_string()))
}

/// Numbers outside a field's range, named by field ("hour `25` is out of range 0-23").
fn check_ranges(expression: &str) -> Result<(), String> {
    const FIELDS: [(&str, u32, u32); 5] = [
        ("minute", 0, 59),
        ("hour", 0, 23),
        ("day-of-month", 1, 31),
        ("month", 1, 12),
        ("day-of-week", 0, 7),
    ];
    for ((name, min, max), field) in FIELDS.iter().zip(expression.split_whitespace()) {
        for item in field.split(',') {
            let (range, step) = item
                .split_once('/')
                .map_or((item, None), |(range, step)| (range, Some(step)));
            if step.is_some_and(|step| step.parse::<u32>().is_ok_and(|step| step == 0)) {
                return Err(format!("{name} step `/0` never advances"));
            }
            for bound in range.split('-') {
                if let Ok(number) = bound.parse::<u32>()
                    && (number < *min || number > *max)
                {
                    return Err(format!("{name} `{number}` is out of range {min}-{max}"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    #[test]
    fn accepts_crontab_syntax_and_nicknames() {
        for expression in [
            "0 1 * * *",
            "*/15 * * * *",
            "30 2 1-7 * mon",
            "0 0 1 jan,jul *",
            "@daily",
            "@HOURLY",
            "@midnight",
            "@annually",
        ] {
            Schedule::parse(expression, "UTC")
                .unwrap_or_else(|error| panic!("{expression}: {error}"));
        }
    }

    #[test]
    fn refuses_what_crontab_does_not_read() {
        for (expression, needle) in [
            ("0 1 * *", "4 fields"),
            ("0 0 1 * * *", "6 fields"),
            ("0 1 L * *", "`L` is not crontab syntax"),
            ("0 1 * * 5L", "`L` is not crontab syntax"),
            ("0 1 * * monday", "`monday` is not crontab syntax"),
            ("0 1 ? * *", "`?` is not crontab syntax"),
            ("61 1 * * *", "minute `61` is out of range 0-59"),
            ("0 25 * * *", "hour `25` is out of range 0-23"),
            ("0 1 0 * *", "day-of-month `0` is out of range 1-31"),
            ("*/0 * * * *", "step `/0` never advances"),
            ("@reboot", "unknown nickname"),
            ("", "0 fields"),
        ] {
            let error = Schedule::parse(expression, "UTC").unwrap_err().to_string();
            assert!(error.contains(needle), "{expression}: {error}");
        }
        assert_eq!(
            Schedule::parse("@daily", "Europe/Berln").unwrap_err(),
            Error::TimeZone("Europe/Berln".to_owned())
        );
    }

    #[test]
    fn reads_the_expression_in_its_time_zone() {
        let schedule = Schedule::parse("0 1 * * *", "Europe/Berlin").unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        // 01:00 in Berlin (UTC+1 in November) is 00:00 UTC.
        assert_eq!(
            schedule.next_after(now),
            Some(Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap())
        );
        assert_eq!(
            schedule.latest_at_or_before(now),
            Some(Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).unwrap())
        );
    }
}
