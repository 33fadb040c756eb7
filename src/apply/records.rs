//! What `apply` leaves behind per policy: a run record, notifications and
//! dead-man pings (see [`crate::notify::finished`]). A restore drill keeps
//! a run record of its own (kind `drill`, see [`crate::restore::drill::keep`]):
//! its failure is notified as such, and neither fails nor ends the policy's
//! backup streak; a policy whose only action was a drill gets no `apply`
//! record.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{ActionResult, ApplyReport, Outcome};
use crate::notify;
use crate::plan::{ActionKind, Plan};
use crate::policy::Policy;
use crate::runlog::{RunKind, RunRecord};
use crate::state::StateDir;

/// Per policy: when its actions began and ended, and what failed.
pub struct Records {
    /// Policies with actions (crontab aside) or plan errors, and those errors.
    policies: BTreeMap<String, Vec<String>>,
    /// Policies whose plan takes a backup (they get dead-man pings).
    backing_up: Vec<String>,
    spans: BTreeMap<String, (DateTime<Utc>, DateTime<Utc>)>,
    failures: BTreeMap<String, Vec<String>>,
    /// Failed restore drills, per policy: notified on their own.
    drills: BTreeMap<String, Vec<String>>,
    last: DateTime<Utc>,
}

impl Records {
    pub fn new(plan: &Plan) -> Records {
        let mut policies: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for action in &plan.actions {
            if let Some(policy) = &action.policy
                && action.kind != ActionKind::RestoreTest
            {
                policies.entry(policy.clone()).or_default();
            }
        }
        for policy in &plan.policies {
            if !policy.errors.is_empty() {
                policies
                    .entry(policy.name.clone())
                    .or_default()
                    .extend(policy.errors.iter().cloned());
            }
        }
        let backing_up = plan
            .actions
            .iter()
            .filter(|action| action.kind == ActionKind::Backup)
            .filter_map(|action| action.policy.clone())
            .collect();
        Records {
            policies,
            backing_up,
            spans: BTreeMap::new(),
            failures: BTreeMap::new(),
            drills: BTreeMap::new(),
            last: Utc::now(),
        }
    }

    /// Before the actions: start pings for the policies that back up.
    pub fn start(&mut self, policies: &[Policy]) -> Vec<String> {
        let mut problems = Vec::new();
        for policy in policies
            .iter()
            .filter(|policy| self.backing_up.contains(&policy.name))
        {
            problems.extend(notify::ping(policy, notify::Ping::Start, ""));
        }
        self.last = Utc::now();
        problems
    }

    /// After each action: its time, and its failure.
    pub fn observe(&mut self, result: &ActionResult) {
        let now = Utc::now();
        let headline = crate::plan::text::headline(&result.action, false);
        let headline = headline.trim_start();
        if let Some(policy) = &result.action.policy {
            let span = self.spans.entry(policy.clone()).or_insert((self.last, now));
            span.1 = now;
            match &result.outcome {
                Outcome::Done(detail) => {
                    tracing::info!(policy = %policy, "{headline}: {detail}");
                }
                Outcome::Failed(error) => {
                    tracing::error!(policy = %policy, "{headline}: {error}");
                    let failures = if result.action.kind == ActionKind::RestoreTest {
                        &mut self.drills
                    } else {
                        &mut self.failures
                    };
                    failures
                        .entry(policy.clone())
                        .or_default()
                        .push(format!("{headline}: {error}"));
                }
                Outcome::Skipped(reason) => {
                    tracing::warn!(policy = %policy, "{headline}: skipped: {reason}");
                }
                Outcome::Refused(reason) => {
                    // Observed once for all the actions it covers; printed on stdout, so
                    // only the per-run log gets it at info.
                    tracing::info!(policy = %policy, "Refused: {reason}");
                    self.failures
                        .entry(policy.clone())
                        .or_default()
                        .push(reason.clone());
                }
            }
        }
        self.last = now;
    }

    /// After the actions: one record per policy that had something to do.
    pub fn finish(
        &self,
        state: &StateDir,
        policies: &[Policy],
        report: &ApplyReport,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, errors) in &self.drills {
            if let Some(policy) = policies.iter().find(|policy| &policy.name == name) {
                let error = format!("restore drill failed: {}", errors.join("; "));
                problems.extend(notify::other_failed(policy, error, None));
            }
        }
        for (name, plan_errors) in &self.policies {
            let Some(policy) = policies.iter().find(|policy| &policy.name == name) else {
                continue;
            };
            let (started_at, finished_at) = self
                .spans
                .get(name)
                .copied()
                .unwrap_or((self.last, self.last));
            let mut record = RunRecord::new(name, RunKind::Apply, started_at);
            record.finished_at = finished_at;
            record.duration_seconds =
                (finished_at - started_at).num_milliseconds().max(0) as f64 / 1000.0;
            if let Some(taken) = report.taken.iter().find(|taken| &taken.policy == name) {
                record.backup = Some(taken.id.clone());
                record.bytes = Some(taken.stored_size());
            }
            let mut errors = plan_errors.clone();
            errors.extend(self.failures.get(name).into_iter().flatten().cloned());
            if !errors.is_empty() {
                record = record.failed(errors.join("; "));
            }
            let ping = self.backing_up.contains(name);
            problems.extend(notify::finished(state, policy, &record, ping));
            problems.extend(crate::fleet::publish(policy, &record));
        }
        problems
    }
}
