//! `backup apply`: carry out the plan. Not built yet.

use std::path::PathBuf;

use clap::Args;

use super::{GlobalArgs, not_built};
use crate::exit::ExitStatus;

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Apply only this policy.
    #[arg(long, value_name = "NAME")]
    pub policy: Option<String>,
    /// A plan saved by `backup plan --out`; refused if the inventory changed since.
    #[arg(value_name = "PLANFILE")]
    pub planfile: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// Manage this crontab file (e.g. in /etc/cron.d) instead of the user's crontab.
    #[arg(long, value_name = "FILE")]
    pub crontab_file: Option<PathBuf>,
}

pub fn run(_global: &GlobalArgs, _args: &ApplyArgs) -> anyhow::Result<ExitStatus> {
    not_built("apply")
}
