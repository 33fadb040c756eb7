//! SQLite, copied with the online backup API.
//!
//! The copy is consistent even while other connections write (WAL or
//! rollback journal), checked with `PRAGMA integrity_check`, switched to a
//! self-contained rollback journal, then streamed to the sink. The copy lives
//! in a private scratch folder (0700, its files 0600, in `<state>/tmp`; see
//! [`crate::state::scratch_folder`]), removed afterwards; folders left by a
//! killed run are removed by the next one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::database::{Dump, DumpError as Error, Report};

/// How long a copy waits for writers holding locks before it gives up.
const BUSY_RETRIES: u32 = 300;
const BUSY_PAUSE: Duration = Duration::from_millis(100);

/// A consistent copy of one SQLite file.
pub struct SqliteDump {
    path: PathBuf,
}

impl SqliteDump {
    pub fn new(path: PathBuf) -> Self {
        SqliteDump { path }
    }

    fn fail(&self, reason: impl std::fmt::Display) -> Error {
        Error::Failed(format!(
            "SQLite database `{}`: {reason}",
            self.path.display()
        ))
    }
}

impl Dump for SqliteDump {
    fn dump(&mut self, sink: &mut dyn Write) -> Result<Report, Error> {
        if !self.path.is_file() {
            return Err(self.fail("no such file"));
        }
        // Read-only, and never create: a typo in the path must not make an empty database.
        let source = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|error| self.fail(error))?;
        source
            .busy_timeout(Duration::from_secs(10))
            .map_err(|error| self.fail(error))?;
        let scratch = crate::state::scratch_folder(SCRATCH_PREFIX)
            .map_err(|error| self.fail(format!("cannot make the copy: {error}")))?;
        let copy_path = scratch.path().join("copy.db");
        // 0600 before SQLite opens it: its journal gets the same mode.
        crate::state::create_private_file(&copy_path)
            .map_err(|error| self.fail(format!("cannot make the copy: {error}")))?;
        let mut copy = Connection::open(&copy_path).map_err(|error| self.fail(error))?;
        {
            let backup = Backup::new(&source, &mut copy).map_err(|error| self.fail(error))?;
            let mut waits = 0;
            loop {
                // All pages in one step: a writer between steps would restart the copy forever.
                match backup.step(-1).map_err(|error| self.fail(error))? {
                    StepResult::Done => break,
                    StepResult::More => {}
                    StepResult::Busy | StepResult::Locked => {
                        waits += 1;
                        if waits > BUSY_RETRIES {
                            return Err(
                                self.fail("the database stayed locked by writers; giving up")
                            );
                        }
                        std::thread::sleep(BUSY_PAUSE);
                    }
                    _ => {}
                }
            }
        }
        let integrity: Vec<String> = copy
            .prepare("PRAGMA integrity_check")
            .and_then(|mut statement| {
                statement
                    .query_map([], |row| row.get::<_, String>(0))?
                    .collect()
            })
            .map_err(|error| self.fail(error))?;
        if integrity != ["ok"] {
            return Err(Error::Failed(format!(
                "SQLite copy failed its integrity check: {}",
                integrity.join("; ")
            )));
        }
        copy.pragma_update(None, "journal_mode", "DELETE")
            .map_err(|error| self.fail(error))?;
        let row_counts = count_rows(&copy).map_err(|error| self.fail(error))?;
        drop(copy);
        let mut file = std::fs::File::open(&copy_path).map_err(|error| self.fail(error))?;
        std::io::copy(&mut file, sink).map_err(Error::Sink)?;
        Ok(Report {
            server_version: Some(rusqlite::version().to_owned()),
            database: None,
            row_counts,
            physical: None,
        })
    }
}

/// Scratch folders are named `backup-sqlite-<pid>-…` after the process that made them.
const SCRATCH_PREFIX: &str = "backup-sqlite-";

/// Rows in every table, as SQLite sees them.
pub fn count_rows(connection: &Connection) -> rusqlite::Result<BTreeMap<String, u64>> {
    let tables: Vec<String> = connection
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut counts = BTreeMap::new();
    for table in tables {
        let quoted = format!("\"{}\"", table.replace('"', "\"\""));
        let count: i64 =
            connection.query_row(&format!("SELECT count(*) FROM {quoted}"), [], |row| {
                row.get(0)
            })?;
        counts.insert(table, u64::try_from(count).unwrap_or(0));
    }
    Ok(counts)
}
