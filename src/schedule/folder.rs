//! A folder of files a scheduler owns beside others' files: systemd units in
//! a unit folder, Kubernetes manifests in a GitOps folder, or whatever
//! `backup render` writes.
//!
//! A file is ours when its first line starts with [`super::MANAGED_MARKER`];
//! every other file is someone else's and is never changed, replaced or
//! removed. [`changes`] is pure; [`read`], [`write`] and [`remove`] touch
//! the folder (one level, no subfolders). Writes are atomic: a temporary
//! file in the same folder, mode 0644, synced and renamed over the old one.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{RenderedFile, is_managed};

/// The most read of one file in the folder: no unit or manifest is larger.
const FILE_LIMIT: u64 = 1024 * 1024;

/// Why the folder could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "{} is not managed by backup (its first line is not `{}`); move it away or remove it, backup never overwrites it",
        .0.display(),
        super::MANAGED_MARKER
    )]
    NotManaged(PathBuf),
    #[error("`{0}` is not a file name in one folder")]
    BadName(String),
}

fn io_error(what: String) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Io { what, source }
}

/// What one file needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Not in the folder yet.
    Create,
    /// In the folder, with other text.
    Change,
    /// Ours in the folder, no longer rendered.
    Remove,
}

impl Change {
    pub fn name(self) -> &'static str {
        match self {
            Change::Create => "create",
            Change::Change => "change",
            Change::Remove => "remove",
        }
    }
}

/// One file that differs, with the unified diff from what is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    pub name: String,
    pub change: Change,
    pub diff: String,
}

/// The files that differ between `current` (ours in the folder) and
/// `planned`, by name: creations and changes in `planned`'s order, then
/// removals.
pub fn changes(current: &[RenderedFile], planned: &[RenderedFile]) -> Vec<FileChange> {
    let mut changes = Vec::new();
    for file in planned {
        match current.iter().find(|found| found.name == file.name) {
            None => changes.push(FileChange {
                name: file.name.clone(),
                change: Change::Create,
                diff: super::crontab::diff("", &file.text),
            }),
            Some(found) if found.text != file.text => changes.push(FileChange {
                name: file.name.clone(),
                change: Change::Change,
                diff: super::crontab::diff(&found.text, &file.text),
            }),
            Some(_) => {}
        }
    }
    for found in current {
        if !planned.iter().any(|file| file.name == found.name) {
            changes.push(FileChange {
                name: found.name.clone(),
                change: Change::Remove,
                diff: super::crontab::diff(&found.text, ""),
            });
        }
    }
    changes
}

/// Every file of ours in `folder`, sorted by name, and the names of the
/// others; a folder that does not exist holds nothing.
pub fn read(folder: &Path) -> Result<(Vec<RenderedFile>, Vec<String>), Error> {
    let entries = match fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Ok((Vec::new(), Vec::new()));
        }
        Err(source) => {
            return Err(Error::Io {
                what: format!("list {}", folder.display()),
                source,
            });
        }
    };
    let mut ours = Vec::new();
    let mut others = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(format!("list {}", folder.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let file_type = entry
            .file_type()
            .map_err(io_error(format!("look at {}", path.display())))?;
        // Temporaries of an interrupted write, and folders (`timers.target.wants`).
        if name.starts_with('.') || !file_type.is_file() {
            continue;
        }
        match read_file(&path)? {
            Some(text) if is_managed(&text) => ours.push(RenderedFile { name, text }),
            _ => others.push(name),
        }
    }
    ours.sort_by(|left, right| left.name.cmp(&right.name));
    others.sort();
    Ok((ours, others))
}

/// A file's text; `None` when it is not UTF-8 text (so not ours).
fn read_file(path: &Path) -> Result<Option<String>, Error> {
    match crate::bounded::read_file(path, FILE_LIMIT) {
        Ok(bytes) => Ok(String::from_utf8(bytes).ok()),
        Err(crate::bounded::Error::Io(error)) if error.kind() == io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(crate::bounded::Error::Io(source)) => Err(Error::Io {
            what: format!("read {}", path.display()),
            source,
        }),
        // Too large or not a regular file: not ours.
        Err(_) => Ok(None),
    }
}

/// `folder/name`, for a name without folders in it.
fn path_of(folder: &Path, name: &str) -> Result<PathBuf, Error> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') || name.contains('\0') {
        return Err(Error::BadName(name.to_owned()));
    }
    Ok(folder.join(name))
}

/// The names among `planned` that `folder` holds as someone else's files.
pub fn foreign(folder: &Path, planned: &[RenderedFile]) -> Result<Vec<PathBuf>, Error> {
    let (_, others) = read(folder)?;
    Ok(planned
        .iter()
        .filter(|file| others.contains(&file.name))
        .map(|file| folder.join(&file.name))
        .collect())
}

/// Writes `file` into `folder` (made if missing), atomically, mode 0644;
/// refuses to replace a file that is not ours.
pub fn write(folder: &Path, file: &RenderedFile) -> Result<(), Error> {
    let path = path_of(folder, &file.name)?;
    if let Some(text) = read_file(&path)?
        && !is_managed(&text)
    {
        return Err(Error::NotManaged(path));
    }
    if path.exists() && read_file(&path)?.is_none() {
        return Err(Error::NotManaged(path));
    }
    fs::create_dir_all(folder).map_err(io_error(format!("create {}", folder.display())))?;
    let shown = path.display().to_string();
    let mut temporary = tempfile::Builder::new()
        .prefix(".backup.")
        .tempfile_in(folder)
        .map_err(io_error(format!("create a temporary file next to {shown}")))?;
    temporary
        .write_all(file.text.as_bytes())
        .map_err(io_error(format!("write a temporary file for {shown}")))?;
    temporary
        .as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(io_error(format!(
            "set the mode of a temporary file for {shown}"
        )))?;
    temporary
        .as_file()
        .sync_all()
        .map_err(io_error(format!("sync a temporary file for {shown}")))?;
    temporary
        .persist(&path)
        .map_err(|error| error.error)
        .map_err(io_error(format!("rename a temporary file over {shown}")))?;
    fs::File::open(folder)
        .and_then(|folder| folder.sync_all())
        .map_err(io_error(format!("sync {}", folder.display())))?;
    Ok(())
}

/// Removes `name` from `folder` if it is ours (and is there).
pub fn remove(folder: &Path, name: &str) -> Result<(), Error> {
    let path = path_of(folder, name)?;
    match read_file(&path)? {
        None if !path.exists() => Ok(()),
        Some(text) if is_managed(&text) => {
            fs::remove_file(&path).map_err(io_error(format!("remove {}", path.display())))
        }
        _ => Err(Error::NotManaged(path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> RenderedFile {
        RenderedFile {
            name: name.to_owned(),
            text: text.to_owned(),
        }
    }

    #[test]
    fn changes_name_creations_changes_and_removals() {
        let marker = super::super::MANAGED_MARKER;
        let current = [
            file("a.timer", &format!("{marker}\nold\n")),
            file("b.timer", &format!("{marker}\nsame\n")),
            file("gone.timer", &format!("{marker}\ngone\n")),
        ];
        let planned = [
            file("a.timer", &format!("{marker}\nnew\n")),
            file("b.timer", &format!("{marker}\nsame\n")),
            file("c.timer", &format!("{marker}\nc\n")),
        ];
        let found: Vec<(String, Change)> = changes(&current, &planned)
            .into_iter()
            .map(|change| (change.name, change.change))
            .collect();
        assert_eq!(
            found,
            [
                ("a.timer".to_owned(), Change::Change),
                ("c.timer".to_owned(), Change::Create),
                ("gone.timer".to_owned(), Change::Remove),
            ]
        );
    }

    #[test]
    fn files_of_others_are_never_written_or_removed() {
        let folder = tempfile::tempdir().unwrap();
        let marker = super::super::MANAGED_MARKER;
        std::fs::write(folder.path().join("theirs.timer"), "[Timer]\n").unwrap();
        let theirs = file("theirs.timer", &format!("{marker}\nmine\n"));
        assert!(matches!(
            write(folder.path(), &theirs),
            Err(Error::NotManaged(_))
        ));
        assert!(matches!(
            remove(folder.path(), "theirs.timer"),
            Err(Error::NotManaged(_))
        ));
        assert_eq!(
            std::fs::read_to_string(folder.path().join("theirs.timer")).unwrap(),
            "[Timer]\n"
        );
        let mine = file("mine.timer", &format!("{marker}\nmine\n"));
        write(folder.path(), &mine).unwrap();
        let (ours, others) = read(folder.path()).unwrap();
        assert_eq!(ours, [mine]);
        assert_eq!(others, ["theirs.timer"]);
        let mode = std::fs::metadata(folder.path().join("mine.timer"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        remove(folder.path(), "mine.timer").unwrap();
        assert_eq!(read(folder.path()).unwrap().0, []);
    }
}
