//! `plan` and `apply` end to end: real SQLite databases, real files, the real binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::sqlite_site::SqliteSite;
use common::{Run, backup, files_under, sqlite3};

/// A folder with an SQLite database `app.db` and a policy `app` backing it up
/// to `store/` (and any other local folders given): [`SqliteSite`], with
/// destinations named by folder.
struct Site(SqliteSite);

impl std::ops::Deref for Site {
    type Target = SqliteSite;

    fn deref(&self) -> &SqliteSite {
        &self.0
    }
}

impl Site {
    fn new(retention: &str) -> Site {
        Site(SqliteSite::new(retention))
    }

    /// (Re)writes the policy: daily at 01:00 UTC, `retention` (YAML lines),
    /// local destinations (folders of the site).
    fn policy(&self, retention: &str, destinations: &[&str]) {
        let destinations: Vec<String> = destinations
            .iter()
            .map(|path| format!("    - local:\n        path: ../{path}\n"))
            .collect();
        let destinations: Vec<&str> = destinations.iter().map(String::as_str).collect();
        self.0.policy(retention, &destinations);
    }

    fn plan_at(&self, now: &str) -> Run {
        self.run(&["plan", "--no-crontab", "--detailed-exitcode", "--now", now])
    }

    /// The ids of complete backups, from `backup list`.
    fn ids(&self) -> Vec<String> {
        let listed = self.run(&["list", "--format", "json"]);
        assert_eq!(listed.code, 0, "{listed:?}");
        let report: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
        let mut ids: Vec<String> = report["backups"]
            .as_array()
            .unwrap()
            .iter()
            .inspect(|row| assert_eq!(row["state"], "complete", "{row}"))
            .map(|row| row["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

fn day(date: &str) -> String {
    format!("{date}T01:30:00Z")
}

#[test]
fn plan_apply_plan_converges_and_retention_changes_show_as_prunes() {
    let site = Site::new("keep-last: 3\nkeep-daily: 7");
    let now = day("2026-11-25");

    let planned = site.plan_at(&now);
    assert_eq!(planned.code, 2, "{planned:?}");
    assert!(
        planned
            .stdout
            .contains("  + backup\n      no backup exists yet"),
        "{}",
        planned.stdout
    );
    assert!(
        planned.stdout.contains(
            "Plan: 1 to back up, 0 to copy, 0 to prune, 0 to clean up, crontab not managed."
        ),
        "{}",
        planned.stdout
    );

    let applied = site.apply_at(&now, &[]);
    assert_eq!(applied.code, 0, "{applied:?}");
    assert!(
        applied
            .stdout
            .contains("Apply complete: 1 backed up, 0 copied, 0 pruned"),
        "{}",
        applied.stdout
    );
    assert_eq!(site.ids(), ["20261125T013000Z"]);
    assert_eq!(site.run(&["verify"]).code, 0);

    let again = site.plan_at(&now);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("No changes."), "{}", again.stdout);
    // Applying a plan without changes does nothing, successfully.
    let idle = site.apply_at(&now, &[]);
    assert_eq!(idle.code, 0, "{idle:?}");
    assert_eq!(site.ids(), ["20261125T013000Z"]);

    // Six more nights.
    for date in [
        "2026-11-26",
        "2026-11-27",
        "2026-11-28",
        "2026-11-29",
        "2026-11-30",
        "2026-12-01",
    ] {
        assert_eq!(site.apply_at(&day(date), &[]).code, 0);
        assert_eq!(site.plan_at(&day(date)).code, 0, "not converged on {date}");
    }
    assert_eq!(site.ids().len(), 7);

    // Retention cut to the last 5: exactly the two oldest go, each with its reasons.
    site.policy("keep-last: 5", &["store"]);
    let cut = site.plan_at(&day("2026-12-01"));
    assert_eq!(cut.code, 2, "{cut:?}");
    let pruned: Vec<&str> = cut
        .stdout
        .lines()
        .filter(|line| line.starts_with("  - prune "))
        .collect();
    let store = site.path().join("store").display().to_string();
    assert_eq!(
        pruned,
        [
            format!("  - prune 20261125T013000Z on {store}"),
            format!("  - prune 20261126T013000Z on {store}"),
        ]
    );
    assert!(
        cut.stdout
            .contains("      keep-last 5 is filled by newer backups"),
        "{}",
        cut.stdout
    );
    assert!(
        cut.stdout
            .contains("Plan: 0 to back up, 0 to copy, 2 to prune"),
        "{}",
        cut.stdout
    );
    assert_eq!(site.apply_at(&day("2026-12-01"), &[]).code, 0);
    assert_eq!(site.ids().len(), 5);
    assert_eq!(site.plan_at(&day("2026-12-01")).code, 0);
}

#[test]
fn forty_nights_of_apply_keep_exactly_what_retention_says() {
    let site = Site::new("keep-daily: 7\nkeep-weekly: 4");
    let start = chrono::NaiveDate::from_ymd_opt(2026, 11, 2).unwrap(); // a Monday
    for offset in 0..40 {
        let date = (start + chrono::Days::new(offset)).to_string();
        let applied = site.apply_at(&day(&date), &[]);
        assert_eq!(applied.code, 0, "{date}: {applied:?}");
        assert_eq!(site.plan_at(&day(&date)).code, 0, "not converged on {date}");
    }
    // The last night is Friday 2026-12-11: seven days, plus the newest of
    // each of the three weeks before (the newest week's is already kept).
    let expected: Vec<String> = [
        "20261122", "20261129", "20261205", "20261206", "20261207", "20261208", "20261209",
        "20261210", "20261211",
    ]
    .iter()
    .map(|date| format!("{date}T013000Z"))
    .collect();
    assert_eq!(site.ids(), expected);
    assert_eq!(site.run(&["verify"]).code, 0);
}

#[test]
fn apply_asks_first_and_needs_auto_approve_off_a_terminal() {
    let site = Site::new("keep-last: 3");
    let result: Run = backup(site.path())
        .args(["apply", "--no-crontab"])
        .stdin(Stdio::null())
        .output()
        .unwrap()
        .into();
    // A usage error, as `restore` without `--yes` (issue 12).
    assert_eq!(result.code, 64, "{result:?}");
    assert!(
        result.stderr.contains("pass --auto-approve"),
        "{}",
        result.stderr
    );
    assert!(site.ids().is_empty());
}

#[test]
fn apply_on_a_terminal_acts_only_on_yes() {
    let site = Site::new("keep-last: 3");
    // `script` runs apply on a pseudo-terminal and types the answer.
    let on_a_terminal =
        |answer: &str| common::on_a_terminal(site.path(), "apply --no-crontab", answer);
    let (code, shown) = on_a_terminal("no\n");
    assert_eq!(code, 1, "{shown}");
    assert!(
        shown.contains("Do you want to perform these actions?"),
        "{shown}"
    );
    assert!(shown.contains("Apply cancelled."), "{shown}");
    assert!(site.ids().is_empty());
    let (code, shown) = on_a_terminal("yes\n");
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("Apply complete: 1 backed up"), "{shown}");
    assert_eq!(site.ids().len(), 1);
}

#[test]
fn a_held_lock_stops_apply_and_run_with_exit_4() {
    let site = Site::new("keep-last: 3");
    let locks = site.path().join(".state/locks");
    std::fs::create_dir_all(&locks).unwrap();
    let lock = std::fs::File::create(locks.join("app.lock")).unwrap();
    lock.try_lock().unwrap();
    for args in [
        &["apply", "--auto-approve", "--no-crontab"][..],
        &["run", "app"][..],
    ] {
        let result = site.run(args);
        assert_eq!(result.code, 4, "{args:?}: {result:?}");
        assert!(
            result.stderr.contains("policy `app` is locked"),
            "{}",
            result.stderr
        );
    }
    assert!(site.ids().is_empty());
    drop(lock);
    assert_eq!(
        site.run(&["apply", "--auto-approve", "--no-crontab"]).code,
        0
    );
    assert_eq!(site.ids().len(), 1);
}

#[test]
fn a_saved_plan_is_applied_only_while_nothing_changed() {
    let site = Site::new("keep-last: 3");
    let save = |extra: &[&str]| {
        let mut args = vec!["plan", "--no-crontab", "--out", "plan.json"];
        args.extend_from_slice(extra);
        let saved = site.run(&args);
        assert_eq!(saved.code, 0, "{saved:?}");
    };
    let apply_saved = || site.run(&["apply", "plan.json", "--auto-approve", "--no-crontab"]);

    // Something changes the inventory after the plan was saved.
    save(&[]);
    assert_eq!(site.run(&["run", "app"]).code, 0);
    let refused = apply_saved();
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("changed since the plan was saved"),
        "{}",
        refused.stderr
    );
    assert_eq!(site.ids().len(), 1);

    // A plan edited to prune the newest backup is not what plan computes.
    save(&[]);
    let newest = site.ids()[0].clone();
    let mut plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(site.path().join("plan.json")).unwrap())
            .unwrap();
    plan["actions"].as_array_mut().unwrap().push(serde_json::json!({
        "kind": "prune", "policy": "app", "destination": site.path().join("store").display().to_string(),
        "backup": newest, "reasons": ["edited in"]
    }));
    plan["summary"]["prune"] = 1.into();
    std::fs::write(site.path().join("plan.json"), plan.to_string()).unwrap();
    let edited = apply_saved();
    assert_eq!(edited.code, 1, "{edited:?}");
    assert!(
        edited.stderr.contains("was it edited?"),
        "{}",
        edited.stderr
    );
    assert_eq!(site.ids(), std::slice::from_ref(&newest));

    // A plan made for another time is refused.
    save(&["--now", "2099-01-01T02:00:00Z"]);
    let future = apply_saved();
    assert_eq!(future.code, 1, "{future:?}");
    assert!(future.stderr.contains("still to come"), "{}", future.stderr);

    // A changed policy makes a saved plan stale too.
    save(&[]);
    site.policy("keep-last: 4", &["store"]);
    let stale = apply_saved();
    assert_eq!(stale.code, 1, "{stale:?}");

    // A fresh plan is carried out as saved.
    assert_eq!(site.run(&["run", "app"]).code, 0);
    assert_eq!(site.run(&["run", "app"]).code, 0);
    site.policy("keep-last: 1", &["store"]);
    save(&[]);
    let applied = apply_saved();
    assert_eq!(applied.code, 0, "{applied:?}");
    assert!(applied.stdout.contains("2 pruned"), "{}", applied.stdout);
    assert_eq!(site.ids().len(), 1);
}

#[test]
fn a_copy_cut_short_by_a_crash_is_redone_cleanly() {
    let site = Site::new("keep-last: 3");
    site.policy("keep-last: 3", &["store", "mirror"]);
    assert_eq!(site.apply_at(&day("2026-11-24"), &[]).code, 0);
    // What a copy killed at two points leaves on the mirror: data committed
    // without its sidecar, and a partial of it beside.
    let id = "20261124T013000Z";
    let mirror = site.path().join("mirror/app");
    std::fs::remove_file(mirror.join(format!("{id}.json"))).unwrap();
    let data = mirror.join(format!("{id}.sqlite.gz"));
    std::fs::copy(&data, mirror.join(format!("{id}.sqlite.gz.partial"))).unwrap();
    let plan = site.plan_at(&day("2026-11-25"));
    assert!(
        plan.stdout.contains("Plan: 2 to back up")
            || plan.stdout.contains("1 to back up, 1 to copy"),
        "{}",
        plan.stdout
    );
    let applied = site.apply_at(&day("2026-11-25"), &[]);
    assert_eq!(applied.code, 0, "{applied:?}");
    assert_eq!(site.plan_at(&day("2026-11-25")).code, 0);
    assert!(mirror.join(format!("{id}.json")).exists());
    assert_eq!(
        std::fs::read(&data).unwrap(),
        std::fs::read(site.store().join(format!("{id}.sqlite.gz"))).unwrap()
    );
    assert_eq!(site.run(&["verify"]).code, 0);
}

#[test]
fn a_failed_backup_prunes_nothing_and_the_next_apply_finishes_the_job() {
    let site = Site::new("keep-last: 5");
    for date in ["2026-11-21", "2026-11-22", "2026-11-23"] {
        assert_eq!(site.apply_at(&day(date), &[]).code, 0);
    }
    site.policy("keep-last: 2", &["store"]);
    let database = site.path().join("app.db");
    std::fs::rename(&database, site.path().join("moved.db")).unwrap();
    let failed = site.apply_at(&day("2026-11-24"), &[]);
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(
        failed.stdout.contains("FAILED  app: + backup"),
        "{}",
        failed.stdout
    );
    assert!(
        failed
            .stdout
            .contains("skipped app: - prune 20261121T013000Z on"),
        "{}",
        failed.stdout
    );
    assert_eq!(site.ids().len(), 3);

    std::fs::rename(site.path().join("moved.db"), &database).unwrap();
    let fixed = site.apply_at(&day("2026-11-24"), &[]);
    assert_eq!(fixed.code, 0, "{fixed:?}");
    assert_eq!(site.ids(), ["20261123T013000Z", "20261124T013000Z"]);
}

#[test]
fn a_mass_delete_needs_allow_mass_delete() {
    let site = Site::new("keep-last: 10");
    for date in [
        "2026-11-21",
        "2026-11-22",
        "2026-11-23",
        "2026-11-24",
        "2026-11-25",
    ] {
        assert_eq!(site.apply_at(&day(date), &[]).code, 0);
    }
    site.policy("keep-last: 1", &["store"]);
    let plan = site.plan_at(&day("2026-11-25"));
    assert!(
        plan.stdout
            .contains("prunes 4 of 5 backups (more than half)"),
        "{}",
        plan.stdout
    );
    let refused = site.apply_at(&day("2026-11-25"), &[]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stdout.contains("--allow-mass-delete"),
        "{}",
        refused.stdout
    );
    assert_eq!(site.ids().len(), 5);
    let allowed = site.apply_at(&day("2026-11-25"), &["--allow-mass-delete"]);
    assert_eq!(allowed.code, 0, "{allowed:?}");
    assert_eq!(site.ids(), ["20261125T013000Z"]);
}

#[test]
fn a_copy_lost_by_hand_is_planned_as_one_copy_and_restored() {
    let site = Site::new("keep-last: 3");
    site.policy("keep-last: 3", &["store", "mirror"]);
    for date in ["2026-11-23", "2026-11-24"] {
        assert_eq!(site.apply_at(&day(date), &[]).code, 0);
    }
    let mirror = site.path().join("mirror/app");
    std::fs::remove_file(mirror.join("20261123T013000Z.sqlite.gz")).unwrap();
    std::fs::remove_file(mirror.join("20261123T013000Z.json")).unwrap();
    let plan = site.plan_at(&day("2026-11-24"));
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(
        plan.stdout
            .contains("Plan: 0 to back up, 1 to copy, 0 to prune"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains(&format!(
            "  + copy 20261123T013000Z to {} (from {})",
            site.path().join("mirror").display(),
            site.path().join("store").display()
        )),
        "{}",
        plan.stdout
    );
    assert_eq!(site.apply_at(&day("2026-11-24"), &[]).code, 0);
    assert_eq!(site.plan_at(&day("2026-11-24")).code, 0);
    assert_eq!(
        std::fs::read(mirror.join("20261123T013000Z.sqlite.gz")).unwrap(),
        std::fs::read(site.store().join("20261123T013000Z.sqlite.gz")).unwrap()
    );
    assert_eq!(site.run(&["verify"]).code, 0);
}

#[test]
fn the_crontab_file_gets_a_managed_block_and_keeps_every_other_line() {
    let site = Site::new("keep-last: 3");
    let cron = site.path().join("cron.d-backup");
    let outside = "# keep me\nSHELL=/bin/sh\n*/5 * * * * root  echo '50%' >/dev/null\n";
    std::fs::write(&cron, outside).unwrap();
    let cron_arg = cron.to_str().unwrap();
    let applied = site.run(&["apply", "--auto-approve", "--crontab-file", cron_arg]);
    assert_eq!(applied.code, 0, "{applied:?}");
    assert!(
        applied.stdout.contains("crontab updated"),
        "{}",
        applied.stdout
    );
    let text = std::fs::read_to_string(&cron).unwrap();
    assert!(text.starts_with(outside), "{text}");
    let line = text
        .lines()
        .find(|line| line.contains(" apply --policy 'app' --auto-approve"))
        .unwrap_or_else(|| panic!("no line for app: {text}"));
    assert!(line.starts_with("0 1 * * * "), "{line}");
    assert!(line.contains(env!("CARGO_BIN_EXE_backup")), "{line}");
    // The runs cron starts keep managing this file, not the user's crontab.
    assert!(
        line.contains(&format!("--auto-approve --crontab-file '{cron_arg}' >>")),
        "{line}"
    );
    let again = site.run(&["plan", "--detailed-exitcode", "--crontab-file", cron_arg]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        again.stdout.contains("crontab unchanged."),
        "{}",
        again.stdout
    );
}

/// kill -9 at many points of an apply that backs up and prunes: every time,
/// the inventory holds only complete backups, every kept backup survives,
/// and the next apply completes the plan.
#[test]
fn an_apply_killed_at_any_point_leaves_a_consistent_inventory() {
    let site = Site::new("keep-last: 3");
    // 150 small old backups to prune, made by copying one real backup.
    assert_eq!(site.apply_at("2020-01-01T01:30:00Z", &[]).code, 0);
    let template_id = "20200101T013000Z";
    let sidecar =
        std::fs::read_to_string(site.store().join(format!("{template_id}.json"))).unwrap();
    let data = site.store().join(format!("{template_id}.sqlite.gz"));
    let start = chrono::NaiveDate::from_ymd_opt(2020, 1, 2).unwrap();
    for offset in 0..150 {
        let date = start + chrono::Days::new(offset);
        let id = format!("{}T013000Z", date.format("%Y%m%d"));
        let created = format!("{}T01:30:00Z", date.format("%Y-%m-%d"));
        let text = sidecar
            .replace(template_id, &id)
            .replace("2020-01-01T01:30:00Z", &created);
        // Edited, so sealed again: verify checks the sidecar's own digest.
        let mut metadata: backup::inventory::BackupMetadata = serde_json::from_str(&text).unwrap();
        metadata.seal().unwrap();
        let text = serde_json::to_string_pretty(&metadata).unwrap();
        std::fs::write(site.store().join(format!("{id}.json")), text).unwrap();
        std::fs::copy(&data, site.store().join(format!("{id}.sqlite.gz"))).unwrap();
    }
    // Then about 24 MB of incompressible rows, so the backup takes a while.
    sqlite3(
        &site.path().join("app.db"),
        "CREATE TABLE big (v BLOB); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 6000) INSERT INTO big SELECT randomblob(4000) FROM n;",
    );
    let before = site.ids();
    assert_eq!(before.len(), 151);
    let kept_anyway: Vec<String> = before[before.len() - 2..].to_vec();

    // Far ahead of the files' real modification times, so whatever a kill
    // leaves is past the cleanup grace period at once.
    let now = "2099-01-01T01:30:00Z";
    let args = [
        "apply",
        "--auto-approve",
        "--no-crontab",
        "--allow-mass-delete",
        "--now",
        now,
    ];
    // Every kill hits a fresh copy of this site.
    let fresh = || Site(site.copy());
    // How long a whole apply takes here (the fastest of three).
    let full = (0..3)
        .map(|_| {
            let copy = fresh();
            let clock = std::time::Instant::now();
            assert_eq!(copy.run(&args).code, 0);
            clock.elapsed()
        })
        .min()
        .unwrap();
    let points = 24;
    let (mut interrupted, mut during_backup, mut during_prune) = (0, 0, 0);
    // Another sweep, offset by half a step, while a load on the machine has
    // kept the kills out of one phase; at most three.
    let mut point = 0;
    while point < points || (point < 3 * points && (during_backup == 0 || during_prune == 0)) {
        let sweep = f64::from(point / points);
        let step = f64::from(point % points) + sweep / 3.0;
        point += 1;
        let delay = full.mul_f64(step / f64::from(points));
        let copy = fresh();
        let mut child = backup(copy.path())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .status();
        if child.wait().unwrap().code().is_none() {
            interrupted += 1;
        }
        // Only complete backups are listed (ids() asserts it), the kept ones are all there.
        let ids = copy.ids();
        for id in &kept_anyway {
            assert!(ids.contains(id), "after a kill at {delay:?}, {id} is gone");
        }
        assert_eq!(copy.run(&["verify"]).code, 0, "after a kill at {delay:?}");
        // Every file is part of a listed backup or a reported orphan.
        let listed = copy.run(&["list", "--format", "json"]);
        let report: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
        let orphans = report["orphans"].as_array().unwrap();
        for (path, _) in files_under(&copy.store()) {
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let id = name.split('.').next().unwrap().to_owned();
            let orphan = orphans.iter().any(|orphan| orphan["name"] == name.as_str());
            assert!(
                ids.contains(&id) || orphan,
                "after a kill at {delay:?}: {name} is neither a backup nor an orphan"
            );
        }
        if ids.len() < before.len() && ids.len() > 3 {
            during_prune += 1;
        } else if !orphans.is_empty() {
            during_backup += 1;
        }

        // The next apply finishes the job, orphans included.
        let finished = copy.run(&args);
        assert_eq!(finished.code, 0, "after a kill at {delay:?}: {finished:?}");
        let settled = copy.plan_at(now);
        assert_eq!(settled.code, 0, "after a kill at {delay:?}: {settled:?}");
        let ids = copy.ids();
        assert_eq!(ids.len(), 3, "after a kill at {delay:?}: {ids:?}");
        assert_eq!(ids[..2], kept_anyway[..]);
        let listed = copy.run(&["list", "--format", "json"]);
        let report: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
        assert_eq!(report["orphans"].as_array().unwrap().len(), 0, "{report}");
    }
    // The kills must really have cut applies short, in both phases.
    assert!(
        interrupted >= point / 2,
        "only {interrupted} of {point} applies were interrupted"
    );
    assert!(
        during_backup > 0 && during_prune > 0,
        "kills during the backup: {during_backup}, during the prunes: {during_prune}"
    );
}

/// The user's real crontab, through the real `crontab` program, written by a
/// real `backup apply` run as a dedicated user: lines outside the managed
/// block survive byte for byte, and removing every policy removes the block.
/// `runuser` and `crontab -u` need root (as in CI); elsewhere this test says
/// so and passes.
#[test]
fn apply_manages_a_block_in_the_users_real_crontab() {
    const USER: &str = "backup-apply-test";
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout == b"0\n");
    if !is_root {
        eprintln!("skipped: needs root for runuser and crontab -u");
        return;
    }
    let known = Command::new("id").arg(USER).output().unwrap();
    if !known.status.success() {
        let status = Command::new("useradd")
            .args(["--no-create-home", "--shell", "/usr/sbin/nologin", USER])
            .status()
            .unwrap();
        assert!(status.success(), "useradd {USER}");
    }
    struct Cleanup;
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = Command::new("crontab").args(["-u", USER, "-r"]).output();
        }
    }
    let _cleanup = Cleanup;
    let crontab = |args: &[&str], input: Option<&str>| -> String {
        let mut child = Command::new("crontab")
            .args(["-u", USER])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, input.unwrap_or_default().as_bytes()).unwrap();
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "crontab {args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let original = "# mine\nMAILTO=\"\"\n*/5 *  * * *\tdate +\\%s >>/tmp/x 2>&1\n\n@weekly echo 'weekly'  # trailing\n";
    crontab(&["-"], Some(original));

    let site = Site::new("keep-last: 3");
    let chown = Command::new("chown")
        .args(["-R", &format!("{USER}:{USER}")])
        .arg(site.path())
        .status()
        .unwrap();
    assert!(chown.success());
    let mut binary = PathBuf::from(env!("CARGO_BIN_EXE_backup"));
    let reachable = Command::new("runuser")
        .args(["-u", USER, "--", "test", "-x"])
        .arg(&binary)
        .status()
        .unwrap();
    if !reachable.success() {
        let copy = site.path().join("backup-binary");
        std::fs::copy(&binary, &copy).unwrap();
        binary = copy;
    }
    let apply = || -> Run {
        Command::new("runuser")
            .args(["-u", USER, "--"])
            .arg(&binary)
            .args(["-p", "policies", "apply", "--auto-approve"])
            .current_dir(site.path())
            .env("BACKUP_STATE_DIR", site.path().join(".state"))
            .env("NO_COLOR", "1")
            .env("TZ", "UTC")
            .output()
            .unwrap()
            .into()
    };
    let first = apply();
    assert_eq!(first.code, 0, "{first:?}");
    assert!(first.stdout.contains("crontab updated"), "{}", first.stdout);
    assert!(
        first
            .stdout
            .contains(&format!("the crontab of user {USER}")),
        "{}",
        first.stdout
    );
    let installed = crontab(&["-l"], None);
    assert!(installed.starts_with(original), "{installed}");
    let block = &installed[original.len()..];
    assert!(
        block.starts_with(backup::schedule::crontab::BEGIN_MARKER),
        "{block}"
    );
    assert!(block.contains("\n0 1 * * * '"), "{block}");
    assert!(
        block.contains(" apply --policy 'app' --auto-approve >>'"),
        "{block}"
    );
    assert_eq!(site.ids().len(), 1);

    let second = apply();
    assert_eq!(second.code, 0, "{second:?}");
    assert!(
        second.stdout.contains("crontab unchanged."),
        "{}",
        second.stdout
    );
    assert_eq!(crontab(&["-l"], None), installed);

    // The policy is renamed: its line is replaced, the user's own lines stay exactly.
    let policy = site.path().join("policies/app.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, text.replace("name: app\n", "name: renamed\n")).unwrap();
    let renamed = apply();
    assert_eq!(renamed.code, 0, "{renamed:?}");
    let installed = crontab(&["-l"], None);
    assert!(installed.starts_with(original), "{installed}");
    assert!(
        installed.contains(" apply --policy 'renamed' --auto-approve"),
        "{installed}"
    );
    assert!(!installed.contains("'app'"), "{installed}");
    // A policy file with an error leaves the block alone, so no policy loses its line.
    std::fs::write(
        site.path().join("policies/broken.yaml"),
        "apiVersion: backup/v1\nkind: Nope\n",
    )
    .unwrap();
    let broken = apply();
    assert!(
        broken
            .stdout
            .contains("not managed: left as is while the policy files have"),
        "{broken:?}"
    );
    assert_eq!(crontab(&["-l"], None), installed);
}

/// A backup of several objects (`parts`, as a physical backup is), sealed
/// in `store` under policy `app`: two gzip parts of `rows` lines each.
fn multi_part_backup(store: &Path, time: &str, rows: usize) -> String {
    use backup::inventory::metadata::{Artifact, hex};
    use sha2::Digest as _;
    let created_at = chrono::DateTime::parse_from_rfc3339(time).unwrap().to_utc();
    let id = backup::inventory::base_id(created_at);
    let folder = store.join("app");
    std::fs::create_dir_all(&folder).unwrap();
    let mut parts = Vec::new();
    for part in ["base", "16384"] {
        let plain: String = (0..rows).map(|row| format!("{part} row {row}\n")).collect();
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut encoder, plain.as_bytes()).unwrap();
        let stored = encoder.finish().unwrap();
        let name = backup::inventory::names::part(&id, part, ".gz");
        std::fs::write(folder.join(&name), &stored).unwrap();
        parts.push(Artifact {
            name,
            size: stored.len() as u64,
            sha256: hex(&sha2::Sha256::digest(&stored)),
            compression: "gzip".to_owned(),
            uncompressed_size: plain.len() as u64,
        });
    }
    let mut metadata = common::sidecar_for("app", &id, created_at, b"", Vec::new());
    metadata.artifact = parts[0].clone();
    metadata.parts = parts;
    metadata.seal().unwrap();
    std::fs::write(
        folder.join(backup::inventory::names::sidecar(&id)),
        serde_json::to_vec_pretty(&metadata).unwrap(),
    )
    .unwrap();
    id
}

/// The sidecar's `parts` are every object of a backup: listing checks each
/// part's size, `verify` each part's checksum and stream, a copy takes every
/// part before the sidecar, and a prune removes every part.
#[test]
fn every_part_of_a_multi_part_backup_is_checked_verified_copied_and_pruned() {
    let site = SqliteSite::new("keep-last: 1");
    let old = multi_part_backup(&site.path().join("store"), "2026-11-20T02:00:00Z", 2000);
    let listed = site.run(&["list", "--format", "json"]);
    assert_eq!(listed.code, 0, "{listed:?}");
    assert!(listed.stdout.contains("\"complete\""), "{}", listed.stdout);
    let verified = site.run(&["verify"]);
    assert_eq!(verified.code, 0, "{verified:?}");

    // Damage to the second part only: found by its checksum.
    let second = site
        .store()
        .join(backup::inventory::names::part(&old, "16384", ".gz"));
    let mut bytes = std::fs::read(&second).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&second, &bytes).unwrap();
    let verified = site.run(&["verify"]);
    assert_eq!(verified.code, 5, "{verified:?}");
    assert!(verified.stdout.contains("SHA-256"), "{}", verified.stdout);
    bytes[middle] ^= 0x01;
    std::fs::write(&second, &bytes).unwrap();

    // A second destination gets every part, each checked, then the sidecar.
    site.policy(
        "keep-last: 1",
        &[
            "    - local:\n        path: ../store\n",
            "    - local:\n        path: ../replica\n",
        ],
    );
    let applied = site.apply_at("2026-11-20T03:00:00Z", &["--only", "copy"]);
    assert_eq!(applied.code, 0, "{applied:?}");
    let replica = site.path().join("replica/app");
    for name in [
        backup::inventory::names::part(&old, "base", ".gz"),
        backup::inventory::names::part(&old, "16384", ".gz"),
        backup::inventory::names::sidecar(&old),
    ] {
        assert_eq!(
            std::fs::read(replica.join(&name)).unwrap(),
            std::fs::read(site.store().join(&name)).unwrap(),
            "{name}"
        );
    }

    // A missing part is missing data, on that destination only.
    std::fs::remove_file(replica.join(backup::inventory::names::part(&old, "16384", ".gz")))
        .unwrap();
    let listed = site.run(&["list", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let states: Vec<(String, String)> = report["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["destination"].as_str().unwrap().to_owned(),
                row["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        states.contains(&(
            site.path().join("replica").display().to_string(),
            "missing data".to_owned()
        )),
        "{states:?}"
    );

    // A newer backup, and keep-last 1 prunes the old one: every part goes.
    let applied = site.apply_at("2026-11-21T01:30:00Z", &[]);
    assert_eq!(applied.code, 0, "{applied:?}");
    for folder in [site.store(), replica] {
        let left: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .flatten()
            .map(|entry| entry.file_name().into_string().unwrap())
            .filter(|name| name.starts_with(&old))
            .collect();
        assert!(left.is_empty(), "{}: {left:?}", folder.display());
    }
}
