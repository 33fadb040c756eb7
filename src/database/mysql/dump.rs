//! MariaDB and MySQL, dumped with `mariadb-dump` (else `mysqldump`) and
//! streamed: `--single-transaction --routines --triggers --events
//! --hex-blob` of one database, without `CREATE DATABASE`, so that the
//! stream restores into any database with the stock client. The row counts
//! recorded for post-restore checks are counted in the stream itself
//! ([`super::rows`]), so they are exactly what the dump holds, from the
//! snapshot it was taken in. The connection settings reach the dump in a
//! private option file ([`super::connection`]), never in argv.

use std::io::{self, Write};
use std::process::Stdio;

use super::connection::{Connection, DUMPER, client_error, is_connect_failure, last_lines};
use super::rows::Counter;
use crate::database::{Dump, DumpError as Error, Report, drain, joined};
use crate::policy::spec::MysqlSpec;

/// The options every dump gets, after the option file.
pub const DUMP_OPTIONS: [&str; 5] = [
    "--single-transaction",
    "--routines",
    "--triggers",
    "--events",
    "--hex-blob",
];

pub struct MysqlDump {
    connection: Connection,
    extra: Vec<String>,
}

impl MysqlDump {
    pub fn open(spec: &MysqlSpec) -> Result<MysqlDump, Error> {
        let connection = Connection::open(spec)?;
        if connection.database.is_none() {
            return Err(Error::Failed(
                "no MariaDB database is named: give `database` or a URL that names one".to_owned(),
            ));
        }
        Ok(MysqlDump {
            connection,
            extra: spec.mysqldump_options.clone(),
        })
    }
}

impl Dump for MysqlDump {
    fn dump(&mut self, sink: &mut dyn Write) -> Result<Report, Error> {
        let database = self.connection.database.clone().unwrap_or_default();
        let options = self.connection.option_file()?;
        let program = self.connection.program(DUMPER);
        let mut command = self.connection.command(DUMPER, options.path());
        command
            .args(DUMP_OPTIONS)
            .args(&self.extra)
            .arg("--")
            .arg(&database)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|source| Error::Spawn {
            program: program.display().to_string(),
            source,
        })?;
        let stderr = drain(child.stderr.take());
        let mut output = child
            .stdout
            .take()
            .ok_or_else(|| Error::Sink(io::Error::other("no mariadb-dump output")))?;
        let mut counter = Counter::default();
        let pumped = crate::database::pump(&mut output, sink, &mut |chunk| counter.feed(chunk));
        if pumped.is_err() {
            let _ = child.kill();
        }
        drop(output);
        let status = child.wait();
        let stderr = joined(stderr);
        // The option file goes as soon as the dump is done.
        drop(options);
        let bytes = pumped.map_err(Error::Sink)?;
        let status = status.map_err(|source| Error::Spawn {
            program: program.display().to_string(),
            source,
        })?;
        if !status.success() {
            if is_connect_failure(&stderr) {
                return Err(client_error(&stderr));
            }
            return Err(Error::Tool {
                program: "mariadb-dump",
                status: status.to_string(),
                stderr: last_lines(&stderr),
            });
        }
        if bytes == 0 {
            return Err(Error::Empty);
        }
        if !counter.header || !counter.completed() {
            return Err(Error::Unreadable {
                tool: "the MariaDB client",
                status: "incomplete".to_owned(),
                stderr: "it lacks mariadb-dump's header or its `-- Dump completed` trailer"
                    .to_owned(),
            });
        }
        let server_version = match counter.server_version.take() {
            Some(version) => version,
            None => self
                .connection
                .query(None, "SELECT VERSION()")?
                .trim()
                .to_owned(),
        };
        Ok(Report {
            server_version: Some(server_version),
            database: Some(database),
            row_counts: counter.rows,
            physical: None,
        })
    }
}
