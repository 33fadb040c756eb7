//! Checking a stored backup against its sidecar: the sidecar's own digest,
//! size, SHA-256, and the gzip stream decoded end to end (its CRC-32 and
//! length), in one streamed read; for a restore, also that the decoded data
//! is what its tool can read (`pg_restore --list`, the SQLite header).
//!
//! The decoded bytes can be handed to a sink as they are checked, which is
//! how a restore streams a backup into its target while it re-checks it.
//! Reads only; never repairs or deletes.

use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use flate2::read::GzDecoder;
use sha2::{Digest as _, Sha256};

use crate::destination::Destination;
use crate::inventory::metadata::{self, hex};
use crate::inventory::{BackupMetadata, BackupRecord, RecordState};
use crate::source::postgres::{drain, joined};

/// Size of the chunks data is streamed in.
const CHUNK: usize = 256 * 1024;

/// What is wrong with a backup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("sidecar: {0}")]
    Sidecar(String),
    #[error("data `{0}` is missing")]
    MissingData(String),
    #[error("data is {actual} bytes, the sidecar says {expected}")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("SHA-256 is {actual}, the sidecar says {expected}")]
    ChecksumMismatch { expected: String, actual: String },
    #[error("the gzip stream is damaged: {0}")]
    Gzip(String),
    #[error("cannot read the data: {0}")]
    Read(String),
    #[error("the data is not restorable: {0}")]
    Unrestorable(String),
    /// Not the backup's fault: the sink the data was streamed to failed.
    #[error("{0}")]
    Write(String),
}

/// Reads `record`'s data from `destination` and checks it against its sidecar.
pub fn verify(destination: &dyn Destination, record: &BackupRecord) -> Result<(), Problem> {
    check_sidecar(destination, &record.metadata)?;
    verify_into(destination, record, &mut io::sink())
}

/// Checks that the stored bytes of `record` are the ones its (re-read,
/// sealed) sidecar describes: size and SHA-256, without decoding them.
pub fn verify_stored(destination: &dyn Destination, record: &BackupRecord) -> Result<(), Problem> {
    check_sidecar(destination, &record.metadata)?;
    let artifact = &record.metadata.artifact;
    let reader = open_data(destination, record)?;
    let mut hashing = Hashing {
        inner: reader,
        hasher: Sha256::new(),
        bytes: 0,
        failed: None,
    };
    let copied = io::copy(&mut hashing, &mut io::sink());
    if let Some(error) = hashing.failed.take() {
        return Err(Problem::Read(error));
    }
    copied.map_err(|error| Problem::Read(error.to_string()))?;
    compare(&hashing, artifact)
}

/// Opens `record`'s data, unless the listing already showed it missing or of another size.
fn open_data(
    destination: &dyn Destination,
    record: &BackupRecord,
) -> Result<Box<dyn Read + Send>, Problem> {
    let artifact = &record.metadata.artifact;
    match record.state {
        RecordState::MissingData => return Err(Problem::MissingData(artifact.name.clone())),
        RecordState::SizeMismatch { actual } => {
            return Err(Problem::SizeMismatch {
                expected: artifact.size,
                actual,
            });
        }
        RecordState::Complete => {}
    }
    destination
        .open(&record.metadata.policy, &artifact.name)
        .map_err(|error| Problem::Read(error.to_string()))
}

/// Size and SHA-256 of what `hashing` read, against the sidecar's.
fn compare<R>(
    hashing: &Hashing<R>,
    artifact: &crate::inventory::metadata::Artifact,
) -> Result<(), Problem> {
    if hashing.bytes != artifact.size {
        return Err(Problem::SizeMismatch {
            expected: artifact.size,
            actual: hashing.bytes,
        });
    }
    let actual = hex(&hashing.hasher.clone().finalize());
    if actual != artifact.sha256 {
        return Err(Problem::ChecksumMismatch {
            expected: artifact.sha256.clone(),
            actual,
        });
    }
    Ok(())
}

/// Re-reads the sidecar of `metadata` and checks it is undamaged and says
/// what `metadata` says.
pub fn check_sidecar(
    destination: &dyn Destination,
    metadata: &BackupMetadata,
) -> Result<BackupMetadata, Problem> {
    let name = format!("{}.json", metadata.id);
    let reader = destination
        .open(&metadata.policy, &name)
        .map_err(|error| Problem::Read(error.to_string()))?;
    let bytes = crate::bounded::read_capped(reader, crate::bounded::RECORD_LIMIT)
        .map_err(|error| Problem::Read(format!("{name}: {error}")))?;
    let read = metadata::parse_checked(&bytes).map_err(Problem::Sidecar)?;
    if read.policy != metadata.policy || read.id != metadata.id {
        return Err(Problem::Sidecar(format!(
            "it names policy `{}` and id `{}`, not its own place",
            read.policy, read.id
        )));
    }
    if read != *metadata {
        return Err(Problem::Sidecar("it changed while it was read".to_owned()));
    }
    Ok(read)
}

/// Full verification before a restore: the sidecar, the data, and that the
/// decoded data is readable by its tool. `pg_restore` is the program used
/// for PostgreSQL dumps; for those, returns the dump's table of contents
/// as `pg_restore --list --verbose` printed it.
pub fn verify_restorable(
    destination: &dyn Destination,
    record: &BackupRecord,
    pg_restore: &Path,
) -> Result<Option<String>, Problem> {
    check_sidecar(destination, &record.metadata)?;
    match record.metadata.source.kind.as_str() {
        "postgres" => {
            list_contents(pg_restore, |sink| verify_into(destination, record, sink)).map(Some)
        }
        "sqlite" => {
            let mut header = Header(Vec::with_capacity(16));
            verify_into(destination, record, &mut header)?;
            if header.0 != b"SQLite format 3\0" {
                return Err(Problem::Unrestorable(
                    "it does not start with the SQLite header".to_owned(),
                ));
            }
            Ok(None)
        }
        other => Err(Problem::Unrestorable(format!(
            "unknown source kind `{other}`"
        ))),
    }
}

/// The table of contents of a PostgreSQL dump, as `pg_restore --list
/// --verbose` prints it, from the head of its data only: a custom-format
/// dump starts with it, and `pg_restore` stops reading there. Checks
/// nothing else ([`verify_stored`] and the restore's own stream do).
pub fn read_listing(
    destination: &dyn Destination,
    record: &BackupRecord,
    pg_restore: &Path,
) -> Result<String, Problem> {
    let reader = open_data(destination, record)?;
    list_contents(pg_restore, |sink| {
        let mut decoder = GzDecoder::new(reader);
        let mut buffer = vec![0_u8; CHUNK];
        while !sink.closed() {
            match decoder.read(&mut buffer) {
                Ok(0) => break,
                Ok(count) => sink
                    .write_all(&buffer[..count])
                    .map_err(|error| Problem::Write(error.to_string()))?,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(Problem::Read(error.to_string())),
            }
        }
        Ok(())
    })
}

/// Runs `pg_restore --list --verbose`, has `feed` write the decoded dump
/// into it, and returns what it printed.
fn list_contents(
    pg_restore: &Path,
    feed: impl FnOnce(&mut Tolerant<std::process::ChildStdin>) -> Result<(), Problem>,
) -> Result<String, Problem> {
    let mut list = Command::new(pg_restore)
        .args(["--list", "--verbose"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| {
            Problem::Write(format!("cannot run `{}`: {error}", pg_restore.display()))
        })?;
    let stdout = drain(list.stdout.take());
    let stderr = drain(list.stderr.take());
    let mut sink = Tolerant(list.stdin.take());
    let streamed = feed(&mut sink);
    drop(sink);
    let status = list.wait();
    let stdout = joined(stdout);
    let stderr = joined(stderr);
    streamed?;
    let status = status.map_err(|error| Problem::Write(error.to_string()))?;
    if !status.success() {
        return Err(Problem::Unrestorable(format!(
            "pg_restore --list cannot read it ({status}): {}",
            stderr.trim()
        )));
    }
    Ok(stdout)
}

/// Streams `record`'s data from `destination`, decompressed, into `sink`,
/// checking size, SHA-256, and the gzip stream against the sidecar as it
/// goes. The sink has seen every byte only when this returns `Ok`.
pub fn verify_into(
    destination: &dyn Destination,
    record: &BackupRecord,
    sink: &mut dyn Write,
) -> Result<(), Problem> {
    let reader = open_data(destination, record)?;
    verify_stream(reader, &record.metadata, sink)
}

/// Like [`verify_into`], from a reader of the stored (compressed) bytes.
pub fn verify_stream(
    reader: impl Read,
    metadata: &BackupMetadata,
    sink: &mut dyn Write,
) -> Result<(), Problem> {
    let artifact = &metadata.artifact;
    let mut hashing = Hashing {
        inner: reader,
        hasher: Sha256::new(),
        bytes: 0,
        failed: None,
    };
    let mut decoder = GzDecoder::new(&mut hashing);
    let mut buffer = vec![0_u8; CHUNK];
    let mut decoded: u64 = 0;
    let mut decode_error = None;
    loop {
        match decoder.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => {
                decoded += count as u64;
                sink.write_all(&buffer[..count])
                    .map_err(|error| Problem::Write(error.to_string()))?;
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                decode_error = Some(error.to_string());
                break;
            }
        }
    }
    drop(decoder);
    // Whatever follows the gzip stream still counts toward size and checksum.
    io::copy(&mut hashing, &mut io::sink()).map_err(|error| Problem::Read(error.to_string()))?;
    if let Some(error) = hashing.failed.take() {
        return Err(Problem::Read(error));
    }
    compare(&hashing, artifact)?;
    if let Some(error) = decode_error {
        return Err(Problem::Gzip(error));
    }
    // 0: not recorded (a sidecar written by another tool).
    if artifact.uncompressed_size != 0 && decoded != artifact.uncompressed_size {
        return Err(Problem::Gzip(format!(
            "it decompresses to {decoded} bytes, the sidecar says {}",
            artifact.uncompressed_size
        )));
    }
    sink.flush()
        .map_err(|error| Problem::Write(error.to_string()))?;
    Ok(())
}

struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
    /// A read error of the underlying stream (not of the decoder).
    failed: Option<String>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let count = self.inner.read(buffer).inspect_err(|error| {
            if error.kind() != io::ErrorKind::Interrupted {
                self.failed = Some(error.to_string());
            }
        })?;
        self.hasher.update(&buffer[..count]);
        self.bytes += count as u64;
        Ok(count)
    }
}

/// A child's stdin that may close early (`pg_restore --list` stops reading
/// once it has the table of contents); its exit status tells whether it
/// could read the data.
struct Tolerant<W>(Option<W>);

impl<W> Tolerant<W> {
    /// Whether the child stopped reading.
    fn closed(&self) -> bool {
        self.0.is_none()
    }
}

impl<W: Write> Write for Tolerant<W> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        if let Some(inner) = self.0.as_mut()
            && inner.write_all(buffer).is_err()
        {
            self.0 = None;
        }
        Ok(buffer.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Keeps the first 16 bytes written.
struct Header(Vec<u8>);

impl Write for Header {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        let wanted = 16usize.saturating_sub(self.0.len()).min(buffer.len());
        self.0.extend_from_slice(&buffer[..wanted]);
        Ok(buffer.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
