//! Desired state: policy files, loaded, checked and resolved.
//!
//! [`load`] reads files and folders, and returns every policy that is valid
//! together with every problem found in any of them, so one run reports all
//! problems at once. Layers, in order: text (size, encoding), YAML syntax
//! ([`yaml`]), apiVersion, shape ([`schema`]), meaning ([`check`]), and names
//! across files. Loading never writes anything and never resolves secrets.
//! A document of `kind: Settings` ([`settings`]) is read by the same layers;
//! at most one exists across the paths.

pub mod check;
pub mod diagnostic;
pub mod hosts;
pub mod schema;
pub mod secret;
pub mod settings;
pub mod spec;
pub mod units;
pub mod yaml;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::retention::Retention;
use crate::schedule::Schedule;
pub use check::{Options, S3Probe};
pub use diagnostic::{Diagnostic, Severity};
use spec::{
    API_VERSION, CompressionSpec, DestinationSpec, NotifySpec, PolicyDocumentSpec, SourceSpec,
};

/// The folder read when no policy path is given.
pub const DEFAULT_PATH: &str = "policies";

/// Policy files larger than this are refused unread: no policy needs it.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// A valid policy, ready for planning.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub description: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// `metadata.hosts`: which hosts run it (none: every host).
    pub hosts: Vec<hosts::HostSelector>,
    /// The file it came from, as the user named it, and where its name stands there.
    pub file: PathBuf,
    pub name_span: yaml::Span,
    /// The source, relative paths made absolute against the policy's folder.
    pub source: SourceSpec,
    pub schedule: Schedule,
    pub retention: Retention,
    /// The destinations, local paths made absolute and S3 prefixes ending in `/`.
    pub destinations: Vec<DestinationSpec>,
    pub compression: CompressionSpec,
    pub encryption: Option<spec::EncryptionSpec>,
    pub notify: Option<NotifySpec>,
    /// When restore drills are due (`verify.restore-test`), in the schedule's time zone.
    pub restore_test: Option<Schedule>,
    /// How `backup status` judges freshness (`max-age`, checked to parse).
    pub health: Option<spec::HealthSpec>,
    /// SHA-256 of the policy as written (normalized JSON), recorded in every
    /// backup so a saved plan can tell the policy changed.
    pub digest: String,
    /// Base backups and the WAL archive (`spec.physical`), PostgreSQL only.
    pub physical: Option<Physical>,
    /// `spec.lease`: its ttl, when the policy is written under a lease.
    pub lease: Option<std::time::Duration>,
    /// Which of the policy's backups this value stands for: the policy as
    /// written plans its logical dumps; [`Policy::physical_view`] its base backups.
    pub view: View,
}

/// `spec.physical`, resolved: when base backups are due and which are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Physical {
    pub schedule: Schedule,
    pub retention: Retention,
    /// `pitr-window`: how far back WAL is kept, if less than to the oldest kept base backup.
    pub pitr_window: Option<chrono::Duration>,
}

/// The backups a [`Policy`] value plans, takes and prunes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum View {
    /// The logical dumps: `spec.schedule` and `spec.retention`.
    #[default]
    Logical,
    /// The base backups: `spec.physical`'s schedule and retention.
    Physical,
}

impl Policy {
    /// The policy as its base backups see it: `spec.physical`'s schedule and
    /// retention, no restore drill (a base backup is proved by `verify` and
    /// `restore --target`), the same name, source and destinations.
    pub fn physical_view(&self) -> Option<Policy> {
        let physical = self.physical.as_ref()?;
        let mut view = self.clone();
        view.schedule = physical.schedule.clone();
        view.retention = physical.retention;
        view.restore_test = None;
        view.view = View::Physical;
        Some(view)
    }
}

/// What loading found: the valid policies and every problem.
#[derive(Debug, Default)]
pub struct Loaded {
    pub policies: Vec<Policy>,
    pub diagnostics: Vec<Diagnostic>,
    /// The policy files read.
    pub files: Vec<PathBuf>,
    /// The settings document, when there is one and it is valid.
    pub settings: Option<settings::Settings>,
    /// A settings document was found but is invalid (or there are two):
    /// which scheduler this host uses is not known.
    pub settings_invalid: bool,
}

impl Loaded {
    pub fn error_count(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|diagnostic| diagnostic.is_error())
            .count()
    }

    pub fn warning_count(&self) -> usize {
        self.diagnostics.len() - self.error_count()
    }
}

/// Policies as the commands that act on them need them.
#[derive(Debug)]
pub struct Selection {
    /// Every valid policy (the crontab block covers them all).
    pub all: Vec<Policy>,
    /// Those the command acts on.
    pub selected: Vec<Policy>,
    /// Errors found in the policy files.
    pub errors: usize,
    /// The settings document, when there is one and it is valid.
    pub settings: Option<settings::Settings>,
}

/// Why no policy could be selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unselected {
    /// The files have errors and no valid policy.
    Invalid,
    /// No valid policy has the name, and the files have errors.
    InvalidNamed(String),
    /// No policy has the name.
    Missing(String),
}

impl Selection {
    /// The labels the settings give `host`, for `metadata.hosts` selectors.
    pub fn host_labels(&self, host: &str) -> BTreeMap<String, String> {
        self.settings
            .as_ref()
            .map(|settings| settings.labels_for(host))
            .unwrap_or_default()
    }

    /// The selection as host `host` sees it: the policies whose
    /// `metadata.hosts` leave it out (with the host's labels from the
    /// settings) are neither acted on nor scheduled.
    pub fn for_host(self, host: &str) -> Selection {
        let labels = self.host_labels(host);
        let runs_here = |policy: &Policy| hosts::selects(&policy.hosts, host, &labels);
        Selection {
            all: self.all.into_iter().filter(runs_here).collect(),
            selected: self.selected.into_iter().filter(runs_here).collect(),
            errors: self.errors,
            settings: self.settings,
        }
    }
}

impl Loaded {
    /// Every valid policy, or with `only` the one of that name, which must be valid.
    pub fn select(&self, only: Option<&str>) -> Result<Selection, Unselected> {
        let errors = self.error_count();
        let Some(name) = only else {
            if self.policies.is_empty() && errors > 0 {
                return Err(Unselected::Invalid);
            }
            return Ok(Selection {
                selected: self.policies.clone(),
                all: self.policies.clone(),
                errors,
                settings: self.settings.clone(),
            });
        };
        let selected: Vec<Policy> = self
            .policies
            .iter()
            .filter(|policy| policy.name == name)
            .cloned()
            .collect();
        if selected.is_empty() {
            return Err(if errors > 0 {
                Unselected::InvalidNamed(name.to_owned())
            } else {
                Unselected::Missing(name.to_owned())
            });
        }
        Ok(Selection {
            all: self.policies.clone(),
            selected,
            errors,
            settings: self.settings.clone(),
        })
    }
}

/// Loads every policy under `paths` (files or folders; folders are searched
/// for `*.yaml` and `*.yml`, recursively, skipping hidden entries).
pub fn load(paths: &[PathBuf], options: Options) -> Loaded {
    let mut loaded = Loaded::default();
    for path in paths {
        discover(path, &mut loaded);
    }
    let mut seen: HashMap<String, (PathBuf, usize)> = HashMap::new();
    // The settings document: the first one, and whether one was seen at all
    // (a second is refused even when the first had errors).
    let mut first_settings: Option<(String, usize)> = None;
    let files = loaded.files.clone();
    for file in &files {
        let display = file.display().to_string();
        let text = match read_text(file, &display) {
            Ok(text) => text,
            Err(diagnostic) => {
                loaded.diagnostics.push(*diagnostic);
                continue;
            }
        };
        // Relative paths in a policy are relative to its folder, made absolute
        // so the policy means the same from cron's working directory.
        let folder = file
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        // The folder's real path, so `..` in a policy means the folder's
        // parent on disk even when the folder is reached through a symlink.
        let base = std::fs::canonicalize(folder)
            .or_else(|_| std::path::absolute(folder))
            .unwrap_or_else(|_| folder.to_owned());
        let (policies, settings, diagnostics) = load_text_all(&text, &display, &base, options);
        loaded.diagnostics.extend(diagnostics);
        for (span, found) in settings {
            if let Some((first_file, first_line)) = &first_settings {
                loaded.diagnostics.push(
                    Diagnostic::error(
                        "duplicate-settings",
                        &display,
                        "a second settings document (kind: Settings)",
                    )
                    .at(span)
                    .field("kind")
                    .hint(format!(
                        "the first is at {first_file}:{first_line}; keep one settings document across the policy paths"
                    ))
                    .with_source(&text, &[]),
                );
                loaded.settings = None;
                loaded.settings_invalid = true;
                continue;
            }
            first_settings = Some((display.clone(), span.start.line));
            loaded.settings_invalid = found.is_none();
            loaded.settings = found;
        }
        for policy in policies {
            if let Some((first_file, first_line)) = seen.get(&policy.name) {
                loaded.diagnostics.push(
                    Diagnostic::error(
                        "duplicate-name",
                        &display,
                        format!("a policy named `{}` is already defined", policy.name),
                    )
                    .at(policy.name_span)
                    .field("metadata.name")
                    .hint(format!(
                        "first defined at {}:{first_line}; policy names must be unique",
                        first_file.display()
                    ))
                    .with_source(&text, &[]),
                );
                continue;
            }
            seen.insert(
                policy.name.clone(),
                (policy.file.clone(), policy.name_span.start.line),
            );
            loaded.policies.push(policy);
        }
    }
    loaded
}

fn discover(path: &Path, loaded: &mut Loaded) {
    let display = path.display().to_string();
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) => {
            loaded.diagnostics.push(
                Diagnostic::error(
                    "unreadable",
                    &display,
                    format!("cannot read `{display}`: {}", io_reason(&error)),
                )
                .hint("name policy files or folders with -p/--policies (default: `policies/`)"),
            );
            return;
        }
    };
    if !metadata.is_dir() {
        loaded.files.push(path.to_owned());
        return;
    }
    let mut found = Vec::new();
    if let Err(error) = walk(path, &mut found) {
        loaded.diagnostics.push(Diagnostic::error(
            "unreadable",
            &display,
            format!("cannot list `{display}`: {}", io_reason(&error)),
        ));
        return;
    }
    if found.is_empty() {
        // No policies is a valid desired state: `apply` then removes the
        // crontab block. A folder that is not there at all is an error above.
        loaded.diagnostics.push(
            Diagnostic::warning(
                "no-policies",
                &display,
                format!("no policy files (*.yaml, *.yml) in `{display}`"),
            )
            .hint("policy files end in .yaml or .yml (see examples/); with none, `backup apply` removes the managed crontab block"),
        );
    }
    found.sort();
    loaded.files.extend(found);
}

fn walk(folder: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(folder)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(&path, found)?;
        } else if matches!(
            path.extension().and_then(|extension| extension.to_str()),
            Some("yaml" | "yml")
        ) {
            found.push(path);
        }
    }
    Ok(())
}

fn io_reason(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "no such file or folder".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => error.to_string(),
    }
}

/// Reads a policy file as text, refusing huge, binary and non-UTF-8 files.
fn read_text(file: &Path, display: &str) -> Result<String, Box<Diagnostic>> {
    let unreadable = |error: std::io::Error| {
        Box::new(Diagnostic::error(
            "unreadable",
            display,
            format!("cannot read `{display}`: {}", io_reason(&error)),
        ))
    };
    // Only a regular file: a FIFO would wait for a writer forever.
    let bytes = match crate::bounded::read_file(file, MAX_FILE_BYTES) {
        Ok(bytes) => bytes,
        Err(crate::bounded::Error::Io(error)) => return Err(unreadable(error)),
        Err(error @ crate::bounded::Error::NotRegular { .. }) => {
            return Err(Box::new(
                Diagnostic::error(
                    "unreadable",
                    display,
                    format!("cannot read `{display}`: {error}"),
                )
                .hint("a policy is a regular file; remove this entry or move it out of the policy folder"),
            ));
        }
        Err(crate::bounded::Error::TooLarge { .. }) => {
            return Err(Box::new(
                Diagnostic::error(
                    "too-large",
                    display,
                    format!(
                        "file is larger than {} KiB, the limit for a policy file",
                        MAX_FILE_BYTES / 1024
                    ),
                )
                .at(yaml::Span::origin())
                .hint("is this the right file? a policy is a few dozen lines"),
            ));
        }
    };
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
            let prefix = String::from_utf8_lossy(valid);
            let line = prefix.matches('\n').count() + 1;
            let column = prefix.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            let position = yaml::Position { line, column };
            return Err(Box::new(
                Diagnostic::error("not-text", display, "file is not UTF-8 text")
                    .at(yaml::Span {
                        start: position,
                        end: position,
                    })
                    .hint("policy files are UTF-8 YAML; is this a binary file?"),
            ));
        }
    };
    if let Some(index) = text.find('\0') {
        let prefix = &text[..index];
        let position = yaml::Position {
            line: prefix.matches('\n').count() + 1,
            column: prefix.rsplit('\n').next().unwrap_or("").chars().count() + 1,
        };
        return Err(Box::new(
            Diagnostic::error(
                "not-text",
                display,
                "file holds a NUL byte, so it is not text",
            )
            .at(yaml::Span {
                start: position,
                end: position,
            })
            .hint("policy files are UTF-8 YAML; is this a binary file?"),
        ));
    }
    Ok(text
        .strip_prefix('\u{feff}')
        .map(str::to_owned)
        .unwrap_or(text))
}

/// Loads the policies in one file's text. `base` is the folder relative
/// paths start from. The diagnostics come with their source lines, literal
/// secrets masked.
pub fn load_text(
    text: &str,
    file: &str,
    base: &Path,
    options: Options,
) -> (Vec<Policy>, Vec<Diagnostic>) {
    let (policies, _, diagnostics) = load_text_all(text, file, base, options);
    (policies, diagnostics)
}

/// Where a settings document's `kind` stands, and the settings when valid.
type FoundSettings = (yaml::Span, Option<settings::Settings>);

/// [`load_text`], with the settings documents found (each where its `kind`
/// stands, and the settings when valid).
pub fn load_text_all(
    text: &str,
    file: &str,
    base: &Path,
    options: Options,
) -> (Vec<Policy>, Vec<FoundSettings>, Vec<Diagnostic>) {
    let (policies, settings, diagnostics, masks) = load_documents(text, file, base, options);
    let diagnostics = diagnostics
        .into_iter()
        .map(|diagnostic| diagnostic.with_source(text, &masks))
        .collect();
    (policies, settings, diagnostics)
}

/// The spans of secret-bearing fields that hold literal text (masked in
/// snippets, their `${…}` references left visible), also when the field is
/// a list by mistake (`password: [hunter2]`).
fn secret_spans(root: &yaml::Node) -> Vec<yaml::Span> {
    let mut spans = Vec::new();
    check::walk_strings(root, &mut |place, node, text| {
        let only_references =
            secret::Template::parse(text).is_ok_and(|template| !template.has_literal_text());
        let field = place.pattern.trim_end_matches("[]");
        if check::field_matches(&check::SECRET_FIELDS, field) && !only_references {
            spans.push(node.span);
        }
    });
    spans
}

fn load_documents(
    text: &str,
    file: &str,
    base: &Path,
    options: Options,
) -> (
    Vec<Policy>,
    Vec<FoundSettings>,
    Vec<Diagnostic>,
    Vec<yaml::Span>,
) {
    let mut diagnostics = Vec::new();
    let mut masks = Vec::new();
    let mut policies = Vec::new();
    let mut settings = Vec::new();
    let documents = match yaml::parse(text) {
        Ok(documents) => documents,
        Err(error) => {
            let span = yaml::Span {
                start: error.position,
                end: error.position,
            };
            diagnostics.push(
                Diagnostic::error("syntax", file, format!("invalid YAML: {}", error.message))
                    .at(span)
                    .maybe_hint(syntax_hint(&error.message, text, error.position.line)),
            );
            return (policies, settings, diagnostics, masks);
        }
    };
    if documents.iter().all(|document| document.root.is_none()) {
        diagnostics.push(
            Diagnostic::error("empty", file, "file holds no policy")
                .at(yaml::Span::origin())
                .hint("a policy starts with `apiVersion: backup/v1` and `kind: BackupPolicy`; see examples/"),
        );
        return (policies, settings, diagnostics, masks);
    }
    for document in documents {
        for issue in &document.issues {
            diagnostics.push(
                Diagnostic::error("duplicate-key", file, issue.message.clone())
                    .at(issue.span)
                    .maybe_hint(issue.hint.clone()),
            );
        }
        let Some(root) = document.root else { continue };
        masks.extend(secret_spans(&root));
        if is_settings(&root) {
            if api_version_ok(&root, file, &mut diagnostics) {
                let span = root.entry("kind").map_or(root.span, |(key, _)| key.span);
                let found = load_settings(&root, file, base, options, &mut diagnostics);
                settings.push((span, found));
            }
        } else if let Some(policy) = load_document(&root, file, base, options, &mut diagnostics) {
            policies.push(policy);
        }
    }
    diagnostics.sort_by_key(|diagnostic| (diagnostic.line, diagnostic.column));
    (policies, settings, diagnostics, masks)
}

fn load_document(
    root: &yaml::Node,
    file: &str,
    base: &Path,
    options: Options,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Policy> {
    if !matches!(root.value, yaml::Value::Mapping(_)) {
        diagnostics.push(
            Diagnostic::error(
                "wrong-type",
                file,
                format!("a policy document must be a mapping, found {}", root.describe()),
            )
            .at(root.span)
            .hint("a policy starts with `apiVersion: backup/v1` and `kind: BackupPolicy`; see examples/"),
        );
        return None;
    }
    if !api_version_ok(root, file, diagnostics) {
        return None;
    }
    let problems = schema::check(root, file);
    let json = root.to_json();
    let document = if problems.is_empty() {
        deserialize::<PolicyDocumentSpec>(root, file, &json, diagnostics)
    } else {
        None
    };
    let mut checker = check::Checker {
        file,
        root,
        base,
        options,
        diagnostics: Vec::new(),
    };
    let policy = checker.check(&json, document);
    keep_one_problem_per_value(&problems, &mut checker.diagnostics);
    diagnostics.extend(problems);
    diagnostics.extend(checker.diagnostics);
    policy
}

/// Whether a document is a settings document (`kind: Settings`).
fn is_settings(root: &yaml::Node) -> bool {
    root.get("kind")
        .is_some_and(|kind| kind.value == yaml::Value::String(settings::KIND.to_owned()))
}

/// A settings document, through the same layers as a policy: schema, then meaning.
fn load_settings(
    root: &yaml::Node,
    file: &str,
    base: &Path,
    options: Options,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<settings::Settings> {
    let problems = schema::check_settings(root, file);
    let json = root.to_json();
    let document = if problems.is_empty() {
        deserialize::<settings::SettingsDocumentSpec>(root, file, &json, diagnostics)
    } else {
        None
    };
    let mut found = Vec::new();
    let check = settings::CheckOptions {
        check_unit_dir: options.check_unit_dir,
    };
    let resolved = settings::check(root, file, base, document, check, &mut found);
    keep_one_problem_per_value(&problems, &mut found);
    let valid = problems.is_empty() && resolved.is_some();
    diagnostics.extend(problems);
    diagnostics.extend(found);
    resolved.filter(|_| valid)
}

/// The typed document, or a diagnostic where serde stopped (the schema
/// should have caught it).
fn deserialize<T: serde::de::DeserializeOwned>(
    root: &yaml::Node,
    file: &str,
    json: &serde_json::Value,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(json.clone()) {
        Ok(document) => Some(document),
        Err(error) => {
            let field = error.path().to_string();
            let pointer = format!("/{}", field.replace('.', "/"));
            diagnostics.push(
                Diagnostic::error("invalid-value", file, error.inner().to_string())
                    .at(locate_pointer(root, &pointer).span)
                    .field(field),
            );
            None
        }
    }
}

/// A value the schema refused is one problem: the meaning checks do not
/// report it again (`keep-within: 2w` is not two errors).
fn keep_one_problem_per_value(problems: &[Diagnostic], checked: &mut Vec<Diagnostic>) {
    let refused: Vec<(Option<usize>, Option<usize>)> = problems
        .iter()
        .map(|problem| (problem.line, problem.column))
        .collect();
    checked.retain(|diagnostic| {
        !(diagnostic.is_error() && refused.contains(&(diagnostic.line, diagnostic.column)))
    });
}

/// Checks `apiVersion`, alone and first: the version decides the schema.
fn api_version_ok(root: &yaml::Node, file: &str, diagnostics: &mut Vec<Diagnostic>) -> bool {
    match root.entry("apiVersion") {
        None => {
            let start = root.span.start;
            diagnostics.push(
                Diagnostic::error("missing-api-version", file, "missing field `apiVersion`")
                    .at(yaml::Span { start, end: start })
                    .hint(format!(
                        "start the document with `apiVersion: {API_VERSION}`"
                    )),
            );
            false
        }
        Some((_, value)) if value.value != yaml::Value::String(API_VERSION.to_owned()) => {
            let written = value
                .scalar_text()
                .unwrap_or_else(|| value.describe().to_owned());
            let hint = if written.to_ascii_lowercase().starts_with("backup/") {
                format!(
                    "this version of backup reads `{API_VERSION}`; a newer backup may read `{written}`"
                )
            } else {
                format!("use `apiVersion: {API_VERSION}`")
            };
            diagnostics.push(
                Diagnostic::error(
                    "unsupported-api-version",
                    file,
                    format!("unsupported apiVersion `{written}`"),
                )
                .at(value.span)
                .field("apiVersion")
                .hint(hint),
            );
            false
        }
        Some(_) => true,
    }
}

/// The node at a `/`-separated path, or the deepest one that exists.
pub(crate) fn locate_pointer<'a>(root: &'a yaml::Node, pointer: &str) -> &'a yaml::Node {
    let mut node = root;
    for segment in pointer.split('/').filter(|segment| !segment.is_empty()) {
        let next = match &node.value {
            yaml::Value::Mapping(_) => node.get(segment),
            yaml::Value::Sequence(items) => segment
                .parse::<usize>()
                .ok()
                .and_then(|index| items.get(index)),
            _ => None,
        };
        match next {
            Some(next) => node = next,
            None => break,
        }
    }
    node
}

fn syntax_hint(message: &str, text: &str, line: usize) -> Option<String> {
    let line_text = text.lines().nth(line.saturating_sub(1)).unwrap_or("");
    if message.contains("tab")
        || line_text.starts_with('\t')
        || line_text.trim_start_matches(' ').starts_with('\t')
    {
        return Some("YAML does not allow tabs for indentation; indent with spaces".to_owned());
    }
    if message.contains("quoted scalar") || message.contains("found unexpected end of stream") {
        return Some(
            "is a quote left open? every `\"` or `'` needs its closing partner".to_owned(),
        );
    }
    if message.contains("mapping values are not allowed") {
        return Some(
            "is a `:` inside a value? quote the value, e.g. `cron: \"0 1 * * *\"`".to_owned(),
        );
    }
    if message.contains("did not find expected")
        || message.contains("unclosed")
        || message.contains("while parsing")
    {
        return Some("check the indentation and that every quote and bracket is closed".to_owned());
    }
    None
}

/// SHA-256, in hex, of the policy's normalized JSON form.
fn digest(document: &PolicyDocumentSpec) -> String {
    let json = serde_json::to_vec(document).unwrap_or_default();
    crate::inventory::metadata::hex(&Sha256::digest(&json))
}
