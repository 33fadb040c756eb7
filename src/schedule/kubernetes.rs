//! Kubernetes CronJob manifests rendered from the policies, for a GitOps
//! repository that Argo CD or Flux applies (`backup render kubernetes`).
//!
//! [`render`] turns policies and [`Settings`] into files: one CronJob per
//! schedule (a second one, `-base`, for `spec.physical`'s base backups), a
//! ConfigMap holding the policy files as written, and a `kustomization.yaml`
//! listing them. It reads the policy files (their text goes into the
//! ConfigMap) and nothing else: it never writes, never resolves a secret and
//! never talks to a cluster. Secrets stay references: `${env:NAME}` becomes a
//! `secretKeyRef` to key `NAME` of one Secret, `${file:/path}` a file of that
//! Secret mounted at exactly that path. What a pod could not reach (a local
//! path outside every configured volume, a Unix socket on this host) is an
//! error naming the policy, not a manifest that fails at 3 am.
//!
//! Output is deterministic (keys sorted, lists in a fixed order) so that a
//! plan's diff against the files in the folder shows only real changes. The
//! YAML is emitted from `serde_json` values by [`to_yaml`], which quotes
//! every string that a YAML 1.1 reader (PyYAML, `kubectl`'s go-yaml) could
//! take for anything else, and proves each document by parsing it back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value, json};

use super::{RenderedFile, Schedule};
use crate::policy::secret::{Part, Template, url_has_literal_password};
use crate::policy::spec::{DestinationSpec, EncryptionSpec, SourceSpec};
use crate::policy::{Policy, View};

/// How every rendered file begins; `plan` and `unschedule` recognise the
/// files they manage by this first line.
pub const MANAGED_PREFIX: &str = "# Managed by backup";
/// Where the pod finds the policies (the ConfigMap, read-only).
pub const POLICY_FOLDER: &str = "/etc/backup/policies";
/// The pod's state folder: an emptyDir, or the claim a volume at this path names.
pub const STATE_DIR: &str = "/var/lib/backup";
/// The ConfigMap holding the policy files.
pub const CONFIG_MAP: &str = "backup-policies";
/// The file listing the others for `kubectl apply -k`, Flux and Argo CD.
pub const KUSTOMIZATION: &str = "kustomization.yaml";
/// The image's CA certificates (Debian's ca-certificates): an `ssl-root-cert`
/// there needs no mount.
const CA_FOLDER: &str = "/etc/ssl/certs";
/// Kubernetes appends 11 characters to a CronJob's name for its Jobs, whose
/// names are at most 63.
const MAX_CRON_JOB_NAME: usize = 52;
/// A ConfigMap holds at most 1 MiB.
const MAX_CONFIG_MAP_BYTES: usize = 1024 * 1024;
/// Names of the volumes every pod has; no claim may take them.
const FIXED_VOLUMES: [&str; 4] = [
    "backup-policies",
    "backup-state",
    "backup-tmp",
    "backup-secret-files",
];

/// What the manifests need besides the policies (the `kubernetes` part of the
/// settings document).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The namespace every object is created in.
    pub namespace: String,
    /// The container image that runs `backup`.
    pub image: String,
    /// The Secret every `${env:NAME}` (key `NAME`) and `${file:/path}` (key:
    /// the file's name) reference is read from. Default: `backup-secrets`.
    pub secret: String,
    /// How late a missed run may still start, in seconds: after an outage
    /// one missed run starts, not one per missed tick. Default: 3600.
    pub starting_deadline_seconds: u32,
    /// Finished Jobs kept per CronJob. Defaults: 3 and 3.
    pub successful_jobs_history_limit: u32,
    pub failed_jobs_history_limit: u32,
    /// The container's resource requests and limits (`cpu: 100m`,
    /// `memory: 256Mi`). Default: none.
    pub resources: Resources,
    /// PersistentVolumeClaims mounted into the pods, by mount path: a
    /// `local` destination or an SQLite file must lie under one. A claim at
    /// [`STATE_DIR`] keeps the state folder (locks, drill evidence) between
    /// runs instead of an emptyDir. Default: none.
    pub volumes: BTreeMap<PathBuf, String>,
    /// The user and group the pod runs as (never root). Default: 10001, the
    /// `backup` user of `examples/Dockerfile`.
    pub run_as_user: u32,
    /// The pod's service account. Default: the namespace's default (its
    /// token is not mounted: `backup` never calls the Kubernetes API).
    pub service_account: Option<String>,
}

/// Container resource requests and limits, by resource name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resources {
    pub requests: BTreeMap<String, String>,
    pub limits: BTreeMap<String, String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            namespace: "default".to_owned(),
            image: format!("backup:{}", env!("CARGO_PKG_VERSION")),
            secret: "backup-secrets".to_owned(),
            starting_deadline_seconds: 3600,
            successful_jobs_history_limit: 3,
            failed_jobs_history_limit: 3,
            resources: Resources::default(),
            volumes: BTreeMap::new(),
            run_as_user: 10001,
            service_account: None,
        }
    }
}

/// Why manifests cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Unrepresentable(String),
    /// A setting Kubernetes would refuse.
    #[error("kubernetes settings: {0}")]
    Settings(String),
    /// Something a policy needs that a pod cannot have. `location` is the
    /// policy's name in its file (`policies/app.yaml:8:9`).
    #[error("{location}: policy `{policy}` cannot run in a Kubernetes pod: {reason}")]
    Policy {
        policy: String,
        location: String,
        reason: String,
    },
    #[error("cannot read policy file `{}` for the ConfigMap: {reason}", .file.display())]
    Read { file: PathBuf, reason: String },
}

/// Every manifest for `policies`, sorted by name: `configmap-backup-policies.yaml`,
/// `cronjob-backup-<policy>.yaml` (and `cronjob-backup-<policy>-base.yaml`
/// with `spec.physical`), and [`KUSTOMIZATION`]. No policies, no files.
pub fn render(policies: &[Policy], settings: &Settings) -> Result<Vec<RenderedFile>, Error> {
    check_settings(settings)?;
    // A physical view is the same policy: its schedule is rendered from `physical`.
    let mut policies: Vec<&Policy> = policies
        .iter()
        .filter(|policy| policy.view == View::Logical)
        .collect();
    if policies.is_empty() {
        return Ok(Vec::new());
    }
    policies.sort_by(|a, b| a.name.cmp(&b.name));
    let texts = policy_texts(&policies)?;
    let mut files = vec![config_map(&texts, settings)?];
    let mut secret_files: BTreeMap<String, (PathBuf, &str)> = BTreeMap::new();
    let mut names: BTreeMap<String, &str> = BTreeMap::new();
    for policy in policies.iter().copied() {
        let needs = Needs::of(policy, settings, &mut secret_files)?;
        for job in Job::all(policy) {
            let name = format!("backup-{}{}", policy.name, job.suffix);
            if name.len() > MAX_CRON_JOB_NAME {
                return Err(policy_error(
                    policy,
                    format!(
                        "its CronJob's name `{name}` is longer than {MAX_CRON_JOB_NAME} characters, Kubernetes' limit; shorten the policy's name"
                    ),
                ));
            }
            if let Some(other) = names.insert(name.clone(), &policy.name) {
                return Err(policy_error(
                    policy,
                    format!("its CronJob `{name}` is also policy `{other}`'s; rename one of them"),
                ));
            }
            files.push(cron_job(policy, &name, &job, &needs, settings)?);
        }
    }
    files.push(kustomization(&files, &policies)?);
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// Checks a namespace name: a DNS-1123 label.
pub fn check_namespace(name: &str) -> Result<(), String> {
    if is_dns_label(name) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a Kubernetes namespace name: 1 to 63 lowercase letters, digits or `-`, starting and ending with a letter or digit"
        ))
    }
}

/// Checks a container image reference: not empty, no whitespace or control
/// characters (`registry.example.com/backup:0.1.0`).
pub fn check_image(image: &str) -> Result<(), String> {
    if image.is_empty() {
        return Err(
            "the container image is empty; name one, e.g. `registry.example.com/backup:0.1.0`"
                .to_owned(),
        );
    }
    if let Some(character) = image
        .chars()
        .find(|character| character.is_whitespace() || character.is_control())
    {
        return Err(format!(
            "the container image `{}` holds {character:?}; an image reference has no whitespace",
            image.escape_debug()
        ));
    }
    Ok(())
}

/// The schedule as a CronJob's `spec.schedule`. Kubernetes reads 5 fields,
/// month and weekday names and the `@daily`-style nicknames as crontab
/// does, with two differences handled here: nicknames only in lowercase,
/// and weekdays 0-6 only (crontab's `7` for Sunday is written `0`).
pub fn kubernetes_schedule(expression: &str) -> String {
    let trimmed = expression.trim();
    if trimmed.starts_with('@') {
        return trimmed.to_ascii_lowercase();
    }
    let fields: Vec<&str> = trimmed.split_whitespace().collect();
    let Some((weekdays, rest)) = fields.split_last() else {
        return trimmed.to_owned();
    };
    let weekdays: Vec<String> = weekdays.split(',').map(weekday_item).collect();
    format!("{} {}", rest.join(" "), weekdays.join(","))
}

/// One item of a weekday field with `7` (Sunday) written without it: `7` →
/// `0`, `5-7` → `0,5,6`. Items without a `7` are left as they are.
fn weekday_item(item: &str) -> String {
    let (range, step) = item.split_once('/').map_or((item, None), |(range, step)| {
        (range, step.parse::<usize>().ok())
    });
    let bounds: Vec<&str> = range.split('-').collect();
    if !bounds.contains(&"7") {
        return item.to_owned();
    }
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let number = |text: &str| {
        text.parse::<usize>()
            .ok()
            .or_else(|| DAYS.iter().position(|day| day.eq_ignore_ascii_case(text)))
    };
    let (start, end) = match bounds.as_slice() {
        [single] => (number(single), number(single)),
        [start, end] => (number(start), number(end)),
        _ => (None, None),
    };
    let (Some(start), Some(end)) = (start, end) else {
        return item.to_owned();
    };
    let days: BTreeSet<usize> = (start..=end)
        .step_by(step.unwrap_or(1).max(1))
        .map(|day| day % 7)
        .collect();
    let days: Vec<String> = days.iter().map(ToString::to_string).collect();
    days.join(",")
}

// --- What one policy needs in its pod --------------------------------------------

/// One CronJob of a policy: its backups' schedule, or its base backups'.
struct Job<'a> {
    schedule: &'a Schedule,
    /// After `backup-<policy>` in the CronJob's name.
    suffix: &'static str,
    /// For the file's comment: the schedule's field.
    what: &'static str,
}

impl<'a> Job<'a> {
    fn all(policy: &'a Policy) -> Vec<Job<'a>> {
        let mut jobs = vec![Job {
            schedule: &policy.schedule,
            suffix: "",
            what: "spec.schedule",
        }];
        if let Some(physical) = &policy.physical {
            jobs.push(Job {
                schedule: &physical.schedule,
                suffix: "-base",
                what: "spec.physical.schedule",
            });
        }
        jobs
    }
}

/// The Secret's keys and the claims one policy's pod mounts.
struct Needs {
    /// `${env:NAME}` references: environment variables from the Secret's key `NAME`.
    env: BTreeSet<String>,
    /// Files from the Secret: mount path → key.
    files: BTreeMap<PathBuf, String>,
    /// Configured volumes the pod mounts: mount path → claim.
    claims: BTreeMap<PathBuf, String>,
}

impl Needs {
    /// `secret_files` holds every policy's file keys so far (key → path and
    /// policy): one Secret serves them all, so one key is one file.
    fn of<'a>(
        policy: &'a Policy,
        settings: &Settings,
        secret_files: &mut BTreeMap<String, (PathBuf, &'a str)>,
    ) -> Result<Needs, Error> {
        if let Some(field) = literal_secret(policy) {
            return Err(policy_error(
                policy,
                format!(
                    "`{field}` holds its secret as text, which would go into the ConfigMap as it is; write it as a reference (`${{env:NAME}}` or `${{file:/path}}`), which the pod reads from Secret `{}`",
                    settings.secret
                ),
            ));
        }
        let mut needs = Needs {
            env: BTreeSet::new(),
            files: BTreeMap::new(),
            claims: BTreeMap::new(),
        };
        if let Some(claim) = settings.volumes.get(Path::new(STATE_DIR)) {
            needs.claims.insert(PathBuf::from(STATE_DIR), claim.clone());
        }
        let mut file_paths = Vec::new();
        for part in references(policy) {
            match part {
                Part::Env(name) => {
                    needs.env.insert(name);
                }
                Part::File(path) => file_paths.push(path),
                Part::Literal(_) => {}
            }
        }
        let mut on_volumes: Vec<(String, PathBuf)> = Vec::new();
        match &policy.source {
            SourceSpec::Sqlite(sqlite) => {
                on_volumes.push(("the SQLite file".to_owned(), sqlite.path.clone()));
            }
            SourceSpec::Postgres(postgres) => {
                if let Some(host) = postgres
                    .host
                    .as_deref()
                    .filter(|host| host.starts_with('/'))
                {
                    on_volumes.push(("the PostgreSQL socket folder".to_owned(), host.into()));
                }
                if let Some(certificate) = &postgres.ssl_root_cert
                    && !normalized(certificate).starts_with(CA_FOLDER)
                {
                    if mount_of(certificate, settings).is_some() {
                        on_volumes.push(("the CA file".to_owned(), certificate.clone()));
                    } else {
                        file_paths.push(certificate.clone());
                    }
                }
            }
            SourceSpec::Mysql(mysql) => {
                if let Some(socket) = &mysql.socket {
                    on_volumes.push(("the MariaDB socket".to_owned(), socket.clone()));
                }
            }
        }
        for destination in &policy.destinations {
            if let DestinationSpec::Local(local) = destination {
                on_volumes.push(("the local destination".to_owned(), local.path.clone()));
            }
        }
        for (what, path) in on_volumes {
            let Some((mount, claim)) = mount_of(&path, settings) else {
                return Err(policy_error(
                    policy,
                    format!(
                        "{what} `{}` is on no volume the pod mounts; map a PersistentVolumeClaim to a folder holding it in the kubernetes settings' `volumes` (a relative path in a policy is relative to its file's folder here, not in the pod), or use an s3 destination",
                        path.display()
                    ),
                ));
            };
            needs.claims.insert(mount, claim);
        }
        for path in file_paths {
            let path = normalized(&path);
            if path.starts_with(POLICY_FOLDER)
                || [STATE_DIR, "/tmp", "/"]
                    .iter()
                    .any(|folder| path.as_path() == Path::new(folder))
            {
                return Err(policy_error(
                    policy,
                    format!(
                        "the secret file `{}` would be mounted over the pod's own folders ({POLICY_FOLDER}, {STATE_DIR}, /tmp); keep secret files elsewhere, e.g. under /run/secrets",
                        path.display()
                    ),
                ));
            }
            let key = secret_key(&path);
            match secret_files.get(&key) {
                Some((other, _)) if *other == path => {}
                Some((other, owner)) => {
                    return Err(policy_error(
                        policy,
                        format!(
                            "the secret files `{}` and `{}` (policy `{owner}`) would both be key `{key}` of Secret `{}`; give them different file names",
                            path.display(),
                            other.display(),
                            settings.secret
                        ),
                    ));
                }
                None => {
                    secret_files.insert(key.clone(), (path.clone(), &policy.name));
                }
            }
            needs.files.insert(path, key);
        }
        Ok(needs)
    }
}

/// The first field that holds a secret as text rather than as a reference
/// (loading accepts that with a warning; a ConfigMap is no place for it).
fn literal_secret(policy: &Policy) -> Option<&'static str> {
    let literal = |value: &Option<String>| {
        value.as_deref().is_some_and(|text| {
            !text.is_empty()
                && Template::parse(text).is_ok_and(|template| template.has_literal_text())
        })
    };
    let url = |value: &Option<String>| value.as_deref().is_some_and(url_has_literal_password);
    match &policy.source {
        SourceSpec::Postgres(postgres) if literal(&postgres.password) => {
            return Some("spec.source.postgres.password");
        }
        SourceSpec::Postgres(postgres) if url(&postgres.url) => {
            return Some("spec.source.postgres.url");
        }
        SourceSpec::Mysql(mysql) if literal(&mysql.password) => {
            return Some("spec.source.mysql.password");
        }
        SourceSpec::Mysql(mysql) if url(&mysql.url) => return Some("spec.source.mysql.url"),
        _ => {}
    }
    for destination in &policy.destinations {
        if let DestinationSpec::S3(s3) = destination {
            if literal(&s3.secret_access_key) {
                return Some("spec.destinations[].s3.secret-access-key");
            }
            if literal(&s3.session_token) {
                return Some("spec.destinations[].s3.session-token");
            }
        }
    }
    if let Some(EncryptionSpec::Age(age)) = &policy.encryption
        && literal(&age.identity)
    {
        return Some("spec.encryption.age.identity");
    }
    let smtp_password = policy
        .notify
        .as_ref()
        .and_then(|notify| notify.email.as_ref())
        .and_then(|email| email.smtp.password.clone());
    literal(&smtp_password).then_some("spec.notify.email.smtp.password")
}

/// Every `${env:…}` and `${file:…}` reference of the policy's source,
/// destinations, encryption and notifications. Loading refuses references
/// in any field that does not take them, so every string is looked at.
fn references(policy: &Policy) -> Vec<Part> {
    let mut strings = Vec::new();
    let parts = [
        serde_json::to_value(&policy.source),
        serde_json::to_value(&policy.destinations),
        serde_json::to_value(&policy.encryption),
        serde_json::to_value(&policy.notify),
    ];
    for part in parts.into_iter().flatten() {
        collect_strings(&part, &mut strings);
    }
    strings
        .iter()
        .filter_map(|text| Template::parse(text).ok())
        .flat_map(|template| template.references().cloned().collect::<Vec<_>>())
        .collect()
}

fn collect_strings(value: &Value, strings: &mut Vec<String>) {
    match value {
        Value::String(text) => strings.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|item| collect_strings(item, strings)),
        Value::Object(entries) => entries
            .values()
            .for_each(|item| collect_strings(item, strings)),
        _ => {}
    }
}

/// The configured volume whose mount path holds `path` (the deepest one).
fn mount_of(path: &Path, settings: &Settings) -> Option<(PathBuf, String)> {
    let path = normalized(path);
    settings
        .volumes
        .iter()
        .filter(|(mount, _)| path.starts_with(normalized(mount)))
        .max_by_key(|(mount, _)| mount.components().count())
        .map(|(mount, claim)| (normalized(mount), claim.clone()))
}

/// `path` with `.` and `..` worked out (`/a/./b/../c` → `/a/c`), as the pod
/// would reach it.
fn normalized(path: &Path) -> PathBuf {
    let mut result = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                result.pop();
            }
            Component::CurDir => {}
            other => result.push(other),
        }
    }
    result
}

/// The Secret key a `${file:/path}` reference is read from: the file's name,
/// with any character a key cannot hold as `-` (`/run/secrets/s3 key` →
/// `s3-key`).
pub fn secret_key(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let key: String = name
        .chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() || matches!(character, '-' | '_' | '.') {
                character
            } else {
                '-'
            }
        })
        .collect();
    if key.is_empty() || key == "." || key == ".." {
        "file".to_owned()
    } else {
        key
    }
}

fn policy_error(policy: &Policy, reason: String) -> Error {
    Error::Policy {
        policy: policy.name.clone(),
        location: format!(
            "{}:{}:{}",
            policy.file.display(),
            policy.name_span.start.line,
            policy.name_span.start.column
        ),
        reason,
    }
}

// --- Settings -----------------------------------------------------------------------

fn check_settings(settings: &Settings) -> Result<(), Error> {
    let fail = |reason: String| Err(Error::Settings(reason));
    check_namespace(&settings.namespace).or_else(fail)?;
    check_image(&settings.image).or_else(fail)?;
    if !is_dns_subdomain(&settings.secret) {
        return fail(format!(
            "`{}` is not a Secret name: lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit",
            settings.secret
        ));
    }
    if let Some(account) = &settings.service_account
        && !is_dns_subdomain(account)
    {
        return fail(format!("`{account}` is not a service account name"));
    }
    if settings.starting_deadline_seconds < 10 {
        return fail(format!(
            "a starting deadline of {} s is under 10 s, so the CronJob controller (which looks every 10 s) may never start a run",
            settings.starting_deadline_seconds
        ));
    }
    for (path, claim) in &settings.volumes {
        let mount = normalized(path);
        if !path.is_absolute() {
            return fail(format!(
                "the volume path `{}` is not absolute",
                path.display()
            ));
        }
        if mount.starts_with(POLICY_FOLDER)
            || Path::new(POLICY_FOLDER).starts_with(&mount)
            || mount == Path::new("/tmp")
            || mount == Path::new("/")
        {
            return fail(format!(
                "the volume path `{}` would hide the pod's {POLICY_FOLDER} or /tmp",
                path.display()
            ));
        }
        if !is_dns_label(claim) || FIXED_VOLUMES.contains(&claim.as_str()) {
            return fail(format!(
                "`{claim}` (for `{}`) is not a claim name this renderer takes: 1 to 63 lowercase letters, digits or `-`, and none of {}",
                path.display(),
                FIXED_VOLUMES.join(", ")
            ));
        }
    }
    for (name, quantity) in settings
        .resources
        .requests
        .iter()
        .chain(&settings.resources.limits)
    {
        if name.is_empty()
            || quantity.is_empty()
            || format!("{name}{quantity}").contains(char::is_whitespace)
        {
            return fail(format!(
                "the resource `{name}: {quantity}` is not a Kubernetes quantity (`cpu: 100m`, `memory: 256Mi`)"
            ));
        }
    }
    Ok(())
}

fn is_dns_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn is_dns_subdomain(name: &str) -> bool {
    (1..=253).contains(&name.len()) && name.split('.').all(is_dns_label)
}

// --- The manifests ------------------------------------------------------------------

/// A path as a comment can hold it (a control character as `?`).
fn comment_safe(path: &Path) -> String {
    path.display()
        .to_string()
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The first line of every file.
fn header(files: &[&Path]) -> String {
    let mut named: Vec<String> = files.iter().map(|file| comment_safe(file)).collect();
    named.dedup();
    format!(
        "{MANAGED_PREFIX}: rendered from {}; edit the policy, not this file.\n",
        named.join(", ")
    )
}

fn labels(policy: Option<&Policy>) -> Value {
    let mut labels = json!({
        "app.kubernetes.io/name": "backup",
        "app.kubernetes.io/managed-by": "backup",
    });
    if let Some(policy) = policy {
        labels["backup/policy"] = json!(policy.name);
    }
    labels
}

/// Each policy file's key in the ConfigMap (its file name) with its path and text.
fn policy_texts(policies: &[&Policy]) -> Result<BTreeMap<String, (PathBuf, String)>, Error> {
    let mut texts: BTreeMap<String, (PathBuf, String)> = BTreeMap::new();
    for policy in policies {
        let key = secret_key(&policy.file);
        // The pod reads the folder as `backup` reads any: *.yaml and *.yml, not hidden.
        if key.starts_with('.') || !(key.ends_with(".yaml") || key.ends_with(".yml")) {
            return Err(policy_error(
                policy,
                format!(
                    "its file would be `{POLICY_FOLDER}/{key}` in the pod, which `backup` does not read from a folder (only *.yaml and *.yml files, not hidden ones); rename the file"
                ),
            ));
        }
        if let Some((file, _)) = texts.get(&key) {
            if same_file(file, &policy.file) {
                continue;
            }
            return Err(policy_error(
                policy,
                format!(
                    "its file and `{}` would both be `{POLICY_FOLDER}/{key}` in the pod; give policy files distinct names",
                    file.display()
                ),
            ));
        }
        let read_error = |reason: String| Error::Read {
            file: policy.file.clone(),
            reason,
        };
        let bytes = crate::bounded::read_file(&policy.file, crate::policy::MAX_FILE_BYTES)
            .map_err(|error| read_error(error.to_string()))?;
        let text =
            String::from_utf8(bytes).map_err(|_| read_error("it is not UTF-8 text".to_owned()))?;
        texts.insert(key, (policy.file.clone(), text));
    }
    Ok(texts)
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(a), Ok(b)) if a == b
        )
}

fn config_map(
    texts: &BTreeMap<String, (PathBuf, String)>,
    settings: &Settings,
) -> Result<RenderedFile, Error> {
    let size: usize = texts
        .iter()
        .map(|(key, (_, text))| key.len() + text.len())
        .sum();
    if size > MAX_CONFIG_MAP_BYTES {
        return Err(Error::Unrepresentable(format!(
            "the policy files come to {size} bytes, more than a ConfigMap holds (1 MiB)"
        )));
    }
    let data: Map<String, Value> = texts
        .iter()
        .map(|(key, (_, text))| (key.clone(), json!(text)))
        .collect();
    let manifest = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": CONFIG_MAP,
            "namespace": settings.namespace,
            "labels": labels(None),
        },
        "data": data,
    });
    let files: Vec<&Path> = texts.values().map(|(file, _)| file.as_path()).collect();
    Ok(RenderedFile {
        name: format!("configmap-{CONFIG_MAP}.yaml"),
        text: format!("{}{}", header(&files), to_yaml(&manifest)?),
    })
}

fn cron_job(
    policy: &Policy,
    name: &str,
    job: &Job,
    needs: &Needs,
    settings: &Settings,
) -> Result<RenderedFile, Error> {
    let env: Vec<Value> = needs
        .env
        .iter()
        .map(|variable| {
            json!({
                "name": variable,
                "valueFrom": {"secretKeyRef": {"name": settings.secret, "key": variable}},
            })
        })
        .collect();
    let mut mounts = vec![
        json!({"name": "backup-policies", "mountPath": POLICY_FOLDER, "readOnly": true}),
        json!({"name": "backup-tmp", "mountPath": "/tmp"}),
    ];
    let mut volumes = vec![
        json!({"name": "backup-policies", "configMap": {"name": CONFIG_MAP}}),
        json!({"name": "backup-tmp", "emptyDir": {}}),
    ];
    if !needs.claims.contains_key(Path::new(STATE_DIR)) {
        mounts.push(json!({"name": "backup-state", "mountPath": STATE_DIR}));
        volumes.push(json!({"name": "backup-state", "emptyDir": {}}));
    }
    let mut claims = BTreeSet::new();
    for (mount, claim) in &needs.claims {
        mounts.push(json!({"name": claim, "mountPath": mount}));
        if claims.insert(claim) {
            volumes.push(json!({"name": claim, "persistentVolumeClaim": {"claimName": claim}}));
        }
    }
    if !needs.files.is_empty() {
        let keys: BTreeSet<&String> = needs.files.values().collect();
        let items: Vec<Value> = keys
            .iter()
            .map(|key| json!({"key": key, "path": key}))
            .collect();
        volumes.push(json!({
            "name": "backup-secret-files",
            // 0440: the pod's group (fsGroup) reads them.
            "secret": {"secretName": settings.secret, "items": items, "defaultMode": 0o440},
        }));
        for (path, key) in &needs.files {
            mounts.push(json!({
                "name": "backup-secret-files",
                "mountPath": path,
                "subPath": key,
                "readOnly": true,
            }));
        }
    }
    mounts.sort_by(|a, b| a["mountPath"].as_str().cmp(&b["mountPath"].as_str()));
    volumes.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let mut container = json!({
        "name": "backup",
        "image": settings.image,
        "command": ["backup"],
        "args": [
            "--policies", POLICY_FOLDER,
            "--state-dir", STATE_DIR,
            "apply", "--policy", policy.name,
            "--auto-approve", "--no-crontab",
        ],
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    });
    if !env.is_empty() {
        container["env"] = json!(env);
    }
    let mut resources = Map::new();
    for (field, values) in [
        ("requests", &settings.resources.requests),
        ("limits", &settings.resources.limits),
    ] {
        if !values.is_empty() {
            resources.insert(field.to_owned(), json!(values));
        }
    }
    if !resources.is_empty() {
        container["resources"] = Value::Object(resources);
    }
    let user = settings.run_as_user;
    let mut pod = json!({
        "restartPolicy": "Never",
        // backup never calls the Kubernetes API.
        "automountServiceAccountToken": false,
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": user,
            "runAsGroup": user,
            "fsGroup": user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    });
    if let Some(account) = &settings.service_account {
        pod["serviceAccountName"] = json!(account);
    }
    let labels = labels(Some(policy));
    let manifest = json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": settings.namespace, "labels": labels},
        "spec": {
            "schedule": kubernetes_schedule(job.schedule.expression()),
            "timeZone": job.schedule.timezone().name(),
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": settings.starting_deadline_seconds,
            "successfulJobsHistoryLimit": settings.successful_jobs_history_limit,
            "failedJobsHistoryLimit": settings.failed_jobs_history_limit,
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": {
                    // `backup apply` retries what is safe to retry itself.
                    "backoffLimit": 0,
                    "template": {"metadata": {"labels": labels}, "spec": pod},
                },
            },
        },
    });
    let mut text = header(&[&policy.file]);
    text.push_str(&format!(
        "# Starts `backup apply --policy {}` at the ticks of {} (`{}`, {}); apply decides what is due.\n",
        policy.name,
        job.what,
        job.schedule.expression(),
        job.schedule.timezone()
    ));
    text.push_str(&secret_comment(needs, settings));
    text.push_str(&to_yaml(&manifest)?);
    Ok(RenderedFile {
        name: format!("cronjob-{name}.yaml"),
        text,
    })
}

/// Comment lines naming the Secret's keys the pod reads, and how to create it.
fn secret_comment(needs: &Needs, settings: &Settings) -> String {
    if needs.env.is_empty() && needs.files.is_empty() {
        return "# Reads no Secret.\n".to_owned();
    }
    let mut text = format!(
        "# Reads Secret `{}` in namespace `{}` (not rendered: create it yourself, e.g. with sealed-secrets or External Secrets), keys:\n",
        settings.secret, settings.namespace
    );
    let mut example = format!(
        "#   kubectl -n {} create secret generic {}",
        settings.namespace, settings.secret
    );
    for variable in &needs.env {
        text.push_str(&format!(
            "#   {variable}: environment variable {variable}\n"
        ));
        example.push_str(&format!(" --from-literal={variable}=…"));
    }
    let files: BTreeMap<&String, &PathBuf> =
        needs.files.iter().map(|(path, key)| (key, path)).collect();
    for (key, path) in files {
        text.push_str(&format!("#   {key}: the file {}\n", comment_safe(path)));
        example.push_str(&format!(" --from-file={key}=…"));
    }
    text.push_str("# For example:\n");
    text.push_str(&example);
    text.push('\n');
    text
}

fn kustomization(files: &[RenderedFile], policies: &[&Policy]) -> Result<RenderedFile, Error> {
    let mut resources: Vec<&str> = files.iter().map(|file| file.name.as_str()).collect();
    resources.sort_unstable();
    let manifest = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
    });
    let mut sources: Vec<&Path> = policies
        .iter()
        .map(|policy| policy.file.as_path())
        .collect();
    sources.sort();
    Ok(RenderedFile {
        name: KUSTOMIZATION.to_owned(),
        text: format!("{}{}", header(&sources), to_yaml(&manifest)?),
    })
}

// --- YAML ---------------------------------------------------------------------------

/// `value` (a mapping) as a YAML document: block style, keys sorted, lists in
/// their order, multi-line strings as literal blocks, and every string a YAML
/// 1.1 or 1.2 reader could take for something else (`yes`, `on`, `3600`,
/// `0o17`, `1:30`, `~`) double-quoted. The text is parsed back with the
/// project's YAML reader and must give `value` again.
pub fn to_yaml(value: &Value) -> Result<String, Error> {
    let Value::Object(entries) = value else {
        return Err(Error::Unrepresentable("a manifest is a mapping".to_owned()));
    };
    let mut text = String::new();
    emit_entries(entries, 0, &mut text);
    let parsed = crate::policy::yaml::parse(&text).ok();
    let round_trips = parsed.as_deref().is_some_and(|documents| match documents {
        [document] => {
            document.issues.is_empty()
                && document
                    .root
                    .as_ref()
                    .map(crate::policy::yaml::Node::to_json)
                    .as_ref()
                    == Some(value)
        }
        _ => false,
    });
    if round_trips {
        Ok(text)
    } else {
        Err(Error::Unrepresentable(
            "the rendered YAML does not read back as what was rendered (a bug in backup; please report it)".to_owned(),
        ))
    }
}

fn emit_entries(entries: &Map<String, Value>, indent: usize, out: &mut String) {
    let mut sorted: Vec<(&String, &Value)> = entries.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    for (key, value) in sorted {
        emit_node(&format!("{}:", scalar_text(key)), value, indent, out);
    }
}

/// One mapping entry or list item: `lead` is `key:` or `-`, at `indent`.
fn emit_node(lead: &str, value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(entries) if !entries.is_empty() => {
            if lead == "-" {
                // `- key: value`, the item's other keys under its first.
                let mut item = String::new();
                emit_entries(entries, indent + 2, &mut item);
                out.push_str(&pad);
                out.push_str("- ");
                out.push_str(&item[indent + 2..]);
            } else {
                out.push_str(&format!("{pad}{lead}\n"));
                emit_entries(entries, indent + 2, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            out.push_str(&format!("{pad}{lead}\n"));
            for item in items {
                emit_node("-", item, indent + 2, out);
            }
        }
        Value::Object(_) => out.push_str(&format!("{pad}{lead} {{}}\n")),
        Value::Array(_) => out.push_str(&format!("{pad}{lead} []\n")),
        Value::String(text) if text.contains('\n') && lead != "-" => {
            match literal_block(text, indent) {
                Some(block) => out.push_str(&format!("{pad}{lead} {block}")),
                None => out.push_str(&format!("{pad}{lead} {}\n", quoted(text))),
            }
        }
        Value::String(text) => out.push_str(&format!("{pad}{lead} {}\n", scalar_text(text))),
        Value::Null => out.push_str(&format!("{pad}{lead} null\n")),
        Value::Bool(value) => out.push_str(&format!("{pad}{lead} {value}\n")),
        Value::Number(number) => out.push_str(&format!("{pad}{lead} {number}\n")),
    }
}

/// `text` as it stands in YAML: plain when it can only be read as this
/// string, else double-quoted.
fn scalar_text(text: &str) -> String {
    /// Words YAML 1.1 readers take for booleans or null.
    const WORDS: [&str; 9] = ["y", "n", "yes", "no", "on", "off", "true", "false", "null"];
    let plain = text
        .chars()
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '/')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && !WORDS.contains(&text.to_ascii_lowercase().as_str());
    if plain { text.to_owned() } else { quoted(text) }
}

/// A double-quoted YAML scalar: JSON's escapes, which YAML shares, and
/// `\u` for everything YAML does not print as it is or reads as a line break.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control()
                || matches!(
                    c,
                    '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
                ) =>
            {
                out.push_str(&format!("\\u{:04X}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `text` as a literal block (`|`, its lines two spaces in from its key at
/// `indent`), header line included, if it reads back as exactly `text`; else
/// None (then it is double-quoted).
fn literal_block(text: &str, indent: usize) -> Option<String> {
    if text.chars().any(|c| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{85}')
    }) {
        return None;
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    let chomping = if !text.ends_with('\n') {
        "-"
    } else if body.ends_with('\n') || body.is_empty() {
        "+"
    } else {
        ""
    };
    let pad = " ".repeat(indent + 2);
    let mut lines = String::new();
    for line in body.split('\n') {
        if line.is_empty() {
            lines.push('\n');
        } else {
            lines.push_str(&format!("{pad}{line}\n"));
        }
    }
    // An explicit indentation when the first line that is not empty starts with a space.
    for indicator in ["", "2"] {
        let block = format!("|{indicator}{chomping}\n{lines}");
        let probe = format!("{}key: {block}", " ".repeat(indent));
        let reads_back = crate::policy::yaml::parse(&probe)
            .ok()
            .is_some_and(|documents| {
                documents
                    .first()
                    .and_then(|document| document.root.as_ref())
                    .and_then(|root| root.get("key"))
                    .map(|node| &node.value)
                    == Some(&crate::policy::yaml::Value::String(text.to_owned()))
            });
        if reads_back {
            return Some(block);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_written_as_kubernetes_reads_them() {
        for (expression, written) in [
            ("0 1 * * *", "0 1 * * *"),
            ("*/15 * * * *", "*/15 * * * *"),
            ("30 2 1-7 * mon", "30 2 1-7 * mon"),
            ("0 0 1 jan,jul *", "0 0 1 jan,jul *"),
            ("  0 1 * * *  ", "0 1 * * *"),
            // Nicknames only in lowercase; @midnight and @annually are known.
            ("@HOURLY", "@hourly"),
            ("@midnight", "@midnight"),
            ("@Annually", "@annually"),
            // Weekdays 0-6 only: crontab's 7 is Sunday, 0.
            ("0 3 * * 7", "0 3 * * 0"),
            ("0 3 * * 5-7", "0 3 * * 0,5,6"),
            ("0 3 * * 1,7", "0 3 * * 1,0"),
            ("0 3 * * 0-7/2", "0 3 * * 0,2,4,6"),
            ("0 3 * * fri-7", "0 3 * * 0,5,6"),
            ("0 3 * * 0-6", "0 3 * * 0-6"),
        ] {
            Schedule::parse(expression, "UTC").unwrap();
            assert_eq!(kubernetes_schedule(expression), written, "{expression}");
        }
    }

    #[test]
    fn strings_that_read_as_something_else_are_quoted() {
        for (text, written) in [
            ("backup", "backup"),
            ("/var/lib/backup", "/var/lib/backup"),
            ("app.kubernetes.io/name", "app.kubernetes.io/name"),
            // YAML 1.1 booleans and null, which kubectl's and PyYAML's readers take.
            ("ON", "\"ON\""),
            ("yes", "\"yes\""),
            ("N", "\"N\""),
            ("Null", "\"Null\""),
            ("3600", "\"3600\""),
            ("0o17", "\"0o17\""),
            ("1:30", "\"1:30\""),
            ("~", "\"~\""),
            (".inf", "\".inf\""),
            ("--policies", "\"--policies\""),
            ("", "\"\""),
            (
                "a \"quote\" \\ and\ta tab",
                "\"a \\\"quote\\\" \\\\ and\\ta tab\"",
            ),
            (
                "line\u{2028}separator\u{7f}",
                "\"line\\u2028separator\\u007F\"",
            ),
        ] {
            assert_eq!(scalar_text(text), written, "{text:?}");
            to_yaml(&json!({ "key": text, text: 1 })).unwrap();
        }
    }

    #[test]
    fn multi_line_text_is_a_literal_block_when_it_reads_back_exactly() {
        for (text, header) in [
            ("a: 1\nb: 2\n", Some("|\n")),
            ("no newline at the end\nx", Some("|-\n")),
            ("two newlines\n\n", Some("|+\n")),
            ("  indented first line\nx\n", Some("|2\n")),
            ("\n\n  blank lines first\n", Some("|2\n")),
            ("trailing spaces   \n\tand a tab\n", Some("|\n")),
            // Carriage returns and BOMs do not survive a block: quoted instead.
            ("crlf\r\nlines\r\n", None),
            ("\u{feff}bom\n", None),
        ] {
            let yaml = to_yaml(&json!({ "data": { "file.yaml": text } })).unwrap();
            match header {
                Some(header) => assert!(
                    yaml.starts_with(&format!("data:\n  file.yaml: {header}")),
                    "{text:?}: {yaml}"
                ),
                None => assert!(yaml.contains("file.yaml: \""), "{text:?}: {yaml}"),
            }
        }
    }

    #[test]
    fn documents_nest_lists_and_mappings_and_sort_keys() {
        let yaml = to_yaml(&json!({
            "b": [{"name": "x", "a": [1, "two"], "e": {}}, "plain", [], {"only": true}],
            "a": {"z": null, "y": false},
        }))
        .unwrap();
        assert_eq!(
            yaml,
            "a:\n  \"y\": false\n  z: null\nb:\n  - a:\n      - 1\n      - two\n    e: {}\n    name: x\n  - plain\n  - []\n  - only: true\n"
        );
    }

    #[test]
    fn names_and_images_are_checked() {
        check_namespace("backups").unwrap();
        for bad in ["", "Backups", "-x", "x-", "a.b", &"x".repeat(64)] {
            assert!(check_namespace(bad).is_err(), "{bad:?}");
        }
        check_image("registry.example.com:5000/backup@sha256:abc").unwrap();
        for bad in ["", "backup latest", "backup\n", "backup\t:1"] {
            assert!(check_image(bad).is_err(), "{bad:?}");
        }
        assert_eq!(secret_key(Path::new("/run/secrets/s3 key")), "s3-key");
        assert_eq!(secret_key(Path::new("/etc/backup/age.key")), "age.key");
        assert_eq!(secret_key(Path::new("/")), "file");
    }
}
