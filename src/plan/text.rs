//! A plan as people read it, modelled on `terraform plan`: one section per
//! policy, one symbol per action (`+` adds, `-` deletes, `~` changes), the
//! reasons indented below, and a summary line.

use std::fmt::Write as _;

use super::{Action, ActionKind, Plan, SchedulerPlan, Summary};
use crate::policy::diagnostic::paint;
use crate::schedule::folder::Change;

/// How to render.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Also list every backup retention keeps, with its rules.
    pub show_kept: bool,
    pub color: bool,
}

/// The whole plan, ending with the summary line.
pub fn render(plan: &Plan, options: Options) -> String {
    let color = options.color;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Planned at {} for {} polic{}.",
        plan.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        plan.policies.len(),
        if plan.policies.len() == 1 { "y" } else { "ies" }
    );
    for policy in &plan.policies {
        let actions: Vec<&Action> = plan
            .actions
            .iter()
            .filter(|action| action.policy.as_deref() == Some(policy.name.as_str()))
            .collect();
        out.push('\n');
        let newest = policy.newest.as_deref().map_or_else(
            || "no backup yet".to_owned(),
            |newest| {
                format!(
                    "{} backup{}, newest {newest}",
                    policy.backups,
                    if policy.backups == 1 { "" } else { "s" }
                )
            },
        );
        let codec = if policy.codec == super::DEFAULT_CODEC {
            String::new()
        } else {
            format!("; stored as {}", policy.codec)
        };
        let _ = writeln!(
            out,
            "{} ({}): {newest}{codec}",
            paint(color, "1", &policy.name),
            policy.file
        );
        if let Some(physical) = &policy.physical {
            let _ = writeln!(out, "  {}", super::physical_line(physical));
        }
        for action in &actions {
            render_action(&mut out, action, color);
        }
        if options.show_kept {
            for kept in &policy.kept {
                let _ = writeln!(
                    out,
                    "  {} keep {}: {}",
                    paint(color, "2", "="),
                    kept.backup,
                    kept.rules.join(", ")
                );
            }
        }
        for warning in &policy.warnings {
            let _ = writeln!(out, "  {} {warning}", paint(color, "1;33", "warning:"));
        }
        for error in &policy.errors {
            let _ = writeln!(out, "  {} {error}", paint(color, "1;31", "error:"));
        }
        if actions.is_empty() && policy.errors.is_empty() {
            let _ = writeln!(out, "  up to date");
        }
    }
    out.push('\n');
    match plan.crontab.target.as_deref() {
        Some(target) => {
            let _ = writeln!(out, "{} ({target})", paint(color, "1", "crontab"));
        }
        None => {
            let _ = writeln!(out, "{}", paint(color, "1", "crontab"));
        }
    }
    match plan.crontab.state.as_str() {
        "update" => {
            for action in plan
                .actions
                .iter()
                .filter(|action| action.kind == ActionKind::Crontab)
            {
                render_action(&mut out, action, color);
            }
        }
        state => render_state(&mut out, state, plan.crontab.note.as_deref(), color),
    }
    if let Some(scheduler) = &plan.scheduler {
        out.push('\n');
        render_scheduler(&mut out, plan, scheduler, color);
    }
    out.push('\n');
    if let Some(line) = closing_line(plan) {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "{}", plan_summary_line(plan));
    out
}

/// A folder scheduler's section: its actions, or its state.
fn render_scheduler(out: &mut String, plan: &Plan, scheduler: &SchedulerPlan, color: bool) {
    let title = paint(color, "1", &scheduler.kind);
    match scheduler.target.as_deref() {
        Some(target) => {
            let _ = writeln!(out, "{title} ({target})");
        }
        None => {
            let _ = writeln!(out, "{title}");
        }
    }
    match scheduler.state.as_str() {
        "update" => {
            for action in scheduler_actions(plan) {
                render_action(out, action, color);
            }
        }
        state => render_state(out, state, scheduler.note.as_deref(), color),
    }
}

/// A scheduler's state other than `update`: up to date, not managed (and
/// why), or the error.
fn render_state(out: &mut String, state: &str, note: Option<&str>, color: bool) {
    if state == "unchanged" {
        let _ = writeln!(out, "  up to date");
        return;
    }
    let label = if state == "error" {
        paint(color, "1;31", "error:")
    } else {
        "not managed:".to_owned()
    };
    let _ = writeln!(out, "  {label} {}", note.unwrap_or_default());
}

/// The actions on a folder scheduler's files, in order.
pub fn scheduler_actions(plan: &Plan) -> impl Iterator<Item = &Action> {
    plan.actions
        .iter()
        .filter(|action| matches!(action.kind, ActionKind::Systemd | ActionKind::Kubernetes))
}

/// The summary line, with the folder scheduler's state when there is one:
/// `…, crontab not managed, systemd units: 4 to change.`
pub fn plan_summary_line(plan: &Plan) -> String {
    let line = summary_line(&plan.summary, &plan.crontab.state);
    let Some(scheduler) = &plan.scheduler else {
        return line;
    };
    let what = scheduler.what();
    let state = match scheduler.state.as_str() {
        "update" => format!("{what}: {} to change", plan.summary.scheduler),
        "unchanged" => format!("{what} unchanged"),
        "error" => format!("{what} unreadable"),
        _ => format!("{what} not managed"),
    };
    format!("{}, {state}.", line.trim_end_matches('.'))
}

/// The line before the summary: what the plan could not see, or that
/// nothing differs (only a plan without errors that read everything says so).
pub fn closing_line(plan: &Plan) -> Option<String> {
    let unseen = plan.unseen();
    if !unseen.is_empty() {
        let count = unseen.len();
        return Some(format!(
            "Incomplete: {count} destination{} could not be read ({}); this plan does not cover what {} hold{}.",
            if count == 1 { "" } else { "s" },
            unseen.join("; "),
            if count == 1 { "it" } else { "they" },
            if count == 1 { "s" } else { "" },
        ));
    }
    if plan.has_changes() || plan.has_errors() {
        return None;
    }
    if let Some(kinds) = &plan.only {
        let kinds: Vec<&str> = kinds.iter().map(|kind| kind.name()).collect();
        return Some(format!(
            "No changes of the kinds asked for (--only {}); other kinds were not planned.",
            kinds.join(",")
        ));
    }
    Some(match &plan.scheduler {
        Some(scheduler) if scheduler.state == "unchanged" => format!(
            "No changes. The backups and the {} match the policies.",
            scheduler.what()
        ),
        _ => "No changes. The backups and the crontab match the policies.".to_owned(),
    })
}

/// `Plan: 1 to back up, 0 to copy, 5 to prune, 0 to clean up, crontab unchanged.`
pub fn summary_line(summary: &Summary, crontab_state: &str) -> String {
    let crontab = match crontab_state {
        "update" => "crontab to update",
        "unchanged" => "crontab unchanged",
        "error" => "crontab unreadable",
        _ => "crontab not managed",
    };
    let drills = match summary.restore_test {
        0 => String::new(),
        1 => "1 restore test, ".to_owned(),
        count => format!("{count} restore tests, "),
    };
    let held = match summary.held {
        0 => String::new(),
        count => format!("{count} held (deletes refused here), "),
    };
    format!(
        "Plan: {} to back up, {} to copy, {} to prune, {} to clean up, {drills}{held}{crontab}.",
        summary.backup, summary.copy, summary.prune, summary.cleanup
    )
}

/// One action and its reasons, e.g. `  - prune 20261117T010000Z on /var/backups`.
pub fn render_action(out: &mut String, action: &Action, color: bool) {
    let held = if action.held.is_some() { " (held)" } else { "" };
    let _ = writeln!(out, "  {}{held}", headline(action, color));
    for reason in &action.reasons {
        let _ = writeln!(out, "      {reason}");
    }
    if let Some(reason) = &action.held {
        let _ = writeln!(
            out,
            "      {} {reason}; a run with delete rights carries it out",
            paint(color, "33", "held:")
        );
    }
    if let Some(diff) = &action.diff {
        for line in diff.lines() {
            let painted = match line.chars().next() {
                Some('+') if !line.starts_with("+++") => paint(color, "32", line),
                Some('-') if !line.starts_with("---") => paint(color, "31", line),
                _ => line.to_owned(),
            };
            let _ = writeln!(out, "      {painted}");
        }
    }
}

/// The first line of an action, with its symbol.
pub fn headline(action: &Action, color: bool) -> String {
    let destination = action.destination.as_deref().unwrap_or_default();
    let backup = action.backup.as_deref().unwrap_or_default();
    match action.kind {
        ActionKind::Backup if action.is_physical() => {
            format!("{} base backup", paint(color, "32", "+"))
        }
        ActionKind::Backup => format!("{} backup", paint(color, "32", "+")),
        ActionKind::Copy => format!(
            "{} copy {backup} to {destination} (from {})",
            paint(color, "32", "+"),
            action.from.as_deref().unwrap_or_default()
        ),
        ActionKind::Prune if action.format.as_deref() == Some(super::wal::WAL_FORMAT) => format!(
            "{} prune WAL {} on {destination}",
            paint(color, "31", "-"),
            action
                .object
                .as_deref()
                .unwrap_or_default()
                .replace("..", " to ")
        ),
        ActionKind::Prune => format!(
            "{} prune {backup} on {destination}",
            paint(color, "31", "-")
        ),
        ActionKind::Cleanup => format!(
            "{} clean up {} on {destination}",
            paint(color, "31", "-"),
            action.object.as_deref().unwrap_or_default()
        ),
        ActionKind::RestoreTest => format!("{} restore-test", paint(color, "32", "+")),
        ActionKind::Crontab => format!(
            "{} update the managed block in {destination}",
            paint(color, "33", "~")
        ),
        ActionKind::Systemd | ActionKind::Kubernetes => {
            let object = action.object.as_deref().unwrap_or_default();
            match action.change {
                Some(Change::Create) => {
                    format!(
                        "{} create {object} in {destination}",
                        paint(color, "32", "+")
                    )
                }
                Some(Change::Change) => {
                    format!(
                        "{} change {object} in {destination}",
                        paint(color, "33", "~")
                    )
                }
                Some(Change::Remove) => {
                    format!(
                        "{} remove {object} from {destination}",
                        paint(color, "31", "-")
                    )
                }
                None => format!(
                    "{} reload systemd and enable the timers",
                    paint(color, "33", "~")
                ),
            }
        }
    }
}
