//! A plan as a pull-request comment (GitHub-flavoured Markdown): a hidden
//! marker first, so a CI job finds and updates its own comment; the deletes
//! called out at the top; a summary table with one row per policy; each
//! policy's actions and reasons collapsed in `<details>`; the crontab diff in
//! a fenced block. The output depends on the plan alone (no colour, no
//! clock), so it is stable for snapshots and for comment updates.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::text::{self, Options};
use super::{Action, ActionKind, Plan, PolicyPlan};

/// The first line of every rendered plan: CI finds its comment by it.
pub const MARKER: &str = "<!-- backup-plan -->";

/// GitHub refuses comments longer than 65,536 characters; past this the
/// per-policy details are left out.
const MAX_LENGTH: usize = 60_000;

/// At most this many items per list (actions of a policy, ids in a callout).
const MAX_ITEMS: usize = 50;

/// The whole comment. Colour in `options` is ignored.
pub fn render(plan: &Plan, options: Options) -> String {
    let full = render_with(plan, options, true);
    if full.len() <= MAX_LENGTH {
        return full;
    }
    render_with(plan, options, false)
}

fn render_with(plan: &Plan, options: Options, details: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{MARKER}");
    let _ = writeln!(out, "## backup plan\n");
    let _ = writeln!(out, "**{}**", escape(&text::plan_summary_line(plan)));
    if let Some(line) = text::closing_line(plan) {
        let _ = writeln!(out, "{}", escape(&line));
    }
    out.push('\n');
    callouts(&mut out, plan);
    let _ = writeln!(
        out,
        "Planned at {} for {} polic{}{}.\n",
        code(&plan.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        plan.policies.len(),
        if plan.policies.len() == 1 { "y" } else { "ies" },
        match &plan.only {
            Some(kinds) => format!(
                ", only {}",
                kinds
                    .iter()
                    .map(|kind| code(kind.name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => String::new(),
        }
    );
    if !plan.policies.is_empty() {
        table(&mut out, plan);
    }
    if details {
        for policy in &plan.policies {
            policy_details(&mut out, plan, policy, options);
        }
    } else {
        let _ = writeln!(
            out,
            "The details of each policy are left out: they would not fit in one comment. `backup plan` prints them all.\n"
        );
    }
    crontab(&mut out, plan);
    scheduler(&mut out, plan);
    out
}

/// Deletes first, then what is held, incomplete or in error.
fn callouts(out: &mut String, plan: &Plan) {
    let mut pruned: BTreeMap<&str, (BTreeSet<&str>, BTreeSet<&str>)> = BTreeMap::new();
    for action in plan
        .actions
        .iter()
        .filter(|action| action.kind == ActionKind::Prune)
    {
        let entry = pruned
            .entry(action.policy.as_deref().unwrap_or_default())
            .or_default();
        entry.0.insert(action.backup.as_deref().unwrap_or_default());
        entry
            .1
            .insert(action.destination.as_deref().unwrap_or_default());
    }
    if !pruned.is_empty() {
        let total: usize = pruned.values().map(|(ids, _)| ids.len()).sum();
        let _ = writeln!(
            out,
            "> [!CAUTION]\n> **{total} backup{} would be deleted** (pruned: retention no longer keeps {}):",
            plural(total),
            if total == 1 { "it" } else { "them" }
        );
        for (policy, (ids, destinations)) in &pruned {
            let _ = writeln!(
                out,
                "> - **{}**: {} on {}",
                escape(policy),
                limited(ids.iter().map(|id| code(id)).collect()),
                destinations
                    .iter()
                    .map(|destination| code(destination))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        for policy in plan.policies.iter().filter(|policy| policy.mass_delete) {
            let _ = writeln!(
                out,
                "> - **{}** prunes more than half of its backups: `apply` refuses that without `--allow-mass-delete`",
                escape(&policy.name)
            );
        }
        out.push('\n');
    }
    if plan.summary.held > 0 {
        let reasons: BTreeSet<&str> = plan
            .actions
            .iter()
            .filter_map(|action| action.held.as_deref())
            .collect();
        let _ = writeln!(
            out,
            "> [!WARNING]\n> **{} deletion{} held**: {}. They are still changes: a run with delete rights carries them out.\n",
            plan.summary.held,
            if plan.summary.held == 1 {
                " is"
            } else {
                "s are"
            },
            reasons
                .iter()
                .map(|reason| escape(reason))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    let errors: Vec<String> = plan
        .policies
        .iter()
        .flat_map(|policy| {
            policy
                .errors
                .iter()
                .map(move |error| format!("**{}**: {}", escape(&policy.name), escape(error)))
        })
        .chain((plan.crontab.state == "error").then(|| {
            format!(
                "**crontab**: {}",
                escape(plan.crontab.note.as_deref().unwrap_or_default())
            )
        }))
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(out, "> [!WARNING]\n> **Errors**:");
        for error in errors {
            let _ = writeln!(out, "> - {error}");
        }
        out.push('\n');
    }
}

/// One row per policy: what it holds and what the plan does to it.
fn table(out: &mut String, plan: &Plan) {
    let _ = writeln!(
        out,
        "| policy | backups | newest | back up | copy | prune | clean up | restore test | held | state |"
    );
    let _ = writeln!(
        out,
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    for policy in &plan.policies {
        let actions = actions_of(plan, &policy.name);
        let count = |kind: ActionKind| {
            actions
                .iter()
                .filter(|action| action.kind == kind && action.held.is_none())
                .count()
        };
        let held = actions
            .iter()
            .filter(|action| action.held.is_some())
            .count();
        let state = if !policy.unreadable.is_empty() {
            "incomplete"
        } else if !policy.errors.is_empty() {
            "error"
        } else if actions.is_empty() {
            "up to date"
        } else {
            "changes"
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {held} | {state} |",
            escape(&policy.name),
            policy.backups,
            policy
                .newest
                .as_deref()
                .map_or_else(|| "none".to_owned(), |newest| cell(&code(newest))),
            count(ActionKind::Backup),
            count(ActionKind::Copy),
            count(ActionKind::Prune),
            count(ActionKind::Cleanup),
            count(ActionKind::RestoreTest),
        );
    }
    out.push('\n');
}

/// A policy's actions with their reasons, warnings and errors, collapsed.
fn policy_details(out: &mut String, plan: &Plan, policy: &PolicyPlan, options: Options) {
    let actions = actions_of(plan, &policy.name);
    let kept = if options.show_kept {
        policy.kept.as_slice()
    } else {
        &[]
    };
    if actions.is_empty() && kept.is_empty() && policy.warnings.is_empty() {
        // Its row says all there is; errors are called out at the top.
        return;
    }
    let mut counts: Vec<String> = Vec::new();
    if !actions.is_empty() {
        counts.push(format!("{} action{}", actions.len(), plural(actions.len())));
    }
    if !policy.warnings.is_empty() {
        counts.push(format!(
            "{} warning{}",
            policy.warnings.len(),
            plural(policy.warnings.len())
        ));
    }
    if !kept.is_empty() {
        counts.push(format!("{} kept", kept.len()));
    }
    let _ = writeln!(
        out,
        "<details><summary><b>{}</b> ({}): {}</summary>\n",
        html(&policy.name),
        html(&policy.file),
        counts.join(", ")
    );
    for action in actions.iter().take(MAX_ITEMS) {
        let held = if action.held.is_some() { " (held)" } else { "" };
        let _ = writeln!(out, "- {}{held}", code(&text::headline(action, false)));
        for reason in &action.reasons {
            let _ = writeln!(out, "  - {}", escape(reason));
        }
        if let Some(reason) = &action.held {
            let _ = writeln!(
                out,
                "  - held: {}; a run with delete rights carries it out",
                escape(reason)
            );
        }
    }
    if actions.len() > MAX_ITEMS {
        let _ = writeln!(
            out,
            "- … and {} more (`backup plan` lists them all)",
            actions.len() - MAX_ITEMS
        );
    }
    for kept in kept.iter().take(MAX_ITEMS) {
        let _ = writeln!(
            out,
            "- {}: {}",
            code(&format!("= keep {}", kept.backup)),
            escape(&kept.rules.join(", "))
        );
    }
    if kept.len() > MAX_ITEMS {
        let _ = writeln!(out, "- … and {} more kept", kept.len() - MAX_ITEMS);
    }
    for warning in &policy.warnings {
        let _ = writeln!(out, "- **warning:** {}", escape(warning));
    }
    let _ = writeln!(out, "\n</details>\n");
}

/// The crontab: its state, and the diff of the managed block in a fenced block.
fn crontab(out: &mut String, plan: &Plan) {
    let _ = writeln!(
        out,
        "### crontab{}\n",
        plan.crontab
            .target
            .as_deref()
            .map(|target| format!(" ({})", escape(target)))
            .unwrap_or_default()
    );
    match plan.crontab.state.as_str() {
        "update" => {
            for action in plan
                .actions
                .iter()
                .filter(|action| action.kind == ActionKind::Crontab)
            {
                for reason in &action.reasons {
                    let _ = writeln!(out, "{}\n", escape(reason));
                }
                let diff = action.diff.as_deref().unwrap_or_default();
                let fence = "`".repeat(3.max(longest_run(diff, '`') + 1));
                let _ = writeln!(out, "{fence}diff\n{diff}{fence}");
            }
        }
        state => state_paragraph(out, state, plan.crontab.note.as_deref()),
    }
}

/// A folder scheduler (systemd, Kubernetes): its state, and a diff per file.
fn scheduler(out: &mut String, plan: &Plan) {
    let Some(scheduler) = &plan.scheduler else {
        return;
    };
    let _ = writeln!(
        out,
        "\n### {}{}\n",
        scheduler.kind,
        scheduler
            .target
            .as_deref()
            .map(|target| format!(" ({})", escape(target)))
            .unwrap_or_default()
    );
    match scheduler.state.as_str() {
        "update" => {
            for action in text::scheduler_actions(plan) {
                let _ = writeln!(out, "- {}", code(text::headline(action, false).trim()));
                for reason in &action.reasons {
                    let _ = writeln!(out, "  {}", escape(reason));
                }
                if let Some(diff) = action.diff.as_deref() {
                    let fence = "`".repeat(3.max(longest_run(diff, '`') + 1));
                    let _ = writeln!(out, "\n{fence}diff\n{diff}{fence}\n");
                }
            }
        }
        state => state_paragraph(out, state, scheduler.note.as_deref()),
    }
}

/// A scheduler's state other than `update`, as a paragraph.
fn state_paragraph(out: &mut String, state: &str, note: Option<&str>) {
    let note = escape(note.unwrap_or_default());
    let _ = match state {
        "unchanged" => writeln!(out, "Up to date."),
        "error" => writeln!(out, "Error: {note}"),
        _ => writeln!(out, "Not managed: {note}"),
    };
}

fn actions_of<'a>(plan: &'a Plan, policy: &str) -> Vec<&'a Action> {
    plan.actions
        .iter()
        .filter(|action| action.policy.as_deref() == Some(policy))
        .collect()
}

/// `a, b, c`, or the first [`MAX_ITEMS`] and how many more.
fn limited(items: Vec<String>) -> String {
    if items.len() <= MAX_ITEMS {
        return items.join(", ");
    }
    format!(
        "{}, … ({} more)",
        items[..MAX_ITEMS].join(", "),
        items.len() - MAX_ITEMS
    )
}

/// Plain text, with every character Markdown or HTML would read escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '&' | '|' | '~' | '#' => {
                out.push('\\');
                out.push(character);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(character),
        }
    }
    out
}

/// A code span that holds `text` whatever backticks it contains.
fn code(text: &str) -> String {
    let text = text.replace(['\n', '\r'], " ");
    let fence = "`".repeat(longest_run(&text, '`') + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

/// In a table cell, `|` ends the cell even inside a code span.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// Text inside HTML (`<summary>`).
fn html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn longest_run(text: &str, wanted: char) -> usize {
    let mut longest = 0;
    let mut current = 0;
    for character in text.chars() {
        if character == wanted {
            current += 1;
            longest = longest.max(current);
        } else {
            current = 0;
        }
    }
    longest
}

fn plural(count: usize) -> &'static str {
    if count == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_policies_cannot_become_markup() {
        for (text, escaped) in [
            ("keep-last 3", "keep-last 3"),
            ("0 1 * * *", "0 1 \\* \\* \\*"),
            (
                "</details><!-- backup-plan -->",
                "\\</details\\>\\<!-- backup-plan --\\>",
            ),
            ("a|b", "a\\|b"),
            ("line\nbreak", "line break"),
        ] {
            assert_eq!(escape(text), escaped, "{text}");
        }
    }

    #[test]
    fn code_spans_hold_any_backticks() {
        for (text, span) in [
            ("plain", "`plain`"),
            ("a `b` c", "``a `b` c``"),
            ("`edge`", "`` `edge` ``"),
        ] {
            assert_eq!(code(text), span, "{text}");
        }
        assert_eq!(html("<b>&\"</b>"), "&lt;b&gt;&amp;&quot;&lt;/b&gt;");
    }
}
