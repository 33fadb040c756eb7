//! `backup verify --restore-test` over a set of policies: one restore drill
//! per policy ([`super::drill`]), each under the policy's lock, with the
//! tally that decides the exit status.
//!
//! It reports each result to the caller as it comes and prints nothing.

use std::path::PathBuf;

use super::drill::{self, Evidence};
use crate::exit::ExitStatus;
use crate::policy::Policy;
use crate::state::StateDir;

/// One result of [`drills`].
pub enum Drilled<'a> {
    /// The policy's lock could not be taken: no drill.
    Unlocked(crate::state::Error),
    /// A drill ran, and this is its evidence.
    Drill {
        policy: &'a Policy,
        evidence: &'a Evidence,
    },
    /// Where the evidence record went.
    Kept(&'a std::io::Result<PathBuf>),
    /// Something beside the drill went wrong (a notification, a copy of the evidence).
    Problem(String),
}

/// What [`drills`] counted.
#[derive(Debug, Default, Clone, Copy)]
pub struct DrillTally {
    pub policies: usize,
    pub failed: usize,
    /// Evidence records not written.
    pub errors: usize,
    pub locked: usize,
    /// State folders that could not be used.
    pub unusable: usize,
}

impl DrillTally {
    /// `Restore-tested 2 policies: 2 passed, 0 failed.`
    pub fn summary(&self) -> String {
        let noun = if self.policies == 1 {
            "policy"
        } else {
            "policies"
        };
        let skipped = self.locked + self.unusable;
        format!(
            "Restore-tested {} {noun}: {} passed, {} failed{}.",
            self.policies,
            self.policies - self.failed - skipped,
            self.failed,
            if skipped > 0 {
                format!(", {skipped} skipped (locked or unusable state folder)")
            } else {
                String::new()
            }
        )
    }

    pub fn exit_status(&self) -> ExitStatus {
        if self.failed > 0 {
            ExitStatus::VerificationFailed
        } else if self.errors + self.unusable > 0 {
            ExitStatus::Failure
        } else if self.locked > 0 {
            ExitStatus::Locked
        } else {
            ExitStatus::Success
        }
    }
}

/// One restore drill per policy (of `backup`, else the newest), each under
/// the policy's lock and with its evidence record; a failed drill is notified.
pub fn drills(
    state: &StateDir,
    policies: &[Policy],
    backup: Option<&str>,
    report: &mut dyn FnMut(Drilled),
) -> DrillTally {
    let mut tally = DrillTally {
        policies: policies.len(),
        ..DrillTally::default()
    };
    for policy in policies {
        // The backup must not be pruned while it is restored.
        let _lock = match state.lock(&policy.name) {
            Ok(lock) => lock,
            Err(error) => {
                match error.exit_status() {
                    ExitStatus::Locked => tally.locked += 1,
                    _ => tally.unusable += 1,
                }
                report(Drilled::Unlocked(error));
                continue;
            }
        };
        let evidence = drill::run(policy, backup);
        let (written, problems) = drill::keep(state, policy, &evidence);
        for problem in problems {
            report(Drilled::Problem(problem));
        }
        report(Drilled::Drill {
            policy,
            evidence: &evidence,
        });
        if !evidence.passed() {
            tally.failed += 1;
            let backup = evidence.backup.as_deref().unwrap_or("-");
            let error = evidence.error.as_deref().unwrap_or("unknown error");
            let error = format!("restore drill of {backup} failed: {error}");
            for problem in crate::notify::other_failed(policy, error, evidence.backup.clone()) {
                report(Drilled::Problem(problem));
            }
        }
        report(Drilled::Kept(&written));
        if written.is_err() {
            tally.errors += 1;
        }
    }
    tally
}
