//! Checking a stored backup against its sidecar: size, SHA-256, and the
//! gzip stream decoded end to end (its CRC-32 and length), in one read.
//!
//! Reads only; never repairs or deletes.

use std::io::{self, Read};

use flate2::read::GzDecoder;
use sha2::{Digest as _, Sha256};

use crate::destination::Destination;
use crate::inventory::metadata::hex;
use crate::inventory::{BackupRecord, RecordState};

/// What is wrong with a backup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
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
}

/// Reads `record`'s data from `destination` and checks it.
pub fn verify(destination: &dyn Destination, record: &BackupRecord) -> Result<(), Problem> {
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
    let reader = destination
        .open(&record.metadata.policy, &artifact.name)
        .map_err(|error| Problem::Read(error.to_string()))?;
    let mut hashing = Hashing {
        inner: reader,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut decoder = GzDecoder::new(&mut hashing);
    let decoded = io::copy(&mut decoder, &mut io::sink());
    drop(decoder);
    // Whatever follows the gzip stream still counts toward size and checksum.
    io::copy(&mut hashing, &mut io::sink()).map_err(|error| Problem::Read(error.to_string()))?;
    let actual = hex(&hashing.hasher.finalize());
    if hashing.bytes != artifact.size {
        return Err(Problem::SizeMismatch {
            expected: artifact.size,
            actual: hashing.bytes,
        });
    }
    if actual != artifact.sha256 {
        return Err(Problem::ChecksumMismatch {
            expected: artifact.sha256.clone(),
            actual,
        });
    }
    match decoded {
        Ok(size) if size == artifact.uncompressed_size => Ok(()),
        Ok(size) => Err(Problem::Gzip(format!(
            "it decompresses to {size} bytes, the sidecar says {}",
            artifact.uncompressed_size
        ))),
        Err(error) => Err(Problem::Gzip(error.to_string())),
    }
}

struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let count = self.inner.read(buffer)?;
        self.hasher.update(&buffer[..count]);
        self.bytes += count as u64;
        Ok(count)
    }
}
