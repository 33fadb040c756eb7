//! A `status` run: the report over every selected policy from what the
//! observe step found and this host's records, and the critical-health
//! notifications it sends. Judging is [`super::evaluate`]'s.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{Health, Input, Report, Space, gather};
use crate::inventory::Inventory;
use crate::notify;
use crate::plan::CrontabInput;
use crate::policy::Policy;
use crate::policy::spec::NotifyEvent;
use crate::state::StateDir;

/// How long `--notify-critical` stays quiet about a policy it already
/// reported critical (the crontab runs it daily).
const CRITICAL_REMINDER: chrono::Duration = chrono::Duration::hours(20);

/// What the report is judged from, besides this host's state folder.
pub struct Observed<'a> {
    pub inventory: Inventory,
    pub crontab: &'a CrontabInput,
    /// Per policy, free space by local destination.
    pub space: BTreeMap<String, BTreeMap<String, Result<Space, String>>>,
}

/// The fleet view of `policies` beside `report` (their health as judged
/// there), from each policy's host records, the backups each host took
/// (`taken`, by policy) and the hosts' labels.
pub fn fleet(
    policies: &[Policy],
    report: &Report,
    mut records: super::gather::FleetRecords,
    mut taken: BTreeMap<String, super::fleet::Taken>,
    leases: &dyn Fn(&Policy) -> Option<super::fleet::LeaseView>,
    labels: &dyn Fn(&str) -> BTreeMap<String, String>,
) -> super::fleet::Fleet {
    let judged = policies
        .iter()
        .filter_map(|policy| {
            let health = report
                .policies
                .iter()
                .find(|health| health.name == policy.name)?;
            Some(super::fleet::evaluate(super::fleet::Input {
                policy,
                health,
                taken: taken.remove(&policy.name).unwrap_or_default(),
                records: records.remove(&policy.name).unwrap_or_default(),
                lease: leases(policy),
                labels,
            }))
        })
        .collect();
    super::fleet::fleet(judged)
}

/// Judges every policy of `policies` at `now`; `policy_errors` counts the
/// errors in the policy files (a warning of its own).
pub fn report(
    policies: &[Policy],
    observed: Observed,
    state: &StateDir,
    now: DateTime<Utc>,
    detailed: bool,
    policy_errors: usize,
) -> Report {
    let Observed {
        mut inventory,
        crontab,
        mut space,
    } = observed;
    // Pre-restore safety backups are not the policy's backups: freshness,
    // retention, counts and sizes judge the scheduled ones alone, as `plan` does.
    for found in &mut inventory.policies {
        for destination in &mut found.destinations {
            if let Ok(listing) = &mut destination.listing {
                listing
                    .backups
                    .retain(|record| !record.metadata.is_pre_restore());
            }
        }
    }
    let summary = crate::runlog::summary(state);
    let mut healths = Vec::new();
    for policy in policies {
        let push = crate::wal::status::read(state, &policy.name).ok().flatten();
        healths.push(super::evaluate_with(
            Input {
                policy,
                inventory: inventory.policy(&policy.name),
                summary: summary.policies.get(&policy.name),
                drill: gather::drill(state.path(), &policy.name),
                space: space.remove(&policy.name).unwrap_or_default(),
                crontab: gather::crontab_check(crontab, Some(&policy.name)),
                now,
                detailed,
                recent_runs: if detailed {
                    crate::runlog::recent(state, &policy.name, 100)
                } else {
                    Vec::new()
                },
            },
            push.as_ref(),
        ));
    }
    let mut report = Report::new(now, healths, gather::crontab_check(crontab, None));
    if policy_errors > 0 {
        report.policy_errors = policy_errors;
        report.state = report.state.max(Health::Warning);
    }
    report
}

/// Sends `critical` notifications and remembers each policy's health;
/// returns the problems met on the way.
pub fn notify_critical(
    state: &StateDir,
    policies: &[Policy],
    report: &Report,
    now: DateTime<Utc>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut due = Vec::new();
    let remembered = crate::runlog::update(state, |summary| {
        for health in &report.policies {
            let entry = summary.policies.entry(health.name.clone()).or_default();
            let critical = health.state == Health::Critical;
            let was_critical = entry.health.as_deref() == Some("critical");
            let quiet = entry
                .critical_notified_at
                .is_some_and(|at| now - at < CRITICAL_REMINDER && now >= at);
            if critical && !(was_critical && quiet) {
                due.push(health.name.clone());
                entry.critical_notified_at = Some(now);
            }
            entry.health = Some(health.state.word().to_lowercase());
        }
    });
    if let Err(error) = remembered {
        problems.push(format!(
            "cannot remember the health in the state folder: {error}"
        ));
    }
    for name in due {
        let (Some(policy), Some(health)) = (
            policies.iter().find(|policy| policy.name == name),
            report.policies.iter().find(|health| health.name == name),
        ) else {
            continue;
        };
        if !notify::wants(policy, NotifyEvent::Critical) {
            continue;
        }
        let reasons: Vec<String> = health
            .findings
            .iter()
            .filter(|finding| finding.severity == Health::Critical)
            .map(|finding| finding.message.clone())
            .collect();
        let mut message = notify::Message::new(
            policy,
            NotifyEvent::Critical,
            Some(reasons.join("; ")),
            health.freshness.newest_backup.clone(),
        );
        message.details = health
            .findings
            .iter()
            .map(|finding| format!("{}: {}", finding.severity.word(), finding.message))
            .collect();
        message.refresh_text();
        problems.extend(notify::send(policy, &message, &[]));
    }
    problems
}
