//! `backup status`: the health of every policy. Not built yet.

use std::path::PathBuf;

use clap::Args;

use super::{GlobalArgs, OutputFormat, not_built};
use crate::exit::ExitStatus;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Report only this policy.
    #[arg(value_name = "POLICY")]
    pub policy: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
    /// Also write a Prometheus textfile for node_exporter.
    #[arg(long, value_name = "FILE")]
    pub prometheus: Option<PathBuf>,
}

pub fn run(_global: &GlobalArgs, _args: &StatusArgs) -> anyhow::Result<ExitStatus> {
    not_built("status")
}
