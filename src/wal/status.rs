//! How this host's WAL pushes went, for `backup status`: one small JSON
//! file per policy, `<state>/wal/<policy>.json`, rewritten atomically
//! (temporary file, fsync, rename; 0600) after every push, under
//! `<state>/wal/<policy>.lock`, which also serializes the pushes of a policy
//! on this host. It records, never decides whether the archive is healthy.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::state::{Error, StateDir, io_error};

/// The state folder's sub-folder for WAL push records.
const FOLDER: &str = "wal";

/// One push, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Push {
    pub at: DateTime<Utc>,
    /// The WAL file's name (`000000010000000000000003`).
    pub file: String,
    /// Why it failed; absent on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The pushes of one policy on this host, in brief.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushStatus {
    pub policy: String,
    /// The last push that stored its file on every destination.
    #[serde(default)]
    pub last_success: Option<Push>,
    /// The last push that did not.
    #[serde(default)]
    pub last_failure: Option<Push>,
    /// Failed pushes since the last success (PostgreSQL retries, so this
    /// grows while the archive is stuck).
    #[serde(default)]
    pub failures: u64,
    /// Failed pushes ever recorded here.
    #[serde(default)]
    pub total_failures: u64,
}

fn path(state: &StateDir, policy: &str) -> PathBuf {
    state.path().join(FOLDER).join(format!("{policy}.json"))
}

/// Takes the lock of `policy`'s WAL pushes on this host, waiting for it.
pub fn lock(state: &StateDir, policy: &str) -> Result<File, Error> {
    let path = state.ensure(FOLDER)?.join(format!("{policy}.lock"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io_error("cannot open lock file", &path))?;
    file.lock().map_err(io_error("cannot lock", &path))?;
    Ok(file)
}

/// The record of `policy`'s pushes on this host, if any push was recorded.
pub fn read(state: &StateDir, policy: &str) -> Result<Option<PushStatus>, Error> {
    let path = path(state, policy);
    let bytes = match crate::bounded::read_file(&path, crate::bounded::RECORD_LIMIT) {
        Ok(bytes) => bytes,
        Err(crate::bounded::Error::Io(error)) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None);
        }
        Err(error) => {
            return Err(io_error("cannot read", &path)(std::io::Error::other(
                error.to_string(),
            )));
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|error| io_error("cannot read", &path)(std::io::Error::other(error.to_string())))
}

/// Records a push of `file` for `policy`: a success when `failure` is `None`.
pub fn record(
    state: &StateDir,
    policy: &str,
    file: &str,
    failure: Option<String>,
) -> Result<(), Error> {
    let folder = state.ensure(FOLDER)?;
    // A damaged record is started afresh rather than blocking every push.
    let mut status = read(state, policy).ok().flatten().unwrap_or_default();
    status.policy = policy.to_owned();
    let push = Push {
        at: Utc::now(),
        file: file.to_owned(),
        reason: failure,
    };
    if push.reason.is_some() {
        status.failures += 1;
        status.total_failures += 1;
        status.last_failure = Some(push);
    } else {
        status.failures = 0;
        status.last_success = Some(push);
    }
    let mut bytes = serde_json::to_vec_pretty(&status)
        .map_err(|error| io_error("cannot write", &folder)(std::io::Error::other(error)))?;
    bytes.push(b'\n');
    let target = path(state, policy);
    let temporary = folder.join(format!(".{policy}.json.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, &target)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written.map_err(io_error("cannot write", &target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_count_failures_until_a_success() {
        let folder = tempfile::tempdir().unwrap();
        let state = StateDir::new(folder.path());
        assert_eq!(read(&state, "app").unwrap(), None);
        record(&state, "app", "000000010000000000000001", None).unwrap();
        record(
            &state,
            "app",
            "000000010000000000000002",
            Some("down".to_owned()),
        )
        .unwrap();
        record(
            &state,
            "app",
            "000000010000000000000002",
            Some("down".to_owned()),
        )
        .unwrap();
        let status = read(&state, "app").unwrap().unwrap();
        assert_eq!(status.failures, 2);
        assert_eq!(status.total_failures, 2);
        assert_eq!(
            status.last_success.unwrap().file,
            "000000010000000000000001"
        );
        let failure = status.last_failure.unwrap();
        assert_eq!(failure.reason.as_deref(), Some("down"));
        record(&state, "app", "000000010000000000000002", None).unwrap();
        let status = read(&state, "app").unwrap().unwrap();
        assert_eq!((status.failures, status.total_failures), (0, 2));
        let mode = fs::metadata(path(&state, "app"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read(&state, "other").unwrap(), None);
    }
}
