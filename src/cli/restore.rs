//! `backup restore`: restore a backup safely. Wires [`crate::restore`] to
//! the terminal: the plan, the confirmation, each step as it ends, the log.

use super::output::{stderrln, stdout, stdoutln};
use std::io::{IsTerminal as _, Write as _};
use std::time::Instant;

use clap::Args;

use super::{GlobalArgs, load_policies};
use crate::exit::ExitStatus;
use crate::restore::record::{failure_status, keep, notify_failure};
use crate::restore::text::Stream;
use crate::restore::{self, Choice, LogRecord, Prepared, Request, Step};

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
    /// PostgreSQL point-in-time recovery (`spec.physical`): replay the archived WAL
    /// up to this time, which must have a zone: `2026-12-01T17:00:00Z`,
    /// `2026-12-01 18:00:00+01:00`. Needs --to DATADIR.
    #[arg(long, value_name = "TIME", group = "recovery")]
    pub target_time: Option<String>,
    /// Point-in-time recovery up to this WAL position (`0/16B3748`).
    #[arg(long, value_name = "LSN", group = "recovery")]
    pub target_lsn: Option<String>,
    /// Point-in-time recovery up to the end of this transaction.
    #[arg(long, value_name = "XID", group = "recovery")]
    pub target_xid: Option<String>,
    /// `immediate`: restore a base backup to its end, the earliest consistent point.
    #[arg(long, value_name = "immediate", value_parser = ["immediate"], group = "recovery")]
    pub target: Option<String>,
    /// Point-in-time recovery: how long replay may take before the restore gives up
    /// and rolls back.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_timeout)]
    pub recovery_timeout: std::time::Duration,
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
    match super::recover::target(args) {
        Some(Ok(target)) => return super::recover::run(global, args, target),
        Some(Err(error)) => {
            stderrln!("error: {error}");
            return Ok(ExitStatus::Usage);
        }
        None => {}
    }
    let (policy, state, _lock) = match start(global, args) {
        Ok(started) => started,
        Err(status) => return Ok(status),
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
    let mut record = LogRecord::new(&policy, &request);
    let prepared = match restore::prepare(&policy, &request) {
        Ok(prepared) => prepared,
        Err((error, steps)) => {
            stderrln!("error: {error}; nothing was changed");
            record.refused(&error, steps, clock.elapsed().as_secs_f64());
            if !args.dry_run {
                tracing::error!(policy = %policy.name, "Restore refused: {error}");
                warn(keep(&state, &record, None));
                warn(notify_failure(
                    &policy,
                    format!("restore refused: {error}"),
                    &record,
                ));
            }
            return Ok(failure_status(&error));
        }
    };
    record.prepared(&prepared);
    stdout!("{}", restore::text::render_plan(&prepared));
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
    record.conclude(&outcome, clock.elapsed().as_secs_f64());
    let ending = restore::text::ending(&prepared, &outcome, record.seconds, args.to.is_some());
    for (stream, line) in ending {
        match stream {
            Stream::Stdout => stdoutln!("{line}"),
            Stream::Stderr => stderrln!("{line}"),
        }
    }
    let status = outcome.exit_status();
    if let Some(safety) = &outcome.safety_backup {
        stdoutln!("Safety backup: {safety} (tagged pre-restore; `backup list` shows it).");
    }
    let bytes = prepared.chosen.record.metadata.stored_size();
    warn(keep(&state, &record, Some(bytes)));
    if status != ExitStatus::Success {
        let error = record.failure(&prepared.target.describe());
        warn(notify_failure(&policy, error, &record));
    }
    Ok(status)
}

/// What every restore does first: confirmation or `--yes` off a terminal,
/// the policy, its identity, and the policy's lock (apply and prune wait
/// while a backup of the policy is being restored).
pub(super) fn start(
    global: &GlobalArgs,
    args: &RestoreArgs,
) -> Result<
    (
        crate::policy::Policy,
        crate::state::StateDir,
        crate::state::Lock,
    ),
    ExitStatus,
> {
    if !args.dry_run && !args.yes && !std::io::stdin().is_terminal() {
        stderrln!(
            "error: not restoring without confirmation: stdin is not a terminal; pass --yes (or --dry-run to see the plan)"
        );
        return Err(ExitStatus::Usage);
    }
    let policy = load_policies(global, Some(&args.policy))?.remove(0);
    if let Err(error) = crate::codec::keys::load(&policy, args.identity.as_deref()) {
        stderrln!("error: {error}");
        return Err(ExitStatus::Usage);
    }
    let state = global.state();
    let lock = state.lock(&policy.name).map_err(|error| {
        stderrln!("error: {error}");
        error.exit_status()
    })?;
    Ok((policy, state, lock))
}

fn warn(problems: Vec<String>) {
    for problem in problems {
        stderrln!("warning: {problem}");
    }
}

/// Asks on the terminal, as `apply` does; only `yes` approves.
fn confirm(prepared: &Prepared) -> anyhow::Result<bool> {
    super::confirm(&format!(
        "Do you want to replace {} with backup {}?",
        prepared.target.describe(),
        prepared.chosen.record.metadata.id
    ))
}
