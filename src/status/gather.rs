//! Reading what [`super::evaluate`] judges: free space of local
//! destinations, the newest restore drill's evidence, the crontab block.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::{CrontabCheck, Drill, Space};
use crate::plan::CrontabInput;
use crate::schedule::crontab;

/// Free and total space of the file system holding `path` (or its nearest
/// existing parent: a destination folder is created at the first backup).
pub fn space(path: &Path) -> Result<Space, String> {
    let mut probe = path;
    while !probe.exists() {
        probe = probe
            .parent()
            .ok_or_else(|| "no existing parent folder".to_owned())?;
    }
    let stats = rustix::fs::statvfs(probe)
        .map_err(|error| format!("statvfs {}: {error}", probe.display()))?;
    Ok(Space {
        free_bytes: stats.f_bavail.saturating_mul(stats.f_frsize),
        total_bytes: stats.f_blocks.saturating_mul(stats.f_frsize),
    })
}

/// The newest drill evidence record under `<state>/restore-tests/<policy>/`,
/// read leniently: records this version cannot read are skipped.
pub fn drill(state: &Path, policy: &str) -> Option<Drill> {
    let folder = state.join("restore-tests").join(policy);
    std::fs::read_dir(folder)
        .ok()?
        .flatten()
        .filter(|entry| {
            entry
                .path()
                .extension()
                .is_some_and(|extension| extension == "json")
        })
        .filter_map(|entry| {
            let value: serde_json::Value = serde_json::from_slice(
                &crate::bounded::read_file(&entry.path(), crate::bounded::RECORD_LIMIT).ok()?,
            )
            .ok()?;
            let started_at: DateTime<Utc> =
                serde_json::from_value(value.get("started_at")?.clone()).ok()?;
            let text = |key: &str| {
                value
                    .get(key)
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
            };
            Some(Drill {
                result: text("result").unwrap_or_else(|| "unknown".to_owned()),
                started_at,
                backup: text("backup"),
                error: text("error"),
            })
        })
        .max_by_key(|drill| drill.started_at)
}

/// Whether the installed block holds `policy`'s line as the policies want it
/// (`None`: the block as a whole, status line included).
pub fn crontab_check(input: &CrontabInput, policy: Option<&str>) -> CrontabCheck {
    let check = |state: &str, message: String| CrontabCheck {
        state: state.to_owned(),
        message,
    };
    let (target, text, planned) = match input {
        CrontabInput::Unmanaged { reason } => {
            return check("unchecked", format!("crontab not checked: {reason}"));
        }
        CrontabInput::Unreadable { target, error } => {
            return check("error", format!("cannot read {target}: {error}"));
        }
        CrontabInput::Found {
            target,
            text,
            planned_block,
        } => (target, text, planned_block),
    };
    let installed = match crontab::find_block(text) {
        Ok(Some(range)) => &text[range],
        Ok(None) => {
            return check(
                "missing",
                format!("the managed block is not installed in {target}; run `backup apply`"),
            );
        }
        Err(error) => return check("error", format!("{target}: {error}")),
    };
    let Some(policy) = policy else {
        return if installed == planned.as_str() {
            check("ok", format!("the managed block in {target} is up to date"))
        } else {
            check(
                "differs",
                format!(
                    "the managed block in {target} differs from the policies; `backup plan` shows how, `backup apply` fixes it"
                ),
            )
        };
    };
    // The policy's comment line and the command line after it.
    let lines: Vec<&str> = planned.lines().collect();
    let Some(index) = lines
        .iter()
        .position(|line| line.starts_with(&format!("# {policy}: ")))
    else {
        return check(
            "unchecked",
            "the policy has no line in the planned block".to_owned(),
        );
    };
    let wanted = &lines[index..(index + 2).min(lines.len())];
    let installed: Vec<&str> = installed.lines().collect();
    if installed
        .windows(wanted.len())
        .any(|window| window == wanted)
    {
        check("ok", format!("cron runs it from {target}"))
    } else if installed
        .iter()
        .any(|line| line.starts_with(&format!("# {policy}: ")))
    {
        check(
            "differs",
            format!("its line in {target} differs from the policy; run `backup apply`"),
        )
    } else {
        check(
            "missing",
            format!("no line runs it in {target}; run `backup apply`"),
        )
    }
}

/// One destination's host records ([`crate::fleet::read`]) by host, or why
/// they could not be read, beside its location.
pub type HostRecords = (
    String,
    Result<std::collections::BTreeMap<String, crate::runlog::RunRecord>, String>,
);

/// Per policy (by name), each destination's [`HostRecords`].
pub type FleetRecords = std::collections::BTreeMap<String, Vec<HostRecords>>;

/// Reads every host record of every destination of `policies`.
pub fn fleet_records(policies: &[crate::policy::Policy]) -> FleetRecords {
    policies
        .iter()
        .map(|policy| {
            let found = policy
                .destinations
                .iter()
                .map(|spec| {
                    let records = crate::destination::open(spec)
                        .and_then(|destination| {
                            crate::fleet::read(destination.as_ref(), &policy.name)
                        })
                        .map_err(|error| error.to_string());
                    (crate::destination::describe(spec), records)
                })
                .collect();
            (policy.name.clone(), found)
        })
        .collect()
}
