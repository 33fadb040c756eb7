//! Point-in-time recovery of a PostgreSQL cluster: a base backup laid into a
//! data directory, then the archived WAL replayed up to a target.
//!
//! [`prepare`] changes nothing: it picks the newest base backup that ends
//! before the target, and proves that the WAL from the backup's start to the
//! target is archived without a gap on the destination it reads, before
//! anything is touched (no other tool checks this). [`execute`] moves an
//! existing data directory aside as the safety copy, unpacks the base backup
//! (checked against its sidecar and its `backup_manifest` as it streams),
//! runs `pg_verifybackup` where installed, writes `restore_command` and the
//! recovery target with `recovery.signal`, starts the server on a free port
//! with archiving off, waits until it has reached the target and promoted,
//! checks it answers, and stops it. Any failure removes what it wrote and
//! puts the safety copy back.

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Utc};

use super::Step;
use crate::database::postgres::physical;
use crate::destination::{self, Destination};
use crate::inventory::metadata::PhysicalInfo;
use crate::inventory::{self, BackupRecord, RecordState};
use crate::policy::Policy;
use crate::policy::spec::SourceSpec;
use crate::verify;
use crate::wal::{self, Archive, SegmentName, format_lsn, parse_lsn};

/// Where recovery stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryTarget {
    /// A moment, with its zone (`recovery_target_time`).
    Time(DateTime<FixedOffset>),
    /// A WAL position (`recovery_target_lsn`).
    Lsn(u64),
    /// A transaction id (`recovery_target_xid`): the end of that transaction.
    Xid(u64),
    /// The end of the base backup, the earliest consistent point (`recovery_target = 'immediate'`).
    Immediate,
}

impl RecoveryTarget {
    /// A time as `--target-time` takes it: RFC 3339 or PostgreSQL's
    /// `2026-12-01 17:00:00+00`, always with a zone: a time without one is
    /// refused, never guessed.
    pub fn parse_time(text: &str) -> Result<RecoveryTarget, String> {
        let text = text.trim();
        if let Ok(time) = DateTime::parse_from_rfc3339(text) {
            return Ok(RecoveryTarget::Time(time));
        }
        for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f %#z"] {
            if let Ok(time) = DateTime::parse_from_str(text, format) {
                return Ok(RecoveryTarget::Time(time));
            }
        }
        let naive = [
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%d %H:%M",
        ]
        .iter()
        .any(|format| chrono::NaiveDateTime::parse_from_str(text, format).is_ok());
        Err(if naive {
            format!(
                "`{text}` has no time zone; give one, e.g. `{text}Z` (UTC) or `{text}+01:00`: a time without a zone is not guessed"
            )
        } else {
            format!(
                "`{text}` is not a time like `2026-12-01T17:00:00Z` or `2026-12-01 17:00:00+01:00`"
            )
        })
    }

    pub fn parse_lsn(text: &str) -> Result<RecoveryTarget, String> {
        parse_lsn(text.trim())
            .map(RecoveryTarget::Lsn)
            .ok_or_else(|| format!("`{text}` is not an LSN like `0/16B3748`"))
    }

    pub fn parse_xid(text: &str) -> Result<RecoveryTarget, String> {
        text.trim()
            .parse()
            .map(RecoveryTarget::Xid)
            .map_err(|_| format!("`{text}` is not a transaction id (a number)"))
    }

    /// The target for people: `time 2026-12-01 17:00:00 +00:00`.
    pub fn describe(&self) -> String {
        match self {
            RecoveryTarget::Time(time) => {
                format!("time {}", time.format("%Y-%m-%d %H:%M:%S%.f %:z"))
            }
            RecoveryTarget::Lsn(lsn) => format!("LSN {}", format_lsn(*lsn)),
            RecoveryTarget::Xid(xid) => format!("transaction {xid}"),
            RecoveryTarget::Immediate => "the end of the base backup (immediate)".to_owned(),
        }
    }

    /// The settings that make PostgreSQL stop there.
    fn settings(&self) -> Vec<(&'static str, String)> {
        match self {
            RecoveryTarget::Time(time) => vec![(
                "recovery_target_time",
                time.format("%Y-%m-%d %H:%M:%S%.6f%:z").to_string(),
            )],
            RecoveryTarget::Lsn(lsn) => vec![("recovery_target_lsn", format_lsn(*lsn))],
            RecoveryTarget::Xid(xid) => vec![("recovery_target_xid", xid.to_string())],
            RecoveryTarget::Immediate => vec![("recovery_target", "immediate".to_owned())],
        }
    }
}

/// What a point-in-time restore is asked to do.
#[derive(Debug, Clone)]
pub struct Request {
    pub target: RecoveryTarget,
    /// A base backup id, or `None` for the newest one that fits the target.
    pub backup: Option<String>,
    pub from: Option<String>,
    /// The data directory to create (or to replace, moving the old one aside).
    pub to: PathBuf,
    /// The `restore_command` the restored server fetches WAL with.
    pub restore_command: String,
    /// How long replay may take before the restore gives up.
    pub timeout: Duration,
}

/// A restore that was checked and can be carried out.
pub struct Prepared {
    pub policy: String,
    pub destination: Box<dyn Destination>,
    pub record: BackupRecord,
    pub physical: PhysicalInfo,
    pub target: RecoveryTarget,
    /// The WAL the restore needs, first and last segment, and how many.
    pub wal_first: String,
    pub wal_last: String,
    pub wal_segments: u64,
    /// Missing ranges within what it needs: a restore is refused while any is.
    pub missing: Vec<wal::Range>,
    /// The newest archived segment's upload time: how far the archive reaches.
    pub archived_until: Option<DateTime<Utc>>,
    /// Bytes the data directory takes once unpacked, and the WAL replayed through it.
    pub space_needed: u64,
    pub to: PathBuf,
    /// The data directory exists and holds something: it is moved aside first.
    pub replaces: bool,
    pub restore_command: String,
    pub timeout: Duration,
    pub warnings: Vec<String>,
    /// Where the PostgreSQL programs of the backup's major version are.
    pub bin_dir: PathBuf,
}

impl Prepared {
    pub fn complete(&self) -> bool {
        self.missing.is_empty()
    }
}

/// What a finished restore did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub steps: Vec<Step>,
    /// Where the replaced data directory was moved.
    pub safety_copy: Option<PathBuf>,
    /// What the server's log says about where recovery stopped.
    pub stopped: Option<String>,
    pub error: Option<String>,
}

/// Picks the base backup and proves the WAL chain. Changes nothing.
pub fn prepare(policy: &Policy, request: &Request) -> Result<Prepared, String> {
    if policy.physical.is_none() {
        return Err(format!(
            "policy `{}` takes no base backups (`spec.physical`), so it cannot restore to a point in time",
            policy.name
        ));
    }
    let SourceSpec::Postgres(source) = &policy.source else {
        return Err("point-in-time recovery is for PostgreSQL sources only".to_owned());
    };
    if request.to.as_os_str().is_empty() {
        return Err("name the data directory to restore into with --to DATADIR".to_owned());
    }
    let to = std::path::absolute(&request.to).map_err(|error| error.to_string())?;
    let replaces = match std::fs::read_dir(&to) {
        Ok(mut entries) => entries.next().is_some(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
        Err(error) => return Err(format!("cannot read {}: {error}", to.display())),
    };
    if replaces && to.join("postmaster.pid").exists() {
        return Err(format!(
            "{} holds a running (or crashed) server (postmaster.pid); stop it first: the data directory of a running server is never replaced",
            to.display()
        ));
    }
    let mut problems = Vec::new();
    let mut candidates: Vec<(Box<dyn Destination>, Vec<BackupRecord>)> = Vec::new();
    for spec in &policy.destinations {
        let location = destination::describe(spec);
        if request.from.as_deref().is_some_and(|from| from != location) {
            continue;
        }
        match destination::open(spec).and_then(|destination| {
            inventory::read(destination.as_ref(), &policy.name, None)
                .map(|listing| (destination, listing))
        }) {
            Ok((destination, listing)) => {
                let bases: Vec<BackupRecord> = listing
                    .backups
                    .into_iter()
                    .filter(|record| {
                        record.metadata.format() == physical::FORMAT
                            && record.state == RecordState::Complete
                            && record.metadata.physical.is_some()
                    })
                    .collect();
                candidates.push((destination, bases));
            }
            Err(error) => problems.push(format!("{location}: {error}")),
        }
    }
    if let Some(from) = &request.from
        && candidates.is_empty()
        && problems.is_empty()
    {
        return Err(format!(
            "`{from}` is not a destination of policy `{}`",
            policy.name
        ));
    }
    // The newest base backup that fits the target, on the first destination holding it.
    let fits = |record: &BackupRecord| -> bool {
        let Some(info) = &record.metadata.physical else {
            return false;
        };
        if let Some(id) = &request.backup {
            return &record.metadata.id == id;
        }
        match &request.target {
            RecoveryTarget::Time(time) => record.metadata.finished_at < time.to_utc(),
            RecoveryTarget::Lsn(lsn) => parse_lsn(&info.stop_lsn).is_some_and(|stop| stop <= *lsn),
            RecoveryTarget::Xid(_) | RecoveryTarget::Immediate => true,
        }
    };
    let best = candidates
        .iter()
        .flat_map(|(destination, records)| records.iter().map(move |record| (destination, record)))
        .filter(|(_, record)| fits(record))
        .max_by(|(_, left), (_, right)| {
            (left.metadata.created_at, &left.metadata.id)
                .cmp(&(right.metadata.created_at, &right.metadata.id))
        })
        .map(|(_, record)| record.metadata.id.clone());
    let Some(id) = best else {
        let mut message = match (&request.backup, &request.target) {
            (Some(id), _) => format!("no complete base backup `{id}` of policy `{}`", policy.name),
            (None, RecoveryTarget::Time(_) | RecoveryTarget::Lsn(_)) => format!(
                "no base backup of policy `{}` ends before {}",
                policy.name,
                request.target.describe()
            ),
            (None, _) => format!("policy `{}` has no complete base backup", policy.name),
        };
        if !problems.is_empty() {
            message.push_str(&format!(" ({})", problems.join("; ")));
        }
        return Err(message);
    };
    // Of the destinations holding it, the first whose archive is complete for the target.
    let mut tried = Vec::new();
    let mut first = None;
    for (destination, records) in candidates {
        let Some(record) = records.into_iter().find(|record| record.metadata.id == id) else {
            continue;
        };
        let archive = match wal::list(destination.as_ref(), &policy.name) {
            Ok(archive) => archive,
            Err(error) => {
                tried.push(format!(
                    "{}: the WAL archive cannot be listed: {error}",
                    destination.location()
                ));
                continue;
            }
        };
        let prepared = chain(
            policy,
            request,
            &to,
            replaces,
            destination,
            record,
            &archive,
            source,
        )?;
        if prepared.complete() {
            return Ok(prepared);
        }
        first.get_or_insert(prepared);
    }
    match first {
        Some(prepared) => Ok(prepared),
        None => Err(format!(
            "base backup {id} cannot be read anywhere: {}",
            tried.join("; ")
        )),
    }
}

/// The WAL `record` needs to reach the target, and what of it is missing.
#[allow(clippy::too_many_arguments)]
fn chain(
    policy: &Policy,
    request: &Request,
    to: &Path,
    replaces: bool,
    destination: Box<dyn Destination>,
    record: BackupRecord,
    archive: &Archive,
    source: &crate::policy::spec::PostgresSpec,
) -> Result<Prepared, String> {
    let info = record
        .metadata
        .physical
        .clone()
        .ok_or("the sidecar records no WAL position")?;
    let size = info.wal_segment_size;
    let mut warnings = Vec::new();
    if let Some(marker) = &archive.marker
        && marker.system_identifier != info.system_identifier
    {
        return Err(format!(
            "the WAL archive on {} belongs to cluster {}, the base backup to cluster {}",
            destination.location(),
            marker.system_identifier,
            info.system_identifier
        ));
    }
    let start = SegmentName::parse(&info.start_wal, size)
        .ok_or("the sidecar's start segment is not a WAL file name")?;
    let stop = SegmentName::parse(&info.stop_wal, size)
        .ok_or("the sidecar's stop segment is not a WAL file name")?;
    let on_timeline: Vec<&wal::Archived> = archive
        .files
        .iter()
        .filter(|file| {
            SegmentName::parse(&file.name, size)
                .is_some_and(|segment| segment.timeline == info.timeline)
        })
        .collect();
    let archived_until = on_timeline.iter().filter_map(|file| file.modified).max();
    // The newest segment archived on the backup's timeline.
    let newest = on_timeline
        .iter()
        .filter_map(|file| SegmentName::parse(&file.name, size))
        .max_by_key(|segment| segment.number);
    let last = match &request.target {
        RecoveryTarget::Immediate => stop,
        RecoveryTarget::Lsn(lsn) => SegmentName::of_lsn(info.timeline, *lsn, size),
        // The first segment archived at or after the target holds it (a
        // segment is archived once it is full or switched, after its records).
        RecoveryTarget::Time(time) => {
            let target = time.to_utc();
            match on_timeline
                .iter()
                .filter(|file| file.modified.is_some_and(|modified| modified >= target))
                .filter_map(|file| SegmentName::parse(&file.name, size))
                .filter(|segment| segment.number >= stop.number)
                .min_by_key(|segment| segment.number)
            {
                Some(segment) => segment,
                // A gap on the way is the first thing to say.
                None if newest
                    .is_some_and(|newest| !archive.missing(&start, &newest).is_empty()) =>
                {
                    newest.unwrap_or(stop)
                }
                None => {
                    return Err(format!(
                        "the WAL archive on {} reaches {} only; {} is later: wait for the next segment to be archived (archive_timeout), or choose an earlier time",
                        destination.location(),
                        archived_until
                            .map_or_else(|| "no point".to_owned(), |time| time.to_rfc3339()),
                        request.target.describe()
                    ));
                }
            }
        }
        // A transaction's end is not known before replay: everything archived.
        RecoveryTarget::Xid(_) => newest
            .filter(|segment| segment.number >= stop.number)
            .unwrap_or(stop),
    };
    if last.number < stop.number {
        return Err(format!(
            "{} is before the end of base backup {} ({}), its earliest consistent point",
            request.target.describe(),
            record.metadata.id,
            info.stop_lsn
        ));
    }
    let missing = archive.missing(&start, &last);
    if matches!(request.target, RecoveryTarget::Xid(_)) {
        warnings.push("a transaction's end is found only by replaying: all archived WAL after the base backup is needed".to_owned());
    }
    let wal_segments = last.number - start.number + 1;
    let version = record
        .metadata
        .source
        .server_version
        .clone()
        .unwrap_or_default();
    let bin_dir = bin_dir(source.bin_dir.as_deref(), &version)?;
    Ok(Prepared {
        policy: policy.name.clone(),
        space_needed: record.metadata.artifact.uncompressed_size + wal_segments * size,
        destination,
        record,
        physical: info,
        target: request.target.clone(),
        wal_first: start.name(size),
        wal_last: last.name(size),
        wal_segments,
        missing,
        archived_until,
        to: to.to_owned(),
        replaces,
        restore_command: request.restore_command.clone(),
        timeout: request.timeout,
        warnings,
        bin_dir,
    })
}

/// The folder with `pg_ctl` of the backup's major version: the policy's
/// `bin-dir`, else `/usr/lib/postgresql/<major>/bin`.
fn bin_dir(configured: Option<&Path>, version: &str) -> Result<PathBuf, String> {
    if let Some(bin_dir) = configured {
        return Ok(bin_dir.to_owned());
    }
    let major = crate::database::major(version);
    let folder = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"));
    if folder.join("pg_ctl").is_file() {
        Ok(folder)
    } else {
        Err(format!(
            "the base backup is of PostgreSQL {version}, and {}/pg_ctl is not installed (install the server package of version {major}, or set the source's bin-dir)",
            folder.display()
        ))
    }
}

/// Carries out a prepared restore; `observe` sees each step as it ends.
pub fn execute(prepared: &Prepared, observe: &mut dyn FnMut(&Step)) -> Outcome {
    let mut outcome = Outcome::default();
    if !prepared.complete() {
        outcome.error = Some(format!(
            "the WAL archive misses {}; nothing was changed",
            describe_missing(&prepared.missing)
        ));
        return outcome;
    }
    let mut step = |outcome: &mut Outcome, step: Step| {
        observe(&step);
        outcome.steps.push(step);
    };
    // 1. The old data directory aside, as the safety copy.
    if prepared.replaces {
        let started = Instant::now();
        let aside = safety_path(&prepared.to);
        match std::fs::rename(&prepared.to, &aside) {
            Ok(()) => {
                outcome.safety_copy = Some(aside.clone());
                step(
                    &mut outcome,
                    Step::timed(
                        "safety copy",
                        started,
                        true,
                        format!("moved {} to {}", prepared.to.display(), aside.display()),
                    ),
                );
            }
            Err(error) => {
                step(
                    &mut outcome,
                    Step::timed("safety copy", started, false, error.to_string()),
                );
                outcome.error = Some(format!(
                    "cannot move {} aside: {error}; nothing was changed",
                    prepared.to.display()
                ));
                return outcome;
            }
        }
    }
    let result = restore_into(prepared, &mut outcome, &mut step);
    if let Err(error) = result {
        // Roll back: what was written goes, the safety copy comes back.
        let started = Instant::now();
        let mut undone = vec![];
        if prepared.to.exists() {
            match std::fs::remove_dir_all(&prepared.to) {
                Ok(()) => undone.push(format!("removed {}", prepared.to.display())),
                Err(error) => undone.push(format!(
                    "could not remove {}: {error}",
                    prepared.to.display()
                )),
            }
        }
        if let Some(aside) = outcome.safety_copy.take() {
            match std::fs::rename(&aside, &prepared.to) {
                Ok(()) => undone.push(format!("moved {} back", aside.display())),
                Err(rename) => {
                    undone.push(format!("could not move {} back: {rename}", aside.display()));
                    outcome.safety_copy = Some(aside);
                }
            }
        }
        step(
            &mut outcome,
            Step::timed("rollback", started, true, undone.join("; ")),
        );
        outcome.error = Some(error);
    }
    outcome
}

fn restore_into(
    prepared: &Prepared,
    outcome: &mut Outcome,
    step: &mut dyn FnMut(&mut Outcome, Step),
) -> Result<(), String> {
    let owner = server_owner(&prepared.to)?;
    // 2. The base backup, unpacked as it is checked.
    let started = Instant::now();
    let unpacked = unpack(prepared);
    step(
        outcome,
        Step::timed(
            "unpack",
            started,
            unpacked.is_ok(),
            match &unpacked {
                Ok(()) => format!(
                    "base backup {} ({}) into {}, checked against its sidecar and backup_manifest",
                    prepared.record.metadata.id,
                    crate::format::human_bytes(prepared.record.metadata.artifact.uncompressed_size),
                    prepared.to.display()
                ),
                Err(error) => error.clone(),
            },
        ),
    );
    unpacked?;
    // 3. PostgreSQL's own check of the files, where installed.
    let verifybackup = prepared.bin_dir.join("pg_verifybackup");
    if verifybackup.is_file() {
        let started = Instant::now();
        let output = Command::new(&verifybackup)
            .arg("--no-parse-wal")
            .arg("--quiet")
            .arg(&prepared.to)
            .output();
        let (ok, detail) = match output {
            Ok(output) if output.status.success() => (
                true,
                "pg_verifybackup: the files match the backup_manifest".to_owned(),
            ),
            Ok(output) => (
                false,
                format!(
                    "pg_verifybackup: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            ),
            Err(error) => (
                false,
                format!("cannot run {}: {error}", verifybackup.display()),
            ),
        };
        step(
            outcome,
            Step::timed("pg_verifybackup", started, ok, detail.clone()),
        );
        if !ok {
            return Err(detail);
        }
    }
    // 4. Recovery settings.
    let started = Instant::now();
    let configured = configure(prepared, owner);
    step(
        outcome,
        Step::timed(
            "configure",
            started,
            configured.is_ok(),
            match &configured {
                Ok(()) => format!(
                    "recovery.signal, restore_command, {}; archive_mode off",
                    prepared
                        .target
                        .settings()
                        .iter()
                        .map(|(key, value)| format!("{key} = '{value}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Err(error) => error.clone(),
            },
        ),
    );
    configured?;
    // 5. Replay, promote, check, stop.
    let started = Instant::now();
    let replayed = replay(prepared, owner);
    let detail = match &replayed {
        Ok(stopped) => stopped.clone(),
        Err(error) => error.clone(),
    };
    step(
        outcome,
        Step::timed("recover", started, replayed.is_ok(), detail),
    );
    outcome.stopped = Some(replayed?);
    Ok(())
}

/// `DATADIR.pre-restore-<time>`, beside it.
fn safety_path(to: &Path) -> PathBuf {
    let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
    let mut name = to.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".pre-restore-{stamp}"));
    to.with_file_name(name)
}

/// The user the server runs as: the owner of the folder that holds the data
/// directory (PostgreSQL refuses to run as root).
fn server_owner(to: &Path) -> Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let parent = to
        .parent()
        .ok_or("the data directory has no parent folder")?;
    let metadata = std::fs::metadata(parent)
        .map_err(|error| format!("cannot read {}: {error}", parent.display()))?;
    if metadata.uid() == 0 {
        return Err(format!(
            "PostgreSQL does not run as root, and {} belongs to root: make the folder that holds the data directory belong to the server's user (e.g. `chown postgres: {}`)",
            parent.display(),
            parent.display()
        ));
    }
    Ok(Some((metadata.uid(), metadata.gid())))
}

fn unpack(prepared: &Prepared) -> Result<(), String> {
    std::fs::create_dir_all(&prepared.to)
        .map_err(|error| format!("cannot create {}: {error}", prepared.to.display()))?;
    std::fs::set_permissions(&prepared.to, std::fs::Permissions::from_mode(0o700))
        .map_err(|error| error.to_string())?;
    let (reader, writer) = std::io::pipe().map_err(|error| error.to_string())?;
    std::thread::scope(|scope| {
        let feeder = scope.spawn(move || {
            let mut tee = Tee {
                pipe: Some(writer),
                check: physical::manifest_check(),
            };
            let streamed =
                verify::verify_into(prepared.destination.as_ref(), &prepared.record, &mut tee);
            let Tee { pipe, check } = tee;
            drop(pipe);
            streamed.map_err(|problem| problem.to_string())?;
            check.verdict()
        });
        let mut archive = tar::Archive::new(reader);
        archive.set_preserve_permissions(true);
        archive.set_overwrite(false);
        let unpacked = archive
            .unpack(&prepared.to)
            .map_err(|error| format!("unpacking failed: {error}"));
        // Whatever the unpacking left unread still has to pass the checks.
        let mut rest = archive.into_inner();
        let _ = std::io::copy(&mut rest, &mut std::io::sink());
        drop(rest);
        let fed = feeder
            .join()
            .unwrap_or_else(|_| Err("the reader panicked".to_owned()));
        fed.and(unpacked)
    })
}

/// The decoded stream to the unpacker and the manifest check alike.
struct Tee {
    pipe: Option<std::io::PipeWriter>,
    check: Box<dyn crate::database::StreamCheck>,
}

impl std::io::Write for Tee {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        self.check.write_all(buffer)?;
        if let Some(pipe) = &mut self.pipe {
            pipe.write_all(buffer)?;
        }
        Ok(buffer.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Appends the recovery settings to `postgresql.auto.conf`, touches
/// `recovery.signal`, and hands the tree to the server's user.
fn configure(prepared: &Prepared, owner: Option<(u32, u32)>) -> Result<(), String> {
    let quote = |value: &str| value.replace('\'', "''");
    let mut settings = format!(
        "\n# Written by `backup restore` ({}, base backup {}, target {}).\nrestore_command = '{}'\nrecovery_target_action = 'promote'\nrecovery_target_timeline = 'current'\n# Archiving stays off until this cluster is meant to be the primary: turn it on then.\narchive_mode = 'off'\n",
        prepared.policy,
        prepared.record.metadata.id,
        prepared.target.describe(),
        quote(&prepared.restore_command)
    );
    for (key, value) in prepared.target.settings() {
        settings.push_str(&format!("{key} = '{}'\n", quote(&value)));
    }
    let auto = prepared.to.join("postgresql.auto.conf");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&auto)
        .map_err(|error| format!("cannot write {}: {error}", auto.display()))?;
    file.write_all(settings.as_bytes())
        .map_err(|error| error.to_string())?;
    std::fs::write(prepared.to.join("recovery.signal"), b"").map_err(|error| error.to_string())?;
    // The manifest and label of the backup stay; the server reads the label.
    if let Some((uid, gid)) = owner {
        chown_tree(&prepared.to, uid, gid).map_err(|error| {
            format!(
                "cannot hand {} to the server's user: {error}",
                prepared.to.display()
            )
        })?;
    }
    Ok(())
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// A command run as the server's user.
fn as_owner(program: &Path, owner: Option<(u32, u32)>) -> Command {
    match owner {
        Some((uid, _)) => {
            let mut command = Command::new("setpriv");
            command
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={}", owner.map_or(0, |(_, gid)| gid)))
                .arg("--init-groups")
                .arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// Starts the restored server on a free port, waits until recovery reached
/// the target and promoted, checks it answers, stops it. What the log says
/// about where recovery stopped.
fn replay(prepared: &Prepared, owner: Option<(u32, u32)>) -> Result<String, String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| format!("no free port: {error}"))?;
    // In /tmp itself: a socket path must stay under 108 bytes, and the
    // server's user must reach it (a private TMPDIR may be closed to it).
    let socket = tempfile::Builder::new()
        .prefix("backup-pitr-")
        .tempdir_in("/tmp")
        .map_err(|error| error.to_string())?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(socket.path(), Some(uid), Some(gid))
            .map_err(|error| error.to_string())?;
    }
    let log = prepared.to.join("backup-restore.log");
    let options = format!(
        "-p {port} -k {} -c listen_addresses='' -c archive_mode=off",
        socket.path().display()
    );
    let pg_ctl = prepared.bin_dir.join("pg_ctl");
    let started = as_owner(&pg_ctl, owner)
        .arg("-D")
        .arg(&prepared.to)
        .args(["-o", &options, "-l"])
        .arg(&log)
        .args([
            "-w",
            "-t",
            &prepared.timeout.as_secs().max(1).to_string(),
            "start",
        ])
        .output()
        .map_err(|error| format!("cannot run {}: {error}", pg_ctl.display()))?;
    let log_tail = || {
        std::fs::read_to_string(&log)
            .map(|text| crate::database::last_lines(&text, 6))
            .unwrap_or_default()
    };
    if !started.status.success() {
        return Err(format!("the restored server did not start: {}", log_tail()));
    }
    let stop = || {
        let _ = as_owner(&pg_ctl, owner)
            .arg("-D")
            .arg(&prepared.to)
            .args(["-m", "fast", "-w", "stop"])
            .output();
    };
    let deadline = Instant::now() + prepared.timeout;
    let psql = prepared.bin_dir.join("psql");
    let query = |sql: &str| -> Result<String, String> {
        let output = as_owner(&psql, owner)
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(socket.path())
            .args(["-p", &port.to_string(), "-U"])
            .arg(cluster_user(owner))
            .args(["-d", "postgres", "-c", sql])
            .env_remove("PGPASSWORD")
            .output()
            .map_err(|error| error.to_string())?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
        }
    };
    loop {
        match query("SELECT pg_is_in_recovery()") {
            Ok(answer) if answer == "f" => break,
            Ok(_) => {}
            Err(error) if !prepared.to.join("postmaster.pid").exists() => {
                return Err(format!(
                    "the restored server stopped during recovery ({error}): {}",
                    log_tail()
                ));
            }
            Err(_) => {}
        }
        if Instant::now() > deadline {
            stop();
            return Err(format!(
                "recovery did not reach the target within {} s: {}",
                prepared.timeout.as_secs(),
                log_tail()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let databases = query("SELECT count(*) FROM pg_database WHERE datallowconn");
    let lsn = query("SELECT pg_current_wal_lsn()");
    stop();
    let databases =
        databases.map_err(|error| format!("the restored server does not answer: {error}"))?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let said = |needle: &str| {
        text.lines().find(|line| line.contains(needle)).map(|line| {
            line.split_once("LOG:")
                .map_or(line, |(_, rest)| rest)
                .trim()
                .to_owned()
        })
    };
    let stopped = said("recovery stopping")
        .or_else(|| said("consistent recovery state reached"))
        .unwrap_or_else(|| "recovery ended".to_owned());
    Ok(format!(
        "{stopped}; promoted at {}; {databases} database(s) answer; stopped again",
        lsn.unwrap_or_default()
    ))
}

/// The role psql connects as on the restored server's socket: the name of
/// the server's operating-system user (what peer authentication accepts;
/// `postgres` on a packaged server).
fn cluster_user(owner: Option<(u32, u32)>) -> String {
    let by_id = owner.and_then(|(uid, _)| {
        let output = Command::new("id")
            .args(["-nu", &uid.to_string()])
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    });
    by_id
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "postgres".to_owned())
}

/// Each missing range as [`wal::Range::describe`] says it, in a list.
pub fn describe_missing(missing: &[wal::Range]) -> String {
    missing
        .iter()
        .map(wal::Range::describe)
        .collect::<Vec<_>>()
        .join(", ")
}
