//! The units of `spec.health`: `max-age` durations (`36h`, `1d12h`) and
//! `min-free` floors (`10%`, `20GiB`); and `spec.lease.ttl` (`2m`, `90s`).
//!
//! Parsers only, used by the policy checks and by `status`; they read nothing
//! and know nothing of the backups they will judge.

use chrono::Duration;

use crate::retention::Within;

/// A `max-age` value (`36h`, `2d`, `1d12h`; `m` is 30 days, `y` 365), if valid and not zero.
pub fn max_age(text: &str) -> Option<Duration> {
    let within: Within = text.parse().ok()?;
    let days =
        i64::from(within.years) * 365 + i64::from(within.months) * 30 + i64::from(within.days);
    let age = Duration::try_days(days)?.checked_add(&Duration::hours(within.hours.into()))?;
    (age > Duration::zero()).then_some(age)
}

/// The shortest `spec.lease.ttl`.
pub const LEASE_TTL_MIN: std::time::Duration = std::time::Duration::from_secs(2);
/// The longest `spec.lease.ttl`.
pub const LEASE_TTL_MAX: std::time::Duration = std::time::Duration::from_secs(3600);

/// A `spec.lease.ttl` (`2m`, `90s`, `1m30s`; `m` is minutes here; no
/// days, since no ttl is that long), if it parses.
pub fn lease_ttl(text: &str) -> Option<std::time::Duration> {
    if text.contains('d') {
        return None;
    }
    seconds(text).map(std::time::Duration::from_secs)
}

/// A duration of seconds, minutes, hours and days (`5m`, `1h30m`, `45s`,
/// `1d`; `m` is minutes) in seconds, if it parses.
pub fn seconds(text: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut number = String::new();
    for character in text.chars() {
        if character.is_ascii_digit() {
            number.push(character);
            continue;
        }
        let unit = match character {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        let value: u64 = number.parse().ok()?;
        total = total.checked_add(value.checked_mul(unit)?)?;
        number.clear();
    }
    (number.is_empty() && !text.is_empty()).then_some(total)
}

/// `spec.health.min-free`: a floor of free space, as a share of the file
/// system or a size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinFree {
    Percent(f64),
    Bytes(u64),
}

impl MinFree {
    /// `10%`, `2.5%`, `20GiB`, `500MiB`, `4096B`; `None` for anything else
    /// (and for a share above 100%).
    pub fn parse(text: &str) -> Option<MinFree> {
        if let Some(share) = text.strip_suffix('%') {
            let valid = !share.is_empty()
                && share.chars().all(|c| c.is_ascii_digit() || c == '.')
                && !share.starts_with('.');
            let share: f64 = share.parse().ok().filter(|_| valid)?;
            return (share <= 100.0).then_some(MinFree::Percent(share));
        }
        const UNITS: [(&str, u32); 5] =
            [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10), ("B", 0)];
        let (number, shift) = UNITS
            .iter()
            .find_map(|(unit, shift)| Some((text.strip_suffix(unit)?, *shift)))?;
        if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        number
            .parse::<u64>()
            .ok()?
            .checked_mul(1 << shift)
            .map(MinFree::Bytes)
    }

    /// The floor in bytes on a file system of `total` bytes.
    pub fn bytes(self, total: u64) -> u64 {
        match self {
            MinFree::Percent(share) => (total as f64 * share / 100.0) as u64,
            MinFree::Bytes(bytes) => bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_ttls_read_minutes_as_minutes() {
        let seconds = |text: &str| lease_ttl(text).map(|ttl| ttl.as_secs());
        assert_eq!(seconds("2m"), Some(120));
        assert_eq!(seconds("90s"), Some(90));
        assert_eq!(seconds("1m30s"), Some(90));
        assert_eq!(seconds("1h"), Some(3600));
        for invalid in ["", "2", "m", "2d", "1.5m", "-2s", "2 m"] {
            assert_eq!(lease_ttl(invalid), None, "{invalid:?}");
        }
    }
}
