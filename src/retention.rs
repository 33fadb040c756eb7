//! Retention rules: which backups to keep, with restic's `keep-*` semantics.
//!
//! Pure: rules are values and every decision takes `now` as an argument. This
//! module never lists, reads or deletes anything; `plan` feeds it the
//! inventory and turns its answer into prune actions.

use std::fmt;
use std::str::FromStr;

use crate::policy::spec::RetentionSpec;

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
    pub fn from_spec(spec: &RetentionSpec) -> Result<Retention, Error> {
        let within = spec
            .keep_within
            .as_deref()
            .map(Within::from_str)
            .transpose()?;
        Ok(Retention {
            last: spec.keep_last.unwrap_or(0),
            hourly: spec.keep_hourly.unwrap_or(0),
            daily: spec.keep_daily.unwrap_or(0),
            weekly: spec.keep_weekly.unwrap_or(0),
            monthly: spec.keep_monthly.unwrap_or(0),
            yearly: spec.keep_yearly.unwrap_or(0),
            within,
        })
    }

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

    #[test]
    fn knows_when_rules_keep_nothing() {
        let nothing = RetentionSpec {
            keep_daily: Some(0),
            keep_within: Some("0d".to_owned()),
            ..RetentionSpec::default()
        };
        assert!(!Retention::from_spec(&nothing).unwrap().keeps_something());
        let something = RetentionSpec {
            keep_within: Some("1h".to_owned()),
            ..RetentionSpec::default()
        };
        assert!(Retention::from_spec(&something).unwrap().keeps_something());
    }
}
