//! Execution: one attempt to carry out a [`Plan`], collecting every outcome.
//!
//! Nothing here decides *what* to do; the plan did. This module only enforces
//! the order and the safety rules that hold whatever the plan says: per
//! policy, cleanups of dead temporaries first, then backups, then copies,
//! then prunes (only when the policy's backup of this run succeeded, never a
//! mass delete unless allowed, never the newest backup of a destination); the
//! crontab last, or the scheduler's files (systemd units, Kubernetes
//! manifests) and systemd's reload. Under a lease (`spec.lease`), every
//! sidecar commit and every batch of deletes first checks that the lease is
//! still this run's. Held deletes (a destination that refuses them) are not
//! attempted. An action that fails does not stop the others, and every step
//! is safe to repeat, so running `apply` again after a crash or a failure
//! finishes the job.

pub mod records;
pub mod session;
pub mod text;

use std::collections::BTreeMap;
use std::io::{self, Read as _, Write as _};
use std::time::Instant;

use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};

use crate::destination::{self, Destination};
use crate::engine;
use crate::inventory::metadata::hex;
use crate::inventory::names;
use crate::plan::{Action, ActionKind, Plan};
use crate::policy::Policy;

/// Choices the plan does not make.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Carry out prunes that delete more than half of a policy's backups.
    pub allow_mass_delete: bool,
    /// Stamp backups with this time instead of the clock's (tests, drills).
    pub now: Option<DateTime<Utc>>,
    /// This host's state folder, where restore drills keep their evidence.
    pub state_dir: Option<std::path::PathBuf>,
}

/// How one action ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done(String),
    Failed(String),
    /// Not attempted, and why (a safety rule, an earlier failure).
    Skipped(String),
    /// Not attempted because a brake refused it (a mass delete without
    /// `--allow-mass-delete`): the run fails. One refusal covers several
    /// actions and is observed once, on the first of them.
    Refused(String),
}

/// One action and how it ended.
#[derive(Debug, Clone)]
pub struct ActionResult {
    pub action: Action,
    pub outcome: Outcome,
}

/// Everything `apply` did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    pub results: Vec<ActionResult>,
    /// The metadata of each backup taken (committed on at least one destination).
    pub taken: Vec<crate::inventory::BackupMetadata>,
}

impl ApplyReport {
    pub fn failed(&self) -> usize {
        self.count(|outcome| matches!(outcome, Outcome::Failed(_)))
    }

    pub fn skipped(&self) -> usize {
        self.count(|outcome| matches!(outcome, Outcome::Skipped(_)))
    }

    /// Actions a brake refused.
    pub fn refused(&self) -> usize {
        self.count(|outcome| matches!(outcome, Outcome::Refused(_)))
    }

    pub fn done(&self, kind: ActionKind) -> usize {
        self.results
            .iter()
            .filter(|result| {
                result.action.kind == kind && matches!(result.outcome, Outcome::Done(_))
            })
            .count()
    }

    fn count(&self, matches: impl Fn(&Outcome) -> bool) -> usize {
        self.results
            .iter()
            .filter(|result| matches(&result.outcome))
            .count()
    }
}

/// Carries out `plan` for `policies`. `write_crontab` installs the planned
/// block; `write_scheduler` carries out one action on a scheduler's folder
/// (a file, or systemd's reload); `observe` sees each result as it happens
/// (for printing), a refusal of several actions once.
pub fn execute(
    plan: &Plan,
    policies: &[Policy],
    options: &Options,
    write_crontab: &mut dyn FnMut(&str) -> Result<String, String>,
    write_scheduler: &mut dyn FnMut(&Action) -> Outcome,
    observe: &mut dyn FnMut(&ActionResult),
) -> ApplyReport {
    let mut report = ApplyReport::default();
    let mut record = |report: &mut ApplyReport, action: &Action, outcome: Outcome| {
        let result = ActionResult {
            action: action.clone(),
            outcome,
        };
        let repeated = matches!(&result.outcome, Outcome::Refused(_))
            && report.results.iter().any(|earlier| {
                earlier.outcome == result.outcome && earlier.action.policy == result.action.policy
            });
        if !repeated {
            observe(&result);
        }
        report.results.push(result);
    };
    for policy_plan in &plan.policies {
        let actions: Vec<&Action> = plan
            .actions
            .iter()
            .filter(|action| action.policy.as_deref() == Some(policy_plan.name.as_str()))
            .collect();
        if actions.is_empty() {
            continue;
        }
        let Some(policy) = policies
            .iter()
            .find(|policy| policy.name == policy_plan.name)
        else {
            for action in actions {
                record(
                    &mut report,
                    action,
                    Outcome::Skipped("the policy is no longer loaded".to_owned()),
                );
            }
            continue;
        };
        let destinations = Destinations::open(policy);
        let mut backup_failed = false;
        let mass_delete = mass_delete_refusal(&actions);
        for kind in [
            ActionKind::Cleanup,
            ActionKind::Backup,
            ActionKind::Copy,
            ActionKind::RestoreTest,
            ActionKind::Prune,
        ] {
            for action in actions.iter().filter(|action| action.kind == kind) {
                let outcome = match kind {
                    _ if action.held.is_some() => Outcome::Skipped(format!(
                        "held: {}",
                        action.held.as_deref().unwrap_or_default()
                    )),
                    ActionKind::Backup => {
                        // A base backup is taken by the policy's physical view.
                        let view = action
                            .is_physical()
                            .then(|| policy.physical_view())
                            .flatten();
                        let taking = view.as_ref().unwrap_or(policy);
                        let (outcome, taken) = take_backup(taking, &destinations, options);
                        report.taken.extend(taken);
                        backup_failed |= !matches!(outcome, Outcome::Done(_));
                        outcome
                    }
                    ActionKind::Copy => run(copy(policy, action, &destinations)),
                    ActionKind::Prune if backup_failed => Outcome::Skipped(
                        "the policy's backup failed in this run, so nothing is pruned".to_owned(),
                    ),
                    ActionKind::Prune if policy_plan.mass_delete && !options.allow_mass_delete => {
                        Outcome::Refused(mass_delete.clone())
                    }
                    ActionKind::Prune
                        if action.format.as_deref() == Some(crate::plan::wal::WAL_FORMAT) =>
                    {
                        run(prune_wal(policy, action, &destinations))
                    }
                    ActionKind::Prune => run(prune(policy, action, &destinations)),
                    ActionKind::Cleanup => run(cleanup(policy, action, &destinations)),
                    ActionKind::RestoreTest => run(restore_test(policy, options)),
                    ActionKind::Crontab | ActionKind::Systemd | ActionKind::Kubernetes => {
                        continue;
                    }
                };
                record(&mut report, action, outcome);
            }
        }
    }
    for action in plan
        .actions
        .iter()
        .filter(|action| action.kind == ActionKind::Crontab)
    {
        let outcome = run(write_crontab(&plan.crontab.planned_block));
        record(&mut report, action, outcome);
    }
    // Files first, in the plan's order; systemd's reload after them.
    for action in plan
        .actions
        .iter()
        .filter(|action| matches!(action.kind, ActionKind::Systemd | ActionKind::Kubernetes))
    {
        let outcome = write_scheduler(action);
        record(&mut report, action, outcome);
    }
    report
}

/// The one refusal of a mass delete: how many prunes, the rule, the flag.
fn mass_delete_refusal(actions: &[&Action]) -> String {
    let prunes: Vec<&&Action> = actions
        .iter()
        .filter(|action| action.kind == ActionKind::Prune && action.held.is_none())
        .collect();
    let backups: std::collections::BTreeSet<Option<&str>> = prunes
        .iter()
        .map(|action| action.backup.as_deref())
        .collect();
    format!(
        "{} prune{} of {} backup{} refused: the plan prunes more than half of the policy's backups (the mass-delete brake); check the retention, then pass --allow-mass-delete to carry them out",
        prunes.len(),
        if prunes.len() == 1 { "" } else { "s" },
        backups.len(),
        if backups.len() == 1 { "" } else { "s" },
    )
}

/// Fencing, before a sidecar is committed or a batch of deletes starts:
/// an error when the policy's lease is held by this run and is no longer
/// ours (see [`crate::lease::fence`]).
fn fenced(policy: &Policy) -> Result<(), String> {
    crate::lease::fence(&policy.name)
        .map(drop)
        .map_err(|error| error.to_string())
}

fn run(result: Result<String, String>) -> Outcome {
    match result {
        Ok(detail) => Outcome::Done(detail),
        Err(error) => Outcome::Failed(error),
    }
}

/// A policy's destinations, opened, by location.
struct Destinations {
    locations: Vec<String>,
    opened: Vec<Box<dyn Destination>>,
    failed: Vec<(String, String)>,
}

impl Destinations {
    fn open(policy: &Policy) -> Destinations {
        let mut destinations = Destinations {
            locations: Vec::new(),
            opened: Vec::new(),
            failed: Vec::new(),
        };
        for spec in &policy.destinations {
            let location = destination::describe(spec);
            match destination::open(spec) {
                Ok(destination) => {
                    destinations.locations.push(location);
                    destinations.opened.push(destination);
                }
                Err(error) => destinations.failed.push((location, error.to_string())),
            }
        }
        destinations
    }

    fn get(&self, location: Option<&str>) -> Result<&dyn Destination, String> {
        let location = location.unwrap_or_default();
        if let Some(index) = self.locations.iter().position(|name| name == location) {
            return Ok(self.opened[index].as_ref());
        }
        match self.failed.iter().find(|(name, _)| name == location) {
            Some((_, error)) => Err(format!("{location}: {error}")),
            None => Err(format!(
                "{location} is no destination of the policy any more"
            )),
        }
    }
}

fn take_backup(
    policy: &Policy,
    destinations: &Destinations,
    options: &Options,
) -> (Outcome, Option<crate::inventory::BackupMetadata>) {
    if destinations.opened.is_empty() {
        return (
            Outcome::Failed("no destination could be opened".to_owned()),
            None,
        );
    }
    let started = options.now.unwrap_or_else(Utc::now);
    match engine::backup(policy, &destinations.opened, started, None) {
        Err(error) => (Outcome::Failed(error.to_string()), None),
        Ok(outcome) => {
            let mut failures: Vec<String> = outcome
                .stored
                .iter()
                .filter_map(|stored| {
                    stored
                        .result
                        .as_ref()
                        .err()
                        .map(|error| format!("{}: {error}", stored.destination))
                })
                .collect();
            failures.extend(
                destinations
                    .failed
                    .iter()
                    .map(|(location, error)| format!("{location}: {error}")),
            );
            let artifact = &outcome.metadata.artifact;
            let summary = format!(
                "{} ({}, {:.1} s)",
                outcome.metadata.id,
                crate::format::human_bytes(artifact.size),
                outcome.duration.as_secs_f64()
            );
            let result = if failures.is_empty() {
                tracing::info!(policy = %policy.name, id = %outcome.metadata.id, bytes = artifact.size, "Backup committed.");
                Outcome::Done(summary)
            } else {
                Outcome::Failed(format!(
                    "{summary} stored, but not everywhere: {}",
                    failures.join("; ")
                ))
            };
            (result, Some(outcome.metadata))
        }
    }
}

/// Copies a backup: each of its objects streamed and checked against the
/// sidecar's size and SHA-256 before any is committed, then the sidecar, all
/// create-only. The source is only read. On the target, nothing is removed
/// unless it is this same backup, damaged, and then only once every new
/// object is complete and verified; another object under the id (a safety
/// backup, another backup) refuses the copy. Objects an earlier copy left
/// there are kept when they are this backup's, byte for byte.
fn copy(policy: &Policy, action: &Action, destinations: &Destinations) -> Result<String, String> {
    let id = action.backup.as_deref().unwrap_or_default();
    let from = destinations.get(action.from.as_deref())?;
    let to = destinations.get(action.destination.as_deref())?;
    if from.location() == to.location() {
        return Err(format!(
            "refused: {} is both the source and the target",
            to.location()
        ));
    }
    let started = Instant::now();
    let (sidecar, metadata) = crate::inventory::read_sidecar(from, &policy.name, id)?;
    let held = held_copy(policy, id, &metadata, to)?;
    let objects = metadata.objects();
    if held.sidecar
        && objects
            .iter()
            .all(|object| held.objects.get(&object.name) == Some(&object.size))
    {
        return Ok("already complete there".to_owned());
    }
    let not_ours = |name: &str, size: u64, digest: &str| {
        format!(
            "refused: {name} on {} is not this backup's data ({size} bytes, sha256 {digest}); nothing there is replaced",
            to.location()
        )
    };
    // What stops being a backup (sidecar first) once the new copy is whole.
    let mut damaged = Vec::new();
    if held.sidecar {
        damaged.push(names::sidecar(id));
    }
    let mut uploads = Vec::new();
    let (mut adopted, mut copied) = (0_u64, 0_u64);
    for object in objects {
        if let Some(&size) = held.objects.get(&object.name) {
            // An earlier copy committed this object and died before the sidecar.
            let digest = if size == object.size {
                let (_, digest) = digest_of(to, &policy.name, &object.name)?;
                if digest == object.sha256 {
                    adopted += size;
                    continue;
                }
                digest
            } else {
                "not read".to_owned()
            };
            if !held.sidecar {
                return Err(not_ours(&object.name, size, &digest));
            }
            damaged.push(object.name.clone());
        }
        uploads.push(copy_object(policy, object, from, to)?);
        copied += object.size;
    }
    fenced(policy)?;
    for name in damaged {
        to.remove(&policy.name, &name)
            .map_err(|error| error.to_string())?;
    }
    for (upload, size) in uploads {
        upload.commit(size).map_err(|error| error.to_string())?;
    }
    fenced(policy)?;
    to.put(&policy.name, &names::sidecar(id), &sidecar)
        .map_err(|error| error.to_string())?;
    Ok(if copied == 0 {
        format!(
            "{} found complete there (left by an earlier copy), verified, sidecar written",
            crate::format::human_bytes(adopted)
        )
    } else {
        format!(
            "{} copied and verified ({:.1} s)",
            crate::format::human_bytes(copied),
            started.elapsed().as_secs_f64()
        )
    })
}

/// Streams `object` from `from` into a new upload on `to`, checked against
/// the sidecar's size and SHA-256; uncommitted, so that nothing is visible
/// until every object of the backup is.
fn copy_object(
    policy: &Policy,
    object: &crate::inventory::metadata::Artifact,
    from: &dyn Destination,
    to: &dyn Destination,
) -> Result<(Box<dyn crate::destination::Upload>, u64), String> {
    let mut reader = from
        .open(&policy.name, &object.name)
        .map_err(|error| error.to_string())?;
    let mut upload = to
        .begin(&policy.name, &object.name)
        .map_err(|error| error.to_string())?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0_u8; 1 << 20];
    let mut copied: u64 = 0;
    loop {
        let count = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(format!("cannot read {}: {error}", object.name)),
        };
        hasher.update(&buffer[..count]);
        upload
            .write_all(&buffer[..count])
            .map_err(|error| format!("cannot write {}: {error}", object.name))?;
        copied += count as u64;
    }
    let digest = hex(&hasher.finalize());
    if copied != object.size || digest != object.sha256 {
        // Dropping the upload discards it; the target is as it was.
        return Err(format!(
            "the copy read from {} does not match its sidecar ({copied} bytes, sha256 {digest}); nothing was written",
            from.location()
        ));
    }
    Ok((upload, copied))
}

/// What a copy's target holds of the backup.
struct Held {
    /// This same backup's sidecar is there.
    sidecar: bool,
    /// The backup's objects that are there, with their sizes.
    objects: BTreeMap<String, u64>,
}

/// What `to` holds of backup `id`, whose sidecar says `metadata`. Anything
/// but this backup under the id (a safety backup, another backup, an entry
/// that is not a file) refuses the copy.
fn held_copy(
    policy: &Policy,
    id: &str,
    metadata: &crate::inventory::BackupMetadata,
    to: &dyn Destination,
) -> Result<Held, String> {
    let refused = |what: String| {
        Err(format!(
            "refused: {what} on {}; nothing there is replaced",
            to.location()
        ))
    };
    let listed = to
        .list_prefixed(&policy.name, &names::prefix(id))
        .map_err(|error| error.to_string())?;
    let mut objects = BTreeMap::new();
    for object in metadata.objects() {
        let Some(entry) = listed.iter().find(|entry| entry.name == object.name) else {
            continue;
        };
        if let Some(kind) = entry.irregular {
            return refused(format!("{} is {kind}", object.name));
        }
        objects.insert(object.name.clone(), entry.size);
    }
    let sidecar_name = names::sidecar(id);
    let Some(sidecar) = listed.iter().find(|entry| entry.name == sidecar_name) else {
        return Ok(Held {
            sidecar: false,
            objects,
        });
    };
    if let Some(kind) = sidecar.irregular {
        return refused(format!("{sidecar_name} is {kind}"));
    }
    let there = match crate::inventory::read_sidecar(to, &policy.name, id) {
        Ok((_, there)) => there,
        Err(error) => return refused(format!("{sidecar_name} cannot be read ({error})")),
    };
    if there.objects() != metadata.objects() || there.is_pre_restore() != metadata.is_pre_restore()
    {
        return refused(format!(
            "another backup has the id {id} ({}, taken {})",
            there.artifact.name,
            there.created_at.to_rfc3339()
        ));
    }
    Ok(Held {
        sidecar: true,
        objects,
    })
}

/// The size and SHA-256 of object `name` of `policy` on `destination`, read whole.
fn digest_of(
    destination: &dyn Destination,
    policy: &str,
    name: &str,
) -> Result<(u64, String), String> {
    let mut reader = destination
        .open(policy, name)
        .map_err(|error| error.to_string())?;
    let mut hasher = Sha256::new();
    let size = io::copy(&mut reader, &mut HashWriter(&mut hasher))
        .map_err(|error| format!("cannot read {name}: {error}"))?;
    Ok((size, hex(&hasher.finalize())))
}

/// Feeds what is written to a hasher.
struct HashWriter<'a>(&'a mut Sha256);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        self.0.update(buffer);
        Ok(buffer.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Deletes a backup from one destination: the sidecar first (so it stops
/// being a backup at once), then its data. Repeating it is harmless.
fn prune(policy: &Policy, action: &Action, destinations: &Destinations) -> Result<String, String> {
    let id = action.backup.as_deref().unwrap_or_default();
    let destination = destinations.get(action.destination.as_deref())?;
    let entries = destination
        .list(&policy.name)
        .map_err(|error| error.to_string())?;
    // Whatever the plan says, the newest backup here stays.
    let newest = entries
        .iter()
        .filter_map(|entry| names::sidecar_id(&entry.name))
        .max();
    if newest == Some(id) {
        return Err(format!(
            "refused: {id} is the newest backup on {}",
            destination.location()
        ));
    }
    fenced(policy)?;
    destination
        .remove(&policy.name, &names::sidecar(id))
        .map_err(|error| error.to_string())?;
    let prefix = names::prefix(id);
    let mut removed = 0;
    for entry in entries {
        // Links, folders and the like are reported, never removed.
        if entry.name.starts_with(&prefix) && entry.irregular.is_none() {
            destination
                .remove(&policy.name, &entry.name)
                .map_err(|error| error.to_string())?;
            removed += entry.size;
        }
    }
    tracing::info!(policy = %policy.name, id, destination = %destination.location(), "Backup pruned.");
    Ok(format!("{} freed", crate::format::human_bytes(removed)))
}

/// Deletes a range of archived WAL (`first..last`, one timeline) that
/// retention no longer keeps, as listed now: history files never.
fn prune_wal(
    policy: &Policy,
    action: &Action,
    destinations: &Destinations,
) -> Result<String, String> {
    let destination = destinations.get(action.destination.as_deref())?;
    let (first, last) = action
        .object
        .as_deref()
        .and_then(|range| range.split_once(".."))
        .ok_or("the plan names no WAL range")?;
    let folder = crate::wal::folder(&policy.name);
    let archive = crate::wal::list(destination, &policy.name).map_err(|error| error.to_string())?;
    fenced(policy)?;
    let same_timeline = |name: &str| name.get(..8) == first.get(..8);
    let mut removed = (0_u64, 0_u64);
    for file in &archive.files {
        let inside = file.name.as_str() >= first && file.name.as_str() <= last;
        if !inside
            || !same_timeline(&file.name)
            || names::wal_kind(&file.name) == Some(names::WalKind::History)
        {
            continue;
        }
        destination
            .remove(&folder, &file.object)
            .map_err(|error| error.to_string())?;
        removed.0 += 1;
        removed.1 += file.size;
    }
    tracing::info!(policy = %policy.name, first, last, files = removed.0, destination = %destination.location(), "WAL pruned.");
    Ok(format!(
        "{} WAL file{}, {} freed",
        removed.0,
        if removed.0 == 1 { "" } else { "s" },
        crate::format::human_bytes(removed.1)
    ))
}

/// Runs a restore drill of the policy's newest backup and keeps its evidence.
fn restore_test(policy: &Policy, options: &Options) -> Result<String, String> {
    let state = options
        .state_dir
        .as_deref()
        .ok_or_else(|| "no state folder to keep the evidence in".to_owned())?;
    let evidence = crate::restore::drill::run(policy, None);
    let (written, problems) =
        crate::restore::drill::keep(&crate::state::StateDir::new(state), policy, &evidence);
    for problem in problems {
        tracing::warn!(policy = %policy.name, "{problem}");
    }
    let path = written.map_err(|error| format!("cannot write the evidence record: {error}"))?;
    let backup = evidence.backup.as_deref().unwrap_or("-");
    if evidence.passed() {
        tracing::info!(policy = %policy.name, backup, "Restore drill passed.");
        Ok(format!(
            "{backup} restored into a scratch target and checked ({:.1} s); evidence {}",
            evidence.seconds,
            path.display()
        ))
    } else {
        Err(format!(
            "{backup}: {}; evidence {}",
            evidence.error.as_deref().unwrap_or("failed"),
            path.display()
        ))
    }
}

fn cleanup(
    policy: &Policy,
    action: &Action,
    destinations: &Destinations,
) -> Result<String, String> {
    let destination = destinations.get(action.destination.as_deref())?;
    let object = action.object.as_deref().unwrap_or_default();
    if names::is_json(object) {
        return Err(format!("{object} is a sidecar; cleanup never removes one"));
    }
    // Data is an orphan only while no sidecar claims it.
    let id = object.split('.').next().unwrap_or_default();
    if !names::is_unfinished(object)
        && destination
            .stat(&policy.name, &names::sidecar(id))
            .map_err(|error| error.to_string())?
            .is_some()
    {
        return Err(format!("{object} belongs to backup {id} now; left as is"));
    }
    fenced(policy)?;
    destination
        .remove(&policy.name, object)
        .map_err(|error| error.to_string())?;
    Ok("removed".to_owned())
}
