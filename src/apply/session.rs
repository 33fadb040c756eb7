//! One `apply` run around [`super::execute`]: the policies' locks, taken
//! before anything is read so that what is planned is what is done; the
//! crontab written under its own lock; the run records, notifications and
//! pings left behind ([`super::records`]).
//!
//! It carries out the plan it is given and prints nothing: what it has to
//! say goes to the caller's callbacks.

use super::records::Records;
use super::{ActionResult, ApplyReport, Options};
use crate::plan::Plan;
use crate::policy::Policy;
use crate::schedule::crontab::{self, Target};
use crate::state::{self, Lock, StateDir};

/// The policies whose locks this run holds.
pub struct Locked {
    /// Held until the records are written.
    pub locks: Vec<Lock>,
    /// The policies locked, in the order given.
    pub policies: Vec<Policy>,
    /// Policies another `backup` is working on: their names, and why.
    pub held: Vec<(String, state::Error)>,
    /// A lock that could not be taken for another reason: the run stops.
    pub error: Option<state::Error>,
}

/// Takes the lock of every policy that is free, without waiting.
pub fn lock(state: &StateDir, policies: Vec<Policy>) -> Locked {
    let mut locked = Locked {
        locks: Vec::new(),
        policies: Vec::new(),
        held: Vec::new(),
        error: None,
    };
    for policy in policies {
        match state.lock(&policy.name) {
            Ok(lock) => {
                locked.locks.push(lock);
                locked.policies.push(policy);
            }
            Err(error @ state::Error::Held { .. }) => locked.held.push((policy.name, error)),
            Err(error) => {
                locked.error = Some(error);
                break;
            }
        }
    }
    locked
}

/// What a run reports as it goes.
pub trait Observer {
    /// Something went wrong beside the actions (a record, a notification).
    fn problem(&mut self, problem: &str);
    /// An action ended (a refusal of several actions once).
    fn result(&mut self, result: &ActionResult);
}

/// Carries out `plan` for the locked `policies`: start pings, the actions,
/// then the records. The crontab, if the plan writes it, goes to `target`.
pub fn run(
    plan: &Plan,
    policies: &[Policy],
    options: &Options,
    state: &StateDir,
    target: Option<&Target>,
    observer: &mut dyn Observer,
) -> ApplyReport {
    let mut write_crontab = |block: &str| -> Result<String, String> {
        let target = target.ok_or_else(|| "the crontab is not managed in this run".to_owned())?;
        let _lock = state.lock_crontab().map_err(|error| error.to_string())?;
        state.ensure("logs").map_err(|error| error.to_string())?;
        crontab::replace_block(target, block).map_err(|error| error.to_string())?;
        Ok(format!("written to {}", target.describe()))
    };
    let mut records = Records::new(plan);
    for problem in records.start(policies) {
        observer.problem(&problem);
    }
    let report = super::execute(
        plan,
        policies,
        options,
        &mut write_crontab,
        &mut |result: &ActionResult| {
            records.observe(result);
            observer.result(result);
        },
    );
    // Recorded (and notified) under the policies' locks.
    for problem in records.finish(state, policies, &report) {
        observer.problem(&problem);
    }
    report
}

/// Records a run whose plan has nothing to attempt (its errors, if any).
pub fn record_idle(plan: &Plan, state: &StateDir, policies: &[Policy]) -> Vec<String> {
    Records::new(plan).finish(state, policies, &ApplyReport::default())
}
