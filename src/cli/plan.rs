//! `backup plan`: show what `apply` would do, and why.

use super::output::{stderrln, stdout, stdoutln};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::Args;

use super::{GlobalArgs, Selection, load_selection};
use crate::exit::ExitStatus;
use crate::plan::{self, ActionKind, CrontabInput, Plan};
use crate::schedule::crontab::{self, Target};

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Policy files or folders (default: `-p`, else `policies/`).
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Plan only this policy.
    #[arg(long, value_name = "NAME")]
    pub policy: Option<String>,
    /// Plan as if it were this time (RFC 3339), for reproducible plans in CI.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub now: Option<DateTime<Utc>>,
    /// `markdown`: the plan as a pull-request comment (it starts with the
    /// marker `<!-- backup-plan -->`, so a CI job can find and update its comment).
    #[arg(long, value_enum, default_value_t)]
    pub format: PlanFormat,
    /// Save the plan to this file (JSON), for `backup apply FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Exit 0 when nothing is pending, 2 when the plan has changes (held
    /// ones included) or could not read everything, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// A destination that cannot be read is not an error: the plan says
    /// what it could not see (for CI jobs without credentials).
    #[arg(long)]
    pub allow_unreadable: bool,
    #[command(flatten)]
    pub only: OnlyArgs,
    /// Also list every backup retention keeps, with the rules that keep it.
    #[arg(long)]
    pub show_kept: bool,
    #[command(flatten)]
    pub crontab: CrontabArgs,
}

/// How `plan` prints the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PlanFormat {
    #[default]
    Text,
    Json,
    /// For a pull-request comment.
    Markdown,
}

/// Which kinds of action to plan or carry out.
#[derive(Debug, Args)]
pub struct OnlyArgs {
    /// Only these kinds of action, comma-separated: backup, copy, prune,
    /// cleanup, restore-test, crontab (`--only prune,cleanup` prunes without
    /// backing up). Retention then counts no planned backup.
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

/// Where the managed crontab block lives.
#[derive(Debug, Args)]
pub struct CrontabArgs {
    /// Manage this crontab file (e.g. in /etc/cron.d, with a user field) instead of the user's crontab.
    #[arg(long, value_name = "FILE")]
    pub crontab_file: Option<PathBuf>,
    /// Leave the crontab alone (CI, or hosts where cron is managed otherwise).
    #[arg(long, conflicts_with = "crontab_file")]
    pub no_crontab: bool,
}

/// Parses `--now`: RFC 3339 (`2026-11-25T03:00:00Z`).
pub(super) fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|error| {
            format!("`{text}` is not an RFC 3339 time like 2026-11-25T03:00:00Z: {error}")
        })
}

pub fn run(global: &GlobalArgs, args: &PlanArgs) -> anyhow::Result<ExitStatus> {
    let selection = match load_selection(global, &args.paths, args.policy.as_deref()) {
        Ok(selection) => selection,
        Err(status) => return Ok(status),
    };
    global.announce_state_dir();
    let mut inventory =
        crate::inventory::gather(&selection.selected, Some(&global.sidecar_cache()));
    add_restore_tests(&global.state(), &selection.selected, &mut inventory);
    let now = args.now.unwrap_or_else(Utc::now);
    let (crontab_input, _) = crontab_input(global, &args.paths, &selection, &args.crontab, now);
    let plan = plan::compute_probing(
        &selection.selected,
        &mut inventory,
        &crontab_input,
        now,
        &args.only.scope(),
    );
    if let Some(out) = &args.out {
        save(&plan, out)?;
    }
    let options = plan::text::Options {
        show_kept: args.show_kept,
        color: global.stdout_color() && args.format == PlanFormat::Text,
    };
    match args.format {
        PlanFormat::Text => stdout!("{}", plan::text::render(&plan, options)),
        PlanFormat::Json => stdoutln!("{}", serde_json::to_string_pretty(&plan)?),
        PlanFormat::Markdown => stdout!("{}", plan::markdown::render(&plan, options)),
    }
    if let Some(out) = &args.out {
        stderrln!(
            "Saved the plan to {}; `backup apply {}` carries it out.",
            out.display(),
            out.display()
        );
    }
    let status = plan.exit_status(args.detailed_exitcode, args.allow_unreadable);
    if status != ExitStatus::Failure && !plan.is_complete() {
        stderrln!(
            "warning: --allow-unreadable: the plan does not cover {}",
            plan.unseen().join("; ")
        );
    }
    Ok(status)
}

/// Adds when each policy's newest passing restore drill ran: from this
/// host's evidence records, and from those beside the backups (which any
/// host sees, a CI job included).
pub(super) fn add_restore_tests(
    state: &crate::state::StateDir,
    policies: &[crate::policy::Policy],
    inventory: &mut crate::inventory::Inventory,
) {
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

/// Writes the plan as JSON, atomically.
fn save(plan: &Plan, out: &Path) -> anyhow::Result<()> {
    let folder = out
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(folder)
        .with_context(|| format!("cannot write the plan next to {}", out.display()))?;
    serde_json::to_writer_pretty(&mut file, plan)?;
    std::io::Write::write_all(&mut file, b"\n")?;
    file.persist(out)
        .with_context(|| format!("cannot save the plan as {}", out.display()))?;
    Ok(())
}

/// The crontab as found and the block the policies want, and where it lives.
pub(super) fn crontab_input(
    global: &GlobalArgs,
    paths: &[PathBuf],
    selection: &Selection,
    args: &CrontabArgs,
    now: DateTime<Utc>,
) -> (CrontabInput, Option<Target>) {
    if args.no_crontab {
        return (
            CrontabInput::Unmanaged {
                reason: "--no-crontab".to_owned(),
            },
            None,
        );
    }
    if !paths.is_empty() {
        return (
            CrontabInput::Unmanaged {
                reason: "policies were given as arguments; the crontab follows the full set (-p/--policies, BACKUP_POLICIES or policies/), so no other policy loses its line".to_owned(),
            },
            None,
        );
    }
    if selection.errors > 0 {
        return (
            CrontabInput::Unmanaged {
                reason: format!(
                    "left as is while the policy files have {} error{}, so no policy loses its line",
                    selection.errors,
                    if selection.errors == 1 { "" } else { "s" }
                ),
            },
            None,
        );
    }
    let target = match &args.crontab_file {
        Some(file) => {
            if let Some(warning) = crontab::file_name_warning(file) {
                stderrln!("warning: {warning}");
            }
            Target::File(std::path::absolute(file).unwrap_or_else(|_| file.clone()))
        }
        None => Target::User(None),
    };
    let found = crontab::read(&target).and_then(|text| {
        planned_block(global, paths, selection, &target, now).map(|block| (text, block))
    });
    let (text, planned_block) = match found {
        Ok(found) => found,
        Err(crontab::Error::NotInstalled) => {
            return (
                CrontabInput::Unmanaged {
                    reason: "the `crontab` program is not installed (install cron, or pass --crontab-file or --no-crontab)".to_owned(),
                },
                None,
            );
        }
        Err(error) => {
            return (
                CrontabInput::Unreadable {
                    target: target.describe(),
                    error: error.to_string(),
                },
                Some(target),
            );
        }
    };
    (
        CrontabInput::Found {
            target: target.describe(),
            text,
            planned_block,
        },
        Some(target),
    )
}

/// The block that runs `backup apply --policy NAME` for every valid policy.
fn planned_block(
    global: &GlobalArgs,
    paths: &[PathBuf],
    selection: &Selection,
    target: &Target,
    now: DateTime<Utc>,
) -> Result<String, crontab::Error> {
    let state = global.state();
    let invocation = crontab::Invocation {
        binary: std::env::current_exe()
            .and_then(|binary| binary.canonicalize())
            .unwrap_or_else(|_| PathBuf::from("backup")),
        policy_paths: global
            .policy_paths(paths)
            .iter()
            .map(|path| std::path::absolute(path).unwrap_or_else(|_| path.clone()))
            .collect(),
        state_dir: state.path().to_owned(),
        log_dir: state.log_dir(),
        crontab_file: match target {
            Target::File(file) => Some(file.clone()),
            Target::User(_) => None,
        },
    };
    let lines: Vec<crontab::Line> = selection
        .all
        .iter()
        .map(|policy| crontab::Line {
            policy: &policy.name,
            schedule: &policy.schedule,
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
        now,
    )
}
