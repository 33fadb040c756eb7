//! A host-local cache of sidecars read from stores that give each object an
//! ETag (S3). Sidecars are written once and never changed, and a listing
//! already returns every object's ETag and size, so a sidecar whose listed
//! ETag and size match the cached ones need not be fetched again: `plan`
//! over thousands of backups costs the listing, not a GET per backup.
//!
//! One file per (destination, policy) under `<state>/cache/sidecars/`,
//! written atomically, 0600. The cache is only ever an optimisation: a
//! missing, unreadable or unwritable cache means reading from the store, and
//! a changed object (another ETag or size) is fetched again.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// One cached sidecar: its bytes, and the ETag and size the store listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cached {
    pub tag: String,
    pub size: u64,
    pub text: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    location: String,
    policy: String,
    sidecars: BTreeMap<String, Cached>,
}

/// The cache folder.
#[derive(Debug, Clone)]
pub struct SidecarCache {
    folder: PathBuf,
}

impl SidecarCache {
    /// The cache in the state folder `state`.
    pub fn new(state: &Path) -> SidecarCache {
        SidecarCache {
            folder: state.join("cache/sidecars"),
        }
    }

    fn path(&self, location: &str, policy: &str) -> PathBuf {
        let digest = Sha256::digest(format!("{location}\n{policy}"));
        self.folder
            .join(format!("{}.json", &super::metadata::hex(&digest)[..32]))
    }

    /// What is cached for `policy` on `location`, by id; empty when nothing is.
    pub fn load(&self, location: &str, policy: &str) -> BTreeMap<String, Cached> {
        fs::read(self.path(location, policy))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<File>(&bytes).ok())
            .filter(|file| file.location == location && file.policy == policy)
            .map(|file| file.sidecars)
            .unwrap_or_default()
    }

    /// Replaces what is cached for `policy` on `location`. Failures are
    /// logged and otherwise ignored: the cache only saves requests.
    pub fn store(&self, location: &str, policy: &str, sidecars: BTreeMap<String, Cached>) {
        let path = self.path(location, policy);
        let file = File {
            location: location.to_owned(),
            policy: policy.to_owned(),
            sidecars,
        };
        if let Err(error) = self.write(&path, &file) {
            tracing::debug!(path = %path.display(), %error, "cannot write the sidecar cache");
        }
    }

    fn write(&self, path: &Path, file: &File) -> std::io::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.folder)?;
        let temporary = path.with_extension(format!("tmp{}", std::process::id()));
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        out.write_all(&serde_json::to_vec(file).map_err(std::io::Error::other)?)?;
        drop(out);
        fs::rename(&temporary, path)
    }
}
