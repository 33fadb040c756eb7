//! Notifications of a real failing backup and of its recovery: PostgreSQL
//! stopped, then started again, with a real HTTP server (webhook and
//! healthchecks pings) and a real SMTP server receiving them; run records and
//! `.backup_status` in the state folder; no secret anywhere.

mod common;

use std::path::Path;

use common::postgres::{Cluster, PASSWORD};
use common::sinks::{HttpSink, SmtpSink};
use common::{backup, files_under, run};

const HOOK_TOKEN: &str = "hook-token-5b1e";
const SMTP_PASSWORD: &str = "smtp-Pa55-0c9d";

fn policy(folder: &Path, cluster: &Cluster, http: &HttpSink, smtp: &SmtpSink) {
    let text = format!(
        r#"apiVersion: backup/v1
kind: BackupPolicy
metadata:
  name: app
  labels: {{team: payments}}
spec:
  source:
    postgres:
      url: {url}
      password: ${{env:TEST_PGPASSWORD}}
  schedule:
    cron: "0 1 * * *"
  retention:
    keep-last: 5
  destinations:
    - local:
        path: backups
  notify:
    on: [failure, recovery]
    webhook:
      url: ${{env:TEST_HOOK_URL}}
      headers: {{Authorization: "Bearer ${{env:TEST_HOOK_TOKEN}}"}}
    email:
      from: backup@db1.example.com
      to: [oncall@example.com]
      smtp:
        host: 127.0.0.1
        port: {smtp_port}
        security: none
        username: ${{env:TEST_SMTP_USER}}
        password: ${{env:TEST_SMTP_PASSWORD}}
    healthchecks:
      url: {ping}
"#,
        url = cluster.url("postgres"),
        smtp_port = smtp.port,
        ping = http.url("/ping/check-1"),
    );
    std::fs::create_dir_all(folder.join("policies")).unwrap();
    std::fs::write(folder.join("policies/app.yaml"), text).unwrap();
}

fn command(folder: &Path, http: &HttpSink, args: &[&str]) -> common::Run {
    backup(folder)
        .env("TEST_PGPASSWORD", PASSWORD)
        .env("TEST_HOOK_URL", http.url("/hook"))
        .env("TEST_HOOK_TOKEN", HOOK_TOKEN)
        .env("TEST_SMTP_USER", "mailer")
        .env("TEST_SMTP_PASSWORD", SMTP_PASSWORD)
        .args(args)
        .output()
        .unwrap()
        .into()
}

#[test]
fn a_failing_backup_and_its_recovery_are_notified_by_webhook_email_and_pings() {
    let cluster = Cluster::start();
    let http = HttpSink::start(0);
    let smtp = SmtpSink::start();
    let work = tempfile::tempdir().unwrap();
    let folder = work.path();
    policy(folder, &cluster, &http, &smtp);

    // A success that follows nothing: pings only (`on` has no `success`).
    let first = command(folder, &http, &["run", "app"]);
    assert_eq!(first.code, 0, "{first:?}");
    let paths: Vec<(String, String)> = http
        .taken()
        .into_iter()
        .map(|request| (request.method, request.path))
        .collect();
    assert_eq!(
        paths,
        [
            ("POST".to_owned(), "/ping/check-1/start".to_owned()),
            ("POST".to_owned(), "/ping/check-1".to_owned()),
        ]
    );
    assert!(smtp.taken().is_empty());

    // The server goes away; the next scheduled backup (a day later) fails.
    cluster.stop();
    let failed = command(
        folder,
        &http,
        &[
            "apply",
            "--auto-approve",
            "--no-crontab",
            "--now",
            &tomorrow(),
        ],
    );
    assert_eq!(failed.code, 1, "{failed:?}");
    let requests = http.taken();
    let paths: Vec<&str> = requests
        .iter()
        .map(|request| request.path.as_str())
        .collect();
    assert_eq!(
        paths,
        ["/ping/check-1/start", "/hook", "/ping/check-1/fail"]
    );
    let hook = &requests[1];
    assert_eq!(
        hook.header("authorization"),
        Some(format!("Bearer {HOOK_TOKEN}").as_str())
    );
    assert_eq!(hook.header("content-type"), Some("application/json"));
    let payload: serde_json::Value = serde_json::from_str(&hook.body).unwrap();
    assert_eq!(payload["version"], 1);
    assert_eq!(payload["policy"], "app");
    assert_eq!(payload["event"], "failure");
    assert_eq!(payload["labels"]["team"], "payments");
    assert!(
        payload["host"]
            .as_str()
            .is_some_and(|host| !host.is_empty())
    );
    let error = payload["error"].as_str().unwrap();
    assert!(error.contains("backup"), "{error}");
    assert!(
        error.to_lowercase().contains("connect") || error.contains("refused"),
        "{error}"
    );
    let text = payload["text"].as_str().unwrap();
    assert!(text.starts_with("[backup] app on "), "{text}");
    assert!(text.contains("FAILED"), "{text}");
    assert!(payload["duration_seconds"].as_f64().is_some());
    assert!(requests[2].body.contains(error.split(';').next().unwrap()));

    let mails = smtp.taken();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert_eq!(mail.from, "<backup@db1.example.com>");
    assert_eq!(mail.to, ["<oncall@example.com>"]);
    assert_eq!(
        mail.auth,
        Some(("mailer".to_owned(), SMTP_PASSWORD.to_owned()))
    );
    assert!(
        mail.data
            .contains("Subject: [backup] app: backup FAILED on "),
        "{}",
        mail.data
    );
    let body = mail.data.replace("=\r\n", "").replace("\r\n", "\n");
    for expected in [
        "Error:\n",
        "Last log lines",
        "Recommendation:\n",
        "backup run app",
    ] {
        assert!(body.contains(expected), "{expected:?} not in:\n{body}");
    }

    // The server is back: the next run recovers, and says so.
    cluster.resume();
    let recovered = command(folder, &http, &["run", "app"]);
    assert_eq!(recovered.code, 0, "{recovered:?}");
    let requests = http.taken();
    let paths: Vec<&str> = requests
        .iter()
        .map(|request| request.path.as_str())
        .collect();
    assert_eq!(paths, ["/ping/check-1/start", "/hook", "/ping/check-1"]);
    let payload: serde_json::Value = serde_json::from_str(&requests[1].body).unwrap();
    assert_eq!(payload["event"], "recovery");
    assert!(payload["error"].is_null());
    let id = payload["backup"].as_str().unwrap();
    assert!(
        folder
            .join(format!("policies/backups/app/{id}.json"))
            .is_file()
    );
    assert!(payload["size_bytes"].as_u64().unwrap() > 0);
    let mails = smtp.taken();
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0].data.contains("backup recovered"),
        "{}",
        mails[0].data
    );

    // The records: three attempts, the summary after the recovery.
    let records = std::fs::read_to_string(folder.join(".state/runs/app.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = records
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let kinds: Vec<(&str, &str)> = records
        .iter()
        .map(|record| {
            (
                record["kind"].as_str().unwrap(),
                record["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(kinds, [("run", "ok"), ("apply", "failed"), ("run", "ok")]);
    assert_eq!(records[2]["backup"], id);
    let log = records[1]["log"].as_str().unwrap();
    let log_text = std::fs::read_to_string(log).unwrap();
    assert!(
        log_text.contains("cannot connect to PostgreSQL"),
        "{log_text}"
    );
    assert!(log_text.contains("Notification sent."), "{log_text}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join(".state/.backup_status")).unwrap())
            .unwrap();
    assert_eq!(summary["policies"]["app"]["consecutive_failures"], 0);
    assert_eq!(summary["policies"]["app"]["last_failure"]["kind"], "apply");
    assert_eq!(summary["policies"]["app"]["last_attempt"]["result"], "ok");

    // No secret in the state folder (records, summary, logs).
    for (path, bytes) in files_under(&folder.join(".state")) {
        let text = String::from_utf8_lossy(&bytes);
        for secret in [PASSWORD, HOOK_TOKEN, SMTP_PASSWORD] {
            assert!(!text.contains(secret), "a secret in {}", path.display());
        }
    }
}

fn tomorrow() -> String {
    (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339()
}

#[test]
fn an_undeliverable_notification_never_fails_a_backup() {
    let work = tempfile::tempdir().unwrap();
    let folder = work.path();
    let database = folder.join("app.db");
    common::sqlite3(&database, "create table t(x); insert into t values (1);");
    // A port nobody listens on: taken, then released.
    let closed = common::postgres::free_port();
    let text = format!(
        "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: app\nspec:\n  source:\n    sqlite: {{path: app.db}}\n  schedule:\n    cron: \"@daily\"\n  retention:\n    keep-last: 3\n  destinations:\n    - local: {{path: backups}}\n  notify:\n    on: [success]\n    webhook: {{url: \"http://127.0.0.1:{closed}/hook\"}}\n"
    );
    std::fs::write(folder.join("app.yaml"), text).unwrap();
    let result = run(folder, &["-p", "app.yaml", "run", "app"]);
    assert_eq!(result.code, 0, "{result:?}");
    assert!(
        result
            .stderr
            .contains("webhook notification (success) not delivered"),
        "{}",
        result.stderr
    );
    assert!(result.stdout.contains("Backed up app"), "{}", result.stdout);
    // A 500 is retried, and the third attempt gets through.
    let http = HttpSink::start(2);
    let text = std::fs::read_to_string(folder.join("app.yaml"))
        .unwrap()
        .replace(
            &format!("http://127.0.0.1:{closed}/hook"),
            &http.url("/hook"),
        );
    std::fs::write(folder.join("app.yaml"), text).unwrap();
    let result = run(folder, &["-p", "app.yaml", "run", "app"]);
    assert_eq!(result.code, 0, "{result:?}");
    assert!(
        !result.stderr.contains("not delivered"),
        "{}",
        result.stderr
    );
    let requests = http.taken();
    assert_eq!(requests.len(), 3);
    let payload: serde_json::Value = serde_json::from_str(&requests[2].body).unwrap();
    assert_eq!(payload["event"], "success");
}

#[test]
fn a_refused_restore_and_a_failed_drill_notify_a_failure() {
    let work = tempfile::tempdir().unwrap();
    let folder = work.path();
    let database = folder.join("app.db");
    common::sqlite3(&database, "create table t(x); insert into t values (1);");
    let http = HttpSink::start(0);
    let text = format!(
        "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: app\nspec:\n  source:\n    sqlite: {{path: app.db}}\n  schedule:\n    cron: \"@daily\"\n  retention:\n    keep-last: 3\n  destinations:\n    - local: {{path: backups}}\n  notify:\n    on: [failure]\n    webhook: {{url: \"{}\"}}\n",
        http.url("/hook")
    );
    std::fs::write(folder.join("app.yaml"), text).unwrap();
    assert_eq!(run(folder, &["-p", "app.yaml", "run", "app"]).code, 0);
    assert!(http.taken().is_empty(), "a success is not wanted");
    // Damage the data: the restore is refused before it touches anything.
    let data = files_under(&folder.join("backups/app"))
        .into_iter()
        .find(|(path, _)| path.to_string_lossy().ends_with(".sqlite.gz"))
        .unwrap();
    let mut bytes = data.1.clone();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&data.0, &bytes).unwrap();
    let before = std::fs::read(&database).unwrap();
    let restored = run(folder, &["-p", "app.yaml", "restore", "app", "--yes"]);
    assert_eq!(restored.code, 5, "{restored:?}");
    assert_eq!(std::fs::read(&database).unwrap(), before);
    let drill = run(folder, &["-p", "app.yaml", "verify", "--restore-test"]);
    assert_eq!(drill.code, 5, "{drill:?}");
    let payloads: Vec<serde_json::Value> = http
        .taken()
        .iter()
        .map(|request| serde_json::from_str(&request.body).unwrap())
        .collect();
    assert_eq!(payloads.len(), 2, "{payloads:?}");
    for payload in &payloads {
        assert_eq!(payload["event"], "failure");
        assert_eq!(payload["policy"], "app");
    }
    let errors: Vec<&str> = payloads
        .iter()
        .map(|payload| payload["error"].as_str().unwrap())
        .collect();
    assert!(errors[0].starts_with("restore refused: "), "{errors:?}");
    assert!(errors[0].contains("SHA-256"), "{errors:?}");
    assert!(errors[1].starts_with("restore drill of"), "{errors:?}");
}
