//! `backup plan`: show what `apply` would do, and why.

use super::output::{stderrln, stdout, stdoutln};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::Args;

use super::args::{CrontabArgs, OnlyArgs, observe, parse_time};
use super::{GlobalArgs, load_selection};
use crate::exit::ExitStatus;
use crate::plan;

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

pub fn run(global: &GlobalArgs, args: &PlanArgs) -> anyhow::Result<ExitStatus> {
    let selection = match load_selection(global, &args.paths, args.policy.as_deref()) {
        Ok(selection) => selection,
        Err(status) => return Ok(status),
    };
    global.announce_state_dir();
    let now = args.now.unwrap_or_else(Utc::now);
    let crontab = args.crontab.options(global, &args.paths);
    let mut observed = observe(global, &selection, crontab, now, false);
    let plan = crate::observe::plan(&selection.selected, &mut observed, now, &args.only.scope());
    if let Some(out) = &args.out {
        crate::planfile::save(&plan, out)?;
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
