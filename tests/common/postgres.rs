//! A throwaway PostgreSQL cluster: `initdb` + `pg_ctl` from the distribution's
//! packages, on a free port, in a temporary folder. As root it runs as the
//! `postgres` user (initdb refuses root). Stopped and removed on drop, so
//! also when a test fails.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The superuser's password; TCP connections use SCRAM with it.
pub const PASSWORD: &str = "harness-Pa55word-7f3c";

pub struct Cluster {
    pub port: u16,
    folder: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
}

fn newest_bin() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server packages are installed (.ci/setup)")
        .filter_map(Result::ok)
        .filter_map(|entry| {
            Some((
                entry.file_name().to_str()?.parse().ok()?,
                entry.path().join("bin"),
            ))
        })
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
        .1
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    pub fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    /// Like [`Cluster::start`], with `settings` (`name = value` lines)
    /// appended to `postgresql.conf` before the first start: e.g.
    /// `wal_level = replica`, `archive_mode = on`, `archive_command = '…'`.
    pub fn start_with(settings: &[String]) -> Cluster {
        let bin = newest_bin();
        let as_postgres = running_as_root();
        let folder = tempfile::Builder::new()
            .prefix("backup-pg-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(folder.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let password_file = folder.path().join("password");
        std::fs::write(&password_file, PASSWORD).unwrap();
        std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        if as_postgres {
            let status = Command::new("chown")
                .args(["postgres:", folder.path().to_str().unwrap()])
                .status()
                .unwrap();
            assert!(status.success());
        }
        let port = free_port();
        let cluster = Cluster {
            port,
            folder,
            bin,
            as_postgres,
        };
        let data = cluster.data();
        cluster.checked(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                &format!("--pwfile={}", password_file.display()),
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        std::fs::remove_file(&password_file).unwrap();
        if !settings.is_empty() {
            let conf = data.join("postgresql.conf");
            let mut text = std::fs::read_to_string(&conf).unwrap();
            for setting in settings {
                text.push_str(setting);
                text.push('\n');
            }
            std::fs::write(&conf, text).unwrap();
        }
        cluster.resume();
        cluster
    }

    /// Starts the server (again, after [`Cluster::stop`]) on the same port.
    pub fn resume(&self) {
        let data = self.data();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            self.port,
            self.folder.path().display()
        );
        let log = self.folder.path().join("server.log");
        self.checked(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
    }

    /// The data directory.
    pub fn data(&self) -> PathBuf {
        self.folder.path().join("data")
    }

    pub fn socket_dir(&self) -> &Path {
        self.folder.path()
    }

    pub fn bin(&self, program: &str) -> PathBuf {
        self.bin.join(program)
    }

    /// Runs a PostgreSQL program (as `postgres` when root).
    pub fn command(&self, program: &str) -> Command {
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command
                .args(["-u", "postgres", "--"])
                .arg(self.bin(program));
            command
        } else {
            Command::new(self.bin(program))
        };
        command.current_dir(self.folder.path());
        command
    }

    fn checked(&self, program: &str, args: &[&str]) -> Output {
        let output = self.command(program).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Runs SQL in `database` over the Unix socket and returns psql's unaligned output.
    pub fn sql(&self, database: &str, sql: &str) -> String {
        let port = self.port.to_string();
        let host = self.socket_dir().to_str().unwrap().to_owned();
        let output = self.checked(
            "psql",
            &[
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                &host,
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                database,
                "-c",
                sql,
            ],
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Every user table of `database` and its full contents, sorted.
    pub fn contents(&self, database: &str) -> std::collections::BTreeMap<String, String> {
        let tables = self.sql(
            database,
            "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables
             WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
        );
        tables
            .lines()
            .map(|table| {
                let rows = self.sql(
                    database,
                    &format!("SELECT coalesce(string_agg(r::text, E'\\n' ORDER BY r::text), '') FROM {table} r"),
                );
                (table.to_owned(), rows)
            })
            .collect()
    }

    /// Turns TLS on with a fresh CA and server certificate (valid for
    /// `127.0.0.1` and `db.test`, not `localhost`) and rejects TCP
    /// connections without TLS. Returns the CA's PEM file.
    pub fn enable_tls(&self) -> PathBuf {
        let tls = self.folder.path().join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        make_ca(&tls, "/CN=backup test CA");
        openssl(
            &tls,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=db.test",
            ],
        );
        std::fs::write(
            tls.join("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:db.test\n",
        )
        .unwrap();
        openssl(
            &tls,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
        );
        std::fs::set_permissions(
            tls.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        if self.as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&tls)
                .status()
                .unwrap();
            assert!(status.success());
        }
        let hba = self.data().join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(
            &hba,
            format!("hostnossl all all 0.0.0.0/0 reject\nhostnossl all all ::/0 reject\n{rules}"),
        )
        .unwrap();
        for setting in [
            format!("ssl_cert_file = '{}'", tls.join("server.crt").display()),
            format!("ssl_key_file = '{}'", tls.join("server.key").display()),
            "ssl = on".to_owned(),
        ] {
            self.sql("postgres", &format!("ALTER SYSTEM SET {setting}"));
        }
        self.sql("postgres", "SELECT pg_reload_conf()");
        std::thread::sleep(std::time::Duration::from_millis(300));
        tls.join("ca.pem")
    }

    /// A second, unrelated CA, which signed nothing the server holds.
    pub fn other_ca(&self) -> PathBuf {
        let folder = self.folder.path().join("other-ca");
        std::fs::create_dir_all(&folder).unwrap();
        make_ca(&folder, "/CN=unrelated CA")
    }

    /// A URL for `database` over TCP, without the password.
    pub fn url(&self, database: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn stop(&self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .args([
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output();
    }
}

/// Runs `openssl ARGS` in `folder`.
fn openssl(folder: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(folder)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A self-signed CA in `folder` (`ca.key`, `ca.pem`); returns `ca.pem`.
fn make_ca(folder: &Path, subject: &str) -> PathBuf {
    openssl(
        folder,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", subject,
        ],
    );
    folder.join("ca.pem")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether the tests run as root (CI does).
pub fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
        .unwrap_or(false)
}
