//! Backups of real databases: a throwaway PostgreSQL cluster and real SQLite
//! files, restored with stock tools alone (gunzip, pg_restore, sqlite3,
//! sha256sum).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::postgres::{Cluster, PASSWORD};
use common::{
    Tmpfs, assert_nothing_left, backup, files_under, run, shell, sidecars, sqlite3, write_policy,
};

#[test]
fn postgres_backups_restore_with_stock_tools_and_fail_cleanly() {
    let cluster = Cluster::start();
    cluster.sql("postgres", "CREATE DATABASE app");
    cluster.sql(
        "app",
        "CREATE TABLE orders (id serial PRIMARY KEY, customer text NOT NULL, note text, total numeric(12,2));
         INSERT INTO orders (customer, note, total) SELECT md5(i::text), repeat(md5(random()::text), 3), (random() * 1000)::numeric(12,2) FROM generate_series(1, 20000) i;
         CREATE SCHEMA billing;
         CREATE TABLE billing.\"order lines\" (id bigint, sku text);
         INSERT INTO billing.\"order lines\" SELECT i, 'sku-' || i FROM generate_series(1, 777) i;
         CREATE TABLE sessions (token text);
         INSERT INTO sessions SELECT md5(i::text) FROM generate_series(1, 50) i;",
    );
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let source = format!(
        "    postgres:\n      url: {}\n      password: ${{env:BACKUP_TEST_PGPASSWORD}}\n      exclude-table-data: [public.sessions]",
        cluster.url("app")
    );
    write_policy(work.path(), "app-db", &source, &store);

    // A backup at the most verbose log level, with the password only in the environment.
    let result: common::Run = backup(work.path())
        .env("BACKUP_TEST_PGPASSWORD", PASSWORD)
        .args(["-p", "app-db.yaml", "-vvv", "run", "app-db"])
        .output()
        .unwrap()
        .into();
    assert_eq!(result.code, 0, "{result:?}");
    assert!(
        result.stdout.starts_with("Backed up app-db as "),
        "{}",
        result.stdout
    );
    let folder = store.join("app-db");
    let metadata = sidecars(&folder).pop().expect("a sidecar");
    assert_eq!(metadata["source"]["kind"], "postgres");
    assert_eq!(metadata["source"]["row_counts"]["public.orders"], 20000);
    assert_eq!(metadata["source"]["row_counts"]["billing.order lines"], 777);
    assert!(
        metadata["source"]["row_counts"]
            .get("public.sessions")
            .is_none(),
        "its data was excluded"
    );
    let name = metadata["artifact"]["name"].as_str().unwrap().to_owned();
    assert!(name.ends_with(".pgdump.gz"));

    // The secret appears nowhere: output, logs, sidecars, stored files.
    for output in [&result.stdout, &result.stderr] {
        assert!(!output.contains(PASSWORD), "password in output");
    }
    for (path, bytes) in files_under(work.path()) {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(PASSWORD),
            "password in {}",
            path.display()
        );
    }

    // Permissions: data and sidecar 0600, folder 0700.
    use std::os::unix::fs::PermissionsExt as _;
    for (path, _) in files_under(&folder) {
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600,
            "{}",
            path.display()
        );
    }
    assert_eq!(
        std::fs::metadata(&folder).unwrap().permissions().mode() & 0o777,
        0o700
    );

    // sha256sum agrees with the sidecar.
    let sum = shell(&format!("cd {} && sha256sum {name}", folder.display()));
    assert_eq!(
        sum.split_whitespace().next().unwrap(),
        metadata["artifact"]["sha256"]
    );

    // gunzip | pg_restore into a new database gives the same rows.
    cluster.sql("postgres", "CREATE DATABASE restored");
    let restore = format!(
        "gunzip -c {} | {} -h {} -p {} -U postgres -d restored --no-owner",
        folder.join(&name).display(),
        cluster.bin("pg_restore").display(),
        cluster.socket_dir().display(),
        cluster.port
    );
    shell(&restore);
    for (table, expected) in [
        ("public.orders", "20000"),
        ("billing.\"order lines\"", "777"),
        ("public.sessions", "0"),
    ] {
        assert_eq!(
            cluster.sql("restored", &format!("SELECT count(*) FROM {table}")),
            expected,
            "{table}"
        );
    }
    let checksum = "SELECT md5(string_agg(customer || coalesce(note, '') || total::text, ',' ORDER BY id)) FROM orders";
    assert_eq!(
        cluster.sql("app", checksum),
        cluster.sql("restored", checksum)
    );

    // verify re-reads it and agrees.
    let verified = run(work.path(), &["-p", "app-db.yaml", "verify"]);
    assert_eq!(verified.code, 0, "{verified:?}");

    // Failures leave nothing visible and earlier backups untouched.
    let before = files_under(&folder);
    // pg_dump stand-ins (through `bin-dir`) that fail the ways a real one can.
    let real = cluster.bin("pg_dump");
    let wrappers = [
        (
            "killed",
            format!("\"{}\" \"$@\" | head -c 20000; kill -9 $$", real.display()),
        ),
        (
            "truncated",
            format!("\"{}\" \"$@\" | head -c 300; exit 0", real.display()),
        ),
        ("empty", "exit 0".to_owned()),
        (
            "recorded",
            format!(
                "printf '%s\\n' \"$0\" \"$@\" > \"{}\"\nexec \"{}\" \"$@\"",
                work.path().join("pg_dump-argv.txt").display(),
                real.display()
            ),
        ),
    ];
    for (name, body) in &wrappers {
        let folder = work.path().join(format!("bin-{name}"));
        std::fs::create_dir_all(&folder).unwrap();
        let script = folder.join("pg_dump");
        std::fs::write(&script, format!("#!/bin/bash\n{body}\n")).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(cluster.bin("pg_restore"), folder.join("pg_restore")).unwrap();
    }
    let failures = [
        (
            "wrong password",
            "not-the-password",
            cluster.url("app"),
            None,
            "password authentication failed",
        ),
        (
            "missing database",
            PASSWORD,
            cluster.url("no_such_db"),
            None,
            "does not exist",
        ),
        (
            "server down",
            PASSWORD,
            format!(
                "postgresql://postgres@127.0.0.1:{}/app",
                common::postgres::free_port()
            ),
            None,
            "cannot connect",
        ),
        (
            "pg_dump killed",
            PASSWORD,
            cluster.url("app"),
            Some("bin-killed"),
            "pg_dump failed (signal: 9",
        ),
        (
            "dump truncated",
            PASSWORD,
            cluster.url("app"),
            Some("bin-truncated"),
            "not readable by pg_restore",
        ),
        (
            "dump empty",
            PASSWORD,
            cluster.url("app"),
            Some("bin-empty"),
            "the dump is empty",
        ),
    ];
    for (case, password, url, bin_dir, expected) in failures {
        let failing = work.path().join("failing");
        let mut source = format!(
            "    postgres:\n      url: {url}\n      password: ${{env:BACKUP_TEST_PGPASSWORD}}"
        );
        if let Some(bin_dir) = bin_dir {
            source.push_str(&format!(
                "\n      bin-dir: {}",
                work.path().join(bin_dir).display()
            ));
        }
        write_policy(work.path(), "failing-db", &source, &failing);
        let result: common::Run = backup(work.path())
            .env("BACKUP_TEST_PGPASSWORD", password)
            .args(["-p", "failing-db.yaml", "run", "failing-db"])
            .output()
            .unwrap()
            .into();
        assert!(
            result.stderr.contains(expected),
            "{case}: {}",
            result.stderr
        );
        assert_eq!(result.code, 1, "{case}: {result:?}");
        assert!(
            result.stderr.contains("backup of `failing-db` failed"),
            "{case}: {}",
            result.stderr
        );
        assert!(
            !result.stderr.contains(PASSWORD),
            "{case}: password in the error"
        );
        assert_nothing_left(&failing.join("failing-db"));
    }
    assert_eq!(files_under(&folder), before, "earlier backups changed");

    // What pg_dump's argv really held: no password, though it connected with one.
    let recorded = work.path().join("recorded");
    let source = format!(
        "    postgres:\n      url: {}\n      password: ${{env:BACKUP_TEST_PGPASSWORD}}\n      bin-dir: {}",
        cluster.url("app"),
        work.path().join("bin-recorded").display()
    );
    write_policy(work.path(), "recorded-db", &source, &recorded);
    let result: common::Run = backup(work.path())
        .env("BACKUP_TEST_PGPASSWORD", PASSWORD)
        .args(["-p", "recorded-db.yaml", "run", "recorded-db"])
        .output()
        .unwrap()
        .into();
    assert_eq!(result.code, 0, "{result:?}");
    let argv = std::fs::read_to_string(work.path().join("pg_dump-argv.txt")).unwrap();
    assert!(argv.contains("--snapshot="), "not pg_dump's argv: {argv}");
    assert!(
        !argv.contains(PASSWORD),
        "password in pg_dump's argv: {argv}"
    );
}

/// SQL that adds `count` rows of 4000 random (incompressible) bytes to table `t`.
fn insert_random_rows(count: u32) -> String {
    format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count}) INSERT INTO t SELECT randomblob(4000) FROM n;"
    )
}

#[test]
fn sqlite_backup_of_a_busy_wal_database_restores_with_stock_tools() {
    let work = tempfile::tempdir().unwrap();
    let database = work.path().join("app.db");
    sqlite3(
        &database,
        "PRAGMA journal_mode=WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) INSERT INTO t (v) SELECT hex(randomblob(32)) FROM n;",
    );
    // A writer keeps a connection open and a -wal file hot during the backup.
    let mut writer = Command::new("sqlite3")
        .arg(&database)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let stdin = writer.stdin.as_mut().unwrap();
        writeln!(
            stdin,
            "PRAGMA journal_mode=WAL; INSERT INTO t (v) VALUES ('from-writer');"
        )
        .unwrap();
        stdin.flush().unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let store = work.path().join("store");
    write_policy(
        work.path(),
        "app",
        "    sqlite:\n      path: app.db",
        &store,
    );
    let result = run(work.path(), &["-p", "app.yaml", "run", "app"]);
    drop(writer.stdin.take());
    let _ = writer.wait();
    assert_eq!(result.code, 0, "{result:?}");
    let metadata = sidecars(&store.join("app")).pop().unwrap();
    let rows = metadata["source"]["row_counts"]["t"].as_u64().unwrap();
    assert!(rows == 5000 || rows == 5001, "{rows}");
    let name = metadata["artifact"]["name"].as_str().unwrap();
    let restored = work.path().join("restored.db");
    shell(&format!(
        "gunzip -c {} > {}",
        store.join("app").join(name).display(),
        restored.display()
    ));
    assert_eq!(sqlite3(&restored, "PRAGMA integrity_check"), "ok");
    assert_eq!(
        sqlite3(&restored, "SELECT count(*) FROM t"),
        rows.to_string()
    );
    assert_eq!(
        sqlite3(&restored, "PRAGMA journal_mode"),
        "delete",
        "self-contained artifact"
    );
}

#[test]
fn bad_sources_and_destinations_fail_cleanly() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    // A missing SQLite file: no empty database created, nothing stored.
    write_policy(
        work.path(),
        "missing",
        "    sqlite:\n      path: missing.db",
        &store,
    );
    let result = run(work.path(), &["-p", "missing.yaml", "run", "missing"]);
    assert_eq!(result.code, 1, "{result:?}");
    assert!(result.stderr.contains("no such file"), "{}", result.stderr);
    assert!(!work.path().join("missing.db").exists());
    assert_nothing_left(&store.join("missing"));

    // An unwritable destination (a path through a regular file).
    sqlite3(
        &work.path().join("app.db"),
        "CREATE TABLE t (x); INSERT INTO t VALUES (1);",
    );
    std::fs::write(work.path().join("a-file"), "").unwrap();
    write_policy(
        work.path(),
        "app",
        "    sqlite:\n      path: app.db",
        &work.path().join("a-file/store"),
    );
    let result = run(work.path(), &["-p", "app.yaml", "run", "app"]);
    assert_eq!(result.code, 1, "{result:?}");
    assert!(result.stderr.contains("a-file"), "{}", result.stderr);

    // An unknown policy name.
    let result = run(work.path(), &["-p", "app.yaml", "run", "nope"]);
    assert_eq!(result.code, 1);
    assert!(
        result.stderr.contains("no policy named `nope`"),
        "{}",
        result.stderr
    );
}

#[test]
fn verify_and_list_find_damage_and_orphans() {
    let work = tempfile::tempdir().unwrap();
    sqlite3(
        &work.path().join("app.db"),
        "CREATE TABLE t (x); INSERT INTO t VALUES (randomblob(100000));",
    );
    let store = work.path().join("store");
    write_policy(
        work.path(),
        "app",
        "    sqlite:\n      path: app.db",
        &store,
    );
    for _ in 0..3 {
        assert_eq!(run(work.path(), &["-p", "app.yaml", "run", "app"]).code, 0);
    }
    let folder = store.join("app");
    let mut data: Vec<PathBuf> = files_under(&folder)
        .into_iter()
        .map(|(path, _)| path)
        .filter(|path| path.to_str().unwrap().ends_with(".sqlite.gz"))
        .collect();
    data.sort();
    assert_eq!(data.len(), 3);
    assert_eq!(run(work.path(), &["-p", "app.yaml", "verify"]).code, 0);

    // One flipped bit in the first, the third truncated.
    let mut bytes = std::fs::read(&data[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&data[0], &bytes).unwrap();
    let third = std::fs::read(&data[2]).unwrap();
    std::fs::write(&data[2], &third[..third.len() - 10]).unwrap();
    std::fs::write(folder.join("20200101T000000Z.sqlite.gz.partial"), b"half").unwrap();

    let verified = run(work.path(), &["-p", "app.yaml", "verify"]);
    assert_eq!(verified.code, 5, "{verified:?}");
    assert!(
        verified.stdout.contains("SHA-256 is"),
        "{}",
        verified.stdout
    );
    assert!(
        verified.stdout.contains("sidecar says"),
        "{}",
        verified.stdout
    );
    assert!(
        verified
            .stdout
            .ends_with("Verified 3 backups: 1 ok, 2 failed.\n"),
        "{}",
        verified.stdout
    );

    let listed = run(work.path(), &["-p", "app.yaml", "list", "--format", "json"]);
    assert_eq!(listed.code, 0, "{listed:?}");
    let report: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let state_of = |file: &Path| {
        let id = file
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .split('.')
            .next()
            .unwrap()
            .to_owned();
        let row = report["backups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["id"] == id.as_str())
            .unwrap();
        row["state"].as_str().unwrap().to_owned()
    };
    assert_eq!(
        state_of(&data[0]),
        "complete",
        "a flipped bit keeps the size; verify finds it"
    );
    assert!(
        state_of(&data[2]).starts_with("size mismatch"),
        "{}",
        state_of(&data[2])
    );
    assert_eq!(
        report["orphans"][0]["name"],
        "20200101T000000Z.sqlite.gz.partial"
    );
}

#[test]
fn a_run_killed_at_any_point_leaves_only_complete_backups() {
    let work = tempfile::tempdir().unwrap();
    let database = work.path().join("big.db");
    // About 24 MB of incompressible rows, so a run lasts long enough to be cut at many points.
    sqlite3(
        &database,
        &format!("CREATE TABLE t (v BLOB); {}", insert_random_rows(6000)),
    );
    let store = work.path().join("store");
    write_policy(
        work.path(),
        "big",
        "    sqlite:\n      path: big.db",
        &store,
    );
    // The runs' scratch copies go to the state folder's `tmp/`, so what the
    // kills leave can be seen there.
    let scratch = work.path().join(".state/tmp");
    std::fs::create_dir_all(&scratch).unwrap();
    // How long an uninterrupted run takes here (the fastest of three, as
    // the first is slowed by a cold cache), to spread the kills over it.
    let full = (0..3)
        .map(|_| {
            let clock = std::time::Instant::now();
            assert_eq!(run(work.path(), &["-p", "big.yaml", "run", "big"]).code, 0);
            clock.elapsed()
        })
        .min()
        .unwrap();
    let points = 24;
    let mut interrupted = 0;
    let mut abandoned = 0;
    for point in 0..points {
        let delay = full.mul_f64(f64::from(point) / f64::from(points));
        let mut child = backup(work.path())
            .args(["-p", "big.yaml", "run", "big"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .status();
        let status = child.wait().unwrap();
        if status.code().is_none() {
            interrupted += 1;
        }
        // The next run will remove what this one left; count it now.
        abandoned += std::fs::read_dir(&scratch).unwrap().count();

        // Every listed backup is complete and verifies; anything else is an orphan.
        let listed = run(work.path(), &["-p", "big.yaml", "list", "--format", "json"]);
        assert_eq!(listed.code, 0, "after a kill at {delay:?}: {listed:?}");
        let report: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
        for row in report["backups"].as_array().unwrap() {
            assert_eq!(row["state"], "complete", "after a kill at {delay:?}: {row}");
        }
        let verified = run(work.path(), &["-p", "big.yaml", "verify"]);
        assert_eq!(verified.code, 0, "after a kill at {delay:?}: {verified:?}");
        let sidecars = sidecars(&store.join("big")).len();
        let claimed: Vec<String> = report["backups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(claimed.len(), sidecars);
        for (path, _) in files_under(&store.join("big")) {
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let id = name.split('.').next().unwrap().to_owned();
            let orphan = report["orphans"]
                .as_array()
                .unwrap()
                .iter()
                .any(|orphan| orphan["name"] == name.as_str());
            assert!(
                claimed.contains(&id) || orphan,
                "{name} is neither a backup nor a reported orphan"
            );
        }
    }
    // The kills must really have cut runs short, or this test proves nothing.
    assert!(
        interrupted >= points / 2,
        "only {interrupted} of {points} runs were interrupted"
    );
    // The next run removes the scratch copies the killed runs left.
    assert!(abandoned > 0, "the kills left no scratch copy to clean up");
    let result: common::Run = backup(work.path())
        .args(["-p", "big.yaml", "run", "big"])
        .output()
        .unwrap()
        .into();
    assert_eq!(result.code, 0, "{result:?}");
    let still: Vec<_> = std::fs::read_dir(&scratch)
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .collect();
    assert!(
        still.is_empty(),
        "abandoned scratch copies remain: {still:?}"
    );
}

#[test]
fn a_full_disk_fails_the_backup_and_keeps_earlier_ones() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let Some(_tmpfs) = Tmpfs::mount(&store, "1m") else {
        let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
        assert!(!root, "running as root, mounting a tmpfs must work");
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    };
    let database = work.path().join("app.db");
    sqlite3(
        &database,
        "CREATE TABLE t (v BLOB); INSERT INTO t VALUES (randomblob(1000));",
    );
    write_policy(
        work.path(),
        "app",
        "    sqlite:\n      path: app.db",
        &store,
    );
    assert_eq!(run(work.path(), &["-p", "app.yaml", "run", "app"]).code, 0);
    let before = files_under(&store.join("app"));
    assert_eq!(before.len(), 2, "one backup: data and sidecar");

    // Now about 3 MB of incompressible data: more than the 1 MiB file system holds.
    sqlite3(&database, &insert_random_rows(750));
    let result = run(work.path(), &["-p", "app.yaml", "run", "app"]);
    assert_eq!(result.code, 1, "{result:?}");
    assert!(
        result.stderr.contains("No space left on device"),
        "{}",
        result.stderr
    );
    assert_eq!(
        files_under(&store.join("app")),
        before,
        "the failed backup left something, or changed the earlier one"
    );
    let verified = run(work.path(), &["-p", "app.yaml", "verify"]);
    assert_eq!(verified.code, 0, "{verified:?}");
}

/// One connection attempt: what is asked, and the error expected (`None`: success).
struct TlsCase<'a> {
    case: &'a str,
    url: String,
    sslmode: &'a str,
    root: Option<&'a Path>,
    failure: Option<&'a str>,
}

impl<'a> TlsCase<'a> {
    fn new(
        case: &'a str,
        url: String,
        sslmode: &'a str,
        root: Option<&'a Path>,
        failure: Option<&'a str>,
    ) -> Self {
        TlsCase {
            case,
            url,
            sslmode,
            root,
            failure,
        }
    }
}

#[test]
fn postgres_over_tls_follows_sslmode() {
    let cluster = Cluster::start();
    cluster.sql("postgres", "CREATE DATABASE app");
    cluster.sql(
        "app",
        "CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 100);",
    );
    let ca = cluster.enable_tls();
    let other_ca = cluster.other_ca();
    let work = tempfile::tempdir().unwrap();
    let port = cluster.port;
    let cases = [
        TlsCase::new(
            "require encrypts without a CA",
            format!("postgresql://postgres@127.0.0.1:{port}/app"),
            "require",
            None,
            None,
        ),
        TlsCase::new(
            "disable is refused by the server",
            format!("postgresql://postgres@127.0.0.1:{port}/app"),
            "disable",
            None,
            Some("no encryption"),
        ),
        TlsCase::new(
            "verify-full with the right CA",
            format!("postgresql://postgres@127.0.0.1:{port}/app"),
            "verify-full",
            Some(&ca),
            None,
        ),
        TlsCase::new(
            "verify-full with another name",
            format!("postgresql://postgres@localhost:{port}/app"),
            "verify-full",
            Some(&ca),
            Some("certificate not valid for name \"localhost\""),
        ),
        TlsCase::new(
            "verify-ca with another name",
            format!("postgresql://postgres@localhost:{port}/app"),
            "verify-ca",
            Some(&ca),
            None,
        ),
        TlsCase::new(
            "verify-full with an unrelated CA",
            format!("postgresql://postgres@127.0.0.1:{port}/app"),
            "verify-full",
            Some(&other_ca),
            Some("UnknownIssuer"),
        ),
        TlsCase::new(
            "sslmode and sslrootcert in the URL",
            format!(
                "postgresql://postgres@127.0.0.1:{port}/app?sslmode=verify-full&sslrootcert={}",
                ca.display()
            ),
            "",
            None,
            None,
        ),
    ];
    for TlsCase {
        case,
        url,
        sslmode,
        root,
        failure,
    } in cases
    {
        let mut source = format!(
            "    postgres:\n      url: {url}\n      password: ${{env:BACKUP_TEST_PGPASSWORD}}"
        );
        if !sslmode.is_empty() {
            source.push_str(&format!("\n      sslmode: {sslmode}"));
        }
        if let Some(root) = root {
            source.push_str(&format!("\n      ssl-root-cert: {}", root.display()));
        }
        let store = work.path().join("store");
        write_policy(work.path(), "tls-db", &source, &store);
        let result: common::Run = backup(work.path())
            .env("BACKUP_TEST_PGPASSWORD", PASSWORD)
            .args(["-p", "tls-db.yaml", "run", "tls-db"])
            .output()
            .unwrap()
            .into();
        match failure {
            None => {
                assert_eq!(result.code, 0, "{case}: {result:?}");
                let metadata = sidecars(&store.join("tls-db")).pop().unwrap();
                assert_eq!(metadata["source"]["row_counts"]["public.t"], 100, "{case}");
            }
            Some(expected) => {
                assert_eq!(result.code, 1, "{case}: {result:?}");
                assert!(
                    result.stderr.contains(expected),
                    "{case}: {}",
                    result.stderr
                );
            }
        }
        let _ = std::fs::remove_dir_all(&store);
    }
}

#[test]
fn progress_shows_on_a_terminal_and_nowhere_else() {
    let work = tempfile::tempdir().unwrap();
    // Large enough that a run lasts past the first progress report (one a second).
    sqlite3(
        &work.path().join("app.db"),
        &format!("CREATE TABLE t (v BLOB); {}", insert_random_rows(25000)),
    );
    write_policy(
        work.path(),
        "app",
        "    sqlite:\n      path: app.db",
        &work.path().join("store"),
    );

    let piped = run(work.path(), &["-p", "app.yaml", "run", "app"]);
    assert_eq!(piped.code, 0, "{piped:?}");
    assert_eq!(
        piped.stderr, "",
        "progress or logs on a non-terminal stderr"
    );

    // `script` runs the command on a pseudo-terminal and copies what it shows.
    let command = format!("{} -p app.yaml run app", env!("CARGO_BIN_EXE_backup"));
    let output = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(work.path())
        // Its own state folder: the default one is shared with every run on the host.
        .env("BACKUP_STATE_DIR", work.path().join(".state"))
        .env("TMPDIR", common::tmpdir(work.path()))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{shown}");
    assert!(
        shown.contains("app: ") && shown.contains(" read, ") && shown.contains("/s"),
        "no progress shown: {shown}"
    );
    assert!(shown.contains("Backed up app as "), "{shown}");
}
