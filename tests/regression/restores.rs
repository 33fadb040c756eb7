//! Regression tests: restores and restore drills. One throwaway PostgreSQL
//! cluster serves the whole file (each test has databases of its own), and is
//! stopped when the test binary exits.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use super::common::postgres::{Cluster, PASSWORD};
use super::common::{Run, backup, write_policy};

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

extern "C" fn stop_cluster() {
    if let Some(cluster) = CLUSTER.get() {
        cluster.stop();
        let _ = std::fs::remove_dir_all(cluster.socket_dir());
    }
}

/// The file's cluster, started on first use and stopped at exit.
fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let cluster = Cluster::start();
        // SAFETY: `stop_cluster` is a plain function that only reads a static.
        unsafe { libc::atexit(stop_cluster) };
        cluster
    })
}

/// A work folder with policy `app.yaml` for database `database` (backups in `store/`).
fn policy(database: &str, options: &str) -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    let source = format!(
        "    postgres:\n      url: {}\n      password: ${{env:BACKUP_TEST_PGPASSWORD}}{options}",
        cluster().url(database)
    );
    write_policy(work.path(), "app", &source, &work.path().join("store"));
    work
}

fn run(dir: &Path, args: &[&str]) -> Run {
    backup(dir)
        .env("BACKUP_TEST_PGPASSWORD", PASSWORD)
        .args(["-p", "app.yaml"])
        .args(args)
        .output()
        .unwrap()
        .into()
}

fn ok(dir: &Path, args: &[&str]) -> Run {
    let result = run(dir, args);
    assert_eq!(result.code, 0, "{args:?}: {result:?}");
    result
}

/// Every user table of `database` and its rows, sorted.
fn contents(database: &str) -> BTreeMap<String, String> {
    cluster().contents(database)
}

fn count(database: &str, table: &str) -> String {
    cluster().sql(database, &format!("SELECT count(*) FROM {table}"))
}

/// `app`'s tables: `a` (5 rows), `s.b` (7 rows: a serial, an identity
/// column, an enum, an index, a trigger, a foreign key to `a`), `c` (a
/// foreign key to `s.b`, which its row leaves null), and a view over `s.b`.
fn create_app(database: &str) {
    let cluster = cluster();
    cluster.sql("postgres", &format!("CREATE DATABASE {database}"));
    cluster.sql(
        database,
        "CREATE TABLE a (id serial PRIMARY KEY, name text);
         CREATE SCHEMA s;
         CREATE TYPE mood AS ENUM ('ok', 'bad');
         CREATE TABLE s.b (id serial PRIMARY KEY, a int REFERENCES a(id), m mood, x int GENERATED ALWAYS AS IDENTITY);
         CREATE INDEX b_a ON s.b(a);
         CREATE TABLE c (id bigint PRIMARY KEY, b int REFERENCES s.b(id));
         CREATE VIEW v AS SELECT * FROM s.b;
         CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
         CREATE TRIGGER t BEFORE INSERT ON s.b FOR EACH ROW EXECUTE FUNCTION touch();
         INSERT INTO a (name) SELECT 'n' || i FROM generate_series(1, 5) i;
         INSERT INTO s.b (a, m) SELECT 1 + i % 5, 'ok' FROM generate_series(1, 7) i;
         INSERT INTO c VALUES (1, NULL);",
    );
}

#[test]
fn a_restore_keeps_the_rows_of_tables_whose_data_the_backup_excludes() {
    create_app("excluded");
    let work = policy("excluded", "\n      exclude-table-data: [s.b]");
    ok(work.path(), &["run", "app"]);
    let at_backup = contents("excluded");
    // After the backup: one more row in s.b, and a changed a.
    cluster().sql(
        "excluded",
        "INSERT INTO s.b (a, m) VALUES (2, 'bad'); UPDATE a SET name = 'changed' WHERE id = 3",
    );
    let b_before = contents("excluded")["s.b"].clone();
    assert_eq!(count("excluded", "s.b"), "8");

    let dry = ok(work.path(), &["restore", "app", "--dry-run"]);
    for expected in [
        "keeps         s.b (8 rows), as it is with its rows, indexes, constraints, triggers and sequences: the backup holds its definition, not its rows",
        "drops         2 tables and recreates them from the backup: public.a, public.c",
        "keeps         schema s (not dropped",
    ] {
        assert!(dry.stdout.contains(expected), "{expected}:\n{}", dry.stdout);
    }
    // Never again "not in the backup … left as they are" for a table the restore would empty.
    assert!(!dry.stdout.contains("not in the backup"), "{}", dry.stdout);
    assert!(
        dry.stdout
            .contains("2 tables with 6 rows, and 1 without its rows: s.b\n"),
        "{}",
        dry.stdout
    );

    let restored = ok(work.path(), &["restore", "app", "--yes"]);
    assert!(
        restored.stdout.contains("kept as they were: s.b (8 rows)"),
        "{}",
        restored.stdout
    );
    let now = contents("excluded");
    assert_eq!(now["s.b"], b_before, "s.b keeps every row");
    assert_eq!(
        now["public.a"], at_backup["public.a"],
        "a is as at backup time"
    );
    assert_eq!(now["public.c"], at_backup["public.c"]);
    // Its sequences go on from where they were, its trigger and view are there.
    cluster().sql("excluded", "INSERT INTO s.b (a, m) VALUES (1, 'ok')");
    assert_eq!(count("excluded", "v"), "9");
    assert_eq!(
        cluster().sql(
            "excluded",
            "SELECT count(*) FROM pg_trigger WHERE tgname = 't' AND tgrelid = 's.b'::regclass"
        ),
        "1"
    );

    // Into a database that does not exist: s.b is created empty, and the plan says so.
    let dry = ok(
        work.path(),
        &["restore", "app", "--to", "excluded_new", "--dry-run"],
    );
    assert!(!dry.stdout.contains("keeps "), "{}", dry.stdout);
    let fresh = ok(
        work.path(),
        &["restore", "app", "--to", "excluded_new", "--yes"],
    );
    assert!(fresh.stdout.contains("Restored app"), "{fresh:?}");
    assert_eq!(count("excluded_new", "s.b"), "0");
    assert_eq!(count("excluded_new", "a"), "5");

    // Into an existing database without s.b: the plan names it as created empty.
    cluster().sql("excluded_new", "DROP TABLE s.b CASCADE");
    let dry = ok(
        work.path(),
        &["restore", "app", "--to", "excluded_new", "--dry-run"],
    );
    assert!(
        dry.stdout.contains(
            "tables in the backup without their rows and not in the target (created empty): s.b"
        ),
        "{}",
        dry.stdout
    );
}

/// A database with tables in three schemas and no foreign key between them.
fn create_spread(database: &str) {
    let cluster = cluster();
    cluster.sql("postgres", &format!("CREATE DATABASE {database}"));
    cluster.sql(
        database,
        "CREATE TABLE a (id serial PRIMARY KEY, v text);
         CREATE TABLE x (id int PRIMARY KEY);
         CREATE SCHEMA s;
         CREATE TABLE s.b (id int);
         CREATE TABLE s.y (id bigserial PRIMARY KEY, v text);
         CREATE SCHEMA t;
         CREATE TABLE t.z (id int);
         INSERT INTO a (v) SELECT 'a' || i FROM generate_series(1, 4) i;
         INSERT INTO x SELECT generate_series(1, 4);
         INSERT INTO s.b SELECT generate_series(1, 4);
         INSERT INTO s.y (v) SELECT 'y' || i FROM generate_series(1, 4) i;
         INSERT INTO t.z SELECT generate_series(1, 4);",
    );
}

/// Adds a row to every table, and a table `s.extra` the backup cannot know.
fn change_spread(database: &str) {
    cluster().sql(
        database,
        "INSERT INTO a (v) VALUES ('late'); INSERT INTO x VALUES (99); INSERT INTO s.b VALUES (99);
         INSERT INTO s.y (v) VALUES ('late'); INSERT INTO t.z VALUES (99);
         CREATE TABLE s.extra (id int); INSERT INTO s.extra VALUES (1), (2);",
    );
}

#[test]
fn partial_backups_restore_what_they_hold_and_keep_every_row_they_do_not() {
    // Per option: the tables the backup holds whole (restored to their rows
    // at backup time); every other table keeps the rows it has at restore time.
    let cases: [(&str, &str, &[&str]); 5] = [
        (
            "partial_tables",
            "tables: [public.a, s.y]",
            &["public.a", "s.y"],
        ),
        ("partial_schemas", "schemas: [s]", &["s.b", "s.y"]),
        (
            "partial_exclude_schemas",
            "exclude-schemas: [t]",
            &["public.a", "public.x", "s.b", "s.y"],
        ),
        (
            "partial_exclude_tables",
            "exclude-tables: [public.x, s.b]",
            &["public.a", "s.y", "t.z"],
        ),
        (
            "partial_exclude_data",
            "exclude-table-data: [s.y, public.x]",
            &["public.a", "s.b", "t.z"],
        ),
    ];
    for (database, option, whole) in cases {
        create_spread(database);
        let work = policy(database, &format!("\n      {option}"));
        ok(work.path(), &["run", "app"]);
        let at_backup = contents(database);
        change_spread(database);
        let changed = contents(database);
        let restored = run(work.path(), &["restore", "app", "--yes"]);
        assert_eq!(restored.code, 0, "{option}: {restored:?}");
        let now = contents(database);
        for (table, rows) in &now {
            let expected = if whole.contains(&table.as_str()) {
                &at_backup[table]
            } else {
                &changed[table]
            };
            assert_eq!(rows, expected, "{option}: {table}\n{}", restored.stdout);
        }
        assert_eq!(
            now.keys().collect::<Vec<_>>(),
            changed.keys().collect::<Vec<_>>(),
            "{option}"
        );
    }
}

#[test]
fn a_restore_that_would_stop_at_an_object_outside_the_backup_is_refused_before_anything() {
    create_spread("partial_blocked");
    let work = policy("partial_blocked", "\n      tables: [public.a]");
    ok(work.path(), &["run", "app"]);
    // After the backup, objects the backup cannot hold come to depend on `a`.
    cluster().sql(
        "partial_blocked",
        "CREATE TABLE w (a int REFERENCES a(id)); INSERT INTO w VALUES (1);
         CREATE VIEW s.a_names AS SELECT v FROM a; INSERT INTO a (v) VALUES ('late')",
    );
    let before = contents("partial_blocked");
    for args in [
        &["restore", "app", "--dry-run"][..],
        &["restore", "app", "--yes"],
        &["restore", "app", "--yes", "--jobs", "2"],
    ] {
        let refused = run(work.path(), args);
        assert_eq!(refused.code, 1, "{args:?}: {refused:?}");
        for expected in [
            "foreign key w_a_fkey of public.w references public.a",
            "view s.a_names reads public.a",
            "nothing was changed",
        ] {
            assert!(refused.stderr.contains(expected), "{expected}: {refused:?}");
        }
        assert!(!refused.stdout.contains("safety backup  "), "{refused:?}");
        assert_eq!(contents("partial_blocked"), before);
    }
    // No safety backup was taken: only the policy's own backup is there.
    let sidecars = super::common::sidecars(&work.path().join("store/app"));
    assert_eq!(sidecars.len(), 1, "{sidecars:?}");
}

#[test]
fn a_drill_drops_only_the_scratch_databases_it_marked_never_a_users_database_of_that_name() {
    create_spread("drilled");
    let work = policy("drilled", "");
    ok(work.path(), &["run", "app"]);
    let prefix = backup::restore::drill::scratch_database_prefix("app", "drilled");
    // The user's own database, idle, whose name happens to match the pattern.
    let users = format!("{prefix}0a1b2c3d");
    cluster().sql("postgres", &format!("CREATE DATABASE {users}"));
    cluster().sql(
        &users,
        "CREATE TABLE mine (v text); INSERT INTO mine VALUES ('keep me')",
    );
    // One a killed drill left behind: marked as the drill marks its own.
    let abandoned = format!("{prefix}deadbeef");
    cluster().sql("postgres", &format!("CREATE DATABASE {abandoned}"));
    cluster().sql(
        "postgres",
        &format!(
            "COMMENT ON DATABASE {abandoned} IS '{}'",
            backup::restore::drill::scratch_marker("app")
        ),
    );
    let drill = ok(work.path(), &["verify", "--restore-test"]);
    assert!(drill.stdout.contains("scratch removed"), "{drill:?}");
    let left = cluster().sql(
        "postgres",
        &format!("SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE datname LIKE '{prefix}%'"),
    );
    assert_eq!(left, users, "only the user's database is left");
    assert_eq!(cluster().sql(&users, "SELECT v FROM mine"), "keep me");
    cluster().sql("postgres", &format!("DROP DATABASE {users}"));
}

#[test]
fn a_restore_blocked_by_a_lock_says_who_holds_it_and_gives_up_without_changing_anything() {
    create_spread("locked");
    let work = policy("locked", "");
    ok(work.path(), &["run", "app"]);
    cluster().sql("locked", "INSERT INTO a (v) VALUES ('late')");
    let before = contents("locked");
    // Another session with an open transaction that read `a`.
    let cluster = cluster();
    let mut holder = cluster
        .command("psql")
        .args(["-X", "-q", "-h"])
        .arg(cluster.socket_dir())
        .args([
            "-p",
            &cluster.port.to_string(),
            "-U",
            "postgres",
            "-d",
            "locked",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut input = holder.stdin.take().unwrap();
    std::io::Write::write_all(&mut input, b"BEGIN; SELECT count(*) FROM a;\n").unwrap();
    let mut pid = String::new();
    for _ in 0..200 {
        pid = cluster.sql(
            "postgres",
            "SELECT coalesce(string_agg(pid::text, ','), '') FROM pg_stat_activity
             WHERE datname = 'locked' AND application_name = 'psql' AND state = 'idle in transaction'",
        );
        if !pid.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!pid.is_empty(), "the holder's transaction is open");

    let blocked = run(
        work.path(),
        &["restore", "app", "--yes", "--lock-timeout", "2s"],
    );
    assert_eq!(blocked.code, 1, "{blocked:?}");
    for expected in [
        format!("The restore waits for AccessExclusiveLock on public.a, held by session {pid} (user postgres, application psql, idle in transaction, transaction open since "),
        "pg_restore gave up waiting for a lock after the lock timeout (2s, --lock-timeout): it waited for AccessExclusiveLock on public.a".to_owned(),
        "The target was not changed.".to_owned(),
    ] {
        assert!(blocked.stderr.contains(&expected), "{expected}:\n{}", blocked.stderr);
    }
    assert_eq!(contents("locked"), before);
    // In parallel (not one transaction): refused before pg_restore starts.
    let parallel = run(
        work.path(),
        &[
            "restore",
            "app",
            "--yes",
            "--jobs",
            "2",
            "--lock-timeout",
            "2s",
        ],
    );
    assert_eq!(parallel.code, 1, "{parallel:?}");
    for expected in [
        "pg_restore gave up waiting for a lock after the lock timeout (2s, --lock-timeout)",
        "The target was not changed.",
    ] {
        assert!(
            parallel.stderr.contains(expected),
            "{expected}:\n{}",
            parallel.stderr
        );
    }
    assert_eq!(contents("locked"), before);
    let dry = ok(
        work.path(),
        &["restore", "app", "--dry-run", "--lock-timeout", "5m"],
    );
    assert!(
        dry.stdout.contains("locks         waits at most 300s (--lock-timeout) for locks other sessions hold on what it drops, then gives up and changes nothing"),
        "{}",
        dry.stdout
    );

    // Once the other transaction ends, the same restore goes through.
    std::io::Write::write_all(&mut input, b"COMMIT;\n").unwrap();
    drop(input);
    holder.wait().unwrap();
    ok(
        work.path(),
        &["restore", "app", "--yes", "--lock-timeout", "2s"],
    );
    assert_eq!(count("locked", "a"), "4");
}

/// The run records of policy `app` in `dir`'s state folder: (kind, result, log).
fn run_records(dir: &Path) -> Vec<(String, String, Option<String>)> {
    std::fs::read_to_string(dir.join(".state/runs/app.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                record["kind"].as_str().unwrap().to_owned(),
                record["result"].as_str().unwrap().to_owned(),
                record["log"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[test]
fn restores_and_drills_write_run_records_and_logs_but_never_end_a_backup_failure_streak() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let database = dir.join("app.db");
    super::common::sqlite3(
        &database,
        "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2);",
    );
    let policy = write_policy(
        dir,
        "app",
        "    sqlite:\n      path: app.db",
        &dir.join("store"),
    );
    let mut text = std::fs::read_to_string(&policy).unwrap();
    text.push_str("  verify:\n    restore-test: daily\n");
    std::fs::write(&policy, text).unwrap();
    let sqlite = |args: &[&str]| {
        let mut all = vec!["-p", "app.yaml"];
        all.extend_from_slice(args);
        super::common::run(dir, &all)
    };
    assert_eq!(sqlite(&["run", "app"]).code, 0);
    // The source breaks: the next backup fails.
    std::fs::rename(&database, dir.join("saved.db")).unwrap();
    std::fs::create_dir(&database).unwrap();
    assert_eq!(sqlite(&["run", "app"]).code, 1);

    // apply has only a drill to do: it records a drill, no apply.
    let crontab = dir.join("crontab");
    let crontab = crontab.to_str().unwrap();
    let applied = sqlite(&["apply", "--auto-approve", "--crontab-file", crontab]);
    assert_eq!(applied.code, 0, "{applied:?}");
    assert!(applied.stdout.contains("restore-test"), "{applied:?}");
    let drilled = sqlite(&["verify", "--restore-test"]);
    assert_eq!(drilled.code, 0, "{drilled:?}");
    let restored = sqlite(&["restore", "app", "--to", "restored.db", "--yes"]);
    assert_eq!(restored.code, 0, "{restored:?}");
    // A dry run leaves no record.
    assert_eq!(
        sqlite(&["restore", "app", "--to", "restored.db", "--dry-run"]).code,
        0
    );
    // A refused restore is a failed one.
    let refused = sqlite(&["restore", "app", "--backup", "20000101T000000Z", "--yes"]);
    assert_eq!(refused.code, 1, "{refused:?}");

    let records = run_records(dir);
    let kinds: Vec<(&str, &str)> = records
        .iter()
        .map(|(kind, result, _)| (kind.as_str(), result.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("run", "ok"),
            ("run", "failed"),
            ("drill", "ok"),
            ("drill", "ok"),
            ("restore", "ok"),
            ("restore", "failed"),
        ]
    );
    // Each restore and drill has its per-run log, under <state>/logs/runs/.
    for (kind, _, log) in &records[2..] {
        let log = log.as_deref().unwrap_or_else(|| panic!("{kind}: no log"));
        assert!(
            Path::new(log).starts_with(dir.join(".state/logs/runs")),
            "{log}"
        );
        assert!(Path::new(log).is_file(), "{log}");
    }
    let restore_log = std::fs::read_to_string(records[4].2.as_deref().unwrap()).unwrap();
    assert!(restore_log.contains("Restore started."), "{restore_log}");
    assert!(restore_log.contains("Restore finished."), "{restore_log}");
    // The backup failure streak is the backups' alone.
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(".state/.backup_status")).unwrap()).unwrap();
    let app = &status["policies"]["app"];
    assert_eq!(app["consecutive_failures"], 1, "{app}");
    assert_eq!(app["last_attempt"]["kind"], "run", "{app}");
    assert_eq!(app["last_attempt"]["result"], "failed", "{app}");
}
