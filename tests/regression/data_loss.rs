//! Regression tests: the ways a backup was lost (issue 12, defects 0 to 0e),
//! and how failures at a destination are named.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::common::garage::Garage;
use super::common::{self, Run, sqlite3};

/// A folder with an SQLite database `app.db` (incompressible rows) and a
/// policy `app` whose destinations are given as YAML list items.
struct Site {
    work: tempfile::TempDir,
}

impl Site {
    fn new(rows: u32) -> Site {
        let site = Site {
            work: tempfile::tempdir().unwrap(),
        };
        sqlite3(
            &site.path().join("app.db"),
            &format!(
                "CREATE TABLE t (v BLOB); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) INSERT INTO t SELECT randomblob(1000) FROM n;"
            ),
        );
        site
    }

    fn path(&self) -> &Path {
        self.work.path()
    }

    /// Writes the policy with these destinations (YAML list items) and `keep-last`.
    fn policy(&self, destinations: &str, keep_last: u32) {
        std::fs::write(
            self.path().join("app.yaml"),
            format!(
                "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: app\nspec:\n  source:\n    sqlite:\n      path: app.db\n  schedule:\n    cron: \"0 1 * * *\"\n  retention:\n    keep-last: {keep_last}\n  destinations:\n{destinations}"
            ),
        )
        .unwrap();
    }

    fn local(&self, folder: &str) -> String {
        format!("    - local:\n        path: {folder}\n")
    }

    fn folder(&self, folder: &str) -> PathBuf {
        self.path().join(folder).join("app")
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_with(common::backup(self.path()), args)
    }

    fn run_with(&self, mut command: Command, args: &[&str]) -> Run {
        command
            .args(["-p", "app.yaml"])
            .args(args)
            .output()
            .unwrap()
            .into()
    }
}

/// The files of `folder`, name and contents, sorted.
fn contents(folder: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (
                entry.file_name().into_string().unwrap(),
                std::fs::read(entry.path()).unwrap_or_default(),
            )
        })
        .collect();
    files.sort();
    files
}

fn ids(folder: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(folder)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let id = name.strip_suffix(".json")?;
            backup::inventory::is_id(id).then(|| id.to_owned())
        })
        .collect();
    ids.sort();
    ids
}

/// Writes a sealed sidecar and its data for a backup `id` of `app` into `folder`.
fn fabricate(folder: &Path, id: &str, data: &[u8], tags: Vec<String>) {
    std::fs::create_dir_all(folder).unwrap();
    let created = backup::inventory::id_time(id).unwrap();
    let mut metadata = common::sidecar_for("app", id, created, data, tags);
    metadata.seal().unwrap();
    std::fs::write(folder.join(&metadata.artifact.name), data).unwrap();
    std::fs::write(
        folder.join(format!("{id}.json")),
        serde_json::to_vec_pretty(&metadata).unwrap(),
    )
    .unwrap();
}

/// Defect 0: a copy planned to a destination where a pre-restore safety
/// backup holds the same id replaced the safety backup (its sidecar and its
/// data) with the copied backup.
#[test]
fn a_copy_never_replaces_a_safety_backup_that_shares_its_id() {
    let site = Site::new(50);
    site.policy(&(site.local("store") + &site.local("mirror")), 3);
    let taken = site.run(&["run", "app"]);
    assert_eq!(taken.code, 0, "{taken:?}");
    let id = ids(&site.folder("mirror")).pop().unwrap();
    // What the old naming left: the store's copy gone, and a safety backup
    // of the target taken under the same id there.
    for (name, _) in contents(&site.folder("store")) {
        std::fs::remove_file(site.folder("store").join(name)).unwrap();
    }
    fabricate(
        &site.folder("store"),
        &id,
        b"the state before the restore",
        vec!["pre-restore".to_owned()],
    );
    let safety = contents(&site.folder("store"));

    let plan = site.run(&["plan", "--no-crontab", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    assert!(
        !plan["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|action| action["kind"] == "copy"),
        "a copy onto the safety backup was planned: {plan}"
    );
    assert!(
        plan["policies"][0]["warnings"]
            .to_string()
            .contains("a pre-restore safety backup there has the same id"),
        "{plan}"
    );
    let applied = site.run(&["apply", "--auto-approve", "--no-crontab"]);
    assert!(applied.code == 0 || applied.code == 1, "{applied:?}");
    assert_eq!(contents(&site.folder("store")), safety, "{applied:?}");
}

/// Defect 0, the cause: a safety backup goes to the first destination only,
/// and its id was chosen from that destination's listing alone, so it could
/// take an id another destination of the policy held. The mirror holds a
/// backup for every second of the next two minutes; the safety backup taken
/// within them must get an id the mirror does not hold.
#[test]
fn a_safety_backup_gets_an_id_no_destination_of_the_policy_holds() {
    let site = Site::new(20);
    site.policy(&(site.local("store") + &site.local("mirror")), 500);
    assert_eq!(site.run(&["run", "app"]).code, 0);
    let restored = ids(&site.folder("store")).pop().unwrap();
    let start = chrono::Utc::now();
    for second in 0..120 {
        let id = backup::inventory::base_id(start + chrono::Duration::seconds(second));
        fabricate(&site.folder("mirror"), &id, id.as_bytes(), Vec::new());
    }
    let held = ids(&site.folder("mirror"));
    sqlite3(&site.path().join("app.db"), "INSERT INTO t VALUES (x'00');");
    let restore = site.run(&["restore", "app", "--backup", &restored, "--yes"]);
    assert_eq!(restore.code, 0, "{restore:?}");
    let safety: Vec<String> = ids(&site.folder("store"))
        .into_iter()
        .filter(|id| *id != restored)
        .collect();
    assert_eq!(safety.len(), 1, "{safety:?} {restore:?}");
    assert!(
        !held.contains(&safety[0]),
        "the safety backup {} took an id the mirror holds",
        safety[0]
    );
    assert!(
        backup::inventory::id_time(&safety[0]).unwrap()
            >= backup::inventory::id_time(&held[0]).unwrap(),
        "{safety:?}"
    );
}

/// Defect 0b: two S3 stores with the same bucket and prefix on different
/// endpoints (a store and its off-site replica) counted as one, and a copy
/// between them deleted the only backup. Also: no write ever replaces an
/// existing S3 object.
#[test]
fn two_s3_stores_with_the_same_bucket_and_prefix_are_two_destinations() {
    let primary = Garage::start();
    let replica = Garage::start();
    assert_eq!(primary.bucket(), replica.bucket());
    let site = Site::new(50);
    let command = || {
        let mut command = primary.backup_command(site.path());
        command
            .env("PRIMARY_KEY_ID", primary.access_key_id())
            .env("PRIMARY_SECRET", primary.secret_access_key())
            .env("REPLICA_KEY_ID", replica.access_key_id())
            .env("REPLICA_SECRET", replica.secret_access_key());
        command
    };
    let on_primary = primary.destination_yaml("prod/", "PRIMARY");
    let on_both = on_primary.clone() + &replica.destination_yaml("prod/", "REPLICA");

    site.policy(&on_primary, 3);
    let taken = site.run_with(command(), &["run", "app"]);
    assert_eq!(taken.code, 0, "{taken:?}");

    // Adding the replica: validate sees two destinations, plan one copy.
    site.policy(&on_both, 3);
    let valid = site.run_with(command(), &["validate", "app.yaml"]);
    assert_eq!(valid.code, 0, "{valid:?}");
    let plan = site.run_with(command(), &["plan", "--no-crontab", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let copies: Vec<&serde_json::Value> = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|action| action["kind"] == "copy")
        .collect();
    assert_eq!(copies.len(), 1, "{plan}");
    assert_ne!(copies[0]["destination"], copies[0]["from"], "{plan}");
    assert!(
        copies[0]["destination"]
            .as_str()
            .unwrap()
            .contains(&replica.endpoint()),
        "{plan}"
    );
    let applied = site.run_with(command(), &["apply", "--auto-approve", "--no-crontab"]);
    assert_eq!(applied.code, 0, "{applied:?}");
    let listed = site.run_with(command(), &["list", "--format", "json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let complete = listed.to_string().matches("\"complete\"").count();
    assert_eq!(complete, 2, "the backup is not on both stores: {listed}");
    let verified = site.run_with(command(), &["verify"]);
    assert_eq!(verified.code, 0, "{verified:?}");

    // The same endpoint, bucket and prefix twice is one place listed twice.
    site.policy(&(on_primary.clone() + &on_primary), 3);
    let duplicate = site.run_with(command(), &["validate", "app.yaml"]);
    assert_eq!(duplicate.code, 3, "{duplicate:?}");
    assert!(
        duplicate.stdout.contains("listed twice"),
        "{}",
        duplicate.stdout
    );

    // Create-only on S3: a second write under a taken name is refused and
    // the first stays; the same bytes again count as written.
    let spec: backup::policy::spec::S3Spec = serde_json::from_value(serde_json::json!({
        "bucket": primary.bucket(),
        "prefix": "create-only/",
        "endpoint": primary.endpoint(),
        "region": primary.region(),
        "path-style": true,
        "access-key-id": primary.access_key_id(),
        "secret-access-key": primary.secret_access_key(),
    }))
    .unwrap();
    let store = backup::destination::s3::S3::new(&spec).unwrap();
    create_only(&store);
}

/// Checks that `destination` never replaces what it holds.
fn create_only(destination: &dyn backup::destination::Destination) {
    use std::io::{Read as _, Write as _};
    destination.put("app", "object.json", b"first").unwrap();
    let second = destination.put("app", "object.json", b"second");
    assert!(
        matches!(second, Err(backup::destination::Error::Exists { .. })),
        "{second:?}"
    );
    destination.put("app", "object.json", b"first").unwrap();
    let mut upload = destination.begin("app", "object.json").unwrap();
    upload.write_all(b"third").unwrap();
    let committed = upload.commit(5);
    assert!(
        matches!(committed, Err(backup::destination::Error::Exists { .. })),
        "{committed:?}"
    );
    let mut found = String::new();
    destination
        .open("app", "object.json")
        .unwrap()
        .read_to_string(&mut found)
        .unwrap();
    assert_eq!(found, "first");
}

#[test]
fn local_writes_never_replace_an_existing_file() {
    let folder = tempfile::tempdir().unwrap();
    create_only(&backup::destination::local::Local::new(
        folder.path().to_owned(),
    ));
}

/// Defect 0c: the local listing skipped what is not a regular file, so the
/// data of a backup whose sidecar is a symbolic link became an "orphan"
/// that cleanup deleted.
#[test]
fn a_symlinked_sidecar_keeps_its_data_from_cleanup() {
    let site = Site::new(20);
    site.policy(&site.local("store"), 3);
    assert_eq!(site.run(&["run", "app"]).code, 0);
    let folder = site.folder("store");
    let id = ids(&folder).pop().unwrap();
    let sidecar = folder.join(format!("{id}.json"));
    let elsewhere = site.path().join("sidecar-kept-elsewhere.json");
    std::fs::rename(&sidecar, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &sidecar).unwrap();
    // And an entry that is not a file, named like data.
    std::fs::create_dir(folder.join("20200101T000000Z.sqlite.gz")).unwrap();
    let before = contents(&folder);

    let plan = site.run(&["plan", "--no-crontab", "--now", "2099-01-01T00:00:00Z"]);
    assert!(!plan.stdout.contains("clean up "), "{}", plan.stdout);
    assert!(plan.stdout.contains("symbolic link"), "{}", plan.stdout);
    assert!(plan.stdout.contains("a folder"), "{}", plan.stdout);
    let applied = site.run(&[
        "apply",
        "--auto-approve",
        "--no-crontab",
        "--now",
        "2099-01-01T00:00:00Z",
    ]);
    assert!(applied.code == 0 || applied.code == 1, "{applied:?}");
    for (name, bytes) in &before {
        let path = folder.join(name);
        assert!(
            std::fs::symlink_metadata(&path).is_ok(),
            "{name} was removed: {applied:?}"
        );
        if path.is_file() && !name.ends_with(".json") {
            assert_eq!(&std::fs::read(&path).unwrap(), bytes, "{name} changed");
        }
    }
    assert!(
        std::fs::symlink_metadata(&sidecar)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

/// Defect 0e: two hosts (each with its own state folder) apply one policy
/// onto one bucket at the same second and pick the same id; the second
/// single PUT replaced the first, and the writer whose size check then
/// failed deleted the other's committed data. Every backup a host reports
/// done must be there and whole.
#[test]
fn two_hosts_racing_one_s3_bucket_never_lose_a_committed_backup() {
    let garage = Garage::start();
    let site = Site::new(200);
    site.policy(&garage.destination_yaml("race/", "TEST_S3"), 500);
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T02:00:00Z").unwrap();
    let mut done = 0;
    for round in 0..20 {
        let now = (start + chrono::Duration::days(round)).to_rfc3339();
        let hosts: Vec<std::process::Child> = ["host-a", "host-b"]
            .iter()
            .map(|host| {
                let mut command = garage.backup_command(site.path());
                command
                    .env("BACKUP_STATE_DIR", site.path().join(host))
                    .args(["-p", "app.yaml", "apply", "--auto-approve", "--no-crontab"])
                    .args(["--now", &now])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
                command.spawn().unwrap()
            })
            .collect();
        for host in hosts {
            let output: Run = host.wait_with_output().unwrap().into();
            assert_eq!(output.code, 0, "round {round}: {output:?}");
            done += output
                .stdout
                .lines()
                .filter(|line| line.starts_with("done") && line.contains("+ backup: "))
                .count();
        }
    }
    let listed = site.run_with(
        garage.backup_command(site.path()),
        &["list", "--format", "json"],
    );
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let text = listed.to_string();
    assert_eq!(
        text.matches("\"complete\"").count(),
        done,
        "every backup reported done is there and complete: {text}"
    );
    assert!(
        !text.contains("missing data") && !text.contains("size mismatch"),
        "{text}"
    );
    let verified = site.run_with(garage.backup_command(site.path()), &["verify"]);
    assert_eq!(verified.code, 0, "{verified:?}");
    assert!(done >= 20, "a backup every round: {done}");
}

/// A copy into a destination that holds a damaged copy of the backup
/// removed the damaged copy first, and when the new copy then failed its
/// check the destination held nothing; it must remove nothing until the new
/// copy is complete and verified, and never touch its source.
#[test]
fn a_failed_copy_removes_nothing_on_its_target_and_never_touches_its_source() {
    let site = Site::new(50);
    site.policy(&(site.local("store") + &site.local("mirror")), 3);
    assert_eq!(site.run(&["run", "app"]).code, 0);
    let id = ids(&site.folder("store")).pop().unwrap();
    let data_name = contents(&site.folder("store"))
        .into_iter()
        .map(|(name, _)| name)
        .find(|name| name.ends_with(".gz"))
        .unwrap();
    // The mirror's copy is cut short; the store's is changed in place (same
    // size, so it is still listed complete, but its bytes are not the backup's).
    let mirrored = site.folder("mirror").join(&data_name);
    let bytes = std::fs::read(&mirrored).unwrap();
    std::fs::write(&mirrored, &bytes[..bytes.len() / 2]).unwrap();
    let stored = site.folder("store").join(&data_name);
    let mut changed = std::fs::read(&stored).unwrap();
    let middle = changed.len() / 2;
    changed[middle] ^= 0xff;
    std::fs::write(&stored, &changed).unwrap();
    let mirror_before = contents(&site.folder("mirror"));
    let store_before = contents(&site.folder("store"));

    let plan = site.run(&["plan", "--no-crontab"]);
    assert!(
        plan.stdout.contains(&format!("+ copy {id}")),
        "{}",
        plan.stdout
    );
    let applied = site.run(&["apply", "--auto-approve", "--no-crontab"]);
    assert_eq!(applied.code, 1, "{applied:?}");
    assert!(
        applied.stdout.contains("does not match its sidecar"),
        "{applied:?}"
    );
    assert_eq!(contents(&site.folder("mirror")), mirror_before);
    assert_eq!(contents(&site.folder("store")), store_before);
}

/// A full disk said "compression failed: No space left on device" without
/// naming the destination that filled up: when the whole backup fit in the
/// write buffer, the disk filled at the final flush. Both ways are checked:
/// a disk that fills at the end, and one that fills midway.
#[test]
fn a_full_disk_names_the_destination() {
    if !common::postgres::running_as_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    for (rows, size) in [(600, "512k"), (3000, "1m")] {
        let site = Site::new(rows);
        let disk = site.path().join("small");
        std::fs::create_dir(&disk).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&disk)
            .status()
            .unwrap();
        assert!(mounted.success());
        let _unmount = Unmount(disk.clone());
        site.policy(&site.local("small"), 3);
        let run = site.run(&["run", "app"]);
        assert_eq!(run.code, 1, "{run:?}");
        let said = format!("{}{}", run.stdout, run.stderr);
        assert!(
            said.contains("No space left on device"),
            "{rows} rows: {said}"
        );
        assert!(
            said.contains(&disk.display().to_string()),
            "{rows} rows: {said}"
        );
        assert!(!said.contains("compression failed"), "{rows} rows: {said}");
        // Nothing half-written stays visible.
        assert!(ids(&disk.join("app")).is_empty());
    }
}

/// Unmounts a folder when dropped, also when a test fails.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// S3 errors printed the SDK's debug structures
/// (`DispatchFailure(DispatchFailure { source: ConnectorError …`): one
/// sentence naming the store, the operation and the cause.
#[test]
fn s3_errors_are_one_sentence_naming_the_store_and_the_cause() {
    let site = Site::new(5);
    let closed = common::postgres::free_port();
    site.policy(
        &format!(
            "    - s3:\n        bucket: nowhere\n        endpoint: http://127.0.0.1:{closed}\n        region: garage\n        path-style: true\n        access-key-id: ${{env:KEY_ID}}\n        secret-access-key: ${{env:SECRET}}\n"
        ),
        3,
    );
    let mut command = common::backup(site.path());
    command
        .env("KEY_ID", "GK0000")
        .env("SECRET", "0000")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    let plan = site.run_with(command, &["plan", "--no-crontab", "--detailed-exitcode"]);
    assert_eq!(plan.code, 1, "{plan:?}");
    let said = format!("{}{}", plan.stdout, plan.stderr);
    assert!(
        said.contains(&format!("s3:http://127.0.0.1:{closed}/nowhere/")),
        "{said}"
    );
    assert!(said.contains("cannot list"), "{said}");
    assert!(said.to_lowercase().contains("connection refused"), "{said}");
    for debug in ["DispatchFailure", "ConnectorError", "{ ", "Some("] {
        assert!(!said.contains(debug), "`{debug}` in: {said}");
    }
}
