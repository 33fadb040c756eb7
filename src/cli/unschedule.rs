//! `backup unschedule`: remove what makes the scheduler run `backup` (the
//! seed's `setup-cron.sh uninstall`): the managed crontab block, or the
//! systemd units (disabled first where systemd runs), or the Kubernetes
//! manifests; nothing else.

use super::output::{stderr, stderrln, stdoutln};
use std::path::{Path, PathBuf};

use clap::Args;

use super::args::SchedulerArgs;
use super::{Approval, GlobalArgs, approve};
use crate::exit::ExitStatus;
use crate::schedule::crontab::{self, Target};
use crate::schedule::{SchedulerKind, folder, systemd};

#[derive(Debug, Args)]
pub struct UnscheduleArgs {
    /// Remove the block from this crontab file (as `apply --crontab-file`
    /// wrote it) instead of the user's crontab.
    #[arg(long, value_name = "FILE")]
    pub crontab_file: Option<PathBuf>,
    /// Do not ask for confirmation (needed when stdin is not a terminal).
    #[arg(long, visible_alias = "auto-approve")]
    pub yes: bool,
    #[command(flatten)]
    pub scheduler: SchedulerArgs,
}

pub fn run(global: &GlobalArgs, args: &UnscheduleArgs) -> anyhow::Result<ExitStatus> {
    // Only the settings matter here: broken policies must not keep a
    // scheduler running them.
    let loaded = crate::policy::load(&global.policy_paths(&[]), crate::policy::Options::default());
    if loaded.settings_invalid && args.scheduler.scheduler.is_none() {
        let color = global.stderr_color();
        for diagnostic in loaded
            .diagnostics
            .iter()
            .filter(|diagnostic| diagnostic.is_error())
        {
            stderr!("{}", diagnostic.render(color));
        }
        stderrln!(
            "error: the settings document has errors, so which scheduler runs backup here is not known; fix it, or pass --scheduler cron|systemd|kubernetes"
        );
        return Ok(ExitStatus::InvalidPolicy);
    }
    let (kind, _) =
        crate::observe::scheduler_of(loaded.settings.as_ref(), args.scheduler.scheduler);
    if kind == SchedulerKind::Cron {
        return unschedule_cron(global, args);
    }
    let folder = match crate::observe::scheduler_folder(kind, loaded.settings.as_ref()) {
        Ok(folder) => std::path::absolute(&folder).unwrap_or(folder),
        Err(error) => {
            stderrln!("error: {error}");
            return Ok(ExitStatus::Failure);
        }
    };
    unschedule_folder(global, args, kind, &folder)
}

/// Removes the files of ours from a folder scheduler's folder.
fn unschedule_folder(
    global: &GlobalArgs,
    args: &UnscheduleArgs,
    kind: SchedulerKind,
    target: &Path,
) -> anyhow::Result<ExitStatus> {
    let what = match kind {
        SchedulerKind::Systemd => "systemd units",
        _ => "Kubernetes manifests",
    };
    let (ours, _) = match folder::read(target) {
        Ok(found) => found,
        Err(error) => {
            stderrln!("error: {error}");
            return Ok(ExitStatus::Failure);
        }
    };
    if ours.is_empty() {
        stdoutln!(
            "No {what} of backup in {}; nothing to remove.",
            target.display()
        );
        return Ok(ExitStatus::Success);
    }
    stdoutln!("Removing the {what} of backup from {}:\n", target.display());
    for file in &ours {
        stdoutln!("  - {}", file.name);
    }
    if let Approval::Refused(status) = approve(
        args.yes,
        "removing them",
        "--yes",
        &format!("Do you want to remove these {what}?"),
        "Unschedule",
    )? {
        return Ok(status);
    }
    let running = kind == SchedulerKind::Systemd && systemd::is_running();
    let user = !crate::state::is_root();
    let state = global.state();
    let removed = state
        .lock_crontab()
        .map_err(|error| error.to_string())
        .and_then(|_lock| {
            if running {
                let timers: Vec<&str> = ours
                    .iter()
                    .map(|file| file.name.as_str())
                    .filter(|name| name.ends_with(".timer"))
                    .collect();
                if !timers.is_empty() {
                    let mut arguments = vec!["disable", "--now"];
                    arguments.extend(&timers);
                    systemd::systemctl(user, &arguments)?;
                }
            }
            for file in &ours {
                folder::remove(target, &file.name).map_err(|error| error.to_string())?;
            }
            if running {
                systemd::systemctl(user, &["daemon-reload"])?;
            }
            Ok(())
        });
    if let Err(error) = removed {
        stderrln!("error: {error}");
        return Ok(ExitStatus::Failure);
    }
    let reloaded = match (kind, running) {
        (SchedulerKind::Systemd, true) => " (the timers disabled first, systemd reloaded)",
        (SchedulerKind::Systemd, false) => {
            " (systemd is not running as PID 1 here: nothing to disable or reload)"
        }
        _ => "",
    };
    stdoutln!(
        "\nRemoved {} file{} from {}{reloaded}. The backups stay where they are; `backup apply` writes them again while policies remain.",
        ours.len(),
        if ours.len() == 1 { "" } else { "s" },
        target.display()
    );
    Ok(ExitStatus::Success)
}

fn unschedule_cron(global: &GlobalArgs, args: &UnscheduleArgs) -> anyhow::Result<ExitStatus> {
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
