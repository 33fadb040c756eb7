//! `backup apply`: compute (or load) the plan, show it, and carry it out.

use super::output::{stderrln, stdout, stdoutln};
use std::io::Write as _;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::Args;

use super::args::{CrontabArgs, OnlyArgs, observe, parse_time};
use super::{Approval, GlobalArgs, approve, load_selection};
use crate::apply::{self, ActionResult, session};
use crate::exit::ExitStatus;
use crate::plan;
use crate::planfile;

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
    let saved = match planfiles
        .first()
        .map(|file| planfile::load(file))
        .transpose()
    {
        Ok(saved) => saved,
        Err(error) => {
            stderrln!("error: {:#}", anyhow::Error::from(error));
            return Ok(ExitStatus::Failure);
        }
    };
    let mut selection = match load_selection(global, &paths, args.policy.as_deref()) {
        Ok(selection) => selection,
        Err(status) => return Ok(status),
    };
    if let Some(saved) = &saved {
        match planfile::policies(saved, &selection.all) {
            Ok(policies) => selection.selected = policies,
            Err(missing) => {
                stderrln!(
                    "error: the saved plan covers policy `{missing}`, which is no longer loaded; run `backup plan` again"
                );
                return Ok(ExitStatus::Failure);
            }
        }
    }

    // Lock before reading anything: what is planned is what is done.
    let state = global.state();
    let locked = session::lock(&state, std::mem::take(&mut selection.selected));
    for (_, error) in &locked.held {
        stderrln!("error: {error}");
    }
    if let Some(error) = &locked.error {
        stderrln!("error: {error}");
        return Ok(ExitStatus::Failure);
    }
    selection.selected = locked.policies;
    if !locked.held.is_empty() && (saved.is_some() || selection.selected.is_empty()) {
        stderrln!("Nothing was done: another `backup` is working on the same policies.");
        return Ok(ExitStatus::Locked);
    }

    // Policies with `spec.lease`: taken before the inventory is read, so
    // that what is planned is what this host alone writes.
    let leases = crate::lease::take_all(&state, &selection.selected);
    report_leases(&leases);
    selection
        .selected
        .retain(|policy| leases.allows(&policy.name));

    global.announce_state_dir();
    crate::runlog::start_log(&state, "apply", args.policy.as_deref());
    let now = match &saved {
        Some(saved) => saved.now,
        None => args.now.unwrap_or_else(Utc::now),
    };
    let crontab = args.crontab.options(global, &paths);
    let mut observed = observe(global, &selection, crontab, now, false);
    let plan = match saved {
        Some(saved) => match planfile::check(saved, &selection.selected, &mut observed) {
            Ok(saved) => saved,
            Err(reason) => {
                stderrln!("error: {reason}; run `backup plan --out` again (nothing was done)");
                return Ok(ExitStatus::Failure);
            }
        },
        None => crate::observe::plan(&selection.selected, &mut observed, now, &args.only.scope()),
    };

    let color = global.stdout_color();
    let options = plan::text::Options {
        show_kept: false,
        color,
    };
    stdout!("{}", plan::text::render(&plan, options));
    let lease_failed = !leases.failed.is_empty();
    let finish = |failed: bool| {
        if failed || plan.has_errors() || lease_failed {
            ExitStatus::Failure
        } else if !locked.held.is_empty() {
            ExitStatus::Locked
        } else {
            ExitStatus::Success
        }
    };
    if !plan.has_attemptable_changes() {
        for problem in session::record_idle(&plan, &state, &selection.selected) {
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
    let report = session::run(
        &plan,
        &selection.selected,
        &options,
        &state,
        observed.crontab_target.as_ref(),
        observed.scheduler_target.as_ref(),
        &mut Printer { color },
    );
    release_leases(leases);
    drop(locked.locks);
    stdoutln!();
    stdoutln!("{}", apply::text::summary(&plan, &report));
    Ok(finish(report.failed() > 0 || report.refused() > 0))
}

/// Prints what taking the leases found: takeovers, policies another
/// host's lease skips, leases that could not be taken.
pub(super) fn report_leases(leases: &crate::lease::Taken) {
    for (is_error, line) in leases.report() {
        if is_error {
            stderrln!("error: {line}");
        } else {
            stderrln!("{line}");
        }
    }
}

/// Releases the leases a run took, warning of any that could not be deleted.
pub(super) fn release_leases(leases: crate::lease::Taken) {
    for problem in leases.release() {
        stderrln!("warning: {problem}");
    }
}

/// Prints an apply run as it goes.
struct Printer {
    color: bool,
}

impl session::Observer for Printer {
    fn problem(&mut self, problem: &str) {
        stderrln!("warning: {problem}");
    }

    fn result(&mut self, result: &ActionResult) {
        stdoutln!("{}", apply::text::result_line(result, self.color));
        let _ = std::io::stdout().flush();
    }
}
