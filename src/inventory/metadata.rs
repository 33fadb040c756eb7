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
    /// The data file.
    pub artifact: Artifact,
    /// What was backed up.
    pub source: SourceInfo,
    /// Version of backup that took it.
    pub tool_version: String,
    /// Host name of the machine that took it.
    pub host: String,
    /// SHA-256 of the policy as it was when the backup was taken.
    pub policy_digest: String,
    /// Labels such as `pre-restore` (a safety backup taken before a restore).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// The data file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Artifact {
    /// File name, beside the sidecar: `<id>.<kind>.gz`, e.g. `20261125T010000Z.pgdump.gz`.
    pub name: String,
    /// Size in bytes, as stored.
    pub size: u64,
    /// SHA-256 of the stored bytes, lowercase hex; `sha256sum` prints the same.
    pub sha256: String,
    /// Compression of the stored bytes: `gzip`.
    pub compression: String,
    /// Size in bytes before compression.
    pub uncompressed_size: u64,
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
    /// snapshot as the data.
    pub row_counts: BTreeMap<String, u64>,
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
