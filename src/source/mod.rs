//! What is backed up: one trait, one module per kind of database.
//!
//! A [`Source`] writes a consistent copy of its database, uncompressed, into
//! the sink it is given, and reports what a restore must find again (server
//! version, row counts). It never decides where the bytes go or how they are
//! compressed. Secrets are resolved when the source is opened and only handed
//! to the child process's environment or the client library.

pub mod postgres;
pub mod sqlite;
pub mod tls;
pub mod toc;

use std::collections::BTreeMap;
use std::io::Write;

use crate::policy::secret;
use crate::policy::spec::SourceSpec;

/// Why a source could not be dumped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Secret(#[from] secret::Error),
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(String),
    #[error("PostgreSQL query failed: {0}")]
    Query(String),
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("pg_dump failed ({status}): {stderr}")]
    Dump { status: String, stderr: String },
    #[error("the dump is not readable by pg_restore ({status}): {stderr}")]
    Unreadable { status: String, stderr: String },
    #[error("the dump is empty")]
    Empty,
    #[error("SQLite database `{path}`: {reason}")]
    Sqlite { path: String, reason: String },
    #[error("SQLite copy failed its integrity check: {0}")]
    Integrity(String),
    #[error("writing the backup failed: {0}")]
    Sink(#[source] std::io::Error),
}

/// What a dump found out about its database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub server_version: Option<String>,
    pub database: Option<String>,
    /// Rows per table, counted in the snapshot that was dumped.
    pub row_counts: BTreeMap<String, u64>,
}

/// A database that can be backed up.
pub trait Source {
    /// The kind for metadata: `postgres`, `sqlite`.
    fn kind(&self) -> &'static str;
    /// The artifact kind in file names: `pgdump`, `sqlite`.
    fn artifact_kind(&self) -> &'static str;
    /// Writes a consistent copy into `sink`.
    fn dump(&mut self, sink: &mut dyn Write) -> Result<Report, Error>;
}

/// Opens the source a policy describes, resolving its secrets.
pub fn open(spec: &SourceSpec) -> Result<Box<dyn Source>, Error> {
    match spec {
        SourceSpec::Postgres(postgres) => Ok(Box::new(postgres::Postgres::open(postgres)?)),
        SourceSpec::Sqlite(sqlite) => Ok(Box::new(sqlite::Sqlite::new(sqlite.path.clone()))),
    }
}
