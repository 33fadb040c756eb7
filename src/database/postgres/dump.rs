//! PostgreSQL, dumped with `pg_dump` in custom format and streamed.
//!
//! One connection opens a REPEATABLE READ transaction and exports its
//! snapshot; `pg_dump --snapshot` dumps exactly that state, and the row counts
//! recorded for post-restore checks are taken in the same snapshot. The dump
//! also streams through `pg_restore --list`, which must read it, and whose
//! table list says which tables' rows the dump holds. Connection settings
//! reach the child processes through their environment only (`PGPASSWORD`
//! never appears in argv), and `--no-password` keeps them from prompting.
//! TLS follows libpq's `sslmode`, on both connections (see [`super::tls`]).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr as _;

use tokio_postgres::config::{Host, SslMode as ClientSslMode};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, NoTls, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::tls;
use crate::database::{Dump, DumpError as Error, Report};
use crate::policy::secret::{Secret, Template};
use crate::policy::spec::{PostgresSpec, SslMode};

pub struct Server {
    config: Config,
    password: Option<Secret>,
    sslmode: Option<SslMode>,
    ssl_root_cert: Option<PathBuf>,
    spec: PostgresSpec,
    bin_dir: Option<PathBuf>,
}

fn resolve(value: &Option<String>) -> Result<Option<Secret>, Error> {
    value
        .as_deref()
        .map(|text| Template::parse(text).and_then(|template| template.resolve()))
        .transpose()
        .map_err(Error::from)
}

impl Server {
    /// Resolves the connection settings of `spec`; connects nothing yet.
    pub fn open(spec: &PostgresSpec) -> Result<Server, Error> {
        let mut url_tls = UrlTls::default();
        let mut config = match resolve(&spec.url)? {
            // Parsed here, never handed to a child as text: it may hold a password.
            Some(url) => {
                let (url, tls) = split_tls_parameters(url.expose())?;
                url_tls = tls;
                Config::from_str(&url).map_err(|error| {
                    connect_error(format!("the connection URL is not valid: {error}"))
                })?
            }
            None => Config::new(),
        };
        if let Some(host) = resolve(&spec.host)? {
            config.host(host.expose());
        }
        if let Some(port) = spec.port {
            config.port(port);
        }
        if let Some(user) = resolve(&spec.user)? {
            config.user(user.expose());
        }
        if let Some(database) = resolve(&spec.database)? {
            config.dbname(database.expose());
        }
        let password = match resolve(&spec.password)? {
            Some(password) => Some(password),
            None => config
                .get_password()
                .map(|bytes| Secret::new(String::from_utf8_lossy(bytes).into_owned())),
        };
        if let Some(password) = &password {
            config.password(password.expose());
        }
        if config.get_hosts().is_empty() {
            config.host("localhost");
        }
        if config.get_user().is_none() {
            let user = std::env::var("USER").unwrap_or_else(|_| "postgres".to_owned());
            config.user(&user);
        }
        config.application_name("backup");
        config.connect_timeout(std::time::Duration::from_secs(10));
        // The policy's fields win over the URL's parameters.
        let sslmode = spec.sslmode.or(url_tls.sslmode);
        let ssl_root_cert = spec.ssl_root_cert.clone().or(url_tls.root_cert);
        config.ssl_mode(match sslmode {
            Some(SslMode::Disable) => ClientSslMode::Disable,
            None | Some(SslMode::Allow | SslMode::Prefer) => ClientSslMode::Prefer,
            Some(SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull) => {
                ClientSslMode::Require
            }
        });
        Ok(Server {
            config,
            password,
            sslmode,
            ssl_root_cert,
            spec: spec.clone(),
            bin_dir: spec.bin_dir.clone(),
        })
    }

    /// The environment that points a libpq program at this database.
    fn child_environment(&self) -> Vec<(&'static str, String)> {
        let mut environment = Vec::new();
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|host| match host {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        environment.push(("PGHOST", hosts.join(",")));
        if !self.config.get_ports().is_empty() {
            let ports: Vec<String> = self.config.get_ports().iter().map(u16::to_string).collect();
            environment.push(("PGPORT", ports.join(",")));
        }
        if let Some(user) = self.config.get_user() {
            environment.push(("PGUSER", user.to_owned()));
        }
        if let Some(database) = self.config.get_dbname() {
            environment.push(("PGDATABASE", database.to_owned()));
        }
        if let Some(password) = &self.password {
            environment.push(("PGPASSWORD", password.expose().to_owned()));
        }
        if let Some(sslmode) = self.sslmode {
            let mode = match sslmode {
                SslMode::Disable => "disable",
                SslMode::Allow => "allow",
                SslMode::Prefer => "prefer",
                SslMode::Require => "require",
                SslMode::VerifyCa => "verify-ca",
                SslMode::VerifyFull => "verify-full",
            };
            environment.push(("PGSSLMODE", mode.to_owned()));
        }
        if let Some(root_cert) = &self.ssl_root_cert {
            environment.push(("PGSSLROOTCERT", root_cert.display().to_string()));
        }
        environment.push(("PGCONNECT_TIMEOUT", "10".to_owned()));
        environment.push(("PGAPPNAME", "backup".to_owned()));
        environment
    }

    /// The path of the libpq program `name` this source uses (`pg_restore`, `psql`).
    pub fn program(&self, name: &str) -> PathBuf {
        program_path(self.bin_dir.as_deref(), name)
    }

    /// The database this connects to, if named.
    pub fn database(&self) -> Option<&str> {
        self.config.get_dbname()
    }

    /// The server, for people: `host:port` (never a credential).
    pub fn server(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(name)) => name.clone(),
            Some(Host::Unix(path)) => path.display().to_string(),
            None => "localhost".to_owned(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}")
    }

    /// The same server, database `database`.
    pub fn with_database(&self, database: &str) -> Server {
        let mut other = Server {
            config: self.config.clone(),
            password: self.password.clone(),
            sslmode: self.sslmode,
            ssl_root_cert: self.ssl_root_cert.clone(),
            spec: self.spec.clone(),
            bin_dir: self.bin_dir.clone(),
        };
        other.config.dbname(database);
        other
    }

    /// Connects to `database` (default: this source's) on a runtime of its
    /// own: dumps, restores and drills all connect this way.
    pub fn connect_blocking(
        &self,
        database: Option<&str>,
    ) -> Result<(tokio::runtime::Runtime, Client), Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| connect_error(error.to_string()))?;
        // libpq's default sslmode is `prefer`.
        let tls = tls::client_config(
            self.sslmode.unwrap_or(SslMode::Prefer),
            self.ssl_root_cert.as_deref(),
        )
        .map_err(connect_error)?;
        let mut config = self.config.clone();
        if let Some(database) = database {
            config.dbname(database);
        }
        let client = runtime.block_on(async {
            match tls {
                Some(tls) => connect(&config, MakeRustlsConnect::new(tls)).await,
                None => connect(&config, NoTls).await,
            }
        })?;
        Ok((runtime, client))
    }

    /// A command running the libpq program `name` against this database,
    /// configured through its environment only (no credential in argv).
    pub fn command(&self, name: &str) -> Command {
        let mut command = Command::new(self.program(name));
        // Only what we set reaches libpq: stray PG* variables must not redirect the dump.
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|key| key.starts_with("PG")) {
                command.env_remove(key);
            }
        }
        command.envs(self.child_environment());
        command
    }
}

/// `name` in `bin_dir`, else in the newest `/usr/lib/postgresql/*/bin`, else on PATH.
pub fn program_path(bin_dir: Option<&Path>, name: &str) -> PathBuf {
    if let Some(bin_dir) = bin_dir {
        return bin_dir.join(name);
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let program = entry.path().join("bin").join(name);
            program.is_file().then_some((version, program))
        })
        .max_by_key(|(version, _)| *version);
    newest.map_or_else(|| PathBuf::from(name), |(_, program)| program)
}

impl Dump for Server {
    fn dump(&mut self, sink: &mut dyn Write) -> Result<Report, Error> {
        let (runtime, client) = self.connect_blocking(None)?;
        let (snapshot, server_version) = runtime.block_on(async {
            client
                .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await
                .map_err(|error| query_error(&error))?;
            let snapshot: String = client
                .query_one("SELECT pg_export_snapshot()", &[])
                .await
                .map_err(|error| query_error(&error))?
                .get(0);
            let version: String = client
                .query_one("SHOW server_version", &[])
                .await
                .map_err(|error| query_error(&error))?
                .get(0);
            Ok::<_, Error>((snapshot, version))
        })?;
        let server_version = server_version
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_owned();

        let mut dump = self.command("pg_dump");
        dump.args(["--format=custom", "--compress=0", "--no-password"])
            .arg(format!("--snapshot={snapshot}"));
        for (flag, values) in [
            ("--schema", &self.spec.schemas),
            ("--exclude-schema", &self.spec.exclude_schemas),
            ("--table", &self.spec.tables),
            ("--exclude-table", &self.spec.exclude_tables),
            ("--exclude-table-data", &self.spec.exclude_table_data),
        ] {
            for value in values {
                dump.arg(format!("{flag}={value}"));
            }
        }
        dump.args(&self.spec.pg_dump_options);
        let mut dump = spawn(dump, "pg_dump", false)?;
        let mut list = self.command("pg_restore");
        list.args(["--list"]);
        let mut list = spawn(list, "pg_restore", true)?;

        let dump_stderr = drain(dump.stderr.take());
        let list_stdout = drain(list.stdout.take());
        let list_stderr = drain(list.stderr.take());
        let mut list_stdin = list.stdin.take();
        let mut output = dump
            .stdout
            .take()
            .ok_or_else(|| Error::Sink(io::Error::other("no pg_dump output")))?;
        let pumped = crate::database::pump(&mut output, sink, &mut |chunk| {
            if let Some(stdin) = list_stdin.as_mut()
                && stdin.write_all(chunk).is_err()
            {
                // pg_restore has what it needs (or failed: its exit status says which).
                list_stdin = None;
            }
        });
        drop(list_stdin);
        drop(output);
        let dump_status = dump.wait();
        let list_status = list.wait();
        let dump_stderr = joined(dump_stderr);
        let list_stdout = joined(list_stdout);
        let list_stderr = joined(list_stderr);
        let bytes = match pumped {
            Ok(bytes) => bytes,
            Err(error) => {
                let _ = dump.kill();
                return Err(Error::Sink(error));
            }
        };
        let dump_status = dump_status.map_err(|source| Error::Spawn {
            program: "pg_dump".to_owned(),
            source,
        })?;
        if !dump_status.success() {
            return Err(Error::Tool {
                program: "pg_dump",
                status: dump_status.to_string(),
                stderr: last_lines(&dump_stderr),
            });
        }
        if bytes == 0 {
            return Err(Error::Empty);
        }
        let list_status = list_status.map_err(|source| Error::Spawn {
            program: "pg_restore".to_owned(),
            source,
        })?;
        if !list_status.success() {
            return Err(Error::Unreadable {
                tool: "pg_restore",
                status: list_status.to_string(),
                stderr: last_lines(&list_stderr),
            });
        }
        let tables = tables_with_data(&list_stdout);
        let row_counts = runtime.block_on(async {
            let mut counts = BTreeMap::new();
            for (schema, table) in &tables {
                let query = format!("SELECT count(*) FROM {}.{}", quote(schema), quote(table));
                let count: i64 = client
                    .query_one(&query, &[])
                    .await
                    .map_err(|error| query_error(&error))?
                    .get(0);
                counts.insert(
                    format!("{schema}.{table}"),
                    u64::try_from(count).unwrap_or(0),
                );
            }
            client
                .batch_execute("COMMIT")
                .await
                .map_err(|error| query_error(&error))?;
            Ok::<_, Error>(counts)
        })?;
        Ok(Report {
            server_version: Some(server_version),
            database: self.config.get_dbname().map(str::to_owned),
            row_counts,
            physical: None,
        })
    }
}

/// Connects and drives the connection on the current runtime.
async fn connect<T>(config: &Config, tls: T) -> Result<Client, Error>
where
    T: MakeTlsConnect<Socket> + 'static,
    T::Stream: Send + 'static,
{
    let (client, connection) = config
        .connect(tls)
        .await
        .map_err(|error| connect_error(describe(&error)))?;
    tokio::spawn(connection);
    Ok(client)
}

/// TLS settings given as URL parameters.
#[derive(Debug, Default)]
struct UrlTls {
    sslmode: Option<SslMode>,
    root_cert: Option<PathBuf>,
}

/// Takes `sslmode` and `sslrootcert` out of a URL's query (tokio-postgres
/// knows only three of libpq's six modes) and returns the rest.
fn split_tls_parameters(url: &str) -> Result<(String, UrlTls), Error> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), UrlTls::default()));
    };
    let mut tls = UrlTls::default();
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("sslmode", value)) => {
                let mode = serde_json::from_value(serde_json::Value::String(value.to_owned()))
                    .map_err(|_| {
                        connect_error(format!(
                            "the connection URL has an unknown sslmode `{value}`"
                        ))
                    })?;
                tls.sslmode = Some(mode);
            }
            Some(("sslrootcert", value)) => tls.root_cert = Some(PathBuf::from(value)),
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, tls))
}

fn spawn(mut command: Command, program: &str, stdin: bool) -> Result<Child, Error> {
    command
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command.spawn().map_err(|source| Error::Spawn {
        program: program.to_owned(),
        source,
    })
}

/// Copies the dump to the sink and to `pg_restore --list`, which may stop
/// reading once it has the table of contents. Returns the bytes copied.
pub(crate) use crate::database::{drain, joined};

fn last_lines(text: &str) -> String {
    crate::database::last_lines(text, 5)
}

/// The `(schema, table)` pairs whose rows a `pg_restore --list` says the dump holds.
pub fn tables_with_data(listing: &str) -> Vec<(String, String)> {
    super::toc::Toc::parse(listing).tables_with_data()
}

/// An SQL identifier, quoted.
/// A connection failure, as dumps report it.
fn connect_error(reason: String) -> Error {
    Error::Connect {
        database: "PostgreSQL",
        reason,
    }
}

/// A failed query, as dumps report it.
fn query_error(error: &tokio_postgres::Error) -> Error {
    Error::Query {
        database: "PostgreSQL",
        reason: describe(error),
    }
}

pub fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// A client error with its server-side detail, if any (never the connection settings).
pub fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(database) => database.message().to_owned(),
        None => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tables_with_data_in_a_listing() {
        let listing = ";\n; Archive created at 2026-11-25\n;\n215; 1259 16385 TABLE public orders app\n3345; 0 16385 TABLE DATA public orders app\n3346; 0 16390 TABLE DATA billing order lines app\n3347; 0 0 SEQUENCE SET public orders_id_seq app\n";
        assert_eq!(
            tables_with_data(listing),
            vec![
                ("public".to_owned(), "orders".to_owned()),
                ("billing".to_owned(), "order lines".to_owned())
            ]
        );
    }

    #[test]
    fn keeps_passwords_out_of_arguments() {
        let spec = PostgresSpec {
            url: Some("postgresql://app:s3cret@db1:6432/app".to_owned()),
            ..PostgresSpec::default()
        };
        let postgres = Server::open(&spec).unwrap();
        let command = postgres.command("pg_dump");
        assert_eq!(command.get_args().count(), 0);
        let environment: BTreeMap<String, String> = command
            .get_envs()
            .filter_map(|(key, value)| {
                Some((key.to_str()?.to_owned(), value?.to_str()?.to_owned()))
            })
            .collect();
        assert_eq!(environment["PGPASSWORD"], "s3cret");
        assert_eq!(environment["PGHOST"], "db1");
        assert_eq!(environment["PGPORT"], "6432");
        assert_eq!(environment["PGDATABASE"], "app");
    }
}
