//! A folder on this host.
//!
//! Layout: `<root>/<policy>/<name>`. Data is written to `<name>.partial`,
//! fsynced, size-checked, renamed, and the folder fsynced; small objects go
//! through `<name>.tmp` the same way. The rename never replaces a file
//! (`renameat2(RENAME_NOREPLACE)`, or a hard link where the file system
//! lacks it), so a name that is taken stays as it is. Entries that are not
//! plain files (symbolic links, folders, FIFOs) are listed as such and never
//! opened: nothing is read through a link. Folders this module creates are
//! 0700, files 0600, whatever the umask.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{
    DirBuilderExt as _, FileTypeExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};

use super::{Destination, Entry, Error, Upload};
use crate::inventory::names;

/// A local folder destination.
#[derive(Debug, Clone)]
pub struct Local {
    root: PathBuf,
}

impl Local {
    pub fn new(root: PathBuf) -> Self {
        Local { root }
    }

    fn folder(&self, policy: &str) -> PathBuf {
        self.root.join(policy)
    }

    /// Whether `name` of `policy` is a file holding exactly `bytes`.
    fn holds(&self, policy: &str, name: &str, bytes: &[u8]) -> bool {
        let mut found = Vec::new();
        self.open(policy, name)
            .and_then(|reader| {
                reader
                    .take(bytes.len() as u64 + 1)
                    .read_to_end(&mut found)
                    .map_err(Error::Write)
            })
            .is_ok_and(|_| found == bytes)
    }

    /// Creates the policy folder (and the root, and for a sub-folder such
    /// as `app/wal` its policy folder, if missing) as 0700.
    fn ensure_folder(&self, policy: &str) -> Result<PathBuf, Error> {
        if !self.root.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.root)
                .map_err(Error::io("cannot create", self.root.display()))?;
        }
        let mut folder = self.root.clone();
        for segment in policy.split('/') {
            folder.push(segment);
            match DirBuilder::new().mode(0o700).create(&folder) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
                Err(error) => return Err(Error::io("cannot create", folder.display())(error)),
            }
            fs::set_permissions(&folder, fs::Permissions::from_mode(0o700))
                .map_err(Error::io("cannot set permissions of", folder.display()))?;
        }
        Ok(folder)
    }
}

/// Creates `path` new, mode 0600 whatever the umask.
fn create_private(path: &Path) -> Result<File, Error> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(Error::io("cannot create", path.display()))?;
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(Error::io("cannot set permissions of", path.display()))?;
    Ok(file)
}

fn sync_folder(folder: &Path) -> Result<(), Error> {
    File::open(folder)
        .and_then(|handle| handle.sync_all())
        .map_err(Error::io("cannot sync", folder.display()))
}

/// Renames `from` to `to` unless `to` exists (atomically: no check-then-act
/// window), then makes the rename durable.
fn publish(from: &Path, to: &Path, folder: &Path) -> Result<(), Error> {
    let exists = || Error::Exists {
        location: to.display().to_string(),
    };
    match rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        rustix::fs::RenameFlags::NOREPLACE,
    ) {
        Ok(()) => {}
        Err(rustix::io::Errno::EXIST) => return Err(exists()),
        // File systems without RENAME_NOREPLACE: a hard link is create-only too.
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS | rustix::io::Errno::NOTSUP) => {
            match fs::hard_link(from, to) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => return Err(exists()),
                Err(error) => return Err(Error::io("cannot rename to", to.display())(error)),
            }
            fs::remove_file(from).map_err(Error::io("cannot remove", from.display()))?;
        }
        Err(errno) => {
            return Err(Error::io("cannot rename to", to.display())(errno.into()));
        }
    }
    sync_folder(folder)
}

/// What a directory entry is when it is not a plain file.
fn irregular(file_type: fs::FileType) -> Option<&'static str> {
    if file_type.is_file() {
        None
    } else if file_type.is_symlink() {
        Some("a symbolic link")
    } else if file_type.is_dir() {
        Some("a folder")
    } else if file_type.is_fifo() {
        Some("a FIFO")
    } else if file_type.is_socket() {
        Some("a socket")
    } else {
        Some("a device")
    }
}

/// The entry `path` as listed, without following a link.
fn entry(path: &Path, name: String) -> Result<Option<Entry>, Error> {
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        // Renamed or removed since the folder was read (a commit, a prune).
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(Error::io("cannot read", path.display())(error)),
    };
    Ok(Some(Entry {
        name,
        size: metadata.len(),
        modified: metadata.modified().ok().map(chrono::DateTime::from),
        tag: None,
        irregular: irregular(metadata.file_type()),
    }))
}

impl Destination for Local {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn begin(&self, policy: &str, name: &str) -> Result<Box<dyn Upload>, Error> {
        let folder = self.ensure_folder(policy)?;
        let partial = folder.join(names::partial(name));
        // A partial of the same name was left by a writer that died: writers
        // of a policy hold its lock, so no live one can own it.
        match fs::remove_file(&partial) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(Error::io("cannot remove", partial.display())(error)),
        }
        let file = create_private(&partial)?;
        Ok(Box::new(LocalUpload {
            writer: Some(BufWriter::with_capacity(1 << 20, file)),
            written: 0,
            final_path: folder.join(name),
            partial,
            folder,
        }))
    }

    fn put(&self, policy: &str, name: &str, bytes: &[u8]) -> Result<(), Error> {
        let folder = self.ensure_folder(policy)?;
        let temporary = folder.join(names::temporary(name));
        let result = (|| {
            let mut file = create_private(&temporary)?;
            file.write_all(bytes)
                .and_then(|()| file.sync_all())
                .map_err(Error::io("cannot write", temporary.display()))?;
            publish(&temporary, &folder.join(name), &folder)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temporary);
        }
        match result {
            // Written before by a write whose outcome was lost: the same bytes.
            Err(Error::Exists { .. }) if self.holds(policy, name, bytes) => Ok(()),
            result => result,
        }
    }

    fn list(&self, policy: &str) -> Result<Vec<Entry>, Error> {
        let folder = self.folder(policy);
        let entries = match fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(Error::io("cannot list", folder.display())(error)),
        };
        let mut listed = Vec::new();
        for found in entries {
            let found = found.map_err(Error::io("cannot list", folder.display()))?;
            // Names that are not UTF-8 are no backup's; they stay as they are.
            let Ok(name) = found.file_name().into_string() else {
                continue;
            };
            listed.extend(entry(&found.path(), name)?);
        }
        Ok(listed)
    }

    fn stat(&self, policy: &str, name: &str) -> Result<Option<Entry>, Error> {
        entry(&self.folder(policy).join(name), name.to_owned())
    }

    fn open(&self, policy: &str, name: &str) -> Result<Box<dyn Read + Send>, Error> {
        let path = self.folder(policy).join(name);
        // Never through a link: it could point anywhere on this host.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(Error::io("cannot open", path.display()))?;
        let metadata = file
            .metadata()
            .map_err(Error::io("cannot read", path.display()))?;
        if let Some(kind) = irregular(metadata.file_type()) {
            return Err(Error::Io {
                action: "cannot open",
                location: path.display().to_string(),
                source: io::Error::other(format!("it is {kind}, not a file")),
            });
        }
        Ok(Box::new(io::BufReader::with_capacity(1 << 20, file)))
    }

    fn remove(&self, policy: &str, name: &str) -> Result<(), Error> {
        let folder = self.folder(policy);
        let path = folder.join(name);
        match fs::remove_file(&path) {
            Ok(()) => sync_folder(&folder),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(Error::io("cannot remove", path.display())(error)),
        }
    }

    fn replace(&self, policy: &str, name: &str, bytes: &[u8]) -> Result<(), Error> {
        let folder = self.ensure_folder(policy)?;
        let target = folder.join(name);
        // Unique per process: two runs on one host never share a temporary.
        let temporary = folder.join(names::temporary(&format!("{name}.{}", std::process::id())));
        let result = (|| {
            let mut file = create_private(&temporary)?;
            file.write_all(bytes)
                .and_then(|()| file.sync_all())
                .map_err(Error::io("cannot write", temporary.display()))?;
            fs::rename(&temporary, &target)
                .map_err(Error::io("cannot rename to", target.display()))?;
            sync_folder(&folder)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temporary);
        }
        result
    }
}

struct LocalUpload {
    writer: Option<BufWriter<File>>,
    written: u64,
    partial: PathBuf,
    final_path: PathBuf,
    folder: PathBuf,
}

impl Write for LocalUpload {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| io::Error::other("upload already finished"))?;
        let count = writer.write(buffer)?;
        self.written += count as u64;
        Ok(count)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.as_mut().map_or(Ok(()), Write::flush)
    }
}

impl Upload for LocalUpload {
    fn commit(mut self: Box<Self>, expected: u64) -> Result<(), Error> {
        let writer = self.writer.take().ok_or_else(|| Error::Io {
            action: "cannot commit",
            location: self.partial.display().to_string(),
            source: io::Error::other("upload already finished"),
        })?;
        let file = writer.into_inner().map_err(|error| {
            Error::io("cannot write", self.partial.display())(error.into_error())
        })?;
        file.sync_all()
            .map_err(Error::io("cannot sync", self.partial.display()))?;
        let actual = file
            .metadata()
            .map_err(Error::io("cannot read", self.partial.display()))?
            .len();
        if actual != expected || self.written != expected {
            return Err(Error::SizeMismatch {
                location: self.partial.display().to_string(),
                expected,
                actual,
            });
        }
        drop(file);
        publish(&self.partial, &self.final_path, &self.folder)
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        // After a commit the partial name is gone; otherwise this aborts the
        // upload. Only a crash leaves a partial behind, as an orphan.
        let _ = fs::remove_file(&self.partial);
    }
}
