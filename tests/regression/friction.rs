//! Regression tests: friction.

#[allow(unused_imports)]
use super::common;

// --- status and command line ---

use std::path::Path;

use common::run;

/// A daily SQLite policy `app` in `folder/app.yaml`, source `folder/app.db`
/// (created when `with_source`), backed up to `folder/backups`.
fn sqlite_policy(folder: &Path, with_source: bool) {
    if with_source {
        std::fs::write(folder.join("app.db"), "").unwrap();
    }
    std::fs::write(
        folder.join("app.yaml"),
        "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: app\nspec:\n  source:\n    sqlite: {path: app.db}\n  schedule:\n    cron: \"0 1 * * *\"\n  retention:\n    keep-daily: 7\n  destinations:\n    - local: {path: backups}\n",
    )
    .unwrap();
}

/// A complete, sealed backup of `size` bytes created at `time` in `folder/backups/app/`.
fn backup_at(folder: &Path, time: &str, size: usize) -> String {
    common::sealed_backup(&folder.join("backups"), "app", time, size)
}

/// `status` of `folder/app.yaml` at `now`, without the crontab, with `extra` options.
fn status(folder: &Path, now: &str, extra: &[&str]) -> common::Run {
    let args = [
        &["-p", "app.yaml", "status", "--no-crontab", "--now", now][..],
        extra,
    ]
    .concat();
    run(folder, &args)
}

#[test]
fn status_of_an_unknown_policy_is_nagios_unknown_not_warning() {
    let work = tempfile::tempdir().unwrap();
    sqlite_policy(work.path(), true);
    let result = run(
        work.path(),
        &["-p", "app.yaml", "status", "--no-crontab", "nosuch"],
    );
    assert_eq!(result.code, 3, "{result:?}");
    assert!(
        result.stderr.contains("no policy named `nosuch`"),
        "{}",
        result.stderr
    );
}

#[test]
fn status_prometheus_into_a_missing_folder_creates_it_and_writes_the_file() {
    let work = tempfile::tempdir().unwrap();
    sqlite_policy(work.path(), true);
    backup_at(work.path(), "2026-11-25T01:00:00Z", 100);
    let file = work.path().join("node-exporter/textfile/backup.prom");
    let result = status(
        work.path(),
        "2026-11-25T03:00:00Z",
        &["--prometheus", file.to_str().unwrap()],
    );
    assert_eq!(result.code, 0, "{result:?}");
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("backup_health{policy=\"app\"} 0")
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(file.parent().unwrap())
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o755, 0o755, "node_exporter must reach the folder");

    // A folder that cannot be made: one error line, naming it once; UNKNOWN.
    std::fs::write(work.path().join("a-file"), "").unwrap();
    let blocked = work.path().join("a-file/backup.prom");
    let result = status(
        work.path(),
        "2026-11-25T03:00:00Z",
        &["--prometheus", blocked.to_str().unwrap()],
    );
    assert_eq!(result.code, 3, "{result:?}");
    let errors: Vec<&str> = result
        .stderr
        .lines()
        .filter(|line| line.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", result.stderr);
    let folder = work.path().join("a-file");
    assert_eq!(
        errors[0].matches(folder.to_str().unwrap()).count(),
        1,
        "{}",
        errors[0]
    );
}

/// The free-space floor is the policy's choice (`health.min-free`), not a
/// fixed 5% that a disk shared with a build tree trips: CI went red on a
/// 98.7%-full disk that had room for millions of these backups.
#[test]
fn a_min_free_floor_is_opt_in_and_a_malformed_one_is_named_at_its_position() {
    let work = tempfile::tempdir().unwrap();
    sqlite_policy(work.path(), true);
    backup_at(work.path(), "2026-11-25T01:00:00Z", 100);
    let healthy = status(work.path(), "2026-11-25T03:00:00Z", &[]);
    assert_eq!(healthy.code, 0, "{healthy:?}");
    assert!(!healthy.stdout.contains("capacity"), "{}", healthy.stdout);

    // Every real file system has less than all of it free.
    let policy = std::fs::read_to_string(work.path().join("app.yaml")).unwrap();
    let with_floor = format!("{policy}  health:\n    min-free: 100%\n");
    std::fs::write(work.path().join("app.yaml"), &with_floor).unwrap();
    let warned = status(work.path(), "2026-11-25T03:00:00Z", &[]);
    assert_eq!(warned.code, 1, "{warned:?}");
    assert!(
        warned
            .stdout
            .contains("less than the policy's min-free of 100% of"),
        "{}",
        warned.stdout
    );

    std::fs::write(
        work.path().join("app.yaml"),
        with_floor.replace("100%", "10GB"),
    )
    .unwrap();
    let refused = run(work.path(), &["-p", "app.yaml", "validate"]);
    assert_eq!(refused.code, 3, "{refused:?}");
    assert!(
        refused.stdout.contains("app.yaml:15:15") && refused.stdout.contains("`10GB`"),
        "{}",
        refused.stdout
    );
    // Well-formed but impossible: more than all of it.
    std::fs::write(
        work.path().join("app.yaml"),
        with_floor.replace("100%", "101%"),
    )
    .unwrap();
    let refused = run(work.path(), &["-p", "app.yaml", "validate"]);
    assert_eq!(refused.code, 3, "{refused:?}");
    assert!(
        refused.stdout.contains("app.yaml:15:15")
            && refused.stdout.contains("percentage up to 100%"),
        "{}",
        refused.stdout
    );
}

#[test]
fn ages_after_now_say_in_the_future_instead_of_going_negative() {
    let work = tempfile::tempdir().unwrap();
    sqlite_policy(work.path(), false);
    // A failed run now (no source file), recorded with the real clock.
    let failed = run(work.path(), &["-p", "app.yaml", "run", "app"]);
    assert_eq!(failed.code, 1, "{failed:?}");
    backup_at(work.path(), "2026-11-25T01:00:00Z", 100);
    let early = status(work.path(), "2026-11-20T00:00:00Z", &[]);
    assert!(
        !early.stdout.contains(" -"),
        "a negative age: {}",
        early.stdout
    );
    assert!(
        early.stdout.contains("failed ") && early.stdout.contains(" in the future"),
        "{}",
        early.stdout
    );
    // The same clock on the healthy line: the newest backup is ahead of it.
    let healthy = tempfile::tempdir().unwrap();
    sqlite_policy(healthy.path(), true);
    backup_at(healthy.path(), "2026-11-25T01:00:00Z", 100);
    let early = status(healthy.path(), "2026-11-24T23:00:00Z", &[]);
    assert!(
        early.stdout.contains("(2 h in the future)"),
        "{}",
        early.stdout
    );
}

#[test]
fn a_cron_line_firing_twice_an_hour_is_not_described_as_hourly() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("app.yaml"),
        "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: app\nspec:\n  source:\n    sqlite: {path: app.db}\n  schedule:\n    cron: \"30 2 * * *\"\n    timezone: Europe/Berlin\n  retention:\n    keep-daily: 7\n  destinations:\n    - local: {path: backups}\n",
    )
    .unwrap();
    let result = run(
        work.path(),
        &[
            "-p",
            "app.yaml",
            "plan",
            "--now",
            "2026-11-25T03:00:00Z",
            "--crontab-file",
            "crontab",
        ],
    );
    assert_eq!(result.code, 0, "{result:?}");
    let comment = result
        .stdout
        .lines()
        .find(|line| line.contains("# app: 30 2 * * *"))
        .unwrap_or_else(|| panic!("{}", result.stdout));
    assert!(
        comment.contains("runs at minutes 0 and 30 of every hour"),
        "{comment}"
    );
    assert!(!comment.contains("runs hourly"), "{comment}");
}

#[test]
fn a_crontab_file_name_cron_would_ignore_is_warned_about() {
    let work = tempfile::tempdir().unwrap();
    sqlite_policy(work.path(), true);
    for (name, warned) in [("backup.cron", true), ("backup", false)] {
        let result = run(
            work.path(),
            &[
                "-p",
                "app.yaml",
                "plan",
                "--now",
                "2026-11-25T03:00:00Z",
                "--crontab-file",
                name,
            ],
        );
        assert_eq!(result.code, 0, "{result:?}");
        assert_eq!(
            result
                .stderr
                .contains("warning: cron ignores files in /etc/cron.d"),
            warned,
            "{name}: {}",
            result.stderr
        );
    }
}

#[test]
fn validate_warns_about_a_missing_sqlite_source_at_its_position() {
    let work = tempfile::tempdir().unwrap();
    sqlite_policy(work.path(), false);
    let result = run(work.path(), &["validate", "app.yaml"]);
    assert_eq!(result.code, 0, "{result:?}");
    let database = work.path().join("app.db");
    assert!(
        result.stdout.contains(&format!(
            "warning: SQLite database `{}` does not exist\n --> app.yaml:7:20",
            database.display()
        )),
        "{}",
        result.stdout
    );
    assert!(result.stdout.contains("1 warning"), "{}", result.stdout);
    let denied = run(work.path(), &["validate", "--deny-warnings", "app.yaml"]);
    assert_eq!(denied.code, 3, "{denied:?}");
    std::fs::write(&database, "").unwrap();
    let present = run(work.path(), &["validate", "--deny-warnings", "app.yaml"]);
    assert_eq!(present.code, 0, "{present:?}");
}

#[test]
fn status_detailed_shows_every_backup_each_rule_the_space_trend_and_the_last_errors() {
    let work = tempfile::tempdir().unwrap();
    sqlite_policy(work.path(), false);
    let failed = run(work.path(), &["-p", "app.yaml", "run", "app"]);
    assert_eq!(failed.code, 1, "{failed:?}");
    let first = backup_at(work.path(), "2026-11-23T01:00:00Z", 1000);
    let second = backup_at(work.path(), "2026-11-24T01:00:00Z", 1100);
    let newest = backup_at(work.path(), "2026-11-25T01:00:00Z", 1200);
    // Damage the oldest: its data loses a byte.
    std::fs::write(
        work.path().join(format!("backups/app/{first}.sqlite.gz")),
        vec![b'x'; 999],
    )
    .unwrap();
    let now = "2026-11-25T03:00:00Z";
    let plain = status(work.path(), now, &[]);
    assert!(!plain.stdout.contains(&first), "{}", plain.stdout);
    let detailed = status(work.path(), now, &["--detailed"]);
    let text = &detailed.stdout;
    for id in [&first, &second, &newest] {
        assert!(text.contains(id.as_str()), "{id}: {text}");
    }
    assert!(text.contains("size mismatch (999 bytes)"), "{text}");
    assert!(text.contains("retention: daily: 2 of 7"), "{text}");
    assert!(
        text.contains(
            "space: last 2 sizes 1.1 KiB, 1.2 KiB, +100 B per backup, next about 1.3 KiB"
        ),
        "{text}"
    );
    assert!(text.contains("last errors:\n"), "{text}");
    assert!(text.contains("  run: "), "{text}");
    let json = status(work.path(), now, &["--detailed", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let detail = &report["policies"][0]["detail"];
    assert_eq!(
        detail["destinations"][0]["backups"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(detail["recent_failures"].as_array().unwrap().len(), 1);
    let plain_json = status(work.path(), now, &["--format", "json"]);
    assert!(!plain_json.stdout.contains("\"detail\""));
}

#[test]
fn completions_and_man_pages_are_generated_from_the_command_line() {
    let work = tempfile::tempdir().unwrap();
    let bash = run(work.path(), &["completions", "bash"]);
    assert_eq!(bash.code, 0, "{bash:?}");
    for command in [
        "validate",
        "schema",
        "plan",
        "apply",
        "run",
        "list",
        "verify",
        "restore",
        "status",
        "completions",
        "man",
    ] {
        assert!(
            bash.stdout.contains(&format!("backup,{command})")),
            "bash completion lacks {command}"
        );
    }
    assert!(bash.stdout.contains("--detailed-exitcode"));
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let script = run(work.path(), &["completions", shell]);
        assert_eq!(script.code, 0, "{shell}: {script:?}");
        assert!(script.stdout.contains("restore"), "{shell}");
    }
    let page = run(work.path(), &["man"]);
    assert_eq!(page.code, 0, "{page:?}");
    assert!(
        page.stdout.starts_with(".ie \\n(.g .ds Aq") || page.stdout.contains(".TH backup"),
        "{}",
        &page.stdout[..200.min(page.stdout.len())]
    );
    let pages = work.path().join("man1");
    let written = run(work.path(), &["man", "--out", pages.to_str().unwrap()]);
    assert_eq!(written.code, 0, "{written:?}");
    for name in [
        "backup.1",
        "backup-plan.1",
        "backup-status.1",
        "backup-restore.1",
    ] {
        let text = std::fs::read_to_string(pages.join(name)).unwrap();
        assert!(text.contains(".TH"), "{name}");
    }
    // The bash script is valid bash and completes the subcommands.
    let script = work.path().join("backup.bash");
    std::fs::write(&script, &bash.stdout).unwrap();
    let completed = std::process::Command::new("bash")
        .args([
            "-c",
            &format!(
                ". '{}'; COMP_WORDS=(backup pl); COMP_CWORD=1; _backup backup pl backup; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                script.display()
            ),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&completed.stdout),
        "plan\n",
        "{completed:?}"
    );
}

// --- plan and apply ---

use common::sqlite_site::SqliteSite;

fn day(date: &str) -> String {
    format!("{date}T01:30:00Z")
}

#[test]
fn a_plan_that_cannot_read_a_destination_never_says_no_changes() {
    let site = SqliteSite::new("keep-last: 3");
    assert_eq!(site.apply_at(&day("2026-11-24"), &[]).code, 0);
    // A second destination that cannot be listed: a file where its folder should be.
    std::fs::write(site.path().join("broken"), "not a folder").unwrap();
    site.policy(
        "keep-last: 3",
        &[
            "    - local:\n        path: ../store\n",
            "    - local:\n        path: ../broken\n",
        ],
    );
    let plan = |extra: &[&str]| {
        let mut args = vec![
            "plan",
            "--no-crontab",
            "--detailed-exitcode",
            "--now",
            "2026-11-24T12:00:00Z",
        ];
        args.extend_from_slice(extra);
        site.run(&args)
    };
    for format in ["text", "markdown"] {
        let failed = plan(&["--format", format]);
        assert_eq!(failed.code, 1, "{failed:?}");
        assert!(!failed.stdout.contains("No changes"), "{}", failed.stdout);
        assert!(!failed.stdout.contains("match"), "{}", failed.stdout);
        assert!(
            failed
                .stdout
                .contains("Incomplete: 1 destination could not be read"),
            "{}",
            failed.stdout
        );
    }
    let applied = site.apply_at("2026-11-24T12:00:00Z", &[]);
    assert_eq!(applied.code, 1, "{applied:?}");
    assert!(!applied.stdout.contains("No changes"), "{}", applied.stdout);

    // For CI without credentials: not an error, but never "no changes".
    let allowed = plan(&["--allow-unreadable"]);
    assert_eq!(allowed.code, 2, "{allowed:?}");
    assert!(!allowed.stdout.contains("No changes"), "{}", allowed.stdout);
    let broken = site.path().join("broken");
    let unseen = format!("app: {}", broken.display());
    assert!(allowed.stdout.contains(&unseen), "{}", allowed.stdout);
    assert!(allowed.stderr.contains(&unseen), "{}", allowed.stderr);
    let json = plan(&["--allow-unreadable", "--format", "json"]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        value["policies"][0]["unreadable"],
        serde_json::json!([broken.display().to_string()])
    );
}

/// A site whose crontab file holds a line of its own and, after one
/// `apply`, the managed block with the policy's line.
fn site_with_crontab() -> (SqliteSite, std::path::PathBuf) {
    let site = SqliteSite::new("keep-last: 3");
    let crontab = site.path().join("crontab");
    std::fs::write(&crontab, "MAILTO=ops@example.com\n").unwrap();
    let applied = site.run(&[
        "apply",
        "--auto-approve",
        "--crontab-file",
        crontab.to_str().unwrap(),
    ]);
    assert_eq!(applied.code, 0, "{applied:?}");
    assert!(
        std::fs::read_to_string(&crontab)
            .unwrap()
            .contains("--policy 'app'")
    );
    (site, crontab)
}

#[test]
fn deleting_the_last_policy_removes_the_crontab_block_after_confirmation() {
    let (site, crontab) = site_with_crontab();
    let crontab_file = crontab.to_str().unwrap();

    std::fs::remove_file(site.path().join("policies/app.yaml")).unwrap();
    let plan = site.run(&[
        "plan",
        "--detailed-exitcode",
        "--crontab-file",
        crontab_file,
    ]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(
        plan.stdout
            .contains("no policy is scheduled any more; the block is removed"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("-# BEGIN backup managed block"),
        "{}",
        plan.stdout
    );
    // Not without confirmation: a usage error off a terminal, nothing changed.
    let refused = site.run(&["apply", "--crontab-file", crontab_file]);
    assert_eq!(refused.code, 64, "{refused:?}");
    assert!(
        std::fs::read_to_string(&crontab)
            .unwrap()
            .contains("--policy 'app'")
    );
    let removed = site.run(&["apply", "--auto-approve", "--crontab-file", crontab_file]);
    assert_eq!(removed.code, 0, "{removed:?}");
    assert_eq!(
        std::fs::read_to_string(&crontab).unwrap(),
        "MAILTO=ops@example.com\n"
    );
    let again = site.run(&[
        "plan",
        "--detailed-exitcode",
        "--crontab-file",
        crontab_file,
    ]);
    assert_eq!(again.code, 0, "{again:?}");
}

#[test]
fn unschedule_removes_only_the_managed_block_and_asks_first() {
    let (site, crontab) = site_with_crontab();
    let crontab_file = crontab.to_str().unwrap();
    std::fs::write(
        &crontab,
        std::fs::read_to_string(&crontab).unwrap() + "15 3 * * * root /usr/local/bin/other-job\n",
    )
    .unwrap();

    let refused = site.run(&["unschedule", "--crontab-file", crontab_file]);
    assert_eq!(refused.code, 64, "{refused:?}");
    assert!(refused.stderr.contains("pass --yes"), "{}", refused.stderr);
    assert!(
        std::fs::read_to_string(&crontab)
            .unwrap()
            .contains("BEGIN backup managed block")
    );

    let (code, shown) = common::on_a_terminal(
        site.path(),
        &format!("unschedule --crontab-file {crontab_file}"),
        "no\n",
    );
    assert_eq!(code, 1, "{shown}");
    assert!(shown.contains("Unschedule cancelled."), "{shown}");
    assert!(
        std::fs::read_to_string(&crontab)
            .unwrap()
            .contains("BEGIN backup managed block")
    );

    let removed = site.run(&["unschedule", "--yes", "--crontab-file", crontab_file]);
    assert_eq!(removed.code, 0, "{removed:?}");
    assert!(
        removed.stdout.contains("-# END backup managed block"),
        "{}",
        removed.stdout
    );
    assert_eq!(
        std::fs::read_to_string(&crontab).unwrap(),
        "MAILTO=ops@example.com\n15 3 * * * root /usr/local/bin/other-job\n"
    );
    let nothing = site.run(&[
        "unschedule",
        "--auto-approve",
        "--crontab-file",
        crontab_file,
    ]);
    assert_eq!(nothing.code, 0, "{nothing:?}");
    assert!(
        nothing.stdout.contains("No managed block"),
        "{}",
        nothing.stdout
    );
}

#[test]
fn a_mass_delete_is_refused_once_with_the_count_the_rule_and_the_flag() {
    let site = SqliteSite::new("keep-last: 10");
    for date in [
        "2026-11-21",
        "2026-11-22",
        "2026-11-23",
        "2026-11-24",
        "2026-11-25",
    ] {
        assert_eq!(site.apply_at(&day(date), &[]).code, 0);
    }
    site.policy("keep-last: 1", &["    - local:\n        path: ../store\n"]);
    let refused = site.apply_at(&day("2026-11-25"), &[]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(!refused.stdout.contains("FAILED"), "{}", refused.stdout);
    let refusals: Vec<&str> = refused
        .stdout
        .lines()
        .filter(|line| line.starts_with("refused"))
        .collect();
    assert_eq!(
        refusals,
        [
            "refused app: 4 prunes of 4 backups refused: the plan prunes more than half of the policy's backups (the mass-delete brake); check the retention, then pass --allow-mass-delete to carry them out"
        ],
        "{}",
        refused.stdout
    );
    assert!(!refused.stderr.contains("refused"), "{}", refused.stderr);
    assert_eq!(site.stored_ids().len(), 5);

    let status = site.run(&[
        "status",
        "--format",
        "json",
        "--no-crontab",
        "--now",
        &day("2026-11-25"),
    ]);
    let report: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let error = report["policies"][0]["last_attempt"]["error"]
        .as_str()
        .unwrap();
    assert_eq!(error, refusals[0].trim_start_matches("refused app: "));
}

/// `plan` and `apply` announce it the same way; `apply` is not run here, as
/// root's default is the host's /var/lib/backup.
#[test]
fn plan_names_the_state_folder_when_it_is_the_default() {
    let site = SqliteSite::new("keep-last: 3");
    let home = site.path().join("home");
    let root = std::fs::metadata("/proc/self")
        .is_ok_and(|metadata| std::os::unix::fs::MetadataExt::uid(&metadata) == 0);
    let expected = if root {
        std::path::PathBuf::from("/var/lib/backup")
    } else {
        home.join(".local/state/backup")
    };
    let plan: common::Run = site
        .command()
        .env_remove("BACKUP_STATE_DIR")
        .env_remove("XDG_STATE_HOME")
        .env("HOME", &home)
        .args(["plan", "--no-crontab", "--now", &day("2026-11-25")])
        .output()
        .unwrap()
        .into();
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(
        plan.stderr.contains(&format!(
            "State folder: {} (the default",
            expected.display()
        )),
        "{}",
        plan.stderr
    );
    // Chosen explicitly, it is not repeated on every run.
    let chosen = site.run(&["plan", "--no-crontab", "--now", &day("2026-11-25")]);
    assert!(!chosen.stderr.contains("State folder"), "{}", chosen.stderr);
}

#[test]
fn apply_only_prune_and_cleanup_prunes_without_backing_up_and_keeps_the_safety_rules() {
    let site = SqliteSite::new("keep-last: 5");
    for date in ["2026-11-21", "2026-11-22", "2026-11-23", "2026-11-24"] {
        assert_eq!(site.apply_at(&day(date), &[]).code, 0);
    }
    site.policy("keep-last: 2", &["    - local:\n        path: ../store\n"]);
    // A backup is due at this time, but --only leaves it out, and retention
    // counts no planned backup: exactly two of the four go.
    let only = ["--only", "prune,cleanup"];
    let plan = site.run(&[
        "plan",
        "--no-crontab",
        "--now",
        &day("2026-11-25"),
        "--only",
        "prune,cleanup",
    ]);
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(
        plan.stdout
            .contains("Plan: 0 to back up, 0 to copy, 2 to prune"),
        "{}",
        plan.stdout
    );
    let pruned = site.apply_at(&day("2026-11-25"), &only);
    assert_eq!(pruned.code, 0, "{pruned:?}");
    assert_eq!(site.stored_ids(), ["20261123T013000Z", "20261124T013000Z"]);

    // The latest attempt failed (a .partial newer than the newest backup):
    // nothing is pruned, whatever --only says; the dead temporary is cleaned up.
    site.policy("keep-last: 1", &["    - local:\n        path: ../store\n"]);
    let partial = site.store().join("20261125T013000Z.sqlite.gz.partial");
    std::fs::write(&partial, "half a backup").unwrap();
    let file = std::fs::File::options().write(true).open(&partial).unwrap();
    file.set_modified(
        std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000),
    )
    .unwrap();
    let held = site.apply_at("2026-11-25T06:00:00Z", &only);
    assert_eq!(held.code, 0, "{held:?}");
    assert!(
        held.stdout.contains("did not finish, so nothing is pruned"),
        "{}",
        held.stdout
    );
    assert_eq!(site.stored_ids(), ["20261123T013000Z", "20261124T013000Z"]);
    assert!(!partial.exists());

    let wrong = site.apply_at(&day("2026-11-25"), &["--only", "prune,bogus"]);
    assert_eq!(wrong.code, 64, "{wrong:?}");
    assert!(
        wrong.stderr.contains("`bogus` is no kind of action"),
        "{}",
        wrong.stderr
    );
}

#[test]
fn apply_without_auto_approve_off_a_terminal_is_a_usage_error() {
    let site = SqliteSite::new("keep-last: 3");
    let refused = site.run(&["apply", "--no-crontab", "--now", &day("2026-11-25")]);
    assert_eq!(refused.code, 64, "{refused:?}");
    assert!(
        refused.stderr.contains("pass --auto-approve"),
        "{}",
        refused.stderr
    );
    assert!(site.stored_ids().is_empty());
}
