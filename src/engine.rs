//! Taking one backup: source → gzip or zstd (on every core) → age (when the
//! policy encrypts) → SHA-256 → every destination.
//!
//! One pass, streamed: memory stays flat whatever the database size. The
//! commit protocol is the same on every destination: data to a temporary
//! name, checked and renamed; only then the sidecar, atomically. A failure
//! before that leaves nothing visible; a destination that fails does not stop
//! the others. This module decides nothing about *whether* to back up.
//!
//! The id is claimed first, on every destination of the policy, so no two
//! writers (two hosts on one bucket, a safety backup beside a copy) ever
//! share one: see [`claim_id`].

use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};

use crate::codec;
use crate::database::{self, Database, Dump, DumpError};
use crate::destination::{self, Destination, Upload};
use crate::inventory::metadata::{
    Artifact, BackupMetadata, Encryption, FORMAT_VERSION, SourceInfo, hex,
};
use crate::inventory::{self, base_id, names};
use crate::policy::Policy;
use crate::policy::spec::EncryptionSpec;

/// Why a backup failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Source(#[from] DumpError),
    #[error("compression failed: {0}")]
    Compression(String),
    #[error("encryption failed: {0}")]
    Encryption(String),
    #[error("no destination could be written: {0}")]
    NoDestination(String),
}

/// How one destination fared.
#[derive(Debug)]
pub struct Stored {
    pub destination: String,
    pub result: Result<(), destination::Error>,
}

/// A finished backup (committed on at least one destination).
#[derive(Debug)]
pub struct Outcome {
    pub metadata: BackupMetadata,
    pub stored: Vec<Stored>,
    pub duration: Duration,
}

impl Outcome {
    pub fn all_stored(&self) -> bool {
        self.stored.iter().all(|stored| stored.result.is_ok())
    }
}

/// Progress, as bytes read from the source and bytes written compressed.
pub trait Progress {
    fn update(&mut self, read: u64, written: u64);
}

/// Which of the policy's destinations get a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Targets {
    /// Every one: a backup of the policy.
    All,
    /// The first only (a pre-restore safety backup); the others are still
    /// consulted, so its id is unique across all of them.
    First,
}

/// Takes one backup of `policy` onto `destinations` (all of the policy's,
/// in its order), started at `started`.
pub fn backup(
    policy: &Policy,
    destinations: &[Box<dyn Destination>],
    started: DateTime<Utc>,
    progress: Option<&mut dyn Progress>,
) -> Result<Outcome, Error> {
    backup_tagged(policy, destinations, Targets::All, started, progress, &[])
}

/// Like [`backup`], onto `targets`, with `tags` recorded in the sidecar
/// (e.g. `pre-restore`).
pub fn backup_tagged(
    policy: &Policy,
    destinations: &[Box<dyn Destination>],
    targets: Targets,
    started: DateTime<Utc>,
    progress: Option<&mut dyn Progress>,
    tags: &[String],
) -> Result<Outcome, Error> {
    let clock = Instant::now();
    let database = database::for_policy(policy);
    let mut dump = database.dump()?;
    let claim = claim_id(policy, destinations, started);
    let written = match targets {
        Targets::All => destinations.len(),
        Targets::First => destinations.len().min(1),
    };
    let result = take(
        policy,
        &destinations[..written],
        &claim,
        database.as_ref(),
        dump.as_mut(),
        progress,
        tags,
    );
    claim.release(policy, destinations);
    let (metadata, stored) = result?;
    Ok(Outcome {
        metadata,
        stored,
        duration: clock.elapsed(),
    })
}

/// The backup itself, under the claimed id: the dump streamed to each of
/// `destinations` that could be claimed, then committed, sidecar last.
fn take(
    policy: &Policy,
    destinations: &[Box<dyn Destination>],
    claim: &Claim,
    database: &dyn Database,
    dump: &mut dyn Dump,
    progress: Option<&mut dyn Progress>,
    tags: &[String],
) -> Result<(BackupMetadata, Vec<Stored>), Error> {
    let id = claim.id.clone();
    let compression = codec::Compression::from_spec(&policy.compression);
    let recipients = match &policy.encryption {
        Some(EncryptionSpec::Age(age)) => Some(
            codec::Recipients::parse(&age.recipients)
                .map_err(|error| Error::Encryption(error.to_string()))?,
        ),
        None => None,
    };
    let suffix = codec::suffix(compression.name(), recipients.is_some());
    let name = match database.part() {
        Some(part) => names::part(&id, part, &suffix),
        None => names::artifact(&id, database.format(), &suffix),
    };

    let mut failed = Vec::new();
    let mut uploads = Vec::new();
    for (index, destination) in destinations.iter().enumerate() {
        if let Some(error) = claim.failure(index) {
            failed.push(Stored {
                destination: destination.location(),
                result: Err(error),
            });
            continue;
        }
        match destination.begin(&policy.name, &name) {
            Ok(upload) => uploads.push(Some(Pending {
                index,
                location: destination.location(),
                upload,
            })),
            Err(error) => failed.push(Stored {
                destination: destination.location(),
                result: Err(error),
            }),
        }
    }
    if uploads.is_empty() {
        return Err(no_destination(&failed));
    }

    let tee = Arc::new(Mutex::new(Tee {
        uploads,
        failed: Vec::new(),
        hasher: Sha256::new(),
        written: 0,
    }));
    // dump → compress (every core) → encrypt → hash and store.
    let sealed = codec::Sealed::new(recipients.as_ref(), SharedTee(Arc::clone(&tee)))
        .map_err(|error| Error::Encryption(error.to_string()))?;
    let compressor = compression
        .compressor(sealed)
        .map_err(|error| Error::Compression(error.to_string()))?;
    let mut input = Counting {
        inner: compressor,
        read: 0,
        tee: Arc::clone(&tee),
        progress,
        last_report: Instant::now(),
        broken: false,
    };
    let dumped = dump.dump(&mut input);
    // The progress handle and the output go with `input`, so both can be taken back.
    let Counting {
        inner,
        read,
        broken,
        tee: counted,
        ..
    } = input;
    drop(counted);
    // After a failed write the compressor has already shut down; finishing it again would panic.
    let finished = if broken {
        drop(inner);
        Err(Error::Compression(
            "the compressed stream broke off".to_owned(),
        ))
    } else {
        inner
            .finish()
            .map_err(|error| Error::Compression(error.to_string()))
            .and_then(|sealed| {
                sealed
                    .finish()
                    .map(drop)
                    .map_err(|error| Error::Encryption(error.to_string()))
            })
    };
    let mut tee = Arc::try_unwrap(tee)
        .map_err(|_| Error::Compression("the compressor kept its output".to_owned()))?
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    // When every destination failed, their reasons (disk full, …) are the real error.
    if (dumped.is_err() || finished.is_err()) && tee.uploads.iter().all(Option::is_none) {
        failed.append(&mut tee.failed);
        return Err(no_destination(&failed));
    }
    // Uploads are dropped (aborted) by `?` here when the dump or compression failed.
    let report = dumped?;
    finished?;
    failed.append(&mut tee.failed);

    let finished_at = Utc::now();
    let sha256 = hex(&tee.hasher.finalize());
    let mut metadata = BackupMetadata {
        format_version: FORMAT_VERSION,
        policy: policy.name.clone(),
        id: id.clone(),
        created_at: claim.started,
        finished_at,
        artifact: Artifact {
            name: name.clone(),
            size: tee.written,
            sha256,
            compression: compression.name().to_owned(),
            uncompressed_size: read,
        },
        encryption: recipients.as_ref().map(|recipients| Encryption {
            method: "age".to_owned(),
            recipients: recipients.fingerprints().to_vec(),
        }),
        format: Some(database.format().to_owned()),
        parts: Vec::new(),
        source: SourceInfo {
            kind: database.kind().to_owned(),
            server_version: report.server_version,
            database: report.database,
            row_counts: report.row_counts,
        },
        physical: report.physical,
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        host: host_name(),
        policy_digest: policy.digest.clone(),
        tags: tags.to_vec(),
        lease: crate::lease::stamp(&policy.name),
        sidecar_sha256: None,
    };
    if database.part().is_some() {
        metadata.parts = vec![metadata.artifact.clone()];
    }
    metadata
        .seal()
        .map_err(|error| Error::Compression(error.to_string()))?;
    let sidecar = serde_json::to_vec_pretty(&metadata)
        .map_err(|error| Error::Compression(error.to_string()))?;
    let mut stored = failed;
    for pending in tee.uploads.into_iter().flatten() {
        let result = pending.upload.commit(tee.written).and_then(|()| {
            // Fencing: the sidecar only while the lease is still ours.
            crate::lease::fence(&policy.name)
                .map_err(|error| destination::Error::Fenced(error.to_string()))?;
            destinations[pending.index].put(&policy.name, &names::sidecar(&id), &sidecar)
        });
        stored.push(Stored {
            destination: pending.location,
            result,
        });
    }
    if stored.iter().all(|stored| stored.result.is_err()) {
        return Err(no_destination(&stored));
    }
    Ok((metadata, stored))
}

/// The error when no destination stored the backup, naming each one's reason.
fn no_destination(stored: &[Stored]) -> Error {
    let reasons: Vec<String> = stored
        .iter()
        .filter_map(|stored| {
            let error = stored.result.as_ref().err()?;
            Some(format!("{}: {error}", stored.destination))
        })
        .collect();
    Error::NoDestination(reasons.join("; "))
}

/// An id claimed on a policy's destinations: `<id>.claim-<nonce>` on each
/// one that could be written, removed again once the backup is done (a
/// crash leaves it as an orphan that `apply` cleans up).
struct Claim {
    id: String,
    /// When the backup started: the time its id names.
    started: DateTime<Utc>,
    /// Per destination, the claim's name there, or why it could not be made.
    placed: Vec<Result<String, String>>,
}

impl Claim {
    /// Why the backup cannot go to destination `index`.
    fn failure(&self, index: usize) -> Option<destination::Error> {
        match self.placed.get(index) {
            Some(Ok(_)) => None,
            Some(Err(reason)) => Some(destination::Error::Claim(reason.clone())),
            None => Some(destination::Error::Claim("not claimed".to_owned())),
        }
    }

    fn release(&self, policy: &Policy, destinations: &[Box<dyn Destination>]) {
        for (destination, placed) in destinations.iter().zip(&self.placed) {
            if let Ok(name) = placed
                && let Err(error) = destination.remove(&policy.name, name)
            {
                tracing::warn!(policy = %policy.name, destination = %destination.location(), %error, "Claim not removed; apply cleans it up.");
            }
        }
    }
}

/// Claims attempted before giving up on a second's ids.
const CLAIM_ATTEMPTS: usize = 20;

/// Claims the id for a backup started at `started`: its second, with `-2`,
/// `-3`, … when any destination of the policy already holds anything under
/// that id, or another writer claims it at the same moment.
///
/// A writer puts `<id>.claim-<nonce>` (a name no one else uses) on every
/// destination, then lists `<id>.` there: when anything else is there, it
/// withdraws and tries the next id. Of two writers that claim one id at
/// once, the one that lists second sees the other's claim, so at most one
/// goes ahead, on stores that ignore conditional writes too.
fn claim_id(
    policy: &Policy,
    destinations: &[Box<dyn Destination>],
    started: DateTime<Utc>,
) -> Claim {
    let base = base_id(started);
    let taken: std::collections::BTreeSet<String> = destinations
        .iter()
        .filter_map(|destination| destination.list_prefixed(&policy.name, &base).ok())
        .flatten()
        .filter_map(|entry| entry.name.split('.').next().map(str::to_owned))
        .filter(|id| inventory::is_id(id))
        .collect();
    let mut suffix = 1;
    let mut last = None;
    for attempt in 0..CLAIM_ATTEMPTS {
        let id = loop {
            let candidate = match suffix {
                1 => base.clone(),
                _ => format!("{base}-{suffix}"),
            };
            suffix += 1;
            if !taken.contains(&candidate) {
                break candidate;
            }
        };
        let nonce = inventory::claim_nonce();
        let name = inventory::claim_name(&id, &nonce);
        let body = format!(
            "claimed by {} (pid {}) at {}\n",
            host_name(),
            std::process::id(),
            Utc::now().to_rfc3339()
        );
        let placed: Vec<Result<String, String>> = destinations
            .iter()
            .map(|destination| {
                destination
                    .put(&policy.name, &name, body.as_bytes())
                    .map(|()| name.clone())
                    .map_err(|error| error.to_string())
            })
            .collect();
        let contested = destinations
            .iter()
            .zip(&placed)
            .any(|(destination, placed)| {
                placed.is_ok()
                    && destination
                        .list_prefixed(&policy.name, &names::prefix(&id))
                        .is_ok_and(|entries| entries.iter().any(|entry| entry.name != name))
            });
        let claim = Claim {
            id: id.clone(),
            started,
            placed,
        };
        if !contested {
            return claim;
        }
        tracing::debug!(policy = %policy.name, id, attempt, "Id claimed by another writer at the same time; trying the next.");
        claim.release(policy, destinations);
        // Two writers that withdrew together should not meet again.
        std::thread::sleep(Duration::from_millis(
            u64::from_str_radix(&nonce[..4], 16).unwrap_or(0) % 200,
        ));
        last = Some(claim.id);
    }
    // Every candidate contested: no destination is claimed, so none is written.
    Claim {
        id: last.unwrap_or(base),
        started,
        placed: destinations
            .iter()
            .map(|_| {
                Err(format!(
                    "no free backup id in {CLAIM_ATTEMPTS} attempts (other writers)"
                ))
            })
            .collect(),
    }
}

/// One backup of a policy onto every destination that opens (`backup run`).
pub struct Taken {
    pub result: Result<Outcome, Error>,
    /// Destinations that could not be opened: where, and why.
    pub unavailable: Vec<(String, destination::Error)>,
}

impl Taken {
    /// `location: error` for each destination the backup is not on.
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        if let Ok(outcome) = &self.result {
            for stored in &outcome.stored {
                if let Err(error) = &stored.result {
                    failures.push(format!("{}: {error}", stored.destination));
                }
            }
        }
        failures.extend(
            self.unavailable
                .iter()
                .map(|(location, error)| format!("{location}: {error}")),
        );
        failures
    }

    /// The run record of `backup run` (kind `run`) that began at `started_at`.
    pub fn run_record(&self, policy: &str, started_at: DateTime<Utc>) -> crate::runlog::RunRecord {
        let record = crate::runlog::RunRecord::new(policy, crate::runlog::RunKind::Run, started_at);
        match &self.result {
            Ok(outcome) => {
                let mut record = record;
                record.backup = Some(outcome.metadata.id.clone());
                record.bytes = Some(outcome.metadata.artifact.size);
                let failures = self.failures();
                if failures.is_empty() {
                    record
                } else {
                    record.failed(format!(
                        "stored, but not everywhere: {}",
                        failures.join("; ")
                    ))
                }
            }
            Err(error) => {
                let mut reasons = vec![error.to_string()];
                reasons.extend(self.failures());
                record.failed(reasons.join("; "))
            }
        }
    }

    /// Whether the backup is on every destination.
    pub fn everywhere(&self) -> bool {
        self.result.is_ok() && self.failures().is_empty()
    }
}

/// Opens every destination of `policy` and takes one backup onto those that opened.
pub fn backup_everywhere(
    policy: &Policy,
    started_at: DateTime<Utc>,
    progress: Option<&mut dyn Progress>,
) -> Taken {
    let mut opened: Vec<Box<dyn Destination>> = Vec::new();
    let mut unavailable = Vec::new();
    for spec in &policy.destinations {
        match destination::open(spec) {
            Ok(destination) => opened.push(destination),
            Err(error) => unavailable.push((destination::describe(spec), error)),
        }
    }
    let result = if opened.is_empty() {
        Err(Error::NoDestination(
            "no destination could be opened".to_owned(),
        ))
    } else {
        backup(policy, &opened, started_at, progress)
    };
    Taken {
        result,
        unavailable,
    }
}

/// The name `--host` gave this process, if any.
static HOST_NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Names this host for the rest of the process (`--host`, `BACKUP_HOST`);
/// the first call wins.
pub fn set_host_name(name: &str) {
    let _ = HOST_NAME.set(name.to_owned());
}

/// This host's name, for sidecars, run records, host selectors and leases:
/// `--host`, else the kernel's host name.
pub fn host_name() -> String {
    if let Some(name) = HOST_NAME.get() {
        return name.clone();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// A host name `--host` accepts: 1 to 253 characters of letters, digits,
/// `.`, `-` and `_`, not starting with `-` or `.`.
pub fn check_host_name(name: &str) -> Result<(), String> {
    let valid = (1..=253).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && !name.starts_with(['-', '.']);
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a host name: use 1 to 253 letters, digits, `.`, `-` or `_`, not starting with `-` or `.`"
        ))
    }
}

/// An upload under way, and the destination (index and location) it goes to.
struct Pending {
    index: usize,
    location: String,
    upload: Box<dyn Upload>,
}

/// The compressed stream's end: hashes, counts, and writes to every upload.
struct Tee {
    /// `None` once that upload failed (it was moved to `failed`).
    uploads: Vec<Option<Pending>>,
    failed: Vec<Stored>,
    hasher: Sha256,
    written: u64,
}

struct SharedTee(Arc<Mutex<Tee>>);

impl Write for SharedTee {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        let mut tee = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let tee = &mut *tee;
        tee.hasher.update(buffer);
        tee.written += buffer.len() as u64;
        for slot in &mut tee.uploads {
            if let Some(pending) = slot
                && let Err(error) = pending.upload.write_all(buffer)
            {
                tee.failed.push(Stored {
                    destination: pending.location.clone(),
                    result: Err(destination::Error::Write(error)),
                });
                // Dropping the upload aborts it.
                *slot = None;
            }
        }
        if tee.uploads.iter().all(Option::is_none) {
            return Err(io::Error::other("every destination failed"));
        }
        Ok(buffer.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut tee = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let tee = &mut *tee;
        for slot in &mut tee.uploads {
            if let Some(pending) = slot
                && let Err(error) = pending.upload.flush()
            {
                // A full disk shows here first: the destination failed, not the compressor.
                tee.failed.push(Stored {
                    destination: pending.location.clone(),
                    result: Err(destination::Error::Write(error)),
                });
                *slot = None;
            }
        }
        if tee.uploads.iter().all(Option::is_none) {
            return Err(io::Error::other("every destination failed"));
        }
        Ok(())
    }
}

/// The source's end: counts bytes and reports progress about once a second.
struct Counting<'a, W: Write> {
    inner: W,
    read: u64,
    tee: Arc<Mutex<Tee>>,
    progress: Option<&'a mut dyn Progress>,
    last_report: Instant,
    /// A write or flush failed: the compressor has shut its pipeline down.
    broken: bool,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        let count = self
            .inner
            .write(buffer)
            .inspect_err(|_| self.broken = true)?;
        self.read += count as u64;
        if let Some(progress) = self.progress.as_deref_mut()
            && self.last_report.elapsed() >= Duration::from_secs(1)
        {
            self.last_report = Instant::now();
            let written = self.tee.lock().map_or(0, |tee| tee.written);
            progress.update(self.read, written);
        }
        Ok(count)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|_| self.broken = true)
    }
}
