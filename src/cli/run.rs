//! `backup run`: one backup of a policy now, whatever its schedule.

use super::output::{stderr, stderrln, stdoutln};
use std::io::{IsTerminal as _, Write as _};

use chrono::Utc;
use clap::Args;

use super::{GlobalArgs, load_policies};
use crate::engine::{self, Progress};
use crate::exit::ExitStatus;
use crate::format::human_bytes;
use crate::notify;
use crate::policy::Policy;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The policy to back up.
    #[arg(value_name = "POLICY")]
    pub policy: String,
    /// Take a base backup (`pg_basebackup`, `spec.physical`) instead of a logical one.
    #[arg(long)]
    pub physical: bool,
}

/// Bytes and rate on stderr, rewritten in place; only on a terminal.
struct TerminalProgress {
    policy: String,
    started: std::time::Instant,
    shown: bool,
}

impl Progress for TerminalProgress {
    fn update(&mut self, read: u64, written: u64) {
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = (read as f64 / seconds) as u64;
        stderr!(
            "\r{}: {} read, {} stored, {}/s   ",
            self.policy,
            human_bytes(read),
            human_bytes(written),
            human_bytes(rate)
        );
        let _ = std::io::stderr().flush();
        self.shown = true;
    }
}

pub fn run(global: &GlobalArgs, args: &RunArgs) -> anyhow::Result<ExitStatus> {
    let policy = match load_policies(global, Some(&args.policy)) {
        Ok(mut policies) => policies.remove(0),
        Err(status) => return Ok(status),
    };
    let policy = if args.physical {
        match policy.physical_view() {
            Some(view) => view,
            None => {
                stderrln!(
                    "error: policy `{}` takes no base backups: add `spec.physical` (PostgreSQL only)",
                    policy.name
                );
                return Ok(ExitStatus::Usage);
            }
        }
    } else {
        policy
    };
    // One backup of a policy at a time, and never while apply prunes it.
    let _lock = match global.state().lock(&policy.name) {
        Ok(lock) => lock,
        Err(error) => {
            stderrln!("error: {error}");
            return Ok(error.exit_status());
        }
    };
    let state = global.state();
    crate::runlog::start_log(&state, "run", Some(&policy.name));
    let started_at = Utc::now();
    tracing::info!(policy = %policy.name, "Backup started (backup run).");
    for problem in notify::ping(&policy, notify::Ping::Start, "") {
        stderrln!("warning: {problem}");
    }
    let mut progress = TerminalProgress {
        policy: policy.name.clone(),
        started: std::time::Instant::now(),
        shown: false,
    };
    let show_progress = std::io::stderr().is_terminal() && global.verbosity() >= 0;
    let taken = engine::backup_everywhere(
        &policy,
        started_at,
        show_progress.then_some(&mut progress as &mut dyn Progress),
    );
    if progress.shown {
        stderr!("\r\x1b[2K");
    }
    show(&policy, &taken);
    // A notification that cannot be delivered never fails the backup.
    let record = taken.run_record(&policy.name, started_at);
    let mut problems = notify::finished(&state, &policy, &record, true);
    problems.extend(crate::fleet::publish(&policy, &record));
    for problem in problems {
        stderrln!("warning: {problem}");
    }
    Ok(if taken.everywhere() {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

/// Prints (and logs) what the backup did on each destination.
fn show(policy: &Policy, taken: &engine::Taken) {
    for (location, error) in &taken.unavailable {
        tracing::error!(policy = %policy.name, destination = %location, "{error}");
    }
    let outcome = match &taken.result {
        Ok(outcome) => outcome,
        Err(error) => {
            stderrln!("error: backup of `{}` failed: {error}", policy.name);
            tracing::error!(policy = %policy.name, "Backup failed: {error}");
            for (location, error) in &taken.unavailable {
                stderrln!("  {location}: {error}");
            }
            return;
        }
    };
    let artifact = &outcome.metadata.artifact;
    let ratio = if artifact.uncompressed_size == 0 {
        0.0
    } else {
        artifact.size as f64 * 100.0 / artifact.uncompressed_size as f64
    };
    stdoutln!(
        "Backed up {} as {}: {} read, {} stored ({ratio:.1}%), {:.1} s, sha256 {}",
        policy.name,
        outcome.metadata.id,
        human_bytes(artifact.uncompressed_size),
        human_bytes(artifact.size),
        outcome.duration.as_secs_f64(),
        artifact.sha256
    );
    for stored in &outcome.stored {
        match &stored.result {
            Ok(()) => stdoutln!("  stored on {}", stored.destination),
            Err(error) => stdoutln!("  FAILED on {}: {error}", stored.destination),
        }
    }
    for (location, error) in &taken.unavailable {
        stdoutln!("  FAILED on {location}: {error}");
    }
    tracing::info!(policy = %policy.name, id = %outcome.metadata.id, bytes = artifact.size, "Backup committed.");
}
