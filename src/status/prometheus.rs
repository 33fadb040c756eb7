//! The node_exporter textfile: `backup status --prometheus FILE`.
//!
//! Metrics carry `policy` (and `destination`) labels; every family has its
//! HELP and TYPE lines. Written atomically (temporary file and rename), so
//! node_exporter never reads half a file.

use std::fmt::Write as _;

use super::Report;

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
        Family::new("backup_count", "Number of complete backups.", "gauge"),
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
    ];
    for policy in &report.policies {
        let policy_labels = labels(&[("policy", &policy.name)]);
        if let Some(attempt) = &policy.last_attempt {
            families[1].sample(&policy_labels, if attempt.ok() { 1.0 } else { 0.0 });
            families[2].sample(&policy_labels, attempt.finished_at.timestamp() as f64);
        }
        families[10].sample(&policy_labels, f64::from(policy.state.code()));
        for destination in &policy.destinations {
            let both = labels(&[
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
