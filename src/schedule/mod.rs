//! When backups are due: a 5-field crontab expression read in an IANA time zone.
//!
//! Pure: every function takes the instant it reasons about as an argument and
//! never reads the clock. Parsing accepts standard crontab syntax only
//! (numbers, names, `*`, `,`, `-`, `/` and the `@hourly`-style nicknames), so
//! every schedule can also be written into a real crontab. At daylight saving
//! changes, ticks follow Vixie cron, as Debian's `cron` does (see
//! [`Schedule::next_after`]), so the host's cron and `backup` agree.
//!
//! [`crontab`] is the exception: it renders schedules into the host's
//! crontab and reads and writes that crontab; [`systemd`] and [`kubernetes`]
//! render them as units and manifests, which [`folder`] reads and writes.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset as _, TimeDelta, TimeZone as _, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

pub mod crontab;
pub mod folder;
pub mod kubernetes;
pub mod systemd;

/// Which program runs `backup apply` at the policies' ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SchedulerKind {
    /// A managed block in a crontab (the default).
    Cron,
    /// A `.service` and `.timer` pair per policy in a unit folder.
    Systemd,
    /// CronJob manifests in a folder of a GitOps repository.
    Kubernetes,
}

impl SchedulerKind {
    pub const ALL: [SchedulerKind; 3] = [
        SchedulerKind::Cron,
        SchedulerKind::Systemd,
        SchedulerKind::Kubernetes,
    ];

    /// The name policies, settings and the command line use.
    pub fn name(self) -> &'static str {
        match self {
            SchedulerKind::Cron => "cron",
            SchedulerKind::Systemd => "systemd",
            SchedulerKind::Kubernetes => "kubernetes",
        }
    }

    pub fn from_name(name: &str) -> Option<SchedulerKind> {
        SchedulerKind::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
    }
}

/// One file a scheduler renders (a unit, a manifest): its name in the folder
/// it is written to, and its whole text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RenderedFile {
    pub name: String,
    pub text: String,
}

/// How the first line of every file backup writes into a scheduler's
/// folder starts: files without it belong to someone else.
/// (The Kubernetes renderer starts its files with it too.)
pub const MANAGED_MARKER: &str = kubernetes::MANAGED_PREFIX;

/// The first line of a file rendered from `origin` ("policy app in
/// /etc/backup/policies/app.yaml"), ending in a newline.
pub fn managed_header(origin: &str) -> String {
    let origin: String = origin
        .chars()
        .flat_map(|character| {
            if character.is_control() {
                character.escape_default().collect::<Vec<_>>()
            } else {
                vec![character]
            }
        })
        .collect();
    format!(
        "{MANAGED_MARKER} from {origin}: written by `backup apply` or `backup render`; edits here are overwritten.\n"
    )
}

/// Whether `text` is a file backup wrote ([`MANAGED_MARKER`] first).
pub fn is_managed(text: &str) -> bool {
    text.starts_with(MANAGED_MARKER)
}

/// `file`, starting with the managed-by line (added when it does not).
pub fn with_managed_header(file: RenderedFile, origin: &str) -> RenderedFile {
    if is_managed(&file.text) {
        return file;
    }
    RenderedFile {
        text: format!("{}{}", managed_header(origin), file.text),
        name: file.name,
    }
}

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
    /// Vixie cron's wildcard job (see [`Schedule::instants`]).
    wildcard: bool,
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
        let expression = expression.trim().to_owned();
        Ok(Schedule {
            wildcard: is_wildcard(&expression),
            expression,
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

    /// The minutes of the hour the expression names (`0,30` for `*/30 * * * *`),
    /// on the wall clock of its time zone.
    pub fn minutes(&self) -> Vec<u32> {
        (0..60)
            .filter(|minute| self.cron.pattern.minute_match(*minute).unwrap_or(false))
            .collect()
    }

    /// Every tick strictly after `after` and before `before`, in order.
    pub fn ticks_between(
        &self,
        after: DateTime<Utc>,
        before: DateTime<Utc>,
    ) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        std::iter::successors(self.next_after(after), |tick| self.next_after(*tick))
            .take_while(move |tick| *tick < before)
    }

    /// The first tick strictly after `after`.
    ///
    /// Ticks follow Vixie cron (which Debian's `cron` keeps) at daylight saving
    /// changes, so that `backup` and the host's cron agree on when a backup is
    /// due. croner's own rule differs for hours or minutes given as lists or
    /// ranges (`30 2,14 * * *`), which it skips in the spring and runs twice in
    /// the autumn; see [`Schedule::instants`].
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Wall clock times just before `after` come round again when the clock
        // is about to go back: start the walk that much earlier.
        let repeated =
            (self.offset_seconds(after) - self.offset_seconds(after + LOOKAROUND)).max(0);
        let mut wall =
            after.with_timezone(&self.timezone).naive_local() - TimeDelta::seconds(repeated.into());
        let mut inclusive = true;
        let mut best: Option<DateTime<Utc>> = None;
        loop {
            let Ok(next_wall) = self.cron.find_next_occurrence(&wall, inclusive) else {
                return best;
            };
            wall = next_wall;
            inclusive = false;
            let instants = self.instants(wall);
            for instant in instants.into_iter().flatten() {
                if instant > after && best.is_none_or(|best| instant < best) {
                    best = Some(instant);
                }
            }
            // The earliest instant of a wall clock time never decreases as the
            // wall clock time grows, so nothing further on comes sooner.
            if instants[0].is_some_and(|earliest| earliest > after) {
                return best;
            }
        }
    }

    /// Whether a tick comes within `years` years after `from`. A schedule
    /// whose fields never meet (`0 0 31 2 *`: there is no 31 February) has
    /// none, and would silently never back anything up.
    pub fn ticks_within_years(&self, from: DateTime<Utc>, years: u32) -> bool {
        let Some(until) = from.checked_add_months(chrono::Months::new(years.saturating_mul(12)))
        else {
            return self.next_after(from).is_some();
        };
        self.next_after(from).is_some_and(|tick| tick <= until)
    }

    /// The last tick at or before `at`, by the same rules as [`Schedule::next_after`].
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Just after the clock went back, wall clock times ahead of `at`'s
        // already happened once: start the walk that much later.
        let repeated = (self.offset_seconds(at - LOOKAROUND) - self.offset_seconds(at)).max(0);
        let mut wall =
            at.with_timezone(&self.timezone).naive_local() + TimeDelta::seconds(repeated.into());
        let mut inclusive = true;
        let mut best: Option<DateTime<Utc>> = None;
        loop {
            let Ok(previous_wall) = self.cron.find_previous_occurrence(&wall, inclusive) else {
                return best;
            };
            wall = previous_wall;
            inclusive = false;
            let instants = self.instants(wall);
            for instant in instants.into_iter().flatten() {
                if instant <= at && best.is_none_or(|best| instant > best) {
                    best = Some(instant);
                }
            }
            // The latest instant of a wall clock time never increases as the
            // wall clock time shrinks, so nothing further back comes later.
            if instants
                .into_iter()
                .flatten()
                .last()
                .is_some_and(|latest| latest <= at)
            {
                return best;
            }
        }
    }

    /// The instants at which cron runs the job for the wall clock time `wall`
    /// (one the pattern matches), earliest first.
    ///
    /// Vixie cron's rule: a job is a wildcard job when its minute or hour
    /// field starts with `*` (`@hourly` too), otherwise a fixed-time job.
    /// - A wall clock time that exists once runs at that instant.
    /// - One the clock skips (spring forward): a fixed-time job runs once, at
    ///   the first minute after the jump (`30 2 * * *` in Berlin on the last
    ///   Sunday of March runs at 03:00 CEST); a wildcard job does not run.
    /// - One that happens twice (fall back): a fixed-time job runs the first
    ///   time only; a wildcard job runs both times, so `0 * * * *` stays one
    ///   hour apart in absolute time.
    fn instants(&self, wall: NaiveDateTime) -> [Option<DateTime<Utc>>; 2] {
        let utc = |instant: DateTime<Tz>| instant.with_timezone(&Utc);
        match self.timezone.from_local_datetime(&wall) {
            LocalResult::Single(instant) => [Some(utc(instant)), None],
            LocalResult::Ambiguous(earlier, later) => {
                [Some(utc(earlier)), self.wildcard.then(|| utc(later))]
            }
            LocalResult::None if self.wildcard => [None, None],
            LocalResult::None => {
                // Gaps are whole minutes in every zone since 1900 or so; cap
                // the search at a day (Samoa skipped one in 2011).
                let first_after = (1..=24 * 60).find_map(|minutes| {
                    self.timezone
                        .from_local_datetime(&(wall + TimeDelta::minutes(minutes)))
                        .earliest()
                });
                [first_after.map(utc), None]
            }
        }
    }

    /// The time zone's offset from UTC at `at`, in seconds.
    fn offset_seconds(&self, at: DateTime<Utc>) -> i32 {
        self.timezone
            .offset_from_utc_datetime(&at.naive_utc())
            .fix()
            .local_minus_utc()
    }
}

/// How far around an instant to look for a clock change: longer than any
/// daylight saving shift.
const LOOKAROUND: TimeDelta = TimeDelta::days(1);

/// Vixie cron's test: a wildcard job's minute or hour field starts with `*`.
fn is_wildcard(expression: &str) -> bool {
    if expression.starts_with('@') {
        return expression.eq_ignore_ascii_case("@hourly");
    }
    expression
        .split_whitespace()
        .take(2)
        .any(|field| field.starts_with('*'))
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
    use chrono::{Datelike as _, NaiveDate};

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
    fn schedules_whose_fields_never_meet_have_no_tick() {
        let now = "2026-11-25T00:00:00Z".parse().unwrap();
        for expression in ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *"] {
            let schedule = Schedule::parse(expression, "Europe/Berlin").unwrap();
            assert!(!schedule.ticks_within_years(now, 5), "{expression}");
        }
        // Every four years is within five.
        for expression in ["0 0 29 2 *", "0 1 * * *", "@yearly"] {
            let schedule = Schedule::parse(expression, "UTC").unwrap();
            assert!(schedule.ticks_within_years(now, 5), "{expression}");
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

    // --- A year on a simulated clock -------------------------------------------------

    /// What Vixie/Debian cron runs, minute by minute, from `from` to `to` (UTC):
    /// the daemon's own rules, written independently of `Schedule`'s search.
    /// A wall clock minute that the clock skipped runs a fixed-time job once,
    /// at the first minute after the jump; a wall clock minute that comes round
    /// again runs a fixed-time job only the first time. Wildcard jobs (minute
    /// or hour field starting with `*`) follow the wall clock as it is.
    fn simulated_cron(
        schedule: &Schedule,
        clock: &[(DateTime<Utc>, NaiveDateTime)],
    ) -> Vec<DateTime<Utc>> {
        let matches = |wall: NaiveDateTime| schedule.cron.is_time_matching(&wall).unwrap();
        let wildcard = vixie_wildcard(schedule.expression());
        let minute = TimeDelta::minutes(1);
        let mut high_water = clock[0].1 - minute;
        let mut ticks = Vec::new();
        for &(instant, wall) in clock {
            let runs = if wall <= high_water {
                // The clock went back: this wall clock minute already ran.
                wildcard && matches(wall)
            } else if wall > high_water + minute && !wildcard {
                // The clock jumped forward: run what the skipped minutes held.
                let mut skipped = high_water + minute;
                let mut any = false;
                while skipped <= wall {
                    any |= matches(skipped);
                    skipped += minute;
                }
                any
            } else {
                matches(wall)
            };
            if runs {
                ticks.push(instant);
            }
            high_water = high_water.max(wall);
        }
        ticks
    }

    /// Vixie cron's own test: a job is "wildcard" when its minute or hour field starts with `*`.
    fn vixie_wildcard(expression: &str) -> bool {
        let expression = expression.to_ascii_lowercase();
        if expression.starts_with('@') {
            return expression == "@hourly";
        }
        let fields: Vec<&str> = expression.split_whitespace().collect();
        fields[0].starts_with('*') || fields[1].starts_with('*')
    }

    /// Every UTC minute of the local calendar year, with its wall clock time.
    fn simulated_clock(timezone: Tz, year: i32) -> Vec<(DateTime<Utc>, NaiveDateTime)> {
        let start = |year| {
            timezone
                .with_ymd_and_hms(year, 1, 1, 0, 0, 0)
                .single()
                .unwrap()
                .with_timezone(&Utc)
        };
        let (from, to) = (start(year), start(year + 1));
        let mut clock = Vec::new();
        let mut instant = from;
        while instant < to {
            clock.push((instant, instant.with_timezone(&timezone).naive_local()));
            instant += TimeDelta::minutes(1);
        }
        clock
    }

    /// Every tick from `from` (inclusive) to `to` (exclusive), by `next_after`.
    fn ticks_by_next_after(
        schedule: &Schedule,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        let mut ticks = Vec::new();
        let mut cursor = from - TimeDelta::seconds(1);
        while let Some(tick) = schedule.next_after(cursor) {
            assert!(tick > cursor, "{schedule:?}: next_after({cursor}) = {tick}");
            if tick >= to {
                break;
            }
            ticks.push(tick);
            cursor = tick;
        }
        ticks
    }

    /// Instants to probe `latest_at_or_before` and `next_after` with: random
    /// ones over the year, and every 7 minutes 13.5 seconds within a day of
    /// each clock change.
    fn probe_instants(timezone: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut random = move || {
            // splitmix64: deterministic, so a failure reproduces.
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let span_ms = u64::try_from((to - from).num_milliseconds()).unwrap();
        let mut probes: Vec<DateTime<Utc>> = (0..2000)
            .map(|_| from + TimeDelta::milliseconds(i64::try_from(random() % span_ms).unwrap()))
            .collect();
        let offset = |at: DateTime<Utc>| timezone.offset_from_utc_datetime(&at.naive_utc()).fix();
        let mut hour = from;
        while hour < to {
            if offset(hour) != offset(hour + TimeDelta::hours(1)) {
                let mut probe = hour - TimeDelta::hours(24);
                while probe < hour + TimeDelta::hours(25) {
                    probes.push(probe);
                    probe += TimeDelta::milliseconds(7 * 60_000 + 13_500);
                }
            }
            hour += TimeDelta::hours(1);
        }
        probes.retain(|probe| from <= *probe && *probe < to);
        probes
    }

    /// Runs `expressions` in `zone` through a simulated year (2026) and checks
    /// every tick against the simulated daemon, then the shape each kind of
    /// schedule must have, then `latest_at_or_before` and `next_after` at
    /// random and near-clock-change instants. Returns the ticks per expression.
    fn simulate_year(zone: &str, expressions: &[&str]) -> Vec<Vec<DateTime<Utc>>> {
        let timezone = parse_timezone(zone).unwrap();
        let clock = simulated_clock(timezone, 2026);
        let (from, to) = (clock[0].0, clock[clock.len() - 1].0 + TimeDelta::minutes(1));
        let probes = probe_instants(timezone, from, to);
        let mut failures = Vec::new();
        let mut all_ticks = Vec::new();
        for expression in expressions {
            let schedule = Schedule::parse(expression, zone).unwrap();
            let expected = simulated_cron(&schedule, &clock);
            let actual = ticks_by_next_after(&schedule, from, to);
            if actual != expected {
                let missing: Vec<_> = expected
                    .iter()
                    .filter(|tick| !actual.contains(tick))
                    .collect();
                let extra: Vec<_> = actual
                    .iter()
                    .filter(|tick| !expected.contains(tick))
                    .collect();
                failures.push(format!(
                    "{schedule:?}: missing {missing:?}, extra {extra:?}"
                ));
                continue;
            }
            assert!(
                actual.windows(2).all(|pair| pair[0] < pair[1]),
                "{schedule:?}: ticks not strictly increasing"
            );
            for &probe in &probes {
                // Ticks before `from` or after `to` are outside the simulation;
                // probes whose answer lies there are checked by the invariants only.
                let latest = schedule.latest_at_or_before(probe);
                let next = schedule.next_after(probe);
                let index = expected.partition_point(|tick| *tick <= probe);
                if index > 0 && latest != Some(expected[index - 1]) {
                    failures.push(format!(
                        "{schedule:?}: latest_at_or_before({probe}) = {latest:?}, want {}",
                        expected[index - 1]
                    ));
                }
                if index < expected.len() && next != Some(expected[index]) {
                    failures.push(format!(
                        "{schedule:?}: next_after({probe}) = {next:?}, want {}",
                        expected[index]
                    ));
                }
                let latest = latest.unwrap();
                assert!(
                    latest <= probe && next.unwrap() > probe,
                    "{schedule:?} at {probe}"
                );
                assert!(
                    schedule.next_after(latest).unwrap() > probe,
                    "{schedule:?}: a tick between latest_at_or_before({probe}) = {latest} and {probe}"
                );
            }
            all_ticks.push(actual);
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        all_ticks
    }

    /// The local calendar dates of `ticks`, in order.
    fn local_dates(ticks: &[DateTime<Utc>], timezone: Tz) -> Vec<NaiveDate> {
        ticks
            .iter()
            .map(|tick| tick.with_timezone(&timezone).date_naive())
            .collect()
    }

    fn gaps_in_seconds(ticks: &[DateTime<Utc>]) -> Vec<i64> {
        ticks
            .windows(2)
            .map(|pair| (pair[1] - pair[0]).num_seconds())
            .collect()
    }

    /// One zone's year: daily schedules tick once per local date, hourly ones
    /// exactly 3600 s apart, and so on; DST change days included.
    fn check_year(zone: &str) {
        let timezone = parse_timezone(zone).unwrap();
        let every_date: Vec<NaiveDate> = NaiveDate::from_ymd_opt(2026, 1, 1)
            .unwrap()
            .iter_days()
            .take_while(|date| date.year() == 2026)
            .collect();
        let daily = ["0 1 * * *", "30 2 * * *", "@daily", "30 1 * * *"];
        for ticks in simulate_year(zone, &daily) {
            assert_eq!(local_dates(&ticks, timezone), every_date, "{zone}");
        }
        let hourly = ["0 * * * *", "@hourly"];
        for ticks in simulate_year(zone, &hourly) {
            assert_eq!(ticks.len(), 365 * 24, "{zone}");
            assert!(
                gaps_in_seconds(&ticks).iter().all(|gap| *gap == 3600),
                "{zone}"
            );
        }
        let quarter_hourly = simulate_year(zone, &["*/15 * * * *"]).remove(0);
        assert_eq!(quarter_hourly.len(), 365 * 24 * 4, "{zone}");
        assert!(
            gaps_in_seconds(&quarter_hourly)
                .iter()
                .all(|gap| *gap == 900),
            "{zone}"
        );
        let weekly = simulate_year(zone, &["0 3 * * 0"]).remove(0);
        let sundays: Vec<NaiveDate> = every_date
            .iter()
            .copied()
            .filter(|date| date.weekday() == chrono::Weekday::Sun)
            .collect();
        assert_eq!(local_dates(&weekly, timezone), sundays, "{zone}");
        // Lists and ranges in the hour or minute field are fixed-time jobs to
        // cron, unlike to croner: these are where its own answers were wrong.
        simulate_year(
            zone,
            &[
                "30 2,14 * * *",
                "15,45 1-3 * * *",
                "*/20 2 * * *",
                "0 */2 * * *",
            ],
        );
    }

    #[test]
    fn a_year_in_berlin_matches_a_simulated_cron_daemon() {
        check_year("Europe/Berlin");
    }

    #[test]
    fn a_year_in_new_york_matches_a_simulated_cron_daemon() {
        check_year("America/New_York");
    }

    /// Regression: croner skips `30 2,14 * * *` at 02:30 on spring-forward day
    /// and runs it twice on fall-back day; cron runs it once each day.
    #[test]
    fn a_fixed_time_job_in_a_skipped_or_repeated_hour_runs_once() {
        let at = |month, day, hour, minute| {
            Utc.with_ymd_and_hms(2026, month, day, hour, minute, 0)
                .unwrap()
        };
        for expression in ["30 2 * * *", "30 2,14 * * *"] {
            let schedule = Schedule::parse(expression, "Europe/Berlin").unwrap();
            // 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
            assert_eq!(schedule.next_after(at(3, 28, 23, 0)), Some(at(3, 29, 1, 0)));
            assert_eq!(
                schedule.latest_at_or_before(at(3, 29, 1, 0)),
                Some(at(3, 29, 1, 0))
            );
            // 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 runs at 00:30 UTC only.
            let first = at(10, 25, 0, 30);
            assert_eq!(schedule.next_after(at(10, 24, 23, 0)), Some(first));
            let next = schedule.next_after(first).unwrap();
            assert!(next > at(10, 25, 2, 0), "{expression}: {next}");
            assert_eq!(schedule.latest_at_or_before(at(10, 25, 1, 45)), Some(first));
        }
        // A wildcard job keeps to the wall clock: both 02:30s, no 02:30 in March.
        let schedule = Schedule::parse("30 * * * *", "Europe/Berlin").unwrap();
        assert_eq!(
            schedule.next_after(at(10, 25, 0, 30)),
            Some(at(10, 25, 1, 30))
        );
        assert_eq!(
            schedule.next_after(at(3, 29, 0, 30)),
            Some(at(3, 29, 1, 30))
        );
    }
}
