//! The backups on every destination, and what else lies there, as
//! `backup list` reports them: rows made from the inventory, rendered as a
//! table. Reads nothing itself.

use serde::Serialize;

use crate::format::human_bytes;
use crate::inventory::Inventory;

/// `--format json` output.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub format_version: u32,
    pub backups: Vec<Row>,
    pub orphans: Vec<OrphanRow>,
    pub errors: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub policy: String,
    pub destination: String,
    pub id: String,
    pub created_at: String,
    pub finished_at: String,
    pub size: u64,
    sha256: String,
    pub source: String,
    pub server_version: Option<String>,
    pub tags: Vec<String>,
    pub state: String,
}

#[derive(Debug, Serialize)]
pub struct OrphanRow {
    pub policy: String,
    pub destination: String,
    pub name: String,
    pub size: u64,
    pub reason: String,
}

/// The rows of every backup, orphan and unreadable listing in `inventory`.
pub fn catalog(inventory: Inventory) -> Report {
    let mut report = Report {
        format_version: 1,
        ..Report::default()
    };
    for found in inventory.policies {
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
    report
}

/// The table `backup list` prints.
pub fn render(report: &Report) -> String {
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
