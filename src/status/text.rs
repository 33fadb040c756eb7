//! `backup status` for people: one line per policy, worst finding first;
//! with `--detailed`, each line is followed by what stands behind it.

use std::fmt::Write as _;

use super::{Detail, Health, PolicyHealth, Report};
use crate::format::human_bytes;
use crate::policy::diagnostic::paint;

/// The report as text: `OK       app: …`, one line per policy, then the
/// crontab when it needs attention.
pub fn render(report: &Report, color: bool) -> String {
    let mut text = String::new();
    for policy in &report.policies {
        text.push_str(&format!(
            "{} {}: {}\n",
            word(policy.state, color),
            policy.name,
            line(policy, report)
        ));
        if let Some(detail) = &policy.detail {
            text.push_str(&detailed(policy, detail));
        }
    }
    if report.policy_errors > 0 {
        text.push_str(&format!(
            "{} policies: the policy files have {} error{}; the policies they hold are not backed up (see above, or run `backup validate`)\n",
            word(Health::Warning, color),
            report.policy_errors,
            if report.policy_errors == 1 { "" } else { "s" }
        ));
    }
    if !matches!(report.crontab.state.as_str(), "ok" | "unchecked") {
        text.push_str(&format!(
            "{} crontab: {}\n",
            word(Health::Warning, color),
            report.crontab.message
        ));
    }
    text
}

pub(super) fn word(health: Health, color: bool) -> String {
    let padded = format!("{:<8}", health.word());
    match health {
        Health::Ok => paint(color, "32", &padded),
        Health::Warning => paint(color, "33", &padded),
        Health::Critical => paint(color, "1;31", &padded),
    }
}

fn line(policy: &PolicyHealth, report: &Report) -> String {
    let mut findings: Vec<_> = policy
        .findings
        .iter()
        .filter(|finding| finding.severity > Health::Ok)
        .collect();
    if !findings.is_empty() {
        findings.sort_by_key(|finding| std::cmp::Reverse(finding.severity));
        let parts: Vec<&str> = findings
            .iter()
            .map(|finding| finding.message.as_str())
            .collect();
        return parts.join("; ");
    }
    let mut parts = Vec::new();
    match (
        &policy.freshness.newest_backup,
        policy.freshness.newest_created_at,
    ) {
        (Some(id), Some(created_at)) => parts.push(format!(
            "newest {id} ({})",
            crate::format::human_ago(report.now - created_at)
        )),
        _ => parts.push("no backup".to_owned()),
    }
    let backups: Vec<String> = policy
        .destinations
        .iter()
        .map(|destination| destination.backups.to_string())
        .collect();
    parts.push(format!(
        "{} backup{} on {} destination{}",
        backups.join("/"),
        if backups.len() == 1 && backups[0] == "1" {
            ""
        } else {
            "s"
        },
        policy.destinations.len(),
        if policy.destinations.len() == 1 {
            ""
        } else {
            "s"
        }
    ));
    if let Some(attempt) = &policy.last_attempt {
        parts.push(format!(
            "last run ok {}",
            crate::format::human_ago(report.now - attempt.finished_at)
        ));
    }
    parts.push("retention met".to_owned());
    if let Some(free) = policy
        .destinations
        .iter()
        .filter_map(|destination| destination.free_bytes)
        .min()
    {
        parts.push(format!("{} free", crate::format::human_bytes(free)));
    }
    if let Some(physical) = &policy.physical {
        parts.push(physical_part(physical, report));
    }
    parts.join(", ")
}

/// `2 base backups, newest … (3 days ago), WAL archived 40 s ago, recoverable … to …`.
fn physical_part(physical: &super::physical::PhysicalHealth, report: &Report) -> String {
    let time = |at: chrono::DateTime<chrono::Utc>| at.format("%Y-%m-%d %H:%M UTC").to_string();
    let mut part = match (
        &physical.newest_base_backup,
        physical.newest_base_created_at,
    ) {
        (Some(id), Some(created_at)) => format!(
            "{} base backup{}, newest {id} ({})",
            physical.base_backups,
            if physical.base_backups == 1 { "" } else { "s" },
            crate::format::human_ago(report.now - created_at)
        ),
        _ => "no base backup".to_owned(),
    };
    if let Some(newest) = physical.newest_archived_at {
        part.push_str(&format!(
            ", WAL archived {}",
            crate::format::human_ago(report.now - newest)
        ));
    }
    if let (Some(from), Some(to)) = (physical.recoverable_from, physical.recoverable_to) {
        part.push_str(&format!(", recoverable {} to {}", time(from), time(to)));
    }
    part
}

/// The indented report behind one policy's line: per destination every
/// backup's state, each retention rule, the space trend; then the last
/// failed attempts on this host.
fn detailed(policy: &PolicyHealth, detail: &Detail) -> String {
    let mut text = String::new();
    let time = |at: chrono::DateTime<chrono::Utc>| at.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    for destination in &detail.destinations {
        let judged = policy
            .destinations
            .iter()
            .find(|judged| judged.location == destination.location);
        let _ = writeln!(text, "  {}", destination.location);
        if let Some(error) = judged.and_then(|judged| judged.error.as_deref()) {
            let _ = writeln!(text, "    cannot be read: {error}");
            continue;
        }
        if destination.backups.is_empty() {
            let _ = writeln!(text, "    no backups");
        }
        for backup in &destination.backups {
            let _ = writeln!(
                text,
                "    {}  {}  {:>10}  {}",
                backup.id,
                time(backup.created_at),
                human_bytes(backup.size_bytes),
                backup.state
            );
        }
        for orphan in &destination.orphans {
            let _ = writeln!(text, "    orphan: {orphan}");
        }
        for unreadable in &destination.unreadable {
            let _ = writeln!(text, "    unreadable sidecar: {unreadable}");
        }
        let rules: Vec<String> = judged
            .into_iter()
            .flat_map(|judged| &judged.retention)
            .map(|compliance| {
                format!(
                    "{compliance} ({})",
                    if compliance.compliant() {
                        "met"
                    } else {
                        "NOT met"
                    }
                )
            })
            .collect();
        if rules.is_empty() {
            let _ = writeln!(text, "    retention: no counting rule (keep-within only)");
        } else {
            let _ = writeln!(text, "    retention: {}", rules.join("; "));
        }
        if let Some(trend) = &destination.trend {
            let sizes: Vec<String> = trend
                .recent_sizes
                .iter()
                .map(|size| human_bytes(*size))
                .collect();
            let growth = trend.growth_bytes_per_backup;
            let mut line = format!(
                "    space: last {} sizes {}, {}{} per backup",
                sizes.len(),
                sizes.join(", "),
                if growth < 0 { "-" } else { "+" },
                human_bytes(growth.unsigned_abs())
            );
            if let Some(next) = trend.next_backup_bytes {
                let _ = write!(line, ", next about {}", human_bytes(next));
            }
            if let Some(free) = trend.free_bytes {
                let _ = write!(line, "; {} free", human_bytes(free));
                if let Some(room) = trend.room_for_backups {
                    let _ = write!(line, ", room for {room} more");
                }
            }
            let _ = writeln!(text, "{line}");
        }
    }
    if detail.recent_failures.is_empty() {
        let _ = writeln!(text, "  last errors: none recorded on this host");
    } else {
        let _ = writeln!(text, "  last errors:");
        for failure in &detail.recent_failures {
            let _ = writeln!(
                text,
                "    {}  {}: {}",
                time(failure.finished_at),
                failure.kind.word(),
                failure.error.as_deref().unwrap_or("no reason recorded")
            );
        }
    }
    text
}
