//! systemd units rendered from the policies: per policy a `.service` that
//! runs `backup apply --policy NAME` once and a `.timer` that starts it on
//! the policy's schedule, plus the daily health check.
//!
//! Pure: [`render`] turns schedules into unit text and reads nothing; the
//! folder the units go to is read and written by the caller. As with the
//! crontab, a timer only wakes `backup apply`, which reads the inventory and
//! decides what is due, so a timer may fire more often than its schedule but
//! must never miss a tick ([`on_calendar`] says where the two differ).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{
    DateTime, Datelike as _, LocalResult, NaiveDateTime, TimeDelta, TimeZone as _, Timelike as _,
    Utc,
};

use super::{RenderedFile, Schedule, managed_header};

/// The health check's units: `backup-status.service` and `.timer`.
pub const STATUS_UNIT: &str = "backup-status";

/// Why units cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("cannot write {what} into a systemd unit: {reason}")]
    Unrepresentable { what: String, reason: String },
}

fn unrepresentable(what: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Unrepresentable {
        what: what.into(),
        reason: reason.into(),
    }
}

/// What every `ExecStart=` runs; all absolute.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The `backup` binary.
    pub binary: PathBuf,
    /// Each `--policies` path, in order.
    pub policy_paths: Vec<PathBuf>,
    pub state_dir: PathBuf,
}

/// One policy's timer (and, with base backups, its second timer).
#[derive(Debug, Clone)]
pub struct Timer<'a> {
    pub policy: &'a str,
    /// The policy file, named in the units' first line.
    pub file: &'a Path,
    pub schedule: &'a Schedule,
    /// `spec.physical`'s schedule: a second timer starts the same service.
    pub base_backups: Option<&'a Schedule>,
}

/// Choices beside the schedules.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `RandomizedDelaySec=`, in seconds.
    pub randomized_delay: Option<u64>,
    /// Units for a user's manager (`systemctl --user`): no
    /// `network-online.target`, which only the system manager has.
    pub user_manager: bool,
}

/// Every unit for `timers`, sorted by name; none when there are no timers.
/// Each starts with the managed-by line ([`super::MANAGED_MARKER`]).
pub fn render(
    timers: &[Timer],
    invocation: &Invocation,
    options: &Options,
    now: DateTime<Utc>,
) -> Result<Vec<RenderedFile>, Error> {
    if timers.is_empty() {
        return Ok(Vec::new());
    }
    let mut files = Vec::new();
    for timer in timers {
        let name = format!("backup-{}", timer.policy);
        if name == STATUS_UNIT {
            return Err(unrepresentable(
                format!("policy `{}`", timer.policy),
                format!(
                    "its units would be the health check's ({STATUS_UNIT}.service); rename the policy"
                ),
            ));
        }
        let origin = format!("policy {} in {}", timer.policy, timer.file.display());
        let arguments = [
            "apply",
            "--policy",
            timer.policy,
            "--auto-approve",
            "--scheduler",
            "systemd",
        ];
        files.push(RenderedFile {
            name: format!("{name}.service"),
            text: service(
                &origin,
                &format!("backup: apply policy {}", timer.policy),
                &command(invocation, &arguments)?,
                options,
            ),
        });
        files.push(RenderedFile {
            name: format!("{name}.timer"),
            text: timer_unit(
                &origin,
                &format!("backup: policy {} on its schedule", timer.policy),
                None,
                &calendar(timer.schedule, now)?,
                options,
            ),
        });
        if let Some(base) = timer.base_backups {
            files.push(RenderedFile {
                name: format!("{name}.base.timer"),
                text: timer_unit(
                    &origin,
                    &format!(
                        "backup: policy {} at its base backups' schedule",
                        timer.policy
                    ),
                    Some(&format!("{name}.service")),
                    &calendar(base, now)?,
                    options,
                ),
            });
        }
    }
    let paths: Vec<String> = invocation
        .policy_paths
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    let origin = format!("the policies in {}", paths.join(", "));
    files.push(RenderedFile {
        name: format!("{STATUS_UNIT}.service"),
        text: service(
            &origin,
            "backup: daily health check, notifying policies that turn critical",
            &command(
                invocation,
                &["status", "--notify-critical", "--scheduler", "systemd"],
            )?,
            options,
        ),
    });
    // The health check runs on the host's clock, as the crontab's line does.
    let status = super::crontab::STATUS_SCHEDULE;
    let lines = Fields::parse(status)
        .map_err(|reason| unrepresentable(format!("schedule `{status}`"), reason))?
        .lines();
    files.push(RenderedFile {
        name: format!("{STATUS_UNIT}.timer"),
        text: timer_unit(
            &origin,
            "backup: daily health check",
            None,
            &Calendar {
                comment: format!("{status} (the host's clock)"),
                lines,
                extra: Vec::new(),
            },
            &Options {
                randomized_delay: None,
                ..*options
            },
        ),
    });
    files.sort_by(|left, right| left.name.cmp(&right.name));
    Ok(files)
}

fn service(origin: &str, description: &str, exec_start: &str, options: &Options) -> String {
    let network = if options.user_manager {
        ""
    } else {
        "After=network-online.target\nWants=network-online.target\n"
    };
    format!(
        "{}[Unit]\nDescription={description}\n{network}\n[Service]\nType=oneshot\nExecStart={exec_start}\nStandardOutput=journal\nStandardError=journal\n",
        managed_header(origin)
    )
}

fn timer_unit(
    origin: &str,
    description: &str,
    unit: Option<&str>,
    calendar: &Calendar,
    options: &Options,
) -> String {
    let mut text = format!(
        "{}[Unit]\nDescription={description}\n\n[Timer]\n# {}\n",
        managed_header(origin),
        calendar.comment
    );
    for line in &calendar.lines {
        text.push_str(&format!("OnCalendar={line}\n"));
    }
    if !calendar.extra.is_empty() {
        text.push_str("# Where a daylight saving change moves a tick or repeats it, in UTC (apply decides what is due):\n");
        for line in &calendar.extra {
            text.push_str(&format!("OnCalendar={line}\n"));
        }
    }
    if let Some(unit) = unit {
        text.push_str(&format!("Unit={unit}\n"));
    }
    // One missed run is taken after downtime, not one per missed tick.
    text.push_str("Persistent=true\n");
    if let Some(delay) = options.randomized_delay.filter(|delay| *delay > 0) {
        text.push_str(&format!("RandomizedDelaySec={delay}\n"));
    }
    text.push_str("\n[Install]\nWantedBy=timers.target\n");
    text
}

/// A schedule as `OnCalendar=` values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    /// The schedule as the policy writes it, for the comment above.
    pub comment: String,
    /// The schedule's own lines, in its time zone.
    pub lines: Vec<String>,
    /// Lines in UTC for ticks a daylight saving change moves or repeats,
    /// which the lines above would miss.
    pub extra: Vec<String>,
}

impl Calendar {
    /// Every `OnCalendar=` value.
    pub fn all(&self) -> Vec<String> {
        self.lines.iter().chain(&self.extra).cloned().collect()
    }
}

/// The `OnCalendar=` values that fire at every tick of `schedule`.
///
/// Where they differ: crontab reads day-of-month and day-of-week as "either"
/// when both are restricted, systemd as "both", so such a schedule becomes
/// two lines. systemd reads a wall clock time in the schedule's zone: one
/// the clock skips (spring forward) does not fire at all, and one that
/// happens twice fires the first time only. The schedule runs a fixed-time
/// job right after the jump and a wildcard job (`0 * * * *`) both times (as
/// Vixie cron does), so those ticks get lines of their own in UTC, each for
/// the weekday and week of the month the zone changes its clock on (found
/// over the three years from `now`'s; a zone whose changes follow no weekday
/// rule gets their dates). Those lines may also fire in a year when the
/// change falls on another day of that week: more often, never less.
pub fn calendar(schedule: &Schedule, now: DateTime<Utc>) -> Result<Calendar, Error> {
    let fields = Fields::parse(schedule.expression()).map_err(|reason| {
        unrepresentable(format!("schedule `{}`", schedule.expression()), reason)
    })?;
    let zone = schedule.timezone();
    let suffix = format!(" {}", zone.name());
    let lines = fields
        .lines()
        .into_iter()
        .map(|line| line + &suffix)
        .collect();
    Ok(Calendar {
        comment: format!("{} ({})", schedule.expression(), zone.name()),
        lines,
        extra: extra_lines(&missed_ticks(schedule, &fields, now)),
    })
}

/// The ticks of `schedule` near its zone's clock changes (over three years
/// from the start of `now`'s year) that systemd would not fire at.
fn missed_ticks(schedule: &Schedule, fields: &Fields, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let zone = schedule.timezone();
    let Some(from) = Utc.with_ymd_and_hms(now.year(), 1, 1, 0, 0, 0).single() else {
        return Vec::new();
    };
    let to = from + TimeDelta::days(3 * 366);
    let mut missed = Vec::new();
    for change in super::crontab::offset_changes(zone, from, to) {
        let around =
            schedule.ticks_between(change - TimeDelta::days(1), change + TimeDelta::days(1));
        for tick in around {
            let wall = tick.with_timezone(&zone).naive_local();
            let fires = fields.matches(wall)
                && match zone.from_local_datetime(&wall) {
                    LocalResult::Single(_) => true,
                    LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc) == tick,
                    LocalResult::None => false,
                };
            if !fires && !missed.contains(&tick) {
                missed.push(tick);
            }
        }
    }
    missed
}

/// `OnCalendar=` values in UTC that fire at `ticks`, on the weekday and
/// week of the month each falls in.
fn extra_lines(ticks: &[DateTime<Utc>]) -> Vec<String> {
    // (month, hour, minute) -> the dates
    let mut by_time: BTreeMap<(u32, u32, u32), Vec<chrono::NaiveDate>> = BTreeMap::new();
    for tick in ticks {
        by_time
            .entry((tick.month(), tick.hour(), tick.minute()))
            .or_default()
            .push(tick.date_naive());
    }
    // (month, weekday and days, hour) -> the minutes
    let mut lines: BTreeMap<(u32, String, u32), BTreeSet<u32>> = BTreeMap::new();
    for ((month, hour, minute), dates) in by_time {
        let weekdays: BTreeSet<u32> = dates
            .iter()
            .map(|date| date.weekday().num_days_from_sunday())
            .collect();
        let days: BTreeSet<u32> = dates.iter().map(|date| date.day()).collect();
        let day_text = match (weekdays.len(), week_of_month(&days, month)) {
            (1, Some((first, last))) => {
                let weekday = weekdays.iter().next().copied().unwrap_or_default();
                format!(
                    "{} *-{month:02}-{first:02}..{last:02}",
                    WEEKDAYS[weekday as usize]
                )
            }
            _ => {
                // No weekday rule: the dates themselves.
                let list: Vec<String> = dates
                    .iter()
                    .map(|date| date.format("%Y-%m-%d").to_string())
                    .collect();
                list.join(",")
            }
        };
        lines
            .entry((month, day_text, hour))
            .or_default()
            .insert(minute);
    }
    lines
        .into_iter()
        .flat_map(|((_, day_text, hour), minutes)| {
            if day_text.contains(',') {
                // Dates cannot be listed in one value: one line each.
                day_text
                    .split(',')
                    .map(|date| format!("{date} {hour:02}:{}:00 UTC", list(&minutes, 2)))
                    .collect::<Vec<_>>()
            } else {
                vec![format!("{day_text} {hour:02}:{}:00 UTC", list(&minutes, 2))]
            }
        })
        .collect::<BTreeSet<String>>()
        .into_iter()
        .collect()
}

/// The week of the month (days 1-7, 8-14, 15-21, 22-28, or the month's last
/// seven) that holds every one of `days`.
fn week_of_month(days: &BTreeSet<u32>, month: u32) -> Option<(u32, u32)> {
    let last = match month {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    // February's last week is 22-28 or 23-29: both.
    let last_week = if month == 2 {
        (22, 29)
    } else {
        (last - 6, last)
    };
    [(1, 7), (8, 14), (15, 21), (22, 28), last_week]
        .into_iter()
        .find(|(first, last)| days.iter().all(|day| (*first..=*last).contains(day)))
}

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// A crontab expression's fields, each expanded to the values it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fields {
    minutes: BTreeSet<u32>,
    hours: BTreeSet<u32>,
    days: BTreeSet<u32>,
    months: BTreeSet<u32>,
    /// 0 is Sunday.
    weekdays: BTreeSet<u32>,
    /// Both day fields are restricted: a day matches either, as
    /// [`Schedule`] reads them.
    either_day: bool,
}

impl Fields {
    fn parse(expression: &str) -> Result<Fields, String> {
        let expression = expression.trim();
        let expanded = match expression.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *".to_owned(),
            "@monthly" => "0 0 1 * *".to_owned(),
            "@weekly" => "0 0 * * 0".to_owned(),
            "@daily" | "@midnight" => "0 0 * * *".to_owned(),
            "@hourly" => "0 * * * *".to_owned(),
            other if other.starts_with('@') => return Err(format!("unknown nickname `{other}`")),
            other => other.to_owned(),
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(format!("{} fields where crontab takes 5", fields.len()));
        };
        const MONTHS: [&str; 12] = [
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ];
        const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
        let weekdays = expand(weekday, 0, 7, &DAYS, 0)?
            .into_iter()
            .map(|day| day % 7)
            .collect();
        Ok(Fields {
            minutes: expand(minute, 0, 59, &[], 0)?,
            hours: expand(hour, 0, 23, &[], 0)?,
            days: expand(day, 1, 31, &[], 0)?,
            months: expand(month, 1, 12, &MONTHS, 1)?,
            weekdays,
            either_day: day != "*" && weekday != "*",
        })
    }

    /// Whether the wall clock time `wall` matches.
    fn matches(&self, wall: NaiveDateTime) -> bool {
        let day = self.days.contains(&wall.day());
        let weekday = self
            .weekdays
            .contains(&wall.weekday().num_days_from_sunday());
        self.minutes.contains(&wall.minute())
            && self.hours.contains(&wall.hour())
            && self.months.contains(&wall.month())
            && if self.either_day {
                day || weekday
            } else {
                day && weekday
            }
    }

    /// The `OnCalendar=` values without a zone: two when a day may match
    /// either day field (systemd requires both), else one.
    fn lines(&self) -> Vec<String> {
        let all_days: BTreeSet<u32> = (1..=31).collect();
        let all_weekdays: BTreeSet<u32> = (0..7).collect();
        let line = |weekdays: &BTreeSet<u32>, days: &BTreeSet<u32>| {
            let weekday = if weekdays.len() == 7 {
                String::new()
            } else {
                format!("{} ", weekday_list(weekdays))
            };
            format!(
                "{weekday}*-{}-{} {}:{}:00",
                list_or_star_width(&self.months, 12, 2),
                list_or_star_width(days, 31, 2),
                list_or_star_width(&self.hours, 24, 2),
                list_or_star_width(&self.minutes, 60, 2),
            )
        };
        if self.either_day {
            vec![
                line(&all_weekdays, &self.days),
                line(&self.weekdays, &all_days),
            ]
        } else {
            vec![line(&self.weekdays, &self.days)]
        }
    }
}

/// Expands one crontab field: `*`, numbers, names (`names[0]` is worth
/// `first_name`), ranges, lists and steps.
fn expand(
    field: &str,
    min: u32,
    max: u32,
    names: &[&str],
    first_name: u32,
) -> Result<BTreeSet<u32>, String> {
    let value = |text: &str| -> Result<u32, String> {
        if let Ok(number) = text.parse::<u32>() {
            return if (min..=max).contains(&number) {
                Ok(number)
            } else {
                Err(format!("`{number}` is out of range {min}-{max}"))
            };
        }
        let lower = text.to_ascii_lowercase();
        names
            .iter()
            .position(|name| *name == lower)
            .map(|index| first_name + u32::try_from(index).unwrap_or(0))
            .ok_or_else(|| format!("`{text}` is not a value of this field"))
    };
    let mut values = BTreeSet::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (
                range,
                Some(
                    step.parse::<u32>()
                        .ok()
                        .filter(|step| *step > 0)
                        .ok_or_else(|| format!("`/{step}` is not a step"))?,
                ),
            ),
            None => (item, None),
        };
        let (low, high) = if range == "*" {
            (min, max)
        } else if let Some((low, high)) = range.split_once('-') {
            (value(low)?, value(high)?)
        } else {
            let low = value(range)?;
            (low, if step.is_some() { max } else { low })
        };
        if low > high {
            return Err(format!("the range `{range}` runs backwards"));
        }
        values.extend((low..=high).step_by(step.unwrap_or(1) as usize));
    }
    Ok(values)
}

fn list_or_star_width(values: &BTreeSet<u32>, count: usize, width: usize) -> String {
    if values.len() == count {
        "*".to_owned()
    } else {
        list(values, width)
    }
}

/// `1,3..5,9`: runs of three or more as ranges, numbers `width` digits wide.
fn list(values: &BTreeSet<u32>, width: usize) -> String {
    runs(values)
        .into_iter()
        .map(|(first, last)| match last - first {
            0 => format!("{first:0width$}"),
            1 => format!("{first:0width$},{last:0width$}"),
            _ => format!("{first:0width$}..{last:0width$}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn weekday_list(values: &BTreeSet<u32>) -> String {
    runs(values)
        .into_iter()
        .map(|(first, last)| {
            let (first_name, last_name) = (WEEKDAYS[first as usize], WEEKDAYS[last as usize]);
            match last - first {
                0 => first_name.to_owned(),
                1 => format!("{first_name},{last_name}"),
                _ => format!("{first_name}..{last_name}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Consecutive runs of `values`, as (first, last).
fn runs(values: &BTreeSet<u32>) -> Vec<(u32, u32)> {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for value in values {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == *value => *last = *value,
            _ => runs.push((*value, *value)),
        }
    }
    runs
}

/// The `ExecStart=` command line: every word quoted for systemd.
fn command(invocation: &Invocation, arguments: &[&str]) -> Result<String, Error> {
    let mut words = vec![program_word(&invocation.binary)?];
    for path in &invocation.policy_paths {
        words.push("--policies".to_owned());
        words.push(path_word("a policies path", path)?);
    }
    words.push("--state-dir".to_owned());
    words.push(path_word("the state directory", &invocation.state_dir)?);
    for argument in arguments {
        words.push(
            exec_word(argument)
                .map_err(|reason| unrepresentable(format!("`{argument}`"), reason))?,
        );
    }
    Ok(words.join(" "))
}

fn path_word(what: &str, path: &Path) -> Result<String, Error> {
    let fail = |reason: &str| unrepresentable(format!("{what} {}", path.display()), reason);
    if !path.is_absolute() {
        return Err(fail("it is not absolute"));
    }
    let text = path.to_str().ok_or_else(|| fail("it is not UTF-8"))?;
    exec_word(text).map_err(|reason| fail(&reason))
}

/// The program of an `ExecStart=` line: systemd takes it as a path, with
/// specifiers (`%%`) but no variables, and refuses quotes and backslashes in it.
fn program_word(path: &Path) -> Result<String, Error> {
    let fail =
        |reason: &str| unrepresentable(format!("the backup binary {}", path.display()), reason);
    if !path.is_absolute() {
        return Err(fail("it is not absolute"));
    }
    let text = path.to_str().ok_or_else(|| fail("it is not UTF-8"))?;
    if text
        .chars()
        .any(|character| character.is_control() || "\"'\\".contains(character))
    {
        return Err(fail(
            "systemd refuses a program path holding quotes, backslashes or control characters; install backup elsewhere",
        ));
    }
    let escaped = text.replace('%', "%%");
    Ok(if text.contains(char::is_whitespace) {
        format!("\"{escaped}\"")
    } else {
        escaped
    })
}

/// One word of an `ExecStart=` line, as systemd splits and unescapes it
/// (systemd.service(5), "Command lines"): plain when it holds only
/// characters systemd gives no meaning, else in double quotes with `\` and
/// `"` escaped; `%` (specifiers) written `%%` and `$` (variables) `$$`
/// either way. A line break or NUL cannot be written.
pub fn exec_word(text: &str) -> Result<String, String> {
    if text.contains(['\n', '\r', '\0']) {
        return Err("a unit's line cannot hold a line break or NUL".to_owned());
    }
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || "/._,+:=@-".contains(character));
    if plain {
        return Ok(text.to_owned());
    }
    let mut word = String::from("\"");
    for character in text.chars() {
        match character {
            '\\' => word.push_str(r"\\"),
            '"' => word.push_str("\\\""),
            '%' => word.push_str("%%"),
            '$' => word.push_str("$$"),
            other => word.push(other),
        }
    }
    word.push('"');
    Ok(word)
}

/// Whether systemd runs as PID 1 here (`/proc/1/comm` is `systemd`, or
/// `/run/systemd/system` exists), so that `systemctl` can reload it.
pub fn is_running() -> bool {
    std::fs::read_to_string("/proc/1/comm").is_ok_and(|name| name.trim() == "systemd")
        || Path::new("/run/systemd/system").is_dir()
}

/// Runs `systemctl [--user] ARGUMENTS`; its complaint is the error.
pub fn systemctl(user: bool, arguments: &[&str]) -> Result<(), String> {
    let mut command = std::process::Command::new("systemctl");
    if user {
        command.arg("--user");
    }
    command.args(arguments).env("LC_ALL", "C");
    let shown = format!(
        "systemctl {}{}",
        if user { "--user " } else { "" },
        arguments.join(" ")
    );
    let output = command
        .output()
        .map_err(|error| format!("cannot run `{shown}`: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{shown}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(expression: &str) -> Vec<String> {
        Fields::parse(expression).unwrap().lines()
    }

    #[test]
    fn crontab_fields_become_calendar_values() {
        for (expression, expected) in [
            ("0 1 * * *", vec!["*-*-* 01:00:00"]),
            ("*/15 * * * *", vec!["*-*-* *:00,15,30,45:00"]),
            ("15,45 1-3 * * *", vec!["*-*-* 01..03:15,45:00"]),
            ("0 3 * * 0", vec!["Sun *-*-* 03:00:00"]),
            ("0 3 * * 7", vec!["Sun *-*-* 03:00:00"]),
            ("5 4 * jan,jul mon-fri", vec!["Mon..Fri *-01,07-* 04:05:00"]),
            ("0 0 1 * *", vec!["*-*-01 00:00:00"]),
            ("@weekly", vec!["Sun *-*-* 00:00:00"]),
            ("@yearly", vec!["*-01-01 00:00:00"]),
            ("0 */6 * * *", vec!["*-*-* 00,06,12,18:00:00"]),
            ("0 9-17/2 * * *", vec!["*-*-* 09,11,13,15,17:00:00"]),
            ("0 0 5/10 * *", vec!["*-*-05,15,25 00:00:00"]),
            // Either day field, as cron reads it: two lines.
            (
                "0 4 1,15 * mon",
                vec!["*-*-01,15 04:00:00", "Mon *-*-* 04:00:00"],
            ),
            ("0 0 * * sat,sun", vec!["Sun,Sat *-*-* 00:00:00"]),
        ] {
            assert_eq!(lines(expression), expected, "{expression}");
        }
    }

    #[test]
    fn what_systemd_splits_on_is_quoted_and_specifiers_escaped() {
        for (text, word) in [
            ("/usr/bin/backup", "/usr/bin/backup"),
            ("app-db", "app-db"),
            ("/srv/back up", "\"/srv/back up\""),
            ("100%", "\"100%%\""),
            ("$HOME", "\"$$HOME\""),
            ("it's", "\"it's\""),
            ("say \"hi\"", r#""say \"hi\"""#),
            (r"a\b", r#""a\\b""#),
            ("a;b", "\"a;b\""),
            ("", "\"\""),
        ] {
            assert_eq!(exec_word(text).unwrap(), word, "{text}");
        }
        assert!(exec_word("a\nb").is_err());
    }

    #[test]
    fn a_policy_named_like_the_health_check_is_refused() {
        let schedule = Schedule::parse("@daily", "UTC").unwrap();
        let timers = [Timer {
            policy: "status",
            file: Path::new("/p/status.yaml"),
            schedule: &schedule,
            base_backups: None,
        }];
        let invocation = Invocation {
            binary: PathBuf::from("/usr/bin/backup"),
            policy_paths: vec![PathBuf::from("/p")],
            state_dir: PathBuf::from("/var/lib/backup"),
        };
        let error = render(&timers, &invocation, &Options::default(), Utc::now()).unwrap_err();
        assert!(error.to_string().contains("health check"), "{error}");
        assert_eq!(
            render(&[], &invocation, &Options::default(), Utc::now()),
            Ok(Vec::new())
        );
    }
}
