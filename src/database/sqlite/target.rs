//! Restoring an SQLite database file.
//!
//! The backup is decompressed to a temporary file next to the target (same
//! file system, so the final rename is atomic), fsynced and checked there
//! (`PRAGMA integrity_check`, `PRAGMA foreign_key_check`, row counts against
//! the sidecar). Only then is the target touched: its WAL is checkpointed,
//! stale `-wal`, `-shm` and `-journal` files are removed so they can never be
//! applied to the new file, and the temporary file is renamed over it. The
//! new file keeps the old one's journal mode, permissions and owner.
//! Connections left open keep seeing the old file until they reopen; stop
//! writers before restoring.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufWriter, Write as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::dump::count_rows;
use crate::database::{Checked, Error, Failed, Target, TargetInfo, TargetPlan};
use crate::destination::Destination;
use crate::inventory::{BackupMetadata, BackupRecord};
use crate::policy::spec::{SourceSpec, SqliteSpec};
use crate::verify;

/// The files beside a database that belong to it.
const COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// An SQLite database file to restore into.
pub struct SqliteTarget {
    path: PathBuf,
}

fn fail(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Target(format!("SQLite database `{}`: {reason}", path.display()))
}

fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

impl SqliteTarget {
    /// The file at `path`; through a symlink, the file it points to (the
    /// link stays a link).
    pub fn new(path: PathBuf) -> SqliteTarget {
        let path = fs::canonicalize(&path)
            .or_else(|_| std::path::absolute(&path))
            .unwrap_or(path);
        SqliteTarget { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn folder(&self) -> PathBuf {
        self.path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_owned)
    }

    /// Checkpoints the target's WAL into it; whether every frame got there.
    fn checkpoint(&self) -> Result<bool, Error> {
        let connection = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|error| fail(&self.path, error))?;
        connection
            .busy_timeout(Duration::from_secs(30))
            .map_err(|error| fail(&self.path, error))?;
        if journal_mode(&connection, &self.path)? == "wal" {
            let busy: i64 = connection
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
                .map_err(|error| fail(&self.path, format!("cannot checkpoint its WAL: {error}")))?;
            if busy != 0 {
                tracing::warn!(path = %self.path.display(), "Readers kept the WAL busy; its stale frames are removed with it.");
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn remove_companions(&self) -> Result<(), Error> {
        for suffix in COMPANIONS {
            let path = companion(&self.path, suffix);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(fail(
                        &self.path,
                        format!("cannot remove {}: {error}", path.display()),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Target for SqliteTarget {
    fn describe(&self) -> String {
        format!("SQLite file {}", self.path.display())
    }

    fn inspect(&mut self, _contents: Option<&str>) -> Result<TargetInfo, Error> {
        let folder = self.folder();
        if !folder.is_dir() {
            return Err(fail(&self.path, "its folder does not exist"));
        }
        let space =
            crate::state::available_space(&folder).map(|available| (folder.clone(), available));
        let mut info = TargetInfo {
            exists: self.path.exists(),
            version: Some(rusqlite::version().to_owned()),
            space,
            ..TargetInfo::default()
        };
        if !info.exists {
            info.replaces = "nothing: the file is new".to_owned();
            return Ok(info);
        }
        if !self.path.is_file() {
            return Err(fail(&self.path, "not a file"));
        }
        let size: u64 = std::iter::once(self.path.clone())
            .chain(
                COMPANIONS
                    .iter()
                    .map(|suffix| companion(&self.path, suffix)),
            )
            .filter_map(|path| fs::metadata(path).ok())
            .map(|metadata| metadata.len())
            .sum();
        info.size = Some(size);
        let connection = open_read_only(&self.path)?;
        let tables: BTreeSet<String> = connection
            .prepare(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .and_then(|mut statement| {
                statement
                    .query_map([], |row| row.get::<_, String>(0))?
                    .collect()
            })
            .map_err(|error| fail(&self.path, error))?;
        info.tables = Some(tables);
        info.replaces = "the whole file, and its -wal, -shm and -journal files".to_owned();
        Ok(info)
    }

    fn source_spec(&self) -> SourceSpec {
        SourceSpec::Sqlite(SqliteSpec {
            path: self.path.clone(),
        })
    }

    /// Decompresses, checks, and swaps the file in. The target is touched
    /// only by the final rename.
    fn restore(
        &self,
        destination: &dyn Destination,
        record: &BackupRecord,
        _rollback: bool,
    ) -> Result<String, Failed> {
        let untouched = |error: Error| Failed::untouched(error);
        let folder = self.folder();
        let name = self
            .path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let prefix = format!(".{name}.restore-");
        crate::state::remove_abandoned(&folder, &prefix);
        let mut temporary = tempfile::Builder::new()
            .prefix(&format!("{prefix}{}-", std::process::id()))
            .tempfile_in(&folder)
            .map_err(|error| {
                untouched(fail(
                    &self.path,
                    format!("cannot create a temporary file next to it: {error}"),
                ))
            })?;
        {
            let mut writer = BufWriter::with_capacity(1 << 20, temporary.as_file_mut());
            verify::verify_into(destination, record, &mut writer).map_err(|problem| {
                untouched(crate::database::streaming_error(
                    record,
                    problem,
                    |reason| {
                        fail(
                            &self.path,
                            format!("cannot write the temporary file: {reason}"),
                        )
                    },
                ))
            })?;
            writer
                .flush()
                .map_err(|error| untouched(fail(&self.path, error)))?;
        }
        temporary
            .as_file()
            .sync_all()
            .map_err(|error| untouched(fail(&self.path, format!("cannot sync: {error}"))))?;
        let checked = check_file(temporary.path(), &record.metadata, true).map_err(untouched)?;

        // Keep the old file's journal mode, permissions and owner.
        let old = fs::metadata(&self.path).ok();
        let wal = old.is_some()
            && open_read_only(&self.path)
                .and_then(|connection| journal_mode(&connection, &self.path))
                .is_ok_and(|mode| mode == "wal");
        if wal {
            let connection = Connection::open(temporary.path())
                .map_err(|error| untouched(fail(&self.path, error)))?;
            connection
                .pragma_update(None, "journal_mode", "WAL")
                .map_err(|error| untouched(fail(&self.path, error)))?;
        }
        let file = temporary.as_file();
        match &old {
            Some(old) => {
                file.set_permissions(fs::Permissions::from_mode(old.mode() & 0o7777))
                    .map_err(|error| untouched(fail(&self.path, error)))?;
                let new = file
                    .metadata()
                    .map_err(|error| untouched(fail(&self.path, error)))?;
                if (old.uid(), old.gid()) != (new.uid(), new.gid()) {
                    std::os::unix::fs::fchown(file, Some(old.uid()), Some(old.gid())).map_err(
                        |error| {
                            untouched(fail(
                                &self.path,
                                format!("cannot give the new file the old one's owner: {error}"),
                            ))
                        },
                    )?;
                }
            }
            None => file
                .set_permissions(fs::Permissions::from_mode(0o600))
                .map_err(|error| untouched(fail(&self.path, error)))?,
        }
        // Whether the old file still holds every committed frame once its
        // companions are gone: not when readers kept the checkpoint from
        // finishing. Then a failure from here on has changed the target, and
        // the safety backup (which holds those frames) must be restored.
        let mut complete = true;
        if old.is_some() {
            // Move whatever the WAL holds into the old file (it is in the
            // safety backup already), so no committed frame is left behind.
            complete = self.checkpoint().map_err(untouched)?;
        }
        let failed = |error: Error| Failed {
            error,
            touched: !complete,
        };
        // Stale companions must never be applied to the new file.
        self.remove_companions().map_err(failed)?;
        temporary.persist(&self.path).map_err(|error| {
            failed(fail(
                &self.path,
                format!("cannot rename the restored file over it: {}", error.error),
            ))
        })?;
        // Someone may have opened the old file between the removal and the rename.
        let after = self.remove_companions();
        let synced = fs::File::open(&folder).and_then(|folder| folder.sync_all());
        if let Err(error) = after {
            return Err(Failed {
                error,
                touched: true,
            });
        }
        synced.map_err(|error| Failed {
            error: fail(&self.path, format!("cannot sync its folder: {error}")),
            touched: true,
        })?;
        Ok(format!(
            "{} written, checked ({}), renamed into place{}",
            crate::format::human_bytes(record.metadata.artifact.uncompressed_size),
            checked.detail,
            if wal { "; WAL mode kept" } else { "" }
        ))
    }

    fn check(&self, metadata: &BackupMetadata, _rollback: bool) -> Result<Checked, Error> {
        check_file(&self.path, metadata, false)
    }

    fn count_rows(&self, metadata: &BackupMetadata) -> BTreeMap<String, u64> {
        open_read_only(&self.path)
            .ok()
            .and_then(|connection| count_rows(&connection).ok())
            .unwrap_or_default()
            .into_iter()
            .filter(|(table, _)| metadata.source.row_counts.contains_key(table))
            .collect()
    }

    fn remove(&self) -> Result<(), Error> {
        match fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(fail(&self.path, format!("cannot remove it: {error}"))),
        }
        self.remove_companions()
    }

    fn plan(&self, metadata: &BackupMetadata, info: &TargetInfo) -> TargetPlan {
        let tables = metadata.source.row_counts.len();
        let backup: BTreeSet<String> = metadata.source.row_counts.keys().cloned().collect();
        let (mut warnings, created) = crate::database::table_differences(
            info,
            &backup,
            "the restore removes them with the old file",
        );
        warnings.extend(crate::database::created_tables(&created));
        TargetPlan {
            compatibility: "compatible (SQLite 3 files)".to_owned(),
            checks_after: format!(
                "integrity_check, foreign_key_check and row counts of {tables} table{}, before the rename",
                if tables == 1 { "" } else { "s" }
            ),
            warnings,
            ..TargetPlan::default()
        }
    }
}

fn open_read_only(path: &Path) -> Result<Connection, Error> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|error| fail(path, error))?;
    connection
        .busy_timeout(Duration::from_secs(30))
        .map_err(|error| fail(path, error))?;
    Ok(connection)
}

fn journal_mode(connection: &Connection, path: &Path) -> Result<String, Error> {
    connection
        .query_row("PRAGMA journal_mode", [], |row| row.get::<_, String>(0))
        .map(|mode| mode.to_lowercase())
        .map_err(|error| fail(path, error))
}

/// `PRAGMA integrity_check` (`quick_check` unless `full`),
/// `PRAGMA foreign_key_check`, and row counts against the sidecar.
pub fn check_file(path: &Path, metadata: &BackupMetadata, full: bool) -> Result<Checked, Error> {
    let connection = open_read_only(path)?;
    let pragma = if full {
        "integrity_check"
    } else {
        "quick_check"
    };
    let integrity: Vec<String> = connection
        .prepare(&format!("PRAGMA {pragma}"))
        .and_then(|mut statement| {
            statement
                .query_map([], |row| row.get::<_, String>(0))?
                .collect()
        })
        .map_err(|error| Error::Check(format!("{pragma} failed: {error}")))?;
    if integrity != ["ok"] {
        return Err(Error::Check(format!(
            "{pragma}: {}",
            integrity.into_iter().take(5).collect::<Vec<_>>().join("; ")
        )));
    }
    let violations: Vec<String> = connection
        .prepare("PRAGMA foreign_key_check")
        .and_then(|mut statement| {
            statement
                .query_map([], |row| {
                    Ok(format!(
                        "{} row {} -> {}",
                        row.get::<_, String>(0)?,
                        row.get::<_, Option<i64>>(1)?
                            .map_or_else(|| "?".to_owned(), |id| id.to_string()),
                        row.get::<_, String>(2)?
                    ))
                })?
                .collect()
        })
        .map_err(|error| Error::Check(format!("foreign_key_check failed: {error}")))?;
    let counts = count_rows(&connection).map_err(|error| Error::Check(error.to_string()))?;
    crate::database::compare_counts(&metadata.source.row_counts, &counts)?;
    let mut warnings = Vec::new();
    if !violations.is_empty() {
        warnings.push(format!(
            "foreign_key_check found {} violation{} (as the backed-up database held them): {}",
            violations.len(),
            if violations.len() == 1 { "" } else { "s" },
            violations
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    let tables = metadata.source.row_counts.len();
    Ok(Checked {
        detail: format!(
            "{pragma} ok, foreign_key_check {}, row counts of {tables} table{} match",
            if violations.is_empty() {
                "ok"
            } else {
                "found violations"
            },
            if tables == 1 { "" } else { "s" }
        ),
        row_counts: counts
            .into_iter()
            .filter(|(table, _)| metadata.source.row_counts.contains_key(table))
            .collect(),
        warnings,
    })
}
