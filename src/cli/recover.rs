//! `backup restore POLICY --target-time|--target-lsn|--target-xid|--target
//! immediate --to DATADIR`: point-in-time recovery of a PostgreSQL cluster.
//! Wires [`crate::restore::pitr`] to the terminal: the plan (base backup,
//! WAL range, whether it is complete, space), the confirmation, each step.

use super::output::{stderrln, stdoutln};
use std::time::Instant;

use super::GlobalArgs;
use super::restore::RestoreArgs;
use crate::exit::ExitStatus;
use crate::restore::pitr::{self, Prepared, RecoveryTarget, Request};

/// The recovery target the arguments name, if any; a usage error if malformed.
pub fn target(args: &RestoreArgs) -> Option<Result<RecoveryTarget, String>> {
    if let Some(time) = &args.target_time {
        return Some(RecoveryTarget::parse_time(time));
    }
    if let Some(lsn) = &args.target_lsn {
        return Some(RecoveryTarget::parse_lsn(lsn));
    }
    if let Some(xid) = &args.target_xid {
        return Some(RecoveryTarget::parse_xid(xid));
    }
    args.target.as_ref().map(|_| Ok(RecoveryTarget::Immediate))
}

pub fn run(
    global: &GlobalArgs,
    args: &RestoreArgs,
    target: RecoveryTarget,
) -> anyhow::Result<ExitStatus> {
    let Some(to) = &args.to else {
        stderrln!(
            "error: a point-in-time restore needs the data directory to create: --to DATADIR"
        );
        return Ok(ExitStatus::Usage);
    };
    let (policy, state, _lock) = match super::restore::start(global, args) {
        Ok(started) => started,
        Err(status) => return Ok(status),
    };
    let clock = Instant::now();
    let request = Request {
        target,
        backup: (args.backup != "latest").then(|| args.backup.clone()),
        from: args.from.clone(),
        to: to.into(),
        restore_command: restore_command(global, &policy.name, args.identity.as_deref()),
        timeout: args.recovery_timeout,
    };
    let prepared = match pitr::prepare(&policy, &request) {
        Ok(prepared) => prepared,
        Err(error) => {
            stderrln!("error: {error}; nothing was changed");
            return Ok(ExitStatus::Failure);
        }
    };
    print_plan(&prepared);
    if !prepared.complete() {
        stderrln!(
            "error: the WAL archive on {} misses {}: the target cannot be reached; nothing was changed",
            prepared.destination.location(),
            pitr::describe_missing(&prepared.missing)
        );
        return Ok(ExitStatus::VerificationFailed);
    }
    if args.dry_run {
        stdoutln!("\nDry run: nothing was changed.");
        return Ok(ExitStatus::Success);
    }
    let question = if prepared.replaces {
        format!(
            "Do you want to move {} aside and restore into it?",
            prepared.to.display()
        )
    } else {
        format!("Do you want to restore into {}?", prepared.to.display())
    };
    if !args.yes && !super::confirm(&question)? {
        stdoutln!("\nRestore cancelled; nothing was changed.");
        return Ok(ExitStatus::Failure);
    }
    crate::runlog::start_log(&state, "restore", Some(&policy.name));
    tracing::info!(policy = %policy.name, backup = %prepared.record.metadata.id, target = %prepared.target.describe(), "Point-in-time restore started.");
    stdoutln!();
    let outcome = pitr::execute(&prepared, &mut |step| {
        let mark = if step.ok { "done  " } else { "FAILED" };
        stdoutln!(
            "{mark} {:<15} {} ({:.1} s)",
            step.step,
            step.detail,
            step.seconds
        );
    });
    let seconds = clock.elapsed().as_secs_f64();
    match &outcome.error {
        None => {
            tracing::info!(policy = %policy.name, seconds, "Point-in-time restore finished.");
            stdoutln!(
                "\nRestored {} to {} in {seconds:.1} s. The cluster is promoted and stopped; start it with: pg_ctl -D {} start",
                prepared.to.display(),
                prepared.target.describe(),
                prepared.to.display()
            );
            if let Some(aside) = &outcome.safety_copy {
                stdoutln!(
                    "The data directory it replaced is at {} (remove it once the restore is accepted).",
                    aside.display()
                );
            }
            Ok(ExitStatus::Success)
        }
        Some(error) => {
            tracing::error!(policy = %policy.name, "Point-in-time restore failed: {error}");
            stderrln!("error: {error}");
            Ok(ExitStatus::Failure)
        }
    }
}

/// The `restore_command` of the restored server: this binary, the same
/// policies, `wal fetch`.
fn restore_command(
    global: &GlobalArgs,
    policy: &str,
    identity: Option<&std::path::Path>,
) -> String {
    let binary = std::env::current_exe()
        .and_then(|binary| binary.canonicalize())
        .map_or_else(
            |_| "backup".to_owned(),
            |binary| binary.display().to_string(),
        );
    let mut words = vec![shell_quote(&binary)];
    for path in global.policy_paths(&[]) {
        let path = std::path::absolute(&path).unwrap_or(path);
        words.push("-p".to_owned());
        words.push(shell_quote(&path.display().to_string()));
    }
    words.extend(["wal".to_owned(), "fetch".to_owned()]);
    if let Some(identity) = identity {
        let identity = std::path::absolute(identity).unwrap_or_else(|_| identity.to_owned());
        words.push("--identity".to_owned());
        words.push(shell_quote(&identity.display().to_string()));
    }
    words.extend([shell_quote(policy), "%f".to_owned(), "%p".to_owned()]);
    words.join(" ")
}

/// `word` as one shell word of a `restore_command`, where PostgreSQL reads
/// `%f` and `%p` itself and a literal `%` must be written `%%`.
fn shell_quote(word: &str) -> String {
    let quoted = if word
        .chars()
        .all(|character| character.is_ascii_alphanumeric() || "/._-=:".contains(character))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    };
    quoted.replace('%', "%%")
}

fn print_plan(prepared: &Prepared) {
    let metadata = &prepared.record.metadata;
    let info = &prepared.physical;
    stdoutln!("Point-in-time restore of policy {}", prepared.policy);
    stdoutln!("  target:       {}", prepared.target.describe());
    stdoutln!(
        "  base backup:  {} on {} (taken {} to {}, LSN {} to {}, timeline {})",
        metadata.id,
        prepared.destination.location(),
        metadata.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
        metadata.finished_at.format("%H:%M:%S UTC"),
        info.start_lsn,
        info.stop_lsn,
        info.timeline
    );
    stdoutln!(
        "  WAL needed:   {} to {} ({} segment{})",
        prepared.wal_first,
        prepared.wal_last,
        prepared.wal_segments,
        if prepared.wal_segments == 1 { "" } else { "s" }
    );
    if prepared.complete() {
        stdoutln!("  WAL archive:  complete for this target");
    } else {
        stdoutln!(
            "  WAL archive:  INCOMPLETE: missing {}",
            pitr::describe_missing(&prepared.missing)
        );
    }
    if let Some(until) = prepared.archived_until {
        stdoutln!("  archived up to {}", until.format("%Y-%m-%d %H:%M:%S UTC"));
    }
    stdoutln!(
        "  into:         {}{}",
        prepared.to.display(),
        if prepared.replaces {
            " (it exists: moved aside first, as the safety copy)"
        } else {
            " (created)"
        }
    );
    stdoutln!(
        "  space needed: {}",
        crate::format::human_bytes(prepared.space_needed)
    );
    for warning in &prepared.warnings {
        stdoutln!("  warning: {warning}");
    }
}
