//! `backup status`: the health of every policy, Nagios-style.

use super::output::{stderrln, stdout, stdoutln};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::Args;

use super::args::{CrontabArgs, observe, parse_time};
use super::{GlobalArgs, Hosts, OutputFormat, load_for};
use crate::exit::ExitStatus;
use crate::status::{self, Health};

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
    /// The whole fleet, from the destinations: every policy whichever
    /// hosts run it (`metadata.hosts`), and per host its last run, the
    /// backups it took and whether it holds the lease. Leaves this host's
    /// crontab out.
    #[arg(long)]
    pub all_hosts: bool,
    #[command(flatten)]
    pub crontab: CrontabArgs,
}

pub fn run(global: &GlobalArgs, args: &StatusArgs) -> anyhow::Result<ExitStatus> {
    let hosts = if args.all_hosts {
        Hosts::All
    } else {
        Hosts::This
    };
    let selection = match load_for(global, &[], args.policy.as_deref(), hosts) {
        Ok(selection) => selection,
        // Nagios: a policy that cannot be judged (unknown name, invalid file) is UNKNOWN.
        Err(_) => return Ok(ExitStatus::Unknown),
    };
    let state = global.state();
    let now = args.now.unwrap_or_else(Utc::now);
    let mut crontab = args.crontab.options(global, &[]);
    crontab.skip |= args.all_hosts;
    let observed = observe(global, &selection, crontab, now, true);
    let fleet_input = args.all_hosts.then(|| {
        let taken: std::collections::BTreeMap<String, status::fleet::Taken> = selection
            .selected
            .iter()
            .map(|policy| {
                let taken = observed
                    .inventory
                    .policy(&policy.name)
                    .map(status::fleet::taken)
                    .unwrap_or_default();
                (policy.name.clone(), taken)
            })
            .collect();
        (status::gather::fleet_records(&selection.selected), taken)
    });
    let mut report = status::report::report(
        &selection.selected,
        status::report::Observed {
            inventory: observed.inventory,
            crontab: &observed.crontab,
            space: observed.space,
        },
        &state,
        now,
        args.detailed,
        selection.errors,
    );
    if let Some((records, taken)) = fleet_input {
        let fleet = status::report::fleet(
            &selection.selected,
            &report,
            records,
            taken,
            &|policy| lease_view(policy),
            &|host| selection.host_labels(host),
        );
        report = report.with_fleet(fleet);
    }
    match args.format {
        OutputFormat::Text => {
            stdout!("{}", status::text::render(&report, global.stdout_color()));
            if let Some(fleet) = &report.fleet {
                stdout!(
                    "\n{}",
                    status::fleet::render(fleet, now, global.stdout_color())
                );
            }
        }
        OutputFormat::Json => stdoutln!("{}", serde_json::to_string_pretty(&report)?),
    }
    if let Some(file) = &args.prometheus
        && let Err(error) = status::prometheus::write(file, &report)
    {
        stderrln!("error: the Prometheus textfile: {error}");
        return Ok(ExitStatus::Unknown);
    }
    if args.notify_critical {
        for problem in status::report::notify_critical(&state, &selection.selected, &report, now) {
            stderrln!("warning: {problem}");
        }
    }
    // Nagios: critical first, then unknown (3, a policy file that does not load).
    Ok(match report.state {
        Health::Critical => ExitStatus::Critical,
        _ if selection.errors > 0 => ExitStatus::Unknown,
        Health::Ok => ExitStatus::Success,
        Health::Warning => ExitStatus::Warning,
    })
}

/// The lease of `policy` as the fleet view shows it: none without `spec.lease`.
fn lease_view(policy: &crate::policy::Policy) -> Option<status::fleet::LeaseView> {
    policy.lease?;
    Some(match crate::lease::peek_policy(policy) {
        Ok(Some(info)) => status::fleet::LeaseView {
            holder: Some(info.holder),
            epoch: Some(info.epoch),
            expires_at: Some(info.expires_at),
            expired: info.expired,
            error: None,
        },
        Ok(None) => status::fleet::LeaseView {
            holder: None,
            epoch: None,
            expires_at: None,
            expired: true,
            error: None,
        },
        Err(error) => status::fleet::LeaseView {
            holder: None,
            epoch: None,
            expires_at: None,
            expired: true,
            error: Some(error.to_string()),
        },
    })
}
