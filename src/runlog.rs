//! Run records: what each `run`, `apply`, `restore` and drill did, kept in
//! this host's state folder for `backup status` and for notifications.
//!
//! Every finished attempt appends one JSON line to `<state>/runs/<policy>.jsonl`
//! and updates `<state>/.backup_status`, a JSON summary of the latest state
//! per policy (last attempt, last success, last failure, consecutive
//! failures), written atomically (temporary file, fsync, rename; 0600) under
//! a lock. Each command's log lines also go to a per-run log file under
//! `<state>/logs/runs/<date>/`, kept for [`LOG_DAYS`] days. Records carry
//! error messages as the commands print them, which never contain secrets
//! (secrets travel as `Secret`, which prints `***`). Nothing here decides
//! whether a run was healthy; `status` does.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::state::StateDir;

/// Version of the record and summary formats.
pub const FORMAT_VERSION: u32 = 1;

/// The summary file's name in the state folder.
pub const SUMMARY_FILE: &str = ".backup_status";

/// How many days of per-run log files are kept.
pub const LOG_DAYS: i64 = 30;

/// A record file is rotated to `<policy>.jsonl.1` past this size.
const MAX_RECORD_BYTES: u64 = 4 * 1024 * 1024;

/// Why a record could not be written or read: what goes wrong with any file
/// in the state folder.
pub use crate::state::Error;
use crate::state::io_error;

/// What kind of attempt a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunKind {
    /// `backup run`.
    Run,
    /// `backup apply` (the policy's actions of one apply).
    Apply,
    /// `backup restore`.
    Restore,
    /// A restore drill (`backup verify --restore-test`).
    Drill,
}

impl RunKind {
    /// The kind as records and messages name it: `run`, `apply`, `restore`, `drill`.
    pub fn word(self) -> &'static str {
        match self {
            RunKind::Run => "run",
            RunKind::Apply => "apply",
            RunKind::Restore => "restore",
            RunKind::Drill => "drill",
        }
    }

    /// Whether this is a backup's attempt (`run`, `apply`). Only those set
    /// the policy's last attempt, last success, last failure and failure
    /// streak in `.backup_status` (which `recovery` notifications and
    /// `status` follow); restores and drills are kept in the records only.
    pub fn is_backup(self) -> bool {
        matches!(self, RunKind::Run | RunKind::Apply)
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunResult {
    Ok,
    Failed,
}

/// One finished attempt, as one JSON line of `<state>/runs/<policy>.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub format_version: u32,
    pub policy: String,
    pub kind: RunKind,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_seconds: f64,
    pub result: RunResult,
    /// What failed, as printed; absent on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The backup taken (run, apply) or restored (restore, drill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// Bytes stored (compressed size) or restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    pub host: String,
    /// The per-run log file holding this attempt's log lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
}

impl RunRecord {
    /// A record of an attempt on `policy` that started at `started_at` and ends now.
    pub fn new(policy: &str, kind: RunKind, started_at: DateTime<Utc>) -> RunRecord {
        let finished_at = Utc::now().max(started_at);
        RunRecord {
            format_version: FORMAT_VERSION,
            policy: policy.to_owned(),
            kind,
            started_at,
            finished_at,
            duration_seconds: (finished_at - started_at).num_milliseconds() as f64 / 1000.0,
            result: RunResult::Ok,
            error: None,
            backup: None,
            bytes: None,
            host: crate::engine::host_name(),
            log: current_log(),
        }
    }

    /// The same record, failed with `error`.
    pub fn failed(mut self, error: impl Into<String>) -> RunRecord {
        self.result = RunResult::Failed;
        self.error = Some(error.into());
        self
    }

    pub fn ok(&self) -> bool {
        self.result == RunResult::Ok
    }
}

/// The latest state of one policy, in `.backup_status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicySummary {
    pub last_attempt: Option<RunRecord>,
    pub last_success: Option<RunRecord>,
    pub last_failure: Option<RunRecord>,
    /// Failed attempts since the last success.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// The health `backup status --notify-critical` found last, and when it
    /// last notified about a critical state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical_notified_at: Option<DateTime<Utc>>,
}

/// `.backup_status`: the latest state of every policy this host ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub format_version: u32,
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub policies: BTreeMap<String, PolicySummary>,
}

impl Default for Summary {
    fn default() -> Self {
        Summary {
            format_version: FORMAT_VERSION,
            updated_at: DateTime::UNIX_EPOCH,
            policies: BTreeMap::new(),
        }
    }
}

/// Appends `record` to its policy's records and, for a backup's attempt
/// ([`RunKind::is_backup`]), updates `.backup_status`. Returns the policy's
/// summary as it was before (to tell a recovery).
pub fn record(state: &StateDir, record: &RunRecord) -> Result<PolicySummary, Error> {
    let folder = state.ensure("runs")?;
    let path = folder.join(format!("{}.jsonl", record.policy));
    if fs::metadata(&path).is_ok_and(|metadata| metadata.len() > MAX_RECORD_BYTES) {
        let rotated = folder.join(format!("{}.jsonl.1", record.policy));
        fs::rename(&path, &rotated).map_err(io_error("cannot rotate", &path))?;
    }
    let mut line = serde_json::to_vec(record).map_err(|error| Error::Io {
        action: "cannot encode a record for",
        path: path.clone(),
        source: io::Error::other(error),
    })?;
    line.push(b'\n');
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_error("cannot open", &path))?;
    // One write of the whole line: concurrent appends never interleave.
    file.write_all(&line)
        .and_then(|()| file.sync_data())
        .map_err(io_error("cannot append to", &path))?;
    if !record.kind.is_backup() {
        return Ok(summary(state)
            .policies
            .remove(&record.policy)
            .unwrap_or_default());
    }
    update(state, |summary| {
        let entry = summary.policies.entry(record.policy.clone()).or_default();
        let previous = entry.clone();
        entry.last_attempt = Some(record.clone());
        if record.ok() {
            entry.last_success = Some(record.clone());
            entry.consecutive_failures = 0;
        } else {
            entry.last_failure = Some(record.clone());
            entry.consecutive_failures += 1;
        }
        previous
    })
}

/// Reads `.backup_status`; a missing or unreadable file is an empty summary.
pub fn summary(state: &StateDir) -> Summary {
    fs::read(state.path().join(SUMMARY_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Changes `.backup_status` under its lock and writes it atomically.
pub fn update<T>(state: &StateDir, change: impl FnOnce(&mut Summary) -> T) -> Result<T, Error> {
    let locks = state.ensure("locks")?;
    let lock_path = locks.join("status.lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(io_error("cannot open lock file", &lock_path))?;
    lock.lock().map_err(io_error("cannot lock", &lock_path))?;
    let mut current = summary(state);
    let answer = change(&mut current);
    current.format_version = FORMAT_VERSION;
    current.updated_at = Utc::now();
    let path = state.path().join(SUMMARY_FILE);
    let mut bytes = serde_json::to_vec_pretty(&current).map_err(|error| Error::Io {
        action: "cannot encode",
        path: path.clone(),
        source: io::Error::other(error),
    })?;
    bytes.push(b'\n');
    write_atomically(&path, &bytes, 0o600)?;
    Ok(answer)
}

/// Writes `bytes` to `path` through a temporary file in the same folder
/// (synced, given `mode`) and a rename, then syncs the folder.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    let folder = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut file = tempfile::Builder::new()
        .prefix(".tmp.")
        .tempfile_in(folder)
        .map_err(io_error("cannot create a temporary file next to", path))?;
    file.write_all(bytes)
        .and_then(|()| {
            file.as_file()
                .set_permissions(fs::Permissions::from_mode(mode))
        })
        .and_then(|()| file.as_file().sync_all())
        .map_err(io_error("cannot write a temporary file for", path))?;
    file.persist(path)
        .map_err(|error| error.error)
        .map_err(io_error("cannot rename a temporary file over", path))?;
    File::open(folder)
        .and_then(|folder| folder.sync_all())
        .map_err(io_error("cannot sync the folder of", path))?;
    Ok(())
}

/// The last `count` records of `policy`, oldest first.
pub fn recent(state: &StateDir, policy: &str, count: usize) -> Vec<RunRecord> {
    let path = state.path().join("runs").join(format!("{policy}.jsonl"));
    let Ok(file) = File::open(path) else {
        return Vec::new();
    };
    let mut records: Vec<RunRecord> = io::BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_str(&line).ok())
        .collect();
    let skip = records.len().saturating_sub(count);
    records.drain(..skip);
    records
}

/// Starts this command's per-run log file,
/// `<state>/logs/runs/<YYYY-MM-DD>/<HHMMSS>Z-<command>[-<policy>]-<pid>.log`
/// (0600), to which every log line at info level and above is copied in the
/// `--log-format` chosen; removes day folders older than [`LOG_DAYS`].
/// Best effort: a state folder that cannot be written only loses the file.
pub fn start_log(state: &StateDir, command: &str, policy: Option<&str>) -> Option<PathBuf> {
    let now = Utc::now();
    let runs = state.ensure("logs/runs").ok()?;
    remove_old_logs(&runs, now);
    let day = runs.join(now.format("%Y-%m-%d").to_string());
    fs::create_dir_all(&day).ok()?;
    let _ = fs::set_permissions(&day, fs::Permissions::from_mode(0o700));
    let name = match policy {
        Some(policy) => format!(
            "{}-{command}-{policy}-{}.log",
            now.format("%H%M%SZ"),
            std::process::id()
        ),
        None => format!(
            "{}-{command}-{}.log",
            now.format("%H%M%SZ"),
            std::process::id()
        ),
    };
    let path = day.join(name);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .ok()?;
    crate::logging::set_run_log(file, path.clone());
    Some(path)
}

/// The per-run log file of this process, if one was started.
pub fn current_log() -> Option<PathBuf> {
    crate::logging::run_log_path()
}

/// The last `count` lines of the per-run log file.
pub fn log_tail(count: usize) -> Vec<String> {
    let Some(path) = current_log() else {
        return Vec::new();
    };
    let Ok(text) = fs::read_to_string(path) else {
        return Vec::new();
    };
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..]
        .iter()
        .map(|line| (*line).to_owned())
        .collect()
}

fn remove_old_logs(runs: &Path, now: DateTime<Utc>) {
    let oldest = (now - chrono::Duration::days(LOG_DAYS))
        .format("%Y-%m-%d")
        .to_string();
    let Ok(entries) = fs::read_dir(runs) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let dated = name.len() == 10 && name.bytes().filter(|byte| *byte == b'-').count() == 2;
        if dated && name < oldest {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_append_and_the_summary_follows_failures_and_recoveries() {
        let folder = tempfile::tempdir().unwrap();
        let state = StateDir::new(folder.path());
        let started = Utc::now();
        let failed = RunRecord::new("app", RunKind::Run, started).failed("connection refused");
        let before = record(&state, &failed).unwrap();
        assert_eq!(before, PolicySummary::default());
        record(
            &state,
            &RunRecord::new("app", RunKind::Apply, started).failed("again"),
        )
        .unwrap();
        let before = record(&state, &RunRecord::new("app", RunKind::Apply, started)).unwrap();
        assert_eq!(before.consecutive_failures, 2);
        assert!(!before.last_attempt.unwrap().ok());

        let summary = summary(&state);
        let app = &summary.policies["app"];
        assert_eq!(app.consecutive_failures, 0);
        assert!(app.last_attempt.as_ref().unwrap().ok());
        assert_eq!(
            app.last_failure.as_ref().unwrap().error.as_deref(),
            Some("again")
        );
        assert_eq!(recent(&state, "app", 2).len(), 2);
        assert_eq!(recent(&state, "app", 10).len(), 3);
        for file in [
            folder.path().join(SUMMARY_FILE),
            folder.path().join("runs/app.jsonl"),
        ] {
            let mode = fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", file.display());
        }
    }

    #[test]
    fn restores_and_drills_are_recorded_but_never_end_or_extend_a_backup_failure_streak() {
        let folder = tempfile::tempdir().unwrap();
        let state = StateDir::new(folder.path());
        let started = Utc::now();
        record(
            &state,
            &RunRecord::new("app", RunKind::Run, started).failed("down"),
        )
        .unwrap();
        record(&state, &RunRecord::new("app", RunKind::Restore, started)).unwrap();
        record(
            &state,
            &RunRecord::new("app", RunKind::Drill, started).failed("bad"),
        )
        .unwrap();
        let before = record(&state, &RunRecord::new("app", RunKind::Drill, started)).unwrap();
        // The backup failed last: a later success is still a recovery.
        assert_eq!(before.consecutive_failures, 1);
        assert_eq!(before.last_attempt.unwrap().kind, RunKind::Run);
        let kinds: Vec<RunKind> = recent(&state, "app", 10)
            .into_iter()
            .map(|record| record.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                RunKind::Run,
                RunKind::Restore,
                RunKind::Drill,
                RunKind::Drill
            ]
        );
    }

    #[test]
    fn old_log_folders_are_removed() {
        let folder = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let old = (now - chrono::Duration::days(LOG_DAYS + 1))
            .format("%Y-%m-%d")
            .to_string();
        let recent = now.format("%Y-%m-%d").to_string();
        for name in [&old, &recent, &"keep-me".to_owned()] {
            fs::create_dir_all(folder.path().join(name)).unwrap();
        }
        remove_old_logs(folder.path(), now);
        assert!(!folder.path().join(&old).exists());
        assert!(folder.path().join(&recent).exists());
        assert!(folder.path().join("keep-me").exists());
    }
}
