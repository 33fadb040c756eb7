//! One `apply` run around [`super::execute`]: the policies' locks, taken
//! before anything is read so that what is planned is what is done; the
//! crontab (or the scheduler's folder) written under its own lock; the run
//! records, notifications and pings left behind ([`super::records`]).
//!
//! It carries out the plan it is given and prints nothing: what it has to
//! say goes to the caller's callbacks.

use super::records::Records;
use super::{ActionResult, ApplyReport, Options, Outcome};
use crate::observe::SchedulerTarget;
use crate::plan::{Action, Plan};
use crate::policy::Policy;
use crate::schedule::crontab::{self, Target};
use crate::schedule::folder::{self, Change};
use crate::schedule::systemd;
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
/// then the records. The crontab, if the plan writes it, goes to `target`;
/// a folder scheduler's files to `scheduler`.
pub fn run(
    plan: &Plan,
    policies: &[Policy],
    options: &Options,
    state: &StateDir,
    target: Option<&Target>,
    scheduler: Option<&SchedulerTarget>,
    observer: &mut dyn Observer,
) -> ApplyReport {
    let mut write_scheduler = |action: &Action| scheduler_step(plan, scheduler, state, action);
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
        &mut write_scheduler,
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

/// One action on the scheduler's folder: write or remove a file (a timer
/// is disabled first while systemd runs), or reload systemd and enable
/// the timers, which only happens where systemd runs as PID 1.
fn scheduler_step(
    plan: &Plan,
    target: Option<&SchedulerTarget>,
    state: &StateDir,
    action: &Action,
) -> Outcome {
    let Some(target) = target else {
        return Outcome::Failed("the scheduler is not managed in this run".to_owned());
    };
    let _lock = match state.lock_crontab() {
        Ok(lock) => lock,
        Err(error) => return Outcome::Failed(error.to_string()),
    };
    let manager = target.systemd;
    let running = manager.is_some_and(|manager| manager.running);
    let user = manager.is_some_and(|manager| manager.user);
    let shown = target.folder.display();
    let timers: Vec<&str> = plan
        .scheduler
        .iter()
        .flat_map(|scheduler| &scheduler.files)
        .map(|file| file.name.as_str())
        .filter(|name| name.ends_with(".timer"))
        .collect();
    let done = |result: Result<String, String>| match result {
        Ok(detail) => Outcome::Done(detail),
        Err(error) => Outcome::Failed(error),
    };
    match (action.change, action.object.as_deref()) {
        (Some(Change::Remove), Some(name)) => done((|| {
            if running && name.ends_with(".timer") {
                systemd::systemctl(user, &["disable", "--now", name])?;
            }
            folder::remove(&target.folder, name).map_err(|error| error.to_string())?;
            Ok(format!("removed from {shown}"))
        })()),
        (Some(_), Some(name)) => {
            let Some(file) = plan
                .scheduler
                .iter()
                .flat_map(|scheduler| &scheduler.files)
                .find(|file| file.name == name)
            else {
                return Outcome::Failed(format!("the plan holds no text for {name}"));
            };
            done(
                folder::write(&target.folder, file)
                    .map(|()| format!("written to {shown}"))
                    .map_err(|error| error.to_string()),
            )
        }
        _ if !running => {
            let systemctl = if user {
                "systemctl --user"
            } else {
                "systemctl"
            };
            Outcome::Skipped(format!(
                "systemd is not running as PID 1 here: the units are in {shown}, nothing was reloaded; run `{systemctl} daemon-reload` and `{systemctl} enable --now {}` where it runs",
                timers.join(" ")
            ))
        }
        _ => done((|| {
            systemd::systemctl(user, &["daemon-reload"])?;
            if !timers.is_empty() {
                let mut arguments = vec!["enable", "--now"];
                arguments.extend(&timers);
                systemd::systemctl(user, &arguments)?;
            }
            Ok(format!("reloaded systemd; enabled {}", timers.join(", ")))
        })()),
    }
}

/// Records a run whose plan has nothing to attempt (its errors, if any).
pub fn record_idle(plan: &Plan, state: &StateDir, policies: &[Policy]) -> Vec<String> {
    Records::new(plan).finish(state, policies, &ApplyReport::default())
}
