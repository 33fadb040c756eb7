//! Meaning checks on a policy that already has the right shape: cron parses,
//! the time zone exists, retention keeps something, connection settings make
//! sense, references are well formed and set, secrets are not written inline.
//!
//! Produces the resolved [`Policy`] and diagnostics pointing into the YAML.
//! Reads the environment (to warn about unset references) and, when asked, the
//! file system (to check local destinations); writes nothing.

use std::path::{Path, PathBuf};

use super::diagnostic::{Diagnostic, did_you_mean};
use super::secret::{Part, Template, url_has_literal_password};
use serde::de::DeserializeOwned;
use serde_json::Value as Json;

use super::spec::{
    DestinationSpec, LocalSpec, NotifySpec, PolicyDocumentSpec, PostgresSpec, RetentionSpec,
    S3Spec, ScheduleSpec, ServerSideEncryption, SourceSpec, SslMode, VerifySpec,
};
use super::yaml::{Key, Node, Span, Value};
use super::{Policy, digest};
use crate::retention::{self, Retention, Within};
use crate::schedule::{self, Schedule};

/// Finds out whether an S3 destination is usable (writable, readable and
/// deletable), or why not. The checks open no connection themselves: the
/// command that asks for it passes the S3 client's probe.
pub type S3Probe = fn(&S3Spec) -> Result<(), String>;

/// What the checks may look at beyond the policy text.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Check that destinations can be used: local folders writable here, S3
    /// destinations with this probe.
    pub check_destinations: Option<S3Probe>,
    /// Warn about sources that are not there (an SQLite file that does not
    /// exist), as `validate` does; commands that back up say so when they run.
    pub check_sources: bool,
    /// Check that the systemd unit folder is writable when this host's
    /// scheduler is systemd (`validate`).
    pub check_unit_dir: bool,
}

pub(super) struct Checker<'a> {
    pub file: &'a str,
    pub root: &'a Node,
    /// The folder of the policy file, for relative paths.
    pub base: &'a Path,
    pub options: Options,
    pub diagnostics: Vec<Diagnostic>,
}

/// A schedule with no tick in this many years from now is refused.
const HORIZON_YEARS: u32 = 5;

/// The fields whose text may hold `${env:…}` and `${file:…}` references
/// (`[]` stands for any list index, `*` for any key).
const REFERENCE_FIELDS: [&str; 21] = [
    "spec.source.postgres.url",
    "spec.source.postgres.host",
    "spec.source.postgres.user",
    "spec.source.postgres.database",
    "spec.source.postgres.password",
    "spec.source.mysql.url",
    "spec.source.mysql.host",
    "spec.source.mysql.user",
    "spec.source.mysql.database",
    "spec.source.mysql.password",
    "spec.destinations[].s3.endpoint",
    "spec.destinations[].s3.region",
    "spec.destinations[].s3.access-key-id",
    "spec.destinations[].s3.secret-access-key",
    "spec.destinations[].s3.session-token",
    "spec.notify.webhook.url",
    "spec.notify.webhook.headers.*",
    "spec.notify.email.smtp.username",
    "spec.notify.email.smtp.password",
    "spec.notify.healthchecks.url",
    "spec.encryption.age.identity",
];

/// The fields whose literal text may be a secret: shown masked in snippets.
pub(super) const SECRET_FIELDS: [&str; 11] = [
    "spec.source.postgres.url",
    "spec.source.postgres.password",
    "spec.source.mysql.url",
    "spec.source.mysql.password",
    "spec.destinations[].s3.secret-access-key",
    "spec.destinations[].s3.session-token",
    "spec.notify.webhook.url",
    "spec.notify.webhook.headers.*",
    "spec.notify.email.smtp.password",
    "spec.notify.healthchecks.url",
    "spec.encryption.age.identity",
];

/// Whether `field` (with `[]` for list indexes) matches one of `patterns`.
pub(super) fn field_matches(patterns: &[&str], field: &str) -> bool {
    let generic = field
        .rsplit_once('.')
        .map(|(parent, _)| format!("{parent}.*"))
        .unwrap_or_default();
    patterns.contains(&field) || patterns.contains(&generic.as_str())
}

/// Where a key or string sits: its field as [`REFERENCE_FIELDS`] name it
/// (`spec.destinations[].s3.bucket`) and as diagnostics do
/// (`spec.destinations[1].s3.bucket`).
pub(super) struct Place<'a> {
    pub pattern: &'a str,
    pub field: &'a str,
}

/// What [`walk`] shows its visitor: a mapping key, or a scalar string.
pub(super) enum Seen<'a> {
    Key(&'a Key),
    Text(&'a Node, &'a str),
}

/// Calls `visit` with every mapping key and scalar string of the tree and
/// where it sits (a key's place is its own field).
pub(super) fn walk<'a>(node: &'a Node, visit: &mut dyn FnMut(&Place, Seen<'a>)) {
    walk_under(node, "", "", visit);
}

fn walk_under<'a>(
    node: &'a Node,
    pattern: &str,
    field: &str,
    visit: &mut dyn FnMut(&Place, Seen<'a>),
) {
    let join = |parent: &str, name: &str| {
        if parent.is_empty() {
            name.to_owned()
        } else {
            format!("{parent}.{name}")
        }
    };
    match &node.value {
        Value::Mapping(entries) => {
            for (key, value) in entries {
                let (pattern, field) = (join(pattern, &key.name), join(field, &key.name));
                visit(
                    &Place {
                        pattern: &pattern,
                        field: &field,
                    },
                    Seen::Key(key),
                );
                walk_under(value, &pattern, &field, visit);
            }
        }
        Value::Sequence(items) => {
            for (index, item) in items.iter().enumerate() {
                walk_under(
                    item,
                    &format!("{pattern}[]"),
                    &format!("{field}[{index}]"),
                    visit,
                );
            }
        }
        Value::String(text) => visit(&Place { pattern, field }, Seen::Text(node, text)),
        _ => {}
    }
}

/// Calls `visit` with every scalar string of the tree and its field path
/// (`spec.destinations[].s3.bucket`).
pub(super) fn walk_strings<'a>(node: &'a Node, visit: &mut dyn FnMut(&Place, &'a Node, &str)) {
    walk(node, &mut |place, seen| {
        if let Seen::Text(node, text) = seen {
            visit(place, node, text);
        }
    });
}

/// A section of the document, if it has the shape of `T`.
fn section<T: DeserializeOwned>(json: &Json, pointer: &str) -> Option<T> {
    json.pointer(pointer)
        .and_then(|value| serde_json::from_value(value.clone()).ok())
}

/// `pg_dump` options that would break the artifact or leak a secret.
const REFUSED_PG_DUMP_OPTIONS: [&str; 18] = [
    "-f",
    "--file",
    "-F",
    "--format",
    "-Z",
    "--compress",
    "-j",
    "--jobs",
    "-W",
    "--password",
    "-d",
    "--dbname",
    "-h",
    "--host",
    "-p",
    "--port",
    "-U",
    "--username",
];

impl Checker<'_> {
    /// The span and dotted field name of a JSON-pointer-like path (`/spec/source`).
    fn locate(&self, pointer: &str) -> (Span, String) {
        let mut node = self.root;
        let mut span = node.span;
        let mut field = String::new();
        for segment in pointer.split('/').filter(|segment| !segment.is_empty()) {
            match &node.value {
                Value::Mapping(_) => {
                    let Some((key, value)) = node.entry(segment) else {
                        break;
                    };
                    span = value.span;
                    node = value;
                    if !field.is_empty() {
                        field.push('.');
                    }
                    field.push_str(&key.name);
                }
                Value::Sequence(items) => {
                    let Some(item) = segment
                        .parse::<usize>()
                        .ok()
                        .and_then(|index| items.get(index))
                    else {
                        break;
                    };
                    span = item.span;
                    node = item;
                    field.push_str(&format!("[{segment}]"));
                }
                _ => break,
            }
        }
        (span, field)
    }

    /// The span of the key of the last segment of `pointer`, for problems with a whole section.
    fn locate_key(&self, pointer: &str) -> (Span, String) {
        let (parent, name) = pointer.rsplit_once('/').unwrap_or(("", pointer));
        let (_, field) = self.locate(pointer);
        match super::locate_pointer(self.root, parent).entry(name) {
            Some((key, _)) => (key.span, field),
            None => self.locate(pointer),
        }
    }

    fn error(
        &mut self,
        code: &'static str,
        pointer: &str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        let (span, field) = self.locate(pointer);
        self.diagnostics.push(
            Diagnostic::error(code, self.file, message)
                .at(span)
                .field(field)
                .hint(hint),
        );
    }

    fn warning(
        &mut self,
        code: &'static str,
        pointer: &str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        let (span, field) = self.locate(pointer);
        self.diagnostics.push(
            Diagnostic::warning(code, self.file, message)
                .at(span)
                .field(field)
                .hint(hint),
        );
    }

    /// `path` made absolute against the policy's folder, with `.` and `..`
    /// resolved by name (not through symlinks), so `../disk` reads as a
    /// plain path in plans and crontab lines.
    fn resolve_path(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            normalize(path)
        } else {
            normalize(&self.base.join(path))
        }
    }

    /// Checks every section of a document that has the right shape, and
    /// builds the resolved policy when the whole `document` is well formed
    /// and nothing is wrong. Sections with schema errors are skipped: those
    /// errors are already reported.
    pub fn check(&mut self, json: &Json, document: Option<PolicyDocumentSpec>) -> Option<Policy> {
        let errors_before = self.error_count();
        self.check_reference_fields(self.root);
        self.check_control_characters(self.root);
        let schedule = section::<ScheduleSpec>(json, "/spec/schedule")
            .and_then(|schedule| self.check_schedule("/spec/schedule", &schedule));
        let retention = section::<RetentionSpec>(json, "/spec/retention")
            .and_then(|spec| self.check_retention("/spec/retention", &spec));
        let physical = self.check_physical(json);
        let source =
            section::<SourceSpec>(json, "/spec/source").map(|source| self.check_source(&source));
        let destinations: Vec<(usize, DestinationSpec)> = json
            .pointer("/spec/destinations")
            .and_then(Json::as_array)
            .map(|items| {
                items
                    .iter()
                    .enumerate()
                    .filter_map(|(index, item)| {
                        serde_json::from_value(item.clone())
                            .ok()
                            .map(|spec| (index, spec))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let destinations = self.check_destinations(&destinations);
        let lease = self.check_lease(json, &destinations);
        if let Some(notify) = section::<NotifySpec>(json, "/spec/notify") {
            self.check_notify(&notify);
        }
        let timezone = section::<ScheduleSpec>(json, "/spec/schedule")
            .map_or_else(|| "UTC".to_owned(), |schedule| schedule.timezone);
        let restore_test = section::<VerifySpec>(json, "/spec/verify")
            .and_then(|verify| verify.restore_test_expression())
            .and_then(|expression| match Schedule::parse(&expression, &timezone) {
                Ok(schedule) => self
                    .fires(&schedule, "/spec/verify/restore-test")
                    .then_some(schedule),
                Err(error) => {
                    self.error(
                        "invalid-cron",
                        "/spec/verify/restore-test",
                        error.to_string(),
                        "use daily, weekly, monthly, a 5-field crontab expression (e.g. \"30 4 * * 0\"), or @daily, @weekly, @monthly",
                    );
                    None
                }
            });
        if let Some(max_age) = json.pointer("/spec/health/max-age").and_then(Json::as_str)
            && super::units::max_age(max_age).is_none()
        {
            self.error(
                "invalid-value",
                "/spec/health/max-age",
                format!("`{max_age}` is not a duration like `36h`, `2d` or `1d12h`"),
                "write a number and a unit (y, m, d, h), combined if needed, greater than zero",
            );
        }
        if let Some(min_free) = json.pointer("/spec/health/min-free").and_then(Json::as_str)
            && super::units::MinFree::parse(min_free).is_none()
        {
            self.error(
                "invalid-value",
                "/spec/health/min-free",
                format!("`{min_free}` is neither a share like `10%` nor a size like `20GiB`"),
                "write a percentage up to 100% or a whole number of B, KiB, MiB, GiB or TiB",
            );
        }
        let hosts = self.check_hosts(json);
        let document = document?;
        if let Some(super::spec::EncryptionSpec::Age(age)) = &document.spec.encryption {
            self.check_age(age);
        }
        if self.error_count() > errors_before {
            return None;
        }
        let (span, _) = self.locate("/metadata/name");
        Some(Policy {
            name: document.metadata.name.clone(),
            description: document.metadata.description.clone(),
            labels: document.metadata.labels.clone(),
            hosts,
            file: PathBuf::from(self.file),
            name_span: span,
            source: source?,
            schedule: schedule?,
            retention: retention?,
            destinations,
            compression: document.spec.compression.clone(),
            encryption: document.spec.encryption.clone(),
            notify: document.spec.notify.clone(),
            restore_test,
            health: document.spec.health.clone(),
            digest: digest(&document),
            physical: physical?,
            lease: lease?,
            view: super::View::Logical,
        })
    }

    /// `metadata.hosts`: each entry a host name, a glob or a label selector.
    fn check_hosts(&mut self, json: &Json) -> Vec<super::hosts::HostSelector> {
        let entries = json
            .pointer("/metadata/hosts")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        let mut selectors = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let Some(text) = entry.as_str() else { continue };
            match super::hosts::HostSelector::parse(text) {
                Ok(selector) => selectors.push(selector),
                Err(message) => self.error(
                    "invalid-host",
                    &format!("/metadata/hosts/{index}"),
                    message,
                    "write a host name (`db1`), a glob (`db-*`) or a label selector (`role=primary`)",
                ),
            }
        }
        let exact = selectors
            .iter()
            .filter_map(super::hosts::HostSelector::exact_name)
            .collect::<std::collections::BTreeSet<_>>();
        let several = exact.len() > 1 || exact.len() < selectors.len();
        if several && json.pointer("/spec/lease").is_none() {
            self.warning(
                "hosts-without-lease",
                "/metadata/hosts",
                "several hosts may run this policy, and without `spec.lease` two of them can back up the same tick and prune each other's backups",
                "add `lease: {ttl: 2m}` under `spec` (on an S3 store with conditional writes), or name one host; for one database per host, write one policy per host",
            );
        }
        selectors
    }

    /// `spec.lease`: its ttl, and an S3 destination to keep it on.
    /// `Some(None)` when there is none; `None` when it is invalid.
    fn check_lease(
        &mut self,
        json: &Json,
        destinations: &[DestinationSpec],
    ) -> Option<Option<std::time::Duration>> {
        let Some(spec) = section::<super::spec::LeaseSpec>(json, "/spec/lease") else {
            return Some(None);
        };
        let errors = self.error_count();
        if !destinations
            .iter()
            .any(|destination| matches!(destination, DestinationSpec::S3(_)))
        {
            let (span, field) = self.locate_key("/spec/lease");
            self.diagnostics.push(
                Diagnostic::error(
                    "lease-needs-s3",
                    self.file,
                    "`lease` is kept on an S3 destination, and this policy has none",
                )
                .at(span)
                .field(field)
                .hint("add an `s3:` destination (the lease lives on the first one), or remove `lease`: local destinations are serialized by the host's own lock"),
            );
        }
        let text = spec
            .ttl
            .as_deref()
            .unwrap_or(super::spec::DEFAULT_LEASE_TTL);
        let ttl = super::units::lease_ttl(text);
        match ttl {
            Some(ttl)
                if (super::units::LEASE_TTL_MIN..=super::units::LEASE_TTL_MAX).contains(&ttl) => {}
            _ => self.error(
                "invalid-value",
                "/spec/lease/ttl",
                format!("`{text}` is not a lease ttl from 2s to 1h"),
                "write a number and a unit (s, m, h), combined if needed, e.g. `2m` or `90s`",
            ),
        }
        if self.error_count() > errors {
            return None;
        }
        Some(ttl)
    }

    /// `spec.physical`: its schedule, retention and window, and that the
    /// source is PostgreSQL. `Some(None)` when there is none; `None` when it is invalid.
    fn check_physical(&mut self, json: &Json) -> Option<Option<super::Physical>> {
        let Some(spec) = section::<super::spec::PhysicalSpec>(json, "/spec/physical") else {
            return Some(None);
        };
        let errors = self.error_count();
        if json.pointer("/spec/source/postgres").is_none() {
            let (span, field) = self.locate_key("/spec/physical");
            self.diagnostics.push(
                Diagnostic::error(
                    "physical-needs-postgres",
                    self.file,
                    "`physical` (base backups and WAL archiving) is for a `postgres` source only",
                )
                .at(span)
                .field(field)
                .hint("remove `physical`, or back up a PostgreSQL server with `source: {postgres: …}`"),
            );
        }
        let schedule = self.check_schedule("/spec/physical/schedule", &spec.schedule);
        let retention = self.check_retention("/spec/physical/retention", &spec.retention);
        let pitr_window = match spec.pitr_window.as_deref() {
            None => None,
            Some(text) => match super::units::max_age(text) {
                Some(window) => Some(window),
                None => {
                    self.error(
                        "invalid-value",
                        "/spec/physical/pitr-window",
                        format!("`{text}` is not a duration like `7d`, `36h` or `1m`"),
                        "write a number and a unit (y, m, d, h), combined if needed, greater than zero",
                    );
                    None
                }
            },
        };
        if self.error_count() > errors {
            return None;
        }
        Some(Some(super::Physical {
            schedule: schedule?,
            retention: retention?,
            pitr_window,
        }))
    }

    fn check_retention(&mut self, pointer: &str, spec: &RetentionSpec) -> Option<Retention> {
        match Retention::from_spec(spec) {
            Ok(retention) => {
                if !retention.keeps_something() {
                    let (span, field) = self.locate_key(pointer);
                    self.diagnostics.push(
                        Diagnostic::error("retention-keeps-nothing", self.file, "retention keeps no backup")
                            .at(span)
                            .field(field)
                            .hint("set at least one of keep-last, keep-hourly, keep-daily, keep-weekly, keep-monthly, keep-yearly to 1 or more, or keep-within to a duration"),
                    );
                }
                Some(retention)
            }
            Err(error) => {
                self.error(
                    "invalid-value",
                    &format!("{pointer}/keep-within"),
                    error.to_string(),
                    "write a number and a unit (y, m, d, h), combined if needed: `14d`, `36h`, `1y6m`",
                );
                None
            }
        }
    }

    /// References, in one pass over every string of the document: in a
    /// field that takes them ([`REFERENCE_FIELDS`]), a malformed one is an
    /// error and an unset variable or missing file a warning, alike for
    /// every such field; in any other field a `${env:…}` or `${file:…}`
    /// would be used literally: an error, not a surprise at 3 am.
    fn check_reference_fields(&mut self, root: &Node) {
        let file = self.file;
        let diagnostics = &mut self.diagnostics;
        walk_strings(root, &mut |place, node, text| {
            if field_matches(&REFERENCE_FIELDS, place.pattern) {
                diagnostics.extend(
                    template_problems(file, text)
                        .into_iter()
                        .map(|diagnostic| diagnostic.at(node.span).field(place.field)),
                );
                return;
            }
            if text.contains("${env:") || text.contains("${file:") {
                let name = place
                    .pattern
                    .rsplit('.')
                    .next()
                    .unwrap_or(place.pattern)
                    .trim_end_matches("[]");
                diagnostics.push(
                    Diagnostic::error("reference-not-expanded", file, format!("references are not expanded in `{name}`"))
                        .at(node.span)
                        .field(place.field)
                        .hint("only connection, credential and notification fields take `${env:…}`/`${file:…}`; write the value itself"),
                );
            }
        });
    }

    /// A control character (a newline, a tab, an escape, NUL, …) in a path,
    /// a name or any other value would make a folder, an S3 key, a crontab
    /// line or a metric label other than it reads: refused in every key and
    /// value, but for newlines and tabs in the free text of
    /// `metadata.description`.
    fn check_control_characters(&mut self, root: &Node) {
        let mut found = Vec::new();
        walk(root, &mut |place, seen| match seen {
            Seen::Key(key) => {
                if let Some(character) = key.name.chars().find(|c| c.is_control()) {
                    found.push((
                        key.span,
                        place.field.to_owned(),
                        format!("the key {:?}", key.name),
                        character,
                    ));
                }
            }
            Seen::Text(node, text) => {
                let free_text = place.pattern == "metadata.description";
                if let Some(character) = text.chars().find(|character| {
                    character.is_control() && !(free_text && matches!(character, '\n' | '\t'))
                }) {
                    let name = place
                        .pattern
                        .rsplit('.')
                        .next()
                        .unwrap_or(place.pattern)
                        .trim_end_matches("[]");
                    found.push((
                        node.span,
                        place.field.to_owned(),
                        format!("`{name}`"),
                        character,
                    ));
                }
            }
        });
        for (span, field, what, character) in found {
            let named = match character {
                '\n' => " (a line feed)",
                '\r' => " (a carriage return)",
                '\t' => " (a tab)",
                '\0' => " (NUL)",
                '\u{1b}' => " (an escape)",
                _ => "",
            };
            self.diagnostics.push(
                Diagnostic::error(
                    "invalid-value",
                    self.file,
                    format!(
                        "{what} holds a control character, U+{:04X}{named}",
                        u32::from(character)
                    ),
                )
                .at(span)
                .field(field)
                .hint("paths, names and other values are plain text on one line; remove it (in double quotes, `\\n` and `\\t` are a line feed and a tab)"),
            );
        }
    }

    fn error_count(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|diagnostic| diagnostic.is_error())
            .count()
    }

    fn check_schedule(&mut self, pointer: &str, spec: &ScheduleSpec) -> Option<Schedule> {
        let (cron, timezone) = (spec.cron.as_str(), spec.timezone.as_str());
        let mut valid = true;
        if let Err(error) = schedule::parse_timezone(timezone) {
            let lower = timezone.to_ascii_lowercase();
            let exact_but_case =
                schedule::timezone_names().find(|name| name.to_ascii_lowercase() == lower);
            let hint = match exact_but_case
                .or_else(|| did_you_mean(timezone, schedule::timezone_names()))
            {
                Some(close) => format!("did you mean `{close}`?"),
                None => "use an IANA name such as `UTC`, `Europe/Berlin` or `America/New_York`"
                    .to_owned(),
            };
            self.error(
                "invalid-timezone",
                &format!("{pointer}/timezone"),
                error.to_string(),
                hint,
            );
            valid = false;
        }
        if let Err(error) = Schedule::parse(cron, "UTC") {
            self.error(
                "invalid-cron",
                &format!("{pointer}/cron"),
                error.to_string(),
                "use 5 fields, minute hour day-of-month month day-of-week (e.g. \"0 1 * * *\"), or @hourly, @daily, @weekly, @monthly, @yearly",
            );
            valid = false;
        }
        if !valid {
            return None;
        }
        let schedule = Schedule::parse(cron, timezone).ok()?;
        if !self.fires(&schedule, &format!("{pointer}/cron")) {
            return None;
        }
        Some(schedule)
    }

    /// Whether `schedule` ticks within [`HORIZON_YEARS`] of now; an error
    /// at `pointer` if not: a schedule that never fires is never overdue
    /// either, so nothing would ever notice that no backup is taken.
    fn fires(&mut self, schedule: &Schedule, pointer: &str) -> bool {
        if schedule.ticks_within_years(chrono::Utc::now(), HORIZON_YEARS) {
            return true;
        }
        self.error(
            "invalid-cron",
            pointer,
            format!(
                "cron expression `{}` never fires: it has no tick in the next {HORIZON_YEARS} years",
                schedule.expression()
            ),
            "the day of month must exist in a month named: February has at most 29 days; April, June, September and November have 30",
        );
        false
    }

    fn check_source(&mut self, source: &SourceSpec) -> SourceSpec {
        let resolved = match source {
            SourceSpec::Postgres(postgres) => {
                self.check_postgres(postgres);
                SourceSpec::Postgres(postgres.clone())
            }
            SourceSpec::Sqlite(sqlite) => {
                let mut resolved = sqlite.clone();
                resolved.path = self.resolve_path(&sqlite.path);
                if self.options.check_sources && !resolved.path.exists() {
                    self.warning(
                        "missing-source",
                        "/spec/source/sqlite/path",
                        format!("SQLite database `{}` does not exist", resolved.path.display()),
                        "fix the path, or create the database; normal where it does not live (CI), but `run` and `apply` fail until it exists",
                    );
                }
                SourceSpec::Sqlite(resolved)
            }
            SourceSpec::Mysql(mysql) => SourceSpec::Mysql(mysql.clone()),
        };
        self.check_kind(&resolved);
        resolved
    }

    /// The checks the source's kind makes of its own fields ([`crate::database::Database::check_spec`]).
    fn check_kind(&mut self, source: &SourceSpec) {
        let database = crate::database::open(source);
        let base = format!("/spec/source/{}", database.kind());
        for problem in database.check_spec() {
            let pointer = if problem.field.is_empty() {
                base.clone()
            } else {
                format!("{base}/{}", problem.field)
            };
            let (span, field) = if problem.at_key {
                self.locate_key(&pointer)
            } else {
                self.locate(&pointer)
            };
            let diagnostic = if problem.error {
                Diagnostic::error(problem.code, self.file, problem.message)
            } else {
                Diagnostic::warning(problem.code, self.file, problem.message)
            };
            self.diagnostics
                .push(diagnostic.at(span).field(field).hint(problem.hint));
        }
    }

    fn check_postgres(&mut self, postgres: &PostgresSpec) {
        let base = "/spec/source/postgres";
        if postgres.url.is_some() {
            let separate = [
                ("host", postgres.host.is_some()),
                ("port", postgres.port.is_some()),
                ("user", postgres.user.is_some()),
                ("database", postgres.database.is_some()),
            ];
            for (name, given) in separate {
                if given {
                    self.error(
                        "conflicting-fields",
                        &format!("{base}/{name}"),
                        format!("`url` and `{name}` cannot be combined"),
                        "put the whole connection in `url`, or drop `url` and use the separate fields",
                    );
                }
            }
        } else if postgres.database.is_none() {
            let (span, field) = self.locate_key(base);
            self.diagnostics.push(
                Diagnostic::error("missing-field", self.file, "missing field `database`")
                    .at(span)
                    .field(field)
                    .hint("add `database: <name>`, or give the whole connection as `url`"),
            );
        }
        if let Some(url) = &postgres.url {
            if let Ok(template) = Template::parse(url)
                && let Some(literal) = template.literal()
                && !(literal.starts_with("postgresql://") || literal.starts_with("postgres://"))
            {
                self.error(
                            "invalid-value",
                            &format!("{base}/url"),
                            "`url` is not a postgresql:// URL",
                            "write `postgresql://user@host:5432/database`, or a reference like `${env:DATABASE_URL}`",
                        );
            }
            if url_has_literal_password(url) {
                self.warning(
                    "literal-secret",
                    &format!("{base}/url"),
                    "the URL holds a password in plain text",
                    "move it out of the policy: `${env:DATABASE_URL}` for the whole URL, the `password` field with a reference, or a .pgpass file",
                );
            }
        }
        if let Some(password) = &postgres.password {
            self.warn_literal_secret(&format!("{base}/password"), password, "${env:PGPASSWORD}");
        }
        for (index, option) in postgres.pg_dump_options.iter().enumerate() {
            let name = option.split('=').next().unwrap_or(option);
            let short_with_value = REFUSED_PG_DUMP_OPTIONS.iter().any(|refused| {
                refused.len() == 2 && name.starts_with(refused) && !name.starts_with("--")
            });
            if REFUSED_PG_DUMP_OPTIONS.contains(&name) || short_with_value {
                self.error(
                    "refused-option",
                    &format!("{base}/pg-dump-options/{index}"),
                    format!("`{option}` cannot be passed to pg_dump"),
                    "backup sets the format, output, compression and connection itself; use the policy's fields instead",
                );
            }
        }
        if matches!(
            postgres.sslmode,
            Some(SslMode::VerifyCa | SslMode::VerifyFull)
        ) && postgres.ssl_root_cert.is_none()
        {
            self.error(
                "missing-field",
                &format!("{base}/sslmode"),
                "`verify-ca` and `verify-full` need `ssl-root-cert`",
                "add `ssl-root-cert: /path/to/ca.pem`, the CA that signed the server's certificate",
            );
        }
        if let Some(root_cert) = &postgres.ssl_root_cert
            && !root_cert.is_absolute()
        {
            self.error(
                "invalid-value",
                &format!("{base}/ssl-root-cert"),
                "`ssl-root-cert` must be an absolute path",
                "for example `/etc/ssl/certs/db-ca.pem`",
            );
        }
        if let Some(bin_dir) = &postgres.bin_dir
            && !bin_dir.is_absolute()
        {
            self.error(
                "invalid-value",
                &format!("{base}/bin-dir"),
                "`bin-dir` must be an absolute path",
                "for example `/usr/lib/postgresql/16/bin`",
            );
        }
    }

    fn check_destinations(
        &mut self,
        destinations: &[(usize, DestinationSpec)],
    ) -> Vec<DestinationSpec> {
        let mut resolved: Vec<DestinationSpec> = Vec::new();
        let mut indexes: Vec<usize> = Vec::new();
        for (index, destination) in destinations {
            let pointer = format!("/spec/destinations/{index}");
            let destination = match destination {
                DestinationSpec::Local(local) => {
                    let path = self.resolve_path(&local.path);
                    if self.options.check_destinations.is_some()
                        && let Err(reason) = folder_writable(&path)
                    {
                        self.error(
                            "unreachable-destination",
                            &format!("{pointer}/local/path"),
                            format!("destination `{}` is not usable: {reason}", path.display()),
                            "create the folder, or give the user that runs backup write access",
                        );
                    }
                    DestinationSpec::Local(LocalSpec { path })
                }
                DestinationSpec::S3(s3) => {
                    DestinationSpec::S3(self.check_s3(&format!("{pointer}/s3"), s3))
                }
            };
            if let Some(first) = resolved
                .iter()
                .position(|earlier| same_place(earlier, &destination))
            {
                self.error(
                    "duplicate-destination",
                    &pointer,
                    "this destination is listed twice",
                    format!("it is already destinations[{}]; remove one", indexes[first]),
                );
            }
            resolved.push(destination);
            indexes.push(*index);
        }
        resolved
    }

    fn check_s3(&mut self, pointer: &str, s3: &S3Spec) -> S3Spec {
        let errors =
            |diagnostics: &[Diagnostic]| diagnostics.iter().filter(|d| d.is_error()).count();
        let errors_before = errors(&self.diagnostics);
        if !valid_bucket_name(&s3.bucket) {
            self.error(
                "invalid-value",
                &format!("{pointer}/bucket"),
                format!("`{}` is not a valid bucket name", s3.bucket),
                "bucket names use lowercase letters, digits, `.` and `-`, 3 to 63 characters, starting and ending with a letter or digit",
            );
        }
        if let Some(endpoint) = &s3.endpoint {
            let literal = Template::parse(endpoint)
                .ok()
                .and_then(|template| template.literal());
            if literal.is_some_and(|literal| !is_http_url(&literal)) {
                self.error(
                    "invalid-value",
                    &format!("{pointer}/endpoint"),
                    format!("`{endpoint}` is not an http(s) URL"),
                    "for example `https://s3.example.com` or `http://127.0.0.1:3900`",
                );
            }
        }
        match (&s3.access_key_id, &s3.secret_access_key) {
            (Some(_), None) => self.error(
                "missing-field",
                &format!("{pointer}/access-key-id"),
                "`access-key-id` is given without `secret-access-key`",
                "give both, or neither to use the AWS credential chain",
            ),
            (None, Some(_)) => self.error(
                "missing-field",
                &format!("{pointer}/secret-access-key"),
                "`secret-access-key` is given without `access-key-id`",
                "give both, or neither to use the AWS credential chain",
            ),
            _ => {}
        }
        if let Some(secret) = &s3.secret_access_key {
            self.warn_literal_secret(
                &format!("{pointer}/secret-access-key"),
                secret,
                "${env:AWS_SECRET_ACCESS_KEY}",
            );
        }
        if s3.kms_key_id.is_some()
            && s3.server_side_encryption != Some(ServerSideEncryption::AwsKms)
        {
            self.error(
                "conflicting-fields",
                &format!("{pointer}/kms-key-id"),
                "`kms-key-id` needs `server-side-encryption: aws:kms`",
                "add `server-side-encryption: aws:kms`, or remove `kms-key-id`",
            );
        }
        let mut resolved = s3.clone();
        // The prefix is a folder: `prod` and `prod/` mean the same.
        if let Some(prefix) = &s3.prefix {
            let trimmed = prefix.trim_start_matches('/');
            resolved.prefix = if trimmed.is_empty() {
                None
            } else if trimmed.ends_with('/') {
                Some(trimmed.to_owned())
            } else {
                Some(format!("{trimmed}/"))
            };
        }
        if let Some(probe) = self.options.check_destinations
            && errors(&self.diagnostics) == errors_before
            && let Err(error) = probe(&resolved)
        {
            self.error(
                "unreachable-destination",
                pointer,
                format!(
                    "destination `{}` is not usable: {error}",
                    crate::destination::describe(&DestinationSpec::S3(resolved.clone()))
                ),
                "check endpoint, region and bucket, and that the credentials may read, write and delete there (validate writes and deletes one small object to find out)",
            );
        }
        resolved
    }

    fn check_notify(&mut self, notify: &NotifySpec) {
        let base = "/spec/notify";
        if notify.webhook.is_none() && notify.email.is_none() && notify.healthchecks.is_none() {
            let (span, field) = self.locate_key(base);
            self.diagnostics.push(
                Diagnostic::warning(
                    "no-target",
                    self.file,
                    "`notify` names no target, so nothing is sent",
                )
                .at(span)
                .field(field)
                .hint("add `webhook`, `email` or `healthchecks`"),
            );
        }
        if let Some(webhook) = &notify.webhook {
            self.check_url(&format!("{base}/webhook/url"), &webhook.url);
        }
        if let Some(healthchecks) = &notify.healthchecks {
            self.check_url(&format!("{base}/healthchecks/url"), &healthchecks.url);
        }
        if let Some(email) = &notify.email {
            let addresses = std::iter::once(("/from".to_owned(), &email.from)).chain(
                email
                    .to
                    .iter()
                    .enumerate()
                    .map(|(index, to)| (format!("/to/{index}"), to)),
            );
            for (suffix, address) in addresses {
                if !looks_like_address(address) {
                    self.error(
                        "invalid-value",
                        &format!("{base}/email{suffix}"),
                        format!("`{address}` is not an email address"),
                        "write `name@example.com`",
                    );
                }
            }
            if let Some(password) = &email.smtp.password {
                self.warn_literal_secret(
                    &format!("{base}/email/smtp/password"),
                    password,
                    "${env:SMTP_PASSWORD}",
                );
            }
        }
    }

    /// Recipients must be public keys this version can encrypt to; the
    /// identity, a private key, only ever a reference (the policy lives in git).
    fn check_age(&mut self, age: &super::spec::AgeSpec) {
        for (index, recipient) in age.recipients.iter().enumerate() {
            if let Err(error) = crate::codec::Recipients::parse(std::slice::from_ref(recipient)) {
                self.error(
                    "invalid-value",
                    &format!("/spec/encryption/age/recipients/{index}"),
                    error.to_string(),
                    "give the public key `age-keygen -y KEY` prints (age1…), or an SSH public key (ssh-ed25519 …)",
                );
            }
        }
        if let Some(identity) = &age.identity
            && Template::parse(identity).is_ok_and(|template| !template.has_references())
        {
            self.error(
                "literal-secret",
                "/spec/encryption/age/identity",
                "the identity is a private key and must not be written into the policy",
                "reference the key file instead: `${file:/etc/backup/age.key}` (mode 0600), or `${env:BACKUP_AGE_IDENTITY}`",
            );
        }
    }

    fn check_url(&mut self, pointer: &str, url: &str) {
        // A URL written out must be http(s); one built from references is checked when used.
        let literal = Template::parse(url)
            .ok()
            .and_then(|template| template.literal());
        if let Some(text) = literal
            && !is_http_url(&text)
        {
            self.error(
                    "invalid-value",
                    pointer,
                    format!("`{}` is not an http(s) URL", pointer.rsplit('/').next().unwrap_or("url")),
                    "for example `https://hooks.example.com/backup`, or a reference like `${env:ALERT_WEBHOOK}`",
                );
        }
    }

    fn warn_literal_secret(&mut self, pointer: &str, value: &str, example: &str) {
        let literal = Template::parse(value).is_ok_and(|template| !template.has_references());
        if literal {
            self.warning(
                "literal-secret",
                pointer,
                "secret written in plain text",
                format!("policies live in git; use a reference such as `{example}` or `${{file:/run/secrets/name}}`"),
            );
        }
    }
}

/// The problems of a reference field's text, without file or position: a
/// malformed reference (error), an unset variable or a missing file (warning).
fn template_problems(file: &str, value: &str) -> Vec<Diagnostic> {
    let template = match Template::parse(value) {
        Ok(template) => template,
        Err(error) => {
            return vec![Diagnostic::error("invalid-reference", file, error.to_string()).hint(
                "references look like `${env:NAME}` or `${file:/absolute/path}`; write `$${` for a literal `${`",
            )];
        }
    };
    template
        .references()
        .filter_map(|part| match part {
            Part::Env(name) if std::env::var_os(name).is_none() => Some(
                Diagnostic::warning(
                    "unresolved-reference",
                    file,
                    format!("environment variable `{name}` is not set"),
                )
                .hint(
                    "set it wherever backup runs (cron, CI); until then commands that need it fail",
                ),
            ),
            Part::File(path) if !path.exists() => Some(
                Diagnostic::warning(
                    "unresolved-reference",
                    file,
                    format!("secret file `{}` does not exist", path.display()),
                )
                .hint("create it on the host that runs backup, readable only by that user"),
            ),
            // Read whole when used: a FIFO would wait forever, a device never end.
            Part::File(path) if !path.is_file() => Some(
                Diagnostic::warning(
                    "unresolved-reference",
                    file,
                    format!("secret file `{}` is not a regular file", path.display()),
                )
                .hint("only regular files are read as secrets (no FIFOs, devices or folders)"),
            ),
            _ => None,
        })
        .collect()
}

fn same_place(left: &DestinationSpec, right: &DestinationSpec) -> bool {
    match (left, right) {
        (DestinationSpec::Local(left), DestinationSpec::Local(right)) => {
            normalize(&left.path) == normalize(&right.path)
        }
        // The same bucket and prefix on another endpoint is another place.
        (DestinationSpec::S3(_), DestinationSpec::S3(_)) => {
            crate::destination::describe(left) == crate::destination::describe(right)
        }
        _ => false,
    }
}

/// A path with `.` and `..` folded, without touching the file system.
pub(super) fn normalize(path: &Path) -> PathBuf {
    let mut normalized = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                normalized.pop();
            }
            other => normalized.push(other),
        }
    }
    normalized
}

/// Whether files can be made in `path`, or in the nearest folder above it
/// that exists (a probe is created and removed there).
pub(super) fn folder_writable(path: &Path) -> Result<(), String> {
    let mut existing = path;
    while !existing.exists() {
        match existing.parent() {
            Some(parent) => existing = parent,
            None => return Err("no part of the path exists".to_owned()),
        }
    }
    let metadata = std::fs::metadata(existing).map_err(|error| error.to_string())?;
    if !metadata.is_dir() {
        return Err(format!("`{}` is not a folder", existing.display()));
    }
    // Creating and removing a probe is the only check that sees ACLs, read-only mounts and quotas.
    let probe = existing.join(format!(".backup-probe-{}", std::process::id()));
    std::fs::create_dir(&probe)
        .map_err(|error| format!("cannot write in `{}`: {error}", existing.display()))?;
    std::fs::remove_dir(&probe).map_err(|error| error.to_string())
}

fn valid_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes.iter().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || *byte == b'.' || *byte == b'-'
        })
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

fn is_http_url(text: &str) -> bool {
    ["http://", "https://"].iter().any(|scheme| {
        text.strip_prefix(scheme)
            .is_some_and(|rest| !rest.is_empty())
    })
}

fn looks_like_address(address: &str) -> bool {
    address.rsplit_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !domain.is_empty() && !address.contains(char::is_whitespace)
    })
}

/// Retention rules are resolved here, once, as the policy is loaded:
/// [`crate::retention`] works on the resolved [`Retention`] only.
impl Retention {
    pub fn from_spec(spec: &RetentionSpec) -> Result<Retention, retention::Error> {
        let within = spec
            .keep_within
            .as_deref()
            .map(str::parse::<Within>)
            .transpose()?;
        Ok(Retention {
            last: spec.keep_last.unwrap_or(0),
            hourly: spec.keep_hourly.unwrap_or(0),
            daily: spec.keep_daily.unwrap_or(0),
            weekly: spec.keep_weekly.unwrap_or(0),
            monthly: spec.keep_monthly.unwrap_or(0),
            yearly: spec.keep_yearly.unwrap_or(0),
            within,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_when_rules_keep_nothing() {
        let nothing = RetentionSpec {
            keep_daily: Some(0),
            keep_within: Some("0d".to_owned()),
            ..RetentionSpec::default()
        };
        assert!(!Retention::from_spec(&nothing).unwrap().keeps_something());
        let something = RetentionSpec {
            keep_within: Some("1h".to_owned()),
            ..RetentionSpec::default()
        };
        assert!(Retention::from_spec(&something).unwrap().keeps_something());
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        for name in ["app-backups", "a.b.c", "abc"] {
            assert!(valid_bucket_name(name), "{name}");
        }
        for name in ["ab", "App", "-abc", "abc-", "a_b_c", &"a".repeat(64)] {
            assert!(!valid_bucket_name(name), "{name}");
        }
    }

    #[test]
    fn normalizes_paths_for_duplicate_checks() {
        assert_eq!(
            normalize(Path::new("/var/./backups/../backups/")),
            PathBuf::from("/var/backups")
        );
    }
}
