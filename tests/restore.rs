//! `backup restore` and `backup verify --restore-test` against real SQLite
//! files and a throwaway PostgreSQL cluster: round trips compared table by
//! table, damage refused before the target is touched, faults injected at
//! each step (a killed `pg_restore`, a full disk, a rename that fails), and
//! a hot WAL with other connections open. Tests that need root (mounts) say
//! so and pass when not run as root.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::postgres::{Cluster, PASSWORD, running_as_root};
use common::{Run, backup, files_under, pre_restore_ids, run, sidecars, sqlite3, write_policy};

/// Every table's full contents, schema included, as `sqlite3 .dump` prints them.
fn dump(database: &Path) -> String {
    let output = Command::new("sqlite3")
        .arg(database)
        .arg(".dump")
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Files next to the target other than the ones named.
fn strays(folder: &Path, expected: &[&str]) -> Vec<String> {
    std::fs::read_dir(folder)
        .unwrap()
        .flatten()
        .filter(|entry| entry.path() != common::tmpdir(folder))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| !expected.contains(&name.as_str()))
        .collect()
}

/// A folder with an SQLite database `app.db` and policy `app.yaml` (backups in `store/`).
struct Sqlite {
    dir: tempfile::TempDir,
}

impl Sqlite {
    fn new() -> Sqlite {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Sqlite { dir };
        sqlite3(
            &sqlite.db(),
            "PRAGMA foreign_keys = ON;
             CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, note BLOB);
             CREATE TABLE orders (id INTEGER PRIMARY KEY AUTOINCREMENT, customer INTEGER REFERENCES customers(id), total REAL);
             CREATE TABLE tags (tag TEXT PRIMARY KEY, weight INTEGER) WITHOUT ROWID;
             CREATE INDEX orders_customer ON orders(customer);
             WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 200)
               INSERT INTO customers SELECT i, 'customer ' || i, randomblob(i % 17) FROM c;
             WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 1000)
               INSERT INTO orders (customer, total) SELECT 1 + i % 200, i * 1.25 FROM c;
             INSERT INTO tags VALUES ('a', 1), ('b', 2), ('c', NULL);",
        );
        write_policy(
            sqlite.dir.path(),
            "app",
            "    sqlite:\n      path: app.db",
            &sqlite.store(),
        );
        sqlite
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("app.db")
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn folder(&self) -> PathBuf {
        self.store().join("app")
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut all = vec!["-p", "app.yaml"];
        all.extend_from_slice(args);
        run(self.path(), &all)
    }

    fn backup(&self) -> String {
        let result = self.run(&["run", "app"]);
        assert_eq!(result.code, 0, "{result:?}");
        result
            .stdout
            .split_whitespace()
            .nth(4)
            .unwrap()
            .trim_end_matches(':')
            .to_owned()
    }

    fn change(&self) {
        sqlite3(
            &self.db(),
            "INSERT INTO customers VALUES (1001, 'new', NULL);
             UPDATE orders SET total = -1 WHERE id % 7 = 0;
             DELETE FROM orders WHERE id > 900;
             DROP TABLE tags;
             CREATE TABLE extra (x);",
        );
    }

    fn log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path().join(".state/logs/restore.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

#[test]
fn sqlite_round_trip_restores_every_table_as_it_was() {
    let sqlite = Sqlite::new();
    let id = sqlite.backup();
    let at_backup = dump(&sqlite.db());
    sqlite.change();
    let changed = dump(&sqlite.db());
    assert_ne!(changed, at_backup);

    // Without a terminal and without --yes: a usage error, nothing done.
    let refused = sqlite.run(&["restore", "app"]);
    assert_eq!(refused.code, 64, "{refused:?}");
    assert_eq!(dump(&sqlite.db()), changed);

    let dry = sqlite.run(&["restore", "app", "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(
        dry.stdout.contains("Dry run: nothing was changed."),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains("tables in the target but not in the backup (the restore removes them with the old file): extra"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout
            .contains("tables in the backup but not in the target (created): tags"),
        "{}",
        dry.stdout
    );
    assert_eq!(dump(&sqlite.db()), changed);
    assert!(pre_restore_ids(&sqlite.folder()).is_empty());

    let restored = sqlite.run(&["restore", "app", "--yes"]);
    assert_eq!(restored.code, 0, "{restored:?}");
    assert_eq!(
        dump(&sqlite.db()),
        at_backup,
        "every table as at backup time"
    );
    assert_eq!(sqlite3(&sqlite.db(), "PRAGMA integrity_check"), "ok");
    for step in ["safety backup", "restore", "check"] {
        assert!(
            restored.stdout.contains(&format!("done   {step}")),
            "{}",
            restored.stdout
        );
    }
    assert!(
        restored
            .stdout
            .contains(&format!("Restored app from backup {id}"))
    );
    assert_eq!(
        strays(sqlite.path(), &["app.db", "app.yaml", "store", ".state"]),
        Vec::<String>::new()
    );

    // The safety backup is listed, tagged, and holds the state before the restore.
    let safety = pre_restore_ids(&sqlite.folder());
    assert_eq!(safety.len(), 1);
    let list = sqlite.run(&["list"]);
    assert!(
        list.stdout.contains(&format!("{}  ", safety[0])),
        "{}",
        list.stdout
    );
    assert!(
        list.stdout.contains("complete [pre-restore]"),
        "{}",
        list.stdout
    );
    let log = sqlite.log();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["result"], "restored");
    assert_eq!(log[0]["backup"], id.as_str());
    assert_eq!(log[0]["safety_backup"], safety[0].as_str());
    let steps: Vec<&str> = log[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["verify", "inspect", "safety backup", "restore", "check"]
    );

    // `latest` still means the scheduled backup, never the safety one.
    let again = sqlite.run(&["restore", "app", "--dry-run"]);
    assert!(
        again.stdout.contains(&format!("backup        {id} ")),
        "{}",
        again.stdout
    );

    // Restoring the safety backup brings the changed state back.
    let back = sqlite.run(&["restore", "app", "--backup", &safety[0], "--yes"]);
    assert_eq!(back.code, 0, "{back:?}");
    assert_eq!(dump(&sqlite.db()), changed);

    // A new target needs no safety backup; it is created private.
    let copy = sqlite.path().join("copy.db");
    let fresh = sqlite.run(&["restore", "app", "--to", copy.to_str().unwrap(), "--yes"]);
    assert_eq!(fresh.code, 0, "{fresh:?}");
    assert!(
        !fresh.stdout.contains("safety backup  "),
        "{}",
        fresh.stdout
    );
    assert_eq!(dump(&copy), at_backup);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(pre_restore_ids(&sqlite.folder()).len(), 2);

    // Through a symlink, the file it points to is restored; the link stays.
    let link = sqlite.path().join("link.db");
    std::os::unix::fs::symlink(&copy, &link).unwrap();
    sqlite3(&copy, "DELETE FROM orders");
    let linked = sqlite.run(&["restore", "app", "--to", "link.db", "--yes"]);
    assert_eq!(linked.code, 0, "{linked:?}");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(dump(&copy), at_backup);
}

#[test]
fn dry_run_prints_the_restore_plan() {
    let sqlite = Sqlite::new();
    let id = sqlite.backup();
    sqlite.change();
    let dry = sqlite.run(&["restore", "app", "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    let sidecar = &sidecars(&sqlite.folder())[0];
    let size = |value: &serde_json::Value| backup::cli::human_bytes(value.as_u64().unwrap());
    let target_size = backup::cli::human_bytes(std::fs::metadata(sqlite.db()).unwrap().len());
    let mut text = dry
        .stdout
        .replace(&sqlite.path().display().to_string(), "[DIR]")
        .replace(&id, "[ID]")
        .replace(&format!("exists, {target_size}"), "exists, [TARGET SIZE]")
        .replace(&size(&sidecar["artifact"]["size"]), "[STORED]")
        .replace(&size(&sidecar["artifact"]["uncompressed_size"]), "[SIZE]")
        .replace(
            sidecar["source"]["server_version"].as_str().unwrap(),
            "[SQLITE]",
        );
    let created = sidecar["created_at"].as_str().unwrap();
    text = text.replace(
        &format!("{} {}", &created[..10], &created[11..19]),
        "[TIME]",
    );
    let text: String = text
        .lines()
        .map(|line| match line.split_once(" available") {
            Some((head, _)) if line.trim_start().starts_with("space") => {
                format!("{}, [FREE] available\n", head.rsplit_once(", ").unwrap().0)
            }
            _ => format!("{line}\n"),
        })
        .collect();
    insta::assert_snapshot!(text);
}

/// Flips bit `bit` of byte `offset` of `path`.
fn flip(path: &Path, offset: usize, bit: u8) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 1 << bit;
    std::fs::write(path, bytes).unwrap();
}

fn truncate(path: &Path, length: usize) {
    let bytes = std::fs::read(path).unwrap();
    std::fs::write(path, &bytes[..length]).unwrap();
}

/// A small deterministic generator (xorshift64*).
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

#[test]
fn a_thousand_bit_flips_and_truncations_are_refused_before_the_target_is_touched() {
    let sqlite = Sqlite::new();
    let id = sqlite.backup();
    sqlite.change();
    let target_bytes = std::fs::read(sqlite.db()).unwrap();
    let folder = sqlite.folder();
    let pristine: Vec<(PathBuf, Vec<u8>)> = files_under(&folder);
    assert_eq!(pristine.len(), 2);
    let artifact = pristine
        .iter()
        .find(|(path, _)| !path.to_string_lossy().ends_with(".json"))
        .unwrap()
        .0
        .clone();
    let sidecar = folder.join(format!("{id}.json"));
    let restore_back = || {
        for (path, bytes) in &pristine {
            std::fs::write(path, bytes).unwrap();
        }
    };

    // In-process: exactly what `restore` does before it writes anything.
    let loaded = backup::policy::load(&[sqlite.path().join("app.yaml")], Default::default());
    let policy = &loaded.policies[0];
    let request = backup::restore::Request {
        backup: backup::restore::Choice::Latest,
        from: None,
        to: None,
        jobs: None,
        lock_timeout: None,
        // What a restore checks before it writes: the stored bytes only.
        dry_run: false,
    };
    assert!(
        backup::restore::prepare(policy, &request).is_ok(),
        "the undamaged backup passes"
    );
    let mut random = Random(0x5eed_1234_abcd_0001);
    let mut kinds = BTreeMap::new();
    for round in 0..1000 {
        restore_back();
        let (file, what) = match random.below(10) {
            0..=5 => (&artifact, "artifact bit flip"),
            6..=7 => (&sidecar, "sidecar bit flip"),
            8 => (&artifact, "artifact truncation"),
            _ => (&sidecar, "sidecar truncation"),
        };
        let length = std::fs::metadata(file).unwrap().len() as usize;
        let detail = if what.ends_with("flip") {
            let (offset, bit) = (random.below(length), random.below(8) as u8);
            flip(file, offset, bit);
            format!("byte {offset} bit {bit}")
        } else {
            let keep = random.below(length);
            truncate(file, keep);
            format!("to {keep} bytes")
        };
        *kinds.entry(what).or_insert(0) += 1;
        let prepared = backup::restore::prepare(policy, &request);
        assert!(
            prepared.is_err(),
            "round {round}: {what} ({detail}) was not detected"
        );
    }
    assert_eq!(kinds.values().sum::<i32>(), 1000);
    assert_eq!(std::fs::read(sqlite.db()).unwrap(), target_bytes);

    // Through the binary: refused with exit 5, the target byte for byte as it was.
    let cases: [(&Path, &str); 5] = [
        (&artifact, "flip 40"),
        (&artifact, "flip last"),
        (&artifact, "truncate"),
        (&sidecar, "flip 30"),
        (&sidecar, "truncate"),
    ];
    for (file, case) in cases {
        restore_back();
        let length = std::fs::metadata(file).unwrap().len() as usize;
        match case {
            "flip 40" => flip(file, 40, 3),
            "flip last" => flip(file, length - 1, 0),
            "flip 30" => flip(file, 30, 1),
            _ => truncate(file, length / 2),
        }
        let result = sqlite.run(&["restore", "app", "--yes"]);
        assert_eq!(result.code, 5, "{case} on {}: {result:?}", file.display());
        assert!(
            result.stderr.contains("failed verification"),
            "{}",
            result.stderr
        );
        assert!(
            result.stderr.contains("nothing was changed"),
            "{}",
            result.stderr
        );
        assert_eq!(std::fs::read(sqlite.db()).unwrap(), target_bytes, "{case}");
        let verified = sqlite.run(&["verify"]);
        assert_eq!(
            verified.code, 5,
            "verify finds it too: {case}: {verified:?}"
        );
        assert_eq!(files_under(&folder).len(), 2, "no safety backup was taken");
        assert_eq!(
            strays(sqlite.path(), &["app.db", "app.yaml", "store", ".state"]),
            Vec::<String>::new()
        );
    }
    let log = sqlite.log();
    assert_eq!(log.len(), 5);
    assert!(log.iter().all(|record| record["result"] == "refused"));

    // verify --restore-test fails the same way, with evidence.
    let drill = sqlite.run(&["verify", "--restore-test", "app"]);
    assert_eq!(drill.code, 5, "{drill:?}");
    let evidence = files_under(&sqlite.path().join(".state/restore-tests/app"));
    let record: serde_json::Value = serde_json::from_slice(&evidence[0].1).unwrap();
    assert_eq!(record["result"], "failed");
}

#[test]
fn restore_test_restores_into_a_scratch_file_and_keeps_evidence() {
    let sqlite = Sqlite::new();
    let id = sqlite.backup();
    std::fs::create_dir(common::tmpdir(sqlite.path())).unwrap();
    let drill = sqlite.run(&["verify", "--restore-test", "app"]);
    assert_eq!(drill.code, 0, "{drill:?}");
    assert!(
        drill.stdout.contains(&format!("ok      app {id}")),
        "{}",
        drill.stdout
    );
    let evidence = files_under(&sqlite.path().join(".state/restore-tests/app"));
    assert_eq!(evidence.len(), 1);
    let record: serde_json::Value = serde_json::from_slice(&evidence[0].1).unwrap();
    assert_eq!(record["result"], "passed");
    assert_eq!(record["backup"], id.as_str());
    assert_eq!(record["row_counts"]["orders"]["expected"], 1000);
    assert_eq!(record["row_counts"]["orders"]["actual"], 1000);
    assert_eq!(record["row_counts"]["customers"]["actual"], 200);
    let sidecar = &sidecars(&sqlite.folder())[0];
    assert_eq!(record["artifact"]["sha256"], sidecar["artifact"]["sha256"]);
    let steps: Vec<&str> = record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["verify", "restore", "check", "drop scratch"]);
    // Only folders this test owns are looked at: the run's own TMPDIR and
    // the state folder's scratch folder, where the scratch file was.
    assert_eq!(
        strays(&common::tmpdir(sqlite.path()), &[]),
        Vec::<String>::new(),
        "nothing is left in TMPDIR"
    );
    assert_eq!(
        strays(&sqlite.path().join(".state/tmp"), &[]),
        Vec::<String>::new(),
        "the scratch file is removed"
    );
}

#[test]
fn a_restore_waits_for_no_one_and_refuses_while_the_policy_is_locked() {
    let sqlite = Sqlite::new();
    sqlite.backup();
    let state = backup::state::StateDir::new(&sqlite.path().join(".state"));
    let _lock = state.lock("app").unwrap();
    let result = sqlite.run(&["restore", "app", "--yes"]);
    assert_eq!(result.code, 4, "{result:?}");
    // A drill skips a locked policy, says so, and exits 4 too.
    let drill = sqlite.run(&["verify", "--restore-test"]);
    assert_eq!(drill.code, 4, "{drill:?}");
    assert!(
        drill.stdout.contains("0 passed, 0 failed, 1 skipped"),
        "{}",
        drill.stdout
    );
}

#[test]
fn the_lock_file_names_the_command_and_never_its_arguments() {
    let sqlite = Sqlite::new();
    sqlite.backup();
    // A target that could be a connection URL with a password.
    let secret = "Lock-Secret-77";
    let _ = sqlite.run(&[
        "restore",
        "app",
        "--to",
        &format!("postgresql://user:{secret}@127.0.0.1:1/elsewhere"),
        "--dry-run",
    ]);
    let lock = std::fs::read_to_string(sqlite.path().join(".state/locks/app.lock")).unwrap();
    assert!(lock.contains(": backup restore"), "{lock}");
    assert!(!lock.contains(secret), "{lock}");
}

#[test]
fn on_a_terminal_a_restore_goes_ahead_only_on_yes() {
    let sqlite = Sqlite::new();
    let id = sqlite.backup();
    let at_backup = dump(&sqlite.db());
    sqlite.change();
    let changed = dump(&sqlite.db());
    // `script` runs restore on a pseudo-terminal and types the answer.
    let on_a_terminal =
        |answer: &str| common::on_a_terminal(sqlite.path(), "-p app.yaml restore app", answer);
    let (code, shown) = on_a_terminal("no\n");
    assert_eq!(code, 1, "{shown}");
    assert!(
        shown.contains(&format!(
            "Do you want to replace SQLite file {} with backup {id}?",
            sqlite.db().display()
        )),
        "{shown}"
    );
    assert!(
        shown.contains("Restore cancelled; nothing was changed."),
        "{shown}"
    );
    assert_eq!(dump(&sqlite.db()), changed);
    assert!(pre_restore_ids(&sqlite.folder()).is_empty());
    let (code, shown) = on_a_terminal("yes\n");
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("Restored app from backup"), "{shown}");
    assert_eq!(dump(&sqlite.db()), at_backup);
}

#[test]
fn sqlite_target_with_a_hot_wal_and_other_connections_open() {
    let sqlite = Sqlite::new();
    let writer = rusqlite::Connection::open(sqlite.db()).unwrap();
    let mode: String = writer
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let id = sqlite.backup();
    let at_backup = dump(&sqlite.db());

    // Rows that live only in the WAL, with another connection reading.
    writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    writer
        .execute_batch(
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 500)
               INSERT INTO orders (customer, total) SELECT 1, i FROM c;
             DELETE FROM customers WHERE id > 150 AND id NOT IN (SELECT customer FROM orders);",
        )
        .unwrap();
    let wal = PathBuf::from(format!("{}-wal", sqlite.db().display()));
    assert!(std::fs::metadata(&wal).unwrap().len() > 0, "a hot WAL");
    let reader = rusqlite::Connection::open(sqlite.db()).unwrap();
    let rows: i64 = reader
        .query_row("SELECT count(*) FROM orders", [], |row| row.get(0))
        .unwrap();
    assert_eq!(rows, 1500);
    let with_wal = dump(&sqlite.db());

    let result = sqlite.run(&["restore", "app", "--yes"]);
    assert_eq!(result.code, 0, "{result:?}");
    assert!(result.stdout.contains("WAL mode kept"), "{}", result.stdout);
    // A new connection sees exactly the backup: no stale WAL frame was applied.
    assert_eq!(dump(&sqlite.db()), at_backup);
    assert_eq!(sqlite3(&sqlite.db(), "PRAGMA journal_mode"), "wal");
    assert_eq!(sqlite3(&sqlite.db(), "PRAGMA integrity_check"), "ok");

    // The safety backup holds what was in the WAL.
    let safety = pre_restore_ids(&sqlite.folder());
    let copy = sqlite.path().join("safety.db");
    let check = sqlite.run(&[
        "restore",
        "app",
        "--backup",
        &safety[0],
        "--to",
        copy.to_str().unwrap(),
        "--yes",
    ]);
    assert_eq!(check.code, 0, "{check:?}");
    assert_eq!(dump(&copy), with_wal);

    // The old connections closing does not disturb the new file.
    drop(reader);
    drop(writer);
    assert_eq!(dump(&sqlite.db()), at_backup);
    assert_eq!(sqlite3(&sqlite.db(), "PRAGMA integrity_check"), "ok");
    let _ = id;
}

/// Runs `command`, asserting it succeeds.
fn checked(command: &mut Command) {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Unmounts `path` when dropped, also when a test fails.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).output();
    }
}

#[test]
fn disk_full_on_the_sqlite_target_leaves_it_as_it_was() {
    if !running_as_root() {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    checked(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(&small),
    );
    let _mount = Mount(small.clone());
    let db = small.join("app.db");
    sqlite3(
        &db,
        "CREATE TABLE blobs (x BLOB);
         WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 100)
           INSERT INTO blobs SELECT randomblob(8000) FROM c;",
    );
    // The backup lives on the big disk only; the policy restored with also
    // keeps its safety backups on the small one, which fills it.
    let source = format!("    sqlite:\n      path: {}", db.display());
    let big = dir.path().join("big");
    std::fs::create_dir(dir.path().join("taking")).unwrap();
    write_policy(&dir.path().join("taking"), "app", &source, &big);
    let taken = run(dir.path(), &["-p", "taking/app.yaml", "run", "app"]);
    assert_eq!(taken.code, 0, "{taken:?}");
    sqlite3(&db, "DELETE FROM blobs WHERE rowid % 2 = 0; VACUUM;");
    sqlite3(
        &db,
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 45) INSERT INTO blobs SELECT randomblob(8000) FROM c;",
    );
    let before = std::fs::read(&db).unwrap();
    let policy = format!(
        "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: app\nspec:\n  source:\n{source}\n  schedule:\n    cron: \"@daily\"\n  retention:\n    keep-last: 3\n  destinations:\n    - local:\n        path: {}\n    - local:\n        path: {}\n",
        small.join("store").display(),
        big.display()
    );
    std::fs::write(dir.path().join("app.yaml"), policy).unwrap();

    let result = run(
        dir.path(),
        &[
            "-p",
            "app.yaml",
            "restore",
            "app",
            "--from",
            big.to_str().unwrap(),
            "--yes",
        ],
    );
    assert_eq!(result.code, 1, "{result:?}");
    assert!(
        result.stderr.contains("No space left on device"),
        "{}",
        result.stderr
    );
    assert!(
        result.stderr.contains("The target was not changed."),
        "{}",
        result.stderr
    );
    assert!(
        std::fs::read(&db).unwrap() == before,
        "the target is byte for byte as it was"
    );
    assert_eq!(strays(&small, &["app.db", "store"]), Vec::<String>::new());
    assert_eq!(pre_restore_ids(&small.join("store/app")).len(), 1);
    let list = run(dir.path(), &["-p", "app.yaml", "list"]);
    assert!(list.stdout.contains("[pre-restore]"), "{}", list.stdout);
}

#[test]
fn a_failing_rename_leaves_the_sqlite_target_as_it_was() {
    if !running_as_root() {
        eprintln!("skipped: a bind mount needs root");
        return;
    }
    let sqlite = Sqlite::new();
    sqlite.backup();
    sqlite.change();
    let changed = dump(&sqlite.db());
    // A file that is a mount point cannot be renamed over (EBUSY), a real
    // condition on hosts that bind-mount databases into containers.
    checked(
        Command::new("mount")
            .arg("--bind")
            .arg(sqlite.db())
            .arg(sqlite.db()),
    );
    let mount = Mount(sqlite.db());
    let result = sqlite.run(&["restore", "app", "--yes"]);
    assert_eq!(result.code, 1, "{result:?}");
    assert!(
        result
            .stderr
            .contains("cannot rename the restored file over it"),
        "{}",
        result.stderr
    );
    assert!(
        result.stderr.contains("The target was not changed."),
        "{}",
        result.stderr
    );
    assert_eq!(dump(&sqlite.db()), changed);
    drop(mount);
    assert_eq!(dump(&sqlite.db()), changed);
    assert_eq!(
        strays(sqlite.path(), &["app.db", "app.yaml", "store", ".state"]),
        Vec::<String>::new()
    );
    assert_eq!(pre_restore_ids(&sqlite.folder()).len(), 1);
    let list = sqlite.run(&["list"]);
    assert!(list.stdout.contains("[pre-restore]"), "{}", list.stdout);
    assert_eq!(sqlite.log()[0]["result"], "failed");
}

// ---------------------------------------------------------------- PostgreSQL

/// Every user table of `database` and its full contents, sorted.
fn pg_contents(cluster: &Cluster, database: &str) -> BTreeMap<String, String> {
    cluster.contents(database)
}

fn pg_setup(cluster: &Cluster, database: &str) {
    cluster.sql("postgres", &format!("CREATE DATABASE {database}"));
    cluster.sql(
        database,
        "CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, since date);
         CREATE TABLE orders (id bigserial PRIMARY KEY, customer int REFERENCES customers(id), total numeric(12,2), note text);
         INSERT INTO customers (name, since) SELECT 'customer ' || i, date '2020-01-01' + i FROM generate_series(1, 300) i;
         INSERT INTO orders (customer, total, note) SELECT 1 + i % 300, i * 1.5, repeat(md5(i::text), 4) FROM generate_series(1, 20000) i;
         CREATE SCHEMA billing;
         CREATE TABLE billing.\"order lines\" (id bigint, sku text);
         INSERT INTO billing.\"order lines\" SELECT i, 'sku-' || i FROM generate_series(1, 777) i;
         CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;",
    );
}

fn pg_change(cluster: &Cluster, database: &str) {
    cluster.sql(
        database,
        "INSERT INTO customers (name) VALUES ('late');
         UPDATE orders SET total = 0 WHERE id % 3 = 0;
         DELETE FROM orders WHERE id > 15000;
         DROP TABLE billing.\"order lines\";
         CREATE TABLE extra (x int);
         INSERT INTO extra VALUES (1), (2);",
    );
}

fn pg_run(dir: &Path, args: &[&str]) -> Run {
    let result: Run = backup(dir)
        .env("BACKUP_TEST_PGPASSWORD", PASSWORD)
        .args(["-p", "app.yaml"])
        .args(args)
        .output()
        .unwrap()
        .into();
    assert!(!result.stdout.contains(PASSWORD) && !result.stderr.contains(PASSWORD));
    result
}

fn pg_policy(cluster: &Cluster, dir: &Path, bin_dir: Option<&Path>) {
    let mut source = format!(
        "    postgres:\n      url: {}\n      password: ${{env:BACKUP_TEST_PGPASSWORD}}",
        cluster.url("app")
    );
    if let Some(bin_dir) = bin_dir {
        source.push_str(&format!("\n      bin-dir: {}", bin_dir.display()));
    }
    write_policy(dir, "app", &source, &dir.join("store"));
}

#[test]
fn postgres_round_trip_into_the_database_a_new_one_and_in_parallel() {
    let cluster = Cluster::start();
    pg_setup(&cluster, "app");
    let work = tempfile::tempdir().unwrap();
    pg_policy(&cluster, work.path(), None);
    let taken = pg_run(work.path(), &["run", "app"]);
    assert_eq!(taken.code, 0, "{taken:?}");
    let at_backup = pg_contents(&cluster, "app");
    assert_eq!(at_backup.len(), 3);
    pg_change(&cluster, "app");
    let changed = pg_contents(&cluster, "app");

    let dry = pg_run(work.path(), &["restore", "app", "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    for expected in [
        "PostgreSQL database app on 127.0.0.1:",
        "pg_restore --list",
        "pg_restore --clean --if-exists, in one transaction",
        "tables in the target but not in the backup (pg_restore --clean leaves them as they are): public.extra",
        "tables in the backup but not in the target (created): billing.order lines",
        "streamed to the server; no local space needed",
        ": compatible (same major version)",
    ] {
        assert!(dry.stdout.contains(expected), "{expected}: {}", dry.stdout);
    }
    assert_eq!(pg_contents(&cluster, "app"), changed);

    let restored = pg_run(work.path(), &["restore", "app", "--yes"]);
    assert_eq!(restored.code, 0, "{restored:?}");
    let mut now = pg_contents(&cluster, "app");
    // pg_restore --clean leaves tables the backup does not know (as the dry run said).
    assert_eq!(now.remove("public.extra").as_deref(), Some("(1)\n(2)"));
    assert_eq!(now, at_backup, "every table as at backup time");
    assert!(
        restored.stdout.contains("row counts of 3 tables match"),
        "{}",
        restored.stdout
    );
    assert_eq!(pre_restore_ids(&work.path().join("store/app")).len(), 1);
    let list = pg_run(work.path(), &["list"]);
    assert!(list.stdout.contains("[pre-restore]"), "{}", list.stdout);

    // Into a database that does not exist yet: created, no safety backup.
    let fresh = pg_run(work.path(), &["restore", "app", "--to", "fresh", "--yes"]);
    assert_eq!(fresh.code, 0, "{fresh:?}");
    assert!(
        !fresh.stdout.contains("safety backup  "),
        "{}",
        fresh.stdout
    );
    assert_eq!(pg_contents(&cluster, "fresh"), at_backup);
    assert_eq!(pre_restore_ids(&work.path().join("store/app")).len(), 1);

    // In parallel from a local decompressed copy, into another server's URL form.
    let url = format!(
        "postgresql://postgres:{PASSWORD}@127.0.0.1:{}/parallel",
        cluster.port
    );
    let parallel = backup(work.path())
        .env("BACKUP_TEST_PGPASSWORD", PASSWORD)
        .env("RESTORE_URL", &url)
        .args([
            "-p",
            "app.yaml",
            "restore",
            "app",
            "--to",
            "${env:RESTORE_URL}",
            "--jobs",
            "2",
            "--yes",
        ])
        .output()
        .unwrap();
    let parallel: Run = parallel.into();
    assert_eq!(parallel.code, 0, "{parallel:?}");
    assert!(
        parallel.stdout.contains("pg_restore -j 2"),
        "{}",
        parallel.stdout
    );
    assert!(!parallel.stdout.contains(PASSWORD) && !parallel.stderr.contains(PASSWORD));
    assert_eq!(pg_contents(&cluster, "parallel"), at_backup);

    // A restore drill: a scratch database, checked and dropped; one left by
    // a killed drill is dropped too.
    let abandoned = format!(
        "{}deadbeef",
        backup::restore::drill::scratch_database_prefix("app", "app")
    );
    cluster.sql("postgres", &format!("CREATE DATABASE {abandoned}"));
    // Marked as a drill marks its scratch databases (only marked ones are dropped).
    cluster.sql(
        "postgres",
        &format!(
            "COMMENT ON DATABASE {abandoned} IS '{}'",
            backup::restore::drill::scratch_marker("app")
        ),
    );
    // Another policy's scratch database on the same server is not this drill's to drop.
    let other = format!(
        "{}deadbeef",
        backup::restore::drill::scratch_database_prefix("other", "app")
    );
    cluster.sql("postgres", &format!("CREATE DATABASE {other}"));
    let drill = pg_run(work.path(), &["verify", "--restore-test"]);
    assert_eq!(drill.code, 0, "{drill:?}");
    let scratch = cluster.sql(
        "postgres",
        "SELECT count(*) FROM pg_database WHERE datname LIKE '%restore_test%'",
    );
    assert_eq!(
        scratch, "1",
        "the scratch database is dropped, the other policy's kept"
    );
    cluster.sql("postgres", &format!("DROP DATABASE {other}"));
    let evidence = files_under(&work.path().join(".state/restore-tests/app"));
    let record: serde_json::Value = serde_json::from_slice(&evidence[0].1).unwrap();
    assert_eq!(record["result"], "passed");
    assert_eq!(record["row_counts"]["public.orders"]["expected"], 20000);
    assert_eq!(record["row_counts"]["public.orders"]["actual"], 20000);

    // The log never holds a credential.
    let log = std::fs::read_to_string(work.path().join(".state/logs/restore.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 3);
    assert!(!log.contains(PASSWORD));
}

#[test]
fn a_killed_or_failing_pg_restore_leaves_the_database_as_it_was() {
    let cluster = Cluster::start();
    pg_setup(&cluster, "app");
    let work = tempfile::tempdir().unwrap();
    // Fault injector: the real pg_dump, and a pg_restore that, once armed,
    // kills the real one part way through its input (streamed restores) or
    // hands it a dump cut in half (-j restores). `--list` always passes.
    let bin = work.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(cluster.bin("pg_dump"), bin.join("pg_dump")).unwrap();
    let armed = work.path().join("armed");
    let script = format!(
        r#"#!/bin/bash
REAL='{real}'
printf '%s\n' "$*" >> '{argv}'
case " $* " in *" --list "*) exec "$REAL" "$@";; esac
if [ ! -e '{armed}' ]; then exec "$REAL" "$@"; fi
rm -f '{armed}'
case " $* " in
  *" --jobs="*)
    file="${{@: -1}}"
    head -c $(( $(stat -c %s "$file") / 2 )) "$file" > "$file.cut"
    set -- "${{@:1:$#-1}}" "$file.cut"
    "$REAL" "$@"; status=$?; rm -f "$file.cut"; exit $status;;
esac
fifo=$(mktemp -u); mkfifo "$fifo"
"$REAL" "$@" < "$fifo" & pid=$!
exec 4> "$fifo"; rm -f "$fifo"
head -c 300000 >&4
sleep 1
kill -9 $pid
wait $pid
exit 137
"#,
        real = cluster.bin("pg_restore").display(),
        armed = armed.display(),
        argv = work.path().join("argv.log").display()
    );
    let wrapper = bin.join("pg_restore");
    std::fs::write(&wrapper, script).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    pg_policy(&cluster, work.path(), Some(&bin));
    let taken = pg_run(work.path(), &["run", "app"]);
    assert_eq!(taken.code, 0, "{taken:?}");
    pg_change(&cluster, "app");
    let before = pg_contents(&cluster, "app");

    // Killed mid-stream: its transaction never commits.
    std::fs::write(&armed, "").unwrap();
    let killed = pg_run(work.path(), &["restore", "app", "--yes"]);
    assert_eq!(killed.code, 1, "{killed:?}");
    assert!(!armed.exists(), "the fault was injected");
    assert!(
        killed.stderr.contains("its transaction was rolled back")
            || killed.stderr.contains("pg_restore failed"),
        "{}",
        killed.stderr
    );
    assert!(
        killed.stderr.contains("The target was not changed."),
        "{}",
        killed.stderr
    );
    assert_eq!(pg_contents(&cluster, "app"), before);
    assert_eq!(pre_restore_ids(&work.path().join("store/app")).len(), 1);

    // Failing part way through a parallel restore: rolled back from the safety backup.
    std::fs::write(&armed, "").unwrap();
    let failed = pg_run(work.path(), &["restore", "app", "--jobs", "2", "--yes"]);
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(!armed.exists(), "the fault was injected");
    assert!(
        failed
            .stderr
            .contains("Rolled back: restored the safety backup"),
        "{}",
        failed.stderr
    );
    assert_eq!(pg_contents(&cluster, "app"), before);
    assert_eq!(pre_restore_ids(&work.path().join("store/app")).len(), 2);
    let list = pg_run(work.path(), &["list"]);
    assert_eq!(
        list.stdout.matches("[pre-restore]").count(),
        2,
        "{}",
        list.stdout
    );
    let log = std::fs::read_to_string(work.path().join(".state/logs/restore.jsonl")).unwrap();
    let results: Vec<String> = log
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["result"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(results, ["failed", "rolled-back"]);
    assert_eq!(pre_restore_ids(&work.path().join("store/app")).len(), 2);

    // A sidecar that promises rows the dump does not hold (edited, and sealed
    // again so it passes verification): pg_restore commits, the check after
    // it fails, and the safety backup puts the database back.
    let folder = work.path().join("store/app");
    let sidecar_path = files_under(&folder)
        .into_iter()
        .map(|(path, _)| path)
        .find(|path| {
            path.extension()
                .is_some_and(|extension| extension == "json")
                && !pre_restore_ids(&folder)
                    .iter()
                    .any(|id| path.to_string_lossy().contains(id.as_str()))
        })
        .unwrap();
    let original = std::fs::read(&sidecar_path).unwrap();
    let mut metadata: backup::inventory::BackupMetadata =
        serde_json::from_slice(&original).unwrap();
    *metadata.source.row_counts.get_mut("public.orders").unwrap() += 1;
    metadata.seal().unwrap();
    std::fs::write(&sidecar_path, serde_json::to_vec_pretty(&metadata).unwrap()).unwrap();
    let checked = pg_run(work.path(), &["restore", "app", "--yes"]);
    assert_eq!(checked.code, 1, "{checked:?}");
    assert!(
        checked
            .stderr
            .contains("public.orders: 20000 rows, expected 20001"),
        "{}",
        checked.stderr
    );
    assert!(
        checked
            .stderr
            .contains("Rolled back: restored the safety backup"),
        "{}",
        checked.stderr
    );
    assert_eq!(pg_contents(&cluster, "app"), before);
    std::fs::write(&sidecar_path, original).unwrap();

    // Disarmed, the same restore goes through.
    let done = pg_run(work.path(), &["restore", "app", "--yes"]);
    assert_eq!(done.code, 0, "{done:?}");

    // pg_restore's real arguments never held the password.
    let argv = std::fs::read_to_string(work.path().join("argv.log")).unwrap();
    assert!(
        argv.contains("--single-transaction") && argv.contains("--jobs=2"),
        "{argv}"
    );
    assert!(!argv.contains(PASSWORD), "{argv}");
}

#[test]
fn plan_schedules_restore_drills_and_keeps_pre_restore_backups_apart() {
    let sqlite = Sqlite::new();
    let policy = sqlite.path().join("app.yaml");
    let mut text = std::fs::read_to_string(&policy).unwrap();
    text.push_str("  verify:\n    restore-test: weekly\n");
    std::fs::write(&policy, text).unwrap();
    let id = sqlite.backup();

    // No drill has passed yet: one is due, shown like a due backup.
    let plan = sqlite.run(&["plan", "--no-crontab", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(
        plan.stdout
            .contains("  + restore-test\n      no restore drill has passed yet\n"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains(&format!(
            "restores the newest backup ({id}) into a scratch target"
        )),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("0 to clean up, 1 restore test, crontab not managed."),
        "{}",
        plan.stdout
    );
    let json = sqlite.run(&["plan", "--no-crontab", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json["actions"][0]["kind"], "restore-test");
    assert_eq!(json["summary"]["restore_test"], 1);

    let applied = sqlite.run(&["apply", "--no-crontab", "--auto-approve"]);
    assert_eq!(applied.code, 0, "{applied:?}");
    assert!(
        applied.stdout.contains("done    app: + restore-test:"),
        "{}",
        applied.stdout
    );
    assert_eq!(
        files_under(&sqlite.path().join(".state/restore-tests/app")).len(),
        1
    );
    let plan = sqlite.run(&["plan", "--no-crontab", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    // The evidence is beside the backups too: a CI job, with a state folder
    // of its own, sees the drill as done.
    let published: Vec<_> = std::fs::read_dir(sqlite.folder())
        .unwrap()
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("restore-test-")
        })
        .collect();
    assert_eq!(published.len(), 1, "{published:?}");
    let elsewhere: Run = backup(sqlite.path())
        .env("BACKUP_STATE_DIR", sqlite.path().join(".ci-state"))
        .args([
            "-p",
            "app.yaml",
            "plan",
            "--no-crontab",
            "--detailed-exitcode",
        ])
        .output()
        .unwrap()
        .into();
    assert_eq!(elsewhere.code, 0, "{elsewhere:?}");
    assert_eq!(sqlite.run(&["verify"]).code, 0);
    assert!(
        sqlite
            .run(&["list", "--format", "json"])
            .stdout
            .contains("\"orphans\": []"),
        "the evidence is no orphan"
    );

    // A week later the next drill is due.
    let later = (chrono::Utc::now() + chrono::Duration::days(8)).to_rfc3339();
    let plan = sqlite.run(&["plan", "--no-crontab", "--now", &later]);
    assert!(
        plan.stdout
            .contains("has passed since the last passing drill"),
        "{}",
        plan.stdout
    );

    // Four restores leave four safety backups, which are not the policy's backups.
    for _ in 0..4 {
        let restored = sqlite.run(&["restore", "app", "--yes"]);
        assert_eq!(restored.code, 0, "{restored:?}");
    }
    let mut safety = pre_restore_ids(&sqlite.folder());
    safety.sort();
    assert_eq!(safety.len(), 4);
    // Nor does `status` count them: the newest backup is the scheduled one.
    let status = sqlite.run(&["status", "--no-crontab", "--format", "json"]);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(
        status["policies"][0]["freshness"]["newest_backup"], id,
        "{status}"
    );
    let plan = sqlite.run(&["plan", "--no-crontab", "--show-kept", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "within a week all are kept: {plan:?}");
    assert!(
        plan.stdout
            .contains(&format!("app (app.yaml): 1 backup, newest {id}")),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains(&format!("= keep {}: pre-restore: last 1 of 3", safety[3])),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains(&format!("= keep {}: pre-restore: within 7d", safety[0])),
        "{}",
        plan.stdout
    );

    // After a week only the newest three stay; the scheduled backup is untouched.
    let plan = sqlite.run(&["plan", "--no-crontab", "--now", &later]);
    assert!(
        plan.stdout.contains(&format!(
            "  - prune {} on {}\n      pre-restore safety backup older than 7 days and not among the 3 newest\n",
            safety[0],
            sqlite.store().display()
        )),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("1 to prune"), "{}", plan.stdout);
    assert!(!plan.stdout.contains("more than half"), "{}", plan.stdout);
}

/// Restores read from S3 (a real Garage node): local copies are read first,
/// a damaged copy is skipped for a good one elsewhere, `--from` picks S3, and
/// the safety backup goes to the policy's first destination, here S3.
#[test]
fn restores_read_from_s3_and_skip_a_damaged_copy() {
    let garage = common::garage::Garage::start();
    let sqlite = Sqlite::new();
    let policy = format!(
        "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: app\nspec:\n  source:\n    sqlite:\n      path: app.db\n  schedule:\n    cron: \"@daily\"\n  retention:\n    keep-last: 3\n  destinations:\n    - s3:\n        bucket: {}\n        prefix: restore/\n        endpoint: {}\n        region: {}\n        path-style: true\n        access-key-id: ${{env:TEST_S3_KEY_ID}}\n        secret-access-key: ${{env:TEST_S3_SECRET}}\n    - local:\n        path: store\n",
        garage.bucket(),
        garage.endpoint(),
        garage.region()
    );
    std::fs::write(sqlite.path().join("app.yaml"), policy).unwrap();
    let s3 = format!("s3:{}/{}/restore/", garage.endpoint(), garage.bucket());
    let run_s3 = |args: &[&str]| -> Run {
        let result: Run = garage
            .backup_command(sqlite.path())
            .args(["-p", "app.yaml"])
            .args(args)
            .output()
            .unwrap()
            .into();
        assert!(!result.stdout.contains(garage.secret_access_key()));
        assert!(!result.stderr.contains(garage.secret_access_key()));
        result
    };
    let taken = run_s3(&["run", "app"]);
    assert_eq!(taken.code, 0, "{taken:?}");
    let at_backup = dump(&sqlite.db());
    sqlite.change();

    let dry = run_s3(&["restore", "app", "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    let local = sqlite.store().display().to_string();
    assert!(
        dry.stdout.contains(&format!("on {local}: sidecar digest")),
        "local first: {}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains(&format!("backed up first to {s3}")),
        "{}",
        dry.stdout
    );

    // The local copy is damaged: the S3 copy is used, and the plan says why.
    let artifact = files_under(&sqlite.folder())
        .into_iter()
        .map(|(path, _)| path)
        .find(|path| path.to_string_lossy().ends_with(".sqlite.gz"))
        .unwrap();
    flip(&artifact, 100, 2);
    let restored = run_s3(&["restore", "app", "--yes"]);
    assert_eq!(restored.code, 0, "{restored:?}");
    assert!(
        restored
            .stdout
            .contains(&format!("on {local} failed verification")),
        "{}",
        restored.stdout
    );
    assert!(
        restored
            .stdout
            .contains(&format!("on {s3}: sidecar digest")),
        "{}",
        restored.stdout
    );
    assert_eq!(dump(&sqlite.db()), at_backup);
    let list = run_s3(&["list"]);
    assert!(
        list.stdout
            .lines()
            .any(|line| line.contains("[pre-restore]") && line.contains(&s3)),
        "{}",
        list.stdout
    );

    // --from names the destination; a damaged one is then refused.
    let refused = run_s3(&["restore", "app", "--from", &local, "--yes"]);
    assert_eq!(refused.code, 5, "{refused:?}");
    let from_s3 = run_s3(&["restore", "app", "--from", &s3, "--yes"]);
    assert_eq!(from_s3.code, 0, "{from_s3:?}");
    let unknown = run_s3(&["restore", "app", "--from", "/nowhere", "--dry-run"]);
    assert_eq!(unknown.code, 1, "{unknown:?}");
    assert!(
        unknown
            .stderr
            .contains("is not a destination of policy `app`"),
        "{}",
        unknown.stderr
    );
}

/// A restore streams: its peak memory stays far below the size of the
/// database it restores (here 64 MiB of incompressible rows), safety backup
/// and checks included. Measured with GNU time's maximum resident set size.
#[test]
fn restore_memory_stays_flat() {
    if !Path::new("/usr/bin/time").exists() {
        eprintln!("skipped: /usr/bin/time (GNU time) is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    sqlite3(
        &db,
        "CREATE TABLE b (x BLOB);
         WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 8192)
           INSERT INTO b SELECT randomblob(8000) FROM c;",
    );
    write_policy(
        dir.path(),
        "app",
        "    sqlite:\n      path: app.db",
        &dir.path().join("store"),
    );
    assert_eq!(run(dir.path(), &["-p", "app.yaml", "run", "app"]).code, 0);
    sqlite3(&db, "DELETE FROM b WHERE rowid % 2 = 0");
    let output = Command::new("/usr/bin/time")
        .args(["-f", "maxrss %M"])
        .arg(env!("CARGO_BIN_EXE_backup"))
        .args(["-p", "app.yaml", "restore", "app", "--yes"])
        .current_dir(dir.path())
        .env("BACKUP_STATE_DIR", dir.path().join(".state"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let kilobytes: u64 = stderr
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("maxrss "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no maxrss in {stderr}"));
    assert_eq!(sqlite3(&db, "SELECT count(*) FROM b"), "8192");
    assert!(
        kilobytes < 48 * 1024,
        "peak memory {kilobytes} KiB restoring a 64 MiB database"
    );
}

/// zstd and age on PostgreSQL: the dump goes through `pg_restore --list`
/// decrypted, restores decrypt with the policy's identity (also in parallel
/// from a local decoded copy) and a drill does too; the safety backup is
/// encrypted like every backup of the policy.
#[test]
fn postgres_zstd_and_age_backups_restore_in_one_pass_and_in_parallel() {
    let cluster = Cluster::start();
    pg_setup(&cluster, "app");
    let work = tempfile::tempdir().unwrap();
    let (key, public) = common::age_keygen(work.path(), "key.txt");
    pg_policy(&cluster, work.path(), None);
    let policy = work.path().join("app.yaml");
    let mut text = std::fs::read_to_string(&policy).unwrap();
    text.push_str(&format!(
        "  compression:\n    zstd: {{level: 3}}\n  encryption:\n    age:\n      recipients: [{}]\n      identity: ${{file:{}}}\n",
        public.trim(),
        key.display()
    ));
    std::fs::write(&policy, text).unwrap();
    let taken = pg_run(work.path(), &["run", "app"]);
    assert_eq!(taken.code, 0, "{taken:?}");
    let at_backup = pg_contents(&cluster, "app");
    let sidecar = sidecars(&work.path().join("store"))
        .into_iter()
        .find(|sidecar| sidecar["id"].is_string())
        .unwrap();
    assert!(
        sidecar["artifact"]["name"]
            .as_str()
            .unwrap()
            .ends_with(".pgdump.zst.age"),
        "{sidecar}"
    );
    pg_change(&cluster, "app");

    let dry = pg_run(work.path(), &["restore", "app", "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    let restored = pg_run(work.path(), &["restore", "app", "--yes"]);
    assert_eq!(restored.code, 0, "{restored:?}");
    let mut now = pg_contents(&cluster, "app");
    now.remove("public.extra");
    assert_eq!(now, at_backup);
    let safety = sidecars(&work.path().join("store"))
        .into_iter()
        .find(|sidecar| {
            sidecar["tags"]
                .as_array()
                .is_some_and(|tags| tags.iter().any(|tag| tag == "pre-restore"))
        })
        .unwrap();
    assert_eq!(safety["encryption"]["method"], "age", "{safety}");

    let parallel = pg_run(
        work.path(),
        &["restore", "app", "--to", "parallel", "--jobs", "2", "--yes"],
    );
    assert_eq!(parallel.code, 0, "{parallel:?}");
    let drill = pg_run(work.path(), &["verify", "--restore-test"]);
    assert_eq!(drill.code, 0, "{drill:?}");
    let decrypted = pg_run(work.path(), &["verify", "--decrypt"]);
    assert_eq!(decrypted.code, 0, "{decrypted:?}");
}

/// Backups written by the release before sidecars named their `format`
/// and `parts` (0.1.0, tests/fixtures/sidecars/0.1.0) still list, verify and
/// restore: the format comes from the source kind, the one artifact is the
/// one part.
#[test]
fn backups_written_before_format_and_parts_still_list_verify_and_restore() {
    let cluster = Cluster::start();
    let work = tempfile::tempdir().unwrap();
    let copied = Command::new("cp")
        .arg("-r")
        .arg(common::root().join("tests/fixtures/sidecars/0.1.0/store"))
        .arg(work.path())
        .status()
        .unwrap();
    assert!(copied.success());
    let store = work.path().join("store");
    write_policy(
        work.path(),
        "app",
        "    sqlite:\n      path: app.db",
        &store,
    );
    write_policy(
        work.path(),
        "pg",
        &format!(
            "    postgres:\n      url: {}\n      password: ${{env:BACKUP_TEST_PGPASSWORD}}",
            cluster.url("fixture_app")
        ),
        &store,
    );
    let both = |args: &[&str]| -> Run {
        backup(work.path())
            .env("BACKUP_TEST_PGPASSWORD", PASSWORD)
            .args(["-p", "app.yaml", "-p", "pg.yaml"])
            .args(args)
            .output()
            .unwrap()
            .into()
    };
    let listed = both(&["list", "--format", "json"]);
    assert_eq!(listed.code, 0, "{listed:?}");
    let report: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let states: Vec<&str> = report["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["complete", "complete"], "{}", listed.stdout);
    let verified = both(&["verify"]);
    assert_eq!(verified.code, 0, "{verified:?}");
    assert!(
        verified.stdout.contains("Verified 2 backups: 2 ok"),
        "{}",
        verified.stdout
    );

    let restored = both(&["restore", "app", "--to", "restored.db", "--yes"]);
    assert_eq!(restored.code, 0, "{restored:?}");
    assert_eq!(
        sqlite3(
            &work.path().join("restored.db"),
            "SELECT group_concat(item) FROM orders;"
        ),
        "apple,pear,plum"
    );
    let restored = both(&["restore", "pg", "--to", "fresh", "--yes"]);
    assert_eq!(restored.code, 0, "{restored:?}");
    assert_eq!(
        cluster.sql(
            "fresh",
            "SELECT string_agg(item, ',' ORDER BY id) FROM orders"
        ),
        "apple,pear"
    );
}
