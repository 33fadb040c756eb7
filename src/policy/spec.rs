//! Wire types of a policy file, apiVersion `backup/v1`.
//!
//! These mirror the YAML exactly; their doc comments become the descriptions
//! in `schema/policy.v1.json`, so they are written for the operator editing a
//! policy. Field names are the contract: a field may be added, none renamed.
//! Nothing here checks meaning (cron syntax, time zones); that is `check`'s job.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The apiVersion this build reads and writes.
pub const API_VERSION: &str = "backup/v1";

/// A backup policy: what to back up, when, for how long, and where to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "backup policy (backup/v1)")]
pub struct PolicyDocumentSpec {
    /// Version of the policy format. Always `backup/v1` for this schema.
    #[serde(rename = "apiVersion")]
    pub api_version: ApiVersion,
    /// Kind of document. Always `BackupPolicy`.
    pub kind: Kind,
    /// Name and labels of the policy.
    pub metadata: MetadataSpec,
    /// What to back up, when, how long to keep it and where to store it.
    pub spec: PolicySpec,
}

/// Version of the policy format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ApiVersion {
    /// The first version of the policy format.
    #[serde(rename = "backup/v1")]
    V1,
}

/// Kind of document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Kind {
    /// A backup policy.
    BackupPolicy,
}

/// Identity of a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MetadataSpec {
    /// Unique name of the policy: lowercase letters, digits and `-`, starting
    /// with a letter or digit, at most 63 characters. It names the folder or
    /// prefix the backups are stored under and the crontab line, so renaming a
    /// policy starts a new backup history. Example: `app-db`.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9-]*$"), length(min = 1, max = 63), example = &"app-db")]
    pub name: String,
    /// Free text shown by `backup list` and `backup status`. Example: `Orders database, primary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Free-form key/value labels, copied to alerts and metrics. Example: `{team: payments}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The hosts that run this policy, so one policy folder serves a fleet:
    /// host names (`--host`, else the kernel's host name), globs with `*`
    /// and `?` (`db-*`), or label selectors `key=value` matched against the
    /// host's labels in the settings document. A host runs the policy when
    /// any entry matches it. Absent: every host. Example: `[db1, "db-*", "role=primary"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}

/// The desired state of one policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PolicySpec {
    /// The database to back up: exactly one of `postgres` or `sqlite`.
    pub source: SourceSpec,
    /// When backups are due.
    pub schedule: ScheduleSpec,
    /// How many backups to keep, with restic's `keep-*` meaning. At least one
    /// rule must keep something.
    pub retention: RetentionSpec,
    /// Where backups are stored; every backup is kept on every destination.
    /// At least one.
    #[schemars(length(min = 1))]
    pub destinations: Vec<DestinationSpec>,
    /// How backup data is compressed. Default: gzip at level 6 (zstd is
    /// faster and smaller: `zstd: {level: 3}`).
    #[serde(default)]
    pub compression: CompressionSpec,
    /// Client-side encryption of the backup data, after compression and
    /// before anything leaves the host. Default: none (a destination's own
    /// server-side encryption is set on the destination).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionSpec>,
    /// Who hears about failures (and, optionally, successes). Default: nobody.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<NotifySpec>,
    /// Scheduled checks that the backups restore. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySpec>,
    /// How `backup status` judges this policy's freshness. Default: from the schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSpec>,
    /// PostgreSQL only: physical base backups (`pg_basebackup`) on their own
    /// schedule and retention, beside the logical dumps; with the WAL the
    /// server archives through `backup wal push`, they make point-in-time
    /// recovery (`backup restore --target-time`). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical: Option<PhysicalSpec>,
}

/// Physical base backups and the WAL archive between them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PhysicalSpec {
    /// When base backups are due, read like `spec.schedule`. Example:
    /// `{cron: "0 2 * * 0", timezone: UTC}` (weekly).
    pub schedule: ScheduleSpec,
    /// How many base backups to keep, with the same `keep-*` rules as
    /// `spec.retention`. WAL is kept from the start of the oldest kept base
    /// backup. Example: `{keep-last: 2}`.
    pub retention: RetentionSpec,
    /// Keep WAL for only this long (counted back from now), from the start of
    /// the newest base backup that began before then; base backups older than
    /// that stay restorable to their end only (`--target immediate`).
    /// Same units as `keep-within`. Default: back to the oldest kept base
    /// backup. Example: `7d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+[ymdh])+$"), example = &"7d")]
    pub pitr_window: Option<String>,
}

/// Scheduled verification of a policy's backups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VerifySpec {
    /// How often `backup apply` runs a restore drill: it restores the newest
    /// backup into a scratch target (a temporary SQLite file, or a temporary
    /// database on the PostgreSQL server), checks it against the backup's
    /// metadata, drops it, and keeps a JSON evidence record in the state
    /// folder. A drill is due when a tick of this schedule has passed since
    /// the last drill that passed. `daily`, `weekly`, `monthly`, or a 5-field
    /// crontab expression or @-shortcut, read in the schedule's time zone.
    /// Example: `weekly` or `"30 4 * * 0"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"weekly")]
    pub restore_test: Option<String>,
}

impl VerifySpec {
    /// The crontab expression `restore-test` stands for.
    pub fn restore_test_expression(&self) -> Option<String> {
        self.restore_test.as_deref().map(|text| match text {
            "daily" | "weekly" | "monthly" | "hourly" | "yearly" => format!("@{text}"),
            other => other.to_owned(),
        })
    }
}

/// The database a policy backs up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum SourceSpec {
    /// A PostgreSQL database, dumped with `pg_dump` in custom format.
    Postgres(PostgresSpec),
    /// An SQLite database file, copied with SQLite's online backup API.
    Sqlite(SqliteSpec),
    /// A MariaDB or MySQL database, dumped with `mariadb-dump` (or
    /// `mysqldump`) in one transaction.
    Mysql(MysqlSpec),
}

/// Connection to a PostgreSQL database. Give either `url`, or the separate
/// fields; any text field may use `${env:NAME}` or `${file:/path}` references,
/// which are read when the backup runs and never logged.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PostgresSpec {
    /// libpq connection URL. Keep passwords out of it: use a reference for the
    /// whole URL, the `password` field, or a `.pgpass` file. Example:
    /// `${env:DATABASE_URL}` or `postgresql://backup@db1:5432/app?sslmode=require`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Server host name, IP address or Unix socket directory. Example: `db1.internal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Server port. Default: 5432.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Role to connect as. Example: `backup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Database to dump. Required unless `url` names it. Example: `app`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Password, as a reference (plain text is accepted, with a warning).
    /// Example: `${env:PGPASSWORD}` or `${file:/run/secrets/pg}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// libpq `sslmode`: disable, allow, prefer, require, verify-ca or verify-full.
    /// Default: libpq's (prefer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslmode: Option<SslMode>,
    /// File of trusted CA certificates (PEM), libpq's `sslrootcert`: needed for
    /// `sslmode` `verify-ca` and `verify-full`. Absolute path.
    /// Example: `/etc/ssl/certs/rds-global-bundle.pem`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_root_cert: Option<PathBuf>,
    /// Dump only these schemas (`pg_dump --schema`; patterns allowed). Example: `[public, billing]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<String>,
    /// Leave out these schemas (`pg_dump --exclude-schema`). Example: `[audit]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_schemas: Vec<String>,
    /// Dump only these tables (`pg_dump --table`; patterns allowed). Example: `[public.orders]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// Leave out these tables (`pg_dump --exclude-table`). Example: `[public.sessions]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_tables: Vec<String>,
    /// Dump these tables' definitions but not their rows
    /// (`pg_dump --exclude-table-data`). Example: `[public.event_log]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_table_data: Vec<String>,
    /// Extra `pg_dump` options, passed as given. Options that would change the
    /// output format or destination (`-F`, `-f`, `-Z`) are refused.
    /// Example: `[--no-owner, --no-privileges]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pg_dump_options: Vec<String>,
    /// Folder holding `pg_dump` and `pg_restore`, to match the server's major
    /// version. Default: the newest under `/usr/lib/postgresql/*/bin`, else `PATH`.
    /// Example: `/usr/lib/postgresql/16/bin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bin_dir: Option<PathBuf>,
}

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server insists.
    Allow,
    /// TLS if the server offers it.
    Prefer,
    /// TLS, without checking the certificate.
    Require,
    /// TLS, checking the certificate's issuer.
    VerifyCa,
    /// TLS, checking the certificate's issuer and host name.
    VerifyFull,
}

/// Connection to a MariaDB or MySQL database. Give either `url`, or the
/// separate fields; any text field may use `${env:NAME}` or `${file:/path}`
/// references, which are read when the backup runs and never logged. The
/// password reaches `mariadb-dump` and `mariadb` in a private option file
/// (`--defaults-extra-file`), never on their command line.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MysqlSpec {
    /// Connection URL `mysql://user:password@host:port/database` (or
    /// `mariadb://…`). Keep passwords out of it: use a reference for the
    /// whole URL, or the `password` field. Example: `${env:MYSQL_URL}` or
    /// `mysql://backup@db1:3306/app`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Server host name or IP address. `localhost` connects over the Unix
    /// socket. Default: `localhost`. Example: `db1.internal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Server TCP port. Default: 3306.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Unix socket of the server (with host `localhost`). Absolute path.
    /// Default: the client's (`/run/mysqld/mysqld.sock` on Debian).
    /// Example: `/run/mysqld/mysqld.sock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    /// User to connect as. Default: the client's (the system user's name).
    /// Example: `backup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Password, as a reference (plain text is accepted, with a warning).
    /// Example: `${env:MYSQL_PASSWORD}` or `${file:/run/secrets/mysql}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Database to dump. Required unless `url` names it. Example: `app`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Extra `mariadb-dump` options, passed as given after backup's own
    /// (`--single-transaction --routines --triggers --events --hex-blob`).
    /// Options that would change the output's shape or destination, or
    /// carry connection settings (`--result-file`, `--tab`, `--xml`,
    /// `--databases`, `--compact`, `--password`, `--host`, …) are refused.
    /// Example: `[--ignore-table=app.sessions]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mysqldump_options: Vec<String>,
    /// Folder holding `mariadb-dump` and `mariadb` (or `mysqldump` and
    /// `mysql`). Absolute path. Default: `PATH`. Example: `/opt/mariadb/bin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bin_dir: Option<PathBuf>,
}

/// An SQLite database file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SqliteSpec {
    /// Path of the database file. A relative path is relative to the folder of
    /// the policy file. Example: `/srv/app/app.db`.
    #[schemars(length(min = 1))]
    pub path: PathBuf,
}

/// When backups are due. `backup apply` takes a backup when a tick of this
/// schedule has passed since the newest backup, so a host that was down
/// catches up at its next run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ScheduleSpec {
    /// Standard 5-field crontab expression (minute hour day-of-month month
    /// day-of-week), or one of `@hourly`, `@daily`, `@weekly`, `@monthly`,
    /// `@yearly`. Quote it in YAML. Example: `"0 1 * * *"` (01:00 every day).
    #[schemars(example = &"0 1 * * *")]
    pub cron: String,
    /// IANA time zone the expression is read in, and in which retention's
    /// days, weeks, months and years are counted. Default: `UTC`. Example: `Europe/Berlin`.
    #[serde(default = "default_timezone")]
    pub timezone: String,
}

fn default_timezone() -> String {
    "UTC".to_owned()
}

/// How many backups to keep, with restic's meaning: `keep-last` keeps the N
/// newest; `keep-hourly`/`daily`/`weekly`/`monthly`/`yearly` keep the newest
/// backup of each of the N most recent hours/days/ISO weeks/months/years that
/// have one; `keep-within` keeps everything newer than the given duration. A
/// backup kept by any rule is kept. Periods are counted in the schedule's time zone.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RetentionSpec {
    /// Keep the N most recent backups. Example: `3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the last N hours that have one. Example: `24`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest backup of each of the last N days that have one. Example: `7`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the last N ISO weeks that have one. Example: `4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the last N months that have one. Example: `12`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest backup of each of the last N years that have one. Example: `5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    /// Keep every backup newer than this duration, counted back from the newest
    /// backup (restic's rule): a number and a unit, `y` years, `m` months, `d`
    /// days, `h` hours, combined. Example: `1y6m`, `14d`, `36h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+[ymdh])+$"))]
    pub keep_within: Option<String>,
}

/// One place backups are stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum DestinationSpec {
    /// A folder on this host (or a mounted file system).
    Local(LocalSpec),
    /// An S3 bucket: AWS, or any S3-compatible store (MinIO, Garage, Backblaze B2, Wasabi, R2).
    S3(S3Spec),
}

/// A folder on this host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LocalSpec {
    /// Root folder; backups go to `<path>/<policy name>/`. Created (mode 0700)
    /// if missing. A relative path is relative to the folder of the policy
    /// file. Example: `/var/backups`.
    #[schemars(length(min = 1))]
    pub path: PathBuf,
}

/// An S3 or S3-compatible bucket. Credentials come from the standard AWS chain
/// (environment, profile, instance role) unless given here as references.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct S3Spec {
    /// Bucket name. Example: `app-backups`.
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// Key prefix inside the bucket; backups go to `<prefix><policy name>/`.
    /// Default: none. Example: `prod/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Endpoint URL of an S3-compatible store; omit for AWS.
    /// Example: `https://s3.example.com` or `http://127.0.0.1:3900`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Region. Default: the AWS chain's, else `us-east-1`. Garage uses `garage`.
    /// Example: `eu-central-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Address buckets as `<endpoint>/<bucket>` instead of `<bucket>.<endpoint>`.
    /// MinIO, Garage and most self-hosted stores need `true`. Default: `false`.
    #[serde(default)]
    pub path_style: bool,
    /// Storage class for data objects. Example: `STANDARD_IA`. Default: the bucket's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Server-side encryption: `AES256` or `aws:kms`. Default: the bucket's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_side_encryption: Option<ServerSideEncryption>,
    /// KMS key id for `aws:kms` encryption. Example: `alias/backups`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// Access key id, as a reference. Default: the AWS chain. Example: `${env:BACKUP_S3_KEY_ID}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// Secret access key, as a reference (plain text is accepted, with a
    /// warning). Example: `${file:/run/secrets/s3-secret}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
    /// Session token for temporary credentials, as a reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
    /// When to send request checksums: `when-supported` (the SDK's default) or
    /// `when-required`, for stores that reject the SDK's CRC headers.
    /// Default: `when-supported`.
    #[serde(default)]
    pub request_checksum: RequestChecksum,
}

/// S3 server-side encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ServerSideEncryption {
    /// S3-managed keys.
    #[serde(rename = "AES256")]
    Aes256,
    /// AWS KMS keys.
    #[serde(rename = "aws:kms")]
    AwsKms,
}

/// When the S3 client sends request checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RequestChecksum {
    /// On every request that supports one (the AWS SDK's default).
    #[default]
    WhenSupported,
    /// Only where the operation requires one.
    WhenRequired,
}

/// How backup data is compressed. The stored file stays readable by stock tools.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum CompressionSpec {
    /// gzip, readable by `gunzip`. Compressed on every core; the output is one
    /// standard gzip stream.
    Gzip(GzipSpec),
    /// zstd, readable by `zstd -d`. Compressed on every core; the output is
    /// one standard zstd frame with a content checksum.
    Zstd(ZstdSpec),
    /// Stored as dumped (for data that is already compressed).
    None(NoCompressionSpec),
}

/// zstd settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ZstdSpec {
    /// Compression level from 1 (fastest) to 19 (smallest). Default: 3.
    #[serde(default = "default_zstd_level")]
    #[schemars(range(min = 1, max = 19))]
    pub level: i32,
}

fn default_zstd_level() -> i32 {
    3
}

/// No settings: `none: {}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoCompressionSpec {}

/// Client-side encryption.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum EncryptionSpec {
    /// age (age-encryption.org): the stored files decrypt with the stock
    /// `age -d -i KEY` command.
    Age(AgeSpec),
}

/// age settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AgeSpec {
    /// Public keys the backups are encrypted to: `age1…` (age-keygen) or SSH
    /// public keys (`ssh-ed25519 …`). Any one of the matching private keys
    /// decrypts; the host that backs up needs nothing else.
    /// Example: `[age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p]`.
    #[schemars(length(min = 1))]
    pub recipients: Vec<String>,
    /// Where restores, `verify --decrypt` and drills find the private key (an
    /// age identity file or an unencrypted SSH private key), as a reference:
    /// `${file:/etc/backup/age.key}` or `${env:BACKUP_AGE_IDENTITY}`.
    /// Optional: `--identity FILE` gives it on the command line instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

impl Default for CompressionSpec {
    fn default() -> Self {
        CompressionSpec::Gzip(GzipSpec::default())
    }
}

/// gzip settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GzipSpec {
    /// Compression level from 1 (fastest) to 9 (smallest). Default: 6.
    #[serde(default = "default_gzip_level")]
    #[schemars(range(min = 1, max = 9))]
    pub level: u32,
}

impl Default for GzipSpec {
    fn default() -> Self {
        GzipSpec {
            level: default_gzip_level(),
        }
    }
}

fn default_gzip_level() -> u32 {
    6
}

/// Notifications about backups of this policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NotifySpec {
    /// Events that notify: `failure`, `success`, `recovery` (first success
    /// after a failure), `critical` (health turned critical). Default: `[failure]`.
    #[serde(default = "default_events")]
    pub on: Vec<NotifyEvent>,
    /// POST a JSON message to this URL (Slack-compatible `text` field included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSpec>,
    /// Send an email over SMTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailSpec>,
    /// Dead-man pings in the healthchecks.io style: `<url>/start`, `<url>`, `<url>/fail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthchecks: Option<HealthchecksSpec>,
}

fn default_events() -> Vec<NotifyEvent> {
    vec![NotifyEvent::Failure]
}

/// An event that can notify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyEvent {
    /// A backup, copy, prune or restore failed.
    Failure,
    /// A backup succeeded.
    Success,
    /// The first success after a failure.
    Recovery,
    /// `backup status` found the policy critical (e.g. no fresh backup).
    Critical,
}

/// A webhook target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WebhookSpec {
    /// http(s) URL, usually a reference since it often holds a token.
    /// Example: `${env:ALERT_WEBHOOK}`.
    pub url: String,
    /// Extra HTTP headers; values may be references. Example: `{Authorization: "Bearer ${env:TOKEN}"}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// An email target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EmailSpec {
    /// Sender address. Example: `backup@db1.example.com`.
    pub from: String,
    /// Recipient addresses; at least one. Example: `[oncall@example.com]`.
    #[schemars(length(min = 1))]
    pub to: Vec<String>,
    /// SMTP server.
    pub smtp: SmtpSpec,
}

/// An SMTP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SmtpSpec {
    /// Host name. Example: `smtp.example.com`.
    pub host: String,
    /// Port. Default: 587 with `starttls`, 465 with `tls`, 25 with `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `starttls`, `tls` or `none`. Default: `starttls`.
    #[serde(default)]
    pub security: SmtpSecurity,
    /// User name, if the server wants one; may be a reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password, as a reference (plain text is accepted, with a warning).
    /// Example: `${env:SMTP_PASSWORD}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// Transport security for SMTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No encryption; only for a relay on the same host.
    None,
}

/// A healthchecks.io-style check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HealthchecksSpec {
    /// Ping URL of the check; may be a reference. Example: `https://hc-ping.com/${env:HC_UUID}`.
    pub url: String,
}

/// How `backup status` judges a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HealthSpec {
    /// The newest complete backup may be this old before the policy is
    /// overdue (warning); twice as old is critical. Same units as
    /// `keep-within` (`y` = 365 days, `m` = 30 days, `d`, `h`). Default: overdue
    /// when a schedule tick passed, plus a grace of a quarter of the
    /// schedule's interval (at least 10 minutes, at most 12 hours), without a
    /// backup; critical when two ticks passed. Example: `36h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+[ymdh])+$"), example = &"36h")]
    pub max_age: Option<String>,
    /// A floor of free space on each local destination's file system, as a
    /// share of it (`10%`) or a size (`20GiB`, `500MiB`); below it `status`
    /// warns even when the next backups still fit. Default: none; capacity is
    /// judged by the room left for the next backups only (fewer than three is
    /// a warning, not even one is critical).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^([0-9]+(\.[0-9]+)?%|[0-9]+(B|KiB|MiB|GiB|TiB))$"),
        example = &"10%"
    )]
    pub min_free: Option<String>,
}
