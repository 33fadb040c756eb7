//! `backup validate`: check policy files and report every problem at once.
//!
//! Diagnostics are this command's data, so they go to stdout (text or JSON).
//! Writes nothing anywhere.

use super::output::{stdout, stdoutln};
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::{GlobalArgs, OutputFormat};
use crate::exit::ExitStatus;
use crate::policy::{self, Diagnostic, Loaded};

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Policy files or folders to check. Default: the global -p paths, else `policies/`.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
    /// Treat warnings (unset references, missing SQLite files, secrets in plain text) as errors.
    #[arg(long)]
    pub deny_warnings: bool,
    /// Also check that destinations can be used: local folders exist and are writable (or can be created); S3 buckets answer and the credentials may write, read and delete there.
    #[arg(long)]
    pub check_destinations: bool,
}

/// `--format json` output. `format_version` changes only when a field is removed or changes meaning.
#[derive(Debug, Serialize)]
struct Report<'a> {
    format_version: u32,
    valid: bool,
    files: Vec<String>,
    policies: Vec<PolicyEntry>,
    errors: usize,
    warnings: usize,
    diagnostics: &'a [Diagnostic],
}

#[derive(Debug, Serialize)]
struct PolicyEntry {
    name: String,
    file: String,
    line: usize,
}

pub fn run(global: &GlobalArgs, args: &ValidateArgs) -> anyhow::Result<ExitStatus> {
    let options = policy::Options {
        check_destinations: args
            .check_destinations
            .then_some(crate::observe::probe_s3 as policy::S3Probe),
        check_sources: true,
        check_unit_dir: true,
    };
    let loaded = policy::load(&global.policy_paths(&args.paths), options);
    let valid = loaded.error_count() == 0 && !(args.deny_warnings && loaded.warning_count() > 0);
    match args.format {
        OutputFormat::Text => stdout!("{}", render_text(&loaded, global.stdout_color())),
        OutputFormat::Json => {
            let report = Report {
                format_version: 1,
                valid,
                files: loaded
                    .files
                    .iter()
                    .map(|file| file.display().to_string())
                    .collect(),
                policies: loaded
                    .policies
                    .iter()
                    .map(|policy| PolicyEntry {
                        name: policy.name.clone(),
                        file: policy.file.display().to_string(),
                        line: policy.name_span.start.line,
                    })
                    .collect(),
                errors: loaded.error_count(),
                warnings: loaded.warning_count(),
                diagnostics: &loaded.diagnostics,
            };
            stdoutln!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(if valid {
        ExitStatus::Success
    } else {
        ExitStatus::InvalidPolicy
    })
}

/// Every diagnostic, then one summary line.
pub fn render_text(loaded: &Loaded, color: bool) -> String {
    let mut out = String::new();
    for diagnostic in &loaded.diagnostics {
        out.push_str(&diagnostic.render(color));
        out.push('\n');
    }
    let plural = |count: usize, one: &str, many: &str| {
        format!("{count} {}", if count == 1 { one } else { many })
    };
    let names: Vec<&str> = loaded
        .policies
        .iter()
        .map(|policy| policy.name.as_str())
        .collect();
    out.push_str(&format!(
        "Checked {}: {} valid{}, {}, {}.\n",
        plural(loaded.files.len(), "file", "files"),
        plural(loaded.policies.len(), "policy", "policies"),
        if names.is_empty() {
            String::new()
        } else {
            format!(" ({})", names.join(", "))
        } + if loaded.settings.is_some() {
            ", settings valid"
        } else {
            ""
        },
        plural(loaded.error_count(), "error", "errors"),
        plural(loaded.warning_count(), "warning", "warnings"),
    ));
    out
}
