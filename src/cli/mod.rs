//! The command line: global options, one subcommand per file, and dispatch.
//!
//! Command files define `<Name>Args` and one `run()` that wires the core
//! modules together and prints; they decide nothing themselves. stdout gets
//! the command's data, stderr everything else.

mod apply;
mod args;
mod completions;
mod global;
mod list;
mod man;
pub mod output;
mod plan;
mod prompt;
mod recover;
mod render;
mod restore;
mod run;
mod schema;
mod status;
mod unschedule;
mod validate;
mod verify;
mod wal;

use output::{stderr, stderrln};
use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use global::{ColorChoice, GlobalArgs, OutputFormat};
use prompt::{Approval, approve, confirm};

use crate::exit::ExitStatus;
use crate::policy::{Selection, Unselected};

/// Declarative, GitOps-style database backups: versioned YAML policies,
/// `plan` to preview, `apply` to reconcile.
#[derive(Debug, Parser)]
#[command(name = "backup", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check policy files: shape, meaning, references. Writes nothing.
    Validate(validate::ValidateArgs),
    /// Print the JSON Schema of policy files.
    Schema(schema::SchemaArgs),
    /// Show what apply would do: backups due, copies missing, prunes, crontab changes.
    Plan(plan::PlanArgs),
    /// Carry out the plan: back up, copy, prune, write the crontab.
    Apply(apply::ApplyArgs),
    /// Take one backup of a policy now, whatever its schedule.
    Run(run::RunArgs),
    /// List the backups on every destination.
    List(list::ListArgs),
    /// Re-read stored backups and check them against their metadata.
    Verify(verify::VerifyArgs),
    /// Restore a backup, safely: verify first, safety backup, check after, roll back on failure.
    Restore(restore::RestoreArgs),
    /// Report the health of every policy.
    Status(status::StatusArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Print the man page, or write one per command into a folder.
    Man(man::ManArgs),
    /// Remove the managed block from the crontab (or the systemd units, or the Kubernetes manifests).
    Unschedule(unschedule::UnscheduleArgs),
    /// Write the systemd units or Kubernetes manifests apply would install into a folder.
    Render(render::RenderArgs),
    /// PostgreSQL's WAL archive: `archive_command` (push) and `restore_command` (fetch).
    Wal(wal::WalArgs),
}

/// Runs the command and returns how the process should exit.
pub fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    let global = &cli.global;
    if let Some(host) = &global.host {
        crate::engine::set_host_name(host);
    }
    // Scratch copies of databases stay in this host's private state folder.
    crate::state::use_scratch_in(&global.state());
    let status = match &cli.command {
        Command::Validate(args) => validate::run(global, args),
        Command::Schema(args) => schema::run(args),
        Command::Plan(args) => plan::run(global, args),
        Command::Apply(args) => apply::run(global, args),
        Command::Run(args) => run::run(global, args),
        Command::List(args) => list::run(global, args),
        Command::Verify(args) => verify::run(global, args),
        Command::Restore(args) => restore::run(global, args),
        Command::Status(args) => status::run(global, args),
        Command::Completions(args) => completions::run(args),
        Command::Man(args) => man::run(args),
        Command::Unschedule(args) => unschedule::run(global, args),
        Command::Render(args) => render::run(global, args),
        Command::Wal(args) => wal::run(global, args),
    }?;
    Ok(output::finish(status))
}

/// Loads the policies for a command that acts on them. Problems go to
/// stderr; invalid policies are left out (so one broken file does not stop
/// the others' backups). `only` narrows to one policy, which must be valid.
fn load_policies(
    global: &GlobalArgs,
    only: Option<&str>,
) -> Result<Vec<crate::policy::Policy>, ExitStatus> {
    load_selection(global, &[], only).map(|selection| selection.selected)
}

/// Like [`load_policies`], from `paths` (else `-p`, else `policies/`).
fn load_selection(
    global: &GlobalArgs,
    paths: &[PathBuf],
    only: Option<&str>,
) -> Result<Selection, ExitStatus> {
    load_for(global, paths, only, Hosts::This)
}

/// Whose policies a command acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hosts {
    /// Those whose `metadata.hosts` select this host (`--host`).
    This,
    /// Every policy, whichever hosts run it (`status --all-hosts`).
    All,
}

/// Like [`load_selection`]; with [`Hosts::This`], the policies whose
/// `metadata.hosts` leave this host out are neither acted on nor scheduled
/// here (a policy named with `--policy` that is for other hosts is said so,
/// and the selection is empty).
fn load_for(
    global: &GlobalArgs,
    paths: &[PathBuf],
    only: Option<&str>,
    hosts: Hosts,
) -> Result<Selection, ExitStatus> {
    let loaded = crate::policy::load(
        &global.policy_paths(paths),
        crate::policy::Options::default(),
    );
    let color = global.stderr_color();
    for diagnostic in &loaded.diagnostics {
        stderr!("{}", diagnostic.render(color));
    }
    let selection = select(global, paths, &loaded, only)?;
    Ok(match hosts {
        Hosts::All => selection,
        Hosts::This => {
            let host = crate::engine::host_name();
            let selection = selection.for_host(&host);
            if let Some(name) = only
                && selection.selected.is_empty()
            {
                stderrln!(
                    "Policy `{name}` does not run on host `{host}` (its metadata.hosts leave it out); nothing to do for it here."
                );
            }
            selection
        }
    })
}

fn select(
    global: &GlobalArgs,
    paths: &[PathBuf],
    loaded: &crate::policy::Loaded,
    only: Option<&str>,
) -> Result<Selection, ExitStatus> {
    loaded.select(only).map_err(|unselected| match unselected {
        Unselected::Invalid => ExitStatus::InvalidPolicy,
        Unselected::InvalidNamed(name) => {
            stderrln!("error: no valid policy named `{name}`; see the problems above");
            ExitStatus::InvalidPolicy
        }
        Unselected::Missing(name) => {
            stderrln!(
                "error: no policy named `{name}` in {}",
                describe_paths(global, paths)
            );
            ExitStatus::Failure
        }
    })
}

fn describe_paths(global: &GlobalArgs, given: &[PathBuf]) -> String {
    let paths: Vec<String> = global
        .policy_paths(given)
        .iter()
        .map(|path| format!("`{}`", path.display()))
        .collect();
    paths.join(", ")
}

pub use crate::format::human_bytes;
