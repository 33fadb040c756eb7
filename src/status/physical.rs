//! The health of a policy's point-in-time recovery: its base backups (judged
//! like backups, by `spec.physical`'s schedule and retention), its WAL
//! archive (archive lag, gaps with their exact range, failed pushes on this
//! host) and the window a restore can reach.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Finding, Health, Input};
use crate::inventory::PolicyInventory;
use crate::plan::wal::WalPlan;
use crate::wal::Range;

/// What `status` says about a policy's base backups and WAL.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhysicalHealth {
    pub state: Health,
    /// Complete base backups and the newest one.
    pub base_backups: usize,
    pub newest_base_backup: Option<String>,
    pub newest_base_created_at: Option<DateTime<Utc>>,
    /// When the newest WAL file was archived, and how long ago.
    pub newest_archived_at: Option<DateTime<Utc>>,
    pub archive_lag_seconds: Option<i64>,
    /// The recoverable window: earliest and latest point a restore reaches.
    pub recoverable_from: Option<DateTime<Utc>>,
    pub recoverable_to: Option<DateTime<Utc>>,
    pub wal_segments: u64,
    pub wal_bytes: u64,
    /// Missing WAL, exact, with where.
    pub gaps: Vec<Gap>,
    /// Failed `wal push` runs on this host since the last one that succeeded.
    pub push_failures: u64,
    pub last_push_failure: Option<String>,
}

/// A missing WAL range on one destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub destination: String,
    #[serde(flatten)]
    pub range: Range,
}

/// Judges the base backups and WAL of `input`'s policy (which has
/// `spec.physical`) from `physical`, its base backups' inventory with the
/// WAL listings; findings go to `findings`.
pub fn evaluate(
    input: &Input,
    physical: &PolicyInventory,
    push: Option<&crate::wal::status::PushStatus>,
    findings: &mut Vec<Finding>,
) -> PhysicalHealth {
    let policy = input.policy;
    let now = input.now;
    let mut health = PhysicalHealth {
        state: Health::Ok,
        base_backups: 0,
        newest_base_backup: None,
        newest_base_created_at: None,
        newest_archived_at: None,
        archive_lag_seconds: None,
        recoverable_from: None,
        recoverable_to: None,
        wal_segments: 0,
        wal_bytes: 0,
        gaps: Vec::new(),
        push_failures: push.map_or(0, |push| push.failures),
        last_push_failure: push
            .and_then(|push| push.last_failure.as_ref())
            .map(|failure| {
                format!(
                    "{} at {}: {}",
                    failure.file,
                    failure.at.to_rfc3339(),
                    failure.reason.as_deref().unwrap_or("unknown")
                )
            }),
    };
    let mut find =
        |health: &mut PhysicalHealth, check: &'static str, severity: Health, message: String| {
            health.state = health.state.max(severity);
            findings.push(Finding {
                check,
                severity,
                message,
            });
        };
    // The base backups, judged as backups by the physical view.
    if let Some(view) = policy.physical_view() {
        let based = super::evaluate_view(Input {
            policy: &view,
            inventory: Some(physical),
            summary: None,
            drill: None,
            space: input.space.clone(),
            crontab: super::CrontabCheck {
                state: "unchecked".to_owned(),
                message: String::new(),
            },
            now,
            detailed: false,
            recent_runs: Vec::new(),
        });
        health.base_backups = based
            .destinations
            .iter()
            .map(|destination| destination.backups)
            .max()
            .unwrap_or(0);
        health.newest_base_backup = based.freshness.newest_backup.clone();
        health.newest_base_created_at = based.freshness.newest_created_at;
        for finding in based.findings {
            if matches!(finding.check, "freshness" | "retention" | "integrity") {
                find(
                    &mut health,
                    finding.check,
                    finding.severity,
                    format!("base backups: {}", finding.message),
                );
            }
        }
    }
    // The WAL, as the plan summarises it.
    let kept: Vec<crate::plan::Kept> = Vec::new();
    let (wal, _) = crate::plan::wal::plan(policy, physical, &kept, now);
    apply_wal(&mut health, &wal, now);
    for gap in &health.gaps.clone() {
        find(
            &mut health,
            "wal",
            Health::Critical,
            format!(
                "WAL gap on {}: missing {}; no restore can replay across it (take a base backup after it: `backup run {} --physical`)",
                gap.destination,
                gap.range.describe(),
                policy.name
            ),
        );
    }
    for destination in &wal.destinations {
        if let Some(error) = &destination.error {
            find(
                &mut health,
                "wal",
                Health::Warning,
                format!(
                    "the WAL archive on {} cannot be listed: {error}",
                    destination.location
                ),
            );
        }
    }
    if health.base_backups > 0 && health.recoverable_from.is_none() {
        find(
            &mut health,
            "wal",
            Health::Critical,
            "no base backup has its WAL archived from its start: nothing can be restored to a point in time (is archive_command set to `backup wal push`?)".to_owned(),
        );
    }
    if let Some(push) = push
        && push.failures > 0
    {
        let stuck = push.last_success.as_ref().is_none_or(|success| {
            push.last_failure
                .as_ref()
                .is_some_and(|failure| failure.at - success.at > chrono::Duration::minutes(10))
        });
        find(
            &mut health,
            "wal",
            if stuck {
                Health::Critical
            } else {
                Health::Warning
            },
            format!(
                "{} WAL push{} failed since the last one that succeeded{}",
                push.failures,
                if push.failures == 1 { "" } else { "es" },
                push.last_failure
                    .as_ref()
                    .map(|failure| format!(
                        " (last: {}: {})",
                        failure.file,
                        failure.reason.as_deref().unwrap_or("unknown")
                    ))
                    .unwrap_or_default()
            ),
        );
    }
    health
}

fn apply_wal(health: &mut PhysicalHealth, wal: &WalPlan, now: DateTime<Utc>) {
    health.recoverable_from = wal.earliest;
    health.recoverable_to = wal.latest;
    health.newest_archived_at = wal
        .destinations
        .iter()
        .filter_map(|destination| destination.newest)
        .max();
    health.archive_lag_seconds = health
        .newest_archived_at
        .map(|newest| (now - newest).num_seconds().max(0));
    health.wal_segments = wal
        .destinations
        .iter()
        .map(|destination| destination.segments)
        .max()
        .unwrap_or(0);
    health.wal_bytes = wal
        .destinations
        .iter()
        .map(|destination| destination.bytes)
        .max()
        .unwrap_or(0);
    health.gaps = wal
        .destinations
        .iter()
        .flat_map(|destination| {
            destination.gaps.iter().map(|range| Gap {
                destination: destination.location.clone(),
                range: range.clone(),
            })
        })
        .collect();
}
