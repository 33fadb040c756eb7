//! The settings document (`kind: Settings`): which program runs `backup
//! apply` on each host (cron, systemd or Kubernetes), and what that program
//! needs, beside the policies in the same folders.
//!
//! Wire types end in `Spec` and become `schema/settings.v1.json`; [`check`]
//! turns a document into the resolved [`Settings`], reporting problems at
//! their position as the policy checks do. At most one settings document
//! exists across the policy paths ([`super::load`] refuses a second).
//! Reads the file system only when asked (`validate`: is the unit folder
//! writable); writes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::diagnostic::Diagnostic;
use super::hosts::glob_matches;
use super::spec::ApiVersion;
use super::units::seconds;
use super::yaml::{Node, Span, Value};
use crate::schedule::SchedulerKind;
use crate::schedule::kubernetes;

/// The `kind` of a settings document.
pub const KIND: &str = "Settings";

/// Settings for the hosts that run `backup`: the scheduler, and what it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "backup settings (backup/v1)")]
pub struct SettingsDocumentSpec {
    /// Version of the format. Always `backup/v1` for this schema.
    #[serde(rename = "apiVersion")]
    pub api_version: ApiVersion,
    /// Kind of document. Always `Settings`; at most one across the policy paths.
    pub kind: SettingsKindSpec,
    /// The settings.
    #[serde(default)]
    pub spec: SettingsSpec,
}

/// Kind of document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SettingsKindSpec {
    /// Settings for the hosts that run `backup`.
    Settings,
}

/// Which scheduler runs `backup apply`, and its options.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SettingsSpec {
    /// The program that runs `backup apply` at the policies' ticks on every
    /// host not named under `hosts`: `cron` (a managed crontab block),
    /// `systemd` (a timer and service per policy) or `kubernetes` (CronJob
    /// manifests in a folder). `--scheduler` or `BACKUP_SCHEDULER` overrides
    /// it for one run. Default: `cron`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<SchedulerSpec>,
    /// Per-host overrides, by host name (`--host`, else the kernel's) or by a
    /// glob with `*` and `?` (`db-*`). An exact name wins; else the first glob
    /// that matches, in file order. Example: `{"k8s-*": {scheduler: kubernetes}}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hosts: BTreeMap<String, HostSpec>,
    /// Options of the systemd scheduler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd: Option<SystemdSpec>,
    /// Options of the Kubernetes scheduler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesSpec>,
}

/// A scheduler's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SchedulerSpec {
    /// A managed block in the crontab.
    Cron,
    /// A `.service` and `.timer` pair per policy in a unit folder.
    Systemd,
    /// CronJob manifests in a folder of a GitOps repository.
    Kubernetes,
}

impl SchedulerSpec {
    fn kind(self) -> SchedulerKind {
        match self {
            SchedulerSpec::Cron => SchedulerKind::Cron,
            SchedulerSpec::Systemd => SchedulerKind::Systemd,
            SchedulerSpec::Kubernetes => SchedulerKind::Kubernetes,
        }
    }
}

/// What one host (or the hosts a glob matches) does differently.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HostSpec {
    /// The scheduler on this host. Default: `spec.scheduler`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<SchedulerSpec>,
    /// Free-form key/value labels of this host, for host selectors.
    /// Example: `{role: primary}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Options of the systemd scheduler.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SystemdSpec {
    /// The folder `apply` writes the units to (relative: to this file's
    /// folder). Default: `/etc/systemd/system` as root, else
    /// `~/.config/systemd/user` (the user's manager, `systemctl --user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), example = &"/etc/systemd/system")]
    pub unit_dir: Option<String>,
    /// Start each run up to this much later, at random (`RandomizedDelaySec=`),
    /// so that many hosts do not start at the same second: a number and a
    /// unit (s, m for minutes, h, d), combined if needed. Default: none.
    /// Example: `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"5m")]
    pub randomized_delay: Option<String>,
}

/// Options of the Kubernetes scheduler: CronJob manifests for a GitOps
/// repository (Argo CD or Flux applies them; `backup` never talks to a cluster).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KubernetesSpec {
    /// The folder `plan` compares and `apply` writes the manifests to
    /// (relative: to this file's folder). Example: `deploy/backup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), example = &"deploy/backup")]
    pub out: Option<String>,
    /// The namespace of every object. Default: `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"backups")]
    pub namespace: Option<String>,
    /// The container image that runs `backup`. Default: `backup:<version>`.
    /// Example: `registry.example.com/backup:0.1.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), example = &"registry.example.com/backup:0.1.0")]
    pub image: Option<String>,
    /// The Secret every `${env:NAME}` (key `NAME`) and `${file:/path}` (key:
    /// the file's name) reference is read from; you create it. Default:
    /// `backup-secrets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"backup-secrets")]
    pub secret: Option<String>,
    /// How late a missed run may still start, in seconds: after an outage one
    /// missed run starts, not one per missed tick. Default: 3600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline_seconds: Option<u32>,
    /// Finished Jobs kept per CronJob that succeeded. Default: 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successful_jobs_history_limit: Option<u32>,
    /// Finished Jobs kept per CronJob that failed. Default: 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_jobs_history_limit: Option<u32>,
    /// The container's resource requests and limits. Example:
    /// `{requests: {memory: 256Mi}, limits: {memory: 1Gi}}`. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourcesSpec>,
    /// PersistentVolumeClaims mounted into the pods, by absolute mount path:
    /// a `local` destination or an SQLite file must lie under one; a claim at
    /// `/var/lib/backup` keeps the state folder between runs. Example:
    /// `{/var/backups: backup-archive}`. Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, String>,
    /// The user and group the pod runs as (never root). Default: 10001.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<u32>,
    /// The pod's service account. Default: the namespace's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

/// A container's resource requests and limits, by resource name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ResourcesSpec {
    /// What the container asks for. Example: `{cpu: 100m, memory: 256Mi}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, String>,
    /// The most the container may use. Example: `{memory: 1Gi}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, String>,
}

/// The settings, resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The file they came from, as the user named it.
    pub file: PathBuf,
    /// Where the document's `kind` stands, for "a second one" errors.
    pub span: Span,
    /// The scheduler of hosts no entry of `hosts` names.
    pub scheduler: SchedulerKind,
    /// Per-host overrides, in file order.
    pub hosts: Vec<HostSettings>,
    pub systemd: SystemdSettings,
    pub kubernetes: KubernetesSettings,
}

/// One entry of `spec.hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSettings {
    /// A host name, or a glob with `*` and `?`.
    pub pattern: String,
    pub scheduler: Option<SchedulerKind>,
    pub labels: BTreeMap<String, String>,
}

/// `spec.systemd`, resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemdSettings {
    /// The unit folder, absolute; `None`: the default ([`default_unit_dir`]).
    pub unit_dir: Option<PathBuf>,
    /// `RandomizedDelaySec=`, in seconds.
    pub randomized_delay: Option<u64>,
}

/// `spec.kubernetes`, resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubernetesSettings {
    /// The manifests' folder, absolute; `None` when not set.
    pub out: Option<PathBuf>,
    /// What the manifests need besides the policies.
    pub manifests: kubernetes::Settings,
}

impl Default for Settings {
    /// No settings document: cron everywhere, every option at its default.
    fn default() -> Settings {
        Settings {
            file: PathBuf::new(),
            span: Span::origin(),
            scheduler: SchedulerKind::Cron,
            hosts: Vec::new(),
            systemd: SystemdSettings::default(),
            kubernetes: KubernetesSettings::default(),
        }
    }
}

impl Settings {
    /// The entry that speaks for `host`: the one naming it exactly, else the
    /// first glob (in file order) that matches it.
    pub fn host(&self, host: &str) -> Option<&HostSettings> {
        self.hosts
            .iter()
            .find(|entry| entry.pattern == host)
            .or_else(|| {
                self.hosts
                    .iter()
                    .find(|entry| is_glob(&entry.pattern) && glob_matches(&entry.pattern, host))
            })
    }

    /// The scheduler of `host`: its entry's, else `spec.scheduler`'s.
    pub fn scheduler_for(&self, host: &str) -> SchedulerKind {
        self.host(host)
            .and_then(|entry| entry.scheduler)
            .unwrap_or(self.scheduler)
    }

    /// The labels of `host` (its entry's; none without one).
    pub fn labels_for(&self, host: &str) -> BTreeMap<String, String> {
        self.host(host)
            .map(|entry| entry.labels.clone())
            .unwrap_or_default()
    }

    /// The systemd unit folder: `unit-dir`, else the default.
    pub fn unit_dir(&self) -> PathBuf {
        self.systemd
            .unit_dir
            .clone()
            .unwrap_or_else(default_unit_dir)
    }
}

/// The scheduler of this run: `explicit` (`--scheduler`, `BACKUP_SCHEDULER`),
/// else what the settings say for `host`, else cron.
pub fn choose(
    explicit: Option<SchedulerKind>,
    settings: Option<&Settings>,
    host: &str,
) -> SchedulerKind {
    explicit
        .or_else(|| settings.map(|settings| settings.scheduler_for(host)))
        .unwrap_or(SchedulerKind::Cron)
}

/// Where units go without `unit-dir`: `/etc/systemd/system` as root, else
/// the user's manager's folder (`$XDG_CONFIG_HOME/systemd/user`, else
/// `~/.config/systemd/user`).
pub fn default_unit_dir() -> PathBuf {
    crate::state::per_user_dir(
        "/etc/systemd/system",
        ("XDG_CONFIG_HOME", ".config"),
        "systemd/user",
    )
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// What the settings checks may look at beyond the text.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// Check that the unit folder is writable when this host's scheduler is
    /// systemd (`validate`).
    pub check_unit_dir: bool,
}

/// Checks a settings document that passed the schema (`document`, when it
/// deserialized) and resolves it; every problem goes to `diagnostics`.
pub(super) fn check(
    root: &Node,
    file: &str,
    base: &Path,
    document: Option<SettingsDocumentSpec>,
    options: CheckOptions,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Settings> {
    let errors_before = diagnostics.iter().filter(|d| d.is_error()).count();
    let error = |diagnostics: &mut Vec<Diagnostic>,
                 code: &'static str,
                 pointer: &str,
                 message: String,
                 hint: String| {
        diagnostics.push(
            Diagnostic::error(code, file, message)
                .at(super::locate_pointer(root, pointer).span)
                .field(pointer.trim_start_matches('/').replace('/', "."))
                .hint(hint),
        );
    };
    let json: Json = root.to_json();
    // Host names and globs.
    if let Some(hosts) = root.get("spec").and_then(|spec| spec.get("hosts"))
        && let Value::Mapping(entries) = &hosts.value
    {
        for (key, _) in entries {
            let plain: String = key.name.replace(['*', '?'], "a");
            if crate::engine::check_host_name(&plain).is_err() {
                diagnostics.push(
                    Diagnostic::error(
                        "invalid-value",
                        file,
                        format!("`{}` is neither a host name nor a glob of host names", key.name),
                    )
                    .at(key.span)
                    .field(format!("spec.hosts.{}", key.name))
                    .hint("a host name is letters, digits, `.`, `-` and `_`; `*` and `?` make it a glob (`db-*`)"),
                );
            }
        }
    }
    let randomized_delay = match json
        .pointer("/spec/systemd/randomized-delay")
        .and_then(Json::as_str)
    {
        None => None,
        Some(text) => match seconds(text) {
            Some(seconds) => Some(seconds),
            None => {
                error(
                    diagnostics,
                    "invalid-value",
                    "/spec/systemd/randomized-delay",
                    format!("`{text}` is not a duration like `30s`, `5m` or `1h30m`"),
                    "write a number and a unit (s, m for minutes, h, d), combined if needed"
                        .to_owned(),
                );
                None
            }
        },
    };
    if let Some(namespace) = json
        .pointer("/spec/kubernetes/namespace")
        .and_then(Json::as_str)
        && let Err(message) = kubernetes::check_namespace(namespace)
    {
        error(
            diagnostics,
            "invalid-value",
            "/spec/kubernetes/namespace",
            message,
            "Kubernetes namespaces are DNS labels, e.g. `backups`".to_owned(),
        );
    }
    if let Some(image) = json
        .pointer("/spec/kubernetes/image")
        .and_then(Json::as_str)
        && let Err(message) = kubernetes::check_image(image)
    {
        error(
            diagnostics,
            "invalid-value",
            "/spec/kubernetes/image",
            message,
            "write the image as `registry/name:tag`, e.g. `registry.example.com/backup:0.1.0`"
                .to_owned(),
        );
    }
    if let Some(Node {
        value: Value::Mapping(entries),
        ..
    }) = root
        .get("spec")
        .and_then(|spec| spec.get("kubernetes"))
        .and_then(|kubernetes| kubernetes.get("volumes"))
    {
        for (key, _) in entries.iter().filter(|(key, _)| !key.name.starts_with('/')) {
            diagnostics.push(
                Diagnostic::error(
                    "invalid-value",
                    file,
                    format!("`{}` is not an absolute mount path", key.name),
                )
                .at(key.span)
                .field(format!("spec.kubernetes.volumes.{}", key.name))
                .hint("a claim is mounted at an absolute path in the pod, e.g. `/var/backups: backup-archive`"),
            );
        }
    }
    let resolve = |text: &str| -> PathBuf { super::check::normalize(&base.join(text)) };
    let document = document?;
    let spec = document.spec;
    // Host entries in file order (the wire map sorts them).
    let order: Vec<String> = match root.get("spec").and_then(|spec| spec.get("hosts")) {
        Some(Node {
            value: Value::Mapping(entries),
            ..
        }) => entries.iter().map(|(key, _)| key.name.clone()).collect(),
        _ => Vec::new(),
    };
    let hosts = order
        .into_iter()
        .filter_map(|pattern| {
            spec.hosts.get(&pattern).map(|entry| HostSettings {
                scheduler: entry.scheduler.map(SchedulerSpec::kind),
                labels: entry.labels.clone(),
                pattern,
            })
        })
        .collect();
    let systemd = spec.systemd.unwrap_or_default();
    let kubernetes = spec.kubernetes.unwrap_or_default();
    let defaults = kubernetes::Settings::default();
    let settings = Settings {
        file: PathBuf::from(file),
        span: root.entry("kind").map_or(root.span, |(key, _)| key.span),
        scheduler: spec
            .scheduler
            .map_or(SchedulerKind::Cron, SchedulerSpec::kind),
        hosts,
        systemd: SystemdSettings {
            unit_dir: systemd.unit_dir.as_deref().map(resolve),
            randomized_delay,
        },
        kubernetes: KubernetesSettings {
            out: kubernetes.out.as_deref().map(resolve),
            manifests: kubernetes::Settings {
                namespace: kubernetes.namespace.unwrap_or(defaults.namespace),
                image: kubernetes.image.unwrap_or(defaults.image),
                secret: kubernetes.secret.unwrap_or(defaults.secret),
                starting_deadline_seconds: kubernetes
                    .starting_deadline_seconds
                    .unwrap_or(defaults.starting_deadline_seconds),
                successful_jobs_history_limit: kubernetes
                    .successful_jobs_history_limit
                    .unwrap_or(defaults.successful_jobs_history_limit),
                failed_jobs_history_limit: kubernetes
                    .failed_jobs_history_limit
                    .unwrap_or(defaults.failed_jobs_history_limit),
                resources: kubernetes
                    .resources
                    .map_or(defaults.resources, |resources| kubernetes::Resources {
                        requests: resources.requests,
                        limits: resources.limits,
                    }),
                volumes: kubernetes
                    .volumes
                    .into_iter()
                    .map(|(path, claim)| (PathBuf::from(path), claim))
                    .collect(),
                run_as_user: kubernetes.run_as_user.unwrap_or(defaults.run_as_user),
                service_account: kubernetes.service_account,
            },
        },
    };
    if options.check_unit_dir
        && settings.scheduler_for(&crate::engine::host_name()) == SchedulerKind::Systemd
    {
        let folder = settings.unit_dir();
        if let Err(reason) = super::check::folder_writable(&folder) {
            // Where the folder, or else the choice of systemd, is written.
            let host = crate::engine::host_name();
            let pointer = match settings.host(&host) {
                _ if systemd.unit_dir.is_some() => "/spec/systemd/unit-dir".to_owned(),
                Some(entry) if entry.scheduler.is_some() => {
                    format!("/spec/hosts/{}/scheduler", entry.pattern)
                }
                _ => "/spec/scheduler".to_owned(),
            };
            error(
                diagnostics,
                "unit-dir-not-writable",
                &pointer,
                format!(
                    "this host ({}) runs systemd, but the unit folder {} is not writable: {reason}",
                    crate::engine::host_name(),
                    folder.display()
                ),
                "run as root for /etc/systemd/system, or set `systemd.unit-dir` to a folder this user may write".to_owned(),
            );
        }
    }
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    (errors == errors_before).then_some(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_a_shell() {
        for (pattern, text, expected) in [
            ("db-*", "db-1", true),
            ("db-*", "db-", true),
            ("db-*", "web-1", false),
            ("*", "anything", true),
            ("db?", "db1", true),
            ("db?", "db12", false),
            ("*-eu-*", "k8s-eu-3", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
        ] {
            assert_eq!(glob_matches(pattern, text), expected, "{pattern} {text}");
        }
    }

    #[test]
    fn durations_read_seconds_minutes_hours_days() {
        assert_eq!(seconds("5m"), Some(300));
        assert_eq!(seconds("1h30m"), Some(5400));
        assert_eq!(seconds("45s"), Some(45));
        assert_eq!(seconds("1d"), Some(86_400));
        for bad in ["", "5", "m", "5x", "1h 5m", "-5m"] {
            assert_eq!(seconds(bad), None, "{bad}");
        }
    }

    fn settings(hosts: &[(&str, Option<SchedulerKind>)]) -> Settings {
        Settings {
            file: PathBuf::from("settings.yaml"),
            span: Span::origin(),
            scheduler: SchedulerKind::Systemd,
            hosts: hosts
                .iter()
                .map(|(pattern, scheduler)| HostSettings {
                    pattern: (*pattern).to_owned(),
                    scheduler: *scheduler,
                    labels: BTreeMap::from([("from".to_owned(), (*pattern).to_owned())]),
                })
                .collect(),
            systemd: SystemdSettings::default(),
            kubernetes: KubernetesSettings::default(),
        }
    }

    #[test]
    fn an_exact_host_wins_then_the_first_glob_then_the_default() {
        let settings = settings(&[
            ("db-*", Some(SchedulerKind::Cron)),
            ("*", Some(SchedulerKind::Kubernetes)),
            ("db-1", None),
        ]);
        // db-1's own entry sets no scheduler: the default, not a glob's.
        assert_eq!(settings.scheduler_for("db-1"), SchedulerKind::Systemd);
        assert_eq!(settings.labels_for("db-1")["from"], "db-1");
        assert_eq!(settings.scheduler_for("db-2"), SchedulerKind::Cron);
        assert_eq!(settings.labels_for("db-2")["from"], "db-*");
        assert_eq!(settings.scheduler_for("web"), SchedulerKind::Kubernetes);
        assert!(settings_without_hosts().labels_for("web").is_empty());
        assert_eq!(
            choose(Some(SchedulerKind::Cron), Some(&settings), "web"),
            SchedulerKind::Cron
        );
        assert_eq!(choose(None, None, "web"), SchedulerKind::Cron);
    }

    fn settings_without_hosts() -> Settings {
        settings(&[])
    }
}
