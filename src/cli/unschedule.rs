//! `backup unschedule`: remove the managed block from the crontab, so cron
//! stops running `backup` (the seed's `setup-cron.sh uninstall`).

use super::output::{stderrln, stdoutln};
use std::path::PathBuf;

use clap::Args;

use super::{Approval, GlobalArgs, approve};
use crate::exit::ExitStatus;
use crate::schedule::crontab::{self, Target};

#[derive(Debug, Args)]
pub struct UnscheduleArgs {
    /// Remove the block from this crontab file (as `apply --crontab-file`
    /// wrote it) instead of the user's crontab.
    #[arg(long, value_name = "FILE")]
    pub crontab_file: Option<PathBuf>,
    /// Do not ask for confirmation (needed when stdin is not a terminal).
    #[arg(long, visible_alias = "auto-approve")]
    pub yes: bool,
}

pub fn run(global: &GlobalArgs, args: &UnscheduleArgs) -> anyhow::Result<ExitStatus> {
    let target = match &args.crontab_file {
        Some(file) => Target::File(std::path::absolute(file).unwrap_or_else(|_| file.clone())),
        None => Target::User(None),
    };
    let removal = match crontab::read(&target).and_then(|text| crontab::removal(&text)) {
        Ok(removal) => removal,
        Err(error) => {
            stderrln!("error: {}: {error}", target.describe());
            return Ok(ExitStatus::Failure);
        }
    };
    let Some(diff) = removal else {
        stdoutln!(
            "No managed block in {}; nothing to remove.",
            target.describe()
        );
        return Ok(ExitStatus::Success);
    };
    stdoutln!("Removing the managed block from {}:\n", target.describe());
    for line in diff.lines() {
        stdoutln!("  {line}");
    }
    if let Approval::Refused(status) = approve(
        args.yes,
        "removing the block",
        "--yes",
        "Do you want to remove the managed block?",
        "Unschedule",
    )? {
        return Ok(status);
    }
    let state = global.state();
    let removed = state
        .lock_crontab()
        .map_err(|error| error.to_string())
        .and_then(|_lock| crontab::replace_block(&target, "").map_err(|error| error.to_string()));
    if let Err(error) = removed {
        stderrln!("error: {error}");
        return Ok(ExitStatus::Failure);
    }
    stdoutln!(
        "\nRemoved the managed block from {}: cron no longer runs backup. The backups stay where they are; `backup apply` writes the block again while policies remain.",
        target.describe()
    );
    Ok(ExitStatus::Success)
}
