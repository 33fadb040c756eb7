//! `backup render systemd|kubernetes --out DIR`: write the units or
//! manifests `apply` would install into a folder of one's choosing (a
//! GitOps repository, a configuration management tree), nothing else.

use super::output::{stderrln, stdoutln};
use std::path::PathBuf;

use chrono::Utc;
use clap::{Args, ValueEnum};

use super::{GlobalArgs, load_selection};
use crate::exit::ExitStatus;
use crate::schedule::{SchedulerKind, folder};

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// What to render: `systemd` (a .service and .timer per policy, and the
    /// health check's) or `kubernetes` (CronJob manifests).
    #[arg(value_enum)]
    pub kind: RenderKind,
    /// The folder to write them to (made if missing). Files in it that
    /// backup did not write are never overwritten; files it wrote that the
    /// policies no longer need are removed.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// A scheduler whose files can be rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RenderKind {
    Systemd,
    Kubernetes,
}

impl RenderKind {
    fn scheduler(self) -> SchedulerKind {
        match self {
            RenderKind::Systemd => SchedulerKind::Systemd,
            RenderKind::Kubernetes => SchedulerKind::Kubernetes,
        }
    }
}

pub fn run(global: &GlobalArgs, args: &RenderArgs) -> anyhow::Result<ExitStatus> {
    let selection = match load_selection(global, &[], None) {
        Ok(selection) => selection,
        Err(status) => return Ok(status),
    };
    if selection.errors > 0 {
        stderrln!(
            "error: the policy files have {} error{}; nothing was rendered, so that no policy loses its units",
            selection.errors,
            if selection.errors == 1 { "" } else { "s" }
        );
        return Ok(ExitStatus::InvalidPolicy);
    }
    let state = global.state();
    let planned = match crate::observe::scheduler_files(
        args.kind.scheduler(),
        &selection,
        &state,
        &global.policy_paths(&[]),
        Utc::now(),
    ) {
        Ok(files) => files,
        Err(error) => {
            stderrln!("error: {error}");
            return Ok(ExitStatus::Failure);
        }
    };
    let out = std::path::absolute(&args.out).unwrap_or_else(|_| args.out.clone());
    let (current, _) = match folder::read(&out) {
        Ok(found) => found,
        Err(error) => {
            stderrln!("error: {error}");
            return Ok(ExitStatus::Failure);
        }
    };
    match folder::foreign(&out, &planned) {
        Ok(foreign) if foreign.is_empty() => {}
        Ok(foreign) => {
            for path in foreign {
                stderrln!("error: {}", folder::Error::NotManaged(path));
            }
            stderrln!("Nothing was written.");
            return Ok(ExitStatus::Failure);
        }
        Err(error) => {
            stderrln!("error: {error}");
            return Ok(ExitStatus::Failure);
        }
    }
    let changes = folder::changes(&current, &planned);
    for change in &changes {
        let done = match change.change {
            folder::Change::Remove => folder::remove(&out, &change.name),
            folder::Change::Create | folder::Change::Change => planned
                .iter()
                .find(|file| file.name == change.name)
                .map_or(Ok(()), |file| folder::write(&out, file)),
        };
        if let Err(error) = done {
            stderrln!("error: {error}");
            return Ok(ExitStatus::Failure);
        }
        stdoutln!(
            "{:<7} {}",
            change.change.name(),
            out.join(&change.name).display()
        );
    }
    stdoutln!(
        "Rendered {} file{} into {}: {} written, {} removed, {} unchanged.",
        planned.len(),
        if planned.len() == 1 { "" } else { "s" },
        out.display(),
        changes
            .iter()
            .filter(|change| change.change != folder::Change::Remove)
            .count(),
        changes
            .iter()
            .filter(|change| change.change == folder::Change::Remove)
            .count(),
        planned.len()
            - changes
                .iter()
                .filter(|change| change.change != folder::Change::Remove)
                .count(),
    );
    Ok(ExitStatus::Success)
}
