//! MariaDB and MySQL: logical backups with `mariadb-dump` (else
//! `mysqldump`) in one transaction, their rows counted in the stream
//! ([`dump`], [`rows`]); restores through the stock client ([`target`]);
//! drills into marked scratch databases on the policy's own server; the
//! policy checks `validate` runs for this kind ([`check`]). Connection
//! settings reach the clients in a private option file ([`connection`]).

pub mod check;
pub mod connection;
pub mod dump;
pub mod rows;
pub mod target;

use std::io::Write;

use super::{Database, Dump, DumpError, Error, RestoreOptions, Scratch, SpecProblem, Target};
use crate::destination::Destination;
use crate::inventory::BackupRecord;
use crate::policy::spec::MysqlSpec;
use crate::verify::{self, Problem};
use target::MysqlTarget;

/// The table that marks a drill's scratch database (it holds the marker).
pub const MARKER_TABLE: &str = "backup_drill_marker";

/// The MariaDB or MySQL database a policy backs up.
pub struct Mysql {
    spec: MysqlSpec,
}

impl Mysql {
    pub fn new(spec: MysqlSpec) -> Mysql {
        Mysql { spec }
    }
}

impl Database for Mysql {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    fn format(&self) -> &'static str {
        "mysql"
    }

    fn dump(&self) -> Result<Box<dyn Dump>, DumpError> {
        Ok(Box::new(dump::MysqlDump::open(&self.spec)?))
    }

    /// Reads the whole decoded stream: it must start with `mariadb-dump`'s
    /// header and end with its `-- Dump completed` trailer.
    fn check_restorable(
        &self,
        destination: &dyn Destination,
        record: &BackupRecord,
    ) -> Result<Option<String>, Problem> {
        let mut counter = Counting(rows::Counter::default());
        verify::verify_into(destination, record, &mut counter)?;
        if !counter.0.header {
            return Err(Problem::Unrestorable(
                "it does not start with a mariadb-dump header".to_owned(),
            ));
        }
        if !counter.0.completed() {
            return Err(Problem::Unrestorable(
                "it does not end with mariadb-dump's `-- Dump completed` line".to_owned(),
            ));
        }
        Ok(None)
    }

    fn restorable_check(&self) -> &'static str {
        "mariadb-dump header and `-- Dump completed` trailer"
    }

    fn target(&self, to: Option<&str>, options: &RestoreOptions) -> Result<Box<dyn Target>, Error> {
        if options.jobs.is_some() {
            return Err(Error::Target(
                "--jobs applies to PostgreSQL restores only".to_owned(),
            ));
        }
        Ok(Box::new(MysqlTarget::resolve(&self.spec, to)?))
    }

    fn scratch(&self, policy: &str, _id: &str) -> Result<Scratch, Error> {
        let own = MysqlTarget::resolve(&self.spec, None)?;
        let prefix = scratch_database_prefix(policy);
        let marker = scratch_marker(policy);
        let abandoned = own.drop_abandoned(&prefix, &marker);
        let target = own.sibling(&format!("{prefix}{}", crate::state::random_suffix()));
        super::marked_scratch(policy, abandoned, target, MysqlTarget::create, |target| {
            target.mark(&marker)
        })
    }

    fn check_spec(&self) -> Vec<SpecProblem> {
        check::check(&self.spec)
    }
}

/// The names of a policy's scratch databases start with this:
/// `backup_drill_<policy hash>_`, within MariaDB's 64 characters with the
/// 8-character suffix; drills of other policies never take them for theirs.
pub fn scratch_database_prefix(policy: &str) -> String {
    use sha2::{Digest as _, Sha256};
    let hash = crate::inventory::metadata::hex(&Sha256::digest(policy.as_bytes()));
    format!("backup_drill_{}_", &hash[..6])
}

/// What the marker table of a scratch database of `policy`'s drills holds:
/// only databases named `<prefix>…` that hold it are dropped as abandoned.
pub fn scratch_marker(policy: &str) -> String {
    use sha2::{Digest as _, Sha256};
    let hash = crate::inventory::metadata::hex(&Sha256::digest(policy.as_bytes()));
    format!(
        "backup: restore-test scratch database of policy {}",
        &hash[..12]
    )
}

/// `10.11.6-MariaDB-0+deb12u1` → `10.11`; `8.0.36` → `8.0`: MariaDB and
/// MySQL name a release series by its first two numbers.
pub fn major(version: &str) -> String {
    let numbers: Vec<&str> = version
        .split(|character: char| !character.is_ascii_digit() && character != '.')
        .next()
        .unwrap_or("")
        .split('.')
        .take(2)
        .collect();
    numbers.join(".")
}

/// A sink that only counts (and checks the frame of) a dump.
struct Counting(rows::Counter);

impl Write for Counting {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        self.0.feed(buffer);
        Ok(buffer.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_series() {
        assert_eq!(major("10.11.6-MariaDB-0+deb12u1"), "10.11");
        assert_eq!(major("8.0.36"), "8.0");
        assert_eq!(major("11.4.2-MariaDB"), "11.4");
    }

    #[test]
    fn scratch_names_fit_and_differ_by_policy() {
        let prefix = scratch_database_prefix("app");
        assert!(prefix.starts_with("backup_drill_"));
        assert!(prefix.len() + 8 <= 64);
        assert_ne!(prefix, scratch_database_prefix("other"));
    }
}
