//! Point-in-time recovery end to end, against a real PostgreSQL server that
//! archives through `backup wal push` under `pgbench` load: base backups
//! (`backup run --physical`), `restore --target-time`, `--target-lsn` and
//! `--target immediate` into new data directories, each started and compared
//! with what the source had committed at the target (commit timestamps
//! make "committed at T" exact); and a deleted segment in the middle named
//! by `verify`, `status` and `restore --dry-run`, a restore past it refused.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::postgres::{Cluster, running_as_root};

const POLICY: &str = "app";

/// A cluster archiving into a local destination through `backup`, with the
/// policy, the destination and the folders restores go to, all reachable by
/// the server's user.
struct Site {
    folder: tempfile::TempDir,
    cluster: Cluster,
}

impl Site {
    fn new() -> Site {
        let folder = tempfile::Builder::new()
            .prefix("backup-pitr-test-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(folder.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["policies", "archive", "pgstate", "restored", ".tmp"] {
            std::fs::create_dir_all(folder.path().join(sub)).unwrap();
        }
        let binary = env!("CARGO_BIN_EXE_backup");
        let policies = folder.path().join("policies");
        let command = format!(
            "{binary} -q -p {} --state-dir {} wal push {POLICY} %p",
            policies.display(),
            folder.path().join("pgstate").display()
        );
        let cluster = Cluster::start_with(&[
            "wal_level = replica".to_owned(),
            "archive_mode = on".to_owned(),
            format!("archive_command = '{command}'"),
            "track_commit_timestamp = on".to_owned(),
            "max_wal_senders = 4".to_owned(),
        ]);
        let site = Site { folder, cluster };
        std::fs::write(
            policies.join("app.yaml"),
            format!(
                "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: {POLICY}\nspec:\n  source:\n    postgres:\n      host: {}\n      port: {}\n      user: postgres\n      database: postgres\n  schedule:\n    cron: \"0 1 * * *\"\n  retention:\n    keep-last: 3\n  physical:\n    schedule: {{ cron: \"0 2 * * 0\", timezone: UTC }}\n    retention: {{ keep-last: 2 }}\n  compression:\n    zstd: {{ level: 3 }}\n  destinations:\n    - local:\n        path: {}\n",
                site.cluster.socket_dir().display(),
                site.cluster.port,
                site.archive().display()
            ),
        )
        .unwrap();
        if running_as_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(site.folder.path())
                .status()
                .unwrap();
            assert!(status.success());
        }
        site
    }

    fn path(&self) -> &Path {
        self.folder.path()
    }

    fn archive(&self) -> PathBuf {
        self.path().join("archive")
    }

    fn sql(&self, sql: &str) -> String {
        self.cluster.sql("postgres", sql)
    }

    fn backup(&self, args: &[&str]) -> common::Run {
        let mut all = vec!["-p", "policies"];
        all.extend_from_slice(args);
        common::run(self.path(), &all)
    }

    /// Switches to a new WAL segment and waits until the one it ended is archived.
    fn switch_and_wait(&self) -> String {
        let switched = self.sql("SELECT pg_walfile_name(pg_switch_wal())");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let row = self.sql(
                "SELECT coalesce(last_archived_wal, '-') || '|' || failed_count FROM pg_stat_archiver",
            );
            let (last, failed) = row.split_once('|').unwrap();
            assert_eq!(failed, "0", "a push failed: {row}");
            if last >= switched.as_str() {
                return switched;
            }
            assert!(
                Instant::now() < deadline,
                "{switched} not archived in time: {row}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pgbench(&self, args: &[&str]) -> Command {
        let mut command = self.cluster.command("pgbench");
        command
            .args(args)
            .arg("-h")
            .arg(self.cluster.socket_dir())
            .args([
                "-p",
                &self.cluster.port.to_string(),
                "-U",
                "postgres",
                "postgres",
            ]);
        command
    }

    fn restore(&self, target: &[&str], into: &str) -> (common::Run, PathBuf) {
        let to = self.path().join("restored").join(into);
        let mut args = vec!["restore", POLICY];
        args.extend_from_slice(target);
        args.extend(["--to", to.to_str().unwrap(), "--yes"]);
        (self.backup(&args), to)
    }
}

/// A restored data directory, started on a free port for a look inside.
struct Restored {
    cluster_bin: PathBuf,
    data: PathBuf,
    port: u16,
    socket: PathBuf,
}

impl Restored {
    fn start(site: &Site, data: &Path) -> Restored {
        let port = common::postgres::free_port();
        let socket = site.path().join("restored");
        let restored = Restored {
            cluster_bin: site.cluster.bin("pg_ctl").parent().unwrap().to_owned(),
            data: data.to_owned(),
            port,
            socket,
        };
        let options = format!(
            "-p {port} -k {} -c listen_addresses='' -c archive_mode=off",
            restored.socket.display()
        );
        let log = data.with_extension("log");
        let output = restored
            .command("pg_ctl")
            .arg("-D")
            .arg(data)
            .args(["-o", &options, "-l"])
            .arg(&log)
            .args(["-w", "start"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "the restored cluster starts: {output:?} {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        restored
    }

    fn command(&self, program: &str) -> Command {
        if running_as_root() {
            let mut command = Command::new("runuser");
            command
                .args(["-u", "postgres", "--"])
                .arg(self.cluster_bin.join(program));
            command
        } else {
            Command::new(self.cluster_bin.join(program))
        }
    }

    fn sql(&self, sql: &str) -> String {
        let output = self
            .command("psql")
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.socket)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        assert!(output.status.success(), "{sql}: {output:?}");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

impl Drop for Restored {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// A `pgbench` run in the background, stopped on drop.
struct Load(Child);

impl Load {
    /// Stops (or continues) the pgbench process and its threads.
    fn pause(&self, paused: bool) {
        let signal = if paused { "-STOP" } else { "-CONT" };
        // As root, the child is `runuser`; pgbench is its child.
        let pids = Command::new("pgrep")
            .args(["-P", &self.0.id().to_string()])
            .output()
            .unwrap();
        let mut targets: Vec<String> = String::from_utf8_lossy(&pids.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        targets.push(self.0.id().to_string());
        let status = Command::new("kill")
            .arg(signal)
            .args(&targets)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Inserts batch `batch` (10 rows) in one transaction.
fn insert_batch(site: &Site, batch: u32) {
    site.sql(&format!(
        "INSERT INTO marks (batch, payload) SELECT {batch}, md5(g::text) FROM generate_series(1, 10) g"
    ));
}

#[test]
fn restores_to_a_time_an_lsn_and_the_end_of_a_base_backup_under_load_hold_exactly_what_was_committed_then()
 {
    let site = Site::new();
    site.sql("CREATE TABLE marks (id serial PRIMARY KEY, batch int NOT NULL, payload text)");
    let output = site.pgbench(&["-i", "-s", "1", "-q"]).output().unwrap();
    assert!(output.status.success(), "pgbench -i: {output:?}");
    // The first push creates the archive (as the server's user).
    site.switch_and_wait();
    insert_batch(&site, 0);

    let run = site.backup(&["run", POLICY, "--physical"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let sidecars = common::sidecars(&site.archive().join(POLICY));
    let base = sidecars
        .iter()
        .find(|sidecar| sidecar["format"] == "pg-basebackup")
        .expect("a base backup sidecar");
    let physical = &base["physical"];
    assert_eq!(
        physical["system_identifier"].as_str().unwrap(),
        site.sql("SELECT system_identifier FROM pg_control_system()")
    );
    assert_eq!(physical["timeline"], 1);
    let part = base["parts"][0]["name"].as_str().unwrap();
    assert!(part.ends_with(".base.tar.zst"), "{part}");

    // Load from pgbench while our own batches mark the targets.
    let load = Load(
        site.pgbench(&["-n", "-c", "2", "-j", "1", "-T", "60"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut time_target = String::new();
    let mut lsn_target = String::new();
    for batch in 1..=30 {
        insert_batch(&site, batch);
        if batch == 10 {
            // pgbench pauses around the target: commit timestamps are taken
            // just before the commit record is written, so two concurrent
            // commits a few microseconds either side of it could land in the
            // WAL in the other order, and "committed at T" would be unsharp.
            load.pause(true);
            std::thread::sleep(Duration::from_millis(200));
            time_target = site.sql(
                "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
            );
            std::thread::sleep(Duration::from_millis(200));
            load.pause(false);
        }
        if batch == 20 {
            lsn_target = site.sql("SELECT pg_current_wal_insert_lsn()");
        }
        if batch % 10 == 5 {
            site.switch_and_wait();
        }
    }
    drop(load);
    insert_batch(&site, 31);
    site.switch_and_wait();

    // What the source had committed at the time target, exactly.
    let committed_at = |table: &str| {
        site.sql(&format!(
            "SELECT count(*) FROM {table} WHERE pg_xact_commit_timestamp(xmin) <= '{time_target}'::timestamptz"
        ))
    };
    let marks_at_time = site.sql(&format!(
        "SELECT string_agg(id || ':' || batch || ':' || payload, ',' ORDER BY id) FROM marks WHERE pg_xact_commit_timestamp(xmin) <= '{time_target}'::timestamptz"
    ));
    let history_at_time = committed_at("pgbench_history");
    assert!(
        history_at_time.parse::<u64>().unwrap() > 0,
        "pgbench ran before the target"
    );

    // A dry run says what it would do and changes nothing.
    let (dry, to) = {
        let to = site.path().join("restored").join("by-time");
        let run = site.backup(&[
            "restore",
            POLICY,
            "--target-time",
            &time_target,
            "--to",
            to.to_str().unwrap(),
            "--dry-run",
        ]);
        (run, to)
    };
    assert_eq!(dry.code, 0, "{}{}", dry.stdout, dry.stderr);
    assert!(
        dry.stdout
            .contains("WAL archive:  complete for this target"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains(physical["start_wal"].as_str().unwrap()),
        "{}",
        dry.stdout
    );
    assert!(!to.exists(), "a dry run creates nothing");

    let (run, to) = site.restore(&["--target-time", &time_target], "by-time");
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("recovery stopping before commit"),
        "{}",
        run.stdout
    );
    {
        let restored = Restored::start(&site, &to);
        assert_eq!(restored.sql("SELECT pg_is_in_recovery()"), "f");
        assert_eq!(
            restored.sql("SELECT string_agg(id || ':' || batch || ':' || payload, ',' ORDER BY id) FROM marks"),
            marks_at_time,
            "the restored marks are those committed at {time_target}"
        );
        assert_eq!(
            restored.sql("SELECT count(*) FROM pgbench_history"),
            history_at_time
        );
        assert_eq!(restored.sql("SELECT max(batch) FROM marks"), "10");
    }

    let (run, to) = site.restore(&["--target-lsn", &lsn_target], "by-lsn");
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    {
        let restored = Restored::start(&site, &to);
        assert_eq!(restored.sql("SELECT max(batch) FROM marks"), "20");
        assert_eq!(restored.sql("SELECT count(*) FROM marks"), "210");
    }

    let (run, to) = site.restore(&["--target", "immediate"], "immediate");
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    {
        let restored = Restored::start(&site, &to);
        // Only batch 0 was committed before the base backup, none during it.
        assert_eq!(
            restored.sql("SELECT count(*), max(batch) FROM marks"),
            "10|0"
        );
    }

    // Restoring over an existing data directory moves it aside first.
    let (run, to) = site.restore(&["--target", "immediate"], "immediate");
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(to.join("PG_VERSION").is_file());
    let aside: Vec<_> = std::fs::read_dir(site.path().join("restored"))
        .unwrap()
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("immediate.pre-restore-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "the replaced data directory is kept aside");

    // The archive is continuous, and verify says so.
    let verify = site.backup(&["verify"]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
    assert!(verify.stdout.contains("no gap"), "{}", verify.stdout);
}

#[test]
fn a_segment_missing_in_the_middle_is_named_by_verify_status_and_dry_run_and_a_restore_past_it_is_refused()
 {
    let site = Site::new();
    site.sql("CREATE TABLE marks (id serial PRIMARY KEY, batch int NOT NULL, payload text)");
    site.switch_and_wait();
    let run = site.backup(&["run", POLICY, "--physical"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let mut segments = Vec::new();
    for batch in 1..=4 {
        insert_batch(&site, batch);
        segments.push(site.switch_and_wait());
    }
    // Before the damage: complete.
    let verify = site.backup(&["verify"]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);

    // Delete the second of the segments written after the base backup.
    let missing = &segments[1];
    let wal = site.archive().join(POLICY).join("wal");
    let object = std::fs::read_dir(&wal)
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with(&format!("{missing}.")) && !name.contains(".backup.")
        })
        .expect("the segment is archived");
    std::fs::remove_file(&object).unwrap();
    let named = format!("segment {missing}");

    let verify = site.backup(&["verify"]);
    assert_eq!(verify.code, 5, "{}{}", verify.stdout, verify.stderr);
    assert!(
        verify.stdout.contains(&format!("WAL gap: missing {named}")),
        "{}",
        verify.stdout
    );

    let status = site.backup(&["status", "--no-crontab"]);
    assert_eq!(
        status.code, 2,
        "critical: {}{}",
        status.stdout, status.stderr
    );
    assert!(
        status.stdout.contains(&format!("missing {named}")),
        "{}",
        status.stdout
    );
    let json = site.backup(&["status", "--no-crontab", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let gaps = &report["policies"][0]["physical"]["gaps"];
    assert_eq!(gaps[0]["first"], missing.as_str(), "{gaps}");
    assert_eq!(gaps[0]["count"], 1);

    let now = site.sql(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    let to = site.path().join("restored").join("past-the-gap");
    let dry = site.backup(&[
        "restore",
        POLICY,
        "--target-time",
        &now,
        "--to",
        to.to_str().unwrap(),
        "--dry-run",
    ]);
    assert_eq!(dry.code, 5, "{}{}", dry.stdout, dry.stderr);
    assert!(
        dry.stdout.contains(&format!("INCOMPLETE: missing {named}")),
        "{}",
        dry.stdout
    );
    let (refused, to) = site.restore(&["--target-time", &now], "past-the-gap");
    assert_eq!(refused.code, 5, "{}{}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.contains(&format!("misses {named}")),
        "{}",
        refused.stderr
    );
    assert!(!to.exists(), "a refused restore creates nothing");

    // The end of the base backup lies before the gap: still restorable.
    let dry = site.backup(&[
        "restore",
        POLICY,
        "--target",
        "immediate",
        "--to",
        to.to_str().unwrap(),
        "--dry-run",
    ]);
    assert_eq!(dry.code, 0, "{}{}", dry.stdout, dry.stderr);

    // A time without a zone is refused, not guessed.
    let naive = site.backup(&[
        "restore",
        POLICY,
        "--target-time",
        "2026-12-01 10:00:00",
        "--to",
        to.to_str().unwrap(),
        "--dry-run",
    ]);
    assert_eq!(naive.code, 64, "{}{}", naive.stdout, naive.stderr);
    assert!(
        naive.stderr.contains("has no time zone"),
        "{}",
        naive.stderr
    );
}

#[test]
fn a_base_backup_of_a_server_that_does_not_archive_is_refused_and_leaves_nothing() {
    let cluster = Cluster::start();
    let folder = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(folder.path().join("policies")).unwrap();
    let store = folder.path().join("store");
    std::fs::write(
        folder.path().join("policies").join("app.yaml"),
        format!(
            "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: {POLICY}\nspec:\n  source:\n    postgres:\n      host: {}\n      port: {}\n      user: postgres\n      database: postgres\n  schedule:\n    cron: \"0 1 * * *\"\n  retention:\n    keep-last: 3\n  physical:\n    schedule: {{ cron: \"0 2 * * 0\" }}\n    retention: {{ keep-last: 2 }}\n  destinations:\n    - local:\n        path: {}\n",
            cluster.socket_dir().display(),
            cluster.port,
            store.display()
        ),
    )
    .unwrap();
    let run = common::run(
        folder.path(),
        &["-p", "policies", "run", POLICY, "--physical"],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("archive_mode is off"), "{}", run.stderr);
    let left: Vec<_> = common::files_under(&store)
        .into_iter()
        .filter(|(path, _)| !path.to_string_lossy().contains(".claim-"))
        .collect();
    assert!(
        left.is_empty(),
        "nothing of a refused base backup is visible: {left:?}"
    );
}

#[test]
fn physical_on_another_source_is_refused_at_its_position() {
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(
        folder.path().join("app.yaml"),
        "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: app\nspec:\n  source:\n    sqlite:\n      path: app.db\n  schedule:\n    cron: \"@daily\"\n  retention:\n    keep-last: 3\n  physical:\n    schedule: { cron: \"@weekly\" }\n    retention: { keep-last: 2 }\n    pitr-window: 7w\n  destinations:\n    - local:\n        path: store\n",
    )
    .unwrap();
    let run = common::run(folder.path(), &["validate", "app.yaml"]);
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(
            "`physical` (base backups and WAL archiving) is for a `postgres` source only"
        ),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("app.yaml:13:3"), "{}", run.stdout);
    assert!(
        run.stdout.contains("pitr-window"),
        "a malformed window is named too: {}",
        run.stdout
    );
}

#[test]
fn the_crontab_runs_apply_at_the_base_backups_ticks_too() {
    let folder = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(folder.path().join("policies")).unwrap();
    std::fs::write(
        folder.path().join("policies").join("app.yaml"),
        "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: app\nspec:\n  source:\n    postgres:\n      host: /nonexistent\n      database: app\n  schedule:\n    cron: \"15 1 * * *\"\n  retention:\n    keep-last: 3\n  physical:\n    schedule: { cron: \"0 2 * * 0\" }\n    retention: { keep-last: 2 }\n  destinations:\n    - local:\n        path: store\n",
    )
    .unwrap();
    let crontab = folder.path().join("backup-cron");
    let plan = common::run(
        folder.path(),
        &[
            "-p",
            "policies",
            "plan",
            "--crontab-file",
            crontab.to_str().unwrap(),
        ],
    );
    assert!(
        plan.code == 0 || plan.code == 2,
        "{}{}",
        plan.stdout,
        plan.stderr
    );
    assert!(
        plan.stdout.contains("+# app: 15 1 * * * (UTC)"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("+# app base backups: 0 2 * * 0 (UTC)"),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("+0 2 * * 0 "), "{}", plan.stdout);
    assert!(plan.stdout.contains("+ base backup"), "{}", plan.stdout);
}
