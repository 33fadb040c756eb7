//! PostgreSQL's WAL archive: `backup wal push` (PostgreSQL's
//! `archive_command`) and `backup wal fetch` (its `restore_command`), and
//! what the archive holds, summarised for plan, status, verify and restore.
//!
//! Layout, on every destination of a policy: the folder
//! `<policy>/wal/` ([`crate::inventory::names::sub_folder`]) holds one object
//! per archived file, `<walname>.<h16><suffix>` (`h16` the first 16 hex
//! digits of the SHA-256 of the raw file, `suffix` the codec's:
//! `000000010000000000000003.9f86d081884c7d65.zst.age`), and the marker
//! `archive.json` (system identifier and segment size of the cluster the
//! archive belongs to). Because the hash is in the name, "the same content is
//! already there" is a listing by prefix, and different content never
//! replaces anything. This module computes; it decides nothing about
//! retention and never deletes.

pub mod fetch;
pub mod push;
pub mod status;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::destination::{self, Destination};
use crate::inventory::names::{self, WalKind};

/// PostgreSQL's default WAL segment size: 16 MiB.
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 * 1024 * 1024;

/// Segments per log id: the 32 bits of LSN a log id's segments cover.
fn segments_per_log(segment_size: u64) -> u64 {
    (1_u64 << 32) / segment_size.max(1)
}

/// A WAL segment: its timeline and its number in the WAL stream
/// (`log * segments_per_log + seg`, where the name is `TTTTTTTTLLLLLLLLSSSSSSSS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentName {
    pub timeline: u32,
    pub number: u64,
}

impl SegmentName {
    /// The segment `name` (24 hex digits) names, for segments of `segment_size` bytes.
    pub fn parse(name: &str, segment_size: u64) -> Option<SegmentName> {
        if names::wal_kind(name) != Some(WalKind::Segment) {
            return None;
        }
        let timeline = u32::from_str_radix(&name[..8], 16).ok()?;
        let log = u64::from_str_radix(&name[8..16], 16).ok()?;
        let seg = u64::from_str_radix(&name[16..24], 16).ok()?;
        let per_log = segments_per_log(segment_size);
        if seg >= per_log {
            return None;
        }
        Some(SegmentName {
            timeline,
            number: log * per_log + seg,
        })
    }

    /// The segment holding `lsn` on `timeline`.
    pub fn of_lsn(timeline: u32, lsn: u64, segment_size: u64) -> SegmentName {
        SegmentName {
            timeline,
            number: lsn / segment_size.max(1),
        }
    }

    /// The segment's file name: 24 upper-case hex digits.
    pub fn name(&self, segment_size: u64) -> String {
        let per_log = segments_per_log(segment_size);
        format!(
            "{:08X}{:08X}{:08X}",
            self.timeline,
            self.number / per_log,
            self.number % per_log
        )
    }

    /// The LSN the segment starts at.
    pub fn start_lsn(&self, segment_size: u64) -> u64 {
        self.number * segment_size
    }
}

/// An LSN as PostgreSQL writes it (`0/2000028`, hex halves), as a number.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.trim().split_once('/')?;
    let valid = |half: &str| {
        !half.is_empty() && half.len() <= 8 && half.bytes().all(|byte| byte.is_ascii_hexdigit())
    };
    if !valid(high) || !valid(low) {
        return None;
    }
    let high = u64::from_str_radix(high, 16).ok()?;
    let low = u64::from_str_radix(low, 16).ok()?;
    Some((high << 32) | low)
}

/// An LSN as PostgreSQL writes it: `0/2000028`.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// The long page header a WAL segment starts with (XLogLongPageHeaderData):
/// what a push checks a segment against the archive with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageHeader {
    pub magic: u16,
    pub timeline: u32,
    /// The LSN of the segment's first page.
    pub page_address: u64,
    pub system_identifier: u64,
    pub segment_size: u32,
    pub block_size: u32,
}

/// Bytes of the long page header read.
pub const PAGE_HEADER_LENGTH: usize = 40;

/// `xlp_info` bit of a long header.
const XLP_LONG_HEADER: u16 = 0x0002;

impl PageHeader {
    /// The long header at the start of `bytes`, if it is one (the long-header
    /// bit set, a segment size and block size PostgreSQL allows).
    pub fn parse(bytes: &[u8]) -> Option<PageHeader> {
        let bytes: &[u8; PAGE_HEADER_LENGTH] = bytes.get(..PAGE_HEADER_LENGTH)?.try_into().ok()?;
        let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let u64_at = |at: usize| u64::from(u32_at(at)) | (u64::from(u32_at(at + 4)) << 32);
        let header = PageHeader {
            magic: u16_at(0),
            timeline: u32_at(4),
            page_address: u64_at(8),
            system_identifier: u64_at(24),
            segment_size: u32_at(32),
            block_size: u32_at(36),
        };
        let info = u16_at(2);
        let sizes_ok = header.segment_size.is_power_of_two()
            && (1 << 20..=1 << 30).contains(&header.segment_size)
            && header.block_size.is_power_of_two()
            && (1 << 10..=1 << 16).contains(&header.block_size);
        (info & XLP_LONG_HEADER != 0 && sizes_ok && header.system_identifier != 0).then_some(header)
    }
}

/// The archive's marker, `archive.json`: which cluster the archive is of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// The cluster's system identifier (`pg_controldata`), as a decimal string.
    pub system_identifier: String,
    /// Bytes per WAL segment.
    pub wal_segment_size: u64,
}

/// The marker as stored, with when and where it was first written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredMarker {
    pub system_identifier: String,
    pub wal_segment_size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

impl StoredMarker {
    pub(crate) fn marker(&self) -> Marker {
        Marker {
            system_identifier: self.system_identifier.clone(),
            wal_segment_size: self.wal_segment_size,
        }
    }
}

/// The folder of `policy`'s WAL archive, as destinations take it: `<policy>/wal`.
pub fn folder(policy: &str) -> String {
    names::sub_folder(policy, names::WAL_FOLDER)
}

/// Reads the marker of the archive in `folder` on `destination`, if there is one.
pub(crate) fn read_marker(
    destination: &dyn Destination,
    folder: &str,
) -> Result<Option<(StoredMarker, Vec<u8>)>, destination::Error> {
    let Some(entry) = destination.stat(folder, names::WAL_MARKER)? else {
        return Ok(None);
    };
    let location = format!("{}/{folder}/{}", destination.location(), names::WAL_MARKER);
    if let Some(kind) = entry.irregular {
        return Err(destination::Error::Io {
            action: "cannot read",
            location,
            source: std::io::Error::other(format!("it is {kind}, not a file")),
        });
    }
    let reader = destination.open(folder, names::WAL_MARKER)?;
    let bytes =
        crate::bounded::read_capped(reader, crate::bounded::RECORD_LIMIT).map_err(|error| {
            destination::Error::Io {
                action: "cannot read",
                location: location.clone(),
                source: std::io::Error::other(error.to_string()),
            }
        })?;
    let marker: StoredMarker =
        serde_json::from_slice(&bytes).map_err(|error| destination::Error::Io {
            action: "cannot read",
            location,
            source: std::io::Error::other(format!("not an archive marker: {error}")),
        })?;
    Ok(Some((marker, bytes)))
}

/// One archived WAL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    /// The WAL file's name, as PostgreSQL names it.
    pub name: String,
    /// The object's name in the WAL folder.
    pub object: String,
    /// Bytes stored (compressed, encrypted).
    pub size: u64,
    pub modified: Option<DateTime<Utc>>,
}

/// What a destination's WAL archive of a policy holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Archive {
    pub marker: Option<Marker>,
    /// Sorted by WAL name (then object name).
    pub files: Vec<Archived>,
}

/// A run of segments on one timeline, by WAL name, both ends included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub timeline: u32,
    pub first: String,
    pub last: String,
    pub count: u64,
}

impl Range {
    /// `segment 000000010000000000000003`, or
    /// `000000010000000000000003 to 000000010000000000000009 (7 segments)`.
    pub fn describe(&self) -> String {
        if self.count == 1 {
            format!("segment {}", self.first)
        } else {
            format!("{} to {} ({} segments)", self.first, self.last, self.count)
        }
    }
}

/// The archive in a few numbers: contiguous runs of segments, the exact
/// missing runs between them, ages and sizes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    /// Contiguous runs of segments, by timeline then position.
    pub ranges: Vec<Range>,
    /// The missing runs between two runs of one timeline, exact.
    pub gaps: Vec<Range>,
    pub newest: Option<DateTime<Utc>>,
    pub oldest: Option<DateTime<Utc>>,
    /// Distinct segments archived.
    pub segments: u64,
    /// Bytes stored, every file counted.
    pub bytes: u64,
}

/// Lists `policy`'s WAL archive on `destination`: one listing of its WAL
/// folder and one read of the marker.
pub fn list(destination: &dyn Destination, policy: &str) -> Result<Archive, destination::Error> {
    let folder = folder(policy);
    let entries = destination.list(&folder)?;
    let has_marker = entries
        .iter()
        .any(|entry| entry.name == names::WAL_MARKER && entry.irregular.is_none());
    let marker = if has_marker {
        read_marker(destination, &folder)?.map(|(marker, _)| marker.marker())
    } else {
        None
    };
    let mut files: Vec<Archived> = entries
        .into_iter()
        .filter(|entry| entry.irregular.is_none())
        .filter_map(|entry| {
            let parsed = names::parse_wal_object(&entry.name)?;
            Some(Archived {
                name: parsed.wal.to_owned(),
                object: entry.name.clone(),
                size: entry.size,
                modified: entry.modified,
            })
        })
        .collect();
    files.sort_by(|a, b| (&a.name, &a.object).cmp(&(&b.name, &b.object)));
    Ok(Archive { marker, files })
}

impl Archive {
    /// The segment size the archive's marker records (16 MiB without one).
    pub fn segment_size(&self) -> u64 {
        self.marker
            .as_ref()
            .map_or(DEFAULT_SEGMENT_SIZE, |marker| marker.wal_segment_size)
    }

    /// The whole segments archived, by timeline.
    fn segments(&self) -> BTreeMap<u32, BTreeSet<u64>> {
        let size = self.segment_size();
        let mut segments: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
        for file in &self.files {
            if let Some(segment) = SegmentName::parse(&file.name, size) {
                segments
                    .entry(segment.timeline)
                    .or_default()
                    .insert(segment.number);
            }
        }
        segments
    }

    fn range(&self, timeline: u32, first: u64, last: u64) -> Range {
        let size = self.segment_size();
        Range {
            timeline,
            first: SegmentName {
                timeline,
                number: first,
            }
            .name(size),
            last: SegmentName {
                timeline,
                number: last,
            }
            .name(size),
            count: last - first + 1,
        }
    }

    pub fn summary(&self) -> Summary {
        let mut summary = Summary {
            newest: self.files.iter().filter_map(|file| file.modified).max(),
            oldest: self.files.iter().filter_map(|file| file.modified).min(),
            bytes: self.files.iter().map(|file| file.size).sum(),
            ..Summary::default()
        };
        for (timeline, numbers) in self.segments() {
            summary.segments += numbers.len() as u64;
            let mut run: Option<(u64, u64)> = None;
            for number in numbers {
                run = match run {
                    Some((first, last)) if number == last + 1 => Some((first, number)),
                    Some((first, last)) => {
                        summary.ranges.push(self.range(timeline, first, last));
                        summary
                            .gaps
                            .push(self.range(timeline, last + 1, number - 1));
                        Some((number, number))
                    }
                    None => Some((number, number)),
                };
            }
            if let Some((first, last)) = run {
                summary.ranges.push(self.range(timeline, first, last));
            }
        }
        summary
    }

    /// The segments missing from `from` to `to`, both included, on
    /// `from`'s timeline: the proof a restore needs before it starts. Empty
    /// when every one is archived (or `to` comes before `from`).
    pub fn missing(&self, from: &SegmentName, to: &SegmentName) -> Vec<Range> {
        let segments = self.segments();
        let empty = BTreeSet::new();
        let present = segments.get(&from.timeline).unwrap_or(&empty);
        let mut gaps = Vec::new();
        let mut next = from.number;
        for &number in present.range(from.number..=to.number) {
            if number > next {
                gaps.push(self.range(from.timeline, next, number - 1));
            }
            next = number + 1;
        }
        if next <= to.number {
            gaps.push(self.range(from.timeline, next, to.number));
        }
        gaps
    }

    /// Whether `segment` is archived.
    pub fn has(&self, segment: &SegmentName) -> bool {
        // `files` is sorted by name: a binary search, not a pass.
        let name = segment.name(self.segment_size());
        let at = self.files.partition_point(|file| file.name < name);
        self.files.get(at).is_some_and(|file| file.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn segment_names_and_numbers() {
        // (name, segment size, number)
        for (name, size, number) in [
            ("000000010000000000000001", 16 * MIB, 1),
            ("0000000100000000000000FF", 16 * MIB, 255),
            ("000000010000000100000000", 16 * MIB, 256),
            ("000000030000000A00000010", 16 * MIB, 10 * 256 + 16),
            ("00000001000000000000003F", 64 * MIB, 63),
            ("000000010000000100000000", 64 * MIB, 64),
            ("000000010000000200000003", 64 * MIB, 2 * 64 + 3),
            ("000000010000000000000000", MIB, 0),
            ("000000010000000100000001", MIB, 4097),
        ] {
            let segment = SegmentName::parse(name, size).unwrap();
            assert_eq!(segment.number, number, "{name} at {size}");
            assert_eq!(segment.name(size), name);
        }
        assert_eq!(
            SegmentName::parse("000000030000000A00000010", 16 * MIB)
                .unwrap()
                .timeline,
            3
        );
        // 16 MiB segments end at ...FF; 64 MiB ones at ...3F.
        assert_eq!(
            SegmentName::parse("000000010000000000000100", 16 * MIB),
            None
        );
        assert_eq!(
            SegmentName::parse("000000010000000000000040", 64 * MIB),
            None
        );
        for bad in [
            "00000001000000000000001",
            "00000001000000000000001g",
            "000000010000000000000001.partial",
            "00000002.history",
        ] {
            assert_eq!(SegmentName::parse(bad, 16 * MIB), None, "{bad}");
        }
        // The segment after ...FF is the next log id's first.
        let last = SegmentName::parse("0000000100000000000000FF", 16 * MIB).unwrap();
        let next = SegmentName {
            number: last.number + 1,
            ..last
        };
        assert_eq!(next.name(16 * MIB), "000000010000000100000000");
    }

    #[test]
    fn lsns() {
        assert_eq!(parse_lsn("0/2000028"), Some(0x200_0028));
        assert_eq!(parse_lsn("1/0"), Some(1 << 32));
        assert_eq!(parse_lsn("FFFFFFFF/FFFFFFFF"), Some(u64::MAX));
        for bad in ["", "0", "0/", "/1", "0/123456789", "x/1", "0/1/2"] {
            assert_eq!(parse_lsn(bad), None, "{bad}");
        }
        assert_eq!(format_lsn(0x200_0028), "0/2000028");
        assert_eq!(format_lsn((0x1A << 32) | 0xB), "1A/B");
        for lsn in [0, 0x200_0028, u64::MAX, 5 << 32] {
            assert_eq!(parse_lsn(&format_lsn(lsn)), Some(lsn));
        }
        // 0/2000028 is in segment 2 (16 MiB); 1/0 starts log 1.
        assert_eq!(
            SegmentName::of_lsn(1, 0x200_0028, 16 * MIB).name(16 * MIB),
            "000000010000000000000002"
        );
        assert_eq!(
            SegmentName::of_lsn(2, 1 << 32, 16 * MIB).name(16 * MIB),
            "000000020000000100000000"
        );
        assert_eq!(
            SegmentName::of_lsn(1, (1 << 32) - 1, 64 * MIB).name(64 * MIB),
            "00000001000000000000003F"
        );
        assert_eq!(
            SegmentName::of_lsn(1, 0x200_0028, 16 * MIB).start_lsn(16 * MIB),
            0x200_0000
        );
    }

    #[test]
    fn a_page_header_is_read_little_endian() {
        // The first 40 bytes of a PostgreSQL 15 segment made by initdb.
        let bytes: [u8; 40] = [
            0x10, 0xd1, 0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x94, 0xd1, 0xb3, 0xdf,
            0xe2, 0xfd, 0x0e, 0x6b, 0x00, 0x00, 0x00, 0x01, 0x00, 0x20, 0x00, 0x00,
        ];
        let header = PageHeader::parse(&bytes).unwrap();
        assert_eq!(header.system_identifier, 7_714_382_362_589_778_324);
        assert_eq!(header.segment_size, 16 * 1024 * 1024);
        assert_eq!(header.block_size, 8192);
        assert_eq!(header.timeline, 1);
        assert_eq!(header.page_address, 0x100_0000);
        let mut short = bytes;
        short[2] = 0; // not a long header
        assert_eq!(PageHeader::parse(&short), None);
        assert_eq!(PageHeader::parse(&bytes[..39]), None);
        assert_eq!(PageHeader::parse(&[0; 40]), None);
    }

    fn archive(names: &[&str], segment_size: u64) -> Archive {
        Archive {
            marker: Some(Marker {
                system_identifier: "1".to_owned(),
                wal_segment_size: segment_size,
            }),
            files: names
                .iter()
                .enumerate()
                .map(|(index, name)| Archived {
                    name: (*name).to_owned(),
                    object: names::wal_object(name, "0123456789abcdef", ".zst"),
                    size: 100,
                    modified: Some(
                        DateTime::from_timestamp(1_700_000_000 + index as i64 * 60, 0).unwrap(),
                    ),
                })
                .collect(),
        }
    }

    fn range(timeline: u32, first: &str, last: &str, count: u64) -> Range {
        Range {
            timeline,
            first: first.to_owned(),
            last: last.to_owned(),
            count,
        }
    }

    #[test]
    fn summary_finds_runs_and_exact_gaps() {
        let archive = archive(
            &[
                "0000000100000000000000FE",
                "0000000100000000000000FF",
                "000000010000000100000000",
                // gap: 000000010000000100000001 ..= 000000010000000100000003
                "000000010000000100000004",
                "000000010000000100000004.00000028.backup",
                "00000002.history",
                "000000020000000100000004",
                "000000020000000100000005",
                "000000010000000100000005.partial",
            ],
            16 * MIB,
        );
        let summary = archive.summary();
        assert_eq!(
            summary.ranges,
            vec![
                range(1, "0000000100000000000000FE", "000000010000000100000000", 3),
                range(1, "000000010000000100000004", "000000010000000100000004", 1),
                range(2, "000000020000000100000004", "000000020000000100000005", 2),
            ]
        );
        assert_eq!(
            summary.gaps,
            vec![range(
                1,
                "000000010000000100000001",
                "000000010000000100000003",
                3
            )]
        );
        assert_eq!(summary.segments, 6);
        assert_eq!(summary.bytes, 900);
        assert_eq!(summary.oldest, DateTime::from_timestamp(1_700_000_000, 0));
        assert_eq!(
            summary.newest,
            DateTime::from_timestamp(1_700_000_000 + 8 * 60, 0)
        );
        assert_eq!(Archive::default().summary(), Summary::default());
    }

    #[test]
    fn missing_is_the_restore_proof() {
        let size = 64 * MIB;
        let archive = archive(
            &[
                "00000001000000000000003E",
                "00000001000000000000003F",
                "000000010000000100000000",
                "000000010000000100000003",
            ],
            size,
        );
        let segment = |name: &str| SegmentName::parse(name, size).unwrap();
        assert_eq!(
            archive.missing(
                &segment("00000001000000000000003E"),
                &segment("000000010000000100000000")
            ),
            vec![]
        );
        assert_eq!(
            archive.missing(
                &segment("00000001000000000000003D"),
                &segment("000000010000000100000005")
            ),
            vec![
                range(1, "00000001000000000000003D", "00000001000000000000003D", 1),
                range(1, "000000010000000100000001", "000000010000000100000002", 2),
                range(1, "000000010000000100000004", "000000010000000100000005", 2),
            ]
        );
        // Another timeline has none of them.
        assert_eq!(
            archive.missing(
                &segment("00000002000000000000003E"),
                &segment("00000002000000000000003F")
            ),
            vec![range(
                2,
                "00000002000000000000003E",
                "00000002000000000000003F",
                2
            )]
        );
        assert!(archive.has(&segment("000000010000000100000003")));
        assert!(!archive.has(&segment("000000010000000100000002")));
        assert!(!archive.has(&segment("000000020000000100000003")));
        assert_eq!(
            archive.summary().gaps,
            vec![range(
                1,
                "000000010000000100000001",
                "000000010000000100000002",
                2
            )]
        );
        assert_eq!(archive.summary().segments, 4);
    }
}
