//! `backup status` for people: one line per policy, worst finding first.

use super::{Health, PolicyHealth, Report};
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

fn word(health: Health, color: bool) -> String {
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
            "newest {id} ({} ago)",
            crate::plan::human_age(report.now - created_at)
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
            "last run ok {} ago",
            crate::plan::human_age(report.now - attempt.finished_at)
        ));
    }
    parts.push("retention met".to_owned());
    if let Some(free) = policy
        .destinations
        .iter()
        .filter_map(|destination| destination.free_bytes)
        .min()
    {
        parts.push(format!("{} free", crate::cli::human_bytes(free)));
    }
    parts.join(", ")
}
