//! How sizes, ages and times read in messages: `1.5 KiB`, `3 h ago`,
//! `2026-11-25 01:00 CET`.
//!
//! A leaf: every layer formats with it (plans, statuses, notifications,
//! command output), so it imports nothing of the crate and does no I/O.

use chrono::{DateTime, Duration, Utc};

/// `1536` → `1.5 KiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `2026-11-25 01:00 CET`: a time as people in the policy's time zone read it.
pub fn local_time(time: DateTime<Utc>, timezone: chrono_tz::Tz) -> String {
    time.with_timezone(&timezone)
        .format("%Y-%m-%d %H:%M %Z")
        .to_string()
}

/// `3 h ago`, `45 min ago`; `2 d in the future` for a time after `now`
/// (a record from a host whose clock runs ahead, or a `--now` in the past).
pub fn human_ago(age: Duration) -> String {
    if age.num_minutes() < 0 {
        format!("{} in the future", human_age(-age))
    } else {
        format!("{} ago", human_age(age))
    }
}

/// `3 h`, `2 d`, `45 min`: a length of time (see [`human_ago`] for a time before now).
pub fn human_age(age: Duration) -> String {
    let minutes = age.num_minutes();
    if minutes < 120 {
        format!("{minutes} min")
    } else if minutes < 48 * 60 {
        format!("{} h", minutes / 60)
    } else {
        format!("{} d", minutes / (24 * 60))
    }
}
