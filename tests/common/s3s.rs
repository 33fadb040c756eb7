//! A throwaway s3s-fs S3 server (crates.io `s3s-fs`, installed by
//! `.ci/setup` into ~/.cargo/bin): one process on a free loopback port,
//! its objects in a temporary folder, one bucket (a folder there) and one
//! access key. Unlike Garage it honours conditional writes
//! (`If-None-Match: *`, `If-Match`), which the lease needs; its create-only
//! check is check-then-rename, so two truly simultaneous creates can both
//! succeed, and the lease must not rest on that alone. Killed and reaped on
//! drop, so also when a test fails.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bucket `start` makes.
pub const BUCKET: &str = "lease-test";
const KEY_ID: &str = "s3s-test-key";
const SECRET: &str = "s3s-test-secret-0123456789";
/// How long the server may take to listen.
const STARTUP: Duration = Duration::from_secs(20);

pub struct S3s {
    server: Child,
    folder: tempfile::TempDir,
    port: u16,
}

impl S3s {
    /// Starts the server with the bucket `BUCKET`; panics with its log when it does not listen.
    pub fn start() -> S3s {
        let binary = super::garage::installed(
            "s3s-fs",
            "run .ci/setup (it runs `cargo install s3s-fs --version 0.14.1 --features binary --locked`)",
        );
        let folder = tempfile::Builder::new()
            .prefix("backup-s3s-")
            .tempdir()
            .unwrap();
        let root = folder.path().join("root");
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let log = std::fs::File::create(folder.path().join("server.log")).unwrap();
            let mut server = Command::new(&binary)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", KEY_ID, "--secret-key", SECRET])
                .arg(&root)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            let started = Instant::now();
            while started.elapsed() < STARTUP {
                if let Ok(Some(_)) = server.try_wait() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return S3s {
                        server,
                        folder,
                        port,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = server.kill();
            let _ = server.wait();
        }
        panic!(
            "s3s-fs did not start:\n{}",
            std::fs::read_to_string(folder.path().join("server.log")).unwrap_or_default()
        );
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn bucket(&self) -> &str {
        BUCKET
    }

    /// Where the bucket's objects are, as files: `<prefix><policy>/<name>`.
    pub fn bucket_folder(&self) -> PathBuf {
        self.folder.path().join("root").join(BUCKET)
    }

    /// `backup` in `directory`, with this server's key in `TEST_S3_KEY_ID`
    /// and `TEST_S3_SECRET` and nothing from the host's AWS set-up.
    pub fn backup_command(&self, directory: &Path) -> Command {
        super::garage::backup_with_key(directory, KEY_ID, SECRET)
    }

    /// A policy's `s3:` destination on this server (a list item indented
    /// for `destinations:`), credentials as `${env:TEST_S3_KEY_ID}` and
    /// `${env:TEST_S3_SECRET}`.
    pub fn destination_yaml(&self, prefix: &str) -> String {
        format!(
            "    - s3:\n        bucket: {BUCKET}\n        prefix: {prefix}\n        endpoint: {}\n        region: us-east-1\n        path-style: true\n        access-key-id: ${{env:TEST_S3_KEY_ID}}\n        secret-access-key: ${{env:TEST_S3_SECRET}}\n",
            self.endpoint()
        )
    }

    /// Like [`S3s::destination_yaml`], with the credentials as
    /// `${file:…}` references to files written in `folder`: a policy that
    /// the library loads in the test's own process, whose environment stays as it is.
    pub fn destination_yaml_files(&self, prefix: &str, folder: &Path) -> String {
        let (key_file, secret_file) = (folder.join("s3-key-id"), folder.join("s3-secret"));
        std::fs::write(&key_file, KEY_ID).unwrap();
        std::fs::write(&secret_file, SECRET).unwrap();
        format!(
            "    - s3:\n        bucket: {BUCKET}\n        prefix: {prefix}\n        endpoint: {}\n        region: us-east-1\n        path-style: true\n        access-key-id: ${{file:{}}}\n        secret-access-key: ${{file:{}}}\n",
            self.endpoint(),
            key_file.display(),
            secret_file.display()
        )
    }

    /// The destination as the library takes it, credentials inline (tests only).
    pub fn spec(&self, prefix: &str) -> backup::policy::spec::S3Spec {
        serde_json::from_value(serde_json::json!({
            "bucket": BUCKET,
            "prefix": prefix,
            "endpoint": self.endpoint(),
            "region": "us-east-1",
            "path-style": true,
            "access-key-id": KEY_ID,
            "secret-access-key": SECRET,
        }))
        .unwrap()
    }
}

impl Drop for S3s {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
