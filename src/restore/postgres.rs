//! Restoring a PostgreSQL dump into a database.
//!
//! The default path streams the backup, decompressed and re-hashed, into
//! `pg_restore --clean --if-exists --single-transaction`: nothing is
//! committed unless the whole dump applies, so a failure (or a kill) part
//! way leaves the database as it was. With `--jobs N` the dump is first
//! decompressed (and checked) into a local temporary file, then restored with
//! `pg_restore -j N`, which is faster but not one transaction: a failure there
//! is rolled back from the safety backup. A missing database is created.
//! Connection settings reach `pg_restore` through its environment only.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufWriter, Write as _};
use std::process::{Command, Stdio};

use super::{Checked, Error, Failed, TargetInfo};
use crate::destination::Destination;
use crate::inventory::{BackupMetadata, BackupRecord};
use crate::policy::secret::Template;
use crate::policy::spec::{PostgresSpec, SourceSpec};
use crate::source::postgres::{Postgres, describe, quote};
use crate::verify;

/// The database connected to for creating and dropping databases.
const MAINTENANCE_DATABASE: &str = "postgres";

/// A PostgreSQL database to restore into.
pub struct PostgresTarget {
    spec: PostgresSpec,
    connection: Postgres,
    database: String,
}

fn fail(reason: impl std::fmt::Display) -> Error {
    Error::Target(reason.to_string())
}

impl PostgresTarget {
    /// The policy's database, or `to`: a database name on the same server,
    /// or a connection URL (or a `${env:…}`/`${file:…}` reference to one).
    pub fn resolve(policy: &PostgresSpec, to: Option<&str>) -> Result<PostgresTarget, Error> {
        let mut spec = policy.clone();
        // A safety backup covers the whole database, whatever the policy dumps.
        spec.schemas.clear();
        spec.exclude_schemas.clear();
        spec.tables.clear();
        spec.exclude_tables.clear();
        spec.exclude_table_data.clear();
        spec.pg_dump_options.clear();
        match to {
            None => {}
            Some(to) if to.contains("://") || to.contains('=') || to.starts_with("${") => {
                Template::parse(to).map_err(|error| fail(format!("--to: {error}")))?;
                spec = PostgresSpec {
                    url: Some(to.to_owned()),
                    bin_dir: policy.bin_dir.clone(),
                    ..PostgresSpec::default()
                };
            }
            Some(name) => spec.database = Some(name.replace("${", "$${")),
        }
        let connection = Postgres::open(&spec).map_err(|error| fail(error.to_string()))?;
        let database = connection
            .database()
            .ok_or_else(|| fail("no database is named: give one with --to or in the policy"))?
            .to_owned();
        Ok(PostgresTarget {
            spec,
            connection,
            database,
        })
    }

    /// A database `database` on the same server as `self`.
    pub fn sibling(&self, database: &str) -> PostgresTarget {
        let mut spec = self.spec.clone();
        spec.database = Some(database.replace("${", "$${"));
        PostgresTarget {
            spec,
            connection: self.connection.with_database(database),
            database: database.to_owned(),
        }
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn describe(&self) -> String {
        format!(
            "PostgreSQL database {} on {}",
            self.database,
            self.connection.server()
        )
    }

    fn maintenance(&self) -> Result<(tokio::runtime::Runtime, tokio_postgres::Client), Error> {
        // `template1` when the role may not connect to `postgres`.
        self.connection
            .connect_blocking(Some(MAINTENANCE_DATABASE))
            .or_else(|_| self.connection.connect_blocking(Some("template1")))
            .map_err(|error| fail(error.to_string()))
    }

    fn exists(&self) -> Result<bool, Error> {
        let (runtime, client) = self.maintenance()?;
        runtime.block_on(async {
            client
                .query_opt(
                    "SELECT 1 FROM pg_database WHERE datname = $1",
                    &[&self.database],
                )
                .await
                .map(|row| row.is_some())
                .map_err(|error| fail(describe(&error)))
        })
    }

    pub fn inspect(&self, jobs: Option<u32>) -> Result<TargetInfo, Error> {
        let (runtime, client) = self.maintenance()?;
        let (version, size) = runtime.block_on(async {
            let version: String = client
                .query_one("SHOW server_version", &[])
                .await
                .map_err(|error| fail(describe(&error)))?
                .get(0);
            let size: Option<i64> = client
                .query_opt(
                    "SELECT pg_database_size(datname) FROM pg_database WHERE datname = $1",
                    &[&self.database],
                )
                .await
                .map_err(|error| fail(describe(&error)))?
                .map(|row| row.get(0));
            Ok::<_, Error>((version, size))
        })?;
        let exists = size.is_some();
        let space = jobs.and_then(|_| {
            // Measured on the folder the scratch folder is (or will be) in.
            let scratch = crate::state::scratch_root();
            let existing = scratch.ancestors().find(|folder| folder.exists())?;
            super::available_space(existing).map(|available| (scratch.clone(), available))
        });
        let mut info = TargetInfo {
            exists,
            version: version.split_whitespace().next().map(str::to_owned),
            size: size.map(|size| u64::try_from(size).unwrap_or(0)),
            space,
            ..TargetInfo::default()
        };
        if exists {
            info.tables = Some(self.tables()?);
            info.replaces = if jobs.is_some() {
                "every object the backup holds (pg_restore --clean --if-exists -j, not one transaction)".to_owned()
            } else {
                "every object the backup holds (pg_restore --clean --if-exists, in one transaction)"
                    .to_owned()
            };
        } else {
            info.replaces = "nothing: the database is created".to_owned();
        }
        Ok(info)
    }

    /// `schema.table` of every table in the database.
    fn tables(&self) -> Result<BTreeSet<String>, Error> {
        let (runtime, client) = self
            .connection
            .connect_blocking(None)
            .map_err(|error| fail(error.to_string()))?;
        runtime.block_on(async {
            let rows = client
                .query(
                    "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                       AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'",
                    &[],
                )
                .await
                .map_err(|error| fail(describe(&error)))?;
            Ok(rows
                .iter()
                .map(|row| format!("{}.{}", row.get::<_, String>(0), row.get::<_, String>(1)))
                .collect())
        })
    }

    pub fn source_spec(&self) -> SourceSpec {
        SourceSpec::Postgres(self.spec.clone())
    }

    pub fn create(&self) -> Result<(), Error> {
        let (runtime, client) = self.maintenance()?;
        runtime.block_on(async {
            client
                .batch_execute(&format!("CREATE DATABASE {}", quote(&self.database)))
                .await
                .map_err(|error| {
                    fail(format!(
                        "cannot create database {}: {}",
                        self.database,
                        describe(&error)
                    ))
                })
        })
    }

    /// Drops databases `<prefix>…` on this server that no session uses:
    /// scratch databases left by drills that were killed. (A running drill's
    /// database is in use, so it stays; drills of a policy hold its lock.)
    pub fn drop_abandoned(&self, prefix: &str) -> Vec<String> {
        let Ok((runtime, client)) = self.maintenance() else {
            return Vec::new();
        };
        runtime.block_on(async {
            let pattern = format!(
                "{}%",
                prefix
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            );
            let Ok(rows) = client
                .query(
                    "SELECT datname FROM pg_database WHERE datname LIKE $1",
                    &[&pattern],
                )
                .await
            else {
                return Vec::new();
            };
            let mut dropped = Vec::new();
            for row in rows {
                let name: String = row.get(0);
                if client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {}", quote(&name)))
                    .await
                    .is_ok()
                {
                    dropped.push(name);
                }
            }
            dropped
        })
    }

    pub fn remove(&self) -> Result<(), Error> {
        let (runtime, client) = self.maintenance()?;
        runtime.block_on(async {
            let name = quote(&self.database);
            if client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .is_ok()
            {
                return Ok(());
            }
            // Before PostgreSQL 13 there is no FORCE.
            client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
                .await
                .map_err(|error| {
                    fail(format!(
                        "cannot drop database {}: {}",
                        self.database,
                        describe(&error)
                    ))
                })
        })
    }

    fn pg_restore(&self) -> Command {
        let mut command = self.connection.command("pg_restore");
        command
            .args(["--clean", "--if-exists", "--no-password", "--exit-on-error"])
            .arg(format!("--dbname={}", conninfo_dbname(&self.database)));
        command
    }

    pub fn restore(
        &self,
        destination: &dyn Destination,
        record: &BackupRecord,
        jobs: Option<u32>,
    ) -> Result<String, Failed> {
        let untouched = Failed::untouched;
        if !self.exists().map_err(untouched)? {
            self.create().map_err(untouched)?;
        }
        match jobs {
            Some(jobs) => self.restore_parallel(destination, record, jobs),
            None => self.restore_streamed(destination, record),
        }
    }

    fn restore_streamed(
        &self,
        destination: &dyn Destination,
        record: &BackupRecord,
    ) -> Result<String, Failed> {
        let mut command = self.pg_restore();
        command
            .arg("--single-transaction")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|error| Failed::untouched(fail(format!("cannot run pg_restore: {error}"))))?;
        let stderr = drain(child.stderr.take());
        let mut stdin = child.stdin.take();
        let streamed = match stdin.as_mut() {
            Some(stdin) => verify::verify_into(
                destination,
                record,
                &mut BufWriter::with_capacity(1 << 20, stdin),
            ),
            None => Err(verify::Problem::Write("no pg_restore input".to_owned())),
        };
        // A damaged stream is cut short here, so pg_restore cannot commit it.
        drop(stdin);
        let status = child.wait();
        let stderr = stderr
            .and_then(|handle| handle.join().ok())
            .unwrap_or_default();
        let succeeded = status.as_ref().is_ok_and(std::process::ExitStatus::success);
        if let Err(problem) = streamed {
            let error = super::streaming_error(record, problem, |_| {
                fail(format!(
                    "pg_restore failed ({}): {}",
                    status.map_or_else(|error| error.to_string(), |status| status.to_string()),
                    last_lines(&stderr)
                ))
            });
            // Committed only if pg_restore got to the end and succeeded.
            return Err(Failed {
                error,
                touched: succeeded,
            });
        }
        if !succeeded {
            return Err(Failed::untouched(fail(format!(
                "pg_restore failed ({}), its transaction was rolled back: {}",
                status.map_or_else(|error| error.to_string(), |status| status.to_string()),
                last_lines(&stderr)
            ))));
        }
        Ok(format!(
            "{} streamed into pg_restore --single-transaction",
            crate::cli::human_bytes(record.metadata.artifact.uncompressed_size)
        ))
    }

    fn restore_parallel(
        &self,
        destination: &dyn Destination,
        record: &BackupRecord,
        jobs: u32,
    ) -> Result<String, Failed> {
        let mut temporary = crate::state::scratch_file("backup-restore-", ".pgdump")
            .map_err(|error| Failed::untouched(fail(error.to_string())))?;
        {
            let mut writer = BufWriter::with_capacity(1 << 20, temporary.as_file_mut());
            verify::verify_into(destination, record, &mut writer).map_err(|problem| {
                Failed::untouched(super::streaming_error(record, problem, |reason| {
                    fail(format!("cannot write the decompressed copy: {reason}"))
                }))
            })?;
            writer
                .flush()
                .map_err(|error| Failed::untouched(fail(error)))?;
        }
        let output = self
            .pg_restore()
            .arg(format!("--jobs={jobs}"))
            .arg(temporary.path())
            .stdin(Stdio::null())
            .output()
            .map_err(|error| Failed::untouched(fail(format!("cannot run pg_restore: {error}"))))?;
        if !output.status.success() {
            return Err(Failed {
                error: fail(format!(
                    "pg_restore -j {jobs} failed ({}): {}",
                    output.status,
                    last_lines(&String::from_utf8_lossy(&output.stderr))
                )),
                touched: true,
            });
        }
        Ok(format!(
            "{} decompressed locally, restored with pg_restore -j {jobs}",
            crate::cli::human_bytes(record.metadata.artifact.uncompressed_size)
        ))
    }

    /// Row counts of every table the sidecar counts.
    pub fn check(&self, metadata: &BackupMetadata) -> Result<Checked, Error> {
        let actual = self.count_rows(metadata)?;
        super::sqlite::compare_counts(&metadata.source.row_counts, &actual)?;
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

    /// Rows of every table the sidecar counts that exists here.
    pub fn count_rows(&self, metadata: &BackupMetadata) -> Result<BTreeMap<String, u64>, Error> {
        let (runtime, client) = self
            .connection
            .connect_blocking(None)
            .map_err(|error| Error::Check(error.to_string()))?;
        let mut actual = BTreeMap::new();
        runtime.block_on(async {
            for table in metadata.source.row_counts.keys() {
                let Some((schema, name)) = table.split_once('.') else {
                    continue;
                };
                let query = format!("SELECT count(*) FROM {}.{}", quote(schema), quote(name));
                match client.query_one(&query, &[]).await {
                    Ok(row) => {
                        let count: i64 = row.get(0);
                        actual.insert(table.clone(), u64::try_from(count).unwrap_or(0));
                    }
                    Err(error) => {
                        tracing::debug!(table, "{}", describe(&error));
                    }
                }
            }
        });
        Ok(actual)
    }

    /// Drops tables that are not in `keep` (after a rollback: what the failed restore added).
    pub fn drop_tables_not_in(&self, keep: &BTreeSet<String>) -> Result<(), Error> {
        let now = self.tables()?;
        let added: Vec<&String> = now.difference(keep).collect();
        if added.is_empty() {
            return Ok(());
        }
        let (runtime, client) = self
            .connection
            .connect_blocking(None)
            .map_err(|error| fail(error.to_string()))?;
        let statements: Vec<String> = added
            .iter()
            .filter_map(|table| table.split_once('.'))
            .map(|(schema, name)| {
                format!(
                    "DROP TABLE IF EXISTS {}.{} CASCADE",
                    quote(schema),
                    quote(name)
                )
            })
            .collect();
        runtime.block_on(async {
            client
                .batch_execute(&format!("BEGIN; {}; COMMIT", statements.join("; ")))
                .await
                .map_err(|error| fail(describe(&error)))
        })
    }
}

/// A libpq connection string naming only a database (no credential).
fn conninfo_dbname(database: &str) -> String {
    format!(
        "dbname='{}'",
        database.replace('\\', "\\\\").replace('\'', "\\'")
    )
}

fn drain(
    stream: Option<impl std::io::Read + Send + 'static>,
) -> Option<std::thread::JoinHandle<String>> {
    stream.map(|mut stream| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stream.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    })
}

fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    let start = lines.len().saturating_sub(3);
    let tail = lines[start..].join(" | ");
    if tail.is_empty() {
        "no message".to_owned()
    } else {
        tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_passwords_out_of_pg_restore_arguments() {
        let spec = PostgresSpec {
            url: Some("postgresql://app:s3cret@db1:6432/app".to_owned()),
            ..PostgresSpec::default()
        };
        let target = PostgresTarget::resolve(&spec, Some("restored")).unwrap();
        let command = target.pg_restore();
        let arguments: Vec<String> = command
            .get_args()
            .map(|argument| argument.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            arguments,
            [
                "--clean",
                "--if-exists",
                "--no-password",
                "--exit-on-error",
                "--dbname=dbname='restored'"
            ]
        );
        let password = command
            .get_envs()
            .find(|(key, _)| *key == "PGPASSWORD")
            .and_then(|(_, value)| value)
            .map(|value| value.to_string_lossy().into_owned());
        assert_eq!(password.as_deref(), Some("s3cret"));
        assert_eq!(
            target.describe(),
            "PostgreSQL database restored on db1:6432"
        );
    }

    #[test]
    fn database_names_are_quoted_for_libpq() {
        assert_eq!(conninfo_dbname("app"), "dbname='app'");
        assert_eq!(conninfo_dbname("o'brien"), "dbname='o\\'brien'");
    }
}
