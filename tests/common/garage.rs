//! A throwaway Garage S3 server: one node on loopback, on free ports, with its
//! metadata and data in a temporary folder, one bucket and one access key
//! allowed on it. The `garage` binary comes from `cargo install garage`
//! (`.ci/setup`), found on `PATH` or in Cargo's `bin` folder. The server is
//! killed and reaped on drop, so also when a test fails. It only sets up what
//! a test needs; the tests themselves speak S3 to it like any client.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The region clients must sign for (`s3_region` in the config).
pub const REGION: &str = "garage";
/// The bucket `start` creates.
pub const BUCKET: &str = "backup-test";
/// The name of the access key `start` creates.
pub const KEY_NAME: &str = "backup-test";

/// How long the server may take to answer, and to become healthy.
const STARTUP: Duration = Duration::from_secs(30);
/// How long one `garage` CLI command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `garage status` may take while the server starts.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts when another process took one of the chosen ports first.
const ATTEMPTS: usize = 3;

pub struct Garage {
    server: Child,
    folder: tempfile::TempDir,
    binary: PathBuf,
    config: PathBuf,
    s3_port: u16,
    access_key_id: String,
    secret_access_key: String,
}

/// Ports for one server, distinct from each other: the listeners are held
/// until all are chosen.
struct Ports {
    rpc: u16,
    s3: u16,
    admin: u16,
}

fn free_ports() -> Ports {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let port = |index: usize| listeners[index].local_addr().unwrap().port();
    Ports {
        rpc: port(0),
        s3: port(1),
        admin: port(2),
    }
}

/// `garage` on `PATH`, else in `$CARGO_HOME/bin` or `~/.cargo/bin`.
fn binary() -> PathBuf {
    installed(
        "garage",
        "run .ci/setup (it runs `cargo install garage --locked`)",
    )
}

/// The program `name` on `PATH`, else in `$CARGO_HOME/bin` or
/// `~/.cargo/bin` (where `cargo install` puts it); panics with `how` to
/// install it when it is nowhere.
pub fn installed(name: &str, how: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME").map(|home| PathBuf::from(home).join("bin"));
    let home = std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo/bin"));
    on_path
        .into_iter()
        .chain(cargo_home)
        .chain(home)
        .map(|folder| folder.join(name))
        .find(|candidate| is_executable(candidate))
        .unwrap_or_else(|| panic!("the `{name}` binary, on PATH or in ~/.cargo/bin: {how}"))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Lowercase hex of `bytes` random bytes.
fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut buffer)
        .unwrap();
    buffer.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Why a server did not come up.
enum Failure {
    /// A port was taken between choosing and binding it: try other ports.
    PortTaken,
    Other(String),
}

impl Garage {
    /// Starts a single-node Garage, lays out its one node, creates the
    /// bucket `BUCKET` and the key `KEY_NAME` with read, write and owner
    /// rights on it. Panics with the server's log when any step fails.
    pub fn start() -> Garage {
        let binary = binary();
        let folder = tempfile::Builder::new()
            .prefix("backup-garage-")
            .tempdir()
            .unwrap();
        let config = folder.path().join("garage.toml");
        let mut attempt = 1;
        let (server, ports) = loop {
            let ports = free_ports();
            write_config(folder.path(), &config, &ports);
            let mut server = spawn_server(&binary, &config, folder.path());
            match bring_up(&binary, &config, &mut server, folder.path()) {
                Ok(()) => break (server, ports),
                Err(failure) => {
                    let _ = server.kill();
                    let _ = server.wait();
                    match failure {
                        Failure::PortTaken if attempt < ATTEMPTS => {
                            attempt += 1;
                            for state in ["meta", "data"] {
                                let _ = std::fs::remove_dir_all(folder.path().join(state));
                            }
                        }
                        Failure::PortTaken => panic!(
                            "garage server: ports taken on {ATTEMPTS} attempts\n{}",
                            log_tail(folder.path())
                        ),
                        Failure::Other(reason) => {
                            panic!("garage server: {reason}\n{}", log_tail(folder.path()))
                        }
                    }
                }
            }
        };
        let mut garage = Garage {
            server,
            folder,
            binary,
            config,
            s3_port: ports.s3,
            access_key_id: String::new(),
            secret_access_key: String::new(),
        };
        (garage.access_key_id, garage.secret_access_key) = garage.create_key(KEY_NAME);
        garage.create_bucket(BUCKET);
        garage
    }

    /// The S3 endpoint, for path-style requests: `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// The bucket `start` created.
    pub fn bucket(&self) -> &str {
        BUCKET
    }

    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    pub fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }

    /// The region requests must be signed for.
    pub fn region(&self) -> &str {
        REGION
    }

    /// Creates an access key with no rights yet: its (key id, secret key).
    pub fn create_key(&self, name: &str) -> (String, String) {
        self.garage(&["key", "create", name]);
        let info = self.garage(&["key", "info", name, "--show-secret"]);
        let field = |label: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(label))
                .map(|value| value.trim().to_owned())
                .unwrap_or_else(|| panic!("no `{label}` in `garage key info`:\n{info}"))
        };
        let (id, secret) = (field("Key ID:"), field("Secret key:"));
        assert!(
            id.starts_with("GK") && secret.len() == 64,
            "unexpected credentials in `garage key info`:\n{info}"
        );
        (id, secret)
    }

    /// Creates another bucket, with read, write and owner rights for the key.
    pub fn create_bucket(&self, name: &str) {
        self.garage(&["bucket", "create", name]);
        self.garage(&[
            "bucket", "allow", "--read", "--write", "--owner", name, "--key", KEY_NAME,
        ]);
    }

    /// `backup` in `directory`, with this node's key in `TEST_S3_KEY_ID` and
    /// `TEST_S3_SECRET` for the policies to reference, and nothing from the
    /// host's own AWS setup.
    pub fn backup_command(&self, directory: &Path) -> std::process::Command {
        backup_with_key(directory, self.access_key_id(), self.secret_access_key())
    }

    /// A policy file's `s3:` destination on this node (list item, indented
    /// for `destinations:`), with its credentials as references to
    /// `${env:<variable>_KEY_ID}` and `${env:<variable>_SECRET}`.
    pub fn destination_yaml(&self, prefix: &str, variable: &str) -> String {
        format!(
            "    - s3:\n        bucket: {}\n        prefix: {prefix}\n        endpoint: {}\n        region: {}\n        path-style: true\n        access-key-id: ${{env:{variable}_KEY_ID}}\n        secret-access-key: ${{env:{variable}_SECRET}}\n",
            self.bucket(),
            self.endpoint(),
            self.region()
        )
    }

    /// Runs `garage -c CONFIG ARGS` against this server and returns its
    /// stdout; panics with its output and the server's log when it fails.
    pub fn garage(&self, args: &[&str]) -> String {
        let output = run_cli(&self.binary, &self.config, args, COMMAND_TIMEOUT);
        assert!(
            output.status.success(),
            "garage {args:?} failed ({}):\n{}{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            log_tail(self.folder.path())
        );
        String::from_utf8(output.stdout).unwrap()
    }
}

/// `backup` in `directory` with an S3 key in `TEST_S3_KEY_ID` and
/// `TEST_S3_SECRET` for the policies to reference, and nothing from the
/// host's own AWS set-up.
pub fn backup_with_key(directory: &Path, key_id: &str, secret: &str) -> Command {
    let mut command = super::backup(directory);
    command
        .env("TEST_S3_KEY_ID", key_id)
        .env("TEST_S3_SECRET", secret)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_CONFIG_FILE", directory.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            directory.join("no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true");
    command
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn write_config(folder: &Path, config: &Path, ports: &Ports) {
    let text = format!(
        r#"metadata_dir = "{folder}/meta"
data_dir = "{folder}/data"
db_engine = "sqlite"
metadata_fsync = false
data_fsync = false
replication_factor = 1

rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{rpc_secret}"

[s3_api]
api_bind_addr = "127.0.0.1:{s3}"
s3_region = "{REGION}"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
admin_token = "{admin_token}"
"#,
        folder = folder.display(),
        rpc = ports.rpc,
        s3 = ports.s3,
        admin = ports.admin,
        rpc_secret = random_hex(32),
        admin_token = random_hex(32),
    );
    std::fs::write(config, text).unwrap();
    std::fs::set_permissions(config, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A `garage` command with none of the caller's `GARAGE_*` settings (they
/// would override the config file) and logs without colours.
fn command(binary: &Path, config: &Path) -> Command {
    let mut command = Command::new(binary);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("GARAGE_") {
            command.env_remove(name);
        }
    }
    command
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .arg("-c")
        .arg(config);
    command
}

/// Runs `garage -c CONFIG ARGS`, killed after `timeout`: a CLI whose RPC
/// port belongs to another program can wait forever.
fn run_cli(binary: &Path, config: &Path, args: &[&str], timeout: Duration) -> Output {
    let mut stdout = tempfile::tempfile().unwrap();
    let mut stderr = tempfile::tempfile().unwrap();
    let mut child = command(binary, config)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().unwrap())
        .stderr(stderr.try_clone().unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let read = |file: &mut std::fs::File| {
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut bytes).unwrap();
        bytes
    };
    let mut stderr = read(&mut stderr);
    if timed_out {
        stderr.extend(format!("(killed after {timeout:?})\n").bytes());
    }
    Output {
        status,
        stdout: read(&mut stdout),
        stderr,
    }
}

fn spawn_server(binary: &Path, config: &Path, folder: &Path) -> Child {
    let log = std::fs::File::create(folder.join("server.log")).unwrap();
    command(binary, config)
        .arg("server")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Brings a fresh server into service: waits until it answers RPC
/// (`garage status`), gives its node a role in the cluster layout, then waits
/// until `garage health` succeeds (reads and writes have a quorum). Fails
/// with `PortTaken` when the server could not bind its RPC port (it aborts)
/// or its S3 port (it logs the error at once and runs on). A taken admin
/// port is only logged at shutdown, so nothing here relies on the admin API.
fn bring_up(
    binary: &Path,
    config: &Path,
    server: &mut Child,
    folder: &Path,
) -> Result<(), Failure> {
    let port_taken = || log_text(folder).contains("Address already in use");
    let deadline = Instant::now() + STARTUP;
    let mut wait = |what: &str| {
        if let Some(status) = server.try_wait().unwrap() {
            return Err(if port_taken() {
                Failure::PortTaken
            } else {
                Failure::Other(format!("exited at startup ({status})"))
            });
        }
        if port_taken() {
            return Err(Failure::PortTaken);
        }
        if Instant::now() > deadline {
            return Err(Failure::Other(format!("{what} within {STARTUP:?}")));
        }
        std::thread::sleep(Duration::from_millis(50));
        Ok(())
    };
    while !run_cli(binary, config, &["status"], STATUS_TIMEOUT)
        .status
        .success()
    {
        wait("`garage status` did not succeed")?;
    }
    let cli = |args: &[&str]| {
        let output = run_cli(binary, config, args, COMMAND_TIMEOUT);
        if output.status.success() {
            Ok(String::from_utf8(output.stdout).unwrap())
        } else {
            Err(Failure::Other(format!(
                "garage {args:?} failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )))
        }
    };
    let node = cli(&["node", "id", "--quiet"])?;
    let node = node.trim().split('@').next().unwrap_or_default();
    cli(&["layout", "assign", "-z", "dc1", "-c", "1G", node])?;
    cli(&["layout", "apply", "--version", "1"])?;
    while !run_cli(binary, config, &["health", "--quiet"], STATUS_TIMEOUT)
        .status
        .success()
    {
        wait("`garage health` did not succeed")?;
    }
    if port_taken() {
        return Err(Failure::PortTaken);
    }
    Ok(())
}

fn log_text(folder: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(folder.join("server.log")).unwrap_or_default())
        .into_owned()
}

/// The end of the server's log, for failure messages.
fn log_tail(folder: &Path) -> String {
    let text = log_text(folder);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    format!("--- garage server log (last 40 lines) ---\n{tail}")
}
