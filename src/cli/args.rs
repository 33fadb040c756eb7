//! Arguments more than one command takes: `--only`, the crontab's place, `--now`.

use super::output::stderrln;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::Args;

use super::GlobalArgs;
use crate::observe::{CrontabOptions, Observed};
use crate::plan::{self, ActionKind};
use crate::policy::Selection;
use crate::schedule::SchedulerKind;

/// Which kinds of action to plan or carry out.
#[derive(Debug, Args)]
pub struct OnlyArgs {
    /// Only these kinds of action, comma-separated: backup, copy, prune,
    /// cleanup, restore-test, crontab, systemd, kubernetes (`--only
    /// prune,cleanup` prunes without backing up). Retention then counts no
    /// planned backup.
    #[arg(long, value_name = "KINDS", value_delimiter = ',', value_parser = parse_kind)]
    pub only: Option<Vec<ActionKind>>,
}

impl OnlyArgs {
    pub(super) fn scope(&self) -> plan::Scope {
        plan::Scope {
            only: self.only.as_ref().map(|kinds| {
                let mut kinds = kinds.clone();
                kinds.sort();
                kinds.dedup();
                kinds
            }),
        }
    }
}

fn parse_kind(text: &str) -> Result<ActionKind, String> {
    ActionKind::from_name(text).ok_or_else(|| {
        let names: Vec<&str> = ActionKind::ALL.iter().map(|kind| kind.name()).collect();
        format!("`{text}` is no kind of action; one of {}", names.join(", "))
    })
}

/// Which scheduler this run manages.
#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// The scheduler this run manages: cron (the crontab block), systemd
    /// (units in the unit folder) or kubernetes (manifests in the settings'
    /// `kubernetes.out`). Default: what the settings document says for this
    /// host, else cron.
    #[arg(long, value_name = "KIND", env = "BACKUP_SCHEDULER", value_parser = parse_scheduler)]
    pub scheduler: Option<SchedulerKind>,
}

fn parse_scheduler(text: &str) -> Result<SchedulerKind, String> {
    SchedulerKind::from_name(text).ok_or_else(|| {
        let names: Vec<&str> = SchedulerKind::ALL.iter().map(|kind| kind.name()).collect();
        format!("`{text}` is no scheduler; one of {}", names.join(", "))
    })
}

/// Where the managed crontab block lives.
#[derive(Debug, Args)]
pub struct CrontabArgs {
    /// Manage this crontab file (e.g. in /etc/cron.d, with a user field) instead of the user's crontab.
    #[arg(long, value_name = "FILE")]
    pub crontab_file: Option<PathBuf>,
    /// Leave the crontab alone (CI, or hosts where cron is managed otherwise),
    /// or the systemd units or Kubernetes manifests when those are the scheduler.
    #[arg(long, conflicts_with = "crontab_file")]
    pub no_crontab: bool,
    #[command(flatten)]
    pub scheduler: SchedulerArgs,
}

impl CrontabArgs {
    /// How the observe step reads the crontab, for policies loaded from
    /// `paths` (none: `-p`, else `policies/`).
    pub(super) fn options(&self, global: &GlobalArgs, paths: &[PathBuf]) -> CrontabOptions {
        CrontabOptions {
            scheduler: self.scheduler.scheduler,
            skip: self.no_crontab,
            file: self.crontab_file.clone(),
            paths_given: !paths.is_empty(),
            policy_paths: global.policy_paths(paths),
        }
    }
}

/// Parses `--now`: RFC 3339 (`2026-11-25T03:00:00Z`).
pub(super) fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|error| {
            format!("`{text}` is not an RFC 3339 time like 2026-11-25T03:00:00Z: {error}")
        })
}

/// Runs the observe step for `selection` and prints its warnings.
pub(super) fn observe(
    global: &GlobalArgs,
    selection: &Selection,
    crontab: CrontabOptions,
    now: DateTime<Utc>,
    space: bool,
) -> Observed {
    let state = global.state();
    let cache = global.sidecar_cache();
    let observed = crate::observe::observe(
        selection,
        &crate::observe::Options {
            state: &state,
            cache: Some(&cache),
            crontab,
            space,
            now,
        },
    );
    for warning in &observed.warnings {
        stderrln!("warning: {warning}");
    }
    observed
}
