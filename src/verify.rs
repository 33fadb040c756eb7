//! Checking a stored backup against its sidecar: the sidecar's own digest,
//! size, SHA-256, and the gzip stream decoded end to end (its CRC-32 and
//! length), in one streamed read; for a restore, also that the decoded data
//! is what its kind's tool can read (the [`Database`] says how).
//!
//! The decoded bytes can be handed to a sink as they are checked, which is
//! how a restore streams a backup into its target while it re-checks it.
//! Reads only; never repairs or deletes.

pub mod sweep;

use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

use crate::database::Database;
use crate::destination::Destination;
use crate::inventory::metadata::{self, Artifact, hex};
use crate::inventory::{BackupMetadata, BackupRecord, RecordState};

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
    /// A stream of another compression (`zstd`) that does not decode.
    #[error("the {compression} stream is damaged: {reason}")]
    Decode { compression: String, reason: String },
    /// An encrypted backup that cannot be decrypted: no identity, the wrong
    /// one, or damage inside the age stream.
    #[error("cannot decrypt: {0}")]
    Decrypt(String),
    #[error("cannot read the data: {0}")]
    Read(String),
    #[error("the data is not restorable: {0}")]
    Unrestorable(String),
    /// Not the backup's fault: the sink the data was streamed to failed.
    #[error("{0}")]
    Write(String),
}

/// How much of a backup [`verify`] could check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Stored bytes and the decoded stream.
    Whole,
    /// An encrypted backup without an identity to decrypt it with: the
    /// stored bytes only (size and SHA-256, which cover the ciphertext).
    StoredOnly,
}

/// Reads `record`'s data (every part) from `destination` and checks it
/// against its sidecar: decoded end to end, or for an encrypted backup
/// without an identity registered ([`crate::codec::keys`]), the stored bytes.
pub fn verify(destination: &dyn Destination, record: &BackupRecord) -> Result<Verified, Problem> {
    if record.metadata.encryption.is_some() && !crate::codec::keys::has(&record.metadata.policy) {
        verify_stored(destination, record)?;
        return Ok(Verified::StoredOnly);
    }
    check_sidecar(destination, &record.metadata)?;
    for (index, object) in record.metadata.objects().iter().enumerate() {
        let reader = open_object(destination, record, object)?;
        // The first part of a format with its own checksums is checked by them too.
        match crate::database::stream_check(record.metadata.format()).filter(|_| index == 0) {
            None => verify_stream(reader, &record.metadata, object, &mut io::sink())?,
            Some(mut check) => {
                verify_stream(reader, &record.metadata, object, &mut check)?;
                check.verdict().map_err(Problem::Unrestorable)?;
            }
        }
    }
    Ok(Verified::Whole)
}

/// Checks that the stored bytes of `record` are the ones its (re-read,
/// sealed) sidecar describes: size and SHA-256, without decoding them.
pub fn verify_stored(destination: &dyn Destination, record: &BackupRecord) -> Result<(), Problem> {
    check_sidecar(destination, &record.metadata)?;
    for object in record.metadata.objects() {
        let reader = open_object(destination, record, object)?;
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
        compare(&hashing, object)?;
    }
    Ok(())
}

/// Opens `record`'s data, unless the listing already showed it missing or of another size.
fn open_data(
    destination: &dyn Destination,
    record: &BackupRecord,
) -> Result<Box<dyn Read + Send>, Problem> {
    open_object(destination, record, &record.metadata.artifact)
}

/// Opens `object`, a part of `record`, unless the listing already showed
/// the backup's data missing or of another size.
fn open_object(
    destination: &dyn Destination,
    record: &BackupRecord,
    object: &Artifact,
) -> Result<Box<dyn Read + Send>, Problem> {
    let single = record.metadata.parts.is_empty();
    match record.state {
        RecordState::MissingData if single => {
            return Err(Problem::MissingData(object.name.clone()));
        }
        RecordState::SizeMismatch { actual } if single => {
            return Err(Problem::SizeMismatch {
                expected: object.size,
                actual,
            });
        }
        // Of several parts, the one opened may be whole: the one that is
        // not is found when it is opened or read.
        _ => {}
    }
    destination
        .open(&record.metadata.policy, &object.name)
        .map_err(
            |error| match destination.stat(&record.metadata.policy, &object.name) {
                Ok(None) => Problem::MissingData(object.name.clone()),
                _ => Problem::Read(error.to_string()),
            },
        )
}

/// Size and SHA-256 of what `hashing` read, against the sidecar's.
fn compare<R>(hashing: &Hashing<R>, artifact: &Artifact) -> Result<(), Problem> {
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
    let name = crate::inventory::names::sidecar(&metadata.id);
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
/// decoded data is readable by its kind's own tool ([`Database::check_restorable`]);
/// returns the backup's table of contents where the kind has one.
pub fn verify_restorable(
    destination: &dyn Destination,
    record: &BackupRecord,
    database: &dyn Database,
) -> Result<Option<String>, Problem> {
    check_sidecar(destination, &record.metadata)?;
    database.check_restorable(destination, record)
}

/// `record`'s data from `destination`, decrypted and decompressed,
/// unchecked (for reading its head only; [`verify_into`] checks the whole stream).
pub fn open_decoded(
    destination: &dyn Destination,
    record: &BackupRecord,
) -> Result<Box<dyn Read>, Problem> {
    let metadata = &record.metadata;
    let identities = identities(metadata)?;
    crate::codec::decoder(
        open_data(destination, record)?,
        &metadata.artifact.compression,
        metadata.encryption.is_some(),
        identities.as_ref(),
    )
    .map_err(|error| decode_problem(&metadata.artifact.compression, error))
}

/// That `record`'s data can be decoded here at all (a known codec, and for
/// an encrypted backup, an identity that opens it): its first bytes are
/// read, before a restore touches anything.
pub fn check_decodable(
    destination: &dyn Destination,
    record: &BackupRecord,
) -> Result<(), Problem> {
    let mut head = [0_u8; 1];
    open_decoded(destination, record)?
        .read(&mut head)
        .map(drop)
        .map_err(|error| {
            read_problem(
                record.metadata.encryption.is_some(),
                &record.metadata.artifact.compression,
                error,
            )
        })
}

/// The identities to decrypt `metadata`'s backup with, when it is encrypted.
fn identities(metadata: &BackupMetadata) -> Result<Option<crate::codec::Identities>, Problem> {
    if metadata.encryption.is_none() {
        return Ok(None);
    }
    match crate::codec::keys::for_policy(&metadata.policy) {
        None => Err(Problem::Decrypt(
            crate::codec::Error::NoIdentity.to_string(),
        )),
        Some(parsed) => parsed
            .map(Some)
            .map_err(|error| Problem::Decrypt(error.to_string())),
    }
}

/// The problem for a codec that cannot start on a stream.
fn decode_problem(compression: &str, error: crate::codec::Error) -> Problem {
    use crate::codec::Error;
    match error {
        Error::Decrypt(_) | Error::NoIdentity | Error::Identity { .. } => {
            Problem::Decrypt(error.to_string())
        }
        Error::UnknownCompression(_) => Problem::Unrestorable(error.to_string()),
        error => Problem::Decode {
            compression: compression.to_owned(),
            reason: error.to_string(),
        },
    }
}

/// The problem for a read of a decoded stream that failed: damage inside
/// the age stream, or in the compressed one.
fn read_problem(encrypted: bool, compression: &str, error: io::Error) -> Problem {
    let reason = error.to_string();
    if encrypted && crate::codec::DecryptFailure::is(&error) {
        return Problem::Decrypt(format!("the age stream is damaged: {reason}"));
    }
    match compression {
        "gzip" => Problem::Gzip(reason),
        _ => Problem::Decode {
            compression: compression.to_owned(),
            reason,
        },
    }
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
    verify_stream(reader, &record.metadata, &record.metadata.artifact, sink)
}

/// Like [`verify_into`], from a reader of the stored (compressed, maybe
/// encrypted) bytes of `artifact` (the backup's data, or one of its parts).
pub fn verify_stream(
    reader: impl Read,
    metadata: &BackupMetadata,
    artifact: &Artifact,
    sink: &mut dyn Write,
) -> Result<(), Problem> {
    let identities = identities(metadata)?;
    let encrypted = metadata.encryption.is_some();
    let compression = artifact.compression.as_str();
    let mut hashing = Hashing {
        inner: reader,
        hasher: Sha256::new(),
        bytes: 0,
        failed: None,
    };
    let mut decoder =
        crate::codec::decoder(&mut hashing, compression, encrypted, identities.as_ref())
            .map_err(|error| decode_problem(compression, error))?;
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
                decode_error = Some(error);
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
        return Err(read_problem(encrypted, compression, error));
    }
    // 0: not recorded (a sidecar written by another tool).
    if artifact.uncompressed_size != 0 && decoded != artifact.uncompressed_size {
        return Err(read_problem(
            false,
            compression,
            io::Error::other(format!(
                "it decompresses to {decoded} bytes, the sidecar says {}",
                artifact.uncompressed_size
            )),
        ));
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
