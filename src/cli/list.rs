//! `backup list`: the backups on every destination, and what else lies there.

use super::output::{stderrln, stdout, stdoutln};
use clap::Args;

use super::{GlobalArgs, OutputFormat, load_policies};
use crate::catalog;
use crate::exit::ExitStatus;

#[derive(Debug, Args)]
pub struct ListArgs {
    /// List only this policy.
    #[arg(value_name = "POLICY")]
    pub policy: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
}

pub fn run(global: &GlobalArgs, args: &ListArgs) -> anyhow::Result<ExitStatus> {
    let policies = match load_policies(global, args.policy.as_deref()) {
        Ok(policies) => policies,
        Err(status) => return Ok(status),
    };
    let inventory = crate::inventory::gather(&policies, Some(&global.sidecar_cache()));
    let report = catalog::catalog(inventory);
    match args.format {
        OutputFormat::Json => stdoutln!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Text => stdout!("{}", catalog::render(&report)),
    }
    for error in &report.errors {
        stderrln!("error: {error}");
    }
    Ok(if report.errors.is_empty() {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}
