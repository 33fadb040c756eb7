//! `backup schema`: print the JSON Schema of policy files (or of the
//! settings document, or of the sidecar).

use super::output::stdout;
use clap::{Args, ValueEnum};

use crate::exit::ExitStatus;
use crate::inventory::metadata;
use crate::policy::schema::{policy_schema_text, settings_schema_text};

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which schema: `policy` (schema/policy.v1.json), `settings` (the
    /// `kind: Settings` document, schema/settings.v1.json) or `sidecar`.
    #[arg(long, value_enum, default_value_t, conflicts_with = "sidecar")]
    pub kind: SchemaKind,
    /// Print the schema of the backup metadata sidecar (`<id>.json`) instead
    /// (the same as `--kind sidecar`).
    #[arg(long)]
    pub sidecar: bool,
}

/// A document whose schema `backup schema` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum SchemaKind {
    #[default]
    Policy,
    Settings,
    Sidecar,
}

pub fn run(args: &SchemaArgs) -> anyhow::Result<ExitStatus> {
    let kind = if args.sidecar {
        SchemaKind::Sidecar
    } else {
        args.kind
    };
    match kind {
        SchemaKind::Policy => stdout!("{}", policy_schema_text()),
        SchemaKind::Settings => stdout!("{}", settings_schema_text()),
        SchemaKind::Sidecar => stdout!("{}", metadata::schema_text()),
    }
    Ok(ExitStatus::Success)
}
