//! Regression tests: hostile input and hostile surroundings (issue 12, items
//! 1 to 11 and 13): other local users, secrets in diagnostics and logs,
//! closed pipes, FIFOs and devices, schedules that never fire, huge or odd
//! sidecars, control characters, empty arguments, and tests that read
//! folders they do not own.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::common::{self, Run, backup, run, sqlite3};

/// A folder with an SQLite database `app.db`, the policy `app.yaml` (backups
/// in `store/`), as a user would have it.
fn site() -> tempfile::TempDir {
    site_with("")
}

/// [`site`], with `extra` appended to the policy's `spec:`.
fn site_with(extra: &str) -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    sqlite3(
        &work.path().join("app.db"),
        "CREATE TABLE orders(id INTEGER PRIMARY KEY, item TEXT);
         INSERT INTO orders(item) SELECT 'item ' || value FROM generate_series(1, 200);",
    );
    std::fs::write(work.path().join("app.yaml"), policy_text(extra)).unwrap();
    // The runs' own TMPDIR, made so that anything put there could be seen.
    std::fs::create_dir(common::tmpdir(work.path())).unwrap();
    work
}

fn policy_text(extra: &str) -> String {
    format!(
        "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: app\nspec:\n  source:\n    sqlite:\n      path: app.db\n  schedule:\n    cron: \"@daily\"\n  retention:\n    keep-last: 5\n  destinations:\n    - local:\n        path: store\n{extra}"
    )
}

/// Takes one backup of the site; its id.
fn take_backup(work: &Path) -> String {
    let result = run(work, &["-p", "app.yaml", "run", "app"]);
    assert_eq!(result.code, 0, "{result:?}");
    let mut ids: Vec<String> = std::fs::read_dir(work.join("store/app"))
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let id = name.strip_suffix(".json")?;
            backup::inventory::is_id(id).then(|| id.to_owned())
        })
        .collect();
    ids.sort();
    ids.pop().unwrap()
}

/// `apply` of the site's policy, crontab untouched.
fn apply(work: &Path) -> Run {
    run(
        work,
        &["-p", "app.yaml", "apply", "--auto-approve", "--no-crontab"],
    )
}

/// Waits for `child` at most `limit`; kills it and fails the test if it hangs.
fn finish_within(mut child: Child, limit: Duration, what: &str) -> Run {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap().into();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "{what} hung for {limit:?} (killed); stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Entries of `folder` (none if it does not exist).
fn entries(folder: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(folder)
        .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default()
}

#[test]
fn sqlite_backup_scratch_copy_is_private_whatever_the_umask() {
    let work = site();
    // A writer holds the database, so the copy waits where it can be seen.
    let writer = rusqlite::Connection::open(work.path().join("app.db")).unwrap();
    writer.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let tmpdir = common::tmpdir(work.path());
    // umask 000: whatever is not made private explicitly is world-readable.
    let harness = backup(work.path());
    let mut command = Command::new("sh");
    command
        .args(["-c", "umask 000; exec \"$0\" \"$@\""])
        .arg(harness.get_program())
        .args(["-p", "app.yaml", "run", "app"])
        .current_dir(work.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in harness.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    let child = command.spawn().unwrap();
    let candidates = [work.path().join(".state/tmp"), tmpdir.clone()];
    let deadline = Instant::now() + Duration::from_secs(20);
    let copy = loop {
        let found = candidates
            .iter()
            .flat_map(|folder| entries(folder))
            .find(|path| {
                path.file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with("backup-sqlite-"))
                    && path.join("copy.db").exists()
            });
        if let Some(folder) = found {
            break folder;
        }
        assert!(Instant::now() < deadline, "no scratch copy appeared");
        std::thread::sleep(Duration::from_millis(20));
    };
    let folder_mode = mode(&copy);
    let file_mode = mode(&copy.join("copy.db"));
    writer.execute_batch("COMMIT").unwrap();
    let result = finish_within(child, Duration::from_secs(60), "backup run");
    assert_eq!(result.code, 0, "{result:?}");
    assert_eq!(
        folder_mode,
        0o700,
        "scratch folder {} is {folder_mode:o}",
        copy.display()
    );
    assert_eq!(file_mode, 0o600, "scratch copy is {file_mode:o}");
    // Next to the state folder, not in the shared temporary folder.
    assert!(
        copy.starts_with(work.path().join(".state/tmp")),
        "{}",
        copy.display()
    );
    assert_eq!(entries(&tmpdir), Vec::<PathBuf>::new());
    assert_eq!(
        entries(&work.path().join(".state/tmp")),
        Vec::<PathBuf>::new()
    );
}

#[test]
fn restore_drill_and_jobs_scratch_is_private_and_in_the_state_folder() {
    let work = site();
    take_backup(work.path());
    let drill = backup(work.path())
        .args(["-p", "app.yaml", "verify", "--restore-test", "app"])
        .output()
        .unwrap();
    let drill = Run::from(drill);
    assert_eq!(drill.code, 0, "{drill:?}");
    // The scratch folder is made in the state folder, private, and emptied.
    let scratch = work.path().join(".state/tmp");
    assert_eq!(mode(&scratch), 0o700);
    assert_eq!(entries(&scratch), Vec::<PathBuf>::new());
    assert_eq!(entries(&common::tmpdir(work.path())), Vec::<PathBuf>::new());
}

const SECRET: &str = "hunter2-Secret";

/// `validate`'s output for a policy whose `spec.source` is `source`.
fn validate_postgres(source: &str) -> Run {
    let work = tempfile::tempdir().unwrap();
    let text = format!(
        "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: app\nspec:\n  source:\n    postgres:\n{source}\n  schedule:\n    cron: \"@daily\"\n  retention:\n    keep-last: 5\n  destinations:\n    - local:\n        path: store\n"
    );
    std::fs::write(work.path().join("app.yaml"), text).unwrap();
    run(work.path(), &["validate", "app.yaml"])
}

#[test]
fn validate_masks_secrets_on_lines_with_other_errors() {
    for source in [
        // An unknown field that holds a password.
        format!("      host: db\n      database: app\n      passwd: {SECRET}"),
        // A password of the wrong type.
        format!("      host: db\n      database: app\n      password: [{SECRET}]"),
        // An unclosed quote in a URL with a password: the file does not parse.
        format!("      url: \"postgresql://app:{SECRET}@db/app"),
        // A URL with a password and a reference (unset: a warning on that line).
        format!("      url: postgresql://app:{SECRET}@db/${{env:BACKUP_TEST_UNSET_DB}}"),
        // A flow mapping with a password under a misspelled key.
        format!(
            "      host: db\n      database: app\n      pass: {{x: 1}}\n      options: {{passphrase: {SECRET}, b: 2}}"
        ),
    ] {
        let result = validate_postgres(&source);
        assert!(
            result.stdout.contains(" --> app.yaml:"),
            "no positioned diagnostic for {source:?}: {result:?}"
        );
        assert!(
            !result.stdout.contains("hunter2") && !result.stderr.contains("hunter2"),
            "{source:?} leaks:\n{}",
            result.stdout
        );
    }
    // References stay readable.
    let result =
        validate_postgres("      url: postgresql://app:${env:BACKUP_TEST_UNSET_PW}@db/app");
    assert!(
        result.stdout.contains("${env:BACKUP_TEST_UNSET_PW}"),
        "{}",
        result.stdout
    );
}

#[test]
fn trace_logging_never_prints_notification_tokens() {
    let http = common::sinks::HttpSink::start(0);
    const HOOK_TOKEN: &str = "T0KEN-hook-6d1f";
    const PING_TOKEN: &str = "T0KEN-ping-93ab";
    const HEADER_TOKEN: &str = "T0KEN-header-27c4";
    let work = site_with(
        "  notify:\n    on: [success]\n    webhook:\n      url: ${env:TEST_HOOK_URL}\n      headers: {Authorization: \"Bearer ${env:TEST_HOOK_TOKEN}\"}\n    healthchecks:\n      url: ${env:TEST_PING_URL}\n",
    );
    let result: Run = backup(work.path())
        .env("RUST_LOG", "trace")
        .env("TEST_HOOK_URL", http.url(&format!("/hook/{HOOK_TOKEN}")))
        .env("TEST_HOOK_TOKEN", HEADER_TOKEN)
        .env("TEST_PING_URL", http.url(&format!("/ping/{PING_TOKEN}")))
        .args(["-p", "app.yaml", "run", "app"])
        .output()
        .unwrap()
        .into();
    assert_eq!(result.code, 0, "{result:?}");
    // The tokens did travel, so the test saw the requests that carry them.
    let requests = http.taken();
    assert!(
        requests
            .iter()
            .any(|request| request.path.contains(HOOK_TOKEN)
                && request.header("authorization") == Some(&format!("Bearer {HEADER_TOKEN}"))),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|request| request.path.contains(PING_TOKEN))
    );
    // Logging was on: there are log lines, just no secrets in them.
    assert!(
        result.stderr.contains("Notification sent."),
        "{}",
        result.stderr
    );
    let logs = common::files_under(&work.path().join(".state/logs"));
    assert!(!logs.is_empty(), "no per-run log");
    let mut shown: Vec<(String, String)> = vec![("stderr".to_owned(), result.stderr.clone())];
    shown.extend(logs.into_iter().map(|(path, bytes)| {
        (
            path.display().to_string(),
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }));
    for (place, text) in shown {
        for token in [HOOK_TOKEN, PING_TOKEN, HEADER_TOKEN] {
            assert!(!text.contains(token), "{token} in {place}:\n{text}");
        }
        // Nor the bytes of a request, dumped 16 at a time.
        assert!(
            !text.contains("T0KEN"),
            "a token's start in {place}:\n{text}"
        );
    }
}

/// Runs `backup ARGS` in `work` with its stdout a pipe whose reader is gone.
fn with_closed_stdout(work: &Path, args: &[&str]) -> Run {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let child = backup(work)
        .args(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    finish_within(
        child,
        Duration::from_secs(60),
        "backup with a closed stdout",
    )
}

#[test]
fn a_closed_stdout_neither_panics_nor_stops_the_work() {
    let work = site();
    let applied = with_closed_stdout(
        work.path(),
        &["-p", "app.yaml", "apply", "--auto-approve", "--no-crontab"],
    );
    assert_eq!(applied.code, 0, "{applied:?}");
    assert!(!applied.stderr.contains("panicked"), "{}", applied.stderr);
    // The backup was taken and recorded all the same.
    let sidecars = common::sidecars(&work.path().join("store/app"));
    assert_eq!(sidecars.len(), 1);
    let records =
        std::fs::read_to_string(work.path().join(".state/runs/app.jsonl")).unwrap_or_default();
    assert!(records.contains("\"result\":\"ok\""), "{records}");
    for args in [
        &["-p", "app.yaml", "run", "app"][..],
        &["-p", "app.yaml", "verify"],
        &["-p", "app.yaml", "list"],
        &["-p", "app.yaml", "plan", "--no-crontab"],
        &["validate", "app.yaml"],
        &["schema"],
    ] {
        let result = with_closed_stdout(work.path(), args);
        assert!(!result.stderr.contains("panicked"), "{args:?}: {result:?}");
        assert_eq!(result.code, 0, "{args:?}: {result:?}");
    }
    // status exits as a Nagios plugin would, whatever became of its output.
    let status = with_closed_stdout(work.path(), &["-p", "app.yaml", "status", "--no-crontab"]);
    assert!(!status.stderr.contains("panicked"), "{status:?}");
    assert!(status.code <= 2, "{status:?}");
    assert_eq!(common::sidecars(&work.path().join("store/app")).len(), 2);
}

#[test]
fn fifos_and_devices_are_refused_without_hanging() {
    let work = site();
    let fifo = work.path().join("policies/stuck.yaml");
    std::fs::create_dir(work.path().join("policies")).unwrap();
    std::fs::copy(
        work.path().join("app.yaml"),
        work.path().join("policies/app.yaml"),
    )
    .unwrap();
    std::fs::write(
        work.path().join("policies/app.yaml"),
        policy_text("")
            .replace("app.db", "../app.db")
            .replace("store", "../store"),
    )
    .unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    for args in [
        &["validate"][..],
        &["plan", "--no-crontab"],
        &["apply", "--auto-approve", "--no-crontab"],
    ] {
        let child = backup(work.path())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let result = finish_within(child, Duration::from_secs(30), &format!("{args:?}"));
        let shown = format!("{}{}", result.stdout, result.stderr);
        assert!(
            shown.contains("stuck.yaml") && shown.contains("FIFO"),
            "{args:?}: {result:?}"
        );
    }
    // The other policy was backed up by that apply.
    assert_eq!(common::sidecars(&work.path().join("store/app")).len(), 1);

    // A secret file that is a FIFO, a device, or too large.
    let secret_fifo = work.path().join("secret-fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&secret_fifo)
            .status()
            .unwrap()
            .success()
    );
    let large = work.path().join("large-secret");
    std::fs::write(&large, "x".repeat(100 * 1024)).unwrap();
    for (file, reason) in [
        (secret_fifo.as_path(), "FIFO"),
        (Path::new("/dev/zero"), "character device"),
        (large.as_path(), "larger than 64 KiB"),
    ] {
        let http = common::sinks::HttpSink::start(0);
        std::fs::write(
            work.path().join("app.yaml"),
            policy_text(&format!(
                "  notify:\n    on: [success]\n    webhook:\n      url: \"{}${{file:{}}}\"\n",
                http.url("/hook/"),
                file.display()
            )),
        )
        .unwrap();
        let child = backup(work.path())
            .args(["-p", "app.yaml", "run", "app"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let result = finish_within(child, Duration::from_secs(60), "run with a secret file");
        // The backup stands; the notification fails and says why.
        assert_eq!(result.code, 0, "{result:?}");
        assert!(
            result.stderr.contains(&file.display().to_string()) && result.stderr.contains(reason),
            "{reason}: {}",
            result.stderr
        );
        assert!(http.taken().is_empty());
        let validated = run(work.path(), &["validate", "app.yaml"]);
        if reason != "larger than 64 KiB" {
            assert!(
                validated.stdout.contains("is not a regular file"),
                "{validated:?}"
            );
        }
    }
}

#[test]
fn a_schedule_that_never_fires_is_refused_and_unhealthy() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("app.yaml"),
        policy_text("").replace("\"@daily\"", "\"0 0 31 2 *\""),
    )
    .unwrap();
    let result = run(work.path(), &["validate", "app.yaml"]);
    assert_eq!(result.code, 3, "{result:?}");
    assert!(
        result
            .stdout
            .contains("cron expression `0 0 31 2 *` never fires"),
        "{}",
        result.stdout
    );
    assert!(
        result.stdout.contains(" --> app.yaml:10:11"),
        "{}",
        result.stdout
    );
    std::fs::write(
        work.path().join("app.yaml"),
        policy_text("  verify:\n    restore-test: \"0 4 31 4 *\"\n"),
    )
    .unwrap();
    let result = run(work.path(), &["validate", "app.yaml"]);
    assert_eq!(result.code, 3, "{result:?}");
    assert!(
        result
            .stdout
            .contains("cron expression `0 4 31 4 *` never fires"),
        "{}",
        result.stdout
    );

    // `status` judges "no tick to come" critical, never OK.
    let (policies, diagnostics) = backup::policy::load_text(
        &policy_text("  verify:\n    restore-test: weekly\n"),
        "app.yaml",
        work.path(),
        backup::policy::Options::default(),
    );
    assert!(diagnostics.iter().all(|diagnostic| !diagnostic.is_error()));
    // croner looks no further than the year 5000.
    let now = "5000-06-01T00:00:00Z".parse().unwrap();
    let health = backup::status::evaluate(backup::status::Input {
        policy: &policies[0],
        inventory: None,
        summary: None,
        drill: None,
        space: Default::default(),
        crontab: backup::status::CrontabCheck {
            state: "unchecked".to_owned(),
            message: String::new(),
        },
        now,
        detailed: false,
        recent_runs: Vec::new(),
    });
    assert_eq!(health.state, backup::status::Health::Critical, "{health:?}");
    assert!(
        health
            .findings
            .iter()
            .any(|finding| finding.message.contains("no backup will ever be due")),
        "{health:?}"
    );
}

#[test]
fn a_huge_sidecar_is_unreadable_and_never_read_whole() {
    let work = site();
    let id = take_backup(work.path());
    let folder = work.path().join("store/app");
    // The sidecar stays valid JSON (whitespace after it), only huge.
    let sidecar = folder.join(format!("{id}.json"));
    let mut bytes = std::fs::read(&sidecar).unwrap();
    bytes.resize(bytes.len() + 2 * 1024 * 1024, b' ');
    std::fs::write(&sidecar, &bytes).unwrap();
    let data: Vec<PathBuf> = entries(&folder)
        .into_iter()
        .filter(|path| path.to_string_lossy().ends_with(".sqlite.gz"))
        .collect();
    assert_eq!(data.len(), 1);

    let listed = run(work.path(), &["-p", "app.yaml", "list", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(report["backups"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(report["orphans"].as_array().unwrap().len(), 0, "{report}");
    let errors = report["errors"].to_string();
    assert!(errors.contains("larger than 1 MiB"), "{errors}");

    let verified = run(work.path(), &["-p", "app.yaml", "verify"]);
    assert_eq!(verified.code, 5, "{verified:?}");
    assert!(
        verified.stdout.contains("larger than 1 MiB"),
        "{}",
        verified.stdout
    );
    // Reported, never cleaned: a new backup is taken, nothing is removed.
    let applied = apply(work.path());
    assert_eq!(applied.code, 0, "{applied:?}");
    assert!(sidecar.exists() && data[0].exists());
}

#[test]
fn control_characters_in_paths_and_names_are_refused() {
    let work = site();
    for (extra_from, extra_to) in [
        ("path: store", "path: \"store\\nevil\""),
        ("path: app.db", "path: \"app.db\\u001b[2J\""),
        ("name: app", "name: app\n  labels: {\"team\\tx\": payments}"),
        ("name: app", "name: app\n  labels: {team: \"pay\\rments\"}"),
    ] {
        std::fs::write(
            work.path().join("app.yaml"),
            policy_text("").replace(extra_from, extra_to),
        )
        .unwrap();
        let result = run(work.path(), &["validate", "app.yaml"]);
        assert_eq!(result.code, 3, "{extra_to}: {result:?}");
        assert!(
            result.stdout.contains("holds a control character")
                && result.stdout.contains(" --> app.yaml:"),
            "{extra_to}: {}",
            result.stdout
        );
        let applied = apply(work.path());
        assert_ne!(applied.code, 0, "{applied:?}");
    }
    let strange: Vec<PathBuf> = entries(work.path())
        .into_iter()
        .filter(|path| path.to_string_lossy().chars().any(char::is_control))
        .collect();
    assert_eq!(strange, Vec::<PathBuf>::new(), "a folder was created");
}

#[test]
fn restore_to_an_empty_target_is_a_usage_error() {
    let work = site();
    take_backup(work.path());
    for to in ["", " "] {
        let result = run(
            work.path(),
            &["-p", "app.yaml", "restore", "app", "--to", to, "--yes"],
        );
        assert_eq!(result.code, 64, "{result:?}");
        assert!(result.stderr.contains("--to"), "{}", result.stderr);
    }
    // Nothing happened: no restore was logged, no safety backup taken.
    assert!(!work.path().join(".state/logs/restore.jsonl").exists());
    assert_eq!(common::sidecars(&work.path().join("store/app")).len(), 1);
}

#[test]
fn verify_counts_backups_and_unreadable_sidecars_apart() {
    let work = site();
    let first = take_backup(work.path());
    std::thread::sleep(Duration::from_millis(1100));
    let second = take_backup(work.path());
    assert_ne!(first, second);
    let folder = work.path().join("store/app");
    // The second backup's data is cut short.
    let data = folder.join(format!("{second}.sqlite.gz"));
    let bytes = std::fs::read(&data).unwrap();
    std::fs::write(&data, &bytes[..bytes.len() / 2]).unwrap();
    // Two sidecars that cannot be read.
    std::fs::write(folder.join("20200101T000000Z.json"), "{not json").unwrap();
    std::fs::write(folder.join("20200102T000000Z.json"), "{}").unwrap();
    let verified = run(work.path(), &["-p", "app.yaml", "verify"]);
    assert_eq!(verified.code, 5, "{verified:?}");
    assert!(
        verified
            .stdout
            .ends_with("Verified 2 backups: 1 ok, 1 failed; 2 sidecars unreadable.\n"),
        "{}",
        verified.stdout
    );
    // One backup, named: a damaged sidecar is a verification failure (5).
    let one = run(
        work.path(),
        &["-p", "app.yaml", "verify", "--backup", "20200101T000000Z"],
    );
    assert_eq!(one.code, 5, "{one:?}");
    assert!(
        one.stdout
            .ends_with("Verified 0 backups: 0 ok, 0 failed; 1 sidecar unreadable.\n"),
        "{}",
        one.stdout
    );
    let good = run(
        work.path(),
        &["-p", "app.yaml", "verify", "--backup", &first],
    );
    assert_eq!(good.code, 0, "{good:?}");
    assert!(
        good.stdout
            .ends_with("Verified 1 backup: 1 ok, 0 failed.\n"),
        "{}",
        good.stdout
    );
}

#[test]
fn an_unsealed_sidecar_with_another_time_format_is_a_backup() {
    let work = site();
    let id = take_backup(work.path());
    let sidecar = work.path().join(format!("store/app/{id}.json"));
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sidecar).unwrap()).unwrap();
    let object = value.as_object_mut().unwrap();
    // As another tool would write it: no seal, times in other valid forms.
    object.remove("sidecar_sha256");
    object.insert("created_at".to_owned(), "2014-08-13T10:20:30.1Z".into());
    object.insert("finished_at".to_owned(), "2014-08-13T12:21:00+02:00".into());
    std::fs::write(&sidecar, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
    let listed = run(work.path(), &["-p", "app.yaml", "list", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    assert_eq!(report["backups"][0]["state"], "complete", "{report}");
    assert_eq!(
        report["backups"][0]["created_at"],
        "2014-08-13T10:20:30.100+00:00"
    );
    let verified = run(work.path(), &["-p", "app.yaml", "verify"]);
    assert_eq!(verified.code, 0, "{verified:?}");
    // An unknown field is still damage.
    object_insert(&sidecar, "sizee", serde_json::json!(5));
    let verified = run(work.path(), &["-p", "app.yaml", "verify"]);
    assert_eq!(verified.code, 5, "{verified:?}");
}

fn object_insert(sidecar: &Path, key: &str, value: serde_json::Value) {
    let mut sidecar_value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sidecar).unwrap()).unwrap();
    sidecar_value
        .as_object_mut()
        .unwrap()
        .insert(key.to_owned(), value);
    std::fs::write(sidecar, serde_json::to_vec(&sidecar_value).unwrap()).unwrap();
}

#[test]
fn the_binary_under_test_gets_a_temporary_folder_of_its_own() {
    let work = site();
    let command = backup(work.path());
    let tmpdir = command
        .get_envs()
        .find(|(key, _)| *key == "TMPDIR")
        .and_then(|(_, value)| value)
        .map(PathBuf::from);
    assert_eq!(tmpdir, Some(common::tmpdir(work.path())));
    // A backup and a drill leave nothing in it.
    take_backup(work.path());
    let drill = run(work.path(), &["-p", "app.yaml", "verify", "--restore-test"]);
    assert_eq!(drill.code, 0, "{drill:?}");
    let output: Output = Command::new("ls")
        .arg("-A")
        .arg(common::tmpdir(work.path()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "");
}

/// `--identity FILE` is read like every other file the tool is given: a
/// FIFO there is refused at once, never waited on (a restore at 3 a.m.
/// would hang before it started).
#[test]
fn an_identity_that_is_a_fifo_is_refused_without_hanging() {
    let work = site();
    let fifo = work.path().join("key-fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let identity = fifo.to_str().unwrap();
    for args in [
        &[
            "-p",
            "app.yaml",
            "verify",
            "--decrypt",
            "--identity",
            identity,
        ][..],
        &[
            "-p",
            "app.yaml",
            "restore",
            "app",
            "--to",
            "new.db",
            "--yes",
            "--identity",
            identity,
        ],
    ] {
        let child = backup(work.path())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let result = finish_within(child, Duration::from_secs(30), &format!("{args:?}"));
        assert_ne!(result.code, 0, "{args:?}: {result:?}");
        assert!(
            result.stderr.contains("key-fifo") && result.stderr.contains("FIFO"),
            "{args:?}: {result:?}"
        );
    }
    assert!(!work.path().join("new.db").exists());
}
