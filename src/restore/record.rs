//! What a restore leaves behind: its line in the restore log
//! (`<state>/logs/restore.jsonl`), a run record of kind `restore`, and a
//! failure notification. The record is filled in as the restore goes.

use chrono::Utc;

use super::{Choice, Ending, Error, LogRecord, Outcome, Prepared, Request, Step};
use crate::exit::ExitStatus;
use crate::policy::Policy;
use crate::runlog::{RunKind, RunRecord};
use crate::state::StateDir;

impl LogRecord {
    /// A restore of `policy` asked for by `request`, refused until it gets further.
    pub fn new(policy: &Policy, request: &Request) -> LogRecord {
        LogRecord {
            format_version: 1,
            at: Utc::now(),
            policy: policy.name.clone(),
            backup: match &request.backup {
                Choice::Id(id) => Some(id.clone()),
                Choice::Latest => None,
            },
            from: request.from.clone(),
            target: None,
            result: "refused",
            error: None,
            safety_backup: None,
            steps: Vec::new(),
            seconds: 0.0,
        }
    }

    /// Preparing failed: nothing was changed.
    pub fn refused(&mut self, error: &Error, steps: Vec<Step>, seconds: f64) {
        self.error = Some(error.to_string());
        self.steps = steps;
        self.seconds = seconds;
    }

    /// Prepared: which backup, from where, into what, and the steps so far.
    pub fn prepared(&mut self, prepared: &Prepared) {
        self.backup = Some(prepared.chosen.record.metadata.id.clone());
        self.from = Some(prepared.chosen.destination.location());
        self.target = Some(prepared.target.describe());
        self.steps = prepared.steps.clone();
    }

    /// How the restore ended, after `seconds` in all; logged.
    pub fn conclude(&mut self, outcome: &Outcome, seconds: f64) {
        self.steps.extend(outcome.steps.iter().cloned());
        self.safety_backup = outcome.safety_backup.clone();
        self.seconds = seconds;
        let (policy, target) = (&self.policy, self.target.as_deref().unwrap_or_default());
        match &outcome.ending {
            Ending::Restored => {
                self.result = "restored";
                let backup = self.backup.as_deref().unwrap_or_default();
                tracing::info!(policy = %policy, backup = %backup, target = %target, seconds, "Restore finished.");
            }
            Ending::Failed { error, rollback } => {
                self.result = if rollback.is_some() {
                    "rolled-back"
                } else if outcome.steps.iter().any(|step| step.step == "restore") {
                    "failed"
                } else {
                    "refused"
                };
                tracing::error!(policy = %policy, target = %target, result = self.result, "Restore failed: {error}");
                self.error = Some(error.to_string());
            }
            Ending::RollbackFailed {
                error,
                rollback_error,
            } => {
                self.result = "rollback-failed";
                tracing::error!(policy = %policy, target = %target, "Restore and rollback failed.");
                self.error = Some(format!("{error}; rollback: {rollback_error}"));
            }
        }
    }

    /// What the failure notification says of a restore into `target` that failed.
    pub fn failure(&self, target: &str) -> String {
        format!(
            "restore into {target} {}: {}",
            self.result,
            self.error.as_deref().unwrap_or("failed")
        )
    }
}

/// Appends `record` to the restore log, and a run record (kind `restore`,
/// `bytes` the backup's stored size) to the policy's run records; returns
/// what could not be written.
pub fn keep(state: &StateDir, record: &LogRecord, bytes: Option<u64>) -> Vec<String> {
    let mut problems = Vec::new();
    let written = state
        .ensure("logs")
        .map_err(|error| error.to_string())
        .and_then(|folder| {
            super::append_log(&folder.join("restore.jsonl"), record)
                .map_err(|error| error.to_string())
        });
    if let Err(error) = written {
        problems.push(format!("cannot append to the restore log: {error}"));
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
        problems.push(format!("run record not written: {error}"));
    }
    problems
}

/// Tells the policy's `notify` targets that a restore failed (when they
/// want failures); returns what could not be delivered.
pub fn notify_failure(policy: &Policy, error: String, record: &LogRecord) -> Vec<String> {
    crate::notify::other_failed(policy, error, record.backup.clone())
}

/// How `backup restore` exits after failing with `error`.
pub fn failure_status(error: &Error) -> ExitStatus {
    if error.is_verification() {
        ExitStatus::VerificationFailed
    } else {
        ExitStatus::Failure
    }
}

impl Outcome {
    /// How `backup restore` exits after this outcome.
    pub fn exit_status(&self) -> ExitStatus {
        match &self.ending {
            Ending::Restored => ExitStatus::Success,
            Ending::Failed { error, .. } => failure_status(error),
            Ending::RollbackFailed { .. } => ExitStatus::Failure,
        }
    }
}
