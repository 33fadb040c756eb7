//! `backup schema`: print the JSON Schema of policy files (or of the sidecar).

use super::output::stdout;
use clap::Args;

use crate::exit::ExitStatus;
use crate::inventory::metadata;
use crate::policy::schema::policy_schema_text;

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Print the schema of the backup metadata sidecar (`<id>.json`) instead.
    #[arg(long)]
    pub sidecar: bool,
}

pub fn run(args: &SchemaArgs) -> anyhow::Result<ExitStatus> {
    if args.sidecar {
        stdout!("{}", metadata::schema_text());
    } else {
        stdout!("{}", policy_schema_text());
    }
    Ok(ExitStatus::Success)
}
