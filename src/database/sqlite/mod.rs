//! SQLite: consistent copies with the online backup API ([`dump`]), and
//! restores that check a new file beside the old one before it is renamed
//! over it ([`target`]); drills restore into a file in a private scratch folder.

pub mod dump;
pub mod target;

use std::io::Write;

use super::{Database, Dump, DumpError, Error, RestoreOptions, Scratch, Target};
use crate::destination::Destination;
use crate::inventory::BackupRecord;
use crate::policy::spec::SqliteSpec;
use crate::verify::{self, Problem};
use target::SqliteTarget;

/// The SQLite file a policy backs up.
pub struct Sqlite {
    spec: SqliteSpec,
}

impl Sqlite {
    pub fn new(spec: SqliteSpec) -> Sqlite {
        Sqlite { spec }
    }
}

impl Database for Sqlite {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn format(&self) -> &'static str {
        "sqlite"
    }

    fn dump(&self) -> Result<Box<dyn Dump>, DumpError> {
        Ok(Box::new(dump::SqliteDump::new(self.spec.path.clone())))
    }

    fn check_restorable(
        &self,
        destination: &dyn Destination,
        record: &BackupRecord,
    ) -> Result<Option<String>, Problem> {
        let mut header = Header(Vec::with_capacity(16));
        verify::verify_into(destination, record, &mut header)?;
        if header.0 != b"SQLite format 3\0" {
            return Err(Problem::Unrestorable(
                "it does not start with the SQLite header".to_owned(),
            ));
        }
        Ok(None)
    }

    fn restorable_check(&self) -> &'static str {
        "SQLite header"
    }

    fn target(&self, to: Option<&str>, options: &RestoreOptions) -> Result<Box<dyn Target>, Error> {
        if options.jobs.is_some() {
            return Err(Error::Target(
                "--jobs applies to PostgreSQL restores only".to_owned(),
            ));
        }
        let path = to.map_or_else(|| self.spec.path.clone(), std::path::PathBuf::from);
        Ok(Box::new(SqliteTarget::new(path)))
    }

    fn scratch(&self, policy: &str, id: &str) -> Result<Scratch, Error> {
        let folder = crate::state::scratch_folder("backup-restore-test-")
            .map_err(|error| Error::Target(error.to_string()))?;
        let path = folder.path().join(format!("{policy}-{id}.db"));
        Ok(Scratch::new(
            Box::new(SqliteTarget::new(path)),
            Some(Box::new(folder)),
        ))
    }
}

/// Keeps the first 16 bytes written.
struct Header(Vec<u8>);

impl Write for Header {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        let wanted = 16usize.saturating_sub(self.0.len()).min(buffer.len());
        self.0.extend_from_slice(&buffer[..wanted]);
        Ok(buffer.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
