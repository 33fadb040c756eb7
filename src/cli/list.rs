//! `backup list`: the backups on every destination, and what else lies there.

use super::output::{stderrln, stdout, stdoutln};
use clap::Args;
use serde::Serialize;

use super::{GlobalArgs, OutputFormat, human_bytes, load_policies};
use crate::exit::ExitStatus;
use crate::inventory;

#[derive(Debug, Args)]
pub struct ListArgs {
    /// List only this policy.
    #[arg(value_name = "POLICY")]
    pub policy: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
}

/// `--format json` output.
#[derive(Debug, Default, Serialize)]
struct Report {
    format_version: u32,
    backups: Vec<Row>,
    orphans: Vec<OrphanRow>,
    errors: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Row {
    policy: String,
    destination: String,
    id: String,
    created_at: String,
    finished_at: String,
    size: u64,
    sha256: String,
    source: String,
    server_version: Option<String>,
    tags: Vec<String>,
    state: String,
}

#[derive(Debug, Serialize)]
struct OrphanRow {
    policy: String,
    destination: String,
    name: String,
    size: u64,
    reason: String,
}

pub fn run(global: &GlobalArgs, args: &ListArgs) -> anyhow::Result<ExitStatus> {
    let policies = match load_policies(global, args.policy.as_deref()) {
        Ok(policies) => policies,
        Err(status) => return Ok(status),
    };
    let mut report = Report {
        format_version: 1,
        ..Report::default()
    };
    for found in inventory::gather(&policies, Some(&global.sidecar_cache())).policies {
        let policy = found.policy;
        for destination in found.destinations {
            let location = destination.location;
            let listing = match destination.listing {
                Ok(listing) => listing,
                Err(error) => {
                    report
                        .errors
                        .push(format!("{policy} on {location}: {error}"));
                    continue;
                }
            };
            for record in listing.backups {
                let metadata = record.metadata;
                let size = metadata.stored_size();
                report.backups.push(Row {
                    policy: policy.clone(),
                    destination: record.destination,
                    id: metadata.id,
                    created_at: metadata.created_at.to_rfc3339(),
                    finished_at: metadata.finished_at.to_rfc3339(),
                    size,
                    sha256: metadata.artifact.sha256,
                    source: metadata.source.kind,
                    server_version: metadata.source.server_version,
                    tags: metadata.tags,
                    state: record.state.describe(),
                });
            }
            for orphan in listing.orphans {
                report.orphans.push(OrphanRow {
                    policy: policy.clone(),
                    destination: orphan.destination,
                    name: orphan.name,
                    size: orphan.size,
                    reason: orphan.reason.to_owned(),
                });
            }
            for (name, reason) in listing.unreadable {
                report
                    .errors
                    .push(format!("{policy} on {location}: sidecar {name}: {reason}"));
            }
        }
    }
    match args.format {
        OutputFormat::Json => stdoutln!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Text => stdout!("{}", render(&report)),
    }
    for error in &report.errors {
        stderrln!("error: {error}");
    }
    Ok(if report.errors.is_empty() {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

fn render(report: &Report) -> String {
    let mut rows = vec![[
        "POLICY".to_owned(),
        "ID".to_owned(),
        "CREATED (UTC)".to_owned(),
        "SIZE".to_owned(),
        "SOURCE".to_owned(),
        "STATE".to_owned(),
        "DESTINATION".to_owned(),
    ]];
    for row in &report.backups {
        let created = row.created_at.replace('T', " ").chars().take(19).collect();
        let source = match &row.server_version {
            Some(version) => format!("{} {version}", row.source),
            None => row.source.clone(),
        };
        let mut state = row.state.clone();
        if !row.tags.is_empty() {
            state = format!("{state} [{}]", row.tags.join(","));
        }
        rows.push([
            row.policy.clone(),
            row.id.clone(),
            created,
            human_bytes(row.size),
            source,
            state,
            row.destination.clone(),
        ]);
    }
    let mut widths = [0; 7];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    if report.backups.is_empty() {
        out.push_str("No backups yet.\n");
    } else {
        for row in &rows {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, width)| format!("{cell:width$}"))
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
    }
    for orphan in &report.orphans {
        out.push_str(&format!(
            "orphan: {}/{}/{} ({}, {})\n",
            orphan.destination,
            orphan.policy,
            orphan.name,
            human_bytes(orphan.size),
            orphan.reason
        ));
    }
    out
}
