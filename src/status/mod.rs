//! Health: how each policy stands, for `backup status`, its Prometheus
//! textfile and critical-health alerts.
//!
//! [`evaluate`] is pure: it judges one policy from what was gathered (the
//! inventory, the run records' summary, the newest restore drill, free space,
//! the crontab) at a given `now`, and returns findings with a severity
//! (Nagios-style: ok, warning, critical). [`gather`] does the reading;
//! [`text`] and [`prometheus`] render. Nothing here takes, copies or prunes
//! a backup.

pub mod fleet;
pub mod gather;
pub mod physical;
pub mod prometheus;
pub mod report;
pub mod text;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeDelta, Utc};
use serde::Serialize;

use crate::inventory::{PolicyInventory, RecordState};
use crate::policy::Policy;
use crate::policy::units::{MinFree, max_age};
use crate::retention::{self, Candidate, Compliance};
use crate::runlog::{PolicySummary, RunRecord};
use crate::schedule::Schedule;

/// Version of `status --format json`.
pub const FORMAT_VERSION: u32 = 1;

/// Nagios-style health, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Ok,
    Warning,
    Critical,
}

impl Health {
    pub fn word(self) -> &'static str {
        match self {
            Health::Ok => "OK",
            Health::Warning => "WARNING",
            Health::Critical => "CRITICAL",
        }
    }

    /// The Nagios exit code: 0, 1, 2.
    pub fn code(self) -> u8 {
        match self {
            Health::Ok => 0,
            Health::Warning => 1,
            Health::Critical => 2,
        }
    }
}

/// One thing found wrong (or worth saying).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// `freshness`, `last-attempt`, `retention`, `integrity`, `drill`,
    /// `capacity`, `destination`, `crontab` or `encryption`.
    pub check: &'static str,
    pub severity: Health,
    pub message: String,
}

/// Free space of a local destination's file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Space {
    pub free_bytes: u64,
    pub total_bytes: u64,
}

/// The newest restore drill's evidence (written by `verify --restore-test`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drill {
    /// `passed` or `failed`.
    pub result: String,
    pub started_at: DateTime<Utc>,
    pub backup: Option<String>,
    pub error: Option<String>,
}

/// Whether the managed crontab block runs this policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrontabCheck {
    /// `ok`, `missing` (no block, or no line for the policy), `differs`,
    /// `unchecked` (not managed here) or `error` (unreadable).
    pub state: String,
    pub message: String,
}

impl CrontabCheck {
    fn severity(&self) -> Health {
        match self.state.as_str() {
            "ok" | "unchecked" => Health::Ok,
            _ => Health::Warning,
        }
    }
}

/// What [`evaluate`] judges one policy from.
#[derive(Debug)]
pub struct Input<'a> {
    pub policy: &'a Policy,
    pub inventory: Option<&'a PolicyInventory>,
    pub summary: Option<&'a PolicySummary>,
    pub drill: Option<Drill>,
    /// Free space by destination location (local destinations only).
    pub space: BTreeMap<String, Result<Space, String>>,
    pub crontab: CrontabCheck,
    pub now: DateTime<Utc>,
    /// Also fill [`PolicyHealth::detail`] (`status --detailed`).
    pub detailed: bool,
    /// This host's latest run records of the policy, oldest first (for the detail).
    pub recent_runs: Vec<RunRecord>,
}

/// Judges one policy: its backups and, with `spec.physical`, its base
/// backups and WAL archive (`push`: this host's record of `wal push`).
pub fn evaluate_with(input: Input, push: Option<&crate::wal::status::PushStatus>) -> PolicyHealth {
    let Some(inventory) = input.inventory.filter(|_| input.policy.physical.is_some()) else {
        return evaluate_view(input);
    };
    // The logical backups are judged alone, as `plan` plans them.
    let (logical, physical) = crate::plan::split_physical(inventory);
    let mut findings = Vec::new();
    let health = physical::evaluate(&input, &physical, push, &mut findings);
    let Input {
        policy,
        summary,
        drill,
        space,
        crontab,
        now,
        detailed,
        recent_runs,
        ..
    } = input;
    let mut judged = evaluate_view(Input {
        policy,
        inventory: Some(&logical),
        summary,
        drill,
        space,
        crontab,
        now,
        detailed,
        recent_runs,
    });
    for finding in findings {
        judged.find(finding.check, finding.severity, finding.message);
    }
    judged.physical = Some(health);
    judged
}

/// Judges one policy without a WAL push record.
pub fn evaluate(input: Input) -> PolicyHealth {
    evaluate_with(input, None)
}

/// How many failed attempts `status --detailed` shows per policy.
pub const DETAIL_FAILURES: usize = 5;

/// How many of the newest backups the size trend looks at.
const TREND_BACKUPS: usize = 8;

/// `status --detailed`: what stands behind a policy's line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detail {
    pub destinations: Vec<DestinationDetail>,
    /// This host's latest failed attempts, newest first (at most [`DETAIL_FAILURES`]).
    pub recent_failures: Vec<RunRecord>,
}

/// One destination in full: every backup's state and where its space goes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DestinationDetail {
    pub location: String,
    /// Every backup with a sidecar, newest first.
    pub backups: Vec<BackupState>,
    /// Leftovers of crashes (`.partial` data, data without a sidecar), by name.
    pub orphans: Vec<String>,
    /// Sidecars that cannot be read: name and reason.
    pub unreadable: Vec<String>,
    pub trend: Option<SpaceTrend>,
}

/// One backup and its state on one destination.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackupState {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub size_bytes: u64,
    /// `complete`, `missing data` or `size mismatch (… bytes)`.
    pub state: String,
}

/// How the backups' size moves, and what that means for the free space.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpaceTrend {
    /// Sizes of the newest complete backups (at most 8), oldest first.
    pub recent_sizes: Vec<u64>,
    /// Average change per backup over those, in bytes (negative when they shrink).
    pub growth_bytes_per_backup: i64,
    pub next_backup_bytes: Option<u64>,
    pub free_bytes: Option<u64>,
    /// How many more backups of the next size fit in the free space (local destinations).
    pub room_for_backups: Option<u64>,
}

/// How fresh the newest complete backup is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Freshness {
    pub state: Health,
    pub newest_backup: Option<String>,
    pub newest_created_at: Option<DateTime<Utc>>,
    pub age_seconds: Option<i64>,
    /// The tick a backup should have landed after (schedule rule).
    pub expected_after: Option<DateTime<Utc>>,
    /// `max-age` when the policy sets one, in seconds.
    pub max_age_seconds: Option<i64>,
    pub grace_seconds: i64,
    pub next_tick: Option<DateTime<Utc>>,
}

/// The newest backup's state on each destination, and the newest drill.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Integrity {
    pub state: Health,
    /// The newest backup any destination has a sidecar of.
    pub newest_backup: Option<String>,
    /// Its state per destination (`complete`, `missing data`, `size mismatch (…)`, `absent`).
    pub destinations: BTreeMap<String, String>,
    pub drill: Option<Drill>,
}

/// One destination of one policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DestinationHealth {
    pub location: String,
    pub readable: bool,
    pub error: Option<String>,
    /// Complete backups (sidecar and data with the recorded size).
    pub backups: usize,
    /// Sidecars whose data is missing or has another size.
    pub damaged: usize,
    pub orphans: usize,
    pub newest_backup: Option<String>,
    pub newest_created_at: Option<DateTime<Utc>>,
    /// The newest complete backup's size (compressed) and duration.
    pub size_bytes: Option<u64>,
    pub duration_seconds: Option<f64>,
    pub retention_compliant: bool,
    pub retention: Vec<Compliance>,
    pub free_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
    /// The next backup's expected size, at the recent growth rate.
    pub next_backup_bytes: Option<u64>,
}

/// Everything `status` knows about one policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyHealth {
    pub name: String,
    pub file: String,
    pub labels: BTreeMap<String, String>,
    pub state: Health,
    pub findings: Vec<Finding>,
    pub schedule: String,
    pub freshness: Freshness,
    pub last_attempt: Option<RunRecord>,
    pub last_success: Option<RunRecord>,
    pub consecutive_failures: u32,
    pub integrity: Integrity,
    pub destinations: Vec<DestinationHealth>,
    pub crontab: CrontabCheck,
    /// Only with `status --detailed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Detail>,
    /// Base backups, WAL archive and recoverable window (`spec.physical`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub physical: Option<physical::PhysicalHealth>,
}

impl PolicyHealth {
    fn find(&mut self, check: &'static str, severity: Health, message: impl Into<String>) {
        self.state = self.state.max(severity);
        self.findings.push(Finding {
            check,
            severity,
            message: message.into(),
        });
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub format_version: u32,
    pub now: DateTime<Utc>,
    pub state: Health,
    pub policies: Vec<PolicyHealth>,
    /// The managed block as a whole (every policy's line and the status line).
    pub crontab: CrontabCheck,
    /// Errors in the policy files: the policies they hold are neither
    /// reported nor backed up (warning).
    pub policy_errors: usize,
    /// `status --all-hosts`: every host's part, from the destinations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<fleet::Fleet>,
}

impl Report {
    /// Adds the fleet view; the report's state becomes the worst of both.
    pub fn with_fleet(mut self, fleet: fleet::Fleet) -> Report {
        self.state = fleet
            .policies
            .iter()
            .map(|policy| policy.state)
            .chain([self.state])
            .max()
            .unwrap_or(self.state);
        self.fleet = Some(fleet);
        self
    }

    pub fn new(now: DateTime<Utc>, policies: Vec<PolicyHealth>, crontab: CrontabCheck) -> Report {
        let state = policies
            .iter()
            .map(|policy| policy.state)
            .chain([crontab.severity()])
            .max()
            .unwrap_or(Health::Ok);
        Report {
            format_version: FORMAT_VERSION,
            now,
            state,
            policies,
            crontab,
            policy_errors: 0,
            fleet: None,
        }
    }
}

/// How long after a tick a backup may still land before it is overdue: a
/// quarter of the schedule's interval, at least 10 minutes, at most 12 hours.
pub fn grace(interval: Duration) -> Duration {
    (interval / 4).clamp(Duration::minutes(10), Duration::hours(12))
}

/// Counts `schedule`'s ticks in `[start, end)`, up to `limit`.
pub fn count_ticks(
    schedule: &Schedule,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    limit: usize,
) -> usize {
    schedule
        .ticks_between(start - TimeDelta::seconds(1), end)
        .take(limit)
        .count()
}

/// Judges one policy.
fn evaluate_view(input: Input) -> PolicyHealth {
    let policy = input.policy;
    let now = input.now;
    let mut health = PolicyHealth {
        name: policy.name.clone(),
        file: policy.file.display().to_string(),
        labels: policy.labels.clone(),
        state: Health::Ok,
        findings: Vec::new(),
        schedule: format!(
            "{} ({})",
            policy.schedule.expression(),
            policy.schedule.timezone()
        ),
        freshness: Freshness {
            state: Health::Ok,
            newest_backup: None,
            newest_created_at: None,
            age_seconds: None,
            expected_after: None,
            max_age_seconds: None,
            grace_seconds: 0,
            next_tick: policy.schedule.next_after(now),
        },
        last_attempt: input
            .summary
            .and_then(|summary| summary.last_attempt.clone()),
        last_success: input
            .summary
            .and_then(|summary| summary.last_success.clone()),
        consecutive_failures: input
            .summary
            .map_or(0, |summary| summary.consecutive_failures),
        integrity: Integrity {
            state: Health::Ok,
            newest_backup: None,
            destinations: BTreeMap::new(),
            drill: input.drill.clone(),
        },
        destinations: Vec::new(),
        crontab: input.crontab.clone(),
        detail: None,
        physical: None,
    };
    destinations(&input, &mut health);
    freshness(&input, &mut health);
    // A backup no one can decrypt is no backup.
    if let Some(crate::policy::spec::EncryptionSpec::Age(age)) = &input.policy.encryption
        && age.identity.is_none()
    {
        health.find(
            "encryption",
            Health::Warning,
            format!(
                "backups are encrypted to {} recipient{} but no identity is configured to restore with: set encryption.age.identity (a ${{file:…}} reference), or keep the key where every restore can pass --identity",
                age.recipients.len(),
                if age.recipients.len() == 1 { "" } else { "s" }
            ),
        );
    }
    schedules(&input, &mut health);
    last_attempt(&input, &mut health);
    integrity(&input, &mut health);
    if input.detailed {
        health.detail = Some(detail(&input, &health));
    }
    let crontab = health.crontab.clone();
    if crontab.severity() > Health::Ok {
        health.find("crontab", crontab.severity(), crontab.message);
    }
    health
}

fn destinations(input: &Input, health: &mut PolicyHealth) {
    let policy = input.policy;
    let Some(inventory) = input.inventory else {
        return;
    };
    let readable = inventory
        .destinations
        .iter()
        .filter(|destination| destination.listing.is_ok())
        .count();
    let ticks = |start, end, limit| count_ticks(&policy.schedule, start, end, limit);
    for found in &inventory.destinations {
        let mut destination = DestinationHealth {
            location: found.location.clone(),
            readable: found.listing.is_ok(),
            error: found.listing.as_ref().err().cloned(),
            backups: 0,
            damaged: 0,
            orphans: 0,
            newest_backup: None,
            newest_created_at: None,
            size_bytes: None,
            duration_seconds: None,
            retention_compliant: true,
            retention: Vec::new(),
            free_bytes: None,
            total_bytes: None,
            next_backup_bytes: None,
        };
        match &found.listing {
            Err(error) => {
                let severity = if readable == 0 {
                    Health::Critical
                } else {
                    Health::Warning
                };
                health.find(
                    "destination",
                    severity,
                    format!("{} cannot be read: {error}", found.location),
                );
            }
            Ok(listing) => {
                let mut complete: Vec<_> = listing
                    .backups
                    .iter()
                    .filter(|record| record.state == RecordState::Complete)
                    .collect();
                complete
                    .sort_by_key(|record| (record.metadata.created_at, record.metadata.id.clone()));
                destination.backups = complete.len();
                destination.damaged = listing.backups.len() - complete.len();
                destination.orphans = listing.orphans.len();
                if let Some(newest) = complete.last() {
                    let metadata = &newest.metadata;
                    destination.newest_backup = Some(metadata.id.clone());
                    destination.newest_created_at = Some(metadata.created_at);
                    destination.size_bytes = Some(metadata.stored_size());
                    destination.duration_seconds = Some(
                        (metadata.finished_at - metadata.created_at)
                            .num_milliseconds()
                            .max(0) as f64
                            / 1000.0,
                    );
                }
                let candidates: Vec<Candidate> = complete
                    .iter()
                    .map(|record| Candidate {
                        id: record.metadata.id.clone(),
                        created_at: record.metadata.created_at,
                    })
                    .collect();
                destination.retention = retention::compliance(
                    &policy.retention,
                    policy.schedule.timezone(),
                    &candidates,
                    &ticks,
                );
                destination.retention_compliant =
                    destination.retention.iter().all(Compliance::compliant);
                let problems: Vec<String> = destination
                    .retention
                    .iter()
                    .filter(|compliance| !compliance.compliant())
                    .map(ToString::to_string)
                    .collect();
                if !problems.is_empty() {
                    health.find(
                        "retention",
                        Health::Warning,
                        format!(
                            "retention not met on {}: {}",
                            found.location,
                            problems.join("; ")
                        ),
                    );
                }
                let sizes: Vec<u64> = complete
                    .iter()
                    .map(|record| record.metadata.stored_size())
                    .collect();
                destination.next_backup_bytes = next_backup_bytes(&sizes);
            }
        }
        match input.space.get(&found.location) {
            Some(Ok(space)) => {
                destination.free_bytes = Some(space.free_bytes);
                destination.total_bytes = Some(space.total_bytes);
                let floor = input
                    .policy
                    .health
                    .as_ref()
                    .and_then(|spec| spec.min_free.as_deref())
                    .and_then(MinFree::parse);
                if let Some((severity, message)) = capacity(
                    &found.location,
                    *space,
                    destination.next_backup_bytes,
                    floor,
                ) {
                    health.find("capacity", severity, message);
                }
            }
            Some(Err(error)) => health.find(
                "capacity",
                Health::Warning,
                format!("cannot read the free space of {}: {error}", found.location),
            ),
            None => {}
        }
        health.destinations.push(destination);
    }
}

/// Every backup's state per destination, the size trend, the last failures.
fn detail(input: &Input, health: &PolicyHealth) -> Detail {
    let mut destinations = Vec::new();
    for found in input
        .inventory
        .iter()
        .flat_map(|inventory| &inventory.destinations)
    {
        let Ok(listing) = &found.listing else {
            destinations.push(DestinationDetail {
                location: found.location.clone(),
                backups: Vec::new(),
                orphans: Vec::new(),
                unreadable: Vec::new(),
                trend: None,
            });
            continue;
        };
        let backups: Vec<BackupState> = listing
            .backups
            .iter()
            .rev()
            .map(|record| BackupState {
                id: record.metadata.id.clone(),
                created_at: record.metadata.created_at,
                size_bytes: record.metadata.stored_size(),
                state: record.state.describe(),
            })
            .collect();
        let mut sizes: Vec<u64> = listing
            .backups
            .iter()
            .filter(|record| record.state == RecordState::Complete)
            .map(|record| record.metadata.stored_size())
            .collect();
        sizes.drain(..sizes.len().saturating_sub(TREND_BACKUPS));
        let judged = health
            .destinations
            .iter()
            .find(|destination| destination.location == found.location);
        let next = judged.and_then(|destination| destination.next_backup_bytes);
        let free = judged.and_then(|destination| destination.free_bytes);
        let trend = (!sizes.is_empty()).then(|| SpaceTrend {
            growth_bytes_per_backup: growth_per_backup(&sizes),
            recent_sizes: sizes,
            next_backup_bytes: next,
            free_bytes: free,
            room_for_backups: free
                .zip(next.filter(|next| *next > 0))
                .map(|(free, next)| free / next),
        });
        destinations.push(DestinationDetail {
            location: found.location.clone(),
            backups,
            orphans: listing
                .orphans
                .iter()
                .map(|orphan| orphan.name.clone())
                .collect(),
            unreadable: listing
                .unreadable
                .iter()
                .map(|(name, reason)| format!("{name}: {reason}"))
                .collect(),
            trend,
        });
    }
    Detail {
        destinations,
        recent_failures: input
            .recent_runs
            .iter()
            .rev()
            .filter(|record| !record.ok())
            .take(DETAIL_FAILURES)
            .cloned()
            .collect(),
    }
}

/// The average change in size from one backup to the next, in bytes.
fn growth_per_backup(sizes: &[u64]) -> i64 {
    let (Some(first), Some(last)) = (sizes.first(), sizes.last()) else {
        return 0;
    };
    let steps = i64::try_from(sizes.len().saturating_sub(1).max(1)).unwrap_or(i64::MAX);
    let change =
        i64::try_from(*last).unwrap_or(i64::MAX) - i64::try_from(*first).unwrap_or(i64::MAX);
    change / steps
}

/// The next backup's expected size: the newest one's, plus the average growth
/// per backup over the last eight, when they grow.
pub fn next_backup_bytes(sizes: &[u64]) -> Option<u64> {
    let last = *sizes.last()?;
    let recent = &sizes[sizes.len().saturating_sub(8)..];
    let first = recent[0];
    let steps = recent.len().saturating_sub(1).max(1) as u64;
    let growth = last.saturating_sub(first) / steps;
    Some(last + growth)
}

/// Judges a local destination's free space: by the room left for backups of
/// the expected next size, and by the policy's `min-free` floor if it has one.
/// A full disk shared with other data is the disk's own alert; without a
/// floor, what counts is whether the next backups fit.
fn capacity(
    location: &str,
    space: Space,
    next: Option<u64>,
    floor: Option<MinFree>,
) -> Option<(Health, String)> {
    let free = crate::format::human_bytes(space.free_bytes);
    if let Some(next) = next.filter(|next| *next > 0) {
        let room = space.free_bytes / next;
        if space.free_bytes < next {
            return Some((
                Health::Critical,
                format!(
                    "{location} has {free} free; the next backup needs about {}",
                    crate::format::human_bytes(next)
                ),
            ));
        }
        if room < 3 {
            return Some((
                Health::Warning,
                format!(
                    "{location} has {free} free: room for {room} more backup{} of about {}",
                    if room == 1 { "" } else { "s" },
                    crate::format::human_bytes(next)
                ),
            ));
        }
    }
    let floor = floor.filter(|floor| space.free_bytes < floor.bytes(space.total_bytes))?;
    let limit = match floor {
        MinFree::Percent(share) => {
            format!(
                "{share}% of {}",
                crate::format::human_bytes(space.total_bytes)
            )
        }
        MinFree::Bytes(bytes) => crate::format::human_bytes(bytes),
    };
    Some((
        Health::Warning,
        format!("{location} has {free} free, less than the policy's min-free of {limit}"),
    ))
}

fn freshness(input: &Input, health: &mut PolicyHealth) {
    let policy = input.policy;
    let now = input.now;
    let newest = health
        .destinations
        .iter()
        .filter_map(|destination| {
            Some((
                destination.newest_created_at?,
                destination.newest_backup.clone()?,
            ))
        })
        .max();
    let freshness = &mut health.freshness;
    if let Some((created_at, id)) = &newest {
        freshness.newest_backup = Some(id.clone());
        freshness.newest_created_at = Some(*created_at);
        freshness.age_seconds = Some((now - *created_at).num_seconds());
    }
    let limit = policy
        .health
        .as_ref()
        .and_then(|spec| spec.max_age.as_deref())
        .and_then(max_age);
    let (severity, message) = match (&newest, limit) {
        (None, _)
            if health
                .destinations
                .iter()
                .all(|destination| !destination.readable) =>
        {
            return;
        }
        (None, _) => (
            Health::Critical,
            "no complete backup exists on any destination".to_owned(),
        ),
        (Some((created_at, id)), Some(limit)) => {
            freshness.max_age_seconds = Some(limit.num_seconds());
            let age = now - *created_at;
            let shown = format!(
                "newest backup {id} is {} old, more than max-age {}",
                crate::format::human_age(age),
                crate::format::human_age(limit)
            );
            if age > limit * 2 {
                (Health::Critical, shown)
            } else if age > limit {
                (Health::Warning, shown)
            } else {
                return;
            }
        }
        (Some((created_at, id)), None) => {
            let schedule = &policy.schedule;
            let Some(tick) = schedule.latest_at_or_before(now) else {
                return;
            };
            let interval = schedule
                .latest_at_or_before(tick - TimeDelta::seconds(1))
                .map_or(Duration::days(1), |previous| tick - previous);
            let grace = grace(interval);
            freshness.grace_seconds = grace.num_seconds();
            let Some(expected) = schedule.latest_at_or_before(now - grace) else {
                return;
            };
            freshness.expected_after = Some(expected);
            if *created_at >= expected {
                return;
            }
            let before = schedule.latest_at_or_before(expected - TimeDelta::seconds(1));
            let missed_two = before.is_some_and(|before| *created_at < before);
            let message = format!(
                "overdue: no backup since {id} ({}); tick {} passed without one",
                crate::format::human_ago(now - *created_at),
                crate::format::local_time(expected, schedule.timezone())
            );
            if missed_two {
                (Health::Critical, message)
            } else {
                (Health::Warning, message)
            }
        }
    };
    freshness.state = severity;
    health.find("freshness", severity, message);
}

/// A schedule with no tick to come never makes a backup (or a drill) due,
/// so nothing else would ever notice that none is taken: critical.
fn schedules(input: &Input, health: &mut PolicyHealth) {
    let policy = input.policy;
    if health.freshness.next_tick.is_none() {
        health.freshness.state = Health::Critical;
        health.find(
            "freshness",
            Health::Critical,
            format!(
                "schedule `{}` has no tick after {}: no backup will ever be due",
                policy.schedule.expression(),
                crate::format::local_time(input.now, policy.schedule.timezone())
            ),
        );
    }
    if let Some(drill) = &policy.restore_test
        && drill.next_after(input.now).is_none()
    {
        health.find(
            "drill",
            Health::Critical,
            format!(
                "restore-test schedule `{}` has no tick after {}: no drill will ever be due",
                drill.expression(),
                crate::format::local_time(input.now, drill.timezone())
            ),
        );
    }
}

fn last_attempt(input: &Input, health: &mut PolicyHealth) {
    let Some(attempt) = &health.last_attempt else {
        return;
    };
    if attempt.ok() {
        return;
    }
    let kind = attempt.kind.word();
    let message = format!(
        "last attempt ({kind}) failed {}{}: {}",
        crate::format::human_ago(input.now - attempt.finished_at),
        if health.consecutive_failures > 1 {
            format!(", {} failures in a row", health.consecutive_failures)
        } else {
            String::new()
        },
        attempt.error.as_deref().unwrap_or("no reason recorded")
    );
    health.find("last-attempt", Health::Warning, message);
}

fn integrity(input: &Input, health: &mut PolicyHealth) {
    let Some(inventory) = input.inventory else {
        return;
    };
    // The newest sidecar anywhere, whatever its state.
    let newest = inventory
        .destinations
        .iter()
        .filter_map(|destination| destination.listing.as_ref().ok())
        .flat_map(|listing| &listing.backups)
        .map(|record| (record.metadata.created_at, record.metadata.id.clone()))
        .max();
    if let Some((_, id)) = &newest {
        health.integrity.newest_backup = Some(id.clone());
        let mut complete = 0;
        let mut damaged = Vec::new();
        for destination in &inventory.destinations {
            let Ok(listing) = &destination.listing else {
                continue;
            };
            let state = listing
                .backups
                .iter()
                .find(|record| &record.metadata.id == id)
                .map(|record| record.state);
            let shown = match state {
                Some(RecordState::Complete) => {
                    complete += 1;
                    "complete".to_owned()
                }
                Some(state) => {
                    damaged.push(format!("{}: {}", destination.location, state.describe()));
                    state.describe()
                }
                None => "absent".to_owned(),
            };
            health
                .integrity
                .destinations
                .insert(destination.location.clone(), shown);
        }
        if !damaged.is_empty() {
            let (severity, message) = if complete == 0 {
                (
                    Health::Critical,
                    format!(
                        "newest backup {id} is damaged on every destination ({}); run `backup verify` and take a new backup",
                        damaged.join(", ")
                    ),
                )
            } else {
                (
                    Health::Warning,
                    format!(
                        "newest backup {id} is damaged on {}; `backup apply` copies it from a whole one",
                        damaged.join(", ")
                    ),
                )
            };
            health.integrity.state = severity;
            health.find("integrity", severity, message);
        }
    }
    if let Some(drill) = &input.drill
        && drill.result != "passed"
    {
        health.find(
            "drill",
            Health::Warning,
            format!(
                "last restore drill failed {}{}",
                crate::format::human_ago(input.now - drill.started_at),
                drill
                    .error
                    .as_deref()
                    .map(|error| format!(": {error}"))
                    .unwrap_or_default()
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_and_grace() {
        assert_eq!(max_age("36h"), Some(Duration::hours(36)));
        assert_eq!(max_age("1d12h"), Some(Duration::hours(36)));
        assert_eq!(max_age("1m"), Some(Duration::days(30)));
        assert_eq!(max_age("0h"), None);
        assert_eq!(max_age("36"), None);
        assert_eq!(grace(Duration::days(1)), Duration::hours(6));
        assert_eq!(grace(Duration::hours(1)), Duration::minutes(15));
        assert_eq!(grace(Duration::minutes(5)), Duration::minutes(10));
        assert_eq!(grace(Duration::days(7)), Duration::hours(12));
    }

    #[test]
    fn the_next_backup_grows_at_the_recent_rate() {
        assert_eq!(next_backup_bytes(&[]), None);
        assert_eq!(next_backup_bytes(&[100]), Some(100));
        assert_eq!(next_backup_bytes(&[100, 110, 120]), Some(130));
        // Shrinking backups expect the newest size.
        assert_eq!(next_backup_bytes(&[300, 200, 100]), Some(100));
    }

    /// A disk shared with other data may be nearly full while the backups
    /// have plenty of room: that alone is the disk's alert, not the policy's
    /// (CI went red on a 98.7%-full disk with room for millions of backups).
    #[test]
    fn a_nearly_full_disk_with_room_for_the_next_backups_is_healthy_without_min_free() {
        let gib = 1u64 << 30;
        let nearly_full = Space {
            free_bytes: 3 * gib,
            total_bytes: 252 * gib,
        };
        assert_eq!(capacity("/b", nearly_full, Some(100), None), None);
        assert_eq!(capacity("/b", nearly_full, None, None), None);
        // With a floor the same disk warns, naming the floor.
        let (severity, message) =
            capacity("/b", nearly_full, Some(100), MinFree::parse("5%")).unwrap();
        assert_eq!(severity, Health::Warning);
        assert!(message.contains("min-free of 5% of 252.0 GiB"), "{message}");
        let (_, message) = capacity("/b", nearly_full, None, MinFree::parse("4GiB")).unwrap();
        assert!(message.contains("min-free of 4.0 GiB"), "{message}");
        assert_eq!(
            capacity("/b", nearly_full, None, MinFree::parse("2GiB")),
            None
        );
        // Room for the next backups is judged whatever the floor.
        let (severity, _) = capacity("/b", nearly_full, Some(2 * gib), None).unwrap();
        assert_eq!(severity, Health::Warning);
        let (severity, _) = capacity("/b", nearly_full, Some(4 * gib), None).unwrap();
        assert_eq!(severity, Health::Critical);
    }

    #[test]
    fn min_free_takes_a_share_or_a_size() {
        assert_eq!(MinFree::parse("10%"), Some(MinFree::Percent(10.0)));
        assert_eq!(MinFree::parse("2.5%"), Some(MinFree::Percent(2.5)));
        assert_eq!(MinFree::parse("20GiB"), Some(MinFree::Bytes(20 << 30)));
        assert_eq!(MinFree::parse("500MiB"), Some(MinFree::Bytes(500 << 20)));
        assert_eq!(MinFree::parse("4096B"), Some(MinFree::Bytes(4096)));
        for bad in [
            "",
            "%",
            "101%",
            ".5%",
            "-1%",
            "10",
            "10GB",
            "GiB",
            "1e3B",
            "99999999999TiB",
        ] {
            assert_eq!(MinFree::parse(bad), None, "{bad}");
        }
    }
}
