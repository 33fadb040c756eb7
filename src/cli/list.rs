//! `backup list`: the backups on every destination. Not built yet.

use clap::Args;

use super::{GlobalArgs, OutputFormat, not_built};
use crate::exit::ExitStatus;

#[derive(Debug, Args)]
pub struct ListArgs {
    /// List only this policy.
    #[arg(value_name = "POLICY")]
    pub policy: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
}

pub fn run(_global: &GlobalArgs, _args: &ListArgs) -> anyhow::Result<ExitStatus> {
    not_built("list")
}
