//! This host's own small state: policy locks and the logs cron appends to.
//!
//! The backups' state lives on the destinations alone; this folder only holds
//! what is about this host. Default: `/var/lib/backup` for root, else
//! `$XDG_STATE_HOME/backup` (`~/.local/state/backup`); `--state-dir` or
//! `BACKUP_STATE_DIR` overrides it.

use std::fs::{self, DirBuilder, File, OpenOptions, TryLockError};
use std::io::{self, Read as _, Seek as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Why the state folder or a lock could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} `{path}`: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("policy `{policy}` is locked by another `backup` ({holder}); lock file `{path}`")]
    Held {
        policy: String,
        holder: String,
        path: PathBuf,
    },
}

impl Error {
    /// The exit status of a command stopped by this: 4 when another `backup`
    /// holds the lock, 1 otherwise.
    pub fn exit_status(&self) -> crate::exit::ExitStatus {
        match self {
            Error::Held { .. } => crate::exit::ExitStatus::Locked,
            Error::Io { .. } => crate::exit::ExitStatus::Failure,
        }
    }
}

/// An [`Error::Io`] for `action` on `path`.
pub(crate) fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_owned();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

/// The default state folder for the current user.
pub fn default_dir() -> PathBuf {
    per_user_dir(
        "/var/lib/backup",
        ("XDG_STATE_HOME", ".local/state"),
        "backup",
    )
}

/// A folder by the XDG base directory rules: `system` for root (its state
/// is the system's); else `$VARIABLE/<leaf>` for the `(VARIABLE, default)`
/// of `base`, else `~/<default>/<leaf>`; `system` when neither is set.
pub fn per_user_dir(system: &str, base: (&str, &str), leaf: &str) -> PathBuf {
    let (variable, default) = base;
    let set = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    if is_root() {
        PathBuf::from(system)
    } else if let Some(folder) = set(variable) {
        PathBuf::from(folder).join(leaf)
    } else if let Some(home) = set("HOME") {
        PathBuf::from(home).join(default).join(leaf)
    } else {
        PathBuf::from(system)
    }
}

/// Whether this process runs as root (its effective user).
pub fn is_root() -> bool {
    // The owner of /proc/self is the effective user.
    fs::metadata("/proc/self")
        .is_ok_and(|metadata| std::os::unix::fs::MetadataExt::uid(&metadata) == 0)
}

/// The state folder, made absolute (cron runs elsewhere).
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: &Path) -> StateDir {
        StateDir {
            root: std::path::absolute(root).unwrap_or_else(|_| root.to_owned()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Where cron's runs append their output.
    pub fn log_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Creates `sub` (and the root) as 0700 folders.
    pub fn ensure(&self, sub: &str) -> Result<PathBuf, Error> {
        let folder = if sub.is_empty() {
            self.root.clone()
        } else {
            self.root.join(sub)
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&folder)
            .map_err(io_error("cannot create", &folder))?;
        fs::set_permissions(&folder, fs::Permissions::from_mode(0o700))
            .map_err(io_error("cannot set permissions of", &folder))?;
        Ok(folder)
    }

    /// Takes the lock of `policy` without waiting: `Error::Held` names the holder.
    pub fn lock(&self, policy: &str) -> Result<Lock, Error> {
        let path = self.ensure("locks")?.join(format!("{policy}.lock"));
        self.lock_file(policy, path)
    }

    /// Takes the lock that serializes writes of the managed crontab block,
    /// waiting up to a minute: cron starts every policy's run at once.
    pub fn lock_crontab(&self) -> Result<Lock, Error> {
        let path = self.ensure("locks")?.join("crontab.lock");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match self.lock_file("crontab", path.clone()) {
                Err(Error::Held { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                result => return result,
            }
        }
    }

    fn lock_file(&self, what: &str, path: PathBuf) -> Result<Lock, Error> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_error("cannot open lock file", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(Error::Held {
                    policy: what.to_owned(),
                    holder: if holder.is_empty() {
                        "unknown process".to_owned()
                    } else {
                        holder.to_owned()
                    },
                    path,
                });
            }
            Err(TryLockError::Error(error)) => {
                return Err(io_error("cannot lock", &path)(error));
            }
        }
        // Who holds it, for the message another run prints. Best effort.
        // Only the subcommand: other arguments may hold a secret (a
        // connection URL given to `restore --to`).
        let _ = file.set_len(0).and_then(|()| {
            file.rewind()?;
            let command = std::env::args()
                .skip(1)
                .find(|argument| SUBCOMMANDS.contains(&argument.as_str()))
                .unwrap_or_default();
            writeln!(file, "pid {}: backup {command}", std::process::id())
        });
        Ok(Lock { _file: file })
    }
}

/// The subcommands a lock holder is named by.
const SUBCOMMANDS: [&str; 6] = ["apply", "run", "restore", "verify", "status", "plan"];

/// A held lock; released when dropped (or when the process dies, however it dies).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Where scratch files go once a command named its state folder: `<state>/tmp`.
static SCRATCH_ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Makes `<state>/tmp` the folder of this process's scratch files (SQLite
/// copies, `restore --jobs` copies, drill scratch files), instead of the
/// system's shared temporary folder. Commands call it once, first; the
/// folder is made (0700) when the first scratch file is.
pub fn use_scratch_in(state: &StateDir) {
    let _ = SCRATCH_ROOT.set(state.path().join(SCRATCH_FOLDER));
}

/// The scratch folder's name in the state folder.
const SCRATCH_FOLDER: &str = "tmp";

/// The folder scratch files go to: `<state>/tmp`, or the system's
/// temporary folder in a process that named no state folder.
pub fn scratch_root() -> PathBuf {
    SCRATCH_ROOT
        .get()
        .cloned()
        .unwrap_or_else(std::env::temp_dir)
}

/// The scratch folder, made if missing (0700 when made here).
fn ensure_scratch_root() -> Result<PathBuf, Error> {
    let root = scratch_root();
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&root)
        .map_err(io_error("cannot create the scratch folder", &root))?;
    if SCRATCH_ROOT.get() == Some(&root) {
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700))
            .map_err(io_error("cannot set permissions of", &root))?;
    }
    Ok(root)
}

/// A new private scratch folder `<prefix><pid>-<random>` in the
/// [`scratch_root`], 0700 whatever the umask; removed when dropped. Those
/// a killed process left with the same prefix are removed first.
pub fn scratch_folder(prefix: &str) -> Result<tempfile::TempDir, Error> {
    let root = ensure_scratch_root()?;
    remove_abandoned(&root, prefix);
    let folder = tempfile::Builder::new()
        .prefix(&scratch_prefix(prefix))
        .permissions(fs::Permissions::from_mode(0o700))
        .tempdir_in(&root)
        .map_err(io_error("cannot create a scratch folder in", &root))?;
    // The umask may have taken bits away, never added any; be exact.
    fs::set_permissions(folder.path(), fs::Permissions::from_mode(0o700))
        .map_err(io_error("cannot set permissions of", folder.path()))?;
    Ok(folder)
}

/// A new private scratch file `<prefix><pid>-<random><suffix>` in the
/// [`scratch_root`], 0600 whatever the umask; removed when dropped. Those
/// a killed process left with the same prefix are removed first.
pub fn scratch_file(prefix: &str, suffix: &str) -> Result<tempfile::NamedTempFile, Error> {
    let root = ensure_scratch_root()?;
    remove_abandoned(&root, prefix);
    let file = tempfile::Builder::new()
        .prefix(&scratch_prefix(prefix))
        .suffix(suffix)
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(&root)
        .map_err(io_error("cannot create a scratch file in", &root))?;
    file.as_file()
        .set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io_error("cannot set permissions of", file.path()))?;
    Ok(file)
}

/// Creates `path` new and empty, 0600 whatever the umask: for files another
/// library then opens (SQLite keeps an existing file's mode, and gives its
/// journal the same).
pub fn create_private_file(path: &Path) -> Result<(), Error> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error("cannot create", path))?;
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io_error("cannot set permissions of", path))
}

/// Removes scratch files and folders `<prefix><pid>-…` in `folder` whose
/// process is gone (a killed restore or drill). Those of a live process are
/// left alone, whoever that process now is.
pub fn remove_abandoned(folder: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix(prefix))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
}

/// A temporary-name prefix that carries this process's id, for [`remove_abandoned`].
pub fn scratch_prefix(prefix: &str) -> String {
    format!("{prefix}{}-", std::process::id())
}

/// A short random hex string (scratch names).
pub fn random_suffix() -> String {
    use sha2::{Digest as _, Sha256};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |duration| duration.as_nanos());
    let seed = format!("{nanos} {} {:p}", std::process::id(), &nanos);
    crate::inventory::metadata::hex(&Sha256::digest(seed.as_bytes()))[..8].to_owned()
}

/// Bytes available to unprivileged writers in the file system holding `path`.
pub fn available_space(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let text = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `text` is a valid C string and `stats` a buffer of the right type.
    let result = unsafe { libc::statvfs(text.as_ptr(), stats.as_mut_ptr()) };
    if result != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `stats`.
    let stats = unsafe { stats.assume_init() };
    Some(stats.f_bavail.saturating_mul(stats.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_policy_is_refused_and_names_the_holder() {
        let folder = tempfile::tempdir().unwrap();
        let state = StateDir::new(folder.path());
        let first = state.lock("app-db").unwrap();
        let error = state.lock("app-db").unwrap_err();
        assert!(
            matches!(&error, Error::Held { holder, .. } if holder.contains(&format!("pid {}", std::process::id()))),
            "{error}"
        );
        // Another policy is independent.
        let _other = state.lock("other").unwrap();
        drop(first);
        state.lock("app-db").unwrap();
        let mode = fs::metadata(folder.path().join("locks"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
