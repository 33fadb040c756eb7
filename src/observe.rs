//! The observe step: everything a plan is computed from, gathered once into
//! one value ([`Observed`]), as omicron's planning input is.
//!
//! It reads the destinations (through the sidecar cache), this host's drill
//! evidence, the crontab (or the systemd units or Kubernetes manifests, when
//! that is this host's scheduler) and the free space of local destinations, and asks
//! destinations whether they allow the deletes a plan wants. It decides
//! nothing: [`crate::plan::compute`] turns the value into a plan, purely,
//! and [`crate::apply`] carries the plan out. It prints nothing either;
//! what it has to say comes back as [`Observed::warnings`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use crate::inventory::{Inventory, SidecarCache};
use crate::plan::{ActionKind, CrontabInput, Plan, SchedulerInput, Scope, SystemdManager};
use crate::policy::spec::{DestinationSpec, S3Spec};
use crate::policy::{Policy, Selection, settings};
use crate::schedule::crontab::{self, Target};
use crate::schedule::{RenderedFile, SchedulerKind, systemd};
use crate::state::StateDir;
use crate::status::{Space, gather};

/// What to look at, and where.
pub struct Options<'a> {
    /// This host's state folder: drill evidence, and the paths cron's lines name.
    pub state: &'a StateDir,
    /// The sidecar cache; `None` reads every sidecar.
    pub cache: Option<&'a SidecarCache>,
    pub crontab: CrontabOptions,
    /// Also read the free space of every local destination (for `status`).
    pub space: bool,
    /// The time the crontab block is rendered for.
    pub now: DateTime<Utc>,
}

/// Whether and where the managed crontab block (or the scheduler's folder) is read.
#[derive(Debug, Clone, Default)]
pub struct CrontabOptions {
    /// `--scheduler`: this run's scheduler, whatever the settings say.
    pub scheduler: Option<SchedulerKind>,
    /// `--no-crontab`: leave the scheduler alone (crontab, units, manifests).
    pub skip: bool,
    /// A crontab file (cron.d) instead of the user's crontab.
    pub file: Option<PathBuf>,
    /// The policies were given as arguments, not as the full set.
    pub paths_given: bool,
    /// The policy paths cron's lines pass to `backup` (made absolute).
    pub policy_paths: Vec<PathBuf>,
}

/// The planning input: the actual state, as one value.
#[derive(Debug)]
pub struct Observed {
    /// What the selected policies' destinations hold, with the newest
    /// passing drill of every policy that has drills.
    pub inventory: Inventory,
    /// The crontab as found and the block the policies want.
    pub crontab: CrontabInput,
    /// Where the crontab lives, when this run manages it.
    pub crontab_target: Option<Target>,
    /// The scheduler's folder as found and as wanted, when this host's
    /// scheduler is systemd or Kubernetes (the crontab is then unmanaged).
    pub scheduler: Option<SchedulerInput>,
    /// Where the scheduler's files live, when this run manages them.
    pub scheduler_target: Option<SchedulerTarget>,
    /// Per policy, the free space of each local destination by location
    /// (with [`Options::space`]).
    pub space: BTreeMap<String, BTreeMap<String, Result<Space, String>>>,
    /// Things the user should know about what was looked at.
    pub warnings: Vec<String>,
}

/// Gathers everything `plan` (and `status`) judges for `selection`.
pub fn observe(selection: &Selection, options: &Options) -> Observed {
    let mut inventory = crate::inventory::gather(&selection.selected, options.cache);
    add_restore_tests(options.state, &selection.selected, &mut inventory);
    add_wal(&selection.selected, &mut inventory);
    let mut warnings = Vec::new();
    let (kind, why) = scheduler_of(selection.settings.as_ref(), options.crontab.scheduler);
    let (crontab, crontab_target) = if kind == SchedulerKind::Cron {
        crontab_input(selection, options, &mut warnings)
    } else {
        let reason = format!(
            "this host's scheduler is {} ({why}); the crontab is left alone",
            kind.name()
        );
        (CrontabInput::Unmanaged { reason }, None)
    };
    let (scheduler, scheduler_target) = if kind == SchedulerKind::Cron {
        (None, None)
    } else {
        let (input, target) = scheduler_input(kind, selection, options);
        (Some(input), target)
    };
    let space = if options.space {
        selection
            .selected
            .iter()
            .map(|policy| (policy.name.clone(), local_space(policy)))
            .collect()
    } else {
        BTreeMap::new()
    };
    Observed {
        inventory,
        crontab,
        crontab_target,
        scheduler,
        scheduler_target,
        space,
        warnings,
    }
}

/// Computes the plan over `observed`, after asking every destination the
/// plan would delete on whether it may (see
/// [`crate::inventory::probe_deletes`]): where it may not, those deletes are
/// held and the plan says why.
pub fn plan(
    policies: &[Policy],
    observed: &mut Observed,
    now: DateTime<Utc>,
    scope: &Scope,
) -> Plan {
    let compute = |observed: &Observed| {
        crate::plan::compute_scheduled(
            policies,
            &observed.inventory,
            &observed.crontab,
            observed.scheduler.as_ref(),
            now,
            scope,
        )
    };
    let plan = compute(observed);
    let wanted: BTreeSet<(String, String)> = plan
        .actions
        .iter()
        .filter(|action| matches!(action.kind, ActionKind::Prune | ActionKind::Cleanup))
        .filter_map(|action| Some((action.policy.clone()?, action.destination.clone()?)))
        .collect();
    if wanted.is_empty()
        || !crate::inventory::probe_deletes(policies, &mut observed.inventory, &wanted)
    {
        return plan;
    }
    compute(observed)
}

/// `validate --check-destinations` for an S3 destination: the bucket
/// answers, and the credentials may write, read back and delete there.
pub fn probe_s3(spec: &S3Spec) -> Result<(), String> {
    crate::destination::s3::S3::new(spec)
        .and_then(|store| store.check_access())
        .map_err(|error| error.to_string())
}

/// Adds the WAL archive of every policy with base backups, per destination:
/// one listing of its WAL folder each.
pub fn add_wal(policies: &[Policy], inventory: &mut Inventory) {
    for found in &mut inventory.policies {
        let Some(policy) = policies
            .iter()
            .find(|policy| policy.name == found.policy && policy.physical.is_some())
        else {
            continue;
        };
        for (spec, destination) in policy.destinations.iter().zip(&mut found.destinations) {
            destination.wal = Some(
                crate::destination::open(spec)
                    .and_then(|opened| crate::wal::list(opened.as_ref(), &policy.name))
                    .map_err(|error| error.to_string()),
            );
        }
    }
}

/// Adds when each policy's newest passing restore drill ran: from this
/// host's evidence records, and from those beside the backups (which any
/// host sees, a CI job included).
fn add_restore_tests(state: &StateDir, policies: &[Policy], inventory: &mut Inventory) {
    for policy in policies
        .iter()
        .filter(|policy| policy.restore_test.is_some())
    {
        let here = crate::restore::drill::last_passed(state.path(), &policy.name);
        let beside = inventory
            .policy(&policy.name)
            .into_iter()
            .flat_map(|found| &found.destinations)
            .filter_map(|destination| destination.listing.as_ref().ok())
            .flat_map(|listing| listing.drills.iter().copied())
            .max();
        if let Some(last) = here.max(beside) {
            inventory.restore_tests.insert(policy.name.clone(), last);
        }
    }
}

/// The free space of each of `policy`'s local destinations.
fn local_space(policy: &Policy) -> BTreeMap<String, Result<Space, String>> {
    policy
        .destinations
        .iter()
        .filter_map(|spec| match spec {
            DestinationSpec::Local(local) => Some((
                crate::destination::describe(spec),
                gather::space(&local.path),
            )),
            DestinationSpec::S3(_) => None,
        })
        .collect()
}

/// The crontab as found and the block the policies want, and where it lives.
fn crontab_input(
    selection: &Selection,
    options: &Options,
    warnings: &mut Vec<String>,
) -> (CrontabInput, Option<Target>) {
    let wanted = &options.crontab;
    let unmanaged = |reason: String| (CrontabInput::Unmanaged { reason }, None);
    if let Some(reason) = unmanaged_reason(selection, wanted) {
        return unmanaged(reason);
    }
    let target = match &wanted.file {
        Some(file) => {
            warnings.extend(crontab::file_name_warning(file));
            Target::File(std::path::absolute(file).unwrap_or_else(|_| file.clone()))
        }
        None => Target::User(None),
    };
    let found = crontab::read(&target)
        .and_then(|text| planned_block(selection, options, &target).map(|block| (text, block)));
    match found {
        Ok((text, planned_block)) => (
            CrontabInput::Found {
                target: target.describe(),
                text,
                planned_block,
            },
            Some(target),
        ),
        Err(crontab::Error::NotInstalled) => unmanaged(
            "the `crontab` program is not installed (install cron, or pass --crontab-file or --no-crontab)".to_owned(),
        ),
        Err(error) => (
            CrontabInput::Unreadable {
                target: target.describe(),
                error: error.to_string(),
            },
            Some(target),
        ),
    }
}

/// The block that runs `backup apply --policy NAME` for every valid policy.
fn planned_block(
    selection: &Selection,
    options: &Options,
    target: &Target,
) -> Result<String, crontab::Error> {
    let state = options.state;
    let invocation = crontab::Invocation {
        binary: backup_binary(),
        policy_paths: absolute_paths(&options.crontab.policy_paths),
        state_dir: state.path().to_owned(),
        log_dir: state.log_dir(),
        crontab_file: match target {
            Target::File(file) => Some(file.clone()),
            Target::User(_) => None,
        },
    };
    // A policy with base backups has a second line, at their schedule's ticks:
    // `apply` takes whichever is due.
    let lines: Vec<crontab::Line> = selection
        .all
        .iter()
        .flat_map(|policy| {
            let physical = policy.physical.as_ref().map(|physical| crontab::Line {
                policy: &policy.name,
                schedule: &physical.schedule,
                label: " base backups",
            });
            std::iter::once(crontab::Line {
                policy: &policy.name,
                schedule: &policy.schedule,
                label: "",
            })
            .chain(physical)
        })
        .collect();
    // A system crontab (cron.d) names the user each line runs as.
    let user = match target {
        Target::File(_) => Some(crontab::invoking_user().unwrap_or_else(|| "root".to_owned())),
        Target::User(_) => None,
    };
    crontab::render_block(
        &lines,
        &invocation,
        crontab::host_timezone(),
        user.as_deref(),
        options.now,
    )
}

/// Where this run's folder scheduler writes, for `apply`.
#[derive(Debug, Clone)]
pub struct SchedulerTarget {
    pub kind: SchedulerKind,
    pub folder: PathBuf,
    /// For systemd: whether it runs here, and which manager the units are for.
    pub systemd: Option<SystemdManager>,
}

/// Why this run leaves the scheduler alone, if it does (whichever it is).
fn unmanaged_reason(selection: &Selection, wanted: &CrontabOptions) -> Option<String> {
    if wanted.skip {
        return Some("--no-crontab".to_owned());
    }
    if wanted.paths_given {
        return Some("policies were given as arguments; the crontab follows the full set (-p/--policies, BACKUP_POLICIES or policies/), so no other policy loses its line".to_owned());
    }
    if selection.errors > 0 {
        return Some(format!(
            "left as is while the policy files have {} error{}, so no policy loses its line",
            selection.errors,
            if selection.errors == 1 { "" } else { "s" }
        ));
    }
    None
}

/// The scheduler this run manages, and why (for messages).
pub fn scheduler_of(
    settings: Option<&settings::Settings>,
    explicit: Option<SchedulerKind>,
) -> (SchedulerKind, String) {
    let host = crate::engine::host_name();
    let kind = settings::choose(explicit, settings, &host);
    let why = match (explicit, settings) {
        (Some(_), _) => "--scheduler or BACKUP_SCHEDULER".to_owned(),
        (None, Some(settings)) => format!(
            "the settings in {} for host {host}",
            settings.file.display()
        ),
        (None, None) => "the default".to_owned(),
    };
    (kind, why)
}

/// The folder a folder scheduler manages: systemd's unit folder, the
/// Kubernetes `out` folder (which the settings must name).
pub fn scheduler_folder(
    kind: SchedulerKind,
    settings: Option<&settings::Settings>,
) -> Result<PathBuf, String> {
    match kind {
        SchedulerKind::Cron => Err("cron keeps no folder".to_owned()),
        SchedulerKind::Systemd => Ok(settings
            .map_or_else(settings::default_unit_dir, settings::Settings::unit_dir)),
        SchedulerKind::Kubernetes => settings
            .and_then(|settings| settings.kubernetes.out.clone())
            .ok_or_else(|| "no folder for the Kubernetes manifests: set `kubernetes.out` in the settings document (kind: Settings)".to_owned()),
    }
}

/// The files a folder scheduler wants for every valid policy of
/// `selection`, each starting with the managed-by line: what `apply`
/// installs and `backup render` writes.
pub fn scheduler_files(
    kind: SchedulerKind,
    selection: &Selection,
    state: &StateDir,
    policy_paths: &[PathBuf],
    now: DateTime<Utc>,
) -> Result<Vec<RenderedFile>, String> {
    let defaults = settings::Settings::default();
    let settings = selection.settings.as_ref().unwrap_or(&defaults);
    match kind {
        SchedulerKind::Cron => Err("cron keeps no folder".to_owned()),
        SchedulerKind::Systemd => {
            let invocation = systemd::Invocation {
                binary: backup_binary(),
                policy_paths: absolute_paths(policy_paths),
                state_dir: state.path().to_owned(),
            };
            let files: Vec<PathBuf> = selection
                .all
                .iter()
                .map(|policy| {
                    std::path::absolute(&policy.file).unwrap_or_else(|_| policy.file.clone())
                })
                .collect();
            let timers: Vec<systemd::Timer> = selection
                .all
                .iter()
                .zip(&files)
                .map(|(policy, file)| systemd::Timer {
                    policy: &policy.name,
                    file,
                    schedule: &policy.schedule,
                    base_backups: policy.physical.as_ref().map(|physical| &physical.schedule),
                })
                .collect();
            let options = systemd::Options {
                randomized_delay: settings.systemd.randomized_delay,
                user_manager: !crate::state::is_root(),
            };
            systemd::render(&timers, &invocation, &options, now).map_err(|error| error.to_string())
        }
        SchedulerKind::Kubernetes => {
            let files =
                crate::schedule::kubernetes::render(&selection.all, &settings.kubernetes.manifests)
                    .map_err(|error| format!("cannot render the Kubernetes manifests: {error}"))?;
            Ok(files
                .into_iter()
                .map(|file| {
                    crate::schedule::with_managed_header(
                        file,
                        "the policies (`backup render kubernetes`)",
                    )
                })
                .collect())
        }
    }
}

/// The `backup` binary cron and systemd run: this one, by its real path.
fn backup_binary() -> PathBuf {
    std::env::current_exe()
        .and_then(|binary| binary.canonicalize())
        .unwrap_or_else(|_| PathBuf::from("backup"))
}

fn absolute_paths(paths: &[PathBuf]) -> Vec<PathBuf> {
    paths
        .iter()
        .map(|path| std::path::absolute(path).unwrap_or_else(|_| path.clone()))
        .collect()
}

/// The folder scheduler's files as found and as wanted, and where they live.
fn scheduler_input(
    kind: SchedulerKind,
    selection: &Selection,
    options: &Options,
) -> (SchedulerInput, Option<SchedulerTarget>) {
    if let Some(reason) = unmanaged_reason(selection, &options.crontab) {
        return (SchedulerInput::Unmanaged { kind, reason }, None);
    }
    let folder = match scheduler_folder(kind, selection.settings.as_ref()) {
        Ok(folder) => std::path::absolute(&folder).unwrap_or(folder),
        Err(error) => {
            return (
                SchedulerInput::Unreadable {
                    kind,
                    // No folder to name.
                    target: String::new(),
                    error,
                },
                None,
            );
        }
    };
    let target_name = folder.display().to_string();
    let systemd = (kind == SchedulerKind::Systemd).then(|| SystemdManager {
        running: systemd::is_running(),
        user: !crate::state::is_root(),
    });
    let target = SchedulerTarget {
        kind,
        folder: folder.clone(),
        systemd,
    };
    let found = crate::schedule::folder::read(&folder)
        .map_err(|error| error.to_string())
        .and_then(|(current, _)| {
            scheduler_files(
                kind,
                selection,
                options.state,
                &options.crontab.policy_paths,
                options.now,
            )
            .map(|planned| (current, planned))
        });
    match found {
        Ok((current, planned)) => (
            SchedulerInput::Found {
                kind,
                target: target_name,
                current,
                planned,
                systemd,
            },
            Some(target),
        ),
        Err(error) => (
            SchedulerInput::Unreadable {
                kind,
                target: target_name,
                error,
            },
            Some(target),
        ),
    }
}
