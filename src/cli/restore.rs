//! `backup restore`: restore a backup safely. Not built yet.

use clap::Args;

use super::{GlobalArgs, not_built};
use crate::exit::ExitStatus;

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The policy whose backup to restore.
    #[arg(value_name = "POLICY")]
    pub policy: String,
    /// Backup id, or `latest`.
    #[arg(long, value_name = "ID", default_value = "latest")]
    pub backup: String,
    /// Read the backup from this destination.
    #[arg(long, value_name = "DESTINATION")]
    pub from: Option<String>,
    /// Restore into this target instead of the policy's source.
    #[arg(long, value_name = "TARGET")]
    pub to: Option<String>,
    /// Verify and show the restore plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

pub fn run(_global: &GlobalArgs, _args: &RestoreArgs) -> anyhow::Result<ExitStatus> {
    not_built("restore")
}
