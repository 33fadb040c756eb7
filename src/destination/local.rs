//! A folder on this host.
//!
//! Layout: `<root>/<policy>/<name>`. Data is written to `<name>.partial`,
//! fsynced, size-checked, renamed, and the folder fsynced; small objects go
//! through `<name>.tmp` the same way. Folders this module creates are 0700,
//! files 0600, whatever the umask.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use super::{Destination, Entry, Error, Upload};

/// Suffix of data still being written; anything with it is an orphan once its writer is gone.
pub const PARTIAL_SUFFIX: &str = ".partial";
/// Suffix of a small object being written.
pub const TEMPORARY_SUFFIX: &str = ".tmp";

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

    /// Creates the policy folder (and the root, if missing) as 0700.
    fn ensure_folder(&self, policy: &str) -> Result<PathBuf, Error> {
        let folder = self.folder(policy);
        if !self.root.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.root)
                .map_err(Error::io("cannot create", self.root.display()))?;
        }
        match DirBuilder::new().mode(0o700).create(&folder) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(Error::io("cannot create", folder.display())(error)),
        }
        fs::set_permissions(&folder, fs::Permissions::from_mode(0o700))
            .map_err(Error::io("cannot set permissions of", folder.display()))?;
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

/// Renames `from` to `to` unless `to` exists, then makes the rename durable.
fn publish(from: &Path, to: &Path, folder: &Path) -> Result<(), Error> {
    if to.exists() {
        return Err(Error::Exists {
            location: to.display().to_string(),
        });
    }
    fs::rename(from, to).map_err(Error::io("cannot rename to", to.display()))?;
    sync_folder(folder)
}

impl Destination for Local {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn begin(&self, policy: &str, name: &str) -> Result<Box<dyn Upload>, Error> {
        let folder = self.ensure_folder(policy)?;
        let partial = folder.join(format!("{name}{PARTIAL_SUFFIX}"));
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
        let temporary = folder.join(format!("{name}{TEMPORARY_SUFFIX}"));
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
        result
    }

    fn list(&self, policy: &str) -> Result<Vec<Entry>, Error> {
        let folder = self.folder(policy);
        let entries = match fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(Error::io("cannot list", folder.display())(error)),
        };
        let mut listed = Vec::new();
        for entry in entries {
            let entry = entry.map_err(Error::io("cannot list", folder.display()))?;
            let metadata = match entry.metadata() {
                Ok(metadata) => metadata,
                // Renamed or removed since the folder was read (a commit, a prune).
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(Error::io("cannot read", entry.path().display())(error)),
            };
            if !metadata.is_file() {
                continue;
            }
            if let Some(name) = entry.file_name().to_str() {
                listed.push(Entry {
                    name: name.to_owned(),
                    size: metadata.len(),
                    modified: metadata.modified().ok().map(chrono::DateTime::from),
                    tag: None,
                });
            }
        }
        Ok(listed)
    }

    fn open(&self, policy: &str, name: &str) -> Result<Box<dyn Read + Send>, Error> {
        let path = self.folder(policy).join(name);
        let file = File::open(&path).map_err(Error::io("cannot open", path.display()))?;
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
