//! How `backup` reaches a MariaDB or MySQL server: the policy's connection
//! settings resolved once ([`Connection`]), handed to the stock clients
//! (`mariadb-dump`, `mariadb`) in a private option file that is their first
//! argument (`--defaults-extra-file`), made 0600 in the state folder's
//! `tmp/` and removed when the command is done. A password never reaches
//! a command line or an environment variable.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::database::DumpError;
use crate::policy::secret::{Secret, Template};
use crate::policy::spec::MysqlSpec;

/// The settings a client connects with (never printed whole).
#[derive(Clone)]
pub struct Connection {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub socket: Option<PathBuf>,
    pub user: Option<String>,
    password: Option<Secret>,
    pub database: Option<String>,
    bin_dir: Option<PathBuf>,
}

fn resolve(value: &Option<String>) -> Result<Option<Secret>, DumpError> {
    value
        .as_deref()
        .map(|text| Template::parse(text).and_then(|template| template.resolve()))
        .transpose()
        .map_err(DumpError::from)
}

fn connect_error(reason: impl Into<String>) -> DumpError {
    DumpError::Connect {
        database: "MariaDB",
        reason: reason.into(),
    }
}

impl Connection {
    /// Resolves the connection settings of `spec`; connects nothing yet.
    pub fn open(spec: &MysqlSpec) -> Result<Connection, DumpError> {
        let mut connection = match resolve(&spec.url)? {
            Some(url) => parse_url(url.expose())?,
            None => Connection {
                host: None,
                port: None,
                socket: None,
                user: None,
                password: None,
                database: None,
                bin_dir: None,
            },
        };
        if let Some(host) = resolve(&spec.host)? {
            connection.host = Some(host.expose().to_owned());
        }
        if let Some(port) = spec.port {
            connection.port = Some(port);
        }
        if let Some(socket) = &spec.socket {
            connection.socket = Some(socket.clone());
        }
        if let Some(user) = resolve(&spec.user)? {
            connection.user = Some(user.expose().to_owned());
        }
        if let Some(password) = resolve(&spec.password)? {
            connection.password = Some(password);
        }
        if let Some(database) = resolve(&spec.database)? {
            connection.database = Some(database.expose().to_owned());
        }
        connection.bin_dir = spec.bin_dir.clone();
        Ok(connection)
    }

    /// The same server, database `database`.
    pub fn with_database(&self, database: &str) -> Connection {
        let mut other = self.clone();
        other.database = Some(database.to_owned());
        other
    }

    /// The server, for people: `host:port` or the socket (never a credential).
    pub fn server(&self) -> String {
        match (&self.host, &self.socket) {
            (Some(host), _) if host != "localhost" => {
                format!("{host}:{}", self.port.unwrap_or(3306))
            }
            (_, Some(socket)) => socket.display().to_string(),
            _ => "localhost".to_owned(),
        }
    }

    /// The first of `names` found in `bin-dir` (or on `PATH`): `mariadb-dump`, else `mysqldump`.
    pub fn program(&self, names: &[&str]) -> PathBuf {
        let found = names.iter().find_map(|name| match &self.bin_dir {
            Some(folder) => {
                let path = folder.join(name);
                path.is_file().then_some(path)
            }
            None => std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|folder| folder.join(name))
                    .find(|path| path.is_file())
            }),
        });
        found.unwrap_or_else(|| {
            let first = names.first().copied().unwrap_or("mariadb");
            self.bin_dir
                .as_ref()
                .map_or_else(|| PathBuf::from(first), |folder| folder.join(first))
        })
    }

    /// A private option file with these settings (0600, in the state
    /// folder's `tmp/`, removed when dropped).
    pub fn option_file(&self) -> Result<tempfile::NamedTempFile, DumpError> {
        let mut file = crate::state::scratch_file("backup-mysql-", ".cnf")
            .map_err(|error| DumpError::Failed(error.to_string()))?;
        file.write_all(self.options_text()?.as_bytes())
            .and_then(|()| file.flush())
            .map_err(|error| {
                DumpError::Failed(format!("cannot write the client option file: {error}"))
            })?;
        Ok(file)
    }

    /// The option file's text: `[client]` settings every client reads.
    fn options_text(&self) -> Result<String, DumpError> {
        let mut text = String::from("[client]\n");
        let mut set = |key: &str, value: &str| -> Result<(), DumpError> {
            text.push_str(&format!("{key}={}\n", quote_option(key, value)?));
            Ok(())
        };
        if let Some(host) = &self.host {
            set("host", host)?;
        }
        if let Some(port) = self.port {
            set("port", &port.to_string())?;
        }
        if let Some(socket) = &self.socket {
            set("socket", &socket.display().to_string())?;
        }
        if let Some(user) = &self.user {
            set("user", user)?;
        }
        if let Some(password) = &self.password {
            set("password", password.expose())?;
        }
        Ok(text)
    }

    /// A command running the first of `names` against this server, its
    /// option file `options` as the first argument.
    pub fn command(&self, names: &[&str], options: &Path) -> Command {
        let mut command = Command::new(self.program(names));
        command.arg(format!("--defaults-extra-file={}", options.display()));
        // Only what we set reaches the client: stray MYSQL_* variables must not redirect it.
        for key in [
            "MYSQL_PWD",
            "MYSQL_HOST",
            "MYSQL_TCP_PORT",
            "MYSQL_UNIX_PORT",
        ] {
            command.env_remove(key);
        }
        command
    }

    /// Runs `sql` with the `mariadb` client (in `database`, if given) and
    /// returns its batch output: one line per row, tab-separated columns.
    pub fn query(&self, database: Option<&str>, sql: &str) -> Result<String, DumpError> {
        self.query_with(database, sql, false)
    }

    /// Like [`Connection::query`]; with `force`, statements after a failing
    /// one still run (their errors go to stderr, which is ignored).
    pub fn query_with(
        &self,
        database: Option<&str>,
        sql: &str,
        force: bool,
    ) -> Result<String, DumpError> {
        let options = self.option_file()?;
        let mut command = self.command(CLIENT, options.path());
        command.args(["--batch", "--skip-column-names", "--connect-timeout=10"]);
        if force {
            command.arg("--force");
        }
        if let Some(database) = database {
            command.arg(format!("--database={database}"));
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| DumpError::Spawn {
                program: self.program(CLIENT).display().to_string(),
                source,
            })?;
        let stdout = crate::database::drain(child.stdout.take());
        let stderr = crate::database::drain(child.stderr.take());
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(sql.as_bytes());
        }
        let status = child.wait();
        let stdout = crate::database::joined(stdout);
        let stderr = crate::database::joined(stderr);
        let status = status.map_err(|source| DumpError::Spawn {
            program: self.program(CLIENT).display().to_string(),
            source,
        })?;
        if !status.success() && !force {
            return Err(client_error(&stderr));
        }
        Ok(stdout)
    }
}

/// The client program: `mariadb`, else `mysql`.
pub const CLIENT: &[&str] = &["mariadb", "mysql"];

/// The dump program: `mariadb-dump`, else `mysqldump`.
pub const DUMPER: &[&str] = &["mariadb-dump", "mysqldump"];

/// A client's failure, as a dump error: cannot connect, or a query failed.
pub fn client_error(stderr: &str) -> DumpError {
    let message = last_lines(stderr);
    if is_connect_failure(stderr) {
        connect_error(message)
    } else {
        DumpError::Query {
            database: "MariaDB",
            reason: message,
        }
    }
}

/// Whether a client's error output says it could not connect or log in.
pub fn is_connect_failure(stderr: &str) -> bool {
    [
        "Can't connect",
        "Access denied",
        "Unknown database",
        "Unknown MySQL server host",
    ]
    .iter()
    .any(|needle| stderr.contains(needle))
}

/// The last lines of a client's error output, joined.
pub fn last_lines(text: &str) -> String {
    crate::database::last_lines(text, 3)
}

/// An option file value, double-quoted with the escapes the clients read
/// (`\\`, `\"`); refused if it holds a line break, which no option file can.
fn quote_option(key: &str, value: &str) -> Result<String, DumpError> {
    if value.contains(['\n', '\r']) {
        return Err(DumpError::Failed(format!(
            "the MariaDB {key} holds a line break, which a client option file cannot carry"
        )));
    }
    Ok(format!(
        "\"{}\"",
        value.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// `mysql://user:password@host:port/database` (or `mariadb://`), with
/// percent-escapes; `?socket=/path` names a Unix socket.
fn parse_url(url: &str) -> Result<Connection, DumpError> {
    let invalid = |why: &str| connect_error(format!("the connection URL is not valid: {why}"));
    let rest = url
        .strip_prefix("mysql://")
        .or_else(|| url.strip_prefix("mariadb://"))
        .ok_or_else(|| invalid("it does not start with mysql://"))?;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        Some(userinfo) => match userinfo.split_once(':') {
            Some((user, password)) => (Some(decode(user)?), Some(decode(password)?)),
            None => (Some(decode(userinfo)?), None),
        },
        None => (None, None),
    };
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| invalid("unclosed `[` in the host"))?;
        (host.to_owned(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (hostport.to_owned(), None),
        }
    };
    let port = port
        .filter(|port| !port.is_empty())
        .map(|port| {
            port.parse::<u16>()
                .map_err(|_| invalid("the port is not a number"))
        })
        .transpose()?;
    let mut socket = None;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        match pair.split_once('=') {
            Some(("socket", value)) => socket = Some(PathBuf::from(decode(value)?)),
            _ => return Err(invalid("the only parameter it takes is `socket`")),
        }
    }
    let database = Some(decode(path)?).filter(|database| !database.is_empty());
    Ok(Connection {
        host: (!host.is_empty()).then_some(decode(&host)?),
        port,
        socket,
        user: user.filter(|user| !user.is_empty()),
        password: password.map(Secret::new),
        database,
        bin_dir: None,
    })
}

/// `%XX` escapes decoded.
fn decode(text: &str) -> Result<String, DumpError> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text
                .get(index + 1..index + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| connect_error("the connection URL has a bad %-escape"))?;
            decoded.push(hex);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded)
        .map_err(|_| connect_error("the connection URL is not UTF-8 once decoded"))
}

/// An SQL string literal for any text, without escaping rules to get wrong.
pub fn literal(text: &str) -> String {
    format!(
        "CONVERT(X'{}' USING utf8mb4)",
        crate::inventory::metadata::hex(text.as_bytes())
    )
}

/// An identifier, backquoted.
pub fn quote(identifier: &str) -> String {
    format!("`{}`", identifier.replace('`', "``"))
}

/// Hex text (as `HEX()` prints it) decoded back to text.
pub fn unhex(text: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..text.len())
        .step_by(2)
        .map(|index| {
            text.get(index..index + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect();
    String::from_utf8(bytes?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_urls_and_keeps_the_password_out_of_arguments() {
        let spec = MysqlSpec {
            url: Some("mysql://app:s%40cret%22x@db1:3307/shop".to_owned()),
            ..MysqlSpec::default()
        };
        let connection = Connection::open(&spec).unwrap();
        assert_eq!(connection.host.as_deref(), Some("db1"));
        assert_eq!(connection.port, Some(3307));
        assert_eq!(connection.user.as_deref(), Some("app"));
        assert_eq!(connection.database.as_deref(), Some("shop"));
        assert_eq!(connection.server(), "db1:3307");
        let text = connection.options_text().unwrap();
        assert!(text.contains("password=\"s@cret\\\"x\"\n"), "{text}");
        let command = connection.command(CLIENT, Path::new("/tmp/x.cnf"));
        let arguments: Vec<String> = command
            .get_args()
            .map(|argument| argument.to_string_lossy().into_owned())
            .collect();
        assert_eq!(arguments, ["--defaults-extra-file=/tmp/x.cnf"]);
        assert!(command.get_envs().all(|(_, value)| value.is_none()));
    }

    #[test]
    fn refuses_bad_urls() {
        for url in [
            "postgresql://db/app",
            "mysql://db:port/app",
            "mysql://db/app?ssl=1",
        ] {
            let spec = MysqlSpec {
                url: Some(url.to_owned()),
                ..MysqlSpec::default()
            };
            assert!(Connection::open(&spec).is_err(), "{url}");
        }
    }

    #[test]
    fn literals_and_identifiers() {
        assert_eq!(literal("a'b"), "CONVERT(X'612762' USING utf8mb4)");
        assert_eq!(quote("a`b"), "`a``b`");
        assert_eq!(unhex("612762").as_deref(), Some("a'b"));
    }
}
