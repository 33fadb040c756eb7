//! Backups of a real MariaDB server (one throwaway server for this test
//! binary, [`common::mysql`]): round trips through `backup restore`, a
//! drill, the stock tools (`gunzip -c | mariadb`), failures that leave
//! nothing behind, and a password that never leaves the option file.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use common::mysql::{PASSWORD, server};
use common::{
    Run, assert_nothing_left, backup, files_under, pre_restore_ids, shell, sidecars, write_policy,
};

/// A database `name` with rows that test the dump's quoting: quotes,
/// parentheses, backslashes, line breaks, binary data, a table name with a
/// space, an empty table, a trigger and a routine.
fn setup(name: &str) {
    let server = server();
    server.sql(
        "",
        &format!("DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}`"),
    );
    server.sql(
        name,
        "CREATE TABLE orders (id int AUTO_INCREMENT PRIMARY KEY, customer varchar(64) NOT NULL, note text, total decimal(12,2), payload blob);
         INSERT INTO orders (customer, note, total, payload) VALUES
           ('o''brien', 'it''s (1),(2); \\\\ done', 12.50, X'28290027'),
           ('plain', 'line\\nbreak\\ttab', 1.00, NULL),
           ('paren', '),(', 0, X'');
         INSERT INTO orders (customer, note, total)
           SELECT CONCAT('c', seq), REPEAT(MD5(seq), 3), seq / 7 FROM seq_1_to_3000;
         CREATE TABLE `order lines` (id bigint, sku varchar(32));
         INSERT INTO `order lines` SELECT seq, CONCAT('sku-', seq) FROM seq_1_to_777;
         CREATE TABLE empty (id int);
         CREATE TABLE audit (at timestamp DEFAULT CURRENT_TIMESTAMP, what varchar(32));
         CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW INSERT INTO audit (what) VALUES ('insert');
         INSERT INTO orders (customer) VALUES ('after the trigger');
         CREATE PROCEDURE count_orders() SELECT COUNT(*) FROM orders;
         CREATE VIEW big_orders AS SELECT id, total FROM orders WHERE total > 100;",
    );
}

fn policy(folder: &Path, name: &str, database: &str, extra: &str) -> PathBuf {
    let source = format!(
        "    mysql:\n      url: {}\n      password: ${{env:BACKUP_TEST_MYSQL_PASSWORD}}{extra}",
        server().url(database)
    );
    write_policy(folder, name, &source, &folder.join("store"))
}

fn run(folder: &Path, policy: &str, args: &[&str]) -> Run {
    backup(folder)
        .env("BACKUP_TEST_MYSQL_PASSWORD", PASSWORD)
        .args(["-p", &format!("{policy}.yaml")])
        .args(args)
        .output()
        .unwrap()
        .into()
}

#[test]
fn mysql_round_trip_through_restore_a_new_database_a_drill_and_stock_tools() {
    let server = server();
    setup("shop");
    let work = tempfile::tempdir().unwrap();
    policy(work.path(), "shop", "shop", "");
    let taken = run(work.path(), "shop", &["run", "shop"]);
    assert_eq!(taken.code, 0, "{taken:?}");
    let folder = work.path().join("store/shop");
    let metadata = sidecars(&folder).pop().expect("a sidecar");
    assert_eq!(metadata["source"]["kind"], "mysql");
    assert_eq!(metadata["format"], "mysql");
    assert_eq!(metadata["source"]["database"], "shop");
    assert!(
        metadata["source"]["server_version"]
            .as_str()
            .unwrap()
            .contains("MariaDB"),
        "{metadata}"
    );
    let counts = &metadata["source"]["row_counts"];
    assert_eq!(counts["orders"], 3004, "{counts}");
    assert_eq!(counts["order lines"], 777);
    assert_eq!(counts["empty"], 0);
    // The trigger fired for the insert after it.
    assert_eq!(counts["audit"], 1);
    let name = metadata["artifact"]["name"].as_str().unwrap().to_owned();
    assert!(name.ends_with(".mysql.gz"), "{name}");

    let list = run(work.path(), "shop", &["list"]);
    assert_eq!(list.code, 0, "{list:?}");
    assert!(
        list.stdout.contains(&metadata["id"].as_str().unwrap()[..8]),
        "{}",
        list.stdout
    );
    let verified = run(work.path(), "shop", &["verify"]);
    assert_eq!(verified.code, 0, "{verified:?}");

    // The stock tools alone: sha256sum agrees, and gunzip -c | mariadb restores it.
    let sum = shell(&format!("cd {} && sha256sum {name}", folder.display()));
    assert_eq!(
        sum.split_whitespace().next().unwrap(),
        metadata["artifact"]["sha256"]
    );
    server.sql("", "DROP DATABASE IF EXISTS stock; CREATE DATABASE stock");
    shell(&format!(
        "gunzip -c {} | mariadb --no-defaults --socket={} -u root stock",
        folder.join(&name).display(),
        server.socket().display()
    ));
    let at_backup = server.contents("shop");
    assert_eq!(server.contents("stock"), at_backup);
    assert_eq!(
        server
            .sql("stock", "SHOW TRIGGERS LIKE 'orders'")
            .lines()
            .count(),
        1
    );

    // Change the database, then restore it: a safety backup first, the
    // backup's tables as they were, a table it does not hold left alone.
    server.sql(
        "shop",
        "DELETE FROM orders WHERE id > 100; DROP TABLE `order lines`; CREATE TABLE extra (id int); INSERT INTO extra VALUES (1),(2);",
    );
    let dry = run(work.path(), "shop", &["restore", "shop", "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    for expected in [
        "MariaDB database shop on 127.0.0.1:",
        "mariadb-dump header and `-- Dump completed` trailer",
        "tables in the target but not in the backup (the dump drops and recreates only its own tables: they stay as they are): extra",
        "tables in the backup but not in the target (created): order lines",
        "compatible (same major version)",
    ] {
        assert!(dry.stdout.contains(expected), "{expected}: {}", dry.stdout);
    }
    let restored = run(work.path(), "shop", &["restore", "shop", "--yes"]);
    assert_eq!(restored.code, 0, "{restored:?}");
    assert!(
        restored.stdout.contains("row counts of 4 tables match"),
        "{}",
        restored.stdout
    );
    let mut now = server.contents("shop");
    assert_eq!(now.remove("extra").as_deref(), Some("1\n2"));
    assert_eq!(now, at_backup, "every table as at backup time");
    assert_eq!(pre_restore_ids(&folder).len(), 1);

    // Into a database that does not exist yet: created, no safety backup.
    let fresh = run(
        work.path(),
        "shop",
        &["restore", "shop", "--to", "shop_fresh", "--yes"],
    );
    assert_eq!(fresh.code, 0, "{fresh:?}");
    assert_eq!(server.contents("shop_fresh"), at_backup);
    assert_eq!(pre_restore_ids(&folder).len(), 1);

    // A drill: a marked scratch database, checked and dropped; one a killed
    // drill of this policy left is dropped too, a look-alike without the
    // marker is someone else's and stays.
    let prefix = backup::database::mysql::scratch_database_prefix("shop");
    let abandoned = format!("{prefix}deadbeef");
    let lookalike = format!("{prefix}cafef00d");
    server.sql(
        "",
        &format!(
            "CREATE DATABASE {abandoned}; CREATE TABLE {abandoned}.backup_drill_marker (marker varchar(255)); INSERT INTO {abandoned}.backup_drill_marker VALUES ('{}'); CREATE DATABASE {lookalike}; CREATE TABLE {lookalike}.backup_drill_marker (marker varchar(255));",
            backup::database::mysql::scratch_marker("shop")
        ),
    );
    let drill = run(work.path(), "shop", &["verify", "--restore-test"]);
    assert_eq!(drill.code, 0, "{drill:?}");
    let left = server.sql(
        "",
        &format!(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '{prefix}%'"
        ),
    );
    assert_eq!(
        left, lookalike,
        "the drill's and the abandoned scratch databases are gone"
    );
    let evidence = files_under(&work.path().join(".state/restore-tests/shop"));
    let record: serde_json::Value = serde_json::from_slice(&evidence[0].1).unwrap();
    assert_eq!(record["result"], "passed", "{record}");
    assert_eq!(record["row_counts"]["orders"]["actual"], 3004);
    server.sql(
        "",
        &format!("DROP DATABASE {lookalike}; DROP DATABASE stock; DROP DATABASE shop_fresh"),
    );
}

#[test]
fn mysql_failures_leave_nothing_and_keep_earlier_backups() {
    setup("failing");
    let work = tempfile::tempdir().unwrap();
    policy(work.path(), "good", "failing", "");
    let taken = run(work.path(), "good", &["run", "good"]);
    assert_eq!(taken.code, 0, "{taken:?}");
    let store = work.path().join("store");
    let before = files_under(&store);

    // A mariadb-dump that is killed part way through its output.
    let killed = work.path().join("bin-killed");
    std::fs::create_dir_all(&killed).unwrap();
    let script = killed.join("mariadb-dump");
    std::fs::write(
        &script,
        "#!/bin/bash\n/usr/bin/mariadb-dump \"$@\" | head -c 20000; kill -9 $$\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let down = format!(
        "mysql://app@127.0.0.1:{}/failing",
        common::postgres::free_port()
    );
    let cases = [
        ("server down", down.as_str(), PASSWORD, "", "Can't connect"),
        (
            "wrong password",
            &server().url("failing") as &str,
            "not-the-password",
            "",
            "Access denied",
        ),
        (
            "missing database",
            &server().url("no_such_db"),
            PASSWORD,
            "",
            "Unknown database",
        ),
        (
            "dump killed",
            &server().url("failing"),
            PASSWORD,
            &format!("\n      bin-dir: {}", killed.display()) as &str,
            "mariadb-dump failed (signal: 9",
        ),
    ];
    for (case, url, password, extra, expected) in cases {
        let source = format!(
            "    mysql:\n      url: {url}\n      password: ${{env:BACKUP_TEST_MYSQL_PASSWORD}}{extra}"
        );
        write_policy(work.path(), "bad", &source, &store);
        let result: Run = backup(work.path())
            .env("BACKUP_TEST_MYSQL_PASSWORD", password)
            .args(["-p", "bad.yaml", "run", "bad"])
            .output()
            .unwrap()
            .into();
        assert_eq!(result.code, 1, "{case}: {result:?}");
        assert!(
            result.stderr.contains(expected),
            "{case}: {}",
            result.stderr
        );
        assert!(
            result.stderr.contains("backup of `bad` failed"),
            "{case}: {}",
            result.stderr
        );
        assert!(
            !result.stderr.contains(PASSWORD),
            "{case}: password in the error"
        );
        assert_nothing_left(&store.join("bad"));
        assert_eq!(
            files_under(&store.join("good")),
            before,
            "{case}: earlier backups changed"
        );
    }
    // No option file outlives its command.
    let tmp = work.path().join(".state/tmp");
    let left: Vec<PathBuf> = files_under(&tmp)
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    assert!(left.is_empty(), "scratch files left: {left:?}");
    server().sql("", "DROP DATABASE failing");
}

/// The command lines and environments of every process of this machine that
/// mention `needle`, and the option files of the `mariadb-dump`s of
/// `database` seen (other tests dump too), with their permissions.
fn scan_processes(needle: &str, database: &str) -> (Vec<String>, Vec<(PathBuf, u32)>) {
    let mut found = Vec::new();
    let mut dump_seen = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let path = entry.path();
        let Ok(cmdline) = std::fs::read(path.join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("mariadb-dump")
            && cmdline.trim_end().ends_with(&format!(" -- {database}"))
            && let Some(options) = cmdline
                .split(' ')
                .find_map(|argument| argument.strip_prefix("--defaults-extra-file="))
        {
            if let Ok(metadata) = std::fs::metadata(options) {
                dump_seen.push((
                    PathBuf::from(options),
                    metadata.permissions().mode() & 0o777,
                ));
            }
            let environ = std::fs::read(path.join("environ")).unwrap_or_default();
            if String::from_utf8_lossy(&environ).contains(needle) {
                found.push(format!("environment of {cmdline}"));
            }
        }
        if cmdline.contains(needle) {
            found.push(cmdline);
        }
    }
    (found, dump_seen)
}

#[test]
fn the_mysql_password_is_never_in_argv_output_state_or_sidecars() {
    setup("canary");
    server().sql(
        "canary",
        "CREATE TABLE big (id int, filler text); INSERT INTO big SELECT seq, REPEAT('x', 2000) FROM seq_1_to_3000;",
    );
    let work = tempfile::tempdir().unwrap();
    // A mariadb-dump that dawdles while its output is read, so that its
    // command line can be seen.
    let slow = work.path().join("bin-slow");
    std::fs::create_dir_all(&slow).unwrap();
    let script = slow.join("mariadb-dump");
    std::fs::write(
        &script,
        "#!/bin/bash\nexec -a mariadb-dump /usr/bin/mariadb-dump \"$@\" | { sleep 2; cat; }\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("/usr/bin/mariadb", slow.join("mariadb")).unwrap();
    // The password comes from a file outside the test's folder, so that
    // neither this test's environment nor its folder holds it to begin with.
    let secrets = tempfile::tempdir().unwrap();
    let password_file = secrets.path().join("mysql-password");
    std::fs::write(&password_file, PASSWORD).unwrap();
    let source = format!(
        "    mysql:\n      url: {}\n      password: ${{file:{}}}\n      bin-dir: {}",
        server().url("canary"),
        password_file.display(),
        slow.display()
    );
    write_policy(work.path(), "canary", &source, &work.path().join("store"));
    let run = |args: &[&str]| -> Run {
        backup(work.path())
            .args(["-p", "canary.yaml"])
            .args(args)
            .output()
            .unwrap()
            .into()
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scanner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut leaks = Vec::new();
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (found, dump_seen) = scan_processes(PASSWORD, "canary");
                for leak in found {
                    if !leaks.contains(&leak) {
                        leaks.push(leak);
                    }
                }
                seen.extend(dump_seen);
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            (leaks, seen)
        })
    };
    let result = run(&["-vvv", "run", "canary"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (leaks, seen) = scanner.join().unwrap();
    assert_eq!(result.code, 0, "{result:?}");
    assert!(!seen.is_empty(), "the dump ran unseen");
    for (options, mode) in &seen {
        assert_eq!(*mode, 0o600, "{}", options.display());
        assert!(
            options.starts_with(work.path().join(".state/tmp")),
            "the option file is not in the state folder: {}",
            options.display()
        );
        assert!(!options.exists(), "{} outlived the dump", options.display());
    }
    assert!(leaks.is_empty(), "the password in a process: {leaks:?}");
    for output in [&result.stdout, &result.stderr] {
        assert!(!output.contains(PASSWORD), "password in output");
    }
    let restored = run(&["restore", "canary", "--to", "canary_copy", "--yes"]);
    assert_eq!(restored.code, 0, "{restored:?}");
    assert!(!restored.stdout.contains(PASSWORD) && !restored.stderr.contains(PASSWORD));
    // Into a URL that holds the password, given as a reference.
    let url_file = secrets.path().join("restore-url");
    std::fs::write(
        &url_file,
        format!(
            "mysql://app:{PASSWORD}@127.0.0.1:{}/canary_url",
            server().port
        ),
    )
    .unwrap();
    let to = format!("${{file:{}}}", url_file.display());
    let by_url = run(&["restore", "canary", "--to", &to, "--yes"]);
    assert_eq!(by_url.code, 0, "{by_url:?}");
    assert!(!by_url.stdout.contains(PASSWORD) && !by_url.stderr.contains(PASSWORD));
    assert_eq!(server().contents("canary_url"), server().contents("canary"));
    for (path, bytes) in files_under(work.path()) {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(PASSWORD),
            "password in {}",
            path.display()
        );
    }
    server().sql(
        "",
        "DROP DATABASE canary; DROP DATABASE canary_copy; DROP DATABASE canary_url",
    );
}

#[test]
fn a_mysql_restore_that_fails_part_way_is_rolled_back_from_the_safety_backup() {
    let server = server();
    setup("rollback");
    let work = tempfile::tempdir().unwrap();
    // The real clients, and a `mariadb` that, once armed, feeds the restore
    // only the first 30 kB of the dump (its first tables are replaced by
    // then) and fails; queries (`--skip-column-names`) and the rollback go
    // through untouched.
    let bin = work.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let armed = work.path().join("armed");
    let script = bin.join("mariadb");
    std::fs::write(
        &script,
        format!(
            "#!/bin/bash\ncase \"$*\" in *--skip-column-names*) exec /usr/bin/mariadb \"$@\";; esac\nif [ -e {armed} ]; then rm {armed}; head -c 30000 | /usr/bin/mariadb \"$@\"; exit 1; fi\nexec /usr/bin/mariadb \"$@\"\n",
            armed = armed.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("/usr/bin/mariadb-dump", bin.join("mariadb-dump")).unwrap();
    policy(
        work.path(),
        "rollback",
        "rollback",
        &format!("\n      bin-dir: {}", bin.display()),
    );
    let taken = run(work.path(), "rollback", &["run", "rollback"]);
    assert_eq!(taken.code, 0, "{taken:?}");
    server.sql(
        "rollback",
        "DELETE FROM orders WHERE id > 10; CREATE TABLE extra (id int); INSERT INTO extra VALUES (7);",
    );
    let before = server.contents("rollback");

    std::fs::write(&armed, "").unwrap();
    let failed = run(work.path(), "rollback", &["restore", "rollback", "--yes"]);
    assert!(!armed.exists(), "the restore went through the armed client");
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(
        failed.stderr.contains("the mariadb client failed"),
        "{}",
        failed.stderr
    );
    assert!(
        failed
            .stderr
            .contains("Rolled back: restored the safety backup"),
        "{}",
        failed.stderr
    );
    assert_eq!(
        server.contents("rollback"),
        before,
        "the database as it was before the restore"
    );
    let log = std::fs::read_to_string(work.path().join(".state/logs/restore.jsonl")).unwrap();
    assert!(log.contains("\"rolled-back\""), "{log}");
    assert!(!log.contains(PASSWORD));
    server.sql("", "DROP DATABASE rollback");
}

#[test]
fn a_full_disk_fails_the_mysql_backup_and_keeps_earlier_ones() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let Some(_tmpfs) = common::Tmpfs::mount(&store, "1m") else {
        assert!(
            !common::postgres::running_as_root(),
            "running as root, mounting a tmpfs must work"
        );
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    };
    let server = server();
    server.sql("", "DROP DATABASE IF EXISTS full; CREATE DATABASE full");
    server.sql(
        "full",
        "CREATE TABLE t (v blob); INSERT INTO t VALUES (RANDOM_BYTES(1000));",
    );
    policy(work.path(), "full", "full", "");
    let taken = run(work.path(), "full", &["run", "full"]);
    assert_eq!(taken.code, 0, "{taken:?}");
    let before = files_under(&store.join("full"));
    assert_eq!(before.len(), 2, "one backup: data and sidecar");

    // About 3 MB of incompressible bytes: more than the 1 MiB file system holds.
    server.sql(
        "full",
        "INSERT INTO t SELECT RANDOM_BYTES(1024) FROM seq_1_to_3000;",
    );
    let result = run(work.path(), "full", &["run", "full"]);
    assert_eq!(result.code, 1, "{result:?}");
    assert!(
        result.stderr.contains("No space left on device"),
        "{}",
        result.stderr
    );
    assert_eq!(
        files_under(&store.join("full")),
        before,
        "the failed backup left something, or changed the earlier one"
    );
    let verified = run(work.path(), "full", &["verify"]);
    assert_eq!(verified.code, 0, "{verified:?}");
    server.sql("", "DROP DATABASE full");
}

#[test]
fn zstd_and_age_mysql_backups_restore_with_backup_and_with_the_stock_tools() {
    let server = server();
    setup("sealed");
    let work = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (identity, public) = common::age_keygen(keys.path(), "key.txt");
    policy(
        work.path(),
        "sealed",
        "sealed",
        &format!(
            "\n  compression:\n    zstd: {{level: 3}}\n  encryption:\n    age:\n      recipients: [{}]\n      identity: ${{file:{}}}",
            public.trim(),
            identity.display()
        ),
    );
    let taken = run(work.path(), "sealed", &["run", "sealed"]);
    assert_eq!(taken.code, 0, "{taken:?}");
    let folder = work.path().join("store/sealed");
    let metadata = sidecars(&folder).pop().expect("a sidecar");
    let name = metadata["artifact"]["name"].as_str().unwrap().to_owned();
    assert!(name.ends_with(".mysql.zst.age"), "{name}");
    assert_eq!(metadata["source"]["row_counts"]["orders"], 3004);
    let at_backup = server.contents("sealed");

    // age -d | zstd -d | mariadb: the stock tools alone.
    server.sql(
        "",
        "DROP DATABASE IF EXISTS sealed_stock; CREATE DATABASE sealed_stock",
    );
    shell(&format!(
        "age -d -i {} {} | zstd -d | mariadb --no-defaults --socket={} -u root sealed_stock",
        identity.display(),
        folder.join(&name).display(),
        server.socket().display()
    ));
    assert_eq!(server.contents("sealed_stock"), at_backup);

    // backup restore (decrypted with the policy's identity) and a drill.
    let restored = run(
        work.path(),
        "sealed",
        &["restore", "sealed", "--to", "sealed_copy", "--yes"],
    );
    assert_eq!(restored.code, 0, "{restored:?}");
    assert_eq!(server.contents("sealed_copy"), at_backup);
    let drill = run(work.path(), "sealed", &["verify", "--restore-test"]);
    assert_eq!(drill.code, 0, "{drill:?}");
    server.sql(
        "",
        "DROP DATABASE sealed; DROP DATABASE sealed_stock; DROP DATABASE sealed_copy",
    );
}
