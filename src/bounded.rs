//! Reading something whole, within a size limit: policy files, secret files,
//! sidecars, drill evidence, the state folder's records.
//!
//! Only regular files are read: a FIFO is opened without waiting for a
//! writer and refused, so is a device (`/dev/zero` never ends). What is read
//! goes through [`Read::take`], so a huge object costs at most the limit in
//! memory. This module reads; it never decides what a refusal means.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

/// The most read of one sidecar or drill evidence record: 1 MiB. A sidecar
/// is about a kilobyte; anything larger is damage (or an attack), reported
/// as unreadable and never cleaned up.
pub const RECORD_LIMIT: u64 = 1024 * 1024;

/// Why something could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("it is larger than {}, the limit", shown(*limit))]
    TooLarge { limit: u64 },
    #[error("it is not a regular file but {kind}")]
    NotRegular { kind: &'static str },
}

/// `1048576` → `1 MiB`, for limits (whole KiB or MiB).
fn shown(limit: u64) -> String {
    if limit >= 1 << 20 && limit.is_multiple_of(1 << 20) {
        format!("{} MiB", limit >> 20)
    } else if limit >= 1 << 10 && limit.is_multiple_of(1 << 10) {
        format!("{} KiB", limit >> 10)
    } else {
        format!("{limit} bytes")
    }
}

/// Opens `path` for reading if it is a regular file (after symlinks). A FIFO
/// is opened non-blocking, so that no writer is waited for, and refused, as
/// are devices, sockets and folders.
pub fn open_regular(path: &Path) -> Result<File, Error> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    // The handle's own type: the path may have changed since it was named.
    let kind = file.metadata()?.file_type();
    let refused = if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("a folder")
    } else if kind.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else if kind.is_socket() {
        Some("a socket")
    } else {
        Some("a special file")
    };
    if let Some(kind) = refused {
        return Err(Error::NotRegular { kind });
    }
    // Regular files ignore O_NONBLOCK; clear it anyway for plain reads.
    let _ = rustix::fs::fcntl_setfl(&file, rustix::fs::OFlags::empty());
    Ok(file)
}

/// All of `reader`, if it holds at most `limit` bytes.
pub fn read_capped(reader: impl Read, limit: u64) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(Error::TooLarge { limit });
    }
    Ok(bytes)
}

/// All of the regular file `path`, if it holds at most `limit` bytes.
pub fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>, Error> {
    read_capped(open_regular(path)?, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_fifos_devices_folders_and_large_files_without_waiting() {
        let folder = tempfile::tempdir().unwrap();
        let fifo = folder.path().join("fifo");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::RUSR).unwrap();
        assert!(matches!(
            read_file(&fifo, 10),
            Err(Error::NotRegular { kind }) if kind.contains("FIFO")
        ));
        assert!(matches!(
            read_file(Path::new("/dev/zero"), 10),
            Err(Error::NotRegular { .. })
        ));
        assert!(matches!(
            read_file(folder.path(), 10),
            Err(Error::NotRegular { .. })
        ));
        let file = folder.path().join("file");
        std::fs::write(&file, b"0123456789").unwrap();
        assert_eq!(read_file(&file, 10).unwrap(), b"0123456789");
        assert!(matches!(
            read_file(&file, 9),
            Err(Error::TooLarge { limit: 9 })
        ));
    }
}
