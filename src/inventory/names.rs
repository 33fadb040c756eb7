//! Every name a policy's folder holds, in one place: backup ids, sidecars
//! (`<id>.json`), data and parts (`<id>.<format>.<compression>[.age]`,
//! `<id>.<part>.tar.<compression>`), the commit protocol's suffixes
//! (`.partial`, `.tmp`), claims (`<id>.claim-<nonce>`), drill evidence
//! (`restore-test-<id>.json`) and sub-folders (`wal/`). Destinations, the
//! engine, the inventory, plan, apply and restore all name objects through
//! this module, so a name means the same everywhere.

use chrono::{DateTime, Utc};

/// Suffix of data still being written; anything with it is an orphan once its writer is gone.
pub const PARTIAL_SUFFIX: &str = ".partial";
/// Suffix of a small object (a sidecar) being written.
pub const TEMPORARY_SUFFIX: &str = ".tmp";
/// Suffix of a sidecar.
const SIDECAR_SUFFIX: &str = ".json";

/// The sub-folder of a policy's folder that holds its WAL archive
/// (`<policy>/wal/`), listed on its own: the backup listing skips it.
pub const WAL_FOLDER: &str = "wal";

/// The sub-folder of a policy's folder that holds each host's last run
/// (`<policy>/hosts/<host>.json`), for the fleet view (`status --all-hosts`).
pub const HOSTS_FOLDER: &str = "hosts";

/// The sub-folders a policy's folder may hold, each listed on its own.
pub const SUB_FOLDERS: &[&str] = &[WAL_FOLDER, HOSTS_FOLDER];

/// The name of `host`'s last-run record in [`HOSTS_FOLDER`].
pub fn host_record(host: &str) -> String {
    format!("{host}{SIDECAR_SUFFIX}")
}

/// The host a name in [`HOSTS_FOLDER`] is the record of.
pub fn host_record_host(name: &str) -> Option<&str> {
    name.strip_suffix(SIDECAR_SUFFIX)
        .filter(|host| crate::engine::check_host_name(host).is_ok())
}

/// The folder (as destinations take a policy's folder) of `policy`'s sub-folder `sub`.
pub fn sub_folder(policy: &str, sub: &str) -> String {
    format!("{policy}/{sub}")
}

/// Whether `name`, an entry of a policy's folder, is one of its sub-folders.
pub fn is_sub_folder(name: &str) -> bool {
    SUB_FOLDERS.contains(&name)
}

/// The WAL archive's marker in the WAL sub-folder: which cluster (system
/// identifier) and segment size the archive belongs to, written create-only
/// by the first push.
pub const WAL_MARKER: &str = "archive.json";

/// The suffixes an archived WAL file's name may end with after its hash:
/// compression, then `.age` when encrypted (see [`crate::codec::suffix`]).
const WAL_SUFFIXES: [(&str, &str, bool); 6] = [
    ("", "none", false),
    (".gz", "gzip", false),
    (".zst", "zstd", false),
    (".age", "none", true),
    (".gz.age", "gzip", true),
    (".zst.age", "zstd", true),
];

/// Hex digits of the content hash in an archived WAL file's name.
pub const WAL_HASH_LENGTH: usize = 16;

/// What kind of file PostgreSQL archives, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalKind {
    /// `000000010000000000000003`: a whole segment.
    Segment,
    /// `000000010000000000000003.partial`: the last, incomplete segment of
    /// a timeline that a promotion ended.
    Partial,
    /// `00000002.history`: a timeline's history.
    History,
    /// `000000010000000000000003.00000028.backup`: a base backup's label.
    Backup,
}

impl WalKind {
    /// Whether files of this kind start with a WAL page header (segments do).
    pub fn has_page_header(self) -> bool {
        matches!(self, WalKind::Segment | WalKind::Partial)
    }
}

fn is_upper_hex(text: &str, length: usize) -> bool {
    text.len() == length
        && text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'A'..=b'F').contains(&byte))
}

/// What kind of WAL file `name` (as PostgreSQL names it, `%f`) is, if it is one.
pub fn wal_kind(name: &str) -> Option<WalKind> {
    if is_upper_hex(name, 24) {
        return Some(WalKind::Segment);
    }
    if let Some(segment) = name.strip_suffix(".partial") {
        return is_upper_hex(segment, 24).then_some(WalKind::Partial);
    }
    if let Some(timeline) = name.strip_suffix(".history") {
        return is_upper_hex(timeline, 8).then_some(WalKind::History);
    }
    if let Some(label) = name.strip_suffix(".backup") {
        let (segment, offset) = label.split_once('.')?;
        return (is_upper_hex(segment, 24) && is_upper_hex(offset, 8)).then_some(WalKind::Backup);
    }
    None
}

/// The prefix every archived copy of WAL file `wal` starts with: `<wal>.`.
/// Other WAL files may share it (`<segment>.<offset>.backup`): parse
/// names with [`parse_wal_object`] before trusting them.
pub fn wal_prefix(wal: &str) -> String {
    format!("{wal}.")
}

/// The archived object of WAL file `wal` whose raw content's SHA-256
/// starts with `hash16`: `<wal>.<hash16><suffix>`, where `suffix` is the
/// codec's (`.zst.age`): `000000010000000000000003.9f86d081884c7d65.zst.age`.
pub fn wal_object(wal: &str, hash16: &str, suffix: &str) -> String {
    format!("{wal}.{hash16}{suffix}")
}

/// An archived WAL file's name, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalObject<'a> {
    /// The WAL file's name, as PostgreSQL names it.
    pub wal: &'a str,
    pub kind: WalKind,
    /// The first 16 hex digits of the SHA-256 of the raw file.
    pub hash: &'a str,
    /// The compression, as sidecars name it (`gzip`, `zstd`, `none`).
    pub compression: &'static str,
    pub encrypted: bool,
}

/// The WAL file, hash and codec an object of the WAL folder names, if it is
/// an archived WAL file (not a partial upload, not the marker).
pub fn parse_wal_object(name: &str) -> Option<WalObject<'_>> {
    // The WAL name is everything before the hash: the hash is the first
    // 16-hex-digit segment after which only a codec suffix follows.
    let mut search = 0;
    while let Some(dot) = name[search..].find('.').map(|found| found + search) {
        let wal = &name[..dot];
        let rest = &name[dot + 1..];
        search = dot + 1;
        let Some(kind) = wal_kind(wal) else {
            continue;
        };
        if rest.len() < WAL_HASH_LENGTH || !rest.is_char_boundary(WAL_HASH_LENGTH) {
            continue;
        }
        let (hash, suffix) = rest.split_at(WAL_HASH_LENGTH);
        if !hash
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
        {
            continue;
        }
        if let Some((_, compression, encrypted)) =
            WAL_SUFFIXES.iter().find(|(known, _, _)| *known == suffix)
        {
            return Some(WalObject {
                wal,
                kind,
                hash,
                compression,
                encrypted: *encrypted,
            });
        }
    }
    None
}

/// A backup id: the UTC start time, `YYYYMMDDTHHMMSSZ`, plus `-<suffix>` if needed.
pub fn base_id(started: DateTime<Utc>) -> String {
    started.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Whether `name` is a backup id (`20261125T010000Z` or `20261125T010000Z-2`).
pub fn is_id(name: &str) -> bool {
    let (base, suffix) = name.split_at(name.len().min(16));
    let base_ok = base.len() == 16
        && base.bytes().enumerate().all(|(index, byte)| match index {
            8 => byte == b'T',
            15 => byte == b'Z',
            _ => byte.is_ascii_digit(),
        });
    let suffix_ok = suffix.is_empty()
        || suffix.strip_prefix('-').is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit())
        });
    base_ok && suffix_ok
}

/// The time an id names (its first 16 characters), if it is an id.
pub fn id_time(id: &str) -> Option<DateTime<Utc>> {
    if !is_id(id) {
        return None;
    }
    chrono::NaiveDateTime::parse_from_str(&id[..16], "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|time| time.and_utc())
}

/// The sidecar of backup `id`: `<id>.json`, its commit marker.
pub fn sidecar(id: &str) -> String {
    format!("{id}{SIDECAR_SUFFIX}")
}

/// The id whose sidecar `name` is, if it is one.
pub fn sidecar_id(name: &str) -> Option<&str> {
    name.strip_suffix(SIDECAR_SUFFIX).filter(|id| is_id(id))
}

/// Whether `name` ends like a sidecar (`.json`), an id's or not.
pub fn is_json(name: &str) -> bool {
    name.ends_with(SIDECAR_SUFFIX)
}

/// The prefix every object of backup `id` starts with: `<id>.`.
pub fn prefix(id: &str) -> String {
    format!("{id}.")
}

/// The id an object's name starts with (`<id>.…`), if it starts with one.
pub fn object_id(name: &str) -> Option<&str> {
    name.split('.').next().filter(|id| is_id(id))
}

/// The single data object of backup `id`: `<id>.<format><suffix>`, where
/// `suffix` is the codec's (`.gz`, `.zst`, `.zst.age`, or empty).
pub fn artifact(id: &str, format: &str, suffix: &str) -> String {
    format!("{id}.{format}{suffix}")
}

/// Part `part` of a multi-part backup `id`: `<id>.<part>.tar<suffix>`
/// (`20261201T020000Z.base.tar.zst`).
pub fn part(id: &str, part: &str, suffix: &str) -> String {
    format!("{id}.{part}.tar{suffix}")
}

/// The name `name` has while its data is written (`<name>.partial`).
pub fn partial(name: &str) -> String {
    format!("{name}{PARTIAL_SUFFIX}")
}

/// The name a small object `name` has while it is written (`<name>.tmp`).
pub fn temporary(name: &str) -> String {
    format!("{name}{TEMPORARY_SUFFIX}")
}

/// Whether `name` is data still being written, or left by a writer that died.
pub fn is_partial(name: &str) -> bool {
    name.ends_with(PARTIAL_SUFFIX)
}

/// Whether `name` is a small object still being written, or left half-written.
pub fn is_temporary(name: &str) -> bool {
    name.ends_with(TEMPORARY_SUFFIX)
}

/// Whether `name` is a leftover of the commit protocol (partial or temporary).
pub fn is_unfinished(name: &str) -> bool {
    is_partial(name) || is_temporary(name)
}

/// The name of a writer's claim on a backup id: `<id>.claim-<nonce>`.
/// It stands for a backup being written; a claim without a sidecar older
/// than the cleanup grace is an orphan of a writer that died.
pub fn claim_name(id: &str, nonce: &str) -> String {
    format!("{id}{CLAIM_INFIX}{nonce}")
}

const CLAIM_INFIX: &str = ".claim-";

/// Whether `name` is a claim (see [`claim_name`]).
pub fn is_claim(name: &str) -> bool {
    name.split_once(CLAIM_INFIX)
        .is_some_and(|(id, nonce)| is_id(id) && !nonce.is_empty() && !nonce.contains('.'))
}

/// The name a passing restore drill's evidence has beside the backups:
/// `restore-test-<drill start id>.json`. It is neither a sidecar (not an id)
/// nor an orphan, and tells every host, CI included, when a drill last passed.
pub fn drill_record_name(started: DateTime<Utc>) -> String {
    format!("{DRILL_RECORD_PREFIX}{}", sidecar(&base_id(started)))
}

const DRILL_RECORD_PREFIX: &str = "restore-test-";

/// When the drill whose evidence is named `name` started, if it is such a name.
pub fn drill_record_time(name: &str) -> Option<DateTime<Utc>> {
    id_time(sidecar_id(name.strip_prefix(DRILL_RECORD_PREFIX)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_ids() {
        for id in [
            "20261125T010000Z",
            "20261125T010000Z-2",
            "20261125T010000Z-a1",
        ] {
            assert!(is_id(id), "{id}");
        }
        for id in [
            "20261125T010000",
            "20261125X010000Z",
            "20261125T010000Z-",
            "20261125T010000Z-A",
            "x",
        ] {
            assert!(!is_id(id), "{id}");
        }
    }

    #[test]
    fn names_read_back_as_what_they_name() {
        let id = "20261125T010000Z-2";
        assert_eq!(sidecar_id(&sidecar(id)), Some(id));
        assert_eq!(sidecar_id("notes.json"), None);
        assert_eq!(object_id(&artifact(id, "pgdump", ".zst.age")), Some(id));
        assert_eq!(
            artifact(id, "sqlite", ".gz"),
            "20261125T010000Z-2.sqlite.gz"
        );
        assert_eq!(part(id, "base", ".zst"), "20261125T010000Z-2.base.tar.zst");
        assert!(artifact(id, "mysql", "").starts_with(&prefix(id)));
        assert!(is_partial(&partial("x.gz")) && !is_temporary(&partial("x.gz")));
        assert!(is_temporary(&temporary("x.json")) && is_unfinished(&temporary("x.json")));
        assert!(is_claim(&claim_name(id, "00ff")));
        assert!(!is_claim(&claim_name(id, "")));
        let started = id_time("20261125T010000Z").unwrap();
        assert_eq!(
            drill_record_time(&drill_record_name(started)),
            Some(started)
        );
        assert_eq!(sub_folder("app", WAL_FOLDER), "app/wal");
        assert!(is_sub_folder("wal") && !is_sub_folder("wal2"));
    }

    #[test]
    fn wal_names_read_back() {
        for (name, kind) in [
            ("000000010000000000000003", WalKind::Segment),
            ("000000010000000000000003.partial", WalKind::Partial),
            ("00000002.history", WalKind::History),
            ("000000010000000000000003.00000028.backup", WalKind::Backup),
        ] {
            assert_eq!(wal_kind(name), Some(kind), "{name}");
            for suffix in ["", ".gz", ".zst", ".age", ".gz.age", ".zst.age"] {
                let object = wal_object(name, "9f86d081884c7d65", suffix);
                let parsed = parse_wal_object(&object).unwrap();
                assert_eq!(parsed.wal, name);
                assert_eq!(parsed.kind, kind);
                assert_eq!(parsed.hash, "9f86d081884c7d65");
                assert_eq!(parsed.encrypted, suffix.ends_with(".age"));
                assert_eq!(
                    crate::codec::suffix(parsed.compression, parsed.encrypted),
                    suffix
                );
                assert!(object.starts_with(&wal_prefix(name)));
                assert_eq!(parse_wal_object(&partial(&object)), None);
                assert_eq!(parse_wal_object(&temporary(&object)), None);
            }
        }
        for name in [
            "00000001000000000000000",
            "0000000100000000000000030",
            "00000001000000000000000g",
            "000000010000000000000003.history",
            "0000002.history",
            "000000010000000000000003.0000028.backup",
            "000000010000000000000003.part",
        ] {
            assert_eq!(wal_kind(name), None, "{name}");
        }
        assert_eq!(
            wal_object("000000010000000000000003", "9f86d081884c7d65", ".zst.age"),
            "000000010000000000000003.9f86d081884c7d65.zst.age"
        );
        for name in [
            WAL_MARKER,
            "000000010000000000000003",
            "000000010000000000000003.9f86d081884c7d6",
            "000000010000000000000003.9F86D081884C7D65",
            "000000010000000000000003.9f86d081884c7d65.xz",
            "000000010000000000000003.9f86d081884c7d65.zst.partial",
            "00000001000000000000000g.9f86d081884c7d65",
        ] {
            assert_eq!(parse_wal_object(name), None, "{name}");
        }
    }
}
