//! Notifications: a policy's `notify` targets hear about failures, successes,
//! recoveries and critical health; dead-man pings tell a healthchecks.io-style
//! service that a backup started, succeeded or failed.
//!
//! Every target gets the same [`Message`] (webhook: as JSON with a
//! Slack-compatible `text`; email: as plain text, with the run's last log
//! lines and a recommendation). A target that cannot be reached is retried a
//! few times with growing pauses, then given up and logged: delivering a
//! notification never fails the backup it is about, so nothing here returns
//! an error to the caller, only the problems, for printing. References in
//! URLs, headers and SMTP credentials are resolved here, at send time, and
//! never logged.

mod email;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::policy::Policy;
use crate::policy::secret::{Secret, Template};
use crate::policy::spec::{NotifyEvent, NotifySpec, WebhookSpec};

/// Version of the webhook payload.
pub const PAYLOAD_VERSION: u32 = 1;

/// How many times a target is tried before it is given up.
const ATTEMPTS: u32 = 3;

/// Pause before the second attempt; doubled before each further one.
const FIRST_PAUSE: Duration = Duration::from_millis(500);

/// Timeout of one attempt, connection included.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What happened, as every target receives it. The webhook body is this, as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    /// Version of this payload's schema.
    pub version: u32,
    pub policy: String,
    /// `failure`, `success`, `recovery` or `critical`.
    pub event: NotifyEvent,
    /// The host that sends it.
    pub host: String,
    pub time: DateTime<Utc>,
    /// What failed (failure), or why health is critical (critical).
    pub error: Option<String>,
    /// The backup taken (or the newest one, for `critical`).
    pub backup: Option<String>,
    /// Its size in bytes, compressed.
    pub size_bytes: Option<u64>,
    /// How long the attempt took.
    pub duration_seconds: Option<f64>,
    /// The policy's `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// More findings, one a line (the health checks behind `critical`).
    pub details: Vec<String>,
    /// What to do about it.
    pub recommendation: Option<String>,
    /// The per-run log file on the host, if any.
    pub log: Option<String>,
    /// One line for chat tools: Slack, Mattermost and Rocket.Chat show it.
    pub text: String,
}

impl Message {
    /// A message about `policy`, with its `text` and recommendation filled in.
    pub fn new(
        policy: &Policy,
        event: NotifyEvent,
        error: Option<String>,
        backup: Option<String>,
    ) -> Message {
        let host = crate::engine::host_name();
        let mut message = Message {
            version: PAYLOAD_VERSION,
            policy: policy.name.clone(),
            event,
            host,
            time: Utc::now(),
            error,
            backup,
            size_bytes: None,
            duration_seconds: None,
            labels: policy.labels.clone(),
            details: Vec::new(),
            recommendation: None,
            log: crate::runlog::current_log().map(|path| path.display().to_string()),
            text: String::new(),
        };
        message.recommendation = match event {
            NotifyEvent::Failure => Some(format!(
                "Read the error and the log on {}; once the cause is fixed, `backup run {}` takes a backup now (or the next `backup apply` catches up). `backup status {}` shows the policy's health.",
                message.host, policy.name, policy.name
            )),
            NotifyEvent::Critical => Some(format!(
                "Run `backup status {}` on {} for every check; a missing or stale backup means cron's `backup apply` is not running or failing (see its log under the state folder's logs/).",
                policy.name, message.host
            )),
            NotifyEvent::Success | NotifyEvent::Recovery => None,
        };
        message.refresh_text();
        message
    }

    /// Recomputes `text` after fields changed.
    pub fn refresh_text(&mut self) {
        let what = match self.event {
            NotifyEvent::Failure => "FAILED",
            NotifyEvent::Success => "succeeded",
            NotifyEvent::Recovery => "RECOVERED",
            NotifyEvent::Critical => "CRITICAL",
        };
        let mut text = format!("[backup] {} on {}: {what}", self.policy, self.host);
        if let Some(backup) = &self.backup {
            text.push_str(&format!(", backup {backup}"));
        }
        if let Some(size) = self.size_bytes {
            text.push_str(&format!(" ({})", crate::format::human_bytes(size)));
        }
        if let Some(error) = &self.error {
            text.push_str(&format!(": {error}"));
        }
        self.text = text;
    }

    fn subject(&self) -> String {
        let what = match self.event {
            NotifyEvent::Failure => "backup FAILED",
            NotifyEvent::Success => "backup succeeded",
            NotifyEvent::Recovery => "backup recovered",
            NotifyEvent::Critical => "backup health CRITICAL",
        };
        format!("[backup] {}: {what} on {}", self.policy, self.host)
    }

    /// The plain-text body of an email, with the last lines of the log.
    fn body(&self, log_tail: &[String]) -> String {
        let mut body = format!("{}\n\n", self.text);
        body.push_str(&format!("Policy:   {}\n", self.policy));
        body.push_str(&format!("Event:    {}\n", event_word(self.event)));
        body.push_str(&format!("Host:     {}\n", self.host));
        body.push_str(&format!("Time:     {}\n", self.time.to_rfc3339()));
        if let Some(backup) = &self.backup {
            body.push_str(&format!("Backup:   {backup}\n"));
        }
        if let Some(size) = self.size_bytes {
            body.push_str(&format!("Size:     {}\n", crate::format::human_bytes(size)));
        }
        if let Some(duration) = self.duration_seconds {
            body.push_str(&format!("Duration: {duration:.1} s\n"));
        }
        for (key, value) in &self.labels {
            body.push_str(&format!("Label:    {key}={value}\n"));
        }
        if let Some(error) = &self.error {
            body.push_str(&format!("\nError:\n  {error}\n"));
        }
        if !self.details.is_empty() {
            body.push_str("\nDetails:\n");
            for detail in &self.details {
                body.push_str(&format!("  {detail}\n"));
            }
        }
        if !log_tail.is_empty() {
            body.push_str("\nLast log lines");
            if let Some(log) = &self.log {
                body.push_str(&format!(" ({log})"));
            }
            body.push_str(":\n");
            for line in log_tail {
                body.push_str(&format!("  {line}\n"));
            }
        }
        if let Some(recommendation) = &self.recommendation {
            body.push_str(&format!("\nRecommendation:\n  {recommendation}\n"));
        }
        body
    }
}

fn event_word(event: NotifyEvent) -> &'static str {
    match event {
        NotifyEvent::Failure => "failure",
        NotifyEvent::Success => "success",
        NotifyEvent::Recovery => "recovery",
        NotifyEvent::Critical => "critical",
    }
}

/// Records a finished attempt (see [`crate::runlog::record`]) and tells
/// whoever should hear about it: `failure`, else `recovery` when the
/// previous attempt failed (or `success`, for policies that want successes
/// but not recoveries), and, with `ping`, the dead-man fail or success ping.
/// Returns the problems, one a line, for stderr; never fails.
pub fn finished(
    state: &crate::state::StateDir,
    policy: &Policy,
    record: &crate::runlog::RunRecord,
    ping_after: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    let previous = match crate::runlog::record(state, record) {
        Ok(previous) => previous,
        Err(error) => {
            tracing::warn!(policy = %policy.name, "Run record not written: {error}");
            problems.push(format!("run record not written: {error}"));
            crate::runlog::PolicySummary::default()
        }
    };
    let failed_before = previous
        .last_attempt
        .as_ref()
        .is_some_and(|attempt| !attempt.ok());
    let event = if !record.ok() {
        Some(NotifyEvent::Failure)
    } else if failed_before && wants(policy, NotifyEvent::Recovery) {
        Some(NotifyEvent::Recovery)
    } else if wants(policy, NotifyEvent::Success) {
        Some(NotifyEvent::Success)
    } else {
        None
    };
    if let Some(event) = event {
        let mut message = Message::new(policy, event, record.error.clone(), record.backup.clone());
        message.size_bytes = record.bytes;
        message.duration_seconds = Some(record.duration_seconds);
        if let Some(log) = &record.log {
            message.log = Some(log.display().to_string());
        }
        message.refresh_text();
        problems.extend(send(policy, &message, &crate::runlog::log_tail(20)));
    }
    if ping_after {
        let (kind, body) = if record.ok() {
            (
                Ping::Success,
                format!("backup {}", record.backup.as_deref().unwrap_or("done")),
            )
        } else {
            (Ping::Fail, record.error.clone().unwrap_or_default())
        };
        problems.extend(ping(policy, kind, &body));
    }
    problems
}

/// Sends a `failure` message about something other than a backup (a
/// restore, a restore drill) when the policy wants failures. It is not a run
/// record: it neither counts toward nor ends the policy's backup failures.
pub fn other_failed(policy: &Policy, error: String, backup: Option<String>) -> Vec<String> {
    let mut message = Message::new(policy, NotifyEvent::Failure, Some(error), backup);
    message.refresh_text();
    send(policy, &message, &crate::runlog::log_tail(20))
}

/// Whether `policy` wants to hear about `event`.
pub fn wants(policy: &Policy, event: NotifyEvent) -> bool {
    policy
        .notify
        .as_ref()
        .is_some_and(|notify| notify.on.contains(&event))
}

/// Sends `message` to every target of the policy's `notify`, if it wants
/// that event. Returns one line per target that could not be reached (each
/// also logged); never fails.
pub fn send(policy: &Policy, message: &Message, log_tail: &[String]) -> Vec<String> {
    let Some(notify) = &policy.notify else {
        return Vec::new();
    };
    if !notify.on.contains(&message.event) {
        return Vec::new();
    }
    let mut problems = Vec::new();
    if let Some(webhook) = &notify.webhook {
        let result = retried(|| post_webhook(webhook, message));
        report(&mut problems, policy, message.event, "webhook", result);
    }
    if let Some(spec) = &notify.email {
        let result = retried(|| email::send(spec, message, log_tail));
        report(&mut problems, policy, message.event, "email", result);
    }
    problems
}

/// A dead-man ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ping {
    /// A backup started: `<url>/start`.
    Start,
    /// It succeeded: `<url>`.
    Success,
    /// It failed: `<url>/fail`, with the error as the body.
    Fail,
}

/// Pings the policy's `healthchecks` URL, whatever `on` says (the service
/// alerts when pings stop). Returns the problem, if any; never fails.
pub fn ping(policy: &Policy, ping: Ping, body: &str) -> Vec<String> {
    let Some(NotifySpec {
        healthchecks: Some(healthchecks),
        ..
    }) = &policy.notify
    else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    let result = retried(|| {
        let base = resolve(&healthchecks.url, "healthchecks.url")?;
        let base = base.expose().trim_end_matches('/');
        let url = match ping {
            Ping::Start => format!("{base}/start"),
            Ping::Success => base.to_owned(),
            Ping::Fail => format!("{base}/fail"),
        };
        post(&url, &BTreeMap::new(), "text/plain; charset=utf-8", body)
    });
    let what = match ping {
        Ping::Start => "healthchecks start ping",
        Ping::Success => "healthchecks success ping",
        Ping::Fail => "healthchecks fail ping",
    };
    if let Err(error) = result {
        tracing::warn!(policy = %policy.name, target = what, "{error}; given up.");
        problems.push(format!("{what}: {error}"));
    }
    problems
}

fn report(
    problems: &mut Vec<String>,
    policy: &Policy,
    event: NotifyEvent,
    target: &str,
    result: Result<(), Attempt>,
) {
    match result {
        Ok(()) => {
            tracing::info!(policy = %policy.name, event = event_word(event), target, "Notification sent.");
        }
        Err(error) => {
            tracing::warn!(policy = %policy.name, event = event_word(event), target, "Notification not delivered: {error}; given up after {ATTEMPTS} attempts.");
            problems.push(format!(
                "{target} notification ({}) not delivered: {error}",
                event_word(event)
            ));
        }
    }
}

/// Why one attempt failed, and whether trying again may help.
#[derive(Debug)]
struct Attempt {
    message: String,
    retry: bool,
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.message)
    }
}

impl Attempt {
    fn permanent(message: impl Into<String>) -> Attempt {
        Attempt {
            message: message.into(),
            retry: false,
        }
    }

    fn transient(message: impl Into<String>) -> Attempt {
        Attempt {
            message: message.into(),
            retry: true,
        }
    }
}

/// Runs `attempt` up to [`ATTEMPTS`] times while it fails transiently.
fn retried(mut attempt: impl FnMut() -> Result<(), Attempt>) -> Result<(), Attempt> {
    let mut pause = FIRST_PAUSE;
    let mut tries = 1;
    loop {
        match attempt() {
            Ok(()) => return Ok(()),
            Err(error) if error.retry && tries < ATTEMPTS => {
                tracing::debug!(
                    attempt = tries,
                    "Notification attempt failed: {error}; retrying."
                );
                std::thread::sleep(pause);
                pause *= 2;
                tries += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

fn resolve(text: &str, field: &str) -> Result<Secret, Attempt> {
    Template::parse(text)
        .and_then(|template| template.resolve())
        .map_err(|error| Attempt::permanent(format!("notify.{field}: {error}")))
}

fn post_webhook(webhook: &WebhookSpec, message: &Message) -> Result<(), Attempt> {
    let url = resolve(&webhook.url, "webhook.url")?;
    let mut headers = BTreeMap::new();
    for (name, value) in &webhook.headers {
        headers.insert(
            name.clone(),
            resolve(value, &format!("webhook.headers.{name}"))?,
        );
    }
    let body = serde_json::to_string(message)
        .map_err(|error| Attempt::permanent(format!("cannot encode the message: {error}")))?;
    post(url.expose(), &headers, "application/json", &body)
}

/// POSTs `body`; 2xx is delivered, 429 and 5xx are retried, other answers are not.
fn post(
    url: &str,
    headers: &BTreeMap<String, Secret>,
    content_type: &str,
    body: &str,
) -> Result<(), Attempt> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .user_agent(concat!("backup/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    // The URL may hold a token: errors name its host only.
    let host = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(['/', '?', '#']).next())
        .and_then(|authority| authority.rsplit('@').next())
        .unwrap_or("the URL")
        .to_owned();
    let mut request = agent.post(url).header("Content-Type", content_type);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.expose());
    }
    match request.send(body) {
        Ok(response) => {
            let status = response.status().as_u16();
            match status {
                200..=299 => Ok(()),
                429 | 500..=599 => {
                    Err(Attempt::transient(format!("{host} answered HTTP {status}")))
                }
                _ => Err(Attempt::permanent(format!("{host} answered HTTP {status}"))),
            }
        }
        Err(ureq::Error::BadUri(_)) => Err(Attempt::permanent("the URL is not valid")),
        Err(error) => Err(Attempt::transient(format!(
            "cannot reach {host}: {}",
            describe_transport(&error)
        ))),
    }
}

/// A transport error without the URL (which may hold a token).
fn describe_transport(error: &ureq::Error) -> String {
    match error {
        ureq::Error::Io(io) => io.to_string(),
        ureq::Error::Timeout(_) => "timed out".to_owned(),
        ureq::Error::HostNotFound => "host not found".to_owned(),
        ureq::Error::ConnectionFailed => "connection failed".to_owned(),
        ureq::Error::Tls(reason) => format!("TLS: {reason}"),
        other => other.to_string(),
    }
}
