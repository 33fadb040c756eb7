//! `backup status`: the health of every policy, Nagios-style.

use super::output::{stderrln, stdout, stdoutln};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::Args;

use super::plan::{CrontabArgs, crontab_input, parse_time};
use super::{GlobalArgs, OutputFormat, load_selection};
use crate::exit::ExitStatus;
use crate::notify;
use crate::policy::spec::{DestinationSpec, NotifyEvent};
use crate::status::{self, Health, Input, gather};

/// How long `--notify-critical` stays quiet about a policy it already
/// reported critical (the crontab runs it daily).
const CRITICAL_REMINDER: chrono::Duration = chrono::Duration::hours(20);

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Report only this policy.
    #[arg(value_name = "POLICY")]
    pub policy: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
    /// Also write a Prometheus textfile for node_exporter (atomically).
    #[arg(long, value_name = "FILE")]
    pub prometheus: Option<PathBuf>,
    /// Judge as if it were this time (RFC 3339), for tests and reproducible reports.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub now: Option<DateTime<Utc>>,
    /// Notify (`notify.on: [critical]`) about each critical policy: once when
    /// it turns critical, then at most once every 20 hours while it stays so.
    #[arg(long)]
    pub notify_critical: bool,
    /// Behind each policy's line: per destination every backup's state, each
    /// retention rule, the space trend; and the last failed attempts on this host.
    #[arg(long)]
    pub detailed: bool,
    #[command(flatten)]
    pub crontab: CrontabArgs,
}

pub fn run(global: &GlobalArgs, args: &StatusArgs) -> anyhow::Result<ExitStatus> {
    let selection = match load_selection(global, &[], args.policy.as_deref()) {
        Ok(selection) => selection,
        // Nagios: a policy that cannot be judged (unknown name, invalid file) is UNKNOWN.
        Err(_) => return Ok(ExitStatus::Unknown),
    };
    let state = global.state();
    let now = args.now.unwrap_or_else(Utc::now);
    let mut inventory =
        crate::inventory::gather(&selection.selected, Some(&global.sidecar_cache()));
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
    let (crontab, _) = crontab_input(global, &[], &selection, &args.crontab, now);
    let summary = crate::runlog::summary(&state);
    let mut policies = Vec::new();
    for policy in &selection.selected {
        let space = policy
            .destinations
            .iter()
            .filter_map(|spec| match spec {
                DestinationSpec::Local(local) => Some((
                    crate::destination::describe(spec),
                    gather::space(&local.path),
                )),
                DestinationSpec::S3(_) => None,
            })
            .collect();
        policies.push(status::evaluate(Input {
            policy,
            inventory: inventory.policy(&policy.name),
            summary: summary.policies.get(&policy.name),
            drill: gather::drill(state.path(), &policy.name),
            space,
            crontab: gather::crontab_check(&crontab, Some(&policy.name)),
            now,
            detailed: args.detailed,
            recent_runs: if args.detailed {
                crate::runlog::recent(&state, &policy.name, 100)
            } else {
                Vec::new()
            },
        }));
    }
    let mut report = status::Report::new(now, policies, gather::crontab_check(&crontab, None));
    if selection.errors > 0 {
        report.policy_errors = selection.errors;
        report.state = report.state.max(Health::Warning);
    }
    match args.format {
        OutputFormat::Text => stdout!("{}", status::text::render(&report, global.stdout_color())),
        OutputFormat::Json => stdoutln!("{}", serde_json::to_string_pretty(&report)?),
    }
    if let Some(file) = &args.prometheus
        && let Err(error) = status::prometheus::write(file, &report)
    {
        stderrln!("error: the Prometheus textfile: {error}");
        return Ok(ExitStatus::Unknown);
    }
    if args.notify_critical {
        notify_critical(&state, &selection.selected, &report, now);
    }
    // Nagios: critical first, then unknown (3, a policy file that does not load).
    Ok(match report.state {
        Health::Critical => ExitStatus::Critical,
        _ if selection.errors > 0 => ExitStatus::Unknown,
        Health::Ok => ExitStatus::Success,
        Health::Warning => ExitStatus::Warning,
    })
}

/// Sends `critical` notifications and remembers each policy's health.
fn notify_critical(
    state: &crate::state::StateDir,
    policies: &[crate::policy::Policy],
    report: &status::Report,
    now: DateTime<Utc>,
) {
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
        stderrln!("warning: cannot remember the health in the state folder: {error}");
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
        for problem in notify::send(policy, &message, &[]) {
            stderrln!("warning: {problem}");
        }
    }
}
