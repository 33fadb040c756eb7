//! `backup schema`: print the JSON Schema of policy files.

use clap::Args;

use crate::exit::ExitStatus;
use crate::policy::schema::policy_schema_text;

#[derive(Debug, Args)]
pub struct SchemaArgs {}

pub fn run(_args: &SchemaArgs) -> anyhow::Result<ExitStatus> {
    print!("{}", policy_schema_text());
    Ok(ExitStatus::Success)
}
