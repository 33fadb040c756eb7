//! PostgreSQL: logical backups with `pg_dump --format=custom` in one exported
//! snapshot ([`dump`]), restores with `pg_restore` into one transaction
//! ([`target`]), keeping what the backup does not hold ([`toc`]), with a
//! bounded wait for locks ([`locks`]), and drills into marked scratch
//! databases on the policy's own server.

pub mod dump;
pub mod locks;
pub mod physical;
mod plan;
pub mod tar;
pub mod target;
pub mod tls;
pub mod toc;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Database, Dump, DumpError, Error, RestoreOptions, Scratch, Target};
use crate::destination::Destination;
use crate::inventory::BackupRecord;
use crate::policy::spec::PostgresSpec;
use crate::verify::{self, Problem};
use dump::{Server, drain, joined};
use target::PostgresTarget;

/// The PostgreSQL database a policy backs up.
pub struct Postgres {
    spec: PostgresSpec,
}

impl Postgres {
    pub fn new(spec: PostgresSpec) -> Postgres {
        Postgres { spec }
    }

    /// The `pg_restore` the policy uses: from `bin-dir`, else the newest
    /// installed, else `PATH`.
    fn pg_restore(&self) -> PathBuf {
        dump::program_path(self.spec.bin_dir.as_deref(), "pg_restore")
    }
}

impl Database for Postgres {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn format(&self) -> &'static str {
        "pgdump"
    }

    fn dump(&self) -> Result<Box<dyn Dump>, DumpError> {
        Ok(Box::new(Server::open(&self.spec)?))
    }

    fn check_restorable(
        &self,
        destination: &dyn Destination,
        record: &BackupRecord,
    ) -> Result<Option<String>, Problem> {
        list_contents(&self.pg_restore(), |sink| {
            verify::verify_into(destination, record, sink)
        })
        .map(Some)
    }

    /// The table of contents from the head of the data only: a
    /// custom-format dump starts with it, and `pg_restore` stops reading
    /// there. Checks nothing else (the stored bytes are checked against the
    /// sidecar, and the restore's own stream checks the rest).
    fn read_contents(
        &self,
        destination: &dyn Destination,
        record: &BackupRecord,
    ) -> Result<Option<String>, Problem> {
        let mut decoded = verify::open_decoded(destination, record)?;
        list_contents(&self.pg_restore(), |sink| {
            let mut buffer = vec![0_u8; 256 * 1024];
            while !sink.closed() {
                match decoded.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(count) => std::io::Write::write_all(sink, &buffer[..count])
                        .map_err(|error| Problem::Write(error.to_string()))?,
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(Problem::Read(error.to_string())),
                }
            }
            Ok(())
        })
        .map(Some)
    }

    fn restorable_check(&self) -> &'static str {
        "pg_restore --list"
    }

    fn target(&self, to: Option<&str>, options: &RestoreOptions) -> Result<Box<dyn Target>, Error> {
        let mut target = PostgresTarget::resolve(&self.spec, to)?;
        if let Some(timeout) = options.lock_timeout {
            target.set_lock_timeout(timeout);
        }
        target.set_jobs(options.jobs);
        Ok(Box::new(target))
    }

    fn scratch(&self, policy: &str, _id: &str) -> Result<Scratch, Error> {
        let own = PostgresTarget::resolve(&self.spec, None)?;
        let prefix = scratch_database_prefix(policy, own.database());
        let marker = scratch_marker(policy);
        let abandoned = own.drop_abandoned(&prefix, &marker);
        let target = own.sibling(&format!("{prefix}{}", crate::state::random_suffix()));
        super::marked_scratch(
            policy,
            abandoned,
            target,
            PostgresTarget::create,
            |target| target.mark(&marker),
        )
    }
}

/// The names of a policy's scratch databases start with this:
/// `<database>_restore_test_<policy hash>_`. Drills of other policies on the
/// same database (other locks) never take them for abandoned ones; the name
/// stays within PostgreSQL's 63 characters with the 8-character suffix.
pub fn scratch_database_prefix(policy: &str, database: &str) -> String {
    use sha2::{Digest as _, Sha256};
    let base: String = database.chars().take(32).collect();
    let hash = crate::inventory::metadata::hex(&Sha256::digest(policy.as_bytes()));
    format!("{base}_restore_test_{}_", &hash[..6])
}

/// The comment that marks a scratch database of `policy`'s drills: only
/// databases named `<prefix>…` that carry it are dropped as abandoned, never
/// a database of someone else's that happens to match the name.
pub fn scratch_marker(policy: &str) -> String {
    use sha2::{Digest as _, Sha256};
    let hash = crate::inventory::metadata::hex(&Sha256::digest(policy.as_bytes()));
    format!(
        "backup: restore-test scratch database of policy {policy} ({}); dropped by its drill",
        &hash[..12]
    )
}

/// Runs `pg_restore --list --verbose`, has `feed` write the decoded dump
/// into it, and returns what it printed.
fn list_contents(
    pg_restore: &Path,
    feed: impl FnOnce(&mut Tolerant<std::process::ChildStdin>) -> Result<(), Problem>,
) -> Result<String, Problem> {
    let mut list = Command::new(pg_restore)
        .args(["--list", "--verbose"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| {
            Problem::Write(format!("cannot run `{}`: {error}", pg_restore.display()))
        })?;
    let stdout = drain(list.stdout.take());
    let stderr = drain(list.stderr.take());
    let mut sink = Tolerant(list.stdin.take());
    let streamed = feed(&mut sink);
    drop(sink);
    let status = list.wait();
    let stdout = joined(stdout);
    let stderr = joined(stderr);
    streamed?;
    let status = status.map_err(|error| Problem::Write(error.to_string()))?;
    if !status.success() {
        return Err(Problem::Unrestorable(format!(
            "pg_restore --list cannot read it ({status}): {}",
            stderr.trim()
        )));
    }
    Ok(stdout)
}

/// A child's stdin that may close early (`pg_restore --list` stops reading
/// once it has the table of contents); its exit status tells whether it
/// could read the data.
struct Tolerant<W>(Option<W>);

impl<W> Tolerant<W> {
    /// Whether the child stopped reading.
    fn closed(&self) -> bool {
        self.0.is_none()
    }
}

impl<W: std::io::Write> std::io::Write for Tolerant<W> {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        if let Some(inner) = self.0.as_mut()
            && inner.write_all(buffer).is_err()
        {
            self.0 = None;
        }
        Ok(buffer.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
