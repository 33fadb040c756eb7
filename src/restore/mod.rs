//! Restoring a backup, safely: pick it, verify it before touching anything,
//! show the plan, take a safety backup of the target, restore, check the
//! result against the sidecar, and roll back from the safety backup when
//! anything fails after the target was touched.
//!
//! [`prepare`] reads and verifies only (it is all a dry run does);
//! [`execute`] changes the target. The target ends either exactly as it was
//! or fully restored. This module never decides whether to restore, and
//! never prints: the command does.

pub mod drill;
pub mod drills;
pub mod pitr;
pub mod record;
pub mod text;

use std::io::Write as _;
use std::path::Path;
#[cfg(test)]
use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::destination::{self, Destination};
use crate::engine;
#[cfg(test)]
use crate::inventory::BackupMetadata;
use crate::inventory::metadata::PRE_RESTORE_TAG;
use crate::inventory::{self, BackupRecord, RecordState};
use crate::policy::Policy;
use crate::policy::spec::DestinationSpec;
#[cfg(test)]
use crate::policy::spec::SourceSpec;
use crate::verify::{self, Problem};

use crate::database::RestoreOptions;
pub use crate::database::{Checked, Error, Failed, Target, TargetInfo, major};

/// Which backup to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// The newest backup that is not a pre-restore safety backup (refused if
    /// it is damaged everywhere: never quietly an older one).
    Latest,
    Id(String),
}

impl Choice {
    pub fn parse(text: &str) -> Choice {
        if text == "latest" {
            Choice::Latest
        } else {
            Choice::Id(text.to_owned())
        }
    }
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub backup: Choice,
    /// A destination location as `backup list` shows it.
    pub from: Option<String>,
    /// Another target: an SQLite path, or a PostgreSQL database name or connection URL.
    pub to: Option<String>,
    /// PostgreSQL: restore with `pg_restore -j N` from a local decompressed copy.
    pub jobs: Option<u32>,
    /// PostgreSQL: how long to wait for a lock another session holds (zero:
    /// no limit); default [`locks::DEFAULT_LOCK_TIMEOUT`].
    pub lock_timeout: Option<std::time::Duration>,
    /// Only a plan is wanted: verify with every check up front (see [`prepare`]).
    pub dry_run: bool,
}

/// One step of a restore, timed.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub step: &'static str,
    pub seconds: f64,
    pub ok: bool,
    pub detail: String,
}

impl Step {
    fn timed(step: &'static str, started: Instant, ok: bool, detail: impl Into<String>) -> Step {
        Step {
            step,
            seconds: started.elapsed().as_secs_f64(),
            ok,
            detail: detail.into(),
        }
    }
}

/// A backup to restore, on the destination it is read from.
pub struct Chosen {
    pub record: BackupRecord,
    pub destination: Box<dyn Destination>,
}

/// Everything known before the target is touched: the restore plan.
pub struct Prepared {
    pub policy: Policy,
    pub chosen: Chosen,
    pub target: Box<dyn Target>,
    pub info: TargetInfo,
    /// Where the safety backup goes (the policy's first destination), if one is needed.
    pub safety_destination: Option<String>,
    pub steps: Vec<Step>,
    pub warnings: Vec<String>,
}

impl Prepared {
    /// Bytes the restore writes locally (decompressed size; when the sidecar
    /// does not record it, a generous guess from the stored size).
    pub fn needed(&self) -> u64 {
        let artifact = &self.chosen.record.metadata.artifact;
        match artifact.uncompressed_size {
            0 => artifact.size.saturating_mul(10),
            size => size,
        }
    }
}

/// Opens the policy's destinations, local ones first (the fastest to read).
fn open_destinations(policy: &Policy) -> (Vec<Box<dyn Destination>>, Vec<String>) {
    let mut specs: Vec<&DestinationSpec> = policy.destinations.iter().collect();
    specs.sort_by_key(|spec| !matches!(spec, DestinationSpec::Local(_)));
    let mut opened = Vec::new();
    let mut problems = Vec::new();
    for spec in specs {
        match destination::open(spec) {
            Ok(destination) => opened.push(destination),
            Err(error) => problems.push(format!("{}: {error}", destination::describe(spec))),
        }
    }
    (opened, problems)
}

/// The destinations holding the chosen backup complete, in the order to try
/// them, with its record on each.
pub fn select(policy: &Policy, request: &Request) -> Result<Vec<Chosen>, Error> {
    let locations: Vec<String> = policy
        .destinations
        .iter()
        .map(destination::describe)
        .collect();
    if let Some(from) = &request.from
        && !locations.iter().any(|location| location == from)
    {
        return Err(Error::Select(format!(
            "`{from}` is not a destination of policy `{}`; its destinations are: {}",
            policy.name,
            locations.join(", ")
        )));
    }
    let (opened, mut problems) = open_destinations(policy);
    let mut listed: Vec<(Box<dyn Destination>, Vec<BackupRecord>)> = Vec::new();
    // Sidecars that cannot be read, by the id their name carries.
    let mut unreadable: Vec<(String, String)> = Vec::new();
    for destination in opened {
        if request
            .from
            .as_deref()
            .is_some_and(|from| from != destination.location())
        {
            continue;
        }
        match inventory::read(destination.as_ref(), &policy.name, None) {
            Ok(listing) => {
                for (name, reason) in listing.unreadable {
                    let id = inventory::names::sidecar_id(&name)
                        .unwrap_or(&name)
                        .to_owned();
                    unreadable.push((id, format!("{}: {name}: {reason}", destination.location())));
                }
                listed.push((destination, listing.backups));
            }
            Err(error) => problems.push(format!("{}: {error}", destination.location())),
        }
    }
    // `latest` is the newest backup this kind restores into a database:
    // base backups restore into a data directory (`--target`).
    let format = crate::database::open(&policy.source).format();
    let id = match &request.backup {
        Choice::Id(id) => id.clone(),
        Choice::Latest => listed
            .iter()
            .flat_map(|(_, records)| records)
            .filter(|record| {
                !record.metadata.is_pre_restore() && record.metadata.format() == format
            })
            .max_by(|left, right| {
                (left.metadata.created_at, &left.metadata.id)
                    .cmp(&(right.metadata.created_at, &right.metadata.id))
            })
            .map(|record| record.metadata.id.clone())
            .ok_or_else(|| {
                if let Some((id, reason)) = unreadable.last() {
                    return Error::Verification {
                        id: id.clone(),
                        problems: reason.clone(),
                    };
                }
                let mut message = format!("policy `{}` has no backup yet", policy.name);
                if !problems.is_empty() {
                    message.push_str(&format!(" ({})", problems.join("; ")));
                }
                Error::Select(message)
            })?,
    };
    // A damaged sidecar of this backup, or (for `latest`) of a newer one, is
    // a damaged backup: never quietly restore something older than asked for.
    let damaged_sidecars: Vec<&String> = unreadable
        .iter()
        .filter(|(name, _)| match &request.backup {
            Choice::Id(wanted) => name == wanted,
            Choice::Latest => name.as_str() >= id.as_str(),
        })
        .map(|(_, reason)| reason)
        .collect();
    if !damaged_sidecars.is_empty() {
        let mut problems = damaged_sidecars
            .iter()
            .map(|reason| reason.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        if request.backup == Choice::Latest {
            problems.push_str("; pass --backup ID to restore an older backup");
        }
        return Err(Error::Verification { id, problems });
    }
    let mut chosen = Vec::new();
    let mut damaged = Vec::new();
    for (destination, records) in listed {
        let Some(record) = records.into_iter().find(|record| record.metadata.id == id) else {
            continue;
        };
        if record.state == RecordState::Complete {
            chosen.push(Chosen {
                record,
                destination,
            });
        } else {
            damaged.push(format!(
                "{}: {}",
                destination.location(),
                record.state.describe()
            ));
        }
    }
    if chosen.is_empty() {
        if !damaged.is_empty() {
            return Err(Error::Verification {
                id,
                problems: damaged.join("; "),
            });
        }
        let mut message = format!("no backup `{id}` of policy `{}`", policy.name);
        if let Some(from) = &request.from {
            message.push_str(&format!(" on {from}"));
        }
        if !problems.is_empty() {
            message.push_str(&format!(" ({})", problems.join("; ")));
        }
        return Err(Error::Select(message));
    }
    Ok(chosen)
}

/// Picks and verifies the backup, and inspects the target. Changes nothing.
///
/// A dry run decodes the data and has its tool read it (gzip stream,
/// `pg_restore --list`, the SQLite header). A restore checks only that the
/// stored bytes are the ones the sealed sidecar describes (size, SHA-256):
/// those bytes passed the same checks when the backup was taken, and the
/// restore re-checks all of them as it streams, before anything it wrote
/// becomes visible (one transaction, a temporary file renamed at the end, or
/// a local decompressed copy for `-j`). Decoding twice would make every
/// restore half again as slow for nothing.
pub fn prepare(policy: &Policy, request: &Request) -> Result<Prepared, (Error, Vec<Step>)> {
    let mut steps = Vec::new();
    let started = Instant::now();
    let candidates = select(policy, request).map_err(|error| (error, Vec::new()))?;
    let mut warnings = Vec::new();
    let mut problems = Vec::new();
    // Whether every copy failed only because it could not be read (a network
    // error is no verdict on the backup).
    let mut only_unreadable = true;
    let mut verified = None;
    let database = crate::database::open(&policy.source);
    // The backup's table of contents, where its kind has one: what the
    // restore drops, creates and keeps.
    let mut listing = None;
    // The ids tried, to name the backup when the newest one is refused.
    let mut tried = std::collections::BTreeSet::new();
    for candidate in candidates {
        let (destination, record) = (candidate.destination.as_ref(), &candidate.record);
        tried.insert(record.metadata.id.clone());
        let checked = if request.dry_run {
            verify::verify_restorable(destination, record, database.as_ref())
        } else {
            verify::verify_stored(destination, record)
                .and_then(|()| verify::check_decodable(destination, record))
                .and_then(|()| database.read_contents(destination, record))
        };
        match checked {
            Ok(toc) => {
                listing = toc;
                verified = Some(candidate);
                break;
            }
            Err(problem) => {
                let location = candidate.destination.location();
                // Not the backup's fault (pg_restore cannot run): no other copy helps.
                if let Problem::Write(reason) = problem {
                    return Err((Error::Restore(reason), steps));
                }
                warnings.push(format!(
                    "backup {} on {location} failed verification: {problem}",
                    candidate.record.metadata.id
                ));
                only_unreadable &= matches!(problem, Problem::Read(_));
                problems.push(format!("{location}: {problem}"));
            }
        }
    }
    let Some(chosen) = verified else {
        let id = match &request.backup {
            Choice::Id(id) => id.clone(),
            Choice::Latest if tried.len() == 1 => tried.iter().next().cloned().unwrap_or_default(),
            Choice::Latest => "latest".to_owned(),
        };
        steps.push(Step::timed("verify", started, false, problems.join("; ")));
        let error = if only_unreadable {
            Error::Restore(format!(
                "backup {id} could not be read: {}",
                problems.join("; ")
            ))
        } else {
            Error::Verification {
                id,
                problems: problems.join("; "),
            }
        };
        return Err((error, steps));
    };
    let metadata = &chosen.record.metadata;
    let mut checks = vec!["sidecar digest", "size", "SHA-256"];
    if metadata.encryption.is_some() {
        // Without a dry run the stream is decrypted as it is restored; here
        // only that the key opens it.
        checks.push(if request.dry_run {
            "age stream"
        } else {
            "age key"
        });
    }
    if request.dry_run {
        checks.push(match metadata.artifact.compression.as_str() {
            "zstd" => "zstd stream",
            "none" => "length",
            _ => "gzip stream",
        });
        checks.push(database.restorable_check());
    }
    steps.push(Step::timed(
        "verify",
        started,
        true,
        format!(
            "{} on {}: {}",
            metadata.id,
            chosen.destination.location(),
            checks.join(", ")
        ),
    ));
    if metadata.format() != database.format() {
        return Err((
            Error::Target(format!(
                "backup {} is of a {} database; the policy's is {}",
                metadata.id,
                metadata.source.kind,
                database.kind()
            )),
            steps,
        ));
    }
    let options = RestoreOptions {
        jobs: request.jobs,
        lock_timeout: request.lock_timeout,
    };
    let mut target = database
        .target(request.to.as_deref(), &options)
        .map_err(|error| (error, steps.clone()))?;
    let inspected = Instant::now();
    let info = target
        .inspect(listing.as_deref())
        .map_err(|error| (error, steps.clone()))?;
    steps.push(Step::timed("inspect", inspected, true, target.describe()));
    let safety_destination = info
        .exists
        .then(|| policy.destinations.first().map(destination::describe))
        .flatten();
    Ok(Prepared {
        policy: policy.clone(),
        chosen,
        target,
        info,
        safety_destination,
        steps,
        warnings,
    })
}

/// The warnings of a restore plan: what verification found, the target's
/// own (versions, schema differences), space.
pub fn plan_warnings(prepared: &Prepared) -> Vec<String> {
    let mut warnings = prepared.warnings.clone();
    let metadata = &prepared.chosen.record.metadata;
    let info = &prepared.info;
    warnings.extend(prepared.target.plan(metadata, info).warnings);
    if let Some((folder, available)) = &info.space
        && *available < prepared.needed()
    {
        warnings.push(format!(
            "not enough space in {}: {} needed, {} available",
            folder.display(),
            crate::format::human_bytes(prepared.needed()),
            crate::format::human_bytes(*available)
        ));
    }
    warnings
}

/// How a restore ended.
#[derive(Debug)]
pub enum Ending {
    Restored,
    /// Failed, and the target is as before (rolled back, or never touched).
    Failed {
        error: Error,
        rollback: Option<String>,
    },
    /// Failed, and so did the rollback: the target needs attention.
    RollbackFailed {
        error: Error,
        rollback_error: String,
    },
}

/// What a restore did.
#[derive(Debug)]
pub struct Outcome {
    pub steps: Vec<Step>,
    pub safety_backup: Option<String>,
    pub checked: Option<Checked>,
    pub ending: Ending,
}

/// Restores `prepared` into its target. `observe` sees each step as it ends.
pub fn execute(prepared: &Prepared, observe: &mut dyn FnMut(&Step)) -> Outcome {
    let mut outcome = Outcome {
        steps: Vec::new(),
        safety_backup: None,
        checked: None,
        ending: Ending::Restored,
    };
    let mut push = |outcome: &mut Outcome, step: Step| {
        observe(&step);
        outcome.steps.push(step);
    };
    let fail = |outcome: &mut Outcome, error: Error, rollback: Option<String>| {
        outcome.ending = Ending::Failed { error, rollback };
    };
    let record = &prepared.chosen.record;
    let metadata = &record.metadata;

    if let Some((folder, available)) = &prepared.info.space
        && *available < prepared.needed()
    {
        fail(
            &mut outcome,
            Error::Space {
                path: folder.display().to_string(),
                needed: prepared.needed(),
                available: *available,
            },
            None,
        );
        return outcome;
    }

    // The safety backup: a normal backup of the target, tagged.
    let mut safety: Option<(Box<dyn Destination>, BackupRecord)> = None;
    if prepared.info.exists {
        let started = Instant::now();
        match safety_backup(prepared) {
            Ok((destination, safety_record)) => {
                push(
                    &mut outcome,
                    Step::timed(
                        "safety backup",
                        started,
                        true,
                        format!(
                            "{} on {} (tagged {PRE_RESTORE_TAG})",
                            safety_record.metadata.id,
                            destination.location()
                        ),
                    ),
                );
                outcome.safety_backup = Some(safety_record.metadata.id.clone());
                safety = Some((destination, safety_record));
            }
            Err(error) => {
                push(
                    &mut outcome,
                    Step::timed("safety backup", started, false, error.to_string()),
                );
                fail(&mut outcome, error, None);
                return outcome;
            }
        }
    }

    let started = Instant::now();
    let restored = prepared
        .target
        .restore(prepared.chosen.destination.as_ref(), record, false);
    let failure = match restored {
        Ok(detail) => {
            push(&mut outcome, Step::timed("restore", started, true, detail));
            let started = Instant::now();
            match prepared.target.check(metadata, false) {
                Ok(checked) => {
                    push(
                        &mut outcome,
                        Step::timed("check", started, true, checked.detail.clone()),
                    );
                    outcome.checked = Some(checked);
                    return outcome;
                }
                Err(error) => {
                    push(
                        &mut outcome,
                        Step::timed("check", started, false, error.to_string()),
                    );
                    Failed {
                        error,
                        touched: true,
                    }
                }
            }
        }
        Err(failed) => {
            push(
                &mut outcome,
                Step::timed("restore", started, false, failed.error.to_string()),
            );
            failed
        }
    };

    // Put the target back as it was.
    let started = Instant::now();
    let rolled_back = if !prepared.info.exists {
        prepared
            .target
            .remove()
            .map(|()| "removed the new target again".to_owned())
    } else if !failure.touched {
        outcome.ending = Ending::Failed {
            error: failure.error,
            rollback: None,
        };
        return outcome;
    } else {
        match &safety {
            Some((destination, safety_record)) => {
                rollback(prepared, destination.as_ref(), safety_record)
            }
            None => Err(Error::Restore("no safety backup was taken".to_owned())),
        }
    };
    match rolled_back {
        Ok(detail) => {
            push(
                &mut outcome,
                Step::timed("rollback", started, true, detail.clone()),
            );
            outcome.ending = Ending::Failed {
                error: failure.error,
                rollback: Some(detail),
            };
        }
        Err(error) => {
            push(
                &mut outcome,
                Step::timed("rollback", started, false, error.to_string()),
            );
            outcome.ending = Ending::RollbackFailed {
                error: failure.error,
                rollback_error: error.to_string(),
            };
        }
    }
    outcome
}

/// Restores the safety backup over the target and checks it.
fn rollback(
    prepared: &Prepared,
    destination: &dyn Destination,
    safety: &BackupRecord,
) -> Result<String, Error> {
    // First what the failed restore added, which could block the clean-up of
    // objects it depends on (a table in a schema the safety backup drops).
    prepared
        .target
        .remove_added(prepared.info.tables.as_ref())?;
    prepared
        .target
        .restore(destination, safety, true)
        .map_err(|failed| failed.error)?;
    prepared.target.check(&safety.metadata, true)?;
    Ok(format!(
        "restored the safety backup {} and checked it",
        safety.metadata.id
    ))
}

/// Takes the pre-restore backup of the target onto the policy's first
/// destination, under an id no destination of the policy holds.
fn safety_backup(prepared: &Prepared) -> Result<(Box<dyn Destination>, BackupRecord), Error> {
    let spec = prepared
        .policy
        .destinations
        .first()
        .ok_or_else(|| Error::SafetyBackup("the policy has no destination".to_owned()))?;
    let destination =
        destination::open(spec).map_err(|error| Error::SafetyBackup(error.to_string()))?;
    // The others are consulted for the id only; one that cannot be opened
    // cannot hold it either.
    let mut destinations = vec![destination];
    destinations.extend(
        prepared.policy.destinations[1..]
            .iter()
            .filter_map(|spec| destination::open(spec).ok()),
    );
    let mut policy = prepared.policy.clone();
    policy.source = prepared.target.source_spec();
    let outcome = engine::backup_tagged(
        &policy,
        &destinations,
        engine::Targets::First,
        Utc::now(),
        None,
        &[PRE_RESTORE_TAG.to_owned()],
    )
    .map_err(|error| Error::SafetyBackup(error.to_string()))?;
    if let Some(Err(error)) = outcome.stored.first().map(|stored| &stored.result) {
        return Err(Error::SafetyBackup(error.to_string()));
    }
    let destination = destinations
        .into_iter()
        .next()
        .ok_or_else(|| Error::SafetyBackup("the destination went away".to_owned()))?;
    Ok((
        destination,
        BackupRecord {
            destination: destination::describe(spec),
            metadata: outcome.metadata,
            state: RecordState::Complete,
        },
    ))
}

/// One line of the restore log (`<state>/logs/restore.jsonl`).
#[derive(Debug, Serialize)]
pub struct LogRecord {
    pub format_version: u32,
    pub at: DateTime<Utc>,
    pub policy: String,
    pub backup: Option<String>,
    pub from: Option<String>,
    pub target: Option<String>,
    /// `restored`, `refused` (nothing touched), `failed` (target as before),
    /// `rolled-back`, or `rollback-failed`.
    pub result: &'static str,
    pub error: Option<String>,
    pub safety_backup: Option<String>,
    pub steps: Vec<Step>,
    pub seconds: f64,
}

/// Appends `record` to the log file `path` as one JSON line (0600).
pub fn append_log(path: &Path, record: &LogRecord) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut line = serde_json::to_string(record).map_err(std::io::Error::other)?;
    line.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(line.as_bytes())?;
    file.sync_all()
}

pub use crate::state::remove_abandoned;

pub use crate::state::{available_space, random_suffix};

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(kind: &str, backup_version: &str, info: TargetInfo) -> Prepared {
        use crate::inventory::metadata::{Artifact, SourceInfo};
        use crate::policy::spec::{PostgresSpec, SqliteSpec};
        let source = match kind {
            "postgres" => SourceSpec::Postgres(PostgresSpec {
                url: Some("postgresql://app@db1/app".to_owned()),
                ..PostgresSpec::default()
            }),
            _ => SourceSpec::Sqlite(SqliteSpec {
                path: PathBuf::from("/srv/app.db"),
            }),
        };
        let target = crate::database::open(&source)
            .target(None, &RestoreOptions::default())
            .unwrap();
        let created_at = chrono::DateTime::parse_from_rfc3339("2026-11-25T01:00:00Z")
            .unwrap()
            .to_utc();
        let metadata = BackupMetadata {
            format_version: 1,
            policy: "app".to_owned(),
            id: "20261125T010000Z".to_owned(),
            created_at,
            finished_at: created_at,
            artifact: Artifact {
                name: "20261125T010000Z.pgdump.gz".to_owned(),
                size: 10,
                sha256: String::new(),
                compression: "gzip".to_owned(),
                uncompressed_size: 1000,
            },
            format: None,
            parts: Vec::new(),
            encryption: None,
            source: SourceInfo {
                kind: kind.to_owned(),
                server_version: Some(backup_version.to_owned()),
                database: None,
                row_counts: [("public.orders", 5), ("public.lines", 7)]
                    .into_iter()
                    .map(|(table, rows)| (table.to_owned(), rows))
                    .collect(),
            },
            physical: None,
            tool_version: "0.1.0".to_owned(),
            host: "db1".to_owned(),
            policy_digest: String::new(),
            tags: Vec::new(),
            lease: None,
            sidecar_sha256: None,
        };
        Prepared {
            policy: test_policy(),
            chosen: Chosen {
                record: BackupRecord {
                    destination: "/var/backups".to_owned(),
                    metadata,
                    state: RecordState::Complete,
                },
                destination: Box::new(crate::destination::local::Local::new(PathBuf::from(
                    "/var/backups",
                ))),
            },
            target,
            info,
            safety_destination: None,
            steps: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn test_policy() -> Policy {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("app.yaml");
        std::fs::write(
            &path,
            "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: app\nspec:\n  source:\n    sqlite:\n      path: /srv/app.db\n  schedule:\n    cron: \"@daily\"\n  retention:\n    keep-last: 3\n  destinations:\n    - local:\n        path: /var/backups\n",
        )
        .unwrap();
        let mut loaded = crate::policy::load(&[path], crate::policy::Options::default());
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        loaded.policies.remove(0)
    }

    #[test]
    fn the_plan_warns_about_major_versions_schema_differences_and_space() {
        let info = TargetInfo {
            exists: true,
            version: Some("16.1".to_owned()),
            tables: Some(
                ["public.orders", "public.audit"]
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
            ),
            space: Some((PathBuf::from("/tmp"), 999)),
            ..TargetInfo::default()
        };
        let warnings = plan_warnings(&prepared("postgres", "15.4", info));
        assert_eq!(
            warnings,
            [
                "the backup comes from PostgreSQL 15.4, the target runs 16.1: major versions differ",
                "tables in the target but not in the backup (pg_restore --clean leaves them as they are): public.audit",
                "tables in the backup but not in the target (created): public.lines",
                "not enough space in /tmp: 1000 B needed, 999 B available",
            ]
        );
        // Same major version, same tables, enough space: nothing to say.
        let info = TargetInfo {
            exists: true,
            version: Some("15.10".to_owned()),
            tables: Some(
                ["public.orders", "public.lines"]
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
            ),
            space: Some((PathBuf::from("/tmp"), 1000)),
            ..TargetInfo::default()
        };
        assert!(plan_warnings(&prepared("postgres", "15.4", info.clone())).is_empty());

        // A safety backup of `staging` restored into the policy's `app`.
        let mut safety = prepared("postgres", "15.4", info);
        safety.chosen.record.metadata.source.database = Some("staging".to_owned());
        safety.chosen.record.metadata.tags = vec![PRE_RESTORE_TAG.to_owned()];
        assert_eq!(
            plan_warnings(&safety),
            [
                "this is a safety backup of database `staging`, not of the target `app`: to undo a restore with `--to`, restore it with the same `--to`"
            ]
        );
        // Of `app` itself, or a scheduled backup of another database: nothing to say.
        safety.chosen.record.metadata.source.database = Some("app".to_owned());
        assert!(plan_warnings(&safety).is_empty());
        safety.chosen.record.metadata.source.database = Some("staging".to_owned());
        safety.chosen.record.metadata.tags.clear();
        assert!(plan_warnings(&safety).is_empty());
    }

    #[test]
    fn major_versions() {
        assert_eq!(major("15.4"), "15");
        assert_eq!(major("16.1 (Debian 16.1-1)"), "16");
        assert_eq!(major("9.6.24"), "9.6");
    }
}
