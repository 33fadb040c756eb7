//! `backup wal push POLICY PATH`, PostgreSQL's `archive_command`: one WAL
//! file, compressed (and encrypted) as the policy says, onto every
//! destination of the policy.
//!
//! Success means durable on every destination: PostgreSQL deletes the file
//! after it. A copy already there under the same hash counts as there (a
//! retry completes only the missing ones); a copy under another hash is a
//! refusal that writes and removes nothing. A segment of another cluster
//! (system identifier) than the archive's marker records is refused. Uploads
//! are invisible until committed, so a push that is killed leaves nothing a
//! fetch could take. It does not take the policy's lock (pushes go on while
//! `apply` runs); it serializes with other pushes of the policy on this host.

use std::fs::File;
use std::io::{self, Read, Seek as _, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::Utc;
use sha2::{Digest as _, Sha256};

use super::{PAGE_HEADER_LENGTH, PageHeader, SegmentName, StoredMarker};
use crate::codec;
use crate::destination::{self, Destination, Upload};
use crate::inventory::metadata::hex;
use crate::inventory::names::{self, WalKind};
use crate::policy::Policy;
use crate::policy::spec::{EncryptionSpec, SourceSpec};
use crate::state::StateDir;

/// Why a push was refused or failed as a whole (nothing was written).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("policy `{0}` does not back up PostgreSQL: only a `postgres` source has a WAL archive")]
    NotPostgres(String),
    #[error(
        "`{0}` is not the name of a file PostgreSQL archives (a segment `000000010000000000000003`, `.partial`, `.history` or `.backup` file)"
    )]
    NotWal(String),
    #[error("cannot read `{path}`: {reason}")]
    Read { path: String, reason: String },
    #[error("`{path}` is not a WAL segment: it does not start with a WAL long page header")]
    NotSegment { path: String },
    #[error("`{path}` holds {actual} where its name `{name}` says {expected}")]
    WrongSegment {
        path: String,
        name: String,
        expected: String,
        actual: String,
    },
    #[error(
        "refused: `{name}` is from the cluster with system identifier {segment}, but the archive at {location} belongs to system identifier {archive}; archive another cluster under another policy"
    )]
    OtherCluster {
        name: String,
        segment: String,
        archive: String,
        location: String,
    },
    #[error(
        "refused: `{name}` comes from a cluster with {segment}-byte WAL segments, but the archive at {location} holds {archive}-byte segments"
    )]
    OtherSegmentSize {
        name: String,
        segment: u64,
        archive: u64,
        location: String,
    },
    #[error(
        "refused: {location} already holds `{name}` with other content ({found}; this file's SHA-256 starts {hash}); nothing was written or removed"
    )]
    Conflict {
        name: String,
        location: String,
        found: String,
        hash: String,
    },
    #[error("`{path}` changed while it was archived; nothing was committed")]
    Changed { path: String },
    #[error("{0}")]
    Codec(String),
}

/// How one destination fared.
#[derive(Debug)]
pub enum Placed {
    /// Written and committed now.
    Stored,
    /// The same content was already there (as `object`).
    AlreadyThere { object: String },
}

/// The push, per destination.
#[derive(Debug)]
pub struct Outcome {
    /// The WAL file's name.
    pub wal: String,
    /// The object's name in each WAL folder.
    pub object: String,
    /// Bytes of the raw file.
    pub size: u64,
    /// Per destination, in the policy's order.
    pub destinations: Vec<(String, Result<Placed, destination::Error>)>,
}

impl Outcome {
    /// Whether the file is durable on every destination.
    pub fn everywhere(&self) -> bool {
        self.destinations.iter().all(|(_, result)| result.is_ok())
    }

    /// `location: reason` of each destination it is not on.
    pub fn failures(&self) -> Vec<String> {
        self.destinations
            .iter()
            .filter_map(|(location, result)| {
                result
                    .as_ref()
                    .err()
                    .map(|error| format!("{location}: {error}"))
            })
            .collect()
    }
}

/// Archives the WAL file `path` for `policy`, and records how it went in
/// `state` (for `status`).
pub fn push(policy: &Policy, path: &Path, state: &StateDir) -> Result<Outcome, Error> {
    // One push of a policy at a time on this host (a manual push beside
    // PostgreSQL's archiver): local uploads of one name share a partial file.
    let lock = super::status::lock(state, &policy.name);
    if let Err(error) = &lock {
        tracing::warn!(policy = %policy.name, %error, "WAL pushes of this policy are not serialized on this host.");
    }
    let result = push_unrecorded(policy, path);
    let wal = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let recorded = match &result {
        Ok(outcome) if outcome.everywhere() => {
            super::status::record(state, &policy.name, &wal, None)
        }
        Ok(outcome) => super::status::record(
            state,
            &policy.name,
            &wal,
            Some(format!(
                "not stored everywhere: {}",
                outcome.failures().join("; ")
            )),
        ),
        Err(error) => super::status::record(state, &policy.name, &wal, Some(error.to_string())),
    };
    if let Err(error) = recorded {
        tracing::warn!(policy = %policy.name, %error, "WAL push not recorded for status.");
    }
    drop(lock);
    result
}

/// What one destination holds of the file before the push.
enum Found {
    /// An object with the same hash.
    Same(String),
    /// Objects of the same WAL name with other content.
    Other(Vec<String>),
    Missing,
}

/// A destination that answered: what it holds, and its marker.
struct Looked {
    index: usize,
    destination: Box<dyn Destination>,
    found: Found,
    marker: Option<(StoredMarker, Vec<u8>)>,
}

fn push_unrecorded(policy: &Policy, path: &Path) -> Result<Outcome, Error> {
    if !matches!(policy.source, SourceSpec::Postgres(_)) {
        return Err(Error::NotPostgres(policy.name.clone()));
    }
    let shown = path.display().to_string();
    let wal = path
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| Error::NotWal(shown.clone()))?
        .to_owned();
    let kind = names::wal_kind(&wal).ok_or_else(|| Error::NotWal(wal.clone()))?;
    let read_error = |reason: String| Error::Read {
        path: shown.clone(),
        reason,
    };
    let mut file =
        crate::bounded::open_regular(path).map_err(|error| read_error(error.to_string()))?;
    let (digest, size, head) =
        hash_file(&mut file).map_err(|error| read_error(error.to_string()))?;
    let hash = digest[..names::WAL_HASH_LENGTH].to_owned();
    let header = if kind.has_page_header() {
        let header = PageHeader::parse(&head).ok_or_else(|| Error::NotSegment {
            path: shown.clone(),
        })?;
        check_segment(&wal, kind, &shown, size, &header)?;
        Some(header)
    } else {
        None
    };

    let compression = codec::Compression::from_spec(&policy.compression);
    let recipients = match &policy.encryption {
        Some(EncryptionSpec::Age(age)) => Some(
            codec::Recipients::parse(&age.recipients)
                .map_err(|error| Error::Codec(error.to_string()))?,
        ),
        None => None,
    };
    let object = names::wal_object(
        &wal,
        &hash,
        &codec::suffix(compression.name(), recipients.is_some()),
    );
    let folder = super::folder(&policy.name);

    // Look first, everywhere: a refusal writes nothing anywhere.
    let mut results: Vec<Option<Result<Placed, destination::Error>>> =
        policy.destinations.iter().map(|_| None).collect();
    let mut looked = Vec::new();
    for (index, spec) in policy.destinations.iter().enumerate() {
        let answer = destination::open(spec).and_then(|destination| {
            let found = find(destination.as_ref(), &folder, &wal, &hash)?;
            let marker = match header {
                Some(_) => super::read_marker(destination.as_ref(), &folder)?,
                None => None,
            };
            Ok(Looked {
                index,
                destination,
                found,
                marker,
            })
        });
        match answer {
            Ok(answer) => looked.push(answer),
            Err(error) => results[index] = Some(Err(error)),
        }
    }
    for answer in &looked {
        if let Found::Other(objects) = &answer.found {
            return Err(Error::Conflict {
                name: wal.clone(),
                location: answer.destination.location(),
                found: objects.join(", "),
                hash: hash.clone(),
            });
        }
    }
    if let Some(header) = &header {
        for answer in &looked {
            if let Some((marker, _)) = &answer.marker {
                check_marker(
                    &wal,
                    header,
                    &marker.marker(),
                    &answer.destination.location(),
                )?;
            }
        }
    }

    // The marker where it is missing: the bytes another destination holds,
    // else a new one. Then the file where it is missing.
    let known_marker = looked
        .iter()
        .find_map(|answer| answer.marker.as_ref().map(|(_, bytes)| bytes.clone()));
    let mut uploads = Vec::new();
    for answer in looked {
        if let Some(header) = &header
            && answer.marker.is_none()
        {
            match place_marker(&answer, &folder, &wal, header, known_marker.as_deref()) {
                Ok(()) => {}
                Err(MarkerError::Refused(refusal)) => return Err(refusal),
                Err(MarkerError::Destination(error)) => {
                    results[answer.index] = Some(Err(error));
                    continue;
                }
            }
        }
        if let Found::Same(existing) = answer.found {
            results[answer.index] = Some(Ok(Placed::AlreadyThere { object: existing }));
            continue;
        }
        match answer.destination.begin(&folder, &object) {
            Ok(upload) => {
                uploads.push(((answer.index, answer.destination), (answer.index, upload)))
            }
            Err(error) => results[answer.index] = Some(Err(error)),
        }
    }

    if !uploads.is_empty() {
        let (destinations, streams): (Vec<_>, Vec<_>) = uploads.into_iter().unzip();
        let stored = store(
            &mut file,
            &shown,
            &digest,
            size,
            compression,
            recipients.as_ref(),
            streams,
        )?;
        for (index, result) in stored {
            let result =
                match result {
                    Ok(()) => Ok(Placed::Stored),
                    // Another push of the same content got there first.
                    Err(destination::Error::Exists { location }) => {
                        match destinations.iter().find(|(at, _)| *at == index).map(
                            |(_, destination)| find(destination.as_ref(), &folder, &wal, &hash),
                        ) {
                            Some(Ok(Found::Same(object))) => Ok(Placed::AlreadyThere { object }),
                            _ => Err(destination::Error::Exists { location }),
                        }
                    }
                    Err(error) => Err(error),
                };
            results[index] = Some(result);
        }
    }

    let destinations = policy
        .destinations
        .iter()
        .zip(results)
        .map(|(spec, result)| {
            let result = result
                .unwrap_or_else(|| Err(destination::Error::Claim("not attempted".to_owned())));
            (destination::describe(spec), result)
        })
        .collect::<Vec<_>>();
    for (location, result) in &destinations {
        match result {
            Ok(Placed::Stored) => {
                tracing::info!(policy = %policy.name, destination = %location, object = %object, "WAL file archived.");
            }
            Ok(Placed::AlreadyThere { object }) => {
                tracing::info!(policy = %policy.name, destination = %location, object = %object, "WAL file already archived with the same content.");
            }
            Err(error) => {
                tracing::error!(policy = %policy.name, destination = %location, wal = %wal, "WAL file not archived: {error}");
            }
        }
    }
    Ok(Outcome {
        wal,
        object,
        size,
        destinations,
    })
}

/// The SHA-256 (hex) and size of `file`, and its first bytes (the page header).
fn hash_file(file: &mut File) -> io::Result<(String, u64, Vec<u8>)> {
    let mut hasher = Sha256::new();
    let mut head = Vec::with_capacity(PAGE_HEADER_LENGTH);
    let mut size = 0_u64;
    let mut buffer = vec![0_u8; 1 << 16];
    loop {
        let count = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if head.len() < PAGE_HEADER_LENGTH {
            let take = (PAGE_HEADER_LENGTH - head.len()).min(count);
            head.extend_from_slice(&buffer[..take]);
        }
        hasher.update(&buffer[..count]);
        size += count as u64;
    }
    Ok((hex(&hasher.finalize()), size, head))
}

/// Checks that a segment is the one its name says, whole.
fn check_segment(
    wal: &str,
    kind: WalKind,
    path: &str,
    size: u64,
    header: &PageHeader,
) -> Result<(), Error> {
    let segment_size = u64::from(header.segment_size);
    let wrong = |expected: String, actual: String| Error::WrongSegment {
        path: path.to_owned(),
        name: wal.to_owned(),
        expected,
        actual,
    };
    let Some(segment) = SegmentName::parse(&wal[..24], segment_size) else {
        return Err(wrong(
            format!("a segment of a cluster with {segment_size}-byte segments"),
            "a segment number past the end of its log id".to_owned(),
        ));
    };
    let start = segment.start_lsn(segment_size);
    if header.page_address != start {
        return Err(wrong(
            format!("WAL from {}", super::format_lsn(start)),
            format!("WAL from {}", super::format_lsn(header.page_address)),
        ));
    }
    if kind == WalKind::Segment && size != segment_size {
        return Err(wrong(
            format!("a whole segment ({segment_size} bytes)"),
            format!("{size} bytes"),
        ));
    }
    Ok(())
}

/// Refuses a segment of another cluster than the archive's.
fn check_marker(
    wal: &str,
    header: &PageHeader,
    marker: &super::Marker,
    location: &str,
) -> Result<(), Error> {
    let segment = header.system_identifier.to_string();
    if marker.system_identifier != segment {
        return Err(Error::OtherCluster {
            name: wal.to_owned(),
            segment,
            archive: marker.system_identifier.clone(),
            location: location.to_owned(),
        });
    }
    if marker.wal_segment_size != u64::from(header.segment_size) {
        return Err(Error::OtherSegmentSize {
            name: wal.to_owned(),
            segment: u64::from(header.segment_size),
            archive: marker.wal_segment_size,
            location: location.to_owned(),
        });
    }
    Ok(())
}

enum MarkerError {
    Refused(Error),
    Destination(destination::Error),
}

/// Writes the archive's marker (create-only) on a destination without one.
fn place_marker(
    answer: &Looked,
    folder: &str,
    wal: &str,
    header: &PageHeader,
    known: Option<&[u8]>,
) -> Result<(), MarkerError> {
    let bytes = match known {
        Some(bytes) => bytes.to_vec(),
        None => {
            let marker = StoredMarker {
                system_identifier: header.system_identifier.to_string(),
                wal_segment_size: u64::from(header.segment_size),
                created_at: Some(Utc::now()),
                host: Some(crate::engine::host_name()),
            };
            let mut bytes = serde_json::to_vec_pretty(&marker)
                .map_err(|error| MarkerError::Refused(Error::Codec(error.to_string())))?;
            bytes.push(b'\n');
            bytes
        }
    };
    match answer.destination.put(folder, names::WAL_MARKER, &bytes) {
        Ok(()) => Ok(()),
        // Another first push wrote one meanwhile: it must be this cluster's.
        Err(destination::Error::Exists { .. }) => {
            match super::read_marker(answer.destination.as_ref(), folder) {
                Ok(Some((marker, _))) => check_marker(
                    wal,
                    header,
                    &marker.marker(),
                    &answer.destination.location(),
                )
                .map_err(MarkerError::Refused),
                Ok(None) => Err(MarkerError::Destination(destination::Error::Exists {
                    location: format!(
                        "{}/{folder}/{}",
                        answer.destination.location(),
                        names::WAL_MARKER
                    ),
                })),
                Err(error) => Err(MarkerError::Destination(error)),
            }
        }
        Err(error) => Err(MarkerError::Destination(error)),
    }
}

/// What `destination` holds of WAL file `wal`: a listing by its prefix.
fn find(
    destination: &dyn Destination,
    folder: &str,
    wal: &str,
    hash: &str,
) -> Result<Found, destination::Error> {
    let entries = destination.list_prefixed(folder, &names::wal_prefix(wal))?;
    let mut same = None;
    let mut other = Vec::new();
    for entry in entries {
        if names::is_unfinished(&entry.name) {
            continue;
        }
        let Some(parsed) = names::parse_wal_object(&entry.name) else {
            continue;
        };
        if parsed.wal != wal {
            continue;
        }
        if parsed.hash == hash && entry.irregular.is_none() {
            same = Some(entry.name.clone());
        } else {
            other.push(entry.name.clone());
        }
    }
    Ok(match same {
        Some(object) => Found::Same(object),
        None if !other.is_empty() => Found::Other(other),
        None => Found::Missing,
    })
}

/// Per upload (by destination index), how its commit went.
type Committed = Vec<(usize, Result<(), destination::Error>)>;

/// Streams `file` once through the codec into every upload and commits
/// each: per upload index, how it went.
fn store(
    file: &mut File,
    shown: &str,
    digest: &str,
    size: u64,
    compression: codec::Compression,
    recipients: Option<&codec::Recipients>,
    uploads: Vec<(usize, Box<dyn Upload>)>,
) -> Result<Committed, Error> {
    let failures = Arc::new(Mutex::new(Vec::new()));
    let fanout = Fanout {
        uploads: uploads.into_iter().map(Some).collect(),
        failures: Arc::clone(&failures),
        written: 0,
    };
    let sealed =
        codec::Sealed::new(recipients, fanout).map_err(|error| Error::Codec(error.to_string()))?;
    let mut compressor = compression
        .compressor(sealed)
        .map_err(|error| Error::Codec(error.to_string()))?;
    file.rewind().map_err(|error| Error::Read {
        path: shown.to_owned(),
        reason: error.to_string(),
    })?;
    let mut hasher = Sha256::new();
    let mut read = 0_u64;
    let mut buffer = vec![0_u8; 1 << 16];
    let streamed: Result<(), String> = loop {
        let count = match file.read(&mut buffer) {
            Ok(0) => break Ok(()),
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => break Err(format!("cannot read `{shown}`: {error}")),
        };
        hasher.update(&buffer[..count]);
        read += count as u64;
        if let Err(error) = compressor.write_all(&buffer[..count]) {
            break Err(format!("cannot store: {error}"));
        }
    };
    let every_failure = |reason: &str, failures: &Arc<Mutex<Vec<(usize, String)>>>| {
        let failures = failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.is_empty() {
            Error::Codec(reason.to_owned())
        } else {
            let reasons: Vec<&str> = failures.iter().map(|(_, reason)| reason.as_str()).collect();
            Error::Codec(format!("{reason}: {}", reasons.join("; ")))
        }
    };
    if let Err(reason) = streamed {
        // Dropping the compressor drops the uploads: aborted.
        drop(compressor);
        return Err(every_failure(&reason, &failures));
    }
    if read != size || hex(&hasher.finalize()) != digest {
        drop(compressor);
        return Err(Error::Changed {
            path: shown.to_owned(),
        });
    }
    let fanout = compressor
        .finish()
        .map_err(|error| error.to_string())
        .and_then(|sealed| sealed.finish().map_err(|error| error.to_string()))
        .map_err(|reason| {
            every_failure(&format!("cannot finish the stream: {reason}"), &failures)
        })?;
    let written = fanout.written;
    let mut results: Committed = failures
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .drain(..)
        .map(|(index, reason)| {
            (
                index,
                Err(destination::Error::Write(io::Error::other(reason))),
            )
        })
        .collect();
    for (index, upload) in fanout.uploads.into_iter().flatten() {
        results.push((index, upload.commit(written)));
    }
    Ok(results)
}

/// The encoded stream's end: written to every upload, counted. An upload
/// that fails is dropped (aborted) and its reason kept; the stream fails
/// only when none is left.
struct Fanout {
    uploads: Vec<Option<(usize, Box<dyn Upload>)>>,
    failures: Arc<Mutex<Vec<(usize, String)>>>,
    written: u64,
}

impl Fanout {
    fn each(&mut self, mut act: impl FnMut(&mut dyn Upload) -> io::Result<()>) -> io::Result<()> {
        for slot in &mut self.uploads {
            if let Some((index, upload)) = slot
                && let Err(error) = act(upload.as_mut())
            {
                self.failures
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((*index, error.to_string()));
                *slot = None;
            }
        }
        if self.uploads.iter().all(Option::is_none) {
            return Err(io::Error::other("every destination failed"));
        }
        Ok(())
    }
}

impl Write for Fanout {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        self.each(|upload| upload.write_all(buffer))?;
        self.written += buffer.len() as u64;
        Ok(buffer.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.each(|upload| upload.flush())
    }
}
