//! A throwaway MariaDB server, shared by the tests of one test binary:
//! `mariadb-install-db` + `mariadbd` from the distribution's packages, with
//! `--no-defaults` (nothing of the machine's own server's configuration),
//! on a free port and a socket in a temporary folder. As root it runs as
//! the `mysql` user in a folder that user owns. Started on first use and
//! stopped (and its folder removed) when the test binary exits, also when
//! tests failed; root connects over the socket without a password.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// The password of the `app` user, which connects over TCP: a canary that
/// must never appear in output, state, sidecars or argv.
pub const PASSWORD: &str = "mysql-Canary-5e2d9a";

pub struct Server {
    pub port: u16,
    folder: PathBuf,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static CHILD: Mutex<Option<(Child, PathBuf)>> = Mutex::new(None);

/// The shared server, started on first use.
pub fn server() -> &'static Server {
    SERVER.get_or_init(Server::start)
}

extern "C" fn stop_at_exit() {
    if let Ok(mut child) = CHILD.lock()
        && let Some((mut child, folder)) = child.take()
    {
        // SIGTERM: a clean shutdown, then the folder goes.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(folder);
    }
}

impl Server {
    fn start() -> Server {
        let as_mysql = super::postgres::running_as_root();
        let folder = tempfile::Builder::new()
            .prefix("backup-mysql-")
            .tempdir()
            .unwrap()
            .keep();
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
        if as_mysql {
            let status = Command::new("chown")
                .args(["mysql:", folder.to_str().unwrap()])
                .status()
                .unwrap();
            assert!(status.success());
        }
        let data = folder.join("data");
        let mut install = Command::new("mariadb-install-db");
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(["--skip-test-db", "--auth-root-authentication-method=socket"]);
        if as_mysql {
            install.arg("--user=mysql");
        }
        let output = install.current_dir(&folder).output().unwrap();
        assert!(
            output.status.success(),
            "mariadb-install-db: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let port = super::postgres::free_port();
        let mut command = Command::new("mariadbd");
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", folder.join("sock").display()))
            .arg(format!("--log-error={}", folder.join("err.log").display()))
            .arg(format!(
                "--pid-file={}",
                folder.join("mariadbd.pid").display()
            ))
            .args(["--skip-log-bin", "--innodb-buffer-pool-size=32M"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir(&folder);
        if as_mysql {
            command.arg("--user=mysql");
        }
        let child = command.spawn().unwrap();
        *CHILD.lock().unwrap() = Some((child, folder.clone()));
        unsafe {
            libc::atexit(stop_at_exit);
        }
        let server = Server { port, folder };
        let mut ready = false;
        for _ in 0..300 {
            if server
                .client(None)
                .arg("-e")
                .arg("SELECT 1")
                .output()
                .is_ok_and(|output| output.status.success())
            {
                ready = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(
            ready,
            "mariadbd did not start: {}",
            std::fs::read_to_string(server.folder.join("err.log")).unwrap_or_default()
        );
        server.sql(
            "",
            &format!(
                "CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}';
                 GRANT ALL ON *.* TO 'app'@'127.0.0.1';"
            ),
        );
        server
    }

    pub fn socket(&self) -> PathBuf {
        self.folder.join("sock")
    }

    /// The stock client as root over the socket, in `database` if given.
    pub fn client(&self, database: Option<&str>) -> Command {
        let mut command = Command::new("mariadb");
        command
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-u", "root", "--batch", "--skip-column-names"]);
        if let Some(database) = database {
            command.arg(database);
        }
        command
    }

    /// Runs `sql` in `database` (none if empty) and returns its batch output.
    pub fn sql(&self, database: &str, sql: &str) -> String {
        let mut child = self
            .client(Some(database).filter(|database| !database.is_empty()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(sql.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Every table of `database` and its full contents, sorted.
    pub fn contents(&self, database: &str) -> std::collections::BTreeMap<String, String> {
        let tables = self.sql(
            "",
            &format!(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{database}' AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1"
            ),
        );
        tables
            .lines()
            .map(|table| {
                let rows = self.sql(database, &format!("SELECT * FROM `{table}` ORDER BY 1"));
                let mut rows: Vec<&str> = rows.lines().collect();
                rows.sort_unstable();
                (table.to_owned(), rows.join("\n"))
            })
            .collect()
    }

    /// A URL for `database` over TCP as `app`, without the password.
    pub fn url(&self, database: &str) -> String {
        format!("mysql://app@127.0.0.1:{}/{database}", self.port)
    }

    pub fn folder(&self) -> &Path {
        &self.folder
    }
}
