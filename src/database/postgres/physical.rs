//! PostgreSQL physical backups: `pg_basebackup` in tar format, streamed.
//!
//! `pg_basebackup -D - -Ft -X none --checkpoint=fast` writes the cluster as
//! one tar stream with its `backup_manifest` as the last member; the WAL is
//! not in it (the archive `backup wal push` fills holds it). The stream goes
//! through the same compress (+ encrypt) + hash pipeline as a dump, as the
//! backup's `base` part (`<id>.base.tar.<compression>`). Read in passing, the
//! manifest gives where the backup starts and stops in the WAL, which the
//! sidecar records with the cluster's system identifier; `verify` checks
//! every file against the manifest's sizes and CRC-32C checksums and the
//! manifest against its own checksum, without unpacking anything.
//! Restores go to a data directory (`backup restore --target …`), never to
//! a database: this kind has no restore [`Target`] or drill scratch.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::process::Stdio;

use sha2::{Digest as _, Sha256};

use super::dump::Server;
use super::tar::{Scanner, Visitor};
use crate::database::{
    Database, Dump, DumpError, Error, Report, RestoreOptions, Scratch, StreamCheck, Target, drain,
    joined,
};
use crate::destination::Destination;
use crate::inventory::BackupRecord;
use crate::inventory::metadata::PhysicalInfo;
use crate::policy::spec::PostgresSpec;
use crate::verify::{self, Problem};
use crate::wal::{SegmentName, format_lsn, parse_lsn};

/// The format sidecars record for a base backup.
pub const FORMAT: &str = "pg-basebackup";
/// The part holding the data directory (and the manifest).
pub const BASE_PART: &str = "base";
/// The manifest's member name in the base part.
pub const MANIFEST: &str = "backup_manifest";

/// Base backups of the PostgreSQL cluster a policy's source connects to.
pub struct BaseBackups {
    spec: PostgresSpec,
}

impl BaseBackups {
    pub fn new(spec: PostgresSpec) -> BaseBackups {
        BaseBackups { spec }
    }
}

/// Why a base backup restores elsewhere than a database.
fn not_a_database() -> Error {
    Error::Target(
        "a base backup restores into a data directory, not a database: `backup restore POLICY --target immediate --to DATADIR` (or --target-time, --target-lsn, --target-xid)".to_owned(),
    )
}

impl Database for BaseBackups {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn format(&self) -> &'static str {
        FORMAT
    }

    fn part(&self) -> Option<&'static str> {
        Some(BASE_PART)
    }

    fn dump(&self) -> Result<Box<dyn Dump>, DumpError> {
        Ok(Box::new(BaseDump {
            server: Server::open(&self.spec)?,
        }))
    }

    fn check_restorable(
        &self,
        destination: &dyn Destination,
        record: &BackupRecord,
    ) -> Result<Option<String>, Problem> {
        let mut check = manifest_check();
        verify::verify_into(destination, record, &mut check)?;
        check.verdict().map_err(Problem::Unrestorable)?;
        Ok(None)
    }

    fn restorable_check(&self) -> &'static str {
        "backup_manifest (every file's size and CRC-32C, the manifest's checksum)"
    }

    fn target(
        &self,
        _to: Option<&str>,
        _options: &RestoreOptions,
    ) -> Result<Box<dyn Target>, Error> {
        Err(not_a_database())
    }

    fn scratch(&self, _policy: &str, _id: &str) -> Result<Scratch, Error> {
        Err(not_a_database())
    }
}

/// One base backup being taken.
struct BaseDump {
    server: Server,
}

/// What the server says about itself before the backup.
struct Cluster {
    system_identifier: String,
    server_version: String,
    wal_segment_size: u64,
}

impl BaseDump {
    fn cluster(&self) -> Result<Cluster, DumpError> {
        let (runtime, client) = self.server.connect_blocking(None)?;
        let query = |error: tokio_postgres::Error| DumpError::Query {
            database: "PostgreSQL",
            reason: super::dump::describe(&error),
        };
        runtime.block_on(async {
            let row = client
                .query_one(
                    "SELECT system_identifier::text, current_setting('server_version'), \
                     pg_size_bytes(current_setting('wal_segment_size'))::bigint, \
                     (SELECT count(*) FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')), \
                     current_setting('archive_mode'), current_setting('archive_command') \
                     FROM pg_control_system()",
                    &[],
                )
                .await
                .map_err(query)?;
            let tablespaces: i64 = row.get(3);
            if tablespaces > 0 {
                return Err(DumpError::Failed(format!(
                    "the cluster has {tablespaces} tablespace(s) besides pg_default and pg_global; base backups of clusters with tablespaces are not supported yet"
                )));
            }
            let (archive_mode, archive_command): (String, String) = (row.get(4), row.get(5));
            // Without the WAL archive a base backup taken with -X none never restores.
            if archive_mode == "off" {
                return Err(DumpError::Failed(
                    "archive_mode is off on the server: a base backup needs the WAL archive to restore; set archive_mode = on and archive_command = 'backup -p POLICIES wal push POLICY %p' (then restart PostgreSQL)".to_owned(),
                ));
            }
            if !archive_command.contains("wal push") {
                tracing::warn!("archive_command does not run `backup wal push`: the base backup restores only if the WAL reaches this policy's archive some other way");
            }
            let version: String = row.get(1);
            let segment_size: i64 = row.get(2);
            Ok(Cluster {
                system_identifier: row.get(0),
                server_version: version.split_whitespace().next().unwrap_or("").to_owned(),
                wal_segment_size: u64::try_from(segment_size).unwrap_or(16 << 20),
            })
        })
    }
}

impl Dump for BaseDump {
    fn dump(&mut self, sink: &mut dyn Write) -> Result<Report, DumpError> {
        let cluster = self.cluster()?;
        let mut command = self.server.command("pg_basebackup");
        command
            .args([
                "--pgdata=-",
                "--format=tar",
                "--wal-method=none",
                "--checkpoint=fast",
                "--no-password",
                "--label=backup",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|source| DumpError::Spawn {
            program: self.server.program("pg_basebackup").display().to_string(),
            source,
        })?;
        let stderr = drain(child.stderr.take());
        let mut output = child
            .stdout
            .take()
            .ok_or_else(|| DumpError::Sink(io::Error::other("no pg_basebackup output")))?;
        let mut scanner = Scanner::new(Capture::default());
        let pumped = crate::database::pump(&mut output, sink, &mut |chunk| {
            // The scanner never fails a write; what it found wrong `finish` says.
            let _ = scanner.write_all(chunk);
        });
        drop(output);
        let bytes = match pumped {
            Ok(bytes) => bytes,
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(DumpError::Sink(error));
            }
        };
        let status = child.wait().map_err(|source| DumpError::Spawn {
            program: "pg_basebackup".to_owned(),
            source,
        })?;
        let stderr = joined(stderr);
        if !status.success() {
            return Err(DumpError::Tool {
                program: "pg_basebackup",
                status: status.to_string(),
                stderr: crate::database::last_lines(&stderr, 5),
            });
        }
        if bytes == 0 {
            return Err(DumpError::Empty);
        }
        let captured = scanner
            .finish()
            .map_err(|reason| DumpError::Failed(format!("pg_basebackup's archive: {reason}")))?;
        let range = captured.wal_range().map_err(DumpError::Failed)?;
        let segment = cluster.wal_segment_size;
        Ok(Report {
            server_version: Some(cluster.server_version),
            database: None,
            row_counts: BTreeMap::new(),
            physical: Some(PhysicalInfo {
                system_identifier: cluster.system_identifier,
                timeline: range.timeline,
                start_lsn: format_lsn(range.start),
                stop_lsn: format_lsn(range.stop),
                wal_segment_size: segment,
                start_wal: SegmentName::of_lsn(range.timeline, range.start, segment).name(segment),
                // The end record ends before `stop`: a stop at a segment's
                // first byte needs nothing of that segment.
                stop_wal: SegmentName::of_lsn(
                    range.timeline,
                    range.stop.saturating_sub(1).max(range.start),
                    segment,
                )
                .name(segment),
                manifest_checksum: range.checksum,
            }),
        })
    }
}

/// Where a base backup stands in the WAL, from its manifest.
struct WalRange {
    timeline: u32,
    start: u64,
    stop: u64,
    checksum: String,
}

/// Keeps the end of the manifest (where its WAL range and checksum are)
/// while a base backup streams past.
#[derive(Default)]
struct Capture {
    in_manifest: bool,
    /// The manifest's last bytes, at most [`TAIL`].
    tail: Vec<u8>,
    seen_manifest: bool,
}

/// How much of the manifest's end is kept: its WAL ranges and checksum
/// are its last lines.
const TAIL: usize = 64 * 1024;

impl Visitor for Capture {
    fn begin(&mut self, path: &str, _kind: u8, _size: u64) {
        self.in_manifest = path == MANIFEST;
        if self.in_manifest {
            self.seen_manifest = true;
            self.tail.clear();
        }
    }

    fn data(&mut self, chunk: &[u8]) {
        if self.in_manifest {
            self.tail.extend_from_slice(chunk);
            if self.tail.len() > 2 * TAIL {
                self.tail.drain(..self.tail.len() - TAIL);
            }
        }
    }

    fn end(&mut self) {
        self.in_manifest = false;
    }
}

impl Capture {
    fn wal_range(&self) -> Result<WalRange, String> {
        if !self.seen_manifest {
            return Err(
                "the archive holds no backup_manifest (is the server older than PostgreSQL 13?)"
                    .to_owned(),
            );
        }
        manifest_tail(&String::from_utf8_lossy(&self.tail))
    }
}

/// The WAL range and checksum at the end of a manifest.
fn manifest_tail(tail: &str) -> Result<WalRange, String> {
    let start = tail
        .find("\"WAL-Ranges\"")
        .ok_or("the backup_manifest has no WAL-Ranges")?;
    let open = tail[start..].find('[').ok_or("WAL-Ranges is not a list")? + start;
    let close = tail[open..].find(']').ok_or("WAL-Ranges is not closed")? + open;
    let ranges: Vec<serde_json::Value> = serde_json::from_str(&tail[open..=close])
        .map_err(|error| format!("WAL-Ranges cannot be read: {error}"))?;
    let range = match ranges.as_slice() {
        [range] => range,
        _ => {
            return Err(format!(
                "the manifest has {} WAL ranges; one was expected",
                ranges.len()
            ));
        }
    };
    let field = |name: &str| {
        range
            .get(name)
            .ok_or_else(|| format!("WAL-Ranges lacks {name}"))
    };
    let lsn = |name: &str| {
        field(name)?
            .as_str()
            .and_then(parse_lsn)
            .ok_or_else(|| format!("WAL-Ranges' {name} is not an LSN"))
    };
    let timeline = field("Timeline")?
        .as_u64()
        .and_then(|timeline| u32::try_from(timeline).ok())
        .ok_or("WAL-Ranges' Timeline is not a number")?;
    let checksum = manifest_checksum(tail).ok_or("the manifest has no Manifest-Checksum")?;
    Ok(WalRange {
        timeline,
        start: lsn("Start-LSN")?,
        stop: lsn("End-LSN")?,
        checksum,
    })
}

/// The `Manifest-Checksum` value in the manifest's last line.
fn manifest_checksum(tail: &str) -> Option<String> {
    let at = tail.rfind("\"Manifest-Checksum\"")?;
    let value: String = tail[at..]
        .split('"')
        .nth(3)?
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect();
    (value.len() == 64).then_some(value)
}

/// Checks a base backup's files against its manifest as the archive
/// streams past: every file's size and CRC-32C (the files come first, the
/// manifest last), and the manifest against its own SHA-256.
#[derive(Default)]
struct ManifestCheck {
    /// Files seen: size and CRC-32C.
    files: BTreeMap<String, (u64, u32)>,
    current: Option<(String, u64, u32)>,
    in_manifest: bool,
    seen_manifest: bool,
    /// The manifest line being read.
    line: Vec<u8>,
    /// SHA-256 of every manifest line before the checksum line.
    hasher: Sha256,
    checksum: Option<String>,
    checked: u64,
    problems: Vec<String>,
}

impl Visitor for ManifestCheck {
    fn begin(&mut self, path: &str, kind: u8, _size: u64) {
        self.in_manifest = path == MANIFEST;
        if self.in_manifest {
            self.seen_manifest = true;
        } else if kind == b'0' || kind == 0 {
            self.current = Some((path.to_owned(), 0, 0));
        }
    }

    fn data(&mut self, chunk: &[u8]) {
        if self.in_manifest {
            for byte in chunk {
                self.line.push(*byte);
                if *byte == b'\n' {
                    self.manifest_line();
                }
            }
        } else if let Some((_, size, crc)) = &mut self.current {
            *size += chunk.len() as u64;
            *crc = crc32c::crc32c_append(*crc, chunk);
        }
    }

    fn end(&mut self) {
        if self.in_manifest && !self.line.is_empty() {
            self.manifest_line();
        }
        self.in_manifest = false;
        if let Some((path, size, crc)) = self.current.take() {
            self.files.insert(path, (size, crc));
        }
    }
}

impl ManifestCheck {
    fn manifest_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        let text = String::from_utf8_lossy(&line);
        if text.trim_start().starts_with("\"Manifest-Checksum\"") {
            self.checksum = manifest_checksum(&text);
            return;
        }
        self.hasher.update(&line);
        let entry = text.trim().trim_end_matches(',');
        if !entry.starts_with("{ \"Path\"") && !entry.starts_with("{\"Path\"") {
            return;
        }
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(entry) else {
            self.problems
                .push(format!("a manifest entry cannot be read: {entry}"));
            return;
        };
        let path = entry
            .get("Path")
            .and_then(|path| path.as_str())
            .unwrap_or_default();
        let size = entry.get("Size").and_then(serde_json::Value::as_u64);
        let Some((found_size, crc)) = self.files.get(path) else {
            self.problems
                .push(format!("{path} is in the manifest but not in the archive"));
            return;
        };
        if size != Some(*found_size) {
            self.problems.push(format!(
                "{path} is {found_size} bytes, the manifest says {}",
                size.map_or_else(|| "nothing".to_owned(), |size| size.to_string())
            ));
            return;
        }
        // Other algorithms (or none) leave the size as the check.
        let algorithm = entry
            .get("Checksum-Algorithm")
            .and_then(|algorithm| algorithm.as_str());
        if algorithm == Some("CRC32C") {
            let recorded = entry.get("Checksum").and_then(|checksum| checksum.as_str());
            // The manifest writes the CRC's bytes in memory (little-endian) order.
            let actual = hex_le(*crc);
            if recorded != Some(actual.as_str()) {
                self.problems.push(format!(
                    "{path}: CRC-32C {actual}, the manifest says {}",
                    recorded.unwrap_or("nothing")
                ));
                return;
            }
        }
        self.checked += 1;
    }

    /// Whether the archive is as its manifest says.
    fn verdict(self) -> Result<u64, String> {
        if !self.seen_manifest {
            return Err("the archive holds no backup_manifest".to_owned());
        }
        let actual = crate::inventory::metadata::hex(&self.hasher.finalize());
        match &self.checksum {
            None => return Err("the backup_manifest has no Manifest-Checksum".to_owned()),
            Some(recorded) if *recorded != actual => {
                return Err(format!(
                    "the backup_manifest's SHA-256 is {actual}, its Manifest-Checksum says {recorded}"
                ));
            }
            Some(_) => {}
        }
        if let Some(first) = self.problems.first() {
            return Err(format!(
                "{} file(s) differ from the backup_manifest; first: {first}",
                self.problems.len()
            ));
        }
        if self.checked == 0 {
            return Err("the backup_manifest lists no file".to_owned());
        }
        Ok(self.checked)
    }
}

/// Checks a base part's archive against its manifest as it streams past.
pub fn manifest_check() -> Box<dyn StreamCheck> {
    Box::new(Scanner::new(ManifestCheck::default()))
}

impl StreamCheck for Scanner<ManifestCheck> {
    fn verdict(self: Box<Self>) -> Result<(), String> {
        self.finish()?.verdict().map(drop)
    }
}

/// A CRC as the manifest spells it: its four bytes in little-endian order, in hex.
fn hex_le(crc: u32) -> String {
    crate::inventory::metadata::hex(&crc.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An archive with `files` and a manifest for them as PostgreSQL writes one.
    fn base_archive(files: &[(&str, &[u8])], damage: Option<usize>) -> Vec<u8> {
        let mut manifest =
            String::from("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n");
        let entries: Vec<String> = files
            .iter()
            .map(|(path, data)| {
                format!(
                    "{{ \"Path\": \"{path}\", \"Size\": {}, \"Last-Modified\": \"2026-12-01 17:02:15 GMT\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"{}\" }}",
                    data.len(),
                    hex_le(crc32c::crc32c(data))
                )
            })
            .collect();
        manifest.push_str(&entries.join(",\n"));
        manifest.push_str("\n],\n\"WAL-Ranges\": [\n{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": \"0/2000100\" }\n],\n");
        let checksum = crate::inventory::metadata::hex(&Sha256::digest(manifest.as_bytes()));
        manifest.push_str(&format!("\"Manifest-Checksum\": \"{checksum}\"}}\n"));
        let mut members: Vec<(&str, Vec<u8>)> = files
            .iter()
            .map(|(path, data)| (*path, data.to_vec()))
            .collect();
        if let Some(index) = damage {
            members[index].1[0] ^= 1;
        }
        members.push((MANIFEST, manifest.into_bytes()));
        let borrowed: Vec<(&str, &[u8])> = members
            .iter()
            .map(|(path, data)| (*path, data.as_slice()))
            .collect();
        super::super::tar::tests::archive(&borrowed)
    }

    #[test]
    fn the_manifest_check_finds_a_changed_file_and_a_changed_manifest() {
        let files: [(&str, &[u8]); 2] = [
            ("PG_VERSION", b"15\n"),
            ("global/pg_control", &[9_u8; 8192]),
        ];
        let check = |bytes: &[u8]| {
            let mut check = manifest_check();
            check.write_all(bytes).unwrap();
            check.verdict()
        };
        assert_eq!(check(&base_archive(&files, None)), Ok(()));
        let damaged = check(&base_archive(&files, Some(1))).unwrap_err();
        assert!(damaged.contains("global/pg_control: CRC-32C"), "{damaged}");
        // A manifest edited after it was written fails its own checksum.
        let edited = String::from_utf8_lossy(&base_archive(&files, None))
            .replace("\"Size\": 3,", "\"Size\": 4,");
        let edited = check(edited.as_bytes()).unwrap_err();
        assert!(edited.contains("Manifest-Checksum"), "{edited}");
        // Cut short: no end-of-archive blocks.
        let whole = base_archive(&files, None);
        assert!(check(&whole[..whole.len() - 1024]).is_err());
    }

    #[test]
    fn the_manifest_tail_gives_the_wal_range_and_checksum() {
        let tail = "{ \"Path\": \"global/pg_control\", \"Size\": 8192 }\n],\n\"WAL-Ranges\": [\n{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": \"0/2000100\" }\n],\n\"Manifest-Checksum\": \"aa95b5dc54d2e9a5cbb3a7beca524ca5d06cd89087ba76cca9843dd4afe27d5c\"}\n";
        let range = manifest_tail(tail).unwrap();
        assert_eq!(
            (range.timeline, range.start, range.stop),
            (1, 0x200_0028, 0x200_0100)
        );
        assert!(range.checksum.starts_with("aa95b5dc"));
        assert!(manifest_tail("\"WAL-Ranges\": []").is_err());
    }
}
