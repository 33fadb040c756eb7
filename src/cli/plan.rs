//! `backup plan`: show what `apply` would do. Not built yet.

use std::path::PathBuf;

use clap::Args;

use super::{GlobalArgs, OutputFormat, not_built};
use crate::exit::ExitStatus;

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Plan only this policy.
    #[arg(long, value_name = "NAME")]
    pub policy: Option<String>,
    /// Plan as if it were this time (RFC 3339), for reproducible plans in CI.
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
    /// Save the plan to this file, for `backup apply FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Exit 0 when nothing is pending, 2 when the plan has changes, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Manage this crontab file (e.g. in /etc/cron.d) instead of the user's crontab.
    #[arg(long, value_name = "FILE")]
    pub crontab_file: Option<PathBuf>,
}

pub fn run(_global: &GlobalArgs, _args: &PlanArgs) -> anyhow::Result<ExitStatus> {
    not_built("plan")
}
