//! How a restore reads on the terminal: the restore plan that `--dry-run`
//! and the confirmation show, and how it ended. Rendering only.

use std::fmt::Write as _;

use super::{Ending, Outcome, Prepared};
use crate::format::human_bytes;

/// The restore plan, as `--dry-run` and the confirmation show it.
pub fn render_plan(prepared: &Prepared) -> String {
    let metadata = &prepared.chosen.record.metadata;
    let info = &prepared.info;
    let plan = prepared.target.plan(metadata, info);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Restore plan for {} ({}):\n",
        prepared.policy.name,
        prepared.policy.file.display()
    );
    let mut line = |label: &str, text: String| {
        let _ = writeln!(out, "  {label:<14}{text}");
    };
    let rows: u64 = metadata.source.row_counts.values().sum();
    let tables = metadata.source.row_counts.len();
    line(
        "backup",
        format!(
            "{} taken {} UTC, {} stored, {} uncompressed",
            metadata.id,
            metadata.created_at.format("%Y-%m-%d %H:%M:%S"),
            human_bytes(metadata.stored_size()),
            human_bytes(metadata.artifact.uncompressed_size)
        ),
    );
    line(
        "source",
        format!(
            "{} {}{}, {tables} table{} with {rows} row{}{}",
            metadata.source.kind,
            metadata
                .source
                .server_version
                .as_deref()
                .unwrap_or("(version unknown)"),
            metadata
                .source
                .database
                .as_deref()
                .map(|database| format!(" database {database}"))
                .unwrap_or_default(),
            if tables == 1 { "" } else { "s" },
            if rows == 1 { "" } else { "s" },
            plan.source
        ),
    );
    let verified = prepared
        .steps
        .iter()
        .find(|step| step.step == "verify")
        .map(|step| step.detail.clone())
        .unwrap_or_default();
    line("verified", verified);
    line(
        "target",
        format!(
            "{}{}",
            prepared.target.describe(),
            if info.exists {
                info.size
                    .map(|size| format!(" (exists, {})", human_bytes(size)))
                    .unwrap_or_else(|| " (exists)".to_owned())
            } else {
                " (does not exist yet)".to_owned()
            }
        ),
    );
    line("replaces", info.replaces.clone());
    for (label, text) in plan.contents {
        line(label, text);
    }
    line(
        "space",
        match &info.space {
            Some((folder, available)) => format!(
                "{} needed in {}, {} available",
                human_bytes(prepared.needed()),
                folder.display(),
                human_bytes(*available)
            ),
            None => "streamed to the server; no local space needed".to_owned(),
        },
    );
    line(
        "versions",
        format!(
            "backup from {} {}, target {}: {}",
            metadata.source.kind,
            metadata.source.server_version.as_deref().unwrap_or("?"),
            info.version.as_deref().unwrap_or("?"),
            plan.compatibility
        ),
    );
    line(
        "safety backup",
        match &prepared.safety_destination {
            Some(location) => {
                format!("the target is backed up first to {location}, tagged pre-restore")
            }
            None => "none: the target does not exist yet".to_owned(),
        },
    );
    line("checks after", plan.checks_after);
    for (label, text) in plan.more {
        line(label, text);
    }
    line(
        "on failure",
        if info.exists {
            "the safety backup is restored; the target ends as it was".to_owned()
        } else {
            "the new target is removed".to_owned()
        },
    );
    let warnings = super::plan_warnings(prepared);
    if !warnings.is_empty() {
        out.push('\n');
        for warning in warnings {
            let _ = writeln!(out, "warning: {warning}");
        }
    }
    out
}

/// Where a line of [`ending`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How the restore of `prepared` ended, and what to do about a failed
/// rollback; `to_given`: the target was named by `--to`.
pub fn ending(
    prepared: &Prepared,
    outcome: &Outcome,
    seconds: f64,
    to_given: bool,
) -> Vec<(Stream, String)> {
    let policy = &prepared.policy.name;
    let target = prepared.target.describe();
    let mut lines = Vec::new();
    match &outcome.ending {
        Ending::Restored => {
            if let Some(checked) = &outcome.checked {
                for warning in &checked.warnings {
                    lines.push((Stream::Stdout, format!("warning: {warning}")));
                }
            }
            let backup = &prepared.chosen.record.metadata.id;
            lines.push((
                Stream::Stdout,
                format!(
                    "\nRestored {policy} from backup {backup} into {target} in {seconds:.1} s."
                ),
            ));
        }
        Ending::Failed { error, rollback } => {
            lines.push((Stream::Stderr, format!("error: restore failed: {error}")));
            lines.push((
                Stream::Stderr,
                match rollback {
                    Some(detail) => format!(
                        "Rolled back: {detail}. The target is as it was before the restore."
                    ),
                    None => "The target was not changed.".to_owned(),
                },
            ));
        }
        Ending::RollbackFailed {
            error,
            rollback_error,
        } => {
            lines.push((Stream::Stderr, format!("error: restore failed: {error}")));
            lines.push((
                Stream::Stderr,
                format!("error: ROLLBACK FAILED: {rollback_error}"),
            ));
            if let Some(safety) = &outcome.safety_backup {
                // Not the target itself: it may be a URL with a password.
                let to = if to_given {
                    " --to <the same target>"
                } else {
                    ""
                };
                lines.push((
                    Stream::Stderr,
                    format!(
                        "The target may be half restored. Restore the safety backup by hand: backup restore {policy} --backup {safety}{to}"
                    ),
                ));
            }
        }
    }
    lines
}
