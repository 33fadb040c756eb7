//! `backup run`: one backup of a policy now. Not built yet.

use clap::Args;

use super::{GlobalArgs, not_built};
use crate::exit::ExitStatus;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The policy to back up.
    #[arg(value_name = "POLICY")]
    pub policy: String,
}

pub fn run(_global: &GlobalArgs, _args: &RunArgs) -> anyhow::Result<ExitStatus> {
    not_built("run")
}
