//! How an apply run reads on the terminal: one line per action as it ends,
//! and the closing summary. Rendering only.

use super::{ActionResult, ApplyReport, Outcome};
use crate::plan::{ActionKind, Plan};
use crate::policy::diagnostic::paint;

/// `done    app: back up to /b: …`, or for a refusal one line for all the
/// actions it covers.
pub fn result_line(result: &ActionResult, color: bool) -> String {
    let policy = result
        .action
        .policy
        .as_deref()
        .unwrap_or(result.action.kind.name());
    let headline = crate::plan::text::headline(&result.action, color);
    let (label, detail) = match &result.outcome {
        Outcome::Done(detail) => (paint(color, "32", "done   "), detail),
        Outcome::Failed(error) => (paint(color, "1;31", "FAILED "), error),
        Outcome::Skipped(reason) => (paint(color, "33", "skipped"), reason),
        Outcome::Refused(reason) => {
            return format!("{} {policy}: {reason}", paint(color, "1;31", "refused"));
        }
    };
    format!("{label} {policy}: {}: {detail}", headline.trim_start())
}

/// `Apply complete: 1 backed up, …` or `Apply failed: …`.
pub fn summary(plan: &Plan, report: &ApplyReport) -> String {
    let crontab = if report.done(ActionKind::Crontab) > 0 {
        "crontab updated"
    } else if plan.summary.crontab > 0 {
        "crontab not updated"
    } else if plan.crontab.state == "unchanged" {
        "crontab unchanged"
    } else {
        "crontab not managed"
    };
    let scheduler = plan
        .scheduler
        .as_ref()
        .map(|scheduler| {
            let what = scheduler.what();
            let files = report
                .results
                .iter()
                .filter(|result| {
                    result.action.change.is_some() && matches!(result.outcome, Outcome::Done(_))
                })
                .count();
            if files > 0 {
                format!(", {files} of the {what} written or removed")
            } else if plan.summary.scheduler > 0 {
                format!(", {what} not updated")
            } else if scheduler.state == "unchanged" {
                format!(", {what} unchanged")
            } else {
                format!(", {what} not managed")
            }
        })
        .unwrap_or_default();
    let counts = format!(
        "{} backed up, {} copied, {} pruned, {} cleaned up, {crontab}{scheduler}",
        report.done(ActionKind::Backup),
        report.done(ActionKind::Copy),
        report.done(ActionKind::Prune),
        report.done(ActionKind::Cleanup),
    );
    let failed = report.failed();
    let refused = report.refused();
    if failed == 0 && refused == 0 {
        return format!("Apply complete: {counts}.");
    }
    let skipped = report.skipped();
    let refused = match refused {
        0 => String::new(),
        count => format!("{count} refused (--allow-mass-delete), "),
    };
    format!(
        "Apply failed: {failed} action{} failed, {refused}{skipped} skipped; {counts}. Running apply again finishes the job once the cause is fixed.",
        if failed == 1 { "" } else { "s" }
    )
}
