//! Helpers shared by the integration tests: run the real `backup` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What one run of `backup` produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// The temporary folder (`TMPDIR`) of the `backup` runs in `directory`:
/// `directory/.tmp`, so that a test only ever looks at folders it owns. It
/// is not made for them (`directory` may be the repository's fixtures):
/// `backup` keeps its scratch files in the state folder and needs none; a
/// test that looks at it makes it first.
pub fn tmpdir(directory: &Path) -> PathBuf {
    directory.join(".tmp")
}

/// A `backup` command in `directory`, with a clean, colourless environment,
/// its state folder (locks, cron logs) in `directory/.state` and its own
/// temporary folder, [`tmpdir`].
pub fn backup(directory: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_backup"));
    command
        .current_dir(directory)
        .env("BACKUP_STATE_DIR", directory.join(".state"))
        .env("TMPDIR", tmpdir(directory))
        // The crontab block depends on the host's time zone; pin it.
        .env("TZ", "UTC")
        .env_remove("BACKUP_POLICIES")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1");
    command
}

/// Runs `backup ARGS` in `directory`.
pub fn run(directory: &Path, args: &[&str]) -> Run {
    backup(directory)
        .args(args)
        .output()
        .expect("backup runs")
        .into()
}

pub mod mysql;
pub mod postgres;

/// Writes a policy file for `source` (a YAML block under `source:`) backed up to `destination`.
pub fn write_policy(folder: &Path, name: &str, source: &str, destination: &Path) -> PathBuf {
    let text = format!(
        "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: {name}\nspec:\n  source:\n{source}\n  schedule:\n    cron: \"@daily\"\n  retention:\n    keep-last: 3\n  destinations:\n    - local:\n        path: {}\n",
        destination.display()
    );
    let path = folder.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Every file under `folder`, recursively, with its contents.
pub fn files_under(folder: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(folder) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(files_under(&path));
            } else if let Ok(bytes) = std::fs::read(&path) {
                files.push((path, bytes));
            }
        }
    }
    files.sort();
    files
}
pub mod faultproxy;
pub mod garage;
pub mod s3s;
pub mod sinks;
pub mod sqlite_site;

/// The sidecar `backup` would write for `data`, a backup of the SQLite policy
/// `policy` taken at `created_at` (unsealed: `seal()` it where that matters).
pub fn sidecar_for(
    policy: &str,
    id: &str,
    created_at: chrono::DateTime<chrono::Utc>,
    data: &[u8],
    tags: Vec<String>,
) -> backup::inventory::BackupMetadata {
    use backup::inventory::metadata::{Artifact, FORMAT_VERSION, SourceInfo, hex};
    use sha2::Digest as _;
    backup::inventory::BackupMetadata {
        format_version: FORMAT_VERSION,
        policy: policy.to_owned(),
        id: id.to_owned(),
        created_at,
        finished_at: created_at + chrono::Duration::seconds(42),
        artifact: Artifact {
            name: format!("{id}.sqlite.gz"),
            size: data.len() as u64,
            sha256: hex(&sha2::Sha256::digest(data)),
            compression: "gzip".to_owned(),
            uncompressed_size: data.len() as u64 * 4,
        },
        format: Some("sqlite".to_owned()),
        parts: Vec::new(),
        encryption: None,
        source: SourceInfo {
            kind: "sqlite".to_owned(),
            server_version: Some("3.46.1".to_owned()),
            database: None,
            row_counts: Default::default(),
        },
        physical: None,
        tool_version: "0.1.0".to_owned(),
        host: "db1".to_owned(),
        policy_digest: "0".repeat(64),
        tags,
        lease: None,
        sidecar_sha256: None,
    }
}

/// A complete backup of `size` bytes of the SQLite policy `policy` created
/// at `time` (RFC 3339), sealed as `backup` seals it, in `destination/<policy>/`;
/// its id.
pub fn sealed_backup(destination: &Path, policy: &str, time: &str, size: usize) -> String {
    let created_at = chrono::DateTime::parse_from_rfc3339(time).unwrap().to_utc();
    let id = backup::inventory::base_id(created_at);
    let data = vec![b'x'; size];
    let mut metadata = sidecar_for(policy, &id, created_at, &data, Vec::new());
    metadata.seal().unwrap();
    let folder = destination.join(policy);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join(&metadata.artifact.name), &data).unwrap();
    std::fs::write(
        folder.join(format!("{id}.json")),
        serde_json::to_vec_pretty(&metadata).unwrap(),
    )
    .unwrap();
    id
}

/// What `plan` would observe for `selection` at `now` with `--no-crontab`
/// and no sidecar cache (`space`: also local free space), in the test's
/// own process.
pub fn observe_without_crontab(
    selection: &backup::policy::Selection,
    state: &backup::state::StateDir,
    now: chrono::DateTime<chrono::Utc>,
    space: bool,
) -> backup::observe::Observed {
    backup::observe::observe(
        selection,
        &backup::observe::Options {
            state,
            cache: None,
            crontab: backup::observe::CrontabOptions {
                skip: true,
                ..Default::default()
            },
            space,
            now,
        },
    )
}

/// The backup ids in a policy's `folder`, sorted (by their sidecars).
pub fn stored_ids(folder: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(folder)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| {
                    let name = entry.file_name().into_string().ok()?;
                    let id = name.strip_suffix(".json")?;
                    backup::inventory::is_id(id).then(|| id.to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// The sidecars under `folder`, parsed.
pub fn sidecars(folder: &Path) -> Vec<serde_json::Value> {
    files_under(folder)
        .into_iter()
        .filter(|(path, _)| {
            path.extension()
                .is_some_and(|extension| extension == "json")
        })
        .map(|(_, bytes)| serde_json::from_slice(&bytes).unwrap())
        .collect()
}

/// Runs `backup ARGS` in `directory` on a pseudo-terminal (`script`) and
/// types `answer`: its exit code and what it showed.
pub fn on_a_terminal(directory: &Path, args: &str, answer: &str) -> (i32, String) {
    let command = format!("{} {args}", env!("CARGO_BIN_EXE_backup"));
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(directory)
        .env("BACKUP_STATE_DIR", directory.join(".state"))
        .env("TMPDIR", tmpdir(directory))
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, answer.as_bytes()).unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// Runs `sql` on the SQLite database `database` with the real `sqlite3`; its output, trimmed.
pub fn sqlite3(database: &Path, sql: &str) -> String {
    let output = Command::new("sqlite3")
        .arg(database)
        .arg(sql)
        .output()
        .expect("sqlite3 runs");
    assert!(
        output.status.success(),
        "sqlite3 {}: {sql}: {}",
        database.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Runs `script` in bash with `pipefail`; its stdout (fails the test if it fails).
pub fn shell(script: &str) -> String {
    let output = Command::new("bash")
        .args(["-o", "pipefail", "-c", script])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{script}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Nothing visible and nothing half-written in the policy's folder.
pub fn assert_nothing_left(folder: &Path) {
    let left: Vec<PathBuf> = files_under(folder)
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// The ids of the safety backups (`pre-restore`) in a policy's folder.
pub fn pre_restore_ids(folder: &Path) -> Vec<String> {
    sidecars(folder)
        .into_iter()
        .filter(|sidecar| {
            sidecar["tags"]
                .as_array()
                .is_some_and(|tags| tags.iter().any(|tag| tag == "pre-restore"))
        })
        .map(|sidecar| sidecar["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A small tmpfs, unmounted on drop.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` at `path`; `None` where mounting is not permitted (not root).
    pub fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(path)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| Tmpfs {
            path: path.to_owned(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// An age key pair made by the stock `age-keygen` in `folder/name`: the
/// identity file and its public key (`age1…`).
pub fn age_keygen(folder: &Path, name: &str) -> (PathBuf, String) {
    let path = folder.join(name);
    let made = Command::new("age-keygen")
        .arg("-o")
        .arg(&path)
        .output()
        .unwrap();
    assert!(made.status.success(), "age-keygen: {made:?}");
    let public = Command::new("age-keygen")
        .arg("-y")
        .arg(&path)
        .output()
        .unwrap();
    assert!(public.status.success(), "age-keygen -y: {public:?}");
    (
        path,
        String::from_utf8(public.stdout).unwrap().trim().to_owned(),
    )
}
