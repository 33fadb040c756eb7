//! `backup completions SHELL`: a completion script for the shell, generated
//! from the command line's own definition, so it never lags behind it.

use clap::{Args, CommandFactory as _};
use clap_complete::Shell;

use super::Cli;
use super::output::stdout;
use crate::exit::ExitStatus;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for. Install, e.g.: bash `backup completions bash
    /// > /etc/bash_completion.d/backup`; zsh into a folder on `$fpath` as
    /// `_backup`; fish into `~/.config/fish/completions/backup.fish`.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: Shell,
}

pub fn run(args: &CompletionsArgs) -> anyhow::Result<ExitStatus> {
    let mut command = Cli::command();
    // Rendered whole first: written straight to a closed pipe, it would panic.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "backup", &mut script);
    stdout!("{}", String::from_utf8_lossy(&script));
    Ok(ExitStatus::Success)
}
