//! Intent: what `apply` must do so the destinations match the policies.
//!
//! [`compute`] is a pure function of the policies, the inventory, the crontab
//! as found, `now` and the kinds of action asked for ([`Scope`]): it reads
//! nothing and writes nothing, so CI can plan against any clock and tests
//! can pin every decision. Every action carries its reasons, and every
//! backup retention keeps carries the rules that keep it. [`text`] renders a plan for people, [`markdown`] for a pull-request
//! comment; the JSON form is the plan itself.

pub mod markdown;
pub mod text;
pub mod wal;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::exit::ExitStatus;
use crate::format::{human_age, human_ago, local_time};
use crate::inventory::{Inventory, PolicyInventory, RecordState};
use crate::policy::Policy;
use crate::retention::{self, Candidate};
use crate::schedule::folder::{self, Change};
use crate::schedule::{RenderedFile, SchedulerKind, crontab};

/// Version of the JSON plan format (`backup plan --format json`, `--out`).
pub const FORMAT_VERSION: u32 = 1;

/// Orphans younger than this are left alone: a backup may still be writing them.
pub const CLEANUP_GRACE: Duration = Duration::hours(1);

/// How far ahead of this host's clock another writer's may run (many hosts,
/// one bucket): a backup created up to this long after `now` counts as
/// taken for the current tick, so a host whose clock is behind does not
/// take the tick's backup a second time.
pub const CLOCK_SKEW: Duration = Duration::minutes(15);

/// The id retention sees for the backup this plan takes.
pub const PLANNED_ID: &str = "(planned)";

/// What kind of change an action makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// Take a backup onto every destination of the policy.
    Backup,
    /// Copy a kept backup to a destination that lacks it (or holds it damaged).
    Copy,
    /// Delete a backup that retention no longer keeps: sidecar first, then data.
    Prune,
    /// Delete an orphan: data without a sidecar, or a temporary left by a crash.
    Cleanup,
    /// Rewrite the managed block of the crontab.
    Crontab,
    /// Run a restore drill: restore the newest backup into a scratch target and check it.
    #[serde(rename = "restore-test")]
    RestoreTest,
    /// Create, change or remove a systemd unit (then reload systemd).
    Systemd,
    /// Create, change or remove a Kubernetes manifest.
    Kubernetes,
}

impl ActionKind {
    /// Every kind, in the order `apply` carries them out per policy (crontab last).
    pub const ALL: [ActionKind; 8] = [
        ActionKind::Cleanup,
        ActionKind::Backup,
        ActionKind::Copy,
        ActionKind::RestoreTest,
        ActionKind::Prune,
        ActionKind::Crontab,
        ActionKind::Systemd,
        ActionKind::Kubernetes,
    ];

    /// The kind's name in plans and on the command line (`restore-test`).
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Backup => "backup",
            ActionKind::Copy => "copy",
            ActionKind::Prune => "prune",
            ActionKind::Cleanup => "cleanup",
            ActionKind::Crontab => "crontab",
            ActionKind::RestoreTest => "restore-test",
            ActionKind::Systemd => "systemd",
            ActionKind::Kubernetes => "kubernetes",
        }
    }

    /// The kind of action that changes `scheduler`'s files.
    pub fn of_scheduler(scheduler: SchedulerKind) -> ActionKind {
        match scheduler {
            SchedulerKind::Cron => ActionKind::Crontab,
            SchedulerKind::Systemd => ActionKind::Systemd,
            SchedulerKind::Kubernetes => ActionKind::Kubernetes,
        }
    }

    /// The kind named `name`, as [`ActionKind::name`] spells it.
    pub fn from_name(name: &str) -> Option<ActionKind> {
        ActionKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// One change, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub kind: ActionKind,
    /// The policy; none for `crontab`.
    pub policy: Option<String>,
    /// Where: the destination (copy: the one written to), the crontab for
    /// `crontab`, none for `backup` (it goes to every destination).
    pub destination: Option<String>,
    /// The backup id, for `copy` and `prune`.
    pub backup: Option<String>,
    /// `copy`: the destination read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// `cleanup`: the object removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// `crontab`: the unified diff of the managed block; `systemd` and
    /// `kubernetes`: of the file (`object`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// `systemd` and `kubernetes`: what happens to the file `object`
    /// (`create`, `change`, `remove`); absent on the `systemd` action that
    /// reloads systemd and enables the timers after them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
    pub reasons: Vec<String>,
    /// Why this prune or cleanup is held: the destination refuses deletes
    /// with the credentials this plan ran with. Still a change (a host with
    /// delete rights carries it out); `apply` does not attempt it here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// `pg-basebackup` for an action on the policy's base backups (a
    /// `backup` action takes one); absent for its logical backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

impl Action {
    fn new(kind: ActionKind, policy: &str) -> Action {
        Action {
            kind,
            policy: Some(policy.to_owned()),
            destination: None,
            backup: None,
            from: None,
            object: None,
            diff: None,
            change: None,
            reasons: Vec::new(),
            held: None,
            format: None,
        }
    }

    /// Whether this acts on the policy's base backups.
    pub fn is_physical(&self) -> bool {
        self.format.is_some()
    }
}

/// A backup that stays, with the rules that keep it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    pub backup: String,
    pub created_at: DateTime<Utc>,
    pub rules: Vec<String>,
}

/// What the plan found about one policy, beyond its actions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyPlan {
    pub name: String,
    pub file: String,
    /// Complete backups (on at least one destination), before this plan.
    pub backups: usize,
    /// The newest complete backup, if any.
    pub newest: Option<String>,
    /// How new backups are stored: `gzip level 6`, `zstd level 3, age to 2 recipients`.
    #[serde(default)]
    pub codec: String,
    /// Every backup retention keeps (newest first), the planned one included.
    pub kept: Vec<Kept>,
    /// The plan would prune more than half of the policy's backups; `apply`
    /// refuses that without `--allow-mass-delete`.
    pub mass_delete: bool,
    pub warnings: Vec<String>,
    /// Problems that stop part of the plan (a destination that cannot be read).
    pub errors: Vec<String>,
    /// The destinations that could not be read: what they hold is not in
    /// this plan. Each also has its line in `errors`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
    /// The policy's base backups (`spec.physical`), planned by their own
    /// schedule and retention. Absent for a policy without them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical: Option<PhysicalPlan>,
}

/// What the plan found about a policy's base backups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhysicalPlan {
    /// Complete base backups (on at least one destination), before this plan.
    pub backups: usize,
    /// The newest complete base backup, if any.
    pub newest: Option<String>,
    /// Every base backup retention keeps (newest first), the planned one included.
    pub kept: Vec<Kept>,
    /// The plan would prune more than half of the base backups.
    pub mass_delete: bool,
    /// The WAL archive: what each destination holds, its gaps, the
    /// recoverable window, where WAL is kept from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal: Option<wal::WalPlan>,
}

impl PhysicalPlan {
    /// The base backups' plan, its warnings and errors moved into the policy's
    /// (said once, marked as about base backups where they differ).
    fn new(base: PolicyPlan, policy: &mut PolicyPlan) -> PhysicalPlan {
        for warning in base.warnings {
            let warning = format!("base backups: {warning}");
            if !policy.warnings.contains(&warning) {
                policy.warnings.push(warning);
            }
        }
        for error in base.errors {
            if !policy.errors.contains(&error) {
                policy.errors.push(error);
            }
        }
        policy.mass_delete |= base.mass_delete;
        PhysicalPlan {
            backups: base.backups,
            newest: base.newest,
            kept: base.kept,
            mass_delete: base.mass_delete,
            wal: None,
        }
    }
}

/// `base backups: 2, newest 20261201T020000Z`, for plans as text and markdown.
pub fn physical_line(physical: &PhysicalPlan) -> String {
    let base = match &physical.newest {
        None => "base backups: none yet".to_owned(),
        Some(newest) => format!("base backups: {}, newest {newest}", physical.backups),
    };
    match &physical.wal {
        Some(plan) => format!("{base}; {}", wal::line(plan)),
        None => base,
    }
}

/// A policy's inventory split in two: its logical backups with everything
/// else the folder holds (orphans, unreadable sidecars), and its base backups.
pub fn split_physical(found: &PolicyInventory) -> (PolicyInventory, PolicyInventory) {
    let is_base = |record: &crate::inventory::BackupRecord| {
        record.metadata.format() == crate::database::postgres::physical::FORMAT
    };
    let mut logical = PolicyInventory {
        policy: found.policy.clone(),
        destinations: Vec::new(),
    };
    let mut physical = PolicyInventory {
        policy: found.policy.clone(),
        destinations: Vec::new(),
    };
    for destination in &found.destinations {
        let (dumps, bases) = match &destination.listing {
            Err(error) => (Err(error.clone()), Err(error.clone())),
            Ok(listing) => {
                let (bases, dumps): (Vec<_>, Vec<_>) = listing
                    .backups
                    .iter()
                    .cloned()
                    .partition(|record| is_base(record));
                let mut dumps_listing = listing.clone();
                dumps_listing.backups = dumps;
                let bases_listing = crate::inventory::Listing {
                    backups: bases,
                    ..crate::inventory::Listing::default()
                };
                (Ok(dumps_listing), Ok(bases_listing))
            }
        };
        for (into, listing) in [(&mut logical, dumps), (&mut physical, bases)] {
            into.destinations
                .push(crate::inventory::DestinationInventory {
                    location: destination.location.clone(),
                    listing,
                    delete_denied: destination.delete_denied.clone(),
                    wal: destination.wal.clone(),
                });
        }
    }
    (logical, physical)
}

/// The codec of `policy`'s new backups, for people.
pub fn codec(policy: &Policy) -> String {
    let compression = crate::codec::Compression::from_spec(&policy.compression).describe();
    match &policy.encryption {
        None => compression,
        Some(crate::policy::spec::EncryptionSpec::Age(age)) => format!(
            "{compression}, age to {} recipient{}",
            age.recipients.len(),
            if age.recipients.len() == 1 { "" } else { "s" }
        ),
    }
}

/// The codec every policy had before there was a choice: not repeated in
/// the text plan.
pub const DEFAULT_CODEC: &str = "gzip level 6";

/// The crontab as found, given to [`compute`].
#[derive(Debug, Clone)]
pub enum CrontabInput {
    /// Not managed by this run (`--no-crontab`, or policy files with errors).
    Unmanaged { reason: String },
    /// Could not be read.
    Unreadable { target: String, error: String },
    /// Its whole text, and the block the policies want.
    Found {
        target: String,
        text: String,
        planned_block: String,
    },
}

/// What the plan says about the crontab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrontabPlan {
    /// `unchanged`, `update`, `unmanaged` or `error`.
    pub state: String,
    pub target: Option<String>,
    pub note: Option<String>,
    /// The block the policies want (markers included); empty when no policy is scheduled.
    #[serde(default)]
    pub planned_block: String,
}

/// A scheduler that keeps files in a folder (systemd, Kubernetes) as found,
/// given to [`compute_scheduled`].
#[derive(Debug, Clone)]
pub enum SchedulerInput {
    /// Not managed by this run, and why.
    Unmanaged { kind: SchedulerKind, reason: String },
    /// The folder could not be read, or the files not rendered.
    Unreadable {
        kind: SchedulerKind,
        target: String,
        error: String,
    },
    /// The files of ours in the folder, and those the policies want.
    Found {
        kind: SchedulerKind,
        target: String,
        current: Vec<RenderedFile>,
        planned: Vec<RenderedFile>,
        systemd: Option<SystemdManager>,
    },
}

impl SchedulerInput {
    pub fn kind(&self) -> SchedulerKind {
        match self {
            SchedulerInput::Unmanaged { kind, .. }
            | SchedulerInput::Unreadable { kind, .. }
            | SchedulerInput::Found { kind, .. } => *kind,
        }
    }
}

/// The systemd that would load the units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemdManager {
    /// systemd runs as PID 1 here: `apply` reloads it and enables the timers.
    pub running: bool,
    /// The units are for a user's manager (`systemctl --user`).
    pub user: bool,
}

/// What the plan says about a scheduler that keeps files in a folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerPlan {
    /// `systemd` or `kubernetes`.
    pub kind: String,
    /// The folder.
    pub target: Option<String>,
    /// `unchanged`, `update`, `unmanaged` or `error`.
    pub state: String,
    pub note: Option<String>,
    /// Every file the policies want there, with its text.
    #[serde(default)]
    pub files: Vec<RenderedFile>,
    /// systemd only: whether `apply` can reload it here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd: Option<SystemdManager>,
}

impl SchedulerPlan {
    /// `systemd units`, `Kubernetes manifests`: what the folder holds, for people.
    pub fn what(&self) -> &'static str {
        match self.kind.as_str() {
            "systemd" => "systemd units",
            _ => "Kubernetes manifests",
        }
    }
}

/// How many actions of each kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub backup: usize,
    pub copy: usize,
    pub prune: usize,
    pub cleanup: usize,
    pub crontab: usize,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restore_test: usize,
    /// Files of a folder scheduler (systemd units, Kubernetes manifests)
    /// to create, change or remove.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub scheduler: usize,
    /// Prunes and cleanups held because a destination refuses deletes
    /// (not counted in `prune` and `cleanup`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub held: usize,
}

fn is_zero(count: &usize) -> bool {
    *count == 0
}

impl Summary {
    /// Every change, held ones included.
    pub fn changes(&self) -> usize {
        self.attemptable() + self.held
    }

    /// The changes `apply` attempts here (held ones are not).
    pub fn attemptable(&self) -> usize {
        self.backup
            + self.copy
            + self.prune
            + self.cleanup
            + self.crontab
            + self.restore_test
            + self.scheduler
    }
}

/// The whole plan: what `plan` prints and `apply` carries out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: u32,
    pub now: DateTime<Utc>,
    /// SHA-256 over the policies and the inventory the plan was computed
    /// from; `apply PLANFILE` refuses the plan when it no longer matches.
    pub fingerprint: String,
    pub policies: Vec<PolicyPlan>,
    /// In the order `apply` carries them out.
    pub actions: Vec<Action>,
    pub crontab: CrontabPlan,
    /// The scheduler's folder when it is systemd or Kubernetes (the crontab
    /// is then not managed); absent for cron.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<SchedulerPlan>,
    pub summary: Summary,
    /// The kinds of action this plan was limited to (`--only`); absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only: Option<Vec<ActionKind>>,
}

impl Plan {
    /// Whether anything differs from the policies, held changes included.
    pub fn has_changes(&self) -> bool {
        self.summary.changes() > 0
    }

    /// Whether `apply` has anything to attempt here.
    pub fn has_attemptable_changes(&self) -> bool {
        self.summary.attemptable() > 0
    }

    pub fn has_errors(&self) -> bool {
        self.scheduler_failed()
            || self.crontab.state == "error"
            || self.policies.iter().any(|policy| !policy.errors.is_empty())
    }

    /// Errors other than destinations that could not be read, which
    /// `plan --allow-unreadable` lets through (saying what it did not see).
    pub fn has_errors_beyond_unreadable(&self) -> bool {
        self.scheduler_failed()
            || self.crontab.state == "error"
            || self
                .policies
                .iter()
                .any(|policy| !policy.errors.is_empty() && policy.unreadable.is_empty())
    }

    /// How `plan` ends: 1 on errors (a destination that cannot be read too,
    /// unless `allow_unreadable`); with `detailed`, 2 when something differs
    /// or the plan could not read everything (it cannot say nothing does),
    /// else 0.
    pub fn exit_status(&self, detailed: bool, allow_unreadable: bool) -> ExitStatus {
        let errors = if allow_unreadable {
            self.has_errors_beyond_unreadable()
        } else {
            self.has_errors()
        };
        if errors {
            ExitStatus::Failure
        } else if detailed && (self.has_changes() || !self.is_complete()) {
            ExitStatus::ChangesPending
        } else {
            ExitStatus::Success
        }
    }

    fn scheduler_failed(&self) -> bool {
        self.scheduler
            .as_ref()
            .is_some_and(|scheduler| scheduler.state == "error")
    }

    /// `policy: location` of every destination the plan could not read.
    pub fn unseen(&self) -> Vec<String> {
        self.policies
            .iter()
            .flat_map(|policy| {
                policy
                    .unreadable
                    .iter()
                    .map(move |location| format!("{}: {location}", policy.name))
            })
            .collect()
    }

    /// Whether the plan could read every destination: only a complete plan
    /// may say that nothing differs.
    pub fn is_complete(&self) -> bool {
        self.policies
            .iter()
            .all(|policy| policy.unreadable.is_empty())
    }
}

/// Which kinds of action a plan may hold (`--only`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope {
    /// None: every kind.
    pub only: Option<Vec<ActionKind>>,
}

impl Scope {
    pub fn allows(&self, kind: ActionKind) -> bool {
        self.only.as_ref().is_none_or(|only| only.contains(&kind))
    }
}

/// Computes the plan, limited to the kinds `scope` allows. Without
/// `backup`, retention is computed over the backups there are (none is
/// planned), so a prune-only run removes exactly what retention drops today.
pub fn compute(
    policies: &[Policy],
    inventory: &Inventory,
    crontab: &CrontabInput,
    now: DateTime<Utc>,
    scope: &Scope,
) -> Plan {
    compute_scheduled(policies, inventory, crontab, None, now, scope)
}

/// [`compute`], with a scheduler that keeps files in a folder (systemd,
/// Kubernetes): one action per file that differs, and for systemd one more
/// that reloads it and enables the timers.
pub fn compute_scheduled(
    policies: &[Policy],
    inventory: &Inventory,
    crontab: &CrontabInput,
    scheduler: Option<&SchedulerInput>,
    now: DateTime<Utc>,
    scope: &Scope,
) -> Plan {
    let mut policy_plans = Vec::new();
    let mut actions = Vec::new();
    let mut ordered: Vec<&Policy> = policies.iter().collect();
    ordered.sort_by(|left, right| left.name.cmp(&right.name));
    for policy in ordered {
        let empty = PolicyInventory {
            policy: policy.name.clone(),
            destinations: Vec::new(),
        };
        let found = inventory.policy(&policy.name).unwrap_or(&empty);
        let last_drill = inventory.restore_tests.get(&policy.name).copied();
        let (mut policy_plan, mut policy_actions) = match policy.physical_view() {
            None => plan_policy(policy, found, last_drill, now, scope),
            // Dumps and base backups share the folder; each is planned by its own rules.
            Some(view) => {
                let (logical, physical) = split_physical(found);
                let (mut plan, actions) = plan_policy(policy, &logical, last_drill, now, scope);
                let (base, mut base_actions) = plan_policy(&view, &physical, None, now, scope);
                for action in &mut base_actions {
                    action.format = Some(crate::database::postgres::physical::FORMAT.to_owned());
                }
                let (wal, wal_prunes) = wal::plan(policy, &physical, &base.kept, now);
                // WAL retention holds itself while a destination cannot be read.
                base_actions.extend(wal_prunes);
                let mut physical_plan = PhysicalPlan::new(base, &mut plan);
                physical_plan.wal = Some(wal);
                plan.physical = Some(physical_plan);
                let mut merged = actions;
                merged.extend(base_actions);
                (plan, merged)
            }
        };
        policy_plan.warnings.dedup();
        policy_actions.retain(|action| scope.allows(action.kind));
        policy_plans.push(policy_plan);
        actions.extend(policy_actions);
    }
    let out_of_scope = CrontabInput::Unmanaged {
        reason: "--only leaves out crontab".to_owned(),
    };
    let in_scope = if scope.allows(ActionKind::Crontab) {
        crontab
    } else {
        &out_of_scope
    };
    let crontab_plan = match in_scope {
        CrontabInput::Unmanaged { reason } => CrontabPlan {
            state: "unmanaged".to_owned(),
            target: None,
            note: Some(reason.clone()),
            planned_block: String::new(),
        },
        CrontabInput::Unreadable { target, error } => CrontabPlan {
            state: "error".to_owned(),
            target: Some(target.clone()),
            note: Some(error.clone()),
            planned_block: String::new(),
        },
        CrontabInput::Found {
            target,
            text,
            planned_block,
        } => match crontab::find_block(text) {
            Err(error) => CrontabPlan {
                state: "error".to_owned(),
                target: Some(target.clone()),
                note: Some(error.to_string()),
                planned_block: planned_block.clone(),
            },
            Ok(range) => {
                let current = range.map_or("", |range| &text[range]);
                let changed = current != planned_block;
                if changed {
                    actions.push(Action {
                        kind: ActionKind::Crontab,
                        policy: None,
                        destination: Some(target.clone()),
                        backup: None,
                        from: None,
                        object: None,
                        diff: Some(crontab::diff(current, planned_block)),
                        change: None,
                        held: None,
                        format: None,
                        reasons: vec![if current.is_empty() {
                            "the managed block is not installed yet".to_owned()
                        } else if planned_block.is_empty() {
                            "no policy is scheduled any more; the block is removed".to_owned()
                        } else {
                            "the managed block differs from the policies".to_owned()
                        }],
                    });
                }
                CrontabPlan {
                    state: if changed { "update" } else { "unchanged" }.to_owned(),
                    target: Some(target.clone()),
                    note: None,
                    planned_block: planned_block.clone(),
                }
            }
        },
    };
    let scheduler_plan = scheduler.map(|input| plan_scheduler(input, scope, &mut actions));
    let mut summary = Summary::default();
    for action in &actions {
        let slot = match action.kind {
            _ if action.held.is_some() => &mut summary.held,
            ActionKind::Backup => &mut summary.backup,
            ActionKind::Copy => &mut summary.copy,
            ActionKind::Prune => &mut summary.prune,
            ActionKind::Cleanup => &mut summary.cleanup,
            ActionKind::Crontab => &mut summary.crontab,
            ActionKind::RestoreTest => &mut summary.restore_test,
            // Reloading systemd follows the files; it is no change of its own.
            ActionKind::Systemd | ActionKind::Kubernetes if action.change.is_none() => continue,
            ActionKind::Systemd | ActionKind::Kubernetes => &mut summary.scheduler,
        };
        *slot += 1;
    }
    Plan {
        format_version: FORMAT_VERSION,
        now,
        fingerprint: fingerprint_scheduled(policies, inventory, crontab, scheduler),
        policies: policy_plans,
        actions,
        crontab: crontab_plan,
        scheduler: scheduler_plan,
        summary,
        only: scope.only.clone(),
    }
}

/// The plan of a folder scheduler, its actions pushed onto `actions`.
fn plan_scheduler(
    input: &SchedulerInput,
    scope: &Scope,
    actions: &mut Vec<Action>,
) -> SchedulerPlan {
    let kind = input.kind();
    let mut plan = SchedulerPlan {
        kind: kind.name().to_owned(),
        target: None,
        state: "unmanaged".to_owned(),
        note: None,
        files: Vec::new(),
        systemd: None,
    };
    let action_kind = ActionKind::of_scheduler(kind);
    if !scope.allows(action_kind) {
        plan.note = Some(format!("--only leaves out {}", action_kind.name()));
        return plan;
    }
    match input {
        SchedulerInput::Unmanaged { reason, .. } => plan.note = Some(reason.clone()),
        SchedulerInput::Unreadable { target, error, .. } => {
            plan.state = "error".to_owned();
            plan.target = (!target.is_empty()).then(|| target.clone());
            plan.note = Some(error.clone());
        }
        SchedulerInput::Found {
            target,
            current,
            planned,
            systemd,
            ..
        } => {
            let changes = folder::changes(current, planned);
            for change in &changes {
                let mut action = Action::new(action_kind, "");
                action.policy = None;
                action.destination = Some(target.clone());
                action.object = Some(change.name.clone());
                action.diff = Some(change.diff.clone());
                action.change = Some(change.change);
                action.reasons = vec![
                    match change.change {
                        Change::Create => "not installed yet",
                        Change::Change => "differs from the policies",
                        Change::Remove => "no policy needs it any more",
                    }
                    .to_owned(),
                ];
                actions.push(action);
            }
            if let Some(manager) = systemd
                && !changes.is_empty()
            {
                let mut action = Action::new(action_kind, "");
                action.policy = None;
                action.destination = Some(target.clone());
                let timers: Vec<&str> = planned
                    .iter()
                    .map(|file| file.name.as_str())
                    .filter(|name| name.ends_with(".timer"))
                    .collect();
                let systemctl = if manager.user {
                    "systemctl --user"
                } else {
                    "systemctl"
                };
                action.reasons = vec![if manager.running {
                    format!(
                        "`{systemctl} daemon-reload`, then `{systemctl} enable --now` {}",
                        if timers.is_empty() {
                            "no timer".to_owned()
                        } else {
                            timers.join(", ")
                        }
                    )
                } else {
                    format!(
                        "systemd is not running as PID 1 here: apply writes the units and reloads nothing; run `{systemctl} daemon-reload` and `{systemctl} enable --now` the timers where it runs"
                    )
                }];
                actions.push(action);
            }
            plan.state = if changes.is_empty() {
                "unchanged"
            } else {
                "update"
            }
            .to_owned();
            plan.target = Some(target.clone());
            plan.files = planned.clone();
            plan.systemd = *systemd;
        }
    }
    plan
}

/// A backup id as found across a policy's destinations.
struct Found<'a> {
    created_at: DateTime<Utc>,
    /// Destinations (index, location) where it is complete.
    complete: Vec<(usize, &'a str)>,
    /// Destinations where its sidecar is there but the data is not as recorded.
    damaged: Vec<(usize, &'a str, RecordState)>,
    /// The SHA-256 its sidecar records on each destination that holds it.
    sha256: Vec<(usize, &'a str)>,
}

fn plan_policy(
    policy: &Policy,
    inventory: &PolicyInventory,
    last_drill: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    scope: &Scope,
) -> (PolicyPlan, Vec<Action>) {
    let name = policy.name.as_str();
    let mut plan = PolicyPlan {
        name: name.to_owned(),
        file: policy.file.display().to_string(),
        backups: 0,
        newest: None,
        codec: codec(policy),
        kept: Vec::new(),
        mass_delete: false,
        warnings: Vec::new(),
        errors: Vec::new(),
        unreadable: Vec::new(),
        physical: None,
    };
    let mut backups = Vec::new();
    let mut copies = Vec::new();
    let mut prunes = Vec::new();
    let mut cleanups = Vec::new();

    // Gather every id across the readable destinations.
    let mut found: BTreeMap<&str, Found> = BTreeMap::new();
    // Safety backups taken before restores: never the policy's backups.
    let mut pre_restore: BTreeMap<&str, Found> = BTreeMap::new();
    let mut readable = Vec::new();
    let mut newest_partial: Option<DateTime<Utc>> = None;
    // Per destination, every id it holds anything under, in any form (a
    // backup, a safety backup, an unreadable sidecar, an entry that is not
    // a file): no copy ever goes where its id is taken by something else.
    // (Orphans do not count: the copy adopts data that is this backup's,
    // byte for byte, and refuses other data.)
    let mut taken: BTreeMap<usize, BTreeMap<&str, &str>> = BTreeMap::new();
    let mut young_orphans = 0;
    for (index, destination) in inventory.destinations.iter().enumerate() {
        let location = destination.location.as_str();
        let listing = match &destination.listing {
            Ok(listing) => listing,
            Err(error) => {
                plan.errors.push(format!("cannot read {location}: {error}"));
                plan.unreadable.push(location.to_owned());
                continue;
            }
        };
        readable.push((index, location));
        for record in &listing.backups {
            let map = if record.metadata.is_pre_restore() {
                &mut pre_restore
            } else {
                &mut found
            };
            let entry = map
                .entry(record.metadata.id.as_str())
                .or_insert_with(|| Found {
                    created_at: record.metadata.created_at,
                    complete: Vec::new(),
                    damaged: Vec::new(),
                    sha256: Vec::new(),
                });
            entry
                .sha256
                .push((index, record.metadata.artifact.sha256.as_str()));
            taken.entry(index).or_default().insert(
                record.metadata.id.as_str(),
                if record.metadata.is_pre_restore() {
                    "a pre-restore safety backup"
                } else {
                    "a backup"
                },
            );
            match record.state {
                RecordState::Complete => entry.complete.push((index, location)),
                state => entry.damaged.push((index, location, state)),
            }
        }
        for (object, reason) in &listing.unreadable {
            plan.warnings.push(format!(
                "sidecar {object} on {location} cannot be read ({reason}); it is left as is"
            ));
        }
        for (object, reason) in &listing.unexpected {
            plan.warnings
                .push(format!("{object} on {location}: {reason}"));
        }
        for (object, what) in listing
            .unreadable
            .iter()
            .map(|(object, _)| (object, "an unreadable sidecar"))
            .chain(
                listing
                    .unexpected
                    .iter()
                    .map(|(object, _)| (object, "an entry that is not a file")),
            )
        {
            if let Some(id) = object
                .split('.')
                .next()
                .filter(|id| crate::inventory::is_id(id))
            {
                taken.entry(index).or_default().entry(id).or_insert(what);
            }
        }
        for orphan in &listing.orphans {
            let written = orphan.modified.unwrap_or(now);
            if crate::inventory::names::is_partial(&orphan.name)
                || crate::inventory::is_claim(&orphan.name)
            {
                let started =
                    crate::inventory::id_time(orphan.name.split('.').next().unwrap_or_default())
                        .unwrap_or(written);
                newest_partial = newest_partial.max(Some(started));
            }
            if now - written < CLEANUP_GRACE {
                young_orphans += 1;
                continue;
            }
            let mut action = Action::new(ActionKind::Cleanup, name);
            action.destination = Some(location.to_owned());
            action.object = Some(orphan.name.clone());
            action.reasons = vec![
                orphan.reason.to_owned(),
                format!(
                    "{} bytes, last written {}",
                    orphan.size,
                    human_ago(now - written)
                ),
            ];
            cleanups.push(action);
        }
    }
    if young_orphans > 0 {
        plan.warnings.push(format!(
            "{young_orphans} unfinished object{} younger than {} left alone (a backup may still be writing)",
            plural(young_orphans),
            human_age(CLEANUP_GRACE)
        ));
    }

    let complete: Vec<(&str, &Found)> = found
        .iter()
        .filter(|(_, entry)| !entry.complete.is_empty())
        .map(|(id, entry)| (*id, entry))
        .collect();
    let (future, past): (Vec<_>, Vec<_>) = complete
        .iter()
        .partition(|(_, entry)| entry.created_at > now);
    plan.backups = complete.len();
    let newest = past
        .iter()
        .max_by_key(|(id, entry)| (entry.created_at, *id))
        .copied();
    plan.newest = newest.map(|(id, _)| id.to_owned());

    // backup: a tick has passed since the newest complete backup.
    let schedule = &policy.schedule;
    let tick = schedule.latest_at_or_before(now);
    if readable.is_empty() {
        if !inventory.destinations.is_empty() {
            plan.errors
                .push("no destination can be read; nothing is planned".to_owned());
        }
    } else {
        // Another writer's clock may run a little ahead of this one's: its
        // backup, up to CLOCK_SKEW after `now`, already covers this tick.
        let covered_ahead = tick.is_some_and(|tick| {
            future
                .iter()
                .any(|(_, entry)| entry.created_at >= tick && entry.created_at - now <= CLOCK_SKEW)
        });
        let due_reason = match (newest, tick) {
            _ if covered_ahead => None,
            (None, _) => Some("no backup exists yet".to_owned()),
            (Some((id, entry)), Some(tick)) if entry.created_at < tick => Some(format!(
                "tick {} ({}) has passed since the newest backup {id} ({})",
                local_time(tick, schedule.timezone()),
                schedule_text(policy),
                local_time(entry.created_at, schedule.timezone()),
            )),
            _ => None,
        };
        if let Some(reason) = due_reason.filter(|_| scope.allows(ActionKind::Backup)) {
            let mut action = Action::new(ActionKind::Backup, name);
            action.reasons.push(reason);
            if let Some(next) = schedule.next_after(now) {
                action.reasons.push(format!(
                    "next tick {}",
                    local_time(next, schedule.timezone())
                ));
            }
            backups.push(action);
        }
    }
    let planned_backup = !backups.is_empty();

    // Retention over the complete backups, with the one this plan takes.
    let mut candidates: Vec<Candidate> = past
        .iter()
        .map(|(id, entry)| Candidate {
            id: (*id).to_owned(),
            created_at: entry.created_at,
        })
        .collect();
    if planned_backup {
        candidates.push(Candidate {
            id: PLANNED_ID.to_owned(),
            created_at: now,
        });
    }
    let verdicts = retention::decide(&policy.retention, schedule.timezone(), &candidates);
    // The backup that is newest once the planned one (if any) has succeeded:
    // never pruned, whatever the retention says.
    let protected = if planned_backup {
        Some(PLANNED_ID)
    } else {
        newest.map(|(id, _)| id)
    };
    for (id, entry) in &future {
        plan.kept.push(Kept {
            backup: (*id).to_owned(),
            created_at: entry.created_at,
            rules: vec![format!(
                "created in the future ({}); kept until then",
                entry.created_at.to_rfc3339()
            )],
        });
        plan.warnings.push(format!(
            "backup {id} was created at {}, after now; check the clock of the host that took it",
            entry.created_at.to_rfc3339()
        ));
    }
    let mut expired = Vec::new();
    for verdict in &verdicts {
        let mut rules: Vec<String> = verdict.keep.iter().map(ToString::to_string).collect();
        if Some(verdict.id.as_str()) == protected && rules.is_empty() {
            rules.push("newest complete backup (always kept)".to_owned());
        }
        if rules.is_empty() {
            expired.push(verdict);
        } else {
            plan.kept.push(Kept {
                backup: verdict.id.clone(),
                created_at: verdict.created_at,
                rules,
            });
        }
    }
    plan.kept.sort_by(|left, right| {
        (right.created_at, &right.backup).cmp(&(left.created_at, &left.backup))
    });

    let unreadable = readable.len() < inventory.destinations.len();
    // When this plan backs up, its prunes wait for that backup anyway.
    let failed_attempt = newest_partial.filter(|started| {
        !planned_backup && newest.is_none_or(|(_, entry)| *started > entry.created_at)
    });
    let hold_prunes = if !policy.retention.keeps_something() {
        Some("the retention keeps nothing, so nothing is pruned".to_owned())
    } else if unreadable {
        Some("a destination cannot be read, so nothing is pruned for this policy".to_owned())
    } else {
        failed_attempt.map(|started| {
            format!(
                "the latest attempt ({}) did not finish, so nothing is pruned until a backup succeeds",
                local_time(started, schedule.timezone())
            )
        })
    };
    if let Some(reason) = &hold_prunes
        && !expired.is_empty()
    {
        plan.warnings.push(format!(
            "{reason}; {} backup{} retention would prune {} kept for now",
            expired.len(),
            plural(expired.len()),
            if expired.len() == 1 { "is" } else { "are" }
        ));
    }
    if hold_prunes.is_none() {
        for verdict in &expired {
            let Some(entry) = found.get(verdict.id.as_str()) else {
                continue;
            };
            for location in holders(entry) {
                let mut action = Action::new(ActionKind::Prune, name);
                action.destination = Some(location.to_owned());
                action.backup = Some(verdict.id.clone());
                action.reasons = verdict.not_kept.clone();
                prunes.push(action);
            }
        }
        // A backup damaged everywhere is no backup; once it is older than
        // every kept one, nothing can want it.
        let oldest_kept = plan.kept.iter().map(|kept| kept.created_at).min();
        for (id, entry) in found.iter().filter(|(_, entry)| entry.complete.is_empty()) {
            if oldest_kept.is_some_and(|oldest| entry.created_at < oldest) {
                for (_, location, state) in &entry.damaged {
                    let mut action = Action::new(ActionKind::Prune, name);
                    action.destination = Some((*location).to_owned());
                    action.backup = Some((*id).to_owned());
                    action.reasons = vec![format!(
                        "damaged on every destination ({location}: {}) and older than every kept backup",
                        state.describe()
                    )];
                    prunes.push(action);
                }
            } else {
                plan.warnings.push(format!(
                    "backup {id} is damaged on every destination ({}); it is not counted and left as is",
                    entry
                        .damaged
                        .iter()
                        .map(|(_, location, state)| format!("{location}: {}", state.describe()))
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
            }
        }
    }
    // copy: a kept backup missing (or damaged) on a readable destination.
    for kept in &plan.kept {
        let Some(entry) = found.get(kept.backup.as_str()) else {
            continue;
        };
        let Some((source, from)) = entry.complete.first() else {
            continue;
        };
        let sha256 = |at: usize| {
            entry
                .sha256
                .iter()
                .find(|(held, _)| *held == at)
                .map(|(_, sha256)| *sha256)
        };
        for (index, location) in &readable {
            if entry.complete.iter().any(|(held, _)| held == index) {
                continue;
            }
            let damaged = entry
                .damaged
                .iter()
                .find(|(held, _, _)| held == index)
                .filter(|_| sha256(*index) == sha256(*source));
            // Another object under this id here (a safety backup, another
            // backup's damaged sidecar, an orphan): never replaced.
            if damaged.is_none()
                && let Some(what) = taken
                    .get(index)
                    .and_then(|ids| ids.get(kept.backup.as_str()))
            {
                plan.warnings.push(format!(
                    "backup {} is kept but not copied to {location}: {what} there has the same id, and nothing is ever replaced",
                    kept.backup
                ));
                continue;
            }
            let mut action = Action::new(ActionKind::Copy, name);
            action.destination = Some((*location).to_owned());
            action.backup = Some(kept.backup.clone());
            action.from = Some((*from).to_owned());
            action.reasons = vec![match damaged {
                Some((_, _, state)) => format!(
                    "kept ({}) but damaged here: {}",
                    kept.rules.join(", "),
                    state.describe()
                ),
                None => format!("kept ({}) but missing here", kept.rules.join(", ")),
            }];
            copies.push(action);
        }
    }

    // Backups pruned, damaged ones included (their data may still be worth a look).
    let pruned: std::collections::BTreeSet<&str> = prunes
        .iter()
        .filter_map(|action| action.backup.as_deref())
        .collect();
    // Counting the planned backup, so keep-last 1 replaces one backup by
    // another; and at least three, so a small retention catching up after a
    // failed night is not stuck.
    let total = found.len() + usize::from(planned_backup);
    if pruned.len() * 2 > total && pruned.len() > 2 {
        plan.mass_delete = true;
        plan.warnings.push(format!(
            "this plan prunes {} of {} backups (more than half); apply refuses it without --allow-mass-delete",
            pruned.len(),
            total
        ));
    }

    // Pre-restore safety backups: their own short retention, outside the
    // policy's; never copied, never due, never counted as its backups.
    let candidates: Vec<Candidate> = pre_restore
        .iter()
        .map(|(id, entry)| Candidate {
            id: (*id).to_owned(),
            created_at: entry.created_at,
        })
        .collect();
    for (candidate, verdict) in retention::decide_pre_restore(&candidates, now) {
        match verdict {
            Ok(rule) => plan.kept.push(Kept {
                backup: candidate.id,
                created_at: candidate.created_at,
                rules: vec![rule],
            }),
            Err(_) if unreadable => {}
            Err(reason) => {
                let Some(entry) = pre_restore.get(candidate.id.as_str()) else {
                    continue;
                };
                for location in holders(entry) {
                    let mut action = Action::new(ActionKind::Prune, name);
                    action.destination = Some(location.to_owned());
                    action.backup = Some(candidate.id.clone());
                    action.reasons = vec![reason.clone()];
                    prunes.push(action);
                }
            }
        }
    }
    plan.kept.sort_by(|left, right| {
        (right.created_at, &right.backup).cmp(&(left.created_at, &left.backup))
    });

    // Deletes a destination refuses are held, and the plan says so: they
    // are still changes (a host with delete rights carries them out).
    for destination in &inventory.destinations {
        let Some(reason) = &destination.delete_denied else {
            continue;
        };
        let mut held = 0;
        for action in prunes.iter_mut().chain(cleanups.iter_mut()) {
            if action.destination.as_deref() == Some(destination.location.as_str()) {
                action.held = Some(format!(
                    "{} refuses deletes with these credentials",
                    destination.location
                ));
                held += 1;
            }
        }
        if held > 0 {
            plan.warnings.push(format!(
                "{} refuses deletes, so {held} planned deletion{} there (prunes and cleanups) {} held: {reason}; give the credentials delete rights (s3:DeleteObject)",
                destination.location,
                plural(held),
                if held == 1 { "is" } else { "are" }
            ));
        }
    }

    // restore-test: a tick of the drill schedule has passed since the last passing drill.
    let mut drills = Vec::new();
    if let Some(drill) = &policy.restore_test
        && (newest.is_some() || planned_backup)
        && !readable.is_empty()
    {
        let reason = match (last_drill, drill.latest_at_or_before(now)) {
            (None, _) => Some("no restore drill has passed yet".to_owned()),
            (Some(last), Some(tick)) if last < tick => Some(format!(
                "tick {} ({} {}) has passed since the last passing drill ({})",
                local_time(tick, drill.timezone()),
                drill.expression(),
                drill.timezone(),
                local_time(last, drill.timezone())
            )),
            _ => None,
        };
        if let Some(reason) = reason {
            let mut action = Action::new(ActionKind::RestoreTest, name);
            action.reasons.push(reason);
            action.reasons.push(if planned_backup {
                "restores the backup this run takes into a scratch target".to_owned()
            } else {
                format!(
                    "restores the newest backup{} into a scratch target",
                    newest.map(|(id, _)| format!(" ({id})")).unwrap_or_default()
                )
            });
            drills.push(action);
        }
    }

    prunes.sort_by(|left, right| {
        (&left.backup, &left.destination).cmp(&(&right.backup, &right.destination))
    });
    copies.sort_by(|left, right| {
        (&left.backup, &left.destination).cmp(&(&right.backup, &right.destination))
    });
    cleanups.sort_by(|left, right| {
        (&left.destination, &left.object).cmp(&(&right.destination, &right.object))
    });
    // Cleanups first: a dead temporary must not stand in a copy's way.
    let mut actions = cleanups;
    actions.extend(backups);
    actions.extend(copies);
    actions.extend(drills);
    actions.extend(prunes);
    (plan, actions)
}

/// Destinations that hold anything of a backup (complete or damaged).
fn holders<'a>(entry: &Found<'a>) -> Vec<&'a str> {
    let mut locations: Vec<(usize, &str)> = entry
        .complete
        .iter()
        .copied()
        .chain(
            entry
                .damaged
                .iter()
                .map(|(index, location, _)| (*index, *location)),
        )
        .collect();
    locations.sort();
    locations
        .into_iter()
        .map(|(_, location)| location)
        .collect()
}

/// SHA-256 over everything a plan is computed from, except the clock.
pub fn fingerprint(policies: &[Policy], inventory: &Inventory, crontab: &CrontabInput) -> String {
    fingerprint_scheduled(policies, inventory, crontab, None)
}

/// [`fingerprint`], also over a folder scheduler's files as found and as
/// wanted (without one, the same as [`fingerprint`]).
pub fn fingerprint_scheduled(
    policies: &[Policy],
    inventory: &Inventory,
    crontab: &CrontabInput,
    scheduler: Option<&SchedulerInput>,
) -> String {
    let mut hasher = Sha256::new();
    let mut ordered: Vec<&Policy> = policies.iter().collect();
    ordered.sort_by(|left, right| left.name.cmp(&right.name));
    for policy in ordered {
        hasher.update(format!("policy {} {}\n", policy.name, policy.digest));
        if policy.restore_test.is_some()
            && let Some(last) = inventory.restore_tests.get(&policy.name)
        {
            hasher.update(format!("restore-test {}\n", last.to_rfc3339()));
        }
        let Some(found) = inventory.policy(&policy.name) else {
            continue;
        };
        for destination in &found.destinations {
            hasher.update(format!("destination {}\n", destination.location));
            if let Some(reason) = &destination.delete_denied {
                hasher.update(format!("delete denied {reason}\n"));
            }
            match &destination.listing {
                Err(error) => hasher.update(format!("error {error}\n")),
                Ok(listing) => {
                    for record in &listing.backups {
                        hasher.update(format!(
                            "backup {} {} {} {}\n",
                            record.metadata.id,
                            record.metadata.created_at.to_rfc3339(),
                            record.metadata.artifact.sha256,
                            record.state.describe()
                        ));
                    }
                    for orphan in &listing.orphans {
                        hasher.update(format!(
                            "orphan {} {} {:?}\n",
                            orphan.name, orphan.size, orphan.modified
                        ));
                    }
                    for (object, _) in &listing.unreadable {
                        hasher.update(format!("unreadable {object}\n"));
                    }
                }
            }
        }
    }
    match crontab {
        CrontabInput::Unmanaged { .. } => hasher.update("crontab unmanaged\n"),
        CrontabInput::Unreadable { target, .. } => {
            hasher.update(format!("crontab {target} unreadable\n"));
        }
        CrontabInput::Found {
            target,
            text,
            planned_block,
        } => {
            hasher.update(format!("crontab {target}\n"));
            hasher.update(text);
            hasher.update(planned_block);
        }
    }
    match scheduler {
        None => {}
        Some(SchedulerInput::Unmanaged { kind, .. }) => {
            hasher.update(format!("scheduler {} unmanaged\n", kind.name()));
        }
        Some(SchedulerInput::Unreadable { kind, target, .. }) => {
            hasher.update(format!("scheduler {} {target} unreadable\n", kind.name()));
        }
        Some(SchedulerInput::Found {
            kind,
            target,
            current,
            planned,
            systemd,
        }) => {
            hasher.update(format!("scheduler {} {target} {systemd:?}\n", kind.name()));
            for (side, files) in [("current", current), ("planned", planned)] {
                for file in files {
                    hasher.update(format!("{side} {} {}\n", file.name, file.text.len()));
                    hasher.update(&file.text);
                }
            }
        }
    }
    crate::inventory::metadata::hex(&hasher.finalize())
}

fn schedule_text(policy: &Policy) -> String {
    format!(
        "{} {}",
        policy.schedule.expression(),
        policy.schedule.timezone()
    )
}

fn plural(count: usize) -> &'static str {
    if count == 1 { "" } else { "s" }
}
