//! systemd as the scheduler: units checked by the real `systemd-analyze`
//! (Debian's `systemd` package; `verify` and `calendar` work without systemd
//! running as PID 1), the timers' ticks compared with the schedule's own over
//! a year, and plan, apply, unschedule and render on a unit folder.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use backup::schedule::Schedule;
use backup::schedule::systemd::{self, Invocation, Options, Timer};
use chrono::{DateTime, TimeDelta, TimeZone as _, Utc};
use common::sqlite_site::SqliteSite;

fn systemd_analyze(arguments: &[&str]) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(arguments)
        .env("TZ", "UTC")
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("systemd-analyze is installed (Debian: apt-get install systemd)")
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

/// Every instant in [from, to) at which systemd fires `values` (OnCalendar=
/// values), as `systemd-analyze calendar` computes them.
fn systemd_ticks(
    values: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bound: usize,
) -> BTreeSet<DateTime<Utc>> {
    let mut ticks = BTreeSet::new();
    for value in values {
        let base = (from - TimeDelta::seconds(1))
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string();
        let output = systemd_analyze(&[
            "calendar",
            &format!("--base-time={base}"),
            &format!("--iterations={bound}"),
            value,
        ]);
        assert!(output.status.success(), "{value}: {output:?}");
        let text = String::from_utf8(output.stdout).unwrap();
        for line in text.lines() {
            let line = line.trim();
            let Some(rest) = line.strip_prefix("Next elapse: ").or_else(|| {
                line.split_once(": ")
                    .filter(|(label, _)| label.starts_with("Iter. #"))
                    .map(|(_, rest)| rest)
            }) else {
                continue;
            };
            // `Thu 2026-01-01 07:30:00 UTC`
            let stamp = rest
                .split_whitespace()
                .skip(1)
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            let tick = chrono::NaiveDateTime::parse_from_str(&stamp, "%Y-%m-%d %H:%M:%S")
                .unwrap_or_else(|error| panic!("{line}: {error}"))
                .and_utc();
            if tick < to {
                ticks.insert(tick);
            }
        }
    }
    ticks
}

fn our_ticks(
    schedule: &Schedule,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> BTreeSet<DateTime<Utc>> {
    schedule
        .ticks_between(from - TimeDelta::seconds(1), to)
        .collect()
}

/// The first three days of [from, to), and two days either side of each
/// change of `timezone`'s offset in it.
fn windows(
    timezone: chrono_tz::Tz,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    use chrono::Offset as _;
    let offset = |at: DateTime<Utc>| {
        timezone
            .offset_from_utc_datetime(&at.naive_utc())
            .fix()
            .local_minus_utc()
    };
    let mut windows = vec![(from, from + TimeDelta::days(3))];
    let mut hour = from;
    while hour < to {
        if offset(hour) != offset(hour + TimeDelta::hours(1)) {
            windows.push((hour - TimeDelta::days(2), hour + TimeDelta::days(2)));
        }
        hour += TimeDelta::hours(1);
    }
    windows
}

/// Over 2026, in zones with and without daylight saving time, systemd fires
/// at exactly the schedule's ticks: both day fields restricted become two
/// lines (systemd would AND them, cron ORs them), and the ticks a clock
/// change moves or repeats get UTC lines for the weekday and week of the
/// month of the change, which in these zones is the change's day only.
#[test]
fn timers_fire_at_every_tick_of_the_schedule_over_a_year() {
    let expressions = [
        "30 2 * * *",
        "0 1 * * *",
        "0 * * * *",
        "*/15 * * * *",
        "15,45 1-3 * * *",
        "*/20 2 * * *",
        "0 */2 * * *",
        "30 2,14 * * *",
        "0 3 * * 0",
        "0 4 1,15 * mon",
        "0 0 */2 * 1",
        "5 4 * jan,jul mon-fri",
        "0 0 29 2 *",
        "@daily",
        "@hourly",
        "@weekly",
        "@monthly",
        "@yearly",
    ];
    let now = at("2026-01-01T00:00:00Z");
    let mut failures = Vec::new();
    let mut report = Vec::new();
    for zone in ["Europe/Berlin", "America/New_York", "UTC"] {
        for expression in expressions {
            let schedule = Schedule::parse(expression, zone).unwrap();
            let calendar = systemd::calendar(&schedule, now).unwrap();
            let timezone: chrono_tz::Tz = zone.parse().unwrap();
            let from = timezone
                .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                .unwrap()
                .to_utc();
            let to = timezone
                .with_ymd_and_hms(2027, 1, 1, 0, 0, 0)
                .unwrap()
                .to_utc();
            // systemd-analyze takes minutes for a year of quarter hours:
            // frequent schedules are compared over the first days of the year
            // and the days around each clock change, where they could differ.
            let yearly = our_ticks(&schedule, from, to);
            let windows = if yearly.len() <= 800 {
                vec![(from, to)]
            } else {
                windows(timezone, from, to)
            };
            let mut ours = BTreeSet::new();
            let mut fired = BTreeSet::new();
            for (start, end) in windows {
                let expected = our_ticks(&schedule, start, end);
                fired.extend(systemd_ticks(
                    &calendar.all(),
                    start,
                    end,
                    expected.len() + 400,
                ));
                ours.extend(expected);
            }
            let missed: Vec<_> = ours.difference(&fired).collect();
            let extra: Vec<_> = fired.difference(&ours).collect();
            if !missed.is_empty() {
                failures.push(format!(
                    "{expression} ({zone}) {:?}: systemd misses {missed:?}",
                    calendar.all()
                ));
            }
            report.push(format!(
                "{expression} ({zone}): {} ticks, {} extra {:?}",
                ours.len(),
                extra.len(),
                extra.iter().take(3).collect::<Vec<_>>()
            ));
            if !extra.is_empty() {
                failures.push(format!(
                    "{expression} ({zone}): systemd also fires at {extra:?}"
                ));
            }
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The spring-forward gap and the autumn repeat, pinned: in Berlin, `30 2 * * *`
/// runs at 03:00 CEST on 2026-03-29 (01:00 UTC) and once on 2026-10-25
/// (00:30 UTC); `0 * * * *` runs twice in the repeated hour.
#[test]
fn daylight_saving_ticks_get_their_own_lines() {
    let now = at("2026-01-01T00:00:00Z");
    let fixed = Schedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
    let calendar = systemd::calendar(&fixed, now).unwrap();
    assert_eq!(calendar.lines, ["*-*-* 02:30:00 Europe/Berlin"]);
    assert_eq!(calendar.extra, ["Sun *-03-25..31 01:00:00 UTC"]);
    let fired = systemd_ticks(
        &calendar.all(),
        at("2026-03-28T00:00:00Z"),
        at("2026-03-30T00:00:00Z"),
        10,
    );
    assert!(fired.contains(&at("2026-03-29T01:00:00Z")), "{fired:?}");
    let fired = systemd_ticks(
        &calendar.all(),
        at("2026-10-24T12:00:00Z"),
        at("2026-10-25T12:00:00Z"),
        10,
    );
    assert_eq!(fired, BTreeSet::from([at("2026-10-25T00:30:00Z")]));
    let hourly = Schedule::parse("0 * * * *", "Europe/Berlin").unwrap();
    let calendar = systemd::calendar(&hourly, now).unwrap();
    assert_eq!(calendar.extra, ["Sun *-10-25..31 01:00:00 UTC"]);
    let fired = systemd_ticks(
        &calendar.all(),
        at("2026-10-24T23:30:00Z"),
        at("2026-10-25T03:30:00Z"),
        10,
    );
    assert_eq!(
        fired,
        BTreeSet::from([
            at("2026-10-25T00:00:00Z"),
            at("2026-10-25T01:00:00Z"),
            at("2026-10-25T02:00:00Z"),
            at("2026-10-25T03:00:00Z"),
        ])
    );
}

/// A folder whose name holds what ExecStart= quoting must survive.
fn awkward_folder(root: &Path) -> PathBuf {
    let folder = root.join("opt/back up/it's 100% \"$HOME\" \\ ok");
    std::fs::create_dir_all(&folder).unwrap();
    folder
}

#[test]
fn rendered_units_pass_systemd_analyze_verify() {
    let work = tempfile::tempdir().unwrap();
    let bin = awkward_folder(work.path());
    // verify checks that ExecStart='s program exists: it must unquote to this
    // path (systemd refuses quotes and backslashes in a program's path).
    let programs = work.path().join("opt/back up/100% $HOME");
    std::fs::create_dir_all(&programs).unwrap();
    let binary = programs.join("backup");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_backup"), &binary).unwrap();
    let daily = Schedule::parse("0 1 * * *", "Europe/Berlin").unwrap();
    let weekly = Schedule::parse("0 2 * * 0", "UTC").unwrap();
    let both = Schedule::parse("0 4 1,15 * mon", "America/New_York").unwrap();
    let policies = work.path().join("policies");
    let file = policies.join("app.yaml");
    let timers = [
        Timer {
            policy: "app-db",
            file: &file,
            schedule: &daily,
            base_backups: Some(&weekly),
        },
        Timer {
            policy: "reports",
            file: &file,
            schedule: &both,
            base_backups: None,
        },
    ];
    let invocation = Invocation {
        binary: binary.clone(),
        policy_paths: vec![policies.clone(), bin.join("extra.yaml")],
        state_dir: bin.join("state"),
    };
    let options = Options {
        randomized_delay: Some(300),
        user_manager: false,
    };
    let files =
        systemd::render(&timers, &invocation, &options, at("2026-01-01T00:00:00Z")).unwrap();
    let names: Vec<&str> = files.iter().map(|file| file.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "backup-app-db.base.timer",
            "backup-app-db.service",
            "backup-app-db.timer",
            "backup-reports.service",
            "backup-reports.timer",
            "backup-status.service",
            "backup-status.timer",
        ]
    );
    let units = work.path().join("units");
    std::fs::create_dir_all(&units).unwrap();
    let mut paths = Vec::new();
    for file in &files {
        assert!(
            file.text.starts_with(backup::schedule::MANAGED_MARKER),
            "{}",
            file.text
        );
        std::fs::write(units.join(&file.name), &file.text).unwrap();
        paths.push(units.join(&file.name).display().to_string());
    }
    let mut arguments = vec!["verify", "--man=no", "--generators=no"];
    arguments.extend(paths.iter().map(String::as_str));
    let output = systemd_analyze(&arguments);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "{output:?}\n{stderr}"
    );
    let service = &files[1].text;
    insta::assert_snapshot!(service.replace(&work.path().display().to_string(), "/work"), @r#"
    # Managed by backup from policy app-db in /work/policies/app.yaml: written by `backup apply` or `backup render`; edits here are overwritten.
    [Unit]
    Description=backup: apply policy app-db
    After=network-online.target
    Wants=network-online.target

    [Service]
    Type=oneshot
    ExecStart="/work/opt/back up/100%% $HOME/backup" --policies /work/policies --policies "/work/opt/back up/it's 100%% \"$$HOME\" \\ ok/extra.yaml" --state-dir "/work/opt/back up/it's 100%% \"$$HOME\" \\ ok/state" apply --policy app-db --auto-approve --scheduler systemd
    StandardOutput=journal
    StandardError=journal
    "#);
    let timer = &files[2].text;
    insta::assert_snapshot!(timer.replace(&work.path().display().to_string(), "/work"), @r"
    # Managed by backup from policy app-db in /work/policies/app.yaml: written by `backup apply` or `backup render`; edits here are overwritten.
    [Unit]
    Description=backup: policy app-db on its schedule

    [Timer]
    # 0 1 * * * (Europe/Berlin)
    OnCalendar=*-*-* 01:00:00 Europe/Berlin
    Persistent=true
    RandomizedDelaySec=300

    [Install]
    WantedBy=timers.target
    ");

    // A program that is not there is what verify reports: the check can fail.
    let mut wrong = files[1].clone();
    wrong.text = wrong.text.replace(
        &programs.display().to_string().replace('%', "%%"),
        "/nonexistent",
    );
    assert_ne!(wrong.text, files[1].text);
    std::fs::write(units.join(&wrong.name), &wrong.text).unwrap();
    let output = systemd_analyze(&["verify", "--man=no", "--generators=no", &paths[1]]);
    assert!(
        !output.status.success() || !output.stderr.is_empty(),
        "{output:?}"
    );
}

/// A site whose settings make systemd this host's scheduler, with the unit folder `units/`.
fn systemd_site() -> SqliteSite {
    let site = SqliteSite::new("keep-last: 3");
    std::fs::write(
        site.path().join("policies/settings.yaml"),
        "apiVersion: backup/v1\nkind: Settings\nspec:\n  scheduler: systemd\n  systemd:\n    unit-dir: ../units\n    randomized-delay: 1m\n",
    )
    .unwrap();
    site
}

fn unit_names(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn plan_apply_and_unschedule_manage_the_units_and_leave_other_files_alone() {
    let site = systemd_site();
    let units = site.path().join("units");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(units.join("other.timer"), "[Timer]\nOnCalendar=daily\n").unwrap();

    let plan = site.run(&["plan", "--now", "2026-11-25T03:00:00Z"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(
        plan.stdout.contains("+ create backup-app.timer in "),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("+OnCalendar=*-*-* 01:00:00 UTC"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("crontab\n  not managed: this host's scheduler is systemd"),
        "{}",
        plan.stdout
    );
    let json = site.run(&["plan", "--now", "2026-11-25T03:00:00Z", "--format", "json"]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["scheduler"]["kind"], "systemd");
    assert_eq!(value["scheduler"]["state"], "update");
    assert_eq!(value["scheduler"]["target"], units.display().to_string());
    assert_eq!(value["crontab"]["state"], "unmanaged");
    let markdown = site.run(&[
        "plan",
        "--now",
        "2026-11-25T03:00:00Z",
        "--format",
        "markdown",
    ]);
    assert!(
        markdown
            .stdout
            .contains(&format!("### systemd ({})", units.display()))
            && markdown.stdout.contains("+OnCalendar=*-*-* 01:00:00 UTC"),
        "{}",
        markdown.stdout
    );

    let apply = site.run(&["apply", "--auto-approve", "--now", "2026-11-25T03:00:00Z"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(
        apply
            .stdout
            .contains("systemd is not running as PID 1 here"),
        "{}",
        apply.stdout
    );
    assert_eq!(
        unit_names(&units),
        [
            "backup-app.service",
            "backup-app.timer",
            "backup-status.service",
            "backup-status.timer",
            "other.timer"
        ]
    );
    let timer = std::fs::read_to_string(units.join("backup-app.timer")).unwrap();
    assert!(timer.contains("RandomizedDelaySec=60\n"), "{timer}");
    // Up to date now; the backup was taken too.
    let again = site.run(&[
        "plan",
        "--now",
        "2026-11-25T03:00:00Z",
        "--detailed-exitcode",
    ]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        again
            .stdout
            .contains("The backups and the systemd units match the policies."),
        "{}",
        again.stdout
    );

    // A changed schedule is a diff of the timer.
    let policy = site.path().join("policies/app.yaml");
    let text = std::fs::read_to_string(&policy)
        .unwrap()
        .replace("0 1 * * *", "30 4 * * *");
    std::fs::write(&policy, text).unwrap();
    let changed = site.run(&["plan", "--now", "2026-11-25T03:00:00Z", "--only", "systemd"]);
    assert!(
        changed.stdout.contains("~ change backup-app.timer in "),
        "{}",
        changed.stdout
    );
    assert!(
        changed.stdout.contains("-OnCalendar=*-*-* 01:00:00 UTC"),
        "{}",
        changed.stdout
    );
    assert!(
        changed.stdout.contains("+OnCalendar=*-*-* 04:30:00 UTC"),
        "{}",
        changed.stdout
    );

    // unschedule removes ours only.
    let removed = site.run(&["unschedule", "--yes"]);
    assert_eq!(removed.code, 0, "{removed:?}");
    assert_eq!(unit_names(&units), ["other.timer"]);
    assert_eq!(
        std::fs::read_to_string(units.join("other.timer")).unwrap(),
        "[Timer]\nOnCalendar=daily\n"
    );
}

#[test]
fn render_writes_the_units_apply_would_and_keeps_foreign_files() {
    let site = systemd_site();
    let out = site.path().join("rendered");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("README"), "mine\n").unwrap();
    let rendered = site.run(&["render", "systemd", "--out", "rendered"]);
    assert_eq!(rendered.code, 0, "{rendered:?}");
    assert_eq!(
        unit_names(&out),
        [
            "README",
            "backup-app.service",
            "backup-app.timer",
            "backup-status.service",
            "backup-status.timer"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(out.join("README")).unwrap(),
        "mine\n"
    );
    // The same files apply would install.
    let json = site.run(&["plan", "--format", "json", "--only", "systemd"]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    for file in value["scheduler"]["files"].as_array().unwrap() {
        let name = file["name"].as_str().unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join(name)).unwrap(),
            file["text"].as_str().unwrap(),
            "{name}"
        );
    }
    // A file of someone else's under a unit's name is never overwritten.
    std::fs::write(out.join("backup-app.timer"), "[Timer]\n").unwrap();
    let refused = site.run(&["render", "systemd", "--out", "rendered"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("is not managed by backup"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        std::fs::read_to_string(out.join("backup-app.timer")).unwrap(),
        "[Timer]\n"
    );
}

#[test]
fn validate_refuses_a_unit_folder_it_cannot_write_when_this_host_runs_systemd() {
    let site = systemd_site();
    std::fs::write(
        site.path().join("policies/settings.yaml"),
        "apiVersion: backup/v1\nkind: Settings\nspec:\n  hosts:\n    unit-host:\n      scheduler: systemd\n  systemd:\n    unit-dir: /proc/backup-units\n",
    )
    .unwrap();
    let other = site.run(&["--host", "elsewhere", "validate"]);
    assert_eq!(other.code, 0, "{other:?}");
    let here = site.run(&["--host", "unit-host", "validate", "--color", "never"]);
    assert_eq!(here.code, 3, "{here:?}");
    insta::assert_snapshot!(here.stdout, @r"
    error: this host (unit-host) runs systemd, but the unit folder /proc/backup-units is not writable: cannot write in `/proc`: No such file or directory (os error 2)
     --> policies/settings.yaml:8:15
      |
    8 |     unit-dir: /proc/backup-units
      |               ^^^^^^^^^^^^^^^^^^
      = hint: run as root for /etc/systemd/system, or set `systemd.unit-dir` to a folder this user may write

    Checked 2 files: 1 policy valid (app), 1 error, 0 warnings.
    ");
}

#[test]
fn kubernetes_needs_a_folder_and_leaves_the_crontab_alone() {
    let site = SqliteSite::new("keep-last: 3");
    let plan = site.run(&[
        "plan",
        "--scheduler",
        "kubernetes",
        "--now",
        "2026-11-25T03:00:00Z",
    ]);
    assert_eq!(plan.code, 1, "{plan:?}");
    assert!(
        plan.stdout.contains(
            "kubernetes\n  error: no folder for the Kubernetes manifests: set `kubernetes.out`"
        ),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains(
            "not managed: this host's scheduler is kubernetes (--scheduler or BACKUP_SCHEDULER)"
        ),
        "{}",
        plan.stdout
    );
}

#[test]
fn a_saved_plan_is_refused_once_the_unit_folder_changed() {
    let site = systemd_site();
    let units = site.path().join("units");
    let saved = site.run(&["plan", "--out", "plan.json", "--only", "systemd"]);
    assert_eq!(saved.code, 0, "{saved:?}");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(
        units.join("backup-old.timer"),
        format!(
            "{} from an older run\n[Timer]\n",
            backup::schedule::MANAGED_MARKER
        ),
    )
    .unwrap();
    let refused = site.run(&["apply", "plan.json", "--auto-approve"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("changed since the plan was saved"),
        "{}",
        refused.stderr
    );
    assert_eq!(unit_names(&units), ["backup-old.timer"]);
    // Planned again, the stale unit of ours is removed with the rest written.
    let saved = site.run(&["plan", "--out", "plan.json", "--only", "systemd"]);
    assert!(
        saved.stdout.contains("- remove backup-old.timer from "),
        "{}",
        saved.stdout
    );
    let applied = site.run(&["apply", "plan.json", "--auto-approve"]);
    assert_eq!(applied.code, 0, "{applied:?}");
    assert_eq!(
        unit_names(&units),
        [
            "backup-app.service",
            "backup-app.timer",
            "backup-status.service",
            "backup-status.timer"
        ]
    );
}

#[test]
fn unschedule_with_broken_settings_touches_nothing() {
    let site = systemd_site();
    let units = site.path().join("units");
    let applied = site.run(&["apply", "--auto-approve", "--only", "systemd"]);
    assert_eq!(applied.code, 0, "{applied:?}");
    std::fs::write(
        site.path().join("policies/settings.yaml"),
        "apiVersion: backup/v1\nkind: Settings\nspec:\n  scheduler: systemdd\n",
    )
    .unwrap();
    // Not knowing the scheduler, it must not fall back to the crontab.
    let refused = site.run(&["unschedule", "--yes"]);
    assert_eq!(refused.code, 3, "{refused:?}");
    assert!(
        refused.stderr.contains("pass --scheduler"),
        "{}",
        refused.stderr
    );
    assert_eq!(unit_names(&units).len(), 4);
}

/// The same folder machinery for the Kubernetes renderer's manifests.
#[test]
fn kubernetes_manifests_are_planned_applied_and_unscheduled_in_the_out_folder() {
    let site = SqliteSite::new("keep-last: 3");
    std::fs::write(
        site.path().join("policies/settings.yaml"),
        format!(
            "apiVersion: backup/v1\nkind: Settings\nspec:\n  scheduler: kubernetes\n  kubernetes:\n    out: ../deploy\n    namespace: backups\n    volumes:\n      {}: site\n",
            site.path().display()
        ),
    )
    .unwrap();
    let deploy = site.path().join("deploy");
    std::fs::create_dir_all(&deploy).unwrap();
    std::fs::write(deploy.join("namespace.yaml"), "kind: Namespace\n").unwrap();
    let plan = site.run(&["plan", "--only", "kubernetes"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(
        plan.stdout.contains("+ create kustomization.yaml in "),
        "{}",
        plan.stdout
    );
    let applied = site.run(&["apply", "--only", "kubernetes", "--auto-approve"]);
    assert_eq!(applied.code, 0, "{applied:?}");
    let names = unit_names(&deploy);
    assert!(
        names.contains(&"cronjob-backup-app.yaml".to_owned()),
        "{names:?}"
    );
    let again = site.run(&["plan", "--only", "kubernetes", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{again:?}");
    let removed = site.run(&["unschedule", "--yes"]);
    assert_eq!(removed.code, 0, "{removed:?}");
    assert_eq!(unit_names(&deploy), ["namespace.yaml"]);
}

/// `metadata.hosts` label selectors read the host's labels from the settings,
/// and a host's units cover only the policies that run there.
#[test]
fn label_selectors_read_the_settings_and_units_hold_this_hosts_policies() {
    let site = systemd_site();
    std::fs::write(
        site.path().join("policies/settings.yaml"),
        "apiVersion: backup/v1\nkind: Settings\nspec:\n  scheduler: systemd\n  hosts:\n    \"db-*\": { labels: { role: replica } }\n    db-1: { labels: { role: primary } }\n  systemd:\n    unit-dir: ../units\n",
    )
    .unwrap();
    let policy = site.path().join("policies/app.yaml");
    let text = std::fs::read_to_string(&policy)
        .unwrap()
        .replace("  name: app\n", "  name: app\n  hosts: [role=primary]\n");
    std::fs::write(&policy, text).unwrap();
    let units = |host: &str| {
        let plan = site.run(&[
            "--host", host, "plan", "--format", "json", "--only", "systemd",
        ]);
        assert!(matches!(plan.code, 0 | 2), "{plan:?}");
        let value: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
        value["scheduler"]["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|file| file["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        units("db-1"),
        [
            "backup-app.service",
            "backup-app.timer",
            "backup-status.service",
            "backup-status.timer"
        ]
    );
    // A replica runs no policy here: no units at all.
    assert!(units("db-2").is_empty(), "{:?}", units("db-2"));
}
