//! `backup status` against scripted inventories (real sidecars and data
//! files) and fixed clocks: each situation gives its state and exit code
//! (0 ok, 1 warning, 2 critical); the Prometheus textfile parses with the
//! official Python client's parser.

mod common;

use std::path::Path;
use std::process::Command;

use common::{root, run};

/// A policy `app`: daily at 01:00 UTC, keep-daily 7 and keep-weekly 4, to
/// `destination` (relative to `folder`), with `extra` appended under `spec:`.
fn policy(folder: &Path, destination: &str, extra: &str) {
    std::fs::write(
        folder.join("app.yaml"),
        format!(
            "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: app\nspec:\n  source:\n    sqlite: {{path: app.db}}\n  schedule:\n    cron: \"0 1 * * *\"\n  retention:\n    keep-daily: 7\n    keep-weekly: 4\n  destinations:\n    - local: {{path: {destination}}}\n{extra}"
        ),
    )
    .unwrap();
}

/// A complete backup of `size` bytes created at `time`, in `folder/app/`.
fn backup_at(folder: &Path, time: &str, size: usize) -> String {
    common::sealed_backup(folder, "app", time, size)
}

/// Two weeks of history: daily backups for the last week, one in each of
/// the two weeks before (ISO weeks 45 to 48 of 2026).
fn history(backups: &Path) {
    for day in ["08", "15", "19", "20", "21", "22", "23", "24", "25"] {
        backup_at(backups, &format!("2026-11-{day}T01:00:00Z"), 1000);
    }
}

/// `status` at `now`, text: exit code and stdout with free space masked.
fn status(folder: &Path, now: &str) -> (i32, String) {
    let result = run(
        folder,
        &["-p", "app.yaml", "status", "--no-crontab", "--now", now],
    );
    assert!(result.stderr.is_empty(), "{}", result.stderr);
    let mut text = result.stdout.replace(folder.to_str().unwrap(), "[DIR]");
    // Free space in the summary is the host's: mask it.
    if let Some(start) = text.rfind(", ")
        && text[start..].trim_end().ends_with(" free")
    {
        text.replace_range(start + 2..text.trim_end().len(), "[SPACE]");
    }
    (result.code, text)
}

#[test]
fn fresh_overdue_and_critical_follow_the_clock() {
    let work = tempfile::tempdir().unwrap();
    policy(work.path(), "backups", "");
    history(&work.path().join("backups"));
    let (code, text) = status(work.path(), "2026-11-25T03:00:00Z");
    assert_eq!(code, 0, "{text}");
    insta::assert_snapshot!(text, @"OK       app: newest 20261125T010000Z (2 h ago), 9 backups on 1 destination, retention met, [SPACE]");

    // 26 November, 08:00: the 01:00 tick passed six hours ago without a backup.
    let (code, text) = status(work.path(), "2026-11-26T08:00:00Z");
    assert_eq!(code, 1, "{text}");
    insta::assert_snapshot!(text, @"WARNING  app: overdue: no backup since 20261125T010000Z (31 h ago); tick 2026-11-26 01:00 UTC passed without one");

    // A day later, two ticks have passed: critical.
    let (code, text) = status(work.path(), "2026-11-27T08:00:00Z");
    assert_eq!(code, 2, "{text}");
    insta::assert_snapshot!(text, @"CRITICAL app: overdue: no backup since 20261125T010000Z (2 d ago); tick 2026-11-27 01:00 UTC passed without one");

    // Within the grace period (a quarter of a day) after the tick, all is well.
    let (code, _) = status(work.path(), "2026-11-26T06:59:00Z");
    assert_eq!(code, 0);
}

#[test]
fn max_age_overrides_the_schedule() {
    let work = tempfile::tempdir().unwrap();
    policy(work.path(), "backups", "  health:\n    max-age: 36h\n");
    history(&work.path().join("backups"));
    let (code, _) = status(work.path(), "2026-11-26T12:00:00Z");
    assert_eq!(code, 0);
    let (code, text) = status(work.path(), "2026-11-26T14:00:00Z");
    assert_eq!(code, 1, "{text}");
    insta::assert_snapshot!(text, @"WARNING  app: newest backup 20261125T010000Z is 37 h old, more than max-age 36 h");
    let (code, _) = status(work.path(), "2026-11-28T14:00:00Z");
    assert_eq!(code, 2);
}

#[test]
fn a_policy_never_run_is_critical() {
    let work = tempfile::tempdir().unwrap();
    policy(work.path(), "backups", "");
    let (code, text) = status(work.path(), "2026-11-25T03:00:00Z");
    assert_eq!(code, 2, "{text}");
    insta::assert_snapshot!(text, @"CRITICAL app: no complete backup exists on any destination");
}

#[test]
fn missing_weeks_break_retention_compliance() {
    let work = tempfile::tempdir().unwrap();
    policy(work.path(), "backups", "");
    let backups = work.path().join("backups");
    for day in [
        "2026-10-20",
        "2026-11-19",
        "2026-11-20",
        "2026-11-21",
        "2026-11-22",
        "2026-11-23",
        "2026-11-24",
        "2026-11-25",
    ] {
        backup_at(&backups, &format!("{day}T01:00:00Z"), 1000);
    }
    let (code, text) = status(work.path(), "2026-11-25T03:00:00Z");
    assert_eq!(code, 1, "{text}");
    insta::assert_snapshot!(text, @"WARNING  app: retention not met on [DIR]/backups: weekly: 2 of 4, missing 2026-W46, 2026-W45");
}

#[test]
fn a_damaged_newest_backup_is_critical() {
    let work = tempfile::tempdir().unwrap();
    policy(work.path(), "backups", "");
    let backups = work.path().join("backups");
    history(&backups);
    std::fs::remove_file(backups.join("app/20261125T010000Z.sqlite.gz")).unwrap();
    let (code, text) = status(work.path(), "2026-11-25T03:00:00Z");
    assert_eq!(code, 2, "{text}");
    insta::assert_snapshot!(text, @"CRITICAL app: newest backup 20261125T010000Z is damaged on every destination ([DIR]/backups: missing data); run `backup verify` and take a new backup; retention not met on [DIR]/backups: daily: 6 of 7, missing 2026-11-18");
}

#[test]
fn a_failed_last_attempt_warns_and_json_has_the_detail() {
    let work = tempfile::tempdir().unwrap();
    policy(work.path(), "backups", "");
    history(&work.path().join("backups"));
    // A real failed run: the database file does not exist.
    let failed = run(work.path(), &["-p", "app.yaml", "run", "app"]);
    assert_eq!(failed.code, 1);
    let result = run(
        work.path(),
        &[
            "-p",
            "app.yaml",
            "status",
            "--no-crontab",
            "--format",
            "json",
            "--now",
            "2026-11-25T03:00:00Z",
        ],
    );
    assert_eq!(result.code, 1, "{result:?}");
    let report: serde_json::Value = serde_json::from_str(&result.stdout).unwrap();
    assert_eq!(report["format_version"], 1);
    assert_eq!(report["state"], "warning");
    let app = &report["policies"][0];
    assert_eq!(app["name"], "app");
    assert_eq!(app["last_attempt"]["kind"], "run");
    assert_eq!(app["last_attempt"]["result"], "failed");
    assert_eq!(app["consecutive_failures"], 1);
    assert_eq!(app["findings"][0]["check"], "last-attempt");
    assert_eq!(app["freshness"]["newest_backup"], "20261125T010000Z");
    assert_eq!(app["freshness"]["state"], "ok");
    let destination = &app["destinations"][0];
    assert_eq!(destination["backups"], 9);
    assert_eq!(destination["retention_compliant"], true);
    assert_eq!(destination["retention"][1]["rule"], "weekly");
    assert_eq!(destination["retention"][1]["present"], 4);
    assert!(destination["free_bytes"].as_u64().unwrap() > 0);
    assert_eq!(
        app["integrity"]["destinations"][work.path().join("backups").to_str().unwrap()],
        "complete"
    );
    assert_eq!(app["crontab"]["state"], "unchecked");
}

#[test]
fn the_prometheus_textfile_parses_with_the_official_client() {
    let work = tempfile::tempdir().unwrap();
    policy(work.path(), "back \"ups\"", "");
    history(&work.path().join("back \"ups\""));
    let file = work.path().join("backup.prom");
    let result = run(
        work.path(),
        &[
            "-p",
            "app.yaml",
            "status",
            "--no-crontab",
            "--now",
            "2026-11-25T03:00:00Z",
            "--prometheus",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(result.code, 0, "{result:?}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o644);
    let python = root().join("target/ci-venv/bin/python");
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    for sample in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
        print(f"{family.type} {sample.name} {labels} {sample.value}")
"#;
    let output = Command::new(&python)
        .args(["-c", script, file.to_str().unwrap()])
        .output()
        .expect("python with prometheus_client: .ci/setup installs it into target/ci-venv");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let parsed = String::from_utf8(output.stdout)
        .unwrap()
        .replace(work.path().to_str().unwrap(), "[DIR]");
    let parsed: Vec<&str> = parsed
        .lines()
        .filter(|line| !line.contains("free_bytes"))
        .collect();
    insta::assert_snapshot!(parsed.join("\n"), @r#"
    gauge backup_last_success_timestamp_seconds destination=[DIR]/back "ups",policy=app 1795568400
    gauge backup_size_bytes destination=[DIR]/back "ups",policy=app 1000
    gauge backup_duration_seconds destination=[DIR]/back "ups",policy=app 42
    gauge backup_retention_compliant destination=[DIR]/back "ups",policy=app 1
    gauge backup_complete_backups destination=[DIR]/back "ups",policy=app 9
    gauge backup_destination_up destination=[DIR]/back "ups",policy=app 1
    gauge backup_next_backup_bytes destination=[DIR]/back "ups",policy=app 1000
    gauge backup_health policy=app 0
    "#);
}

/// Unmounts the tmpfs when the test ends, even on failure.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_nearly_full_disk_warns_then_turns_critical() {
    let work = tempfile::tempdir().unwrap();
    let disk = work.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let mounted = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=1m",
            "tmpfs",
            disk.to_str().unwrap(),
        ])
        .output();
    if !mounted.as_ref().is_ok_and(|output| output.status.success()) {
        eprintln!("skipped: cannot mount a small tmpfs (needs root): {mounted:?}");
        return;
    }
    let _mount = Mount(disk.clone());
    policy(work.path(), "disk", "  health:\n    max-age: 30d\n");
    // 300 KiB backups: the first leaves room for about two more.
    backup_at(&disk, "2026-11-24T01:00:00Z", 300 * 1024);
    backup_at(&disk, "2026-11-25T01:00:00Z", 300 * 1024);
    let (code, text) = status(work.path(), "2026-11-25T03:00:00Z");
    assert_eq!(code, 1, "{text}");
    assert!(text.starts_with("WARNING  app: [DIR]/disk has "), "{text}");
    assert!(
        text.contains("room for 1 more backup of about 300.0 KiB"),
        "{text}"
    );
    backup_at(&disk, "2026-11-25T02:00:00Z", 300 * 1024);
    let (code, text) = status(work.path(), "2026-11-25T03:00:00Z");
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("the next backup needs about 300.0 KiB"),
        "{text}"
    );
}
