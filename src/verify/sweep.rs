//! `backup verify` over a set of policies: every stored backup checked
//! against its sidecar ([`backups`]), or one restore drill per policy
//! ([`drills`]), with the tally that decides the exit status.
//!
//! It reports each result to the caller as it comes and prints nothing.

use std::path::PathBuf;

use super::Problem;
use crate::destination;
use crate::exit::ExitStatus;
use crate::inventory;
use crate::policy::Policy;
use crate::restore::drill::{self, Evidence};
use crate::state::StateDir;

/// One result of [`backups`].
pub enum Checked<'a> {
    /// A destination could not be opened or listed.
    Unlisted {
        policy: &'a str,
        location: &'a str,
        reason: &'a str,
    },
    /// A sidecar could not be read: it fails verification all the same.
    Unreadable {
        policy: &'a str,
        location: &'a str,
        name: &'a str,
        reason: &'a str,
    },
    /// A backup was read and checked.
    Backup {
        policy: &'a str,
        location: &'a str,
        id: &'a str,
        result: &'a Result<(), Problem>,
    },
}

/// What [`backups`] counted. Backups (sidecars that could be read) and
/// unreadable sidecars are counted apart: an unreadable sidecar is no backup.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub checked: usize,
    pub ok: usize,
    pub failed: usize,
    pub unreadable: usize,
    /// Destinations that could not be listed.
    pub errors: usize,
}

impl Tally {
    /// `Verified 3 backups: 3 ok, 0 failed.`
    pub fn summary(&self) -> String {
        let noun = if self.checked == 1 {
            "backup"
        } else {
            "backups"
        };
        let sidecars = match self.unreadable {
            0 => String::new(),
            1 => "; 1 sidecar unreadable".to_owned(),
            count => format!("; {count} sidecars unreadable"),
        };
        format!(
            "Verified {} {noun}: {} ok, {} failed{sidecars}.",
            self.checked, self.ok, self.failed
        )
    }

    pub fn exit_status(&self) -> ExitStatus {
        if self.failed + self.unreadable > 0 {
            ExitStatus::VerificationFailed
        } else if self.errors > 0 {
            ExitStatus::Failure
        } else {
            ExitStatus::Success
        }
    }
}

/// Verifies every backup of `policies` (with `only`, that backup id alone).
pub fn backups(policies: &[Policy], only: Option<&str>, report: &mut dyn FnMut(Checked)) -> Tally {
    let mut tally = Tally::default();
    for policy in policies {
        for spec in &policy.destinations {
            let location = destination::describe(spec);
            let opened = destination::open(spec);
            let listing = opened
                .as_ref()
                .map_err(ToString::to_string)
                .and_then(|destination| {
                    inventory::read(destination.as_ref(), &policy.name, None)
                        .map_err(|error| error.to_string())
                });
            let (Ok(destination), Ok(listing)) = (opened.as_ref(), listing.as_ref()) else {
                let reason = listing.err().unwrap_or_default();
                report(Checked::Unlisted {
                    policy: &policy.name,
                    location: &location,
                    reason: &reason,
                });
                tally.errors += 1;
                continue;
            };
            for (name, reason) in &listing.unreadable {
                if only.is_some_and(|id| inventory::names::sidecar_id(name) != Some(id)) {
                    continue;
                }
                report(Checked::Unreadable {
                    policy: &policy.name,
                    location: &location,
                    name,
                    reason,
                });
                tally.unreadable += 1;
            }
            for record in &listing.backups {
                if only.is_some_and(|id| id != record.metadata.id) {
                    continue;
                }
                tally.checked += 1;
                let result = super::verify(destination.as_ref(), record);
                match result {
                    Ok(()) => tally.ok += 1,
                    Err(_) => tally.failed += 1,
                }
                report(Checked::Backup {
                    policy: &policy.name,
                    location: &location,
                    id: &record.metadata.id,
                    result: &result,
                });
            }
        }
    }
    tally
}

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
