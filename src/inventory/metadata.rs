//! The metadata sidecar: `<id>.json` beside each backup's data, its commit marker.
//!
//! The field names are a contract (schema/backup-metadata.v1.json, generated
//! from these types); fields may be added, none renamed or removed within
//! format_version 1.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The sidecar's format version.
pub const FORMAT_VERSION: u32 = 1;

/// Everything known about one backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "backup metadata sidecar (format_version 1)")]
pub struct BackupMetadata {
    /// Version of this format; 1.
    pub format_version: u32,
    /// Name of the policy the backup belongs to.
    pub policy: String,
    /// The backup's id: its UTC start time `YYYYMMDDTHHMMSSZ`, with `-<suffix>`
    /// when two backups started in the same second.
    pub id: String,
    /// When the backup started (UTC). Retention and schedules use this time,
    /// never file names or modification times.
    pub created_at: DateTime<Utc>,
    /// When the data was committed (UTC).
    pub finished_at: DateTime<Utc>,
    /// The data file; for a backup made of several objects, the first of `parts`.
    pub artifact: Artifact,
    /// How the backup is read: `pgdump`, `sqlite`, `mysql` (later
    /// `pg-basebackup`). Absent in sidecars written before it was introduced:
    /// then the one the source kind always used (`pgdump` for `postgres`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Every object of a backup made of several (a physical backup's tar
    /// parts), in order, the first being `artifact`; each is checked, copied,
    /// verified and pruned like `artifact`. Absent for a backup of one object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Artifact>,
    /// Client-side encryption of the stored bytes (of every part), after
    /// compression: the SHA-256 and size are of the encrypted bytes, so
    /// integrity is checked without a key. Absent when not encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    /// What was backed up.
    pub source: SourceInfo,
    /// A physical backup's place in the WAL (`format: pg-basebackup`): where
    /// recovery from it starts and the earliest point it is consistent at.
    /// Absent for logical backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical: Option<PhysicalInfo>,
    /// Version of backup that took it.
    pub tool_version: String,
    /// Host name of the machine that took it.
    pub host: String,
    /// SHA-256 of the policy as it was when the backup was taken. Absent in
    /// sidecars written by other tools (only the fields of the contract).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub policy_digest: String,
    /// Labels such as `pre-restore` (a safety backup taken before a restore).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The lease its writer held (`spec.lease`): the epoch and holder, so
    /// that a backup written by a writer that had lost its lease can be
    /// told apart. Absent when the policy has no lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<crate::lease::Stamp>,
    /// SHA-256 (lowercase hex) of this sidecar's other fields as canonical
    /// JSON (object keys sorted, no whitespace), so damage to the sidecar
    /// itself is found before a restore trusts it. Absent in sidecars written
    /// before it was introduced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar_sha256: Option<String>,
}

/// Where a base backup stands in its cluster's WAL, from its `backup_manifest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PhysicalInfo {
    /// The cluster's system identifier (`pg_control_system()`), as decimal
    /// text: WAL of another cluster never completes this backup.
    pub system_identifier: String,
    /// The timeline the backup was taken on.
    pub timeline: u32,
    /// Where replay starts (`0/2000028`): the first WAL segment recovery needs.
    pub start_lsn: String,
    /// Where the backup ends: the earliest point a restore of it is consistent at.
    pub stop_lsn: String,
    /// The WAL segment size of the cluster, in bytes.
    pub wal_segment_size: u64,
    /// The first and last WAL segment (file names) a restore to the end of the backup needs.
    pub start_wal: String,
    pub stop_wal: String,
    /// SHA-256 of the `backup_manifest` (its `Manifest-Checksum`), which the
    /// base part holds as its last member.
    pub manifest_checksum: String,
}

/// The tag of a safety backup taken by `backup restore` before it replaces a target.
pub const PRE_RESTORE_TAG: &str = "pre-restore";

impl BackupMetadata {
    /// Whether this is a safety backup taken before a restore (not a scheduled one).
    pub fn is_pre_restore(&self) -> bool {
        self.tags.iter().any(|tag| tag == PRE_RESTORE_TAG)
    }

    /// The format the backup is in (see [`BackupMetadata::format`] the field).
    pub fn format(&self) -> &str {
        match (&self.format, self.source.kind.as_str()) {
            (Some(format), _) => format,
            (None, "postgres") => "pgdump",
            (None, kind) => kind,
        }
    }

    /// Every stored object of the backup: its parts, or its one artifact.
    pub fn objects(&self) -> &[Artifact] {
        if self.parts.is_empty() {
            std::slice::from_ref(&self.artifact)
        } else {
            &self.parts
        }
    }

    /// The bytes the backup takes on a destination, every part counted.
    pub fn stored_size(&self) -> u64 {
        self.objects().iter().map(|object| object.size).sum()
    }

    /// Why the parts do not fit together, if they do not: the first part
    /// must be `artifact`, and every name must be the backup's own
    /// (`<id>.…`) and appear once.
    fn parts_problem(&self) -> Option<String> {
        if self.parts.is_empty() {
            return None;
        }
        if self.parts[0] != self.artifact {
            return Some("its first part is not its artifact".to_owned());
        }
        let prefix = super::names::prefix(&self.id);
        let mut seen = std::collections::BTreeSet::new();
        for part in &self.parts {
            if !part.name.starts_with(&prefix) || part.name.contains('/') {
                return Some(format!(
                    "part `{}` is not named after its backup",
                    part.name
                ));
            }
            if !seen.insert(part.name.as_str()) {
                return Some(format!("part `{}` is listed twice", part.name));
            }
        }
        None
    }

    /// Sets `sidecar_sha256` over every other field.
    pub fn seal(&mut self) -> Result<(), serde_json::Error> {
        self.sidecar_sha256 = None;
        let value = serde_json::to_value(&*self)?;
        self.sidecar_sha256 = Some(content_digest(&value));
        Ok(())
    }
}

/// The name of the sidecar's self-digest field.
const SEAL_FIELD: &str = "sidecar_sha256";

/// SHA-256 of a sidecar's JSON value without its self-digest, as canonical
/// JSON, hashed as it is written (no copy of the value is made: a listing
/// of 100,000 backups checks 100,000 seals).
fn content_digest(value: &serde_json::Value) -> String {
    use sha2::{Digest as _, Sha256};
    struct Hashing(Sha256);
    impl std::io::Write for Hashing {
        fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
            self.0.update(buffer);
            Ok(buffer.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut hashing = Hashing(Sha256::new());
    // Writing into a hasher cannot fail.
    let _ = write_canonical(value, &mut hashing, Some(SEAL_FIELD));
    hex(&hashing.0.finalize())
}

/// Writes `value` as JSON with object keys sorted and no whitespace,
/// leaving out the top-level key `skip`.
fn write_canonical(
    value: &serde_json::Value,
    out: &mut impl std::io::Write,
    skip: Option<&str>,
) -> std::io::Result<()> {
    use serde_json::Value;
    match value {
        Value::Object(object) => {
            let mut keys: Vec<&String> = object
                .keys()
                .filter(|key| Some(key.as_str()) != skip)
                .collect();
            keys.sort();
            out.write_all(b"{")?;
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.write_all(b",")?;
                }
                serde_json::to_writer(&mut *out, key)?;
                out.write_all(b":")?;
                write_canonical(&object[key], out, None)?;
            }
            out.write_all(b"}")
        }
        Value::Array(items) => {
            out.write_all(b"[")?;
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.write_all(b",")?;
                }
                write_canonical(item, out, None)?;
            }
            out.write_all(b"]")
        }
        other => Ok(serde_json::to_writer(out, other)?),
    }
}

/// Whether `written` (a sidecar as stored) says what `known` (the same, read
/// and written again by this version) says: the same fields, with equal
/// values however they are formatted (`2014-08-13T10:20:30.1Z` is the
/// instant this version writes as `2014-08-13T10:20:30.100Z`). A field this
/// version leaves out when empty may be written empty (`"tags": []`).
fn same_meaning(written: &serde_json::Value, known: &serde_json::Value) -> bool {
    use serde_json::Value;
    let empty = |value: &Value| match value {
        Value::Null => true,
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
        Value::Number(number) => number.as_u64() == Some(0),
        Value::Bool(_) => false,
    };
    match (written, known) {
        (Value::Object(written), Value::Object(known)) => {
            written.iter().all(|(key, value)| match known.get(key) {
                Some(again) => same_meaning(value, again),
                None => empty(value),
            }) && known.keys().all(|key| written.contains_key(key))
        }
        (Value::Array(written), Value::Array(known)) => {
            written.len() == known.len()
                && written
                    .iter()
                    .zip(known)
                    .all(|(written, known)| same_meaning(written, known))
        }
        (Value::String(written), Value::String(known)) => {
            written == known
                || matches!(
                    (
                        DateTime::parse_from_rfc3339(written),
                        DateTime::parse_from_rfc3339(known),
                    ),
                    (Ok(written), Ok(known)) if written == known
                )
        }
        (written, known) => written == known,
    }
}

/// Reads a sidecar's bytes and checks that they are undamaged: with a
/// `sidecar_sha256`, it must match the other fields as written; without one
/// (an older sidecar, or one another tool wrote), every field must be one
/// this version knows, with a valid value of its type (formatted as the
/// writer liked), so that a damaged field name cannot go unnoticed.
pub fn parse_checked(bytes: &[u8]) -> Result<BackupMetadata, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|error| format!("not valid JSON: {error}"))?;
    let metadata = BackupMetadata::deserialize(&value)
        .map_err(|error| format!("not a valid sidecar: {error}"))?;
    match &metadata.sidecar_sha256 {
        Some(recorded) => {
            let actual = content_digest(&value);
            if *recorded != actual {
                return Err(format!(
                    "the sidecar is damaged: its content hashes to {actual}, it records {recorded}"
                ));
            }
        }
        None => {
            let again = serde_json::to_value(&metadata)
                .map_err(|error| format!("not a valid sidecar: {error}"))?;
            if !same_meaning(&value, &again) {
                return Err(
                    "the sidecar is damaged: it has no sidecar_sha256 and holds fields this version does not know"
                        .to_owned(),
                );
            }
        }
    }
    if let Some(problem) = metadata.parts_problem() {
        return Err(format!("the sidecar is inconsistent: {problem}"));
    }
    Ok(metadata)
}

/// The data file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Artifact {
    /// File name, beside the sidecar: `<id>.<format>.<compression>`, e.g.
    /// `20261125T010000Z.pgdump.gz`; a part of a physical backup
    /// `<id>.<part>.tar.<compression>`.
    pub name: String,
    /// Size in bytes, as stored.
    pub size: u64,
    /// SHA-256 of the stored bytes, lowercase hex; `sha256sum` prints the same.
    pub sha256: String,
    /// Compression of the stored bytes: `gzip`, `zstd` or `none`.
    pub compression: String,
    /// Size in bytes before compression; absent (0) when unknown, as in
    /// sidecars written by other tools, and then not checked.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub uncompressed_size: u64,
}

/// How a backup's stored bytes are encrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Encryption {
    /// `age` (age-encryption.org; `age -d -i KEY` decrypts).
    pub method: String,
    /// Which keys can decrypt: per recipient, `sha256:` and the first 16 hex
    /// digits of the SHA-256 of its public key as the policy writes it.
    /// Never a key.
    pub recipients: Vec<String>,
}

/// What was backed up, and what a restore must find again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SourceInfo {
    /// `postgres` or `sqlite`.
    pub kind: String,
    /// PostgreSQL server version, or the SQLite library version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// Name of the database dumped (PostgreSQL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Row count of every table whose rows are in the backup, keyed
    /// `schema.table` (PostgreSQL) or `table` (SQLite), counted in the same
    /// snapshot as the data. Absent when unknown (then a restore checks no
    /// counts).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub row_counts: BTreeMap<String, u64>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// Lowercase hex, as `sha256sum` prints digests.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The JSON Schema of the sidecar.
pub fn schema_text() -> String {
    let generator = schemars::generate::SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator();
    let schema = generator.into_root_schema_for::<BackupMetadata>();
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}
