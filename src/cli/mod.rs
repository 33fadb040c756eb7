//! The command line: global options, one subcommand per file, and dispatch.
//!
//! Command files define `<Name>Args` and one `run()` that wires the core
//! modules together and prints; they decide nothing themselves. stdout gets
//! the command's data, stderr everything else.

mod apply;
mod args;
mod completions;
mod list;
mod man;
pub mod output;
mod plan;
mod restore;
mod run;
mod schema;
mod status;
mod unschedule;
mod validate;
mod verify;

use output::{stderr, stderrln, stdoutln};
use std::io::IsTerminal as _;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit::ExitStatus;
use crate::logging::LogFormat;
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

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Policy file or folder (repeatable; folders are searched for *.yaml and *.yml).
    /// Default: `policies/`. The environment variable takes a `:`-separated list.
    #[arg(
        short = 'p',
        long = "policies",
        value_name = "PATH",
        global = true,
        env = "BACKUP_POLICIES",
        value_delimiter = ':'
    )]
    pub policies: Vec<PathBuf>,
    /// More log output on stderr (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less log output on stderr (-q errors only, -qq nothing).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub quiet: u8,
    /// When to use colours.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,
    /// Format of log lines on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// This host's state folder: policy locks and cron's logs. Default:
    /// /var/lib/backup for root, else ~/.local/state/backup.
    #[arg(long, value_name = "DIR", global = true, env = "BACKUP_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

impl GlobalArgs {
    pub fn verbosity(&self) -> i8 {
        let verbose = i8::try_from(self.verbose).unwrap_or(i8::MAX);
        let quiet = i8::try_from(self.quiet).unwrap_or(i8::MAX);
        verbose.saturating_sub(quiet)
    }

    /// The policy paths: those given to the command, else `-p`, else `policies/`.
    pub fn policy_paths(&self, given: &[PathBuf]) -> Vec<PathBuf> {
        if !given.is_empty() {
            given.to_vec()
        } else if !self.policies.is_empty() {
            self.policies.clone()
        } else {
            vec![PathBuf::from(crate::policy::DEFAULT_PATH)]
        }
    }

    pub fn state(&self) -> crate::state::StateDir {
        let root = self
            .state_dir
            .clone()
            .unwrap_or_else(crate::state::default_dir);
        crate::state::StateDir::new(&root)
    }

    /// Says on stderr where the state folder is when no `--state-dir` (or
    /// `BACKUP_STATE_DIR`) chose it: run records, locks and logs go there.
    pub fn announce_state_dir(&self) {
        if self.state_dir.is_none() {
            stderrln!(
                "State folder: {} (the default; --state-dir or BACKUP_STATE_DIR chooses another).",
                self.state().path().display()
            );
        }
    }

    /// The sidecar cache in the state folder.
    pub fn sidecar_cache(&self) -> crate::inventory::SidecarCache {
        crate::inventory::SidecarCache::new(self.state().path())
    }

    pub fn stdout_color(&self) -> bool {
        self.color.enabled(std::io::stdout().is_terminal())
    }

    pub fn stderr_color(&self) -> bool {
        self.color.enabled(std::io::stderr().is_terminal())
    }
}

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set.
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    fn enabled(self, terminal: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                terminal
                    && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
                    && std::env::var_os("TERM").is_none_or(|term| term != "dumb")
            }
        }
    }
}

/// Output format of a command's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
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
    /// Remove the managed block from the crontab: cron stops running backup.
    Unschedule(unschedule::UnscheduleArgs),
}

/// Runs the command and returns how the process should exit.
pub fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    let global = &cli.global;
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
    let loaded = crate::policy::load(
        &global.policy_paths(paths),
        crate::policy::Options::default(),
    );
    let color = global.stderr_color();
    for diagnostic in &loaded.diagnostics {
        stderr!("{}", diagnostic.render(color));
    }
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

/// What the user said to a destructive step.
enum Approval {
    Given,
    /// Not given; the command ends with this status (the reason is printed).
    Refused(ExitStatus),
}

/// Approval for `what` ("applying", "removing the block"): given by `flag`
/// (`--auto-approve`, `--yes`), else asked on a terminal, where only `yes`
/// approves. Off a terminal without the flag it is a usage error (64).
fn approve(
    given: bool,
    what: &str,
    flag: &str,
    prompt: &str,
    command: &str,
) -> anyhow::Result<Approval> {
    if given {
        return Ok(Approval::Given);
    }
    if !std::io::stdin().is_terminal() {
        stderrln!("error: not {what} without confirmation: stdin is not a terminal; pass {flag}");
        return Ok(Approval::Refused(ExitStatus::Usage));
    }
    if !confirm(prompt)? {
        stdoutln!("\n{command} cancelled.");
        return Ok(Approval::Refused(ExitStatus::Failure));
    }
    Ok(Approval::Given)
}

/// Asks on the terminal, as Terraform does; only `yes` approves.
fn confirm(prompt: &str) -> anyhow::Result<bool> {
    use std::io::Write as _;
    let mut stderr = std::io::stderr();
    write!(
        stderr,
        "\n{prompt}\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: "
    )?;
    stderr.flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

pub use crate::format::human_bytes;
