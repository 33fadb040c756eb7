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
//!
//! A dump that holds some tables without their rows (`exclude-table-data`)
//! is restored with `--use-list`, leaving those tables, and what hangs on
//! them, as they are in the database (see [`super::toc`]), so that
//! `--clean` never empties them.

use crate::database::{Streamed, stream_into};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufWriter, Write as _};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::dump::{Server, describe, quote};
use super::locks;
use super::toc::{Keep, Toc};
use crate::database::{Checked, Error, Failed, Target, TargetInfo, TargetPlan};
use crate::destination::Destination;
use crate::inventory::{BackupMetadata, BackupRecord};
use crate::policy::secret::Template;
use crate::policy::spec::{PostgresSpec, SourceSpec};
use crate::verify;

/// The database connected to for creating and dropping databases.
const MAINTENANCE_DATABASE: &str = "postgres";

/// A PostgreSQL database to restore into.
pub struct PostgresTarget {
    spec: PostgresSpec,
    connection: Server,
    database: String,
    /// How long the restore's sessions wait for a lock; zero: no limit.
    lock_timeout: Duration,
    /// Restore with `pg_restore -j N` from a local decompressed copy.
    jobs: Option<u32>,
    /// What the backup to restore holds against what the database holds,
    /// once [`Target::inspect`] has read the backup's table of contents.
    contents: Option<Contents>,
}

fn fail(reason: impl std::fmt::Display) -> Error {
    Error::Target(reason.to_string())
}

/// What a dump holds, against what the database holds: which tables the
/// restore replaces, creates, and keeps.
#[derive(Debug, Clone, Default)]
pub struct Contents {
    /// Every table the dump defines.
    pub tables: BTreeSet<String>,
    /// The tables it defines without their rows.
    pub without_data: BTreeSet<String>,
    /// What the restore leaves as it is in the database, if anything.
    pub kept: Option<Kept>,
    /// Objects of the database's that the dump does not hold and that
    /// depend on a table the restore drops: `pg_restore --clean` would stop
    /// at them, so the restore is refused.
    pub blockers: Vec<String>,
}

/// An object that depends on a table: a foreign key (`name`, of `table`)
/// or a view (`table`), on `on`.
struct Dependent {
    kind: &'static str,
    table: String,
    name: String,
    on: String,
}

/// What a restore leaves as it is, and the kept tables' rows before it.
#[derive(Debug, Clone, Default)]
pub struct Kept {
    pub keep: Keep,
    pub rows_before: BTreeMap<String, u64>,
}

impl Kept {
    /// Every kept table: those without their rows in the dump, and those kept with them.
    pub fn tables(&self) -> impl Iterator<Item = &String> {
        self.keep.tables.iter().chain(&self.keep.also)
    }
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
        let connection = Server::open(&spec).map_err(|error| fail(error.to_string()))?;
        let database = connection
            .database()
            .ok_or_else(|| fail("no database is named: give one with --to or in the policy"))?
            .to_owned();
        let mut target = PostgresTarget {
            spec,
            connection,
            database,
            lock_timeout: Duration::ZERO,
            jobs: None,
            contents: None,
        };
        target.set_lock_timeout(locks::DEFAULT_LOCK_TIMEOUT);
        Ok(target)
    }

    /// How long the restore (and the safety backup before it) waits for a
    /// lock another session holds before it gives up; zero: no limit.
    pub fn set_lock_timeout(&mut self, timeout: Duration) {
        self.lock_timeout = timeout;
        self.spec.pg_dump_options.clear();
        if !timeout.is_zero() {
            self.spec
                .pg_dump_options
                .push(format!("--lock-wait-timeout={}", timeout.as_millis()));
        }
    }

    /// A database `database` on the same server as `self`.
    pub fn sibling(&self, database: &str) -> PostgresTarget {
        let mut spec = self.spec.clone();
        spec.database = Some(database.replace("${", "$${"));
        PostgresTarget {
            spec,
            connection: self.connection.with_database(database),
            database: database.to_owned(),
            lock_timeout: self.lock_timeout,
            jobs: None,
            contents: None,
        }
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// How long the restore waits for a lock; zero: no limit.
    pub fn lock_timeout(&self) -> Duration {
        self.lock_timeout
    }

    /// A session on this database.
    fn session(&self) -> Result<(tokio::runtime::Runtime, tokio_postgres::Client), Error> {
        self.connection
            .connect_blocking(None)
            .map_err(|error| fail(error.to_string()))
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

    /// Restores with `pg_restore -j jobs` (from a local decompressed copy).
    pub fn set_jobs(&mut self, jobs: Option<u32>) {
        self.jobs = jobs;
    }

    /// What the backup holds against the database, once inspected.
    pub fn contents_found(&self) -> Option<&Contents> {
        self.contents.as_ref()
    }

    /// What the restore leaves as it is, once inspected.
    pub fn kept(&self) -> Option<&Kept> {
        self.contents
            .as_ref()
            .and_then(|contents| contents.kept.as_ref())
    }

    fn inspect_server(&self) -> Result<TargetInfo, Error> {
        let jobs = self.jobs;
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
            crate::state::available_space(existing).map(|available| (scratch.clone(), available))
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
        Ok(self.tables_by_kind()?.into_keys().collect())
    }

    /// `schema.table` of every table in the database, and whether it is
    /// partitioned (its rows are its partitions').
    fn tables_by_kind(&self) -> Result<BTreeMap<String, bool>, Error> {
        let (runtime, client) = self.session()?;
        runtime.block_on(async {
            let rows = client
                .query(
                    "SELECT n.nspname, c.relname, c.relkind = 'p' FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                       AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'",
                    &[],
                )
                .await
                .map_err(|error| fail(describe(&error)))?;
            Ok(rows
                .iter()
                .map(|row| {
                    (
                        format!("{}.{}", row.get::<_, String>(0), row.get::<_, String>(1)),
                        row.get::<_, bool>(2),
                    )
                })
                .collect())
        })
    }

    /// What the dump with table of contents `listing` would replace, create
    /// and keep here. Kept: the tables it holds without their rows that
    /// this database has (with their rows), and the schemas that hold
    /// tables of this database's that the dump does not.
    pub fn contents(&self, listing: &str, exists: bool) -> Result<Contents, Error> {
        let toc = Toc::parse(listing);
        let mut contents = Contents {
            tables: toc.tables(),
            without_data: toc.tables_without_data(),
            kept: None,
            blockers: Vec::new(),
        };
        if !exists {
            return Ok(contents);
        }
        let here = self.tables_by_kind()?;
        let keep_tables: BTreeSet<String> = contents
            .without_data
            .iter()
            .filter(|table| here.get(*table) == Some(&false))
            .cloned()
            .collect();
        let keep_schemas: BTreeSet<String> = here
            .keys()
            .filter(|table| !contents.tables.contains(*table))
            .filter_map(|table| table.split_once('.').map(|(schema, _)| schema.to_owned()))
            .collect();
        if let Some(keep) = toc.keep(&keep_tables, &keep_schemas) {
            let rows_before = self.count_tables(keep.tables.iter().chain(&keep.also))?;
            contents.kept = Some(Kept { keep, rows_before });
        }
        let kept: BTreeSet<&String> = contents.kept.iter().flat_map(Kept::tables).collect();
        let dropped: BTreeSet<&String> = contents
            .tables
            .iter()
            .filter(|table| here.contains_key(*table) && !kept.contains(table))
            .collect();
        for dependent in self.dependents()? {
            if !dropped.contains(&dependent.on) {
                continue;
            }
            // Dropped with its table, or dropped and added again by the restore.
            let restored = match dependent.kind {
                "foreign key" => {
                    dropped.contains(&dependent.table)
                        || toc.has(
                            "FK CONSTRAINT",
                            &format!("{} {}", dependent.table, dependent.name),
                        )
                }
                _ => {
                    toc.has("VIEW", &dependent.table)
                        || toc.has("MATERIALIZED VIEW", &dependent.table)
                }
            };
            if !restored {
                contents.blockers.push(match dependent.kind {
                    "foreign key" => format!(
                        "foreign key {} of {} references {}",
                        dependent.name, dependent.table, dependent.on
                    ),
                    kind => format!("{kind} {} reads {}", dependent.table, dependent.on),
                });
            }
        }
        Ok(contents)
    }

    /// Foreign keys and views of this database, and the tables they depend on.
    fn dependents(&self) -> Result<Vec<Dependent>, Error> {
        let (runtime, client) = self.session()?;
        runtime.block_on(async {
            let rows = client
                .query(
                    "SELECT 'foreign key', sn.nspname || '.' || sc.relname, con.conname, tn.nspname || '.' || tc.relname
                       FROM pg_constraint con
                       JOIN pg_class sc ON sc.oid = con.conrelid JOIN pg_namespace sn ON sn.oid = sc.relnamespace
                       JOIN pg_class tc ON tc.oid = con.confrelid JOIN pg_namespace tn ON tn.oid = tc.relnamespace
                      WHERE con.contype = 'f'
                     UNION
                     SELECT CASE v.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END,
                            vn.nspname || '.' || v.relname, '', tn.nspname || '.' || t.relname
                       FROM pg_depend d
                       JOIN pg_rewrite r ON r.oid = d.objid
                       JOIN pg_class v ON v.oid = r.ev_class JOIN pg_namespace vn ON vn.oid = v.relnamespace
                       JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace
                      WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
                        AND d.deptype = 'n' AND v.oid <> t.oid AND t.relkind IN ('r', 'p')",
                    &[],
                )
                .await
                .map_err(|error| fail(describe(&error)))?;
            Ok(rows
                .iter()
                .map(|row| Dependent {
                    kind: match row.get::<_, String>(0).as_str() {
                        "foreign key" => "foreign key",
                        "materialized view" => "materialized view",
                        _ => "view",
                    },
                    table: row.get(1),
                    name: row.get(2),
                    on: row.get(3),
                })
                .collect())
        })
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

    /// Marks this database as one `backup` made, with `marker` as its comment.
    pub fn mark(&self, marker: &str) -> Result<(), Error> {
        let (runtime, client) = self.maintenance()?;
        runtime.block_on(async {
            client
                .batch_execute(&format!(
                    "COMMENT ON DATABASE {} IS '{}'",
                    quote(&self.database),
                    marker.replace('\'', "''")
                ))
                .await
                .map_err(|error| {
                    fail(format!(
                        "cannot mark database {}: {}",
                        self.database,
                        describe(&error)
                    ))
                })
        })
    }

    /// Drops databases `<prefix>…` on this server whose comment is `marker`
    /// and that no session uses: scratch databases left by drills that were
    /// killed. A database of that name without the marker is someone
    /// else's, and stays. (A running drill's database is in use, so it
    /// stays too; drills of a policy hold its lock.)
    pub fn drop_abandoned(&self, prefix: &str, marker: &str) -> Vec<String> {
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
                    "SELECT datname FROM pg_database
                     WHERE datname LIKE $1 AND shobj_description(oid, 'pg_database') = $2",
                    &[&pattern, &marker],
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

    fn pg_restore(&self) -> Command {
        let mut command = self.connection.command("pg_restore");
        command
            .args(["--clean", "--if-exists", "--no-password", "--exit-on-error"])
            .arg(format!("--dbname={}", conninfo_dbname(&self.database)))
            .env("PGAPPNAME", locks::application_name());
        command
    }

    /// Restores `record` here; `contents` says what it replaces, and what it
    /// leaves as it is.
    fn restore_with(
        &self,
        destination: &dyn Destination,
        record: &BackupRecord,
        jobs: Option<u32>,
        contents: Option<&Contents>,
    ) -> Result<String, Failed> {
        let untouched = Failed::untouched;
        if !self.exists().map_err(untouched)? {
            self.create().map_err(untouched)?;
        }
        let kept = contents.and_then(|contents| contents.kept.as_ref());
        // `pg_restore --use-list`: the table of contents less what is kept.
        let list = kept
            .map(|kept| {
                let mut file = scratch_file(".list")?;
                file.write_all(kept.keep.list.as_bytes())
                    .and_then(|()| file.flush())
                    .map_err(|error| fail(format!("cannot write the restore list: {error}")))?;
                Ok(file)
            })
            .transpose()
            .map_err(untouched)?;
        let mut command = self.pg_restore();
        if let Some(list) = &list {
            command.arg(format!("--use-list={}", list.path().display()));
        }
        let watch = locks::LockWatch::start(
            self.connection.with_database(&self.database),
            self.describe(),
            self.lock_timeout,
        );
        let restored = match jobs {
            // Not one transaction: first make sure no session holds what it drops.
            Some(jobs) => self
                .probe_locks(contents)
                .map_err(Failed::untouched)
                .and_then(|()| self.restore_parallel(command, destination, record, jobs)),
            None => self.restore_streamed(command, destination, record),
        };
        let waited = watch.stop();
        restored.map_err(|failed| {
            if !waited.gave_up && !failed.error.to_string().contains("lock timeout") {
                return failed;
            }
            Failed {
                error: Error::Restore(format!(
                    "pg_restore gave up waiting for a lock after the lock timeout ({}, --lock-timeout){}{}",
                    locks::describe_timeout(self.lock_timeout),
                    waited
                        .waits
                        .map_or_else(String::new, |waits| format!(": it waited for {waits}")),
                    if failed.touched {
                        ""
                    } else {
                        "; its transaction was rolled back"
                    }
                )),
                touched: failed.touched,
            }
        })
    }

    /// Takes, and gives back at once, the locks `pg_restore --clean` needs on
    /// the tables of `contents` it drops, waiting no longer than the lock
    /// timeout: a restore that is not one transaction must not stop half way
    /// for a lock. (Under the restore's application name, so that the lock
    /// watcher says what it waits for.)
    fn probe_locks(&self, contents: Option<&Contents>) -> Result<(), Error> {
        let Some(contents) = contents else {
            return Ok(());
        };
        let here = self.tables()?;
        let kept: BTreeSet<&String> = contents.kept.iter().flat_map(Kept::tables).collect();
        let tables: Vec<String> = contents
            .tables
            .iter()
            .filter(|table| here.contains(*table) && !kept.contains(table))
            .filter_map(|table| table.split_once('.'))
            .map(|(schema, name)| format!("{}.{}", quote(schema), quote(name)))
            .collect();
        if tables.is_empty() {
            return Ok(());
        }
        let (runtime, client) = self.session()?;
        runtime.block_on(async {
            let probed = client
                .batch_execute(&format!(
                    "BEGIN; SET LOCAL application_name = '{}'; SET LOCAL lock_timeout = {};
                     LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
                    locks::application_name(),
                    self.lock_timeout.as_millis(),
                    tables.join(", ")
                ))
                .await
                .map_err(|error| fail(describe(&error)));
            let _ = client.batch_execute("ROLLBACK").await;
            probed
        })
    }

    fn restore_streamed(
        &self,
        mut command: Command,
        destination: &dyn Destination,
        record: &BackupRecord,
    ) -> Result<String, Failed> {
        command.arg("--single-transaction");
        // A damaged stream is cut short, so pg_restore cannot commit it.
        let Streamed {
            streamed,
            status,
            stderr,
        } = stream_into(command, destination, record, "pg_restore")
            .map_err(|error| Failed::untouched(fail(format!("cannot run pg_restore: {error}"))))?;
        let succeeded = status.as_ref().is_ok_and(std::process::ExitStatus::success);
        if let Err(problem) = streamed {
            let error = crate::database::streaming_error(record, problem, |_| {
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
            crate::format::human_bytes(record.metadata.artifact.uncompressed_size)
        ))
    }

    fn restore_parallel(
        &self,
        mut command: Command,
        destination: &dyn Destination,
        record: &BackupRecord,
        jobs: u32,
    ) -> Result<String, Failed> {
        let mut temporary = scratch_file(".pgdump").map_err(Failed::untouched)?;
        {
            let mut writer = BufWriter::with_capacity(1 << 20, temporary.as_file_mut());
            verify::verify_into(destination, record, &mut writer).map_err(|problem| {
                Failed::untouched(crate::database::streaming_error(
                    record,
                    problem,
                    |reason| fail(format!("cannot write the decompressed copy: {reason}")),
                ))
            })?;
            writer
                .flush()
                .map_err(|error| Failed::untouched(fail(error)))?;
        }
        let output = command
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
            crate::format::human_bytes(record.metadata.artifact.uncompressed_size)
        ))
    }

    /// Row counts of every table the sidecar counts, but those `kept` (which
    /// must still be there, and not emptied).
    fn check_with(&self, metadata: &BackupMetadata, kept: Option<&Kept>) -> Result<Checked, Error> {
        let mut expected = metadata.source.row_counts.clone();
        for table in kept.into_iter().flat_map(Kept::tables) {
            expected.remove(table);
        }
        let actual = self
            .count_tables(expected.keys())
            .map_err(|error| Error::Check(error.to_string()))?;
        crate::database::compare_counts(&expected, &actual)?;
        let tables = actual.len();
        let mut detail = format!(
            "row counts of {tables} table{} match",
            if tables == 1 { "" } else { "s" }
        );
        if let Some(kept) = kept {
            let now = self
                .count_tables(kept.rows_before.keys())
                .map_err(|error| Error::Check(error.to_string()))?;
            let mut problems = Vec::new();
            let mut found = Vec::new();
            for (table, before) in &kept.rows_before {
                match now.get(table) {
                    None => problems.push(format!("{table}, which the restore keeps, is gone")),
                    Some(0) if *before > 0 => problems.push(format!(
                        "{table}, which the restore keeps, had {before} rows and has none"
                    )),
                    Some(rows) => found.push(format!("{table} ({rows} rows)")),
                }
            }
            if !problems.is_empty() {
                return Err(Error::Check(problems.join("; ")));
            }
            if !found.is_empty() {
                detail.push_str(&format!("; kept as they were: {}", found.join(", ")));
            }
        }
        Ok(Checked {
            detail,
            row_counts: actual,
            warnings: Vec::new(),
        })
    }

    /// Rows of every table the sidecar counts that exists here.
    fn row_counts(&self, metadata: &BackupMetadata) -> Result<BTreeMap<String, u64>, Error> {
        self.count_tables(metadata.source.row_counts.keys())
    }

    /// Rows of each of `tables` (`schema.table`) that exists here.
    fn count_tables<'a>(
        &self,
        tables: impl IntoIterator<Item = &'a String>,
    ) -> Result<BTreeMap<String, u64>, Error> {
        let (runtime, client) = self.session()?;
        let mut actual = BTreeMap::new();
        runtime.block_on(async {
            for table in tables {
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
        let (runtime, client) = self.session()?;
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
                .batch_execute(&format!(
                    "BEGIN; SET LOCAL lock_timeout = {}; {}; COMMIT",
                    self.lock_timeout.as_millis(),
                    statements.join("; ")
                ))
                .await
                .map_err(|error| fail(describe(&error)))
        })
    }
}

impl Target for PostgresTarget {
    fn describe(&self) -> String {
        format!(
            "PostgreSQL database {} on {}",
            self.database,
            self.connection.server()
        )
    }

    fn source_spec(&self) -> SourceSpec {
        SourceSpec::Postgres(self.spec.clone())
    }

    fn remove(&self) -> Result<(), Error> {
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

    fn inspect(&mut self, contents: Option<&str>) -> Result<TargetInfo, Error> {
        let mut info = self.inspect_server()?;
        self.contents = contents
            .map(|listing| self.contents(listing, info.exists))
            .transpose()?;
        if self.kept().is_some() {
            info.replaces.push_str(", but what it keeps (below)");
        }
        if let Some(contents) = &self.contents
            && !contents.blockers.is_empty()
        {
            return Err(Error::Target(format!(
                "the backup does not hold everything that depends on the tables it replaces, so pg_restore --clean could not drop them: {}. Drop those objects first, or restore into another database with --to",
                contents.blockers.join("; ")
            )));
        }
        Ok(info)
    }

    fn restore(
        &self,
        destination: &dyn Destination,
        record: &BackupRecord,
        rollback: bool,
    ) -> Result<String, Failed> {
        if rollback {
            // A safety backup is the whole database as it was: put back whole.
            self.restore_with(destination, record, None, None)
        } else {
            self.restore_with(destination, record, self.jobs, self.contents.as_ref())
        }
    }

    fn check(&self, metadata: &BackupMetadata, rollback: bool) -> Result<Checked, Error> {
        self.check_with(metadata, if rollback { None } else { self.kept() })
    }

    fn count_rows(&self, metadata: &BackupMetadata) -> BTreeMap<String, u64> {
        self.row_counts(metadata).unwrap_or_default()
    }

    fn remove_added(&self, before: Option<&BTreeSet<String>>) -> Result<(), Error> {
        match before {
            Some(before) => self.drop_tables_not_in(before),
            None => Ok(()),
        }
    }

    fn plan(&self, metadata: &BackupMetadata, info: &TargetInfo) -> TargetPlan {
        super::plan::plan(self, metadata, info)
    }
}

/// A private scratch file for a restore (`<state>/tmp/backup-restore-<pid>-…`,
/// 0600), removed when dropped; those of killed restores go first.
fn scratch_file(suffix: &str) -> Result<tempfile::NamedTempFile, Error> {
    crate::state::scratch_file("backup-restore-", suffix).map_err(|error| fail(error.to_string()))
}

/// A libpq connection string naming only a database (no credential).
fn conninfo_dbname(database: &str) -> String {
    format!(
        "dbname='{}'",
        database.replace('\\', "\\\\").replace('\'', "\\'")
    )
}

fn last_lines(text: &str) -> String {
    crate::database::last_lines(text, 3)
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
