//! `backup verify`: re-check stored backups. Not built yet.

use clap::Args;

use super::{GlobalArgs, not_built};
use crate::exit::ExitStatus;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Verify only this policy.
    #[arg(value_name = "POLICY")]
    pub policy: Option<String>,
    /// Verify only this backup id.
    #[arg(long, value_name = "ID")]
    pub backup: Option<String>,
    /// Also restore into a scratch target and compare.
    #[arg(long)]
    pub restore_test: bool,
}

pub fn run(_global: &GlobalArgs, _args: &VerifyArgs) -> anyhow::Result<ExitStatus> {
    not_built("verify")
}
