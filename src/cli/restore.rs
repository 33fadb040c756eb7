//! `backup restore`: restore a backup safely. Wires [`crate::restore`] to
//! the terminal: the plan, the confirmation, each step as it ends, the log.

use super::output::{stderrln, stdout, stdoutln};
use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::time::Instant;

use chrono::Utc;
use clap::Args;

use super::{GlobalArgs, human_bytes, load_policies};
use crate::exit::ExitStatus;
use crate::restore::{self, Choice, Ending, LogRecord, Prepared, Request, Step};
use crate::runlog::{RunKind, RunRecord};

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The policy whose backup to restore.
    #[arg(value_name = "POLICY")]
    pub policy: String,
    /// Backup id, or `latest` (the newest complete backup that is not a pre-restore safety backup).
    #[arg(long, value_name = "ID", default_value = "latest", value_parser = not_blank)]
    pub backup: String,
    /// Read the backup from this destination (as `backup list` shows it). Default: the
    /// first that holds it, local folders before S3.
    #[arg(long, value_name = "DESTINATION", value_parser = not_blank)]
    pub from: Option<String>,
    /// Restore into this target instead of the policy's source: an SQLite file path, or a
    /// PostgreSQL database name on the same server, or a connection URL (or a
    /// `${env:NAME}` reference to one). A missing database is created.
    #[arg(long, value_name = "TARGET", value_parser = not_blank)]
    pub to: Option<String>,
    /// Verify and show the restore plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation (needed when stdin is not a terminal).
    #[arg(long)]
    pub yes: bool,
    /// PostgreSQL: restore with `pg_restore -j N` from a local decompressed copy
    /// (faster; not one transaction, so a failure is rolled back from the safety backup).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: Option<u32>,
    /// PostgreSQL: how long to wait for a lock another session holds (an open transaction
    /// that read a table the restore drops) before giving up, changing nothing: `30s`,
    /// `5m`, `1h`, or `0` to wait for ever. What it waits for is shown while it waits.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_timeout)]
    pub lock_timeout: std::time::Duration,
    /// The age identity file (or SSH private key) an encrypted backup is
    /// decrypted with. Default: the policy's `encryption.age.identity`.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<std::path::PathBuf>,
}

/// `30s`, `5m`, `1h`, or a number of seconds.
fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = match text.find(|character: char| !character.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => {
            return Err(format!(
                "`{text}` is not a duration like `30s`, `5m` or `1h`"
            ));
        }
    };
    let count: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like `30s`, `5m` or `1h`"))?;
    Ok(std::time::Duration::from_secs(count.saturating_mul(scale)))
}

/// Refuses an empty (or blank) value up front, as a usage error: `--to ''`
/// must not get as far as a target.
fn not_blank(value: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        Err("it must not be empty".to_owned())
    } else {
        Ok(value.to_owned())
    }
}

pub fn run(global: &GlobalArgs, args: &RestoreArgs) -> anyhow::Result<ExitStatus> {
    if !args.dry_run && !args.yes && !std::io::stdin().is_terminal() {
        stderrln!(
            "error: not restoring without confirmation: stdin is not a terminal; pass --yes (or --dry-run to see the plan)"
        );
        return Ok(ExitStatus::Usage);
    }
    let policy = match load_policies(global, Some(&args.policy)) {
        Ok(mut policies) => policies.remove(0),
        Err(status) => return Ok(status),
    };
    if let Err(error) = crate::codec::keys::load(&policy, args.identity.as_deref()) {
        stderrln!("error: {error}");
        return Ok(ExitStatus::Usage);
    }
    let state = global.state();
    // Apply and prune wait while a backup of this policy is being restored.
    let _lock = match state.lock(&policy.name) {
        Ok(lock) => lock,
        Err(error) => {
            stderrln!("error: {error}");
            return Ok(error.exit_status());
        }
    };
    if !args.dry_run {
        crate::runlog::start_log(&state, "restore", Some(&policy.name));
        tracing::info!(policy = %policy.name, backup = %args.backup, "Restore started.");
    }
    let clock = Instant::now();
    let request = Request {
        backup: Choice::parse(&args.backup),
        from: args.from.clone(),
        to: args.to.clone(),
        jobs: args.jobs,
        lock_timeout: Some(args.lock_timeout),
        dry_run: args.dry_run,
    };
    let mut record = LogRecord {
        format_version: 1,
        at: Utc::now(),
        policy: policy.name.clone(),
        backup: match &request.backup {
            Choice::Id(id) => Some(id.clone()),
            Choice::Latest => None,
        },
        from: args.from.clone(),
        target: None,
        result: "refused",
        error: None,
        safety_backup: None,
        steps: Vec::new(),
        seconds: 0.0,
    };
    let prepared = match restore::prepare(&policy, &request) {
        Ok(prepared) => prepared,
        Err((error, steps)) => {
            stderrln!("error: {error}; nothing was changed");
            record.error = Some(error.to_string());
            record.steps = steps;
            record.seconds = clock.elapsed().as_secs_f64();
            if !args.dry_run {
                tracing::error!(policy = %policy.name, "Restore refused: {error}");
                log(&state, &record, None);
                notify_failure(&policy, format!("restore refused: {error}"), &record);
            }
            return Ok(if error.is_verification() {
                ExitStatus::VerificationFailed
            } else {
                ExitStatus::Failure
            });
        }
    };
    record.backup = Some(prepared.chosen.record.metadata.id.clone());
    record.from = Some(prepared.chosen.destination.location());
    record.target = Some(prepared.target.describe());
    record.steps = prepared.steps.clone();
    stdout!("{}", render_plan(&prepared));
    if args.dry_run {
        stdoutln!("\nDry run: nothing was changed.");
        return Ok(ExitStatus::Success);
    }
    if !args.yes && !confirm(&prepared)? {
        stdoutln!("\nRestore cancelled; nothing was changed.");
        return Ok(ExitStatus::Failure);
    }
    stdoutln!();
    let mut observe = |step: &Step| {
        let mark = if step.ok { "done  " } else { "FAILED" };
        stdoutln!(
            "{mark} {:<14} {} ({:.1} s)",
            step.step,
            step.detail,
            step.seconds
        );
        let _ = std::io::stdout().flush();
    };
    let outcome = restore::execute(&prepared, &mut observe);
    record.steps.extend(outcome.steps.iter().cloned());
    record.safety_backup = outcome.safety_backup.clone();
    record.seconds = clock.elapsed().as_secs_f64();
    let total = record.seconds;
    let status = match &outcome.ending {
        Ending::Restored => {
            record.result = "restored";
            tracing::info!(policy = %policy.name, backup = %prepared.chosen.record.metadata.id, target = %prepared.target.describe(), seconds = total, "Restore finished.");
            if let Some(checked) = &outcome.checked {
                for warning in &checked.warnings {
                    stdoutln!("warning: {warning}");
                }
            }
            stdoutln!(
                "\nRestored {} from backup {} into {} in {total:.1} s.",
                policy.name,
                prepared.chosen.record.metadata.id,
                prepared.target.describe()
            );
            ExitStatus::Success
        }
        Ending::Failed { error, rollback } => {
            record.result = if rollback.is_some() {
                "rolled-back"
            } else if outcome.steps.iter().any(|step| step.step == "restore") {
                "failed"
            } else {
                "refused"
            };
            record.error = Some(error.to_string());
            tracing::error!(policy = %policy.name, target = %prepared.target.describe(), result = record.result, "Restore failed: {error}");
            stderrln!("error: restore failed: {error}");
            match rollback {
                Some(detail) => {
                    stderrln!("Rolled back: {detail}. The target is as it was before the restore.")
                }
                None => stderrln!("The target was not changed."),
            }
            if error.is_verification() {
                ExitStatus::VerificationFailed
            } else {
                ExitStatus::Failure
            }
        }
        Ending::RollbackFailed {
            error,
            rollback_error,
        } => {
            record.result = "rollback-failed";
            tracing::error!(policy = %policy.name, target = %prepared.target.describe(), "Restore and rollback failed.");
            record.error = Some(format!("{error}; rollback: {rollback_error}"));
            stderrln!("error: restore failed: {error}");
            stderrln!("error: ROLLBACK FAILED: {rollback_error}");
            if let Some(safety) = &outcome.safety_backup {
                // Not the target itself: it may be a URL with a password.
                let to = if args.to.is_some() {
                    " --to <the same target>"
                } else {
                    ""
                };
                stderrln!(
                    "The target may be half restored. Restore the safety backup by hand: backup restore {} --backup {safety}{to}",
                    policy.name
                );
            }
            ExitStatus::Failure
        }
    };
    if let Some(safety) = &outcome.safety_backup {
        stdoutln!("Safety backup: {safety} (tagged pre-restore; `backup list` shows it).");
    }
    log(
        &state,
        &record,
        Some(prepared.chosen.record.metadata.stored_size()),
    );
    if status != ExitStatus::Success {
        let error = format!(
            "restore into {} {}: {}",
            prepared.target.describe(),
            record.result,
            record.error.as_deref().unwrap_or("failed")
        );
        notify_failure(&policy, error, &record);
    }
    Ok(status)
}

/// Tells the policy's `notify` targets that a restore failed (when they
/// want failures); what cannot be delivered is a warning.
fn notify_failure(policy: &crate::policy::Policy, error: String, record: &LogRecord) {
    for problem in crate::notify::other_failed(policy, error, record.backup.clone()) {
        stderrln!("warning: {problem}");
    }
}

/// Appends `record` to the restore log, and a run record (kind `restore`,
/// `bytes` the backup's stored size) to the policy's run records.
fn log(state: &crate::state::StateDir, record: &LogRecord, bytes: Option<u64>) {
    let written = state
        .ensure("logs")
        .map_err(|error| error.to_string())
        .and_then(|folder| {
            restore::append_log(&folder.join("restore.jsonl"), record)
                .map_err(|error| error.to_string())
        });
    if let Err(error) = written {
        stderrln!("warning: cannot append to the restore log: {error}");
    }
    let mut run = RunRecord::new(&record.policy, RunKind::Restore, record.at);
    run.backup = record.backup.clone();
    run.bytes = bytes;
    if record.result != "restored" {
        run = run.failed(
            record
                .error
                .clone()
                .unwrap_or_else(|| record.result.to_owned()),
        );
    }
    if let Err(error) = crate::runlog::record(state, &run) {
        stderrln!("warning: run record not written: {error}");
    }
}

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
    let warnings = restore::plan_warnings(prepared);
    if !warnings.is_empty() {
        out.push('\n');
        for warning in warnings {
            let _ = writeln!(out, "warning: {warning}");
        }
    }
    out
}

/// Asks on the terminal, as `apply` does; only `yes` approves.
fn confirm(prepared: &Prepared) -> anyhow::Result<bool> {
    super::confirm(&format!(
        "Do you want to replace {} with backup {}?",
        prepared.target.describe(),
        prepared.chosen.record.metadata.id
    ))
}
