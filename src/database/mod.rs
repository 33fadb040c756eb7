//! The kinds of database a policy backs up: one module each, behind one trait
//! that covers both directions.
//!
//! A [`Database`] is chosen once from the policy's source ([`open`], the one
//! place that matches on the kind) and owns everything kind-specific: the
//! consistent dump into a sink ([`Dump`]), what a sidecar records about it
//! (versions, row counts), the check that a stored stream is restorable by
//! the kind's own tool, the restore [`Target`] (inspect, restore, check,
//! count rows, remove, undo additions, what the restore plan says), the
//! scratch target of a drill ([`Scratch`]) and, through the target's source,
//! the pre-restore safety backup. `engine`, `verify`, `restore` and drills
//! call the trait and never match on a kind; a kind that lacks a piece does
//! not compile. This module decides nothing about when to back up or restore.

pub mod mysql;
pub mod postgres;
pub mod sqlite;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

use crate::destination::Destination;
use crate::inventory::{BackupMetadata, BackupRecord};
use crate::policy::secret;
use crate::policy::spec::SourceSpec;
use crate::verify::Problem;

/// The database a policy's source describes. Resolves nothing yet: secrets
/// are read when a dump or a target needs them.
pub fn open(spec: &SourceSpec) -> Box<dyn Database> {
    match spec {
        SourceSpec::Postgres(spec) => Box::new(postgres::Postgres::new(spec.clone())),
        SourceSpec::Sqlite(spec) => Box::new(sqlite::Sqlite::new(spec.clone())),
        SourceSpec::Mysql(spec) => Box::new(mysql::Mysql::new(spec.clone())),
    }
}

/// The database whose backups `policy` takes: its source's kind, or, for
/// the policy's physical view, PostgreSQL base backups.
pub fn for_policy(policy: &crate::policy::Policy) -> Box<dyn Database> {
    match (&policy.source, policy.view) {
        (SourceSpec::Postgres(spec), crate::policy::View::Physical) => {
            Box::new(postgres::physical::BaseBackups::new(spec.clone()))
        }
        (source, _) => open(source),
    }
}

/// The database that reads backups in `format` of a policy with `spec`.
pub fn for_format(spec: &SourceSpec, format: &str) -> Box<dyn Database> {
    match spec {
        SourceSpec::Postgres(spec) if format == postgres::physical::FORMAT => {
            Box::new(postgres::physical::BaseBackups::new(spec.clone()))
        }
        source => open(source),
    }
}

/// A check of a backup's decoded stream as it flows past, for formats that
/// carry their own checksums (a base backup's `backup_manifest`).
pub trait StreamCheck: Write + Send {
    /// Whether the stream was whole and as it says.
    fn verdict(self: Box<Self>) -> Result<(), String>;
}

/// The check `verify` runs over the decoded data of a backup in `format`, if any.
pub fn stream_check(format: &str) -> Option<Box<dyn StreamCheck>> {
    (format == postgres::physical::FORMAT).then(postgres::physical::manifest_check)
}

/// One kind of database, for one policy's source.
pub trait Database: Send + Sync {
    /// The kind sidecars record as `source.kind`: `postgres`, `sqlite`, `mysql`.
    fn kind(&self) -> &'static str;
    /// The format of its backups, as sidecars record it and file names carry
    /// it (`<id>.<format>.<compression>`): `pgdump`, `sqlite`, `mysql`,
    /// `pg-basebackup`.
    fn format(&self) -> &'static str;
    /// The part a backup of several objects starts with (`base`, named
    /// `<id>.base.tar.<compression>`), or `None` for a backup of one object.
    fn part(&self) -> Option<&'static str> {
        None
    }
    /// A consistent dump of the database, its secrets resolved.
    fn dump(&self) -> Result<Box<dyn Dump>, DumpError>;
    /// Streams `record` from `destination`, decoded and checked against its
    /// sidecar (see [`crate::verify::verify_into`]), into the kind's own tool
    /// to prove it restorable. Returns the backup's table of contents where
    /// the kind has one (PostgreSQL: `pg_restore --list --verbose`), which
    /// the target reads to say what a restore replaces and keeps.
    fn check_restorable(
        &self,
        destination: &dyn Destination,
        record: &BackupRecord,
    ) -> Result<Option<String>, Problem>;
    /// The table of contents alone, read from the head of the data (a
    /// restore that checks the stored bytes instead of decoding them twice).
    fn read_contents(
        &self,
        _destination: &dyn Destination,
        _record: &BackupRecord,
    ) -> Result<Option<String>, Problem> {
        Ok(None)
    }
    /// The names of `check_restorable`'s checks, for people (`pg_restore --list`).
    fn restorable_check(&self) -> &'static str;
    /// Where a restore writes: the policy's own database, or `to` (a path,
    /// a database name or a connection URL, as the kind reads it).
    fn target(&self, to: Option<&str>, options: &RestoreOptions) -> Result<Box<dyn Target>, Error>;
    /// A fresh scratch target for a drill of `policy`'s backup `id`, never
    /// the policy's own database; those left by killed drills of the policy
    /// are removed first.
    fn scratch(&self, policy: &str, id: &str) -> Result<Scratch, Error>;
    /// What `validate` finds wrong with the policy's source, beyond its
    /// shape (which the schema checks): conflicting fields, refused options.
    /// Reads no secret and connects nothing.
    fn check_spec(&self) -> Vec<SpecProblem> {
        Vec::new()
    }
}

/// A problem `validate` reports in a policy's source, found by its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecProblem {
    /// An error (the policy is refused) or a warning.
    pub error: bool,
    /// The diagnostic's code: `conflicting-fields`, `refused-option`, …
    pub code: &'static str,
    /// Where, below the kind's own key: `url`, `mysqldump-options/2`.
    pub field: String,
    /// Point at the field's key rather than its value (a missing field's
    /// parent: `field` is then the kind's own key, empty).
    pub at_key: bool,
    pub message: String,
    pub hint: String,
}

/// A consistent copy of one database, written uncompressed into a sink.
pub trait Dump {
    /// Writes the copy into `sink` and reports what a restore must find again.
    fn dump(&mut self, sink: &mut dyn Write) -> Result<Report, DumpError>;
}

/// What a dump found out about its database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub server_version: Option<String>,
    pub database: Option<String>,
    /// Rows per table, counted in the snapshot that was dumped.
    pub row_counts: BTreeMap<String, u64>,
    /// A physical backup's place in the WAL.
    pub physical: Option<crate::inventory::metadata::PhysicalInfo>,
}

/// Why a database could not be dumped.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("{0}")]
    Secret(#[from] secret::Error),
    #[error("cannot connect to {database}: {reason}")]
    Connect {
        database: &'static str,
        reason: String,
    },
    #[error("{database} query failed: {reason}")]
    Query {
        database: &'static str,
        reason: String,
    },
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {stderr}")]
    Tool {
        program: &'static str,
        status: String,
        stderr: String,
    },
    #[error("the dump is not readable by {tool} ({status}): {stderr}")]
    Unreadable {
        tool: &'static str,
        status: String,
        stderr: String,
    },
    #[error("the dump is empty")]
    Empty,
    /// Anything else, said whole by the kind (`SQLite database `…`: …`).
    #[error("{0}")]
    Failed(String),
    #[error("writing the backup failed: {0}")]
    Sink(#[source] std::io::Error),
}

/// What a restore asks of its target beyond where it is.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Restore with this many parallel jobs from a local decompressed copy
    /// (PostgreSQL's `pg_restore -j`); kinds without parallel restore refuse it.
    pub jobs: Option<u32>,
    /// How long to wait for a lock another session holds (zero: no limit);
    /// `None`: the kind's default.
    pub lock_timeout: Option<Duration>,
}

/// Where a restore writes, and what it would replace.
pub trait Target: Send {
    /// The target for people: `SQLite file /srv/app.db`, `PostgreSQL database app on db1:5432`.
    fn describe(&self) -> String;
    /// What the target looks like before the restore. `contents` is the
    /// backup's table of contents ([`Database::check_restorable`]), from
    /// which the target works out what the restore replaces, creates and
    /// keeps; a restore that could not finish (an object outside the backup
    /// depends on what it drops) is refused here, before anything is touched.
    fn inspect(&mut self, contents: Option<&str>) -> Result<TargetInfo, Error>;
    /// The source a backup of this target reads: what the safety backup takes.
    fn source_spec(&self) -> SourceSpec;
    /// Restores `record` from `destination` into the target: the backup the
    /// user chose, or with `rollback` the safety backup, whole.
    fn restore(
        &self,
        destination: &dyn Destination,
        record: &BackupRecord,
        rollback: bool,
    ) -> Result<String, Failed>;
    /// Checks the target against `metadata` (and, unless `rollback`, that
    /// what the restore keeps is still there).
    fn check(&self, metadata: &BackupMetadata, rollback: bool) -> Result<Checked, Error>;
    /// Rows of every table the sidecar counts, as found (for evidence).
    fn count_rows(&self, metadata: &BackupMetadata) -> BTreeMap<String, u64>;
    /// Undoes a restore into a target that did not exist before.
    fn remove(&self) -> Result<(), Error>;
    /// Before a rollback: removes what a failed restore added that the
    /// safety backup, taken when the target held `before`, does not hold.
    fn remove_added(&self, _before: Option<&BTreeSet<String>>) -> Result<(), Error> {
        Ok(())
    }
    /// What the restore plan says of this target for `metadata`, beyond
    /// what every target shares.
    fn plan(&self, metadata: &BackupMetadata, info: &TargetInfo) -> TargetPlan;
}

/// The kind-specific part of a restore plan.
#[derive(Debug, Clone, Default)]
pub struct TargetPlan {
    /// Appended to the plan's `source` line (e.g. `, and 1 without its rows: public.b`).
    pub source: String,
    /// Lines after `replaces` (`drops`, `keeps`), as (label, text).
    pub contents: Vec<(&'static str, String)>,
    /// Whether the backup's version can be restored into the target's.
    pub compatibility: String,
    /// What is checked after the restore.
    pub checks_after: String,
    /// Lines after `safety backup` (`locks`), as (label, text).
    pub more: Vec<(&'static str, String)>,
    /// Warnings: versions, tables only on one side, what the restore keeps.
    pub warnings: Vec<String>,
}

/// What a target looks like before the restore.
#[derive(Debug, Clone, Default)]
pub struct TargetInfo {
    pub exists: bool,
    /// Server version (PostgreSQL) or SQLite library version.
    pub version: Option<String>,
    pub size: Option<u64>,
    /// Tables, named as the sidecar's row counts name them.
    pub tables: Option<BTreeSet<String>>,
    /// What the restore replaces, for people.
    pub replaces: String,
    /// Local space the restore needs, where: (folder, available bytes).
    pub space: Option<(PathBuf, u64)>,
}

/// The result of checking a restored target against a sidecar.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Checked {
    /// Rows per table found in the target, for every table the sidecar counts.
    pub row_counts: BTreeMap<String, u64>,
    /// Findings that do not fail the restore (e.g. foreign key violations).
    pub warnings: Vec<String>,
    pub detail: String,
}

/// A drill's scratch target, removed when dropped if not before.
pub struct Scratch {
    target: Box<dyn Target>,
    /// What else goes when the scratch target goes (its temporary folder).
    _holds: Option<Box<dyn Send>>,
    removed: bool,
}

impl Scratch {
    pub fn new(target: Box<dyn Target>, holds: Option<Box<dyn Send>>) -> Scratch {
        Scratch {
            target,
            _holds: holds,
            removed: false,
        }
    }

    pub fn target(&self) -> &dyn Target {
        self.target.as_ref()
    }

    /// Removes the scratch target now, saying whether that worked.
    pub fn remove(mut self) -> Result<(), Error> {
        let result = self.target.remove();
        self.removed = result.is_ok();
        result
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.removed {
            let _ = self.target.remove();
        }
    }
}

/// A drill's scratch database on a policy's own server, for the kinds that
/// have one: the databases a killed drill left (`abandoned`, already
/// dropped) are logged, then `target` is created and marked as the drill's;
/// if marking fails it is dropped again (only marked databases are ever
/// dropped as abandoned), and if creating fails nothing of that name is touched.
pub fn marked_scratch<T: Target + 'static>(
    policy: &str,
    abandoned: Vec<String>,
    target: T,
    create: impl FnOnce(&T) -> Result<(), Error>,
    mark: impl FnOnce(&T) -> Result<(), Error>,
) -> Result<Scratch, Error> {
    for name in abandoned {
        tracing::warn!(policy, database = %name, "Dropped a scratch database left by a killed drill.");
    }
    create(&target)?;
    if let Err(error) = mark(&target) {
        let _ = target.remove();
        return Err(error);
    }
    Ok(Scratch::new(Box::new(target), None))
}

/// Why a restore could not go ahead or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Select(String),
    #[error("backup {id} failed verification: {problems}")]
    Verification { id: String, problems: String },
    #[error("{0}")]
    Target(String),
    #[error("not enough space in {path}: {needed} bytes needed, {available} available")]
    Space {
        path: String,
        needed: u64,
        available: u64,
    },
    #[error(
        "the safety backup failed, so nothing was restored: {0}. If the target is too damaged to back up, keep a copy of it yourself and move it out of the way (SQLite: the file and its -wal; PostgreSQL: ALTER DATABASE … RENAME), then restore again: a target that does not exist needs no safety backup"
    )]
    SafetyBackup(String),
    #[error("{0}")]
    Restore(String),
    #[error("the restored data does not match the backup's metadata: {0}")]
    Check(String),
}

impl Error {
    pub fn is_verification(&self) -> bool {
        matches!(self, Error::Verification { .. })
    }
}

/// A failure while restoring, and whether the target was changed by then.
#[derive(Debug)]
pub struct Failed {
    pub error: Error,
    pub touched: bool,
}

impl Failed {
    pub fn untouched(error: Error) -> Failed {
        Failed {
            error,
            touched: false,
        }
    }
}

/// The error for a problem met while streaming a backup into a restore:
/// `write` names what could not be written; reading and damage are the
/// backup's side.
pub fn streaming_error(
    record: &BackupRecord,
    problem: Problem,
    write: impl FnOnce(String) -> Error,
) -> Error {
    match problem {
        Problem::Write(reason) => write(reason),
        Problem::Read(reason) => Error::Restore(format!("cannot read the backup: {reason}")),
        problem => Error::Verification {
            id: record.metadata.id.clone(),
            problems: problem.to_string(),
        },
    }
}

/// Tables in the target but not in the backup, and the reverse, as plan
/// warnings; `fate` says what the restore does with the first.
pub fn table_differences(
    info: &TargetInfo,
    backup: &BTreeSet<String>,
    fate: &str,
) -> (Vec<String>, Vec<String>) {
    let Some(tables) = info.tables.as_ref().filter(|_| info.exists) else {
        return (Vec::new(), Vec::new());
    };
    let only_target: Vec<String> = tables.difference(backup).cloned().collect();
    let only_backup: Vec<String> = backup.difference(tables).cloned().collect();
    let mut warnings = Vec::new();
    if !only_target.is_empty() {
        warnings.push(format!(
            "tables in the target but not in the backup ({fate}): {}",
            only_target.join(", ")
        ));
    }
    (warnings, only_backup)
}

/// Every table the sidecar counts must hold exactly that many rows.
pub fn compare_counts(
    expected: &BTreeMap<String, u64>,
    actual: &BTreeMap<String, u64>,
) -> Result<(), Error> {
    let mismatches: Vec<String> = expected
        .iter()
        .filter_map(|(table, rows)| match actual.get(table) {
            Some(found) if found == rows => None,
            Some(found) => Some(format!("{table}: {found} rows, expected {rows}")),
            None => Some(format!("{table}: missing, expected {rows} rows")),
        })
        .collect();
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(Error::Check(mismatches.join("; ")))
    }
}

/// The plan warning for tables the restore creates, if any.
pub fn created_tables(tables: &[String]) -> Option<String> {
    (!tables.is_empty()).then(|| {
        format!(
            "tables in the backup but not in the target (created): {}",
            tables.join(", ")
        )
    })
}

/// `15.4` → `15`; `9.6.24` → `9.6`.
pub fn major(version: &str) -> String {
    let parts: Vec<&str> = version.split('.').collect();
    match parts.first().and_then(|first| first.parse::<u32>().ok()) {
        Some(first) if first < 10 && parts.len() > 1 => format!("{first}.{}", parts[1]),
        _ => parts.first().copied().unwrap_or_default().to_owned(),
    }
}

/// What a restore plan says of the backup's version against the target's,
/// with `major` telling a kind's release series (`15`, `10.11`).
pub fn compatibility(
    backup: Option<&String>,
    target: Option<&String>,
    major: fn(&str) -> String,
) -> String {
    match (backup, target) {
        (Some(backup), Some(target)) if major(backup) == major(target) => {
            "compatible (same major version)".to_owned()
        }
        (Some(_), Some(_)) => "major versions differ (see the warning)".to_owned(),
        _ => "unknown".to_owned(),
    }
}

/// The plan's `drops` line for the tables a restore drops and recreates, if any.
pub fn dropped_tables(dropped: &[&str]) -> Option<(&'static str, String)> {
    (!dropped.is_empty()).then(|| {
        (
            "drops",
            format!(
                "{} table{} and recreates {} from the backup: {}",
                dropped.len(),
                if dropped.len() == 1 { "" } else { "s" },
                if dropped.len() == 1 { "it" } else { "them" },
                dropped.join(", ")
            ),
        )
    })
}

/// The last `count` non-empty lines of a tool's error output, joined
/// (`no message` if there are none).
pub fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    let start = lines.len().saturating_sub(count);
    let tail = lines[start..].join(" | ");
    if tail.is_empty() {
        "no message".to_owned()
    } else {
        tail
    }
}

/// Reads a child's output stream to the end, on a thread of its own.
pub(crate) fn drain(stream: Option<impl Read + Send + 'static>) -> Option<JoinHandle<String>> {
    stream.map(|mut stream| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stream.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    })
}

/// What streaming a backup into a restore tool gave.
pub(crate) struct Streamed {
    /// The stream's own result: damage, a failed read, or the tool that
    /// stopped reading.
    pub streamed: Result<(), Problem>,
    pub status: std::io::Result<std::process::ExitStatus>,
    pub stderr: String,
}

/// Runs `command` (a restore tool reading its standard input) and streams
/// `record`, decoded and checked ([`crate::verify::verify_into`]), into it.
/// A damaged stream is cut short, so the tool sees no end of input it could
/// commit. Err: the tool could not be started.
pub(crate) fn stream_into(
    mut command: std::process::Command,
    destination: &dyn Destination,
    record: &BackupRecord,
    tool: &str,
) -> std::io::Result<Streamed> {
    use std::process::Stdio;
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn()?;
    let stderr = drain(child.stderr.take());
    let mut stdin = child.stdin.take();
    let streamed = match stdin.as_mut() {
        Some(stdin) => crate::verify::verify_into(
            destination,
            record,
            &mut std::io::BufWriter::with_capacity(1 << 20, stdin),
        ),
        None => Err(Problem::Write(format!("no {tool} input"))),
    };
    drop(stdin);
    let status = child.wait();
    Ok(Streamed {
        streamed,
        status,
        stderr: joined(stderr),
    })
}

/// What [`drain`] read (empty if the thread failed).
/// Copies a dump tool's `output` into `sink`, showing each chunk to `seen`
/// first (a table-of-contents reader, a row counter, a tar scanner). The
/// bytes copied, or the first read or write error.
pub(crate) fn pump(
    output: &mut dyn Read,
    sink: &mut dyn Write,
    seen: &mut dyn FnMut(&[u8]),
) -> std::io::Result<u64> {
    // Chunks of 256 KiB: large enough for the compressor's jobs, small enough to stay flat.
    let mut buffer = vec![0; 256 * 1024];
    let mut total = 0;
    loop {
        let count = match output.read(&mut buffer) {
            Ok(0) => return Ok(total),
            Ok(count) => count,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        seen(&buffer[..count]);
        sink.write_all(&buffer[..count])?;
        total += count as u64;
    }
}

pub(crate) fn joined(handle: Option<JoinHandle<String>>) -> String {
    handle
        .and_then(|handle| handle.join().ok())
        .unwrap_or_default()
}
