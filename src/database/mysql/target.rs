//! Restoring a `mariadb-dump` stream into a MariaDB or MySQL database.
//!
//! The backup streams, decompressed and re-hashed, into the stock client
//! (`mariadb`, else `mysql`) connected to the target database, which is
//! created first when missing. The dump drops and recreates each table it
//! holds (`DROP TABLE IF EXISTS`, then `CREATE TABLE` and its rows), and
//! leaves tables it does not hold as they are, as a PostgreSQL restore
//! does. MariaDB runs DDL outside transactions, so a restore that fails part
//! way has changed the target: the generic restore puts the safety backup
//! back (or drops a database it created).

use crate::database::{Streamed, stream_into};
use std::collections::{BTreeMap, BTreeSet};

use super::connection::{CLIENT, Connection, last_lines, literal, quote, unhex};
use crate::database::{
    Checked, Error, Failed, Target, TargetInfo, TargetPlan, compare_counts, compatibility,
    created_tables, dropped_tables, table_differences,
};
use crate::destination::Destination;
use crate::inventory::{BackupMetadata, BackupRecord};
use crate::policy::secret::Template;
use crate::policy::spec::{MysqlSpec, SourceSpec};

fn fail(reason: impl std::fmt::Display) -> Error {
    Error::Target(reason.to_string())
}

/// A MariaDB or MySQL database to restore into.
pub struct MysqlTarget {
    spec: MysqlSpec,
    connection: Connection,
    database: String,
}

impl MysqlTarget {
    /// The policy's database, or `to`: a database name on the same server,
    /// or a connection URL (or a `${env:…}`/`${file:…}` reference to one).
    pub fn resolve(policy: &MysqlSpec, to: Option<&str>) -> Result<MysqlTarget, Error> {
        let mut spec = policy.clone();
        // A safety backup covers the whole database, whatever the policy dumps.
        spec.mysqldump_options.clear();
        match to {
            None => {}
            Some(to) if to.contains("://") || to.starts_with("${") => {
                Template::parse(to).map_err(|error| fail(format!("--to: {error}")))?;
                spec = MysqlSpec {
                    url: Some(to.to_owned()),
                    bin_dir: policy.bin_dir.clone(),
                    ..MysqlSpec::default()
                };
            }
            Some(name) => spec.database = Some(name.replace("${", "$${")),
        }
        let connection = Connection::open(&spec).map_err(fail)?;
        let database = connection
            .database
            .clone()
            .ok_or_else(|| fail("no database is named: give one with --to or in the policy"))?;
        Ok(MysqlTarget::new(spec, connection, database))
    }

    fn new(spec: MysqlSpec, connection: Connection, database: String) -> MysqlTarget {
        MysqlTarget {
            spec,
            connection,
            database,
        }
    }

    /// A database `database` on the same server as `self`.
    pub fn sibling(&self, database: &str) -> MysqlTarget {
        let mut spec = self.spec.clone();
        spec.database = Some(database.replace("${", "$${"));
        MysqlTarget::new(
            spec,
            self.connection.with_database(database),
            database.to_owned(),
        )
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Runs `sql` on the server, outside any database.
    fn query(&self, sql: &str) -> Result<String, Error> {
        self.connection.query(None, sql).map_err(fail)
    }

    fn exists(&self) -> Result<bool, Error> {
        let found = self.query(&format!(
            "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}",
            literal(&self.database)
        ))?;
        Ok(!found.trim().is_empty())
    }

    pub fn create(&self) -> Result<(), Error> {
        self.query(&format!("CREATE DATABASE {}", quote(&self.database)))
            .map(drop)
            .map_err(|error| fail(format!("cannot create database {}: {error}", self.database)))
    }

    /// Every base table of the database.
    fn tables(&self) -> Result<BTreeSet<String>, Error> {
        let listed = self.query(&format!(
            "SELECT HEX(TABLE_NAME) FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} AND TABLE_TYPE = 'BASE TABLE'",
            literal(&self.database)
        ))?;
        Ok(listed.lines().filter_map(unhex).collect())
    }

    /// Rows of each of `tables` that exists here (one client for all of them).
    fn count_tables<'a>(
        &self,
        tables: impl IntoIterator<Item = &'a String>,
    ) -> Result<BTreeMap<String, u64>, Error> {
        let tables: Vec<&String> = tables.into_iter().collect();
        if tables.is_empty() {
            return Ok(BTreeMap::new());
        }
        let sql: String = tables
            .iter()
            .enumerate()
            .map(|(index, table)| {
                format!(
                    "SELECT {index}, COUNT(*) FROM {}.{};\n",
                    quote(&self.database),
                    quote(table)
                )
            })
            .collect();
        // With --force a missing table is an error on stderr, and the rest still count.
        let output = self.connection.query_with(None, &sql, true).map_err(fail)?;
        Ok(output
            .lines()
            .filter_map(|line| {
                let (index, count) = line.split_once('\t')?;
                let table = tables.get(index.parse::<usize>().ok()?)?;
                Some(((*table).clone(), count.trim().parse().ok()?))
            })
            .collect())
    }

    /// Drops the tables that are not in `keep` (after a failed restore: what it added).
    fn drop_tables_not_in(&self, keep: &BTreeSet<String>) -> Result<(), Error> {
        let added: Vec<String> = self
            .tables()?
            .difference(keep)
            .map(|table| format!("{}.{}", quote(&self.database), quote(table)))
            .collect();
        if added.is_empty() {
            return Ok(());
        }
        self.query(&format!(
            "SET FOREIGN_KEY_CHECKS = 0; DROP TABLE IF EXISTS {}",
            added.join(", ")
        ))
        .map(drop)
    }

    /// Marks this database as a drill's scratch database of `marker`: a
    /// table holding the marker, which only `backup` writes.
    pub fn mark(&self, marker: &str) -> Result<(), Error> {
        self.query(&format!(
            "CREATE TABLE {db}.{table} (marker varchar(255) NOT NULL); INSERT INTO {db}.{table} VALUES ({})",
            literal(marker),
            db = quote(&self.database),
            table = quote(super::MARKER_TABLE)
        ))
        .map(drop)
        .map_err(|error| fail(format!("cannot mark database {}: {error}", self.database)))
    }

    /// Drops databases `<prefix>…` on this server that hold the marker
    /// table with `marker` in it: scratch databases left by drills of the
    /// same policy that were killed (drills of a policy hold its lock, so
    /// none of them is running). A database of that name without the
    /// marker is someone else's, and stays.
    pub fn drop_abandoned(&self, prefix: &str, marker: &str) -> Vec<String> {
        let pattern = format!(
            "{}%",
            prefix
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let Ok(listed) = self.query(&format!(
            "SELECT HEX(TABLE_SCHEMA) FROM information_schema.TABLES WHERE TABLE_NAME = {} AND TABLE_SCHEMA LIKE {}",
            literal(super::MARKER_TABLE),
            literal(&pattern)
        )) else {
            return Vec::new();
        };
        let mut dropped = Vec::new();
        for name in listed.lines().filter_map(unhex) {
            let marked = self
                .query(&format!(
                    "SELECT COUNT(*) FROM {}.{} WHERE marker = {}",
                    quote(&name),
                    quote(super::MARKER_TABLE),
                    literal(marker)
                ))
                .is_ok_and(|count| count.trim() != "0" && !count.trim().is_empty());
            if marked
                && self
                    .query(&format!("DROP DATABASE IF EXISTS {}", quote(&name)))
                    .is_ok()
            {
                dropped.push(name);
            }
        }
        dropped
    }
}

impl Target for MysqlTarget {
    fn describe(&self) -> String {
        format!(
            "MariaDB database {} on {}",
            self.database,
            self.connection.server()
        )
    }

    fn inspect(&mut self, _contents: Option<&str>) -> Result<TargetInfo, Error> {
        let version = self.query("SELECT VERSION()")?.trim().to_owned();
        let size = self.query(&format!(
            "SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA = {}",
            literal(&self.database)
        ))?;
        let exists = self.exists()?;
        let mut info = TargetInfo {
            exists,
            version: Some(version).filter(|version| !version.is_empty()),
            size: size.trim().parse().ok(),
            ..TargetInfo::default()
        };
        if exists {
            info.tables = Some(self.tables()?);
            info.replaces = "every table the backup holds (DROP TABLE, then CREATE TABLE and its rows; not one transaction)".to_owned();
        } else {
            info.replaces = "nothing: the database is created".to_owned();
        }
        Ok(info)
    }

    fn source_spec(&self) -> SourceSpec {
        SourceSpec::Mysql(self.spec.clone())
    }

    fn restore(
        &self,
        destination: &dyn Destination,
        record: &BackupRecord,
        _rollback: bool,
    ) -> Result<String, Failed> {
        if !self.exists().map_err(Failed::untouched)? {
            self.create().map_err(Failed::untouched)?;
        }
        let options = self
            .connection
            .option_file()
            .map_err(|error| Failed::untouched(fail(error)))?;
        let program = self.connection.program(CLIENT);
        let mut command = self.connection.command(CLIENT, options.path());
        command
            .args(["--batch", "--connect-timeout=10"])
            .arg(format!("--database={}", self.database));
        let Streamed {
            streamed,
            status,
            stderr,
        } = stream_into(command, destination, record, "mariadb").map_err(|error| {
            Failed::untouched(fail(format!("cannot run {}: {error}", program.display())))
        })?;
        drop(options);
        let status_text = status
            .as_ref()
            .map_or_else(|error| error.to_string(), |status| status.to_string());
        let succeeded = status.as_ref().is_ok_and(std::process::ExitStatus::success);
        // Not one transaction: whatever ran before a failure stays, so the
        // target counts as changed.
        if let Err(problem) = streamed {
            let error = crate::database::streaming_error(record, problem, |_| {
                fail(format!(
                    "the mariadb client failed ({status_text}): {}",
                    last_lines(&stderr)
                ))
            });
            return Err(Failed {
                error,
                touched: true,
            });
        }
        if !succeeded {
            return Err(Failed {
                error: Error::Restore(format!(
                    "the mariadb client failed ({status_text}): {}",
                    last_lines(&stderr)
                )),
                touched: true,
            });
        }
        Ok(format!(
            "{} streamed into the mariadb client",
            crate::format::human_bytes(record.metadata.artifact.uncompressed_size)
        ))
    }

    fn check(&self, metadata: &BackupMetadata, _rollback: bool) -> Result<Checked, Error> {
        let expected = &metadata.source.row_counts;
        let actual = self
            .count_tables(expected.keys())
            .map_err(|error| Error::Check(error.to_string()))?;
        compare_counts(expected, &actual)?;
        let tables = actual.len();
        Ok(Checked {
            detail: format!(
                "row counts of {tables} table{} match",
                if tables == 1 { "" } else { "s" }
            ),
            row_counts: actual,
            warnings: Vec::new(),
        })
    }

    fn count_rows(&self, metadata: &BackupMetadata) -> BTreeMap<String, u64> {
        self.count_tables(metadata.source.row_counts.keys())
            .unwrap_or_default()
    }

    fn remove(&self) -> Result<(), Error> {
        self.query(&format!(
            "DROP DATABASE IF EXISTS {}",
            quote(&self.database)
        ))
        .map(drop)
        .map_err(|error| fail(format!("cannot drop database {}: {error}", self.database)))
    }

    fn remove_added(&self, before: Option<&BTreeSet<String>>) -> Result<(), Error> {
        match before {
            Some(before) => self.drop_tables_not_in(before),
            None => Ok(()),
        }
    }

    fn plan(&self, metadata: &BackupMetadata, info: &TargetInfo) -> TargetPlan {
        let mut plan = TargetPlan::default();
        let backup: BTreeSet<String> = metadata.source.row_counts.keys().cloned().collect();
        if let Some(tables) = &info.tables {
            let dropped: Vec<&str> = backup.intersection(tables).map(String::as_str).collect();
            plan.contents.extend(dropped_tables(&dropped));
        }
        plan.compatibility = compatibility(
            metadata.source.server_version.as_ref(),
            info.version.as_ref(),
            super::major,
        );
        let counted = backup.len();
        plan.checks_after = format!(
            "row counts of {counted} table{}",
            if counted == 1 { "" } else { "s" }
        );
        if let (Some(backup), Some(target)) = (&metadata.source.server_version, &info.version)
            && super::major(backup) != super::major(target)
        {
            plan.warnings.push(format!(
                "the backup comes from {backup}, the target runs {target}: major versions differ"
            ));
        }
        if let Some(database) = &metadata.source.database
            && metadata.is_pre_restore()
            && &self.database != database
        {
            plan.warnings.push(format!(
                "this is a safety backup of database `{database}`, not of the target `{}`: to undo a restore with `--to`, restore it with the same `--to`",
                self.database
            ));
        }
        let (mut differences, only_backup) = table_differences(
            info,
            &backup,
            "the dump drops and recreates only its own tables: they stay as they are",
        );
        plan.warnings.append(&mut differences);
        plan.warnings.extend(created_tables(&only_backup));
        plan
    }
}
