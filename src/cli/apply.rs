//! `backup apply`: compute (or load) the plan, show it, and carry it out.

use super::output::{stderrln, stdout, stdoutln};
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::Args;

mod records;

use super::plan::{CrontabArgs, OnlyArgs, crontab_input, parse_time};
use super::{Approval, GlobalArgs, approve, load_selection};
use crate::apply::{self, ActionResult, Outcome};
use crate::exit::ExitStatus;
use crate::plan::{self, ActionKind, Plan};
use crate::policy::diagnostic::paint;
use crate::schedule::crontab;

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Policy files or folders, and at most one plan saved by `backup plan
    /// --out` (a `.json` file), which is refused if anything changed since.
    #[arg(value_name = "PATH|PLANFILE")]
    pub targets: Vec<PathBuf>,
    /// Apply only this policy.
    #[arg(long, value_name = "NAME")]
    pub policy: Option<String>,
    /// Do not ask for confirmation (needed when stdin is not a terminal, as
    /// under cron; without it there, apply exits 64 and does nothing).
    #[arg(long)]
    pub auto_approve: bool,
    /// Carry out prunes that delete more than half of a policy's backups.
    #[arg(long)]
    pub allow_mass_delete: bool,
    /// Act as if it were this time (RFC 3339); backups taken are stamped with it. For tests and drills.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub now: Option<DateTime<Utc>>,
    #[command(flatten)]
    pub crontab: CrontabArgs,
    #[command(flatten)]
    pub only: OnlyArgs,
}

pub fn run(global: &GlobalArgs, args: &ApplyArgs) -> anyhow::Result<ExitStatus> {
    let (planfiles, paths): (Vec<PathBuf>, Vec<PathBuf>) =
        args.targets.iter().cloned().partition(|path| {
            path.extension()
                .is_some_and(|extension| extension == "json")
        });
    if planfiles.len() > 1 {
        stderrln!("error: apply takes at most one plan file");
        return Ok(ExitStatus::Usage);
    }
    if !planfiles.is_empty() && args.only.only.is_some() {
        stderrln!(
            "error: --only does not go with a saved plan; pass it to `backup plan --out` instead"
        );
        return Ok(ExitStatus::Usage);
    }
    let saved = match planfiles.first() {
        Some(file) => match load_plan(file) {
            Ok(plan) => Some(plan),
            Err(error) => {
                stderrln!("error: {error:#}");
                return Ok(ExitStatus::Failure);
            }
        },
        None => None,
    };
    let mut selection = match load_selection(global, &paths, args.policy.as_deref()) {
        Ok(selection) => selection,
        Err(status) => return Ok(status),
    };
    if let Some(saved) = &saved {
        let names: Vec<&str> = saved
            .policies
            .iter()
            .map(|policy| policy.name.as_str())
            .collect();
        if let Some(missing) = names
            .iter()
            .find(|name| !selection.all.iter().any(|policy| policy.name == **name))
        {
            stderrln!(
                "error: the saved plan covers policy `{missing}`, which is no longer loaded; run `backup plan` again"
            );
            return Ok(ExitStatus::Failure);
        }
        selection.selected = selection
            .all
            .iter()
            .filter(|policy| names.contains(&policy.name.as_str()))
            .cloned()
            .collect();
    }

    // Lock before reading anything: what is planned is what is done.
    let state = global.state();
    let mut locks = Vec::new();
    let mut locked_out = Vec::new();
    let mut selected = Vec::new();
    for policy in std::mem::take(&mut selection.selected) {
        match state.lock(&policy.name) {
            Ok(lock) => {
                locks.push(lock);
                selected.push(policy);
            }
            Err(error @ crate::state::Error::Held { .. }) => {
                stderrln!("error: {error}");
                locked_out.push(policy.name);
            }
            Err(error) => {
                stderrln!("error: {error}");
                return Ok(ExitStatus::Failure);
            }
        }
    }
    selection.selected = selected;
    if !locked_out.is_empty() && (saved.is_some() || selection.selected.is_empty()) {
        stderrln!("Nothing was done: another `backup` is working on the same policies.");
        return Ok(ExitStatus::Locked);
    }

    global.announce_state_dir();
    crate::runlog::start_log(&state, "apply", args.policy.as_deref());
    let mut inventory =
        crate::inventory::gather(&selection.selected, Some(&global.sidecar_cache()));
    super::plan::add_restore_tests(&state, &selection.selected, &mut inventory);
    let now = match &saved {
        Some(saved) => saved.now,
        None => args.now.unwrap_or_else(Utc::now),
    };
    let (crontab_input, crontab_target) =
        crontab_input(global, &paths, &selection, &args.crontab, now);
    let plan = match saved {
        Some(saved) => match check_saved(saved, &selection, &mut inventory, &crontab_input) {
            Ok(saved) => saved,
            Err(reason) => {
                stderrln!("error: {reason}; run `backup plan --out` again (nothing was done)");
                return Ok(ExitStatus::Failure);
            }
        },
        None => plan::compute_probing(
            &selection.selected,
            &mut inventory,
            &crontab_input,
            now,
            &args.only.scope(),
        ),
    };

    let color = global.stdout_color();
    stdout!(
        "{}",
        plan::text::render(
            &plan,
            plan::text::Options {
                show_kept: false,
                color,
            }
        )
    );
    let finish = |failed: bool| {
        if failed || plan.has_errors() {
            ExitStatus::Failure
        } else if !locked_out.is_empty() {
            ExitStatus::Locked
        } else {
            ExitStatus::Success
        }
    };
    if !plan.has_attemptable_changes() {
        let records = records::Records::new(&plan);
        for problem in records.finish(&state, &selection.selected, &apply::ApplyReport::default()) {
            stderrln!("warning: {problem}");
        }
        return Ok(finish(false));
    }
    if let Approval::Refused(status) = approve(
        args.auto_approve,
        "applying",
        "--auto-approve",
        "Do you want to perform these actions?",
        "Apply",
    )? {
        return Ok(status);
    }
    stdoutln!();

    let options = apply::Options {
        allow_mass_delete: args.allow_mass_delete,
        now: args.now,
        state_dir: Some(state.path().to_owned()),
    };
    let mut write_crontab = |block: &str| -> Result<String, String> {
        let target = crontab_target
            .as_ref()
            .ok_or_else(|| "the crontab is not managed in this run".to_owned())?;
        let _lock = state.lock_crontab().map_err(|error| error.to_string())?;
        state.ensure("logs").map_err(|error| error.to_string())?;
        crontab::replace_block(target, block).map_err(|error| error.to_string())?;
        Ok(format!("written to {}", target.describe()))
    };
    let mut records = records::Records::new(&plan);
    for problem in records.start(&selection.selected) {
        stderrln!("warning: {problem}");
    }
    let mut observe = |result: &ActionResult| {
        records.observe(result);
        let policy = result.action.policy.as_deref().unwrap_or("crontab");
        let headline = plan::text::headline(&result.action, color);
        let (label, detail) = match &result.outcome {
            Outcome::Done(detail) => (paint(color, "32", "done   "), detail),
            Outcome::Failed(error) => (paint(color, "1;31", "FAILED "), error),
            Outcome::Skipped(reason) => (paint(color, "33", "skipped"), reason),
            Outcome::Refused(reason) => {
                // One line for all the actions it covers.
                stdoutln!("{} {policy}: {reason}", paint(color, "1;31", "refused"));
                let _ = std::io::stdout().flush();
                return;
            }
        };
        stdoutln!("{label} {policy}: {}: {detail}", headline.trim_start());
        let _ = std::io::stdout().flush();
    };
    let report = apply::execute(
        &plan,
        &selection.selected,
        &options,
        &mut write_crontab,
        &mut observe,
    );
    // Recorded (and notified) under the policies' locks.
    for problem in records.finish(&state, &selection.selected, &report) {
        stderrln!("warning: {problem}");
    }
    drop(locks);

    let crontab = if report.done(ActionKind::Crontab) > 0 {
        "crontab updated"
    } else if plan.summary.crontab > 0 {
        "crontab not updated"
    } else if plan.crontab.state == "unchanged" {
        "crontab unchanged"
    } else {
        "crontab not managed"
    };
    let counts = format!(
        "{} backed up, {} copied, {} pruned, {} cleaned up, {crontab}",
        report.done(ActionKind::Backup),
        report.done(ActionKind::Copy),
        report.done(ActionKind::Prune),
        report.done(ActionKind::Cleanup),
    );
    let failed = report.failed();
    let refused = report.refused();
    stdoutln!();
    if failed == 0 && refused == 0 {
        stdoutln!("Apply complete: {counts}.");
    } else {
        let skipped = report.skipped();
        let refused = match refused {
            0 => String::new(),
            count => format!("{count} refused (--allow-mass-delete), "),
        };
        stdoutln!(
            "Apply failed: {failed} action{} failed, {refused}{skipped} skipped; {counts}. Running apply again finishes the job once the cause is fixed.",
            if failed == 1 { "" } else { "s" }
        );
    }
    Ok(finish(failed > 0 || report.refused() > 0))
}

/// How old a saved plan may be.
const SAVED_PLAN_LIFETIME: chrono::Duration = chrono::Duration::hours(24);

/// A saved plan is carried out only if it is what `plan` computes now from
/// the same policies, inventory and crontab at the plan's time: nothing
/// changed since, and nobody edited the file.
fn check_saved(
    saved: Plan,
    selection: &super::Selection,
    inventory: &mut crate::inventory::Inventory,
    crontab_input: &plan::CrontabInput,
) -> Result<Plan, String> {
    let now = Utc::now();
    if saved.now > now + chrono::Duration::minutes(5) {
        return Err(format!(
            "the saved plan was made for {}, which is still to come",
            saved.now.to_rfc3339()
        ));
    }
    if now - saved.now > SAVED_PLAN_LIFETIME {
        return Err(format!(
            "the saved plan was made for {}, more than a day ago",
            saved.now.to_rfc3339()
        ));
    }
    // Probing first: the saved plan's fingerprint covers what probing found.
    let scope = plan::Scope {
        only: saved.only.clone(),
    };
    let recomputed = plan::compute_probing(
        &selection.selected,
        inventory,
        crontab_input,
        saved.now,
        &scope,
    );
    let current = plan::fingerprint(&selection.selected, inventory, crontab_input);
    if current != saved.fingerprint {
        return Err(
            "the policies, the backups or the crontab changed since the plan was saved".to_owned(),
        );
    }
    if recomputed != saved {
        return Err(
            "the saved plan is not what this version of backup plans from the same state (was it edited?)"
                .to_owned(),
        );
    }
    Ok(saved)
}

fn load_plan(file: &std::path::Path) -> anyhow::Result<Plan> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the plan {}", file.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a saved plan (not JSON)", file.display()))?;
    let version = value
        .get("format_version")
        .and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(plan::FORMAT_VERSION)) {
        anyhow::bail!(
            "{} is a plan of format_version {:?}; this backup reads {}",
            file.display(),
            version,
            plan::FORMAT_VERSION
        );
    }
    serde_json::from_value(value).with_context(|| format!("{} is not a saved plan", file.display()))
}
