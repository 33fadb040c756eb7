//! `backup wal push` and `backup wal fetch`, as PostgreSQL's
//! `archive_command` and `restore_command` use them: every outcome with the
//! exit code PostgreSQL acts on, against real folders, an S3 endpoint that
//! does not answer, the stock `zstd` and `age`, and a real PostgreSQL server
//! archiving through `backup`.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use backup::inventory::names;
use backup::wal::SegmentName;
use sha2::Digest as _;

const MIB: u64 = 1024 * 1024;
/// Segments of the made-up cluster: 1 MiB (`initdb --wal-segsize=1`), so tests stay small.
const SEGMENT_SIZE: u64 = MIB;
const SYSTEM_ID: u64 = 7_714_381_164_375_791_744;
const OTHER_SYSTEM_ID: u64 = 7_000_000_000_000_000_001;
const POLICY: &str = "app-db";

fn sha16(bytes: &[u8]) -> String {
    let digest = sha2::Sha256::digest(bytes);
    digest
        .iter()
        .take(8)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A WAL segment `name` of the cluster `system_id`, `size` bytes long:
/// a long page header as PostgreSQL writes it, then bytes that depend on
/// `variant` (two variants are two different contents of one segment).
fn segment(name: &str, system_id: u64, size: u64, variant: u64) -> Vec<u8> {
    let number = SegmentName::parse(name, size).unwrap();
    let mut bytes = vec![0_u8; size as usize];
    bytes[0..2].copy_from_slice(&0xD110_u16.to_le_bytes());
    bytes[2..4].copy_from_slice(&0x0002_u16.to_le_bytes());
    bytes[4..8].copy_from_slice(&number.timeline.to_le_bytes());
    bytes[8..16].copy_from_slice(&number.start_lsn(size).to_le_bytes());
    bytes[24..32].copy_from_slice(&system_id.to_le_bytes());
    bytes[32..36].copy_from_slice(&(size as u32).to_le_bytes());
    bytes[36..40].copy_from_slice(&8192_u32.to_le_bytes());
    let mut random = Random::new(number.number * 31 + variant + 1);
    for byte in &mut bytes[64..64 + 8192] {
        *byte = random.next() as u8;
    }
    bytes
}

/// xorshift64*: seeded, so a failing sequence can be replayed.
struct Random(u64);

impl Random {
    fn new(seed: u64) -> Random {
        Random(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// A folder with policies, two local destinations, WAL files to push and a
/// state folder.
struct Site {
    folder: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let folder = tempfile::tempdir().unwrap();
        for sub in ["policies", "pg_wal", "restore"] {
            std::fs::create_dir_all(folder.path().join(sub)).unwrap();
        }
        let site = Site { folder };
        site.policy(POLICY, &site.locals(), "zstd: { level: 3 }", "");
        site
    }

    fn path(&self) -> &Path {
        self.folder.path()
    }

    fn destination(&self, which: &str) -> PathBuf {
        self.path().join(which)
    }

    fn locals(&self) -> Vec<String> {
        ["a", "b"]
            .iter()
            .map(|which| local(&self.destination(which)))
            .collect()
    }

    /// Writes policy `name` with `destinations` (YAML list items),
    /// `compression` and `extra` lines under `spec:`.
    fn policy(&self, name: &str, destinations: &[String], compression: &str, extra: &str) {
        let text = format!(
            "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: {name}\nspec:\n  source:\n    postgres:\n      url: postgresql://postgres@127.0.0.1:1/app\n  schedule:\n    cron: \"@daily\"\n  retention:\n    keep-last: 3\n  destinations:\n{}\n  compression:\n    {compression}\n{extra}",
            destinations.join("\n")
        );
        std::fs::write(
            self.path().join("policies").join(format!("{name}.yaml")),
            text,
        )
        .unwrap();
    }

    /// Writes WAL file `name` into `pg_wal/`; its path.
    fn wal_file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path().join("pg_wal").join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn backup(&self, args: &[&str]) -> common::Run {
        let mut all = vec!["-p", "policies"];
        all.extend_from_slice(args);
        common::run(self.path(), &all)
    }

    fn push(&self, path: &Path) -> common::Run {
        self.backup(&["wal", "push", POLICY, path.to_str().unwrap()])
    }

    fn fetch(&self, name: &str, to: &Path) -> common::Run {
        self.backup(&["wal", "fetch", POLICY, name, to.to_str().unwrap()])
    }

    /// The archived objects (name → bytes) in destination `which`.
    fn objects(&self, which: &str) -> BTreeMap<String, Vec<u8>> {
        objects(&self.destination(which))
    }

    /// Makes destination `which` unusable (its folder replaced by a file) or usable again.
    fn set_down(&self, which: &str, down: bool) {
        let path = self.destination(which);
        let away = self.path().join(format!("{which}.away"));
        if down {
            if path.is_dir() {
                std::fs::rename(&path, &away).unwrap();
            } else {
                std::fs::create_dir_all(&away).unwrap();
            }
            std::fs::write(&path, "not a folder").unwrap();
        } else if path.is_file() {
            std::fs::remove_file(&path).unwrap();
            std::fs::rename(&away, &path).unwrap();
        }
    }
}

fn local(path: &Path) -> String {
    format!("    - local:\n        path: {}", path.display())
}

/// Every entry of `destination`'s WAL folder of the policy (name → bytes).
fn objects(destination: &Path) -> BTreeMap<String, Vec<u8>> {
    let folder = destination.join(POLICY).join("wal");
    let Ok(entries) = std::fs::read_dir(&folder) else {
        return BTreeMap::new();
    };
    entries
        .flatten()
        .map(|entry| {
            (
                entry.file_name().into_string().unwrap(),
                std::fs::read(entry.path()).unwrap(),
            )
        })
        .collect()
}

/// The archived copies of WAL file `wal` among `objects` (partial uploads and the marker left out).
fn copies_of<'a>(objects: &'a BTreeMap<String, Vec<u8>>, wal: &str) -> Vec<&'a String> {
    objects
        .keys()
        .filter(|name| names::parse_wal_object(name).is_some_and(|object| object.wal == wal))
        .collect()
}

fn zstd_decoded(bytes: &[u8]) -> Vec<u8> {
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("x.zst");
    std::fs::write(&file, bytes).unwrap();
    let output = Command::new("zstd").arg("-dc").arg(&file).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    output.stdout
}

#[test]
fn a_new_segment_is_stored_on_every_destination_and_an_identical_push_is_a_success() {
    let site = Site::new();
    let name = "000000010000000000000003";
    let bytes = segment(name, SYSTEM_ID, SEGMENT_SIZE, 0);
    let path = site.wal_file(name, &bytes);
    let pushed = site.push(&path);
    assert_eq!(pushed.code, 0, "{pushed:?}");
    let object = format!("{name}.{}.zst", sha16(&bytes));
    for which in ["a", "b"] {
        let objects = site.objects(which);
        assert_eq!(
            objects.keys().collect::<Vec<_>>(),
            vec![&object, &"archive.json".to_owned()],
            "{which}"
        );
        // Stock zstd reads it back.
        assert_eq!(zstd_decoded(&objects[&object]), bytes);
        let marker: serde_json::Value = serde_json::from_slice(&objects["archive.json"]).unwrap();
        assert_eq!(marker["system_identifier"], SYSTEM_ID.to_string());
        assert_eq!(marker["wal_segment_size"], SEGMENT_SIZE);
        assert!(marker["created_at"].is_string() && marker["host"].is_string());
    }
    let before = (site.objects("a"), site.objects("b"));
    let again = site.push(&path);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!((site.objects("a"), site.objects("b")), before);

    // The status record says so.
    let state = backup::state::StateDir::new(&site.path().join(".state"));
    let status = backup::wal::status::read(&state, POLICY).unwrap().unwrap();
    assert_eq!(status.last_success.unwrap().file, name);
    assert_eq!(status.failures, 0);
}

#[test]
fn a_different_existing_file_is_refused_and_left_as_it_is() {
    let site = Site::new();
    let name = "000000010000000000000004";
    let first = segment(name, SYSTEM_ID, SEGMENT_SIZE, 0);
    assert_eq!(site.push(&site.wal_file(name, &first)).code, 0);
    let before = (site.objects("a"), site.objects("b"));
    let second = segment(name, SYSTEM_ID, SEGMENT_SIZE, 1);
    let refused = site.push(&site.wal_file(name, &second));
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("other content"),
        "{}",
        refused.stderr
    );
    assert_eq!((site.objects("a"), site.objects("b")), before);

    // .history files likewise.
    let history = "00000002.history";
    let text = b"1\t0/3000000\tno recovery target specified\n";
    assert_eq!(site.push(&site.wal_file(history, text)).code, 0);
    let again = site.push(&site.wal_file(history, text));
    assert_eq!(again.code, 0, "{again:?}");
    let other = site.push(&site.wal_file(history, b"1\t0/4000000\tother\n"));
    assert_eq!(other.code, 1, "{other:?}");
    let object = format!("{history}.{}.zst", sha16(text));
    for which in ["a", "b"] {
        let objects = site.objects(which);
        assert_eq!(copies_of(&objects, history), vec![&object]);
        assert_eq!(zstd_decoded(&objects[&object]), text);
    }
    let state = backup::state::StateDir::new(&site.path().join(".state"));
    let status = backup::wal::status::read(&state, POLICY).unwrap().unwrap();
    assert_eq!(status.failures, 1);
    assert!(
        status
            .last_failure
            .unwrap()
            .reason
            .unwrap()
            .contains("other content")
    );
}

#[test]
fn a_segment_of_another_cluster_is_refused_naming_both_identifiers() {
    let site = Site::new();
    let first = "000000010000000000000001";
    assert_eq!(
        site.push(&site.wal_file(first, &segment(first, SYSTEM_ID, SEGMENT_SIZE, 0)))
            .code,
        0
    );
    let name = "000000010000000000000002";
    let refused = site.push(&site.wal_file(name, &segment(name, OTHER_SYSTEM_ID, SEGMENT_SIZE, 0)));
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains(&SYSTEM_ID.to_string())
            && refused.stderr.contains(&OTHER_SYSTEM_ID.to_string()),
        "{}",
        refused.stderr
    );
    assert!(copies_of(&site.objects("a"), name).is_empty());
    assert!(copies_of(&site.objects("b"), name).is_empty());
    // Another segment size is refused too; a .history file carries no identifier.
    let big = segment(name, SYSTEM_ID, 2 * MIB, 0);
    let refused = site.push(&site.wal_file(name, &big));
    assert_eq!(refused.code, 1, "{refused:?}");
    assert_eq!(
        site.push(&site.wal_file("00000002.history", b"1\t0/3000000\tx\n"))
            .code,
        0
    );
    // A file whose header does not match its name is refused.
    let misnamed = site.wal_file(
        "000000010000000000000009",
        &segment("000000010000000000000008", SYSTEM_ID, SEGMENT_SIZE, 0),
    );
    let refused = site.push(&misnamed);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("0/800000"), "{}", refused.stderr);
}

#[test]
fn unreadable_sources_fail_without_writing() {
    let site = Site::new();
    let missing = site.path().join("pg_wal/000000010000000000000005");
    let run = site.push(&missing);
    assert_eq!(run.code, 1, "{run:?}");
    let fifo = site.path().join("pg_wal/000000010000000000000006");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    let run = site.push(&fifo);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("FIFO"), "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(20));
    let folder = site.path().join("pg_wal/000000010000000000000007");
    std::fs::create_dir(&folder).unwrap();
    assert_eq!(site.push(&folder).code, 1);
    let not_wal = site.wal_file("notes.txt", b"hello");
    assert_eq!(site.push(&not_wal).code, 1);
    let short = site.wal_file("000000010000000000000008", b"short");
    assert_eq!(site.push(&short).code, 1);
    assert!(site.objects("a").is_empty() && site.objects("b").is_empty());
}

#[test]
fn one_destination_down_fails_and_a_retry_completes_the_missing_copy() {
    let site = Site::new();
    let name = "000000010000000000000010";
    let bytes = segment(name, SYSTEM_ID, SEGMENT_SIZE, 0);
    let path = site.wal_file(name, &bytes);
    site.set_down("b", true);
    let failed = site.push(&path);
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(failed.stderr.contains("FAILED"), "{}", failed.stderr);
    assert_eq!(copies_of(&site.objects("a"), name).len(), 1);
    // Both down: a failure too.
    site.set_down("a", true);
    assert_eq!(site.push(&path).code, 1);
    site.set_down("a", false);
    site.set_down("b", false);
    let retried = site.push(&path);
    assert_eq!(retried.code, 0, "{retried:?}");
    let a = site.objects("a");
    let b = site.objects("b");
    assert_eq!(copies_of(&a, name), copies_of(&b, name));
    let object = copies_of(&a, name)[0].clone();
    assert_eq!(a[&object], b[&object]);
    assert_eq!(a["archive.json"], b["archive.json"]);
    assert_eq!(zstd_decoded(&b[&object]), bytes);
}

/// An S3 destination at a port where nothing listens.
fn unreachable_s3() -> String {
    let port = common::postgres::free_port();
    format!(
        "    - s3:\n        bucket: wal\n        endpoint: http://127.0.0.1:{port}\n        region: garage\n        path-style: true\n        access-key-id: ${{env:TEST_KEY_ID}}\n        secret-access-key: ${{env:TEST_SECRET}}"
    )
}

fn with_s3_env(site: &Site, args: &[&str]) -> common::Run {
    common::backup(site.path())
        .arg("-p")
        .arg("policies")
        .args(args)
        .env("TEST_KEY_ID", "GK0000")
        .env("TEST_SECRET", "secret")
        .output()
        .unwrap()
        .into()
}

#[test]
fn an_unreachable_store_fails_push_and_makes_fetch_abort() {
    let site = Site::new();
    let mut destinations = vec![local(&site.destination("a"))];
    destinations.push(unreachable_s3());
    site.policy(POLICY, &destinations, "zstd: { level: 3 }", "");
    let name = "000000010000000000000011";
    let bytes = segment(name, SYSTEM_ID, SEGMENT_SIZE, 0);
    let path = site.wal_file(name, &bytes);
    let pushed = with_s3_env(&site, &["wal", "push", POLICY, path.to_str().unwrap()]);
    assert_eq!(pushed.code, 1, "{pushed:?}");
    assert_eq!(copies_of(&site.objects("a"), name).len(), 1);
    // The local copy is found first: a success.
    let to = site.path().join("restore/RECOVERYXLOG");
    let fetched = with_s3_env(&site, &["wal", "fetch", POLICY, name, to.to_str().unwrap()]);
    assert_eq!(fetched.code, 0, "{fetched:?}");
    assert_eq!(std::fs::read(&to).unwrap(), bytes);
    // Not on the local one, and the store does not answer: abort, not "missing".
    let absent = "000000010000000000000012";
    let fetched = with_s3_env(
        &site,
        &["wal", "fetch", POLICY, absent, to.to_str().unwrap()],
    );
    assert_eq!(fetched.code, 128, "{fetched:?}");
    assert!(fetched.stderr.contains("127.0.0.1"), "{}", fetched.stderr);
}

#[test]
fn fetch_exits_1_only_when_no_destination_has_the_file() {
    let site = Site::new();
    let name = "000000010000000000000020";
    let bytes = segment(name, SYSTEM_ID, SEGMENT_SIZE, 0);
    assert_eq!(site.push(&site.wal_file(name, &bytes)).code, 0);
    let history = "00000002.history";
    assert_eq!(
        site.push(&site.wal_file(history, b"1\t0/3000000\tx\n"))
            .code,
        0
    );
    let to = site.path().join("restore/RECOVERYXLOG");

    let found = site.fetch(name, &to);
    assert_eq!(found.code, 0, "{found:?}");
    assert_eq!(std::fs::read(&to).unwrap(), bytes);
    let found = site.fetch(history, &to);
    assert_eq!(found.code, 0, "{found:?}");
    assert_eq!(std::fs::read(&to).unwrap(), b"1\t0/3000000\tx\n");

    let missing = site.fetch("000000010000000000000021", &to);
    assert_eq!(missing.code, 1, "{missing:?}");
    assert_eq!(site.fetch("00000003.history", &to).code, 1);

    // One destination down, the other says "missing": nobody knows, abort.
    site.set_down("a", true);
    assert_eq!(site.fetch("000000010000000000000021", &to).code, 128);
    // ... but the other has it: found.
    assert_eq!(site.fetch(name, &to).code, 0);
    site.set_down("b", true);
    assert_eq!(site.fetch(name, &to).code, 128);
    site.set_down("a", false);
    site.set_down("b", false);

    // A damaged copy: the next destination's is used; damaged everywhere: abort.
    let object = copies_of(&site.objects("a"), name)[0].clone();
    for which in ["a", "b"] {
        let path = site
            .destination(which)
            .join(POLICY)
            .join("wal")
            .join(&object);
        let mut stored = std::fs::read(&path).unwrap();
        let middle = stored.len() / 2;
        stored[middle] ^= 0x40;
        std::fs::write(&path, stored).unwrap();
        std::fs::remove_file(&to).unwrap();
        let fetched = site.fetch(name, &to);
        if which == "a" {
            assert_eq!(fetched.code, 0, "{fetched:?}");
            assert_eq!(std::fs::read(&to).unwrap(), bytes);
        } else {
            assert_eq!(fetched.code, 128, "{fetched:?}");
            // Nothing half-written at PATH, nothing left beside it.
            assert!(!to.exists());
            assert_eq!(
                std::fs::read_dir(site.path().join("restore"))
                    .unwrap()
                    .count(),
                0
            );
        }
    }

    // Not a WAL name, an invalid policy, an unknown policy, a bad command line, an unwritable PATH: abort.
    assert_eq!(site.fetch("../etc/passwd", &to).code, 128);
    assert_eq!(
        site.backup(&["wal", "fetch", "nope", name, to.to_str().unwrap()])
            .code,
        128
    );
    assert_eq!(site.backup(&["wal", "fetch", POLICY, name]).code, 128);
    let history_to = site.path().join("no-such-folder/RECOVERYHISTORY");
    assert_eq!(site.fetch(history, &history_to).code, 128);
    std::fs::write(
        site.path().join("policies/broken.yaml"),
        "apiVersion: backup/v1\nkind: Nope\n",
    )
    .unwrap();
    site.policy(POLICY, &site.locals(), "zstd: { level: 99 }", "");
    assert_eq!(site.fetch(history, &to).code, 128);
}

#[test]
fn encrypted_archives_need_the_right_identity() {
    let site = Site::new();
    let (identity, public) = common::age_keygen(site.path(), "key.txt");
    let (other, _) = common::age_keygen(site.path(), "other.txt");
    let encryption = format!("  encryption:\n    age:\n      recipients: [{public}]\n");
    site.policy(POLICY, &site.locals(), "zstd: { level: 3 }", &encryption);
    let name = "000000010000000000000030";
    let bytes = segment(name, SYSTEM_ID, SEGMENT_SIZE, 0);
    let pushed = site.push(&site.wal_file(name, &bytes));
    assert_eq!(pushed.code, 0, "{pushed:?}");
    let object = format!("{name}.{}.zst.age", sha16(&bytes));
    let objects = site.objects("a");
    assert!(objects.contains_key(&object), "{:?}", objects.keys());
    // Stock age and zstd decode it.
    let decoded = common::shell(&format!(
        "age -d -i {} {} | zstd -dc | sha256sum",
        identity.display(),
        site.destination("a")
            .join(POLICY)
            .join("wal")
            .join(&object)
            .display()
    ));
    assert!(decoded.starts_with(&sha16(&bytes)), "{decoded}");

    let to = site.path().join("restore/RECOVERYXLOG");
    // No identity: abort, not missing.
    let fetched = site.fetch(name, &to);
    assert_eq!(fetched.code, 128, "{fetched:?}");
    let wrong = site.backup(&[
        "wal",
        "fetch",
        POLICY,
        name,
        to.to_str().unwrap(),
        "--identity",
        other.to_str().unwrap(),
    ]);
    assert_eq!(wrong.code, 128, "{wrong:?}");
    assert!(!to.exists());
    let right = site.backup(&[
        "wal",
        "fetch",
        POLICY,
        name,
        to.to_str().unwrap(),
        "--identity",
        identity.to_str().unwrap(),
    ]);
    assert_eq!(right.code, 0, "{right:?}");
    assert_eq!(std::fs::read(&to).unwrap(), bytes);
    // The policy's own identity reference works the same way.
    let encryption = format!(
        "  encryption:\n    age:\n      recipients: [{public}]\n      identity: ${{file:{}}}\n",
        identity.display()
    );
    site.policy(POLICY, &site.locals(), "zstd: { level: 3 }", &encryption);
    std::fs::remove_file(&to).unwrap();
    assert_eq!(site.fetch(name, &to).code, 0);
    assert_eq!(std::fs::read(&to).unwrap(), bytes);
    let missing = site.fetch("000000010000000000000031", &to);
    assert_eq!(missing.code, 1, "{missing:?}");
}

#[test]
fn a_push_killed_midway_leaves_nothing_visible_and_a_retry_succeeds() {
    let site = Site::new();
    // A big segment, incompressible, at zstd's slowest level: seconds to store.
    site.policy(
        POLICY,
        &[local(&site.destination("a"))],
        "zstd: { level: 19 }",
        "",
    );
    let size = 32 * MIB;
    let name = "000000010000000000000002";
    let mut bytes = segment(name, SYSTEM_ID, size, 0);
    let mut random = Random::new(7);
    for chunk in bytes[8192 * 2..].chunks_mut(8) {
        let value = random.next().to_le_bytes();
        chunk.copy_from_slice(&value[..chunk.len()]);
    }
    let path = site.wal_file(name, &bytes);
    let mut child = common::backup(site.path())
        .args([
            "-p",
            "policies",
            "wal",
            "push",
            POLICY,
            path.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let partial = site
            .objects("a")
            .keys()
            .any(|object| names::is_partial(object));
        if partial {
            break;
        }
        assert!(Instant::now() < deadline, "no upload started");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "finished before it could be killed"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let objects = site.objects("a");
    assert!(copies_of(&objects, name).is_empty(), "{:?}", objects.keys());
    // A fetch now says "missing": nothing half-written is taken for the file.
    let to = site.path().join("restore/RECOVERYXLOG");
    assert_eq!(site.fetch(name, &to).code, 1);

    let retried = site.push(&path);
    assert_eq!(retried.code, 0, "{retried:?}");
    let objects = site.objects("a");
    assert!(
        !objects.keys().any(|object| names::is_unfinished(object)),
        "{:?}",
        objects.keys()
    );
    let copies = copies_of(&objects, name);
    assert_eq!(copies.len(), 1);
    assert_eq!(zstd_decoded(&objects[copies[0]]), bytes);
}

/// What the archive should hold per destination, for the randomized sequence.
#[derive(Debug, Default, Clone)]
struct Model {
    /// Per destination, WAL name → the hash of what it holds.
    stored: [BTreeMap<String, String>; 2],
}

#[test]
fn a_thousand_random_steps_never_lose_or_overwrite_a_segment() {
    let site = Site::new();
    let seed: u64 = std::env::var("WAL_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(20_261_201);
    let steps: usize = std::env::var("WAL_STEPS")
        .ok()
        .and_then(|steps| steps.parse().ok())
        .unwrap_or(1000);
    let mut random = Random::new(seed);
    let wal_names = [
        "000000010000000000000001",
        "000000010000000000000002",
        "000000010000000000000003",
        "0000000100000000000000FF",
        "000000010000000100000000",
        "00000002.history",
    ];
    let content = |name: &str, variant: u64| -> Vec<u8> {
        if name.ends_with(".history") {
            format!("1\t0/{variant}000000\tvariant {variant}\n").into_bytes()
        } else {
            segment(name, SYSTEM_ID, SEGMENT_SIZE, variant)
        }
    };
    let which = ["a", "b"];
    let mut model = Model::default();
    // The first push, everything up, makes the marker everywhere.
    let first = content(wal_names[0], 0);
    assert_eq!(site.push(&site.wal_file(wal_names[0], &first)).code, 0);
    for stored in &mut model.stored {
        stored.insert(wal_names[0].to_owned(), sha16(&first));
    }
    let to = site.path().join("restore/RECOVERYXLOG");
    // How often each (action, exit code) came up: the sequence must cover them all.
    let mut seen: BTreeMap<(&str, i32), usize> = BTreeMap::new();
    let mut checked: BTreeMap<(usize, String), Vec<u8>> = BTreeMap::new();
    for step in 0..steps {
        let down = [random.below(5) == 0, random.below(5) == 0];
        for (index, name) in which.iter().enumerate() {
            site.set_down(name, down[index]);
        }
        let wal = wal_names[random.below(wal_names.len() as u64) as usize];
        let context = format!("seed {seed} step {step}: {wal}, down {down:?}");
        match random.below(10) {
            // push the file as PostgreSQL has it (variant 0), mostly
            0..=6 => {
                let variant = if random.below(4) == 0 { 1 } else { 0 };
                let bytes = content(wal, variant);
                let hash = sha16(&bytes);
                let conflict = (0..2).any(|index| {
                    !down[index]
                        && model.stored[index]
                            .get(wal)
                            .is_some_and(|stored| *stored != hash)
                });
                let expected = if conflict || down.iter().any(|down| *down) {
                    1
                } else {
                    0
                };
                let run = site.push(&site.wal_file(wal, &bytes));
                assert_eq!(
                    run.code, expected,
                    "{context}: push variant {variant}: {run:?}"
                );
                let action = if conflict { "conflicting push" } else { "push" };
                *seen.entry((action, run.code)).or_default() += 1;
                if !conflict {
                    for (stored, down) in model.stored.iter_mut().zip(down) {
                        if !down {
                            stored.insert(wal.to_owned(), hash.clone());
                        }
                    }
                }
            }
            // a segment of another cluster: always refused
            7 if !wal.ends_with(".history") => {
                let bytes = segment(wal, OTHER_SYSTEM_ID, SEGMENT_SIZE, 0);
                let run = site.push(&site.wal_file(wal, &bytes));
                assert_eq!(run.code, 1, "{context}: other cluster: {run:?}");
                *seen.entry(("other cluster", run.code)).or_default() += 1;
            }
            // fetch, as restore_command
            _ => {
                // Now and then a file that is never archived.
                let wal = match random.below(6) {
                    0 => "000000010000000000000009",
                    1 => "00000003.history",
                    _ => wal,
                };
                let mut reasons = false;
                let mut found = None;
                for (stored, down) in model.stored.iter().zip(down) {
                    if down {
                        reasons = true;
                        continue;
                    }
                    if let Some(hash) = stored.get(wal) {
                        found = Some(hash.clone());
                        break;
                    }
                }
                let expected = match (&found, reasons) {
                    (Some(_), _) => 0,
                    (None, true) => 128,
                    (None, false) => 1,
                };
                let _ = std::fs::remove_file(&to);
                let run = site.fetch(wal, &to);
                assert_eq!(run.code, expected, "{context}: fetch {wal}: {run:?}");
                *seen.entry(("fetch", run.code)).or_default() += 1;
                if let Some(hash) = found {
                    assert_eq!(sha16(&std::fs::read(&to).unwrap()), hash, "{context}");
                } else {
                    assert!(!to.exists(), "{context}");
                }
            }
        }
        // After every step: what each reachable destination holds is the model,
        // one copy per WAL name, none lost, none replaced, nothing half-written.
        for index in 0..2 {
            if down[index] {
                continue;
            }
            let objects = site.objects(which[index]);
            let mut held = BTreeMap::new();
            for (object, bytes) in &objects {
                if object == names::WAL_MARKER {
                    let marker: serde_json::Value = serde_json::from_slice(bytes).unwrap();
                    assert_eq!(
                        marker["system_identifier"],
                        SYSTEM_ID.to_string(),
                        "{context}"
                    );
                    continue;
                }
                let parsed = names::parse_wal_object(object)
                    .unwrap_or_else(|| panic!("{context}: unexpected `{object}`"));
                // Decoded and hashed when first seen; byte for byte the same ever after.
                match checked.get(&(index, object.clone())) {
                    Some(before) => assert!(before == bytes, "{context}: `{object}` changed"),
                    None => {
                        let decoded = zstd::stream::decode_all(bytes.as_slice()).unwrap();
                        assert_eq!(sha16(&decoded), parsed.hash, "{context}");
                        checked.insert((index, object.clone()), bytes.clone());
                    }
                }
                assert!(
                    held.insert(parsed.wal.to_owned(), parsed.hash.to_owned())
                        .is_none(),
                    "{context}: two copies of {}",
                    parsed.wal
                );
            }
            assert_eq!(
                held, model.stored[index],
                "{context}: destination {}",
                which[index]
            );
        }
    }
    site.set_down("a", false);
    site.set_down("b", false);
    if steps >= 200 {
        for outcome in [
            ("push", 0),
            ("push", 1),
            ("conflicting push", 1),
            ("other cluster", 1),
            ("fetch", 0),
            ("fetch", 1),
            ("fetch", 128),
        ] {
            assert!(
                seen.contains_key(&outcome),
                "never seen: {outcome:?} in {seen:?}"
            );
        }
    }
    eprintln!("{seen:?}");
}

#[test]
fn a_real_server_archives_through_backup() {
    let shared = tempfile::Builder::new()
        .prefix("backup-wal-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let policies = shared.path().join("policies");
    let destination = shared.path().join("archive");
    let state = shared.path().join("state");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("app-db.yaml"),
        format!(
            "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: {POLICY}\nspec:\n  source:\n    postgres:\n      url: postgresql://postgres@127.0.0.1:1/app\n  schedule:\n    cron: \"@daily\"\n  retention:\n    keep-last: 3\n  destinations:\n{}\n  compression:\n    zstd: {{ level: 3 }}\n",
            local(&destination)
        ),
    )
    .unwrap();
    if common::postgres::running_as_root() {
        assert!(
            Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(shared.path())
                .status()
                .unwrap()
                .success()
        );
    }
    let binary = env!("CARGO_BIN_EXE_backup");
    let command = format!(
        "{binary} -q -p {} --state-dir {} wal push {POLICY} %p",
        policies.display(),
        state.display()
    );
    let cluster = common::postgres::Cluster::start_with(&[
        "wal_level = replica".to_owned(),
        "archive_mode = on".to_owned(),
        format!("archive_command = '{command}'"),
    ]);
    let before: u64 = cluster
        .sql("postgres", "SELECT archived_count FROM pg_stat_archiver")
        .parse()
        .unwrap();
    let output = cluster
        .command("pgbench")
        .args(["-i", "-s", "2", "-q", "-h"])
        .arg(cluster.socket_dir())
        .args([
            "-p",
            &cluster.port.to_string(),
            "-U",
            "postgres",
            "postgres",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "pgbench: {output:?}");
    let switched = cluster.sql("postgres", "SELECT pg_walfile_name(pg_switch_wal())");
    let deadline = Instant::now() + Duration::from_secs(60);
    let last = loop {
        let row = cluster.sql(
            "postgres",
            "SELECT archived_count || ' ' || coalesce(last_archived_wal, '') || ' ' || failed_count FROM pg_stat_archiver",
        );
        let fields: Vec<&str> = row.split(' ').collect();
        let archived: u64 = fields[0].parse().unwrap();
        assert_eq!(fields[2], "0", "pushes failed: {row}");
        if archived > before && fields[1] >= switched.as_str() {
            break fields[1].to_owned();
        }
        assert!(Instant::now() < deadline, "not archived in time: {row}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let objects = objects(&destination);
    let marker: serde_json::Value = serde_json::from_slice(&objects["archive.json"]).unwrap();
    let system_identifier = cluster.sql(
        "postgres",
        "SELECT system_identifier FROM pg_control_system()",
    );
    assert_eq!(marker["system_identifier"], system_identifier);
    assert_eq!(marker["wal_segment_size"], 16 * MIB);
    // Every segment from the first to the last archived one, no gap.
    let archive = backup::wal::list(
        &backup::destination::local::Local::new(destination.clone()),
        POLICY,
    )
    .unwrap();
    let summary = archive.summary();
    assert!(summary.gaps.is_empty(), "{summary:?}");
    assert_eq!(summary.ranges.len(), 1, "{summary:?}");
    assert_eq!(summary.ranges[0].last, last);
    assert!(summary.segments >= 2, "{summary:?}");
    // What was archived fetches back whole.
    let to = shared.path().join("RECOVERYXLOG");
    let fetched = common::run(
        shared.path(),
        &[
            "-p",
            policies.to_str().unwrap(),
            "wal",
            "fetch",
            POLICY,
            &last,
            to.to_str().unwrap(),
        ],
    );
    assert_eq!(fetched.code, 0, "{fetched:?}");
    let bytes = std::fs::read(&to).unwrap();
    assert_eq!(bytes.len() as u64, 16 * MIB);
    let copies = copies_of(&objects, &last);
    assert_eq!(
        names::parse_wal_object(copies[0]).unwrap().hash,
        sha16(&bytes)
    );
    let status = backup::wal::status::read(&backup::state::StateDir::new(&state), POLICY)
        .unwrap()
        .unwrap();
    assert!(
        status.last_success.is_some() && status.failures == 0,
        "{status:?}"
    );
}
