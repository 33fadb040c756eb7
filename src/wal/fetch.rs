//! `backup wal fetch POLICY NAME PATH`, PostgreSQL's `restore_command`: one
//! archived WAL file, decoded, checked against the hash in its name and
//! written to PATH atomically.
//!
//! PostgreSQL reads exit status 1 as "this file does not exist", which ends
//! recovery there; so [`Fetched::Missing`] is answered only when every
//! destination of the policy answered and none holds the file. Anything else
//! that goes wrong (a destination that does not answer, a damaged copy, a
//! missing or wrong key, a PATH that cannot be written) is an [`Error`], which
//! the command turns into a status above 125 so that PostgreSQL aborts
//! recovery instead of ending it early at the wrong point. A damaged copy is
//! never written to PATH; the next destination's copy is tried.

use std::io::{self, Read, Write as _};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::codec;
use crate::destination::{self, Destination};
use crate::inventory::metadata::hex;
use crate::inventory::names;
use crate::policy::Policy;

/// Why a fetch could not tell whether the file exists, or could not deliver it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "`{0}` is not the name of a file PostgreSQL archives (a segment `000000010000000000000003`, `.partial`, `.history` or `.backup` file)"
    )]
    NotWal(String),
    #[error("`{name}` could not be fetched: {}", reasons.join("; "))]
    Unavailable { name: String, reasons: Vec<String> },
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What a fetch found.
#[derive(Debug)]
pub enum Fetched {
    /// Written to PATH: from where, which object, how many bytes.
    Found {
        location: String,
        object: String,
        bytes: u64,
    },
    /// Every destination answered; none holds it.
    Missing,
}

/// Fetches WAL file `name` of `policy` into `path`. The identity for an
/// encrypted archive must have been registered ([`codec::keys::load`]).
pub fn fetch(policy: &Policy, name: &str, path: &Path) -> Result<Fetched, Error> {
    if names::wal_kind(name).is_none() {
        return Err(Error::NotWal(name.to_owned()));
    }
    let folder = super::folder(&policy.name);
    let mut reasons = Vec::new();
    for spec in &policy.destinations {
        let location = destination::describe(spec);
        let destination = match destination::open(spec) {
            Ok(destination) => destination,
            Err(error) => {
                reasons.push(format!("{location}: {error}"));
                continue;
            }
        };
        let candidates = match candidates(destination.as_ref(), &folder, name) {
            Ok(candidates) => candidates,
            Err(error) => {
                reasons.push(format!("{location}: {error}"));
                continue;
            }
        };
        for candidate in candidates {
            match deliver(
                destination.as_ref(),
                &folder,
                &policy.name,
                &candidate,
                path,
            ) {
                Ok(bytes) => {
                    for reason in &reasons {
                        tracing::warn!(policy = %policy.name, wal = %name, "Not fetched from {reason}; fetched from {location}.");
                    }
                    tracing::info!(policy = %policy.name, destination = %location, object = %candidate.object, bytes, "WAL file fetched.");
                    return Ok(Fetched::Found {
                        location,
                        object: candidate.object,
                        bytes,
                    });
                }
                Err(Failure::Write(error)) => {
                    return Err(Error::Write {
                        path: path.to_owned(),
                        source: error,
                    });
                }
                Err(Failure::Damaged(reason)) => {
                    tracing::error!(policy = %policy.name, destination = %location, object = %candidate.object, "Archived WAL file unusable: {reason}");
                    reasons.push(format!("{location}: `{}`: {reason}", candidate.object));
                }
            }
        }
    }
    if reasons.is_empty() {
        tracing::info!(policy = %policy.name, wal = %name, "WAL file not in the archive.");
        Ok(Fetched::Missing)
    } else {
        Err(Error::Unavailable {
            name: name.to_owned(),
            reasons,
        })
    }
}

struct Candidate {
    object: String,
    hash: String,
    compression: &'static str,
    encrypted: bool,
}

/// The archived copies of `name` on `destination` (usually one).
fn candidates(
    destination: &dyn Destination,
    folder: &str,
    name: &str,
) -> Result<Vec<Candidate>, destination::Error> {
    let mut found: Vec<Candidate> = destination
        .list_prefixed(folder, &names::wal_prefix(name))?
        .into_iter()
        .filter(|entry| entry.irregular.is_none() && !names::is_unfinished(&entry.name))
        .filter_map(|entry| {
            let parsed = names::parse_wal_object(&entry.name)?;
            (parsed.wal == name).then(|| Candidate {
                object: entry.name.clone(),
                hash: parsed.hash.to_owned(),
                compression: parsed.compression,
                encrypted: parsed.encrypted,
            })
        })
        .collect();
    found.sort_by(|a, b| a.object.cmp(&b.object));
    Ok(found)
}

enum Failure {
    /// The copy is unusable: unreadable, damaged, or not decryptable.
    Damaged(String),
    /// PATH cannot be written.
    Write(io::Error),
}

/// Downloads and decodes `candidate` into a temporary file beside `path`,
/// checks its hash, and renames it to `path`; the bytes written.
fn deliver(
    destination: &dyn Destination,
    folder: &str,
    policy: &str,
    candidate: &Candidate,
    path: &Path,
) -> Result<u64, Failure> {
    let identities = if candidate.encrypted {
        match codec::keys::for_policy(policy) {
            None => return Err(Failure::Damaged(codec::Error::NoIdentity.to_string())),
            Some(Err(error)) => return Err(Failure::Damaged(error.to_string())),
            Some(Ok(identities)) => Some(identities),
        }
    } else {
        None
    };
    let reader = destination
        .open(folder, &candidate.object)
        .map_err(|error| Failure::Damaged(error.to_string()))?;
    let mut decoded = codec::decoder(
        reader,
        candidate.compression,
        candidate.encrypted,
        identities.as_ref(),
    )
    .map_err(|error| Failure::Damaged(error.to_string()))?;

    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut temporary = tempfile::Builder::new()
        .prefix(&format!(".{file_name}.backup-"))
        .suffix(".tmp")
        .tempfile_in(&parent)
        .map_err(Failure::Write)?;
    let mut hasher = Sha256::new();
    let mut bytes = 0_u64;
    let mut buffer = vec![0_u8; 1 << 16];
    loop {
        let count = match decoded.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                return Err(Failure::Damaged(format!(
                    "cannot decode ({}{}): {error}",
                    candidate.compression,
                    if candidate.encrypted { ", age" } else { "" }
                )));
            }
        };
        hasher.update(&buffer[..count]);
        bytes += count as u64;
        temporary
            .write_all(&buffer[..count])
            .map_err(Failure::Write)?;
    }
    let digest = hex(&hasher.finalize());
    if !digest.starts_with(&candidate.hash) {
        return Err(Failure::Damaged(format!(
            "its content's SHA-256 starts {}, not {} as its name says",
            &digest[..names::WAL_HASH_LENGTH],
            candidate.hash
        )));
    }
    temporary.as_file().sync_all().map_err(Failure::Write)?;
    temporary
        .persist(path)
        .map_err(|error| Failure::Write(error.error))?;
    if let Ok(folder) = std::fs::File::open(&parent) {
        let _ = folder.sync_all();
    }
    Ok(bytes)
}
