//! `backup man`: man pages (roff) generated from the command line's own
//! definition: `backup.1` on stdout, or one page per command into a folder.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, CommandFactory as _};

use super::Cli;
use super::output::{stderrln, stdout};
use crate::exit::ExitStatus;

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `backup.1` and a `backup-<command>.1` for each command into this
    /// folder (created if missing), e.g. `/usr/local/share/man/man1`, instead
    /// of printing `backup.1`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn run(args: &ManArgs) -> anyhow::Result<ExitStatus> {
    let command = Cli::command();
    match &args.out {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .context("cannot render the man page")?;
            stdout!("{}", String::from_utf8_lossy(&page));
        }
        Some(folder) => write_pages(command, folder)?,
    }
    Ok(ExitStatus::Success)
}

/// `backup.1`, then one page per command (`backup-plan.1`, …), into `folder`.
fn write_pages(command: clap::Command, folder: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    clap_mangen::generate_to(command, folder)
        .with_context(|| format!("cannot write the man pages into {}", folder.display()))?;
    stderrln!(
        "Wrote backup.1 and a page per command into {}.",
        folder.display()
    );
    Ok(())
}
