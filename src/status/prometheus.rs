//! The node_exporter textfile: `backup status --prometheus FILE`.
//!
//! Metrics carry `policy` (and `destination`) labels, then the policy's own
//! `metadata.labels` (see [`policy_labels`]); every family has its HELP and
//! TYPE lines, and names follow Prometheus's rules (`promtool check metrics`
//! passes: no `_count` or `_total` suffix on a gauge). Written atomically
//! (temporary file and rename) by the caller, so node_exporter never reads
//! half a file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::Path;

use super::Report;
use crate::state::{Error, io_error};

/// Writes the textfile for `report` to `path`, atomically and with mode
/// 0644. Missing parent folders are created with mode 0755 (before the
/// umask), as node_exporter's textfile folder is: the collector usually runs
/// as another user and must reach the file.
pub fn write(path: &Path, report: &Report) -> Result<(), Error> {
    if let Some(folder) = path
        .parent()
        .filter(|folder| !folder.as_os_str().is_empty())
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(folder)
            .map_err(io_error("cannot create the folder", folder))?;
    }
    crate::runlog::write_atomically(path, render(report).as_bytes(), 0o644)
}

/// The textfile for `report`.
pub fn render(report: &Report) -> String {
    let mut families: Vec<Family> = vec![
        Family::new(
            "backup_last_success_timestamp_seconds",
            "Creation time of the newest complete backup, as a Unix time.",
            "gauge",
        ),
        Family::new(
            "backup_last_attempt_success",
            "1 when the policy's last run or apply on this host succeeded, 0 when it failed.",
            "gauge",
        ),
        Family::new(
            "backup_last_attempt_timestamp_seconds",
            "When the policy's last run or apply on this host finished, as a Unix time.",
            "gauge",
        ),
        Family::new(
            "backup_size_bytes",
            "Size of the newest complete backup, compressed.",
            "gauge",
        ),
        Family::new(
            "backup_duration_seconds",
            "How long the newest complete backup took.",
            "gauge",
        ),
        Family::new(
            "backup_retention_compliant",
            "1 when the complete backups fill every keep-* rule, else 0.",
            "gauge",
        ),
        Family::new(
            "backup_complete_backups",
            "Number of complete backups on the destination.",
            "gauge",
        ),
        Family::new(
            "backup_destination_up",
            "1 when the destination could be listed, else 0.",
            "gauge",
        ),
        Family::new(
            "backup_destination_free_bytes",
            "Free space on a local destination's file system.",
            "gauge",
        ),
        Family::new(
            "backup_next_backup_bytes",
            "Expected size of the next backup at the recent growth rate.",
            "gauge",
        ),
        Family::new(
            "backup_health",
            "Health from backup status: 0 ok, 1 warning, 2 critical.",
            "gauge",
        ),
        Family::new(
            "backup_wal_archive_lag_seconds",
            "Seconds since the newest WAL file was archived (policies with base backups).",
            "gauge",
        ),
        Family::new(
            "backup_pitr_earliest_timestamp_seconds",
            "The earliest point a point-in-time restore reaches, as a Unix time.",
            "gauge",
        ),
        Family::new(
            "backup_pitr_latest_timestamp_seconds",
            "The latest point a point-in-time restore reaches, as a Unix time.",
            "gauge",
        ),
        Family::new(
            "backup_wal_gap_segments",
            "WAL segments missing between archived ones (0 when the archive is continuous).",
            "gauge",
        ),
        Family::new(
            "backup_wal_push_failures",
            "Failed wal push runs on this host since the last one that succeeded.",
            "gauge",
        ),
        Family::new(
            "backup_last_base_backup_timestamp_seconds",
            "Creation time of the newest complete base backup, as a Unix time.",
            "gauge",
        ),
    ];
    for policy in &report.policies {
        let own = policy_labels(&policy.labels);
        let with_own = |pairs: &[(&str, &str)]| {
            let mut all: Vec<(&str, &str)> = pairs.to_vec();
            all.extend(
                own.iter()
                    .map(|(name, value)| (name.as_str(), value.as_str())),
            );
            labels(&all)
        };
        let policy_labels = with_own(&[("policy", &policy.name)]);
        if let Some(attempt) = &policy.last_attempt {
            families[1].sample(&policy_labels, if attempt.ok() { 1.0 } else { 0.0 });
            families[2].sample(&policy_labels, attempt.finished_at.timestamp() as f64);
        }
        families[10].sample(&policy_labels, f64::from(policy.state.code()));
        if let Some(physical) = &policy.physical {
            if let Some(lag) = physical.archive_lag_seconds {
                families[11].sample(&policy_labels, lag as f64);
            }
            if let (Some(from), Some(to)) = (physical.recoverable_from, physical.recoverable_to) {
                families[12].sample(&policy_labels, from.timestamp() as f64);
                families[13].sample(&policy_labels, to.timestamp() as f64);
            }
            let missing: u64 = physical.gaps.iter().map(|gap| gap.range.count).sum();
            families[14].sample(&policy_labels, missing as f64);
            families[15].sample(&policy_labels, physical.push_failures as f64);
            if let Some(created_at) = physical.newest_base_created_at {
                families[16].sample(&policy_labels, created_at.timestamp() as f64);
            }
        }
        for destination in &policy.destinations {
            let both = with_own(&[
                ("policy", &policy.name),
                ("destination", &destination.location),
            ]);
            families[7].sample(&both, if destination.readable { 1.0 } else { 0.0 });
            if !destination.readable {
                continue;
            }
            if let Some(created_at) = destination.newest_created_at {
                families[0].sample(&both, created_at.timestamp() as f64);
            }
            if let Some(size) = destination.size_bytes {
                families[3].sample(&both, size as f64);
            }
            if let Some(duration) = destination.duration_seconds {
                families[4].sample(&both, duration);
            }
            families[5].sample(
                &both,
                if destination.retention_compliant {
                    1.0
                } else {
                    0.0
                },
            );
            families[6].sample(&both, destination.backups as f64);
            if let Some(free) = destination.free_bytes {
                families[8].sample(&both, free as f64);
            }
            if let Some(next) = destination.next_backup_bytes {
                families[9].sample(&both, next as f64);
            }
        }
    }
    let mut text = String::new();
    for family in families {
        let _ = writeln!(text, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(text, "# TYPE {} {}", family.name, family.kind);
        for (labels, value) in family.samples {
            let _ = writeln!(text, "{}{{{labels}}} {value}", family.name);
        }
    }
    text
}

struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<(String, f64)>,
}

impl Family {
    fn new(name: &'static str, help: &'static str, kind: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    fn sample(&mut self, labels: &str, value: f64) {
        self.samples.push((labels.to_owned(), value));
    }
}

/// Label names `backup` sets itself; a policy label never overrides them.
const OWN_LABELS: [&str; 2] = ["policy", "destination"];

/// A policy's `metadata.labels` as Prometheus labels, in name order. Names
/// are made valid label names (`[a-zA-Z_][a-zA-Z0-9_]*`): any other
/// character becomes `_`, and a leading digit gets a `_` before it. Names
/// that would clash with the labels `backup` sets (`policy`, `destination`)
/// or with Prometheus's reserved `__` prefix get a `label_` prefix. When two
/// labels end up with the same name, the first (in the policy's name order)
/// wins; empty names are left out.
pub fn policy_labels(labels: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut result: Vec<(String, String)> = Vec::new();
    for (name, value) in labels {
        let mut sanitised: String = name
            .chars()
            .map(|character| {
                if character.is_ascii_alphanumeric() || character == '_' {
                    character
                } else {
                    '_'
                }
            })
            .collect();
        if sanitised.is_empty() {
            continue;
        }
        if sanitised.starts_with(|character: char| character.is_ascii_digit()) {
            sanitised.insert(0, '_');
        }
        if OWN_LABELS.contains(&sanitised.as_str()) || sanitised.starts_with("__") {
            sanitised.insert_str(0, "label_");
        }
        if result.iter().all(|(taken, _)| *taken != sanitised) {
            result.push((sanitised, value.clone()));
        }
    }
    result.sort();
    result
}

/// `policy="app",destination="/var/backups"`, values escaped as the text format wants.
fn labels(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| {
            let escaped = value
                .replace('\\', r"\\")
                .replace('"', "\\\"")
                .replace('\n', r"\n");
            format!("{name}=\"{escaped}\"")
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_labels_become_valid_label_names_that_never_override_ours() {
        let labels: BTreeMap<String, String> = [
            ("team", "payments"),
            ("cost-centre", "42"),
            ("9lives", "cat"),
            ("policy", "mine"),
            ("destination", "there"),
            ("__name__", "x"),
            ("cost_centre", "second"),
            ("", "empty"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        assert_eq!(
            policy_labels(&labels),
            [
                ("_9lives", "cat"),
                ("cost_centre", "42"),
                ("label___name__", "x"),
                ("label_destination", "there"),
                ("label_policy", "mine"),
                ("team", "payments"),
            ]
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
        );
    }
}
