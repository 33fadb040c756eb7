//! zstd and age against the stock `zstd` and `age` programs, both ways: what
//! `backup` writes decodes with them byte for byte, and what they produce by
//! hand `backup` restores. Damage, wrong and missing keys are refused before
//! a target is touched, and the key never shows.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Run, age_keygen as keygen, files_under, run, sqlite3};

/// Runs a stock program, which must succeed; its stdout.
fn stock(program: &str, args: &[&str], directory: &Path) -> Vec<u8> {
    let output = Command::new(program)
        .args(args)
        .current_dir(directory)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("{program}: {error}"));
    assert!(output.status.success(), "{program} {args:?}: {output:?}");
    output.stdout
}

/// A site: `app.db` with rows, a policy `app` with `codec` (YAML lines under
/// `spec:`), a local store.
struct Site {
    work: tempfile::TempDir,
}

impl Site {
    fn new(codec: &str) -> Site {
        let site = Site {
            work: tempfile::tempdir().unwrap(),
        };
        sqlite3(
            &site.path().join("app.db"),
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
             INSERT INTO t (v) SELECT hex(randomblob(40)) || ' lorem ipsum ' || i FROM n;",
        );
        site.policy(codec);
        site
    }

    fn policy(&self, codec: &str) {
        std::fs::write(
            self.path().join("app.yaml"),
            format!(
                "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: app\nspec:\n  source:\n    sqlite: {{path: app.db}}\n  schedule:\n    cron: \"0 1 * * *\"\n  retention:\n    keep-last: 5\n  destinations:\n    - local: {{path: store}}\n{codec}"
            ),
        )
        .unwrap();
    }

    fn path(&self) -> &Path {
        self.work.path()
    }

    fn run(&self, args: &[&str]) -> Run {
        let args = [&["-p", "app.yaml"][..], args].concat();
        run(self.path(), &args)
    }

    /// Takes a backup: its sidecar and the path of its data.
    fn backup(&self) -> (serde_json::Value, PathBuf) {
        let taken = self.run(&["run", "app"]);
        assert_eq!(taken.code, 0, "{taken:?}");
        let mut sidecars = common::sidecars(&self.path().join("store"));
        // Drill evidence beside the backups is no sidecar.
        sidecars.retain(|sidecar| sidecar["id"].is_string());
        sidecars.sort_by_key(|sidecar| sidecar["id"].as_str().unwrap().to_owned());
        let sidecar = sidecars.pop().unwrap();
        let data = self
            .path()
            .join("store/app")
            .join(sidecar["artifact"]["name"].as_str().unwrap());
        (sidecar, data)
    }

    fn rows(&self, database: &str) -> String {
        sqlite3(
            &self.path().join(database),
            "SELECT count(*), sum(length(v)) FROM t;",
        )
    }
}

fn sha256_of(path: &Path) -> String {
    let output = stock("sha256sum", &[path.to_str().unwrap()], Path::new("/"));
    String::from_utf8(output).unwrap()[..64].to_owned()
}

#[test]
fn zstd_and_age_backups_decode_with_the_stock_tools_byte_for_byte() {
    let work = tempfile::tempdir().unwrap();
    let (identity, public) = keygen(work.path(), "key.txt");
    let site = Site::new(&format!(
        "  compression:\n    zstd: {{level: 3}}\n  encryption:\n    age:\n      recipients: [{public}]\n"
    ));
    let (sidecar, data) = site.backup();
    let name = sidecar["artifact"]["name"].as_str().unwrap();
    assert!(name.ends_with(".sqlite.zst.age"), "{name}");
    assert_eq!(sidecar["artifact"]["compression"], "zstd");
    assert_eq!(sidecar["encryption"]["method"], "age");
    let fingerprint = sidecar["encryption"]["recipients"][0].as_str().unwrap();
    assert!(fingerprint.starts_with("sha256:"), "{sidecar}");
    assert!(!sidecar.to_string().contains(&public));
    // The sidecar's checksum is of the stored (encrypted) bytes.
    assert_eq!(sha256_of(&data), sidecar["artifact"]["sha256"]);

    // age -d -i key.txt <artifact> | zstd -d: the SQLite copy, whole.
    let plain = site.path().join("plain.sqlite.zst");
    stock(
        "age",
        &[
            "-d",
            "-i",
            identity.to_str().unwrap(),
            "-o",
            plain.to_str().unwrap(),
            data.to_str().unwrap(),
        ],
        site.path(),
    );
    let decoded = stock("zstd", &["-d", "-c", plain.to_str().unwrap()], site.path());
    assert_eq!(
        decoded.len() as u64,
        sidecar["artifact"]["uncompressed_size"].as_u64().unwrap()
    );
    std::fs::write(site.path().join("decoded.db"), &decoded).unwrap();
    assert_eq!(site.rows("decoded.db"), site.rows("app.db"));
    // One standard frame with a content checksum: `zstd -t` checks it.
    stock("zstd", &["-t", "-q", plain.to_str().unwrap()], site.path());

    // zstd alone and none: `zstd -d` and the file itself.
    for (codec, suffix) in [
        ("  compression:\n    zstd: {level: 19}\n", ".sqlite.zst"),
        ("  compression:\n    none: {}\n", ".sqlite"),
    ] {
        site.policy(codec);
        let (sidecar, data) = site.backup();
        let name = sidecar["artifact"]["name"].as_str().unwrap();
        assert!(name.ends_with(suffix), "{name}");
        assert!(sidecar.get("encryption").is_none(), "{sidecar}");
        let decoded = if suffix.ends_with(".zst") {
            stock("zstd", &["-d", "-c", data.to_str().unwrap()], site.path())
        } else {
            std::fs::read(&data).unwrap()
        };
        std::fs::write(site.path().join("decoded.db"), &decoded).unwrap();
        assert_eq!(site.rows("decoded.db"), site.rows("app.db"), "{codec}");
        let verified = site.run(&["verify"]);
        assert_eq!(verified.code, 0, "{verified:?}");
    }
}

#[test]
fn verify_checks_encrypted_backups_without_the_key_and_decrypts_with_it() {
    let work = tempfile::tempdir().unwrap();
    let (identity, public) = keygen(work.path(), "key.txt");
    let (other, _) = keygen(work.path(), "other.txt");
    let site = Site::new(&format!(
        "  compression:\n    zstd: {{level: 3}}\n  encryption:\n    age:\n      recipients: [{public}]\n"
    ));
    let (_, data) = site.backup();

    let verified = site.run(&["verify"]);
    assert_eq!(verified.code, 0, "{verified:?}");
    assert!(
        verified.stdout.contains("encrypted: stored bytes checked"),
        "{}",
        verified.stdout
    );
    // --decrypt without a key anywhere: an error, not a silent stored-only check.
    let refused = site.run(&["verify", "--decrypt"]);
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(refused.stderr.contains("--identity"), "{}", refused.stderr);
    let decrypted = site.run(&[
        "verify",
        "--decrypt",
        "--identity",
        identity.to_str().unwrap(),
    ]);
    assert_eq!(decrypted.code, 0, "{decrypted:?}");
    assert!(
        !decrypted.stdout.contains("stored bytes"),
        "{}",
        decrypted.stdout
    );
    let wrong = site.run(&["verify", "--decrypt", "--identity", other.to_str().unwrap()]);
    assert_eq!(wrong.code, 5, "{wrong:?}");
    assert!(
        wrong.stdout.contains("none of the given keys"),
        "{}",
        wrong.stdout
    );

    // One flipped bit: found without the key too.
    let mut bytes = std::fs::read(&data).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&data, &bytes).unwrap();
    let damaged = site.run(&["verify"]);
    assert_eq!(damaged.code, 5, "{damaged:?}");
    assert!(damaged.stdout.contains("SHA-256"), "{}", damaged.stdout);
}

#[test]
fn restores_decrypt_with_the_policy_identity_and_refuse_keys_and_damage_before_touching_the_target()
{
    let work = tempfile::tempdir().unwrap();
    let (identity, public) = keygen(work.path(), "key.txt");
    let (other, other_public) = keygen(work.path(), "other.txt");
    let codec = |recipient: &str, with_identity: bool| {
        format!(
            "  compression:\n    zstd: {{level: 3}}\n  encryption:\n    age:\n      recipients: [{recipient}]\n{}",
            if with_identity {
                format!("      identity: ${{file:{}}}\n", identity.display())
            } else {
                String::new()
            }
        )
    };
    let site = Site::new(&codec(&public, true));
    let (sidecar, data) = site.backup();
    let id = sidecar["id"].as_str().unwrap().to_owned();

    let dry = site.run(&["restore", "app", "--to", "new.db", "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(
        dry.stdout
            .contains("SHA-256, age stream, zstd stream, SQLite header"),
        "{}",
        dry.stdout
    );
    let restored = site.run(&["restore", "app", "--to", "new.db", "--yes"]);
    assert_eq!(restored.code, 0, "{restored:?}");
    assert_eq!(site.rows("new.db"), site.rows("app.db"));
    let drill = site.run(&["verify", "--restore-test"]);
    assert_eq!(drill.code, 0, "{drill:?}");

    // Without the policy's identity: no key, a clear error, nothing written.
    site.policy(&codec(&public, false));
    let refused = site.run(&["restore", "app", "--to", "none.db", "--yes"]);
    assert_eq!(refused.code, 5, "{refused:?}");
    assert!(refused.stderr.contains(&id), "{}", refused.stderr);
    assert!(refused.stderr.contains("--identity"), "{}", refused.stderr);
    assert!(!site.path().join("none.db").exists());
    // The wrong key.
    let wrong = site.run(&[
        "restore",
        "app",
        "--to",
        "none.db",
        "--yes",
        "--identity",
        other.to_str().unwrap(),
    ]);
    assert_eq!(wrong.code, 5, "{wrong:?}");
    assert!(
        wrong.stderr.contains("none of the given keys"),
        "{}",
        wrong.stderr
    );
    assert!(!site.path().join("none.db").exists());

    // Damage in the middle, then a cut: refused, the existing target as it was.
    let target = std::fs::read(site.path().join("app.db")).unwrap();
    let original = std::fs::read(&data).unwrap();
    let mut flipped = original.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    for damaged in [flipped, original[..original.len() - 200].to_vec()] {
        std::fs::write(&data, &damaged).unwrap();
        let refused = site.run(&[
            "restore",
            "app",
            "--yes",
            "--identity",
            identity.to_str().unwrap(),
        ]);
        assert_eq!(refused.code, 5, "{refused:?}");
        assert!(refused.stderr.contains(&id), "{}", refused.stderr);
        assert_eq!(std::fs::read(site.path().join("app.db")).unwrap(), target);
    }
    std::fs::write(&data, &original).unwrap();

    // A backup encrypted to other recipients only.
    site.policy(&codec(&other_public, false));
    let (sidecar, _) = site.backup();
    let refused = site.run(&[
        "restore",
        "app",
        "--backup",
        sidecar["id"].as_str().unwrap(),
        "--to",
        "none.db",
        "--yes",
        "--identity",
        identity.to_str().unwrap(),
    ]);
    assert_eq!(refused.code, 5, "{refused:?}");
    assert!(
        refused.stderr.contains("none of the given keys"),
        "{}",
        refused.stderr
    );
    assert!(!site.path().join("none.db").exists());

    // The key never shows: not in output, state, sidecars or the store.
    let secret = std::fs::read_to_string(&identity).unwrap();
    let secret = secret
        .lines()
        .find(|line| line.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .to_owned();
    for run in [&restored, &drill, &refused, &wrong] {
        assert!(!run.stdout.contains(&secret) && !run.stderr.contains(&secret));
    }
    for folder in ["store", ".state"] {
        for (path, bytes) in files_under(&site.path().join(folder)) {
            assert!(
                !String::from_utf8_lossy(&bytes).contains(&secret),
                "{} holds the key",
                path.display()
            );
        }
    }
}

#[test]
fn backup_restores_what_sqlite3_zstd_and_age_made_by_hand() {
    use backup::inventory::metadata::{Encryption, hex};
    use sha2::Digest as _;
    let work = tempfile::tempdir().unwrap();
    let (identity, public) = keygen(work.path(), "key.txt");
    let site = Site::new(&format!(
        "  compression:\n    zstd: {{level: 3}}\n  encryption:\n    age:\n      recipients: [{public}]\n"
    ));
    // sqlite3 .backup | zstd | age -r: the stock tools' backup.
    sqlite3(
        &site.path().join("app.db"),
        &format!(".backup '{}'", site.path().join("copy.db").display()),
    );
    let copy = std::fs::read(site.path().join("copy.db")).unwrap();
    stock(
        "zstd",
        &["-q", "-3", "copy.db", "-o", "copy.db.zst"],
        site.path(),
    );
    let id = "20261130T010000Z";
    let folder = site.path().join("store/app");
    std::fs::create_dir_all(&folder).unwrap();
    let name = format!("{id}.sqlite.zst.age");
    stock(
        "age",
        &[
            "-r",
            &public,
            "-o",
            folder.join(&name).to_str().unwrap(),
            "copy.db.zst",
        ],
        site.path(),
    );
    let stored = std::fs::read(folder.join(&name)).unwrap();
    let created_at = chrono::DateTime::parse_from_rfc3339("2026-11-30T01:00:00Z")
        .unwrap()
        .to_utc();
    let mut metadata = common::sidecar_for("app", id, created_at, &stored, Vec::new());
    metadata.artifact.name = name;
    metadata.artifact.sha256 = hex(&sha2::Sha256::digest(&stored));
    metadata.artifact.compression = "zstd".to_owned();
    metadata.artifact.uncompressed_size = copy.len() as u64;
    metadata.encryption = Some(Encryption {
        method: "age".to_owned(),
        recipients: vec![backup::codec::fingerprint(&public)],
    });
    metadata.seal().unwrap();
    std::fs::write(
        folder.join(format!("{id}.json")),
        serde_json::to_vec_pretty(&metadata).unwrap(),
    )
    .unwrap();

    let verified = site.run(&[
        "verify",
        "--decrypt",
        "--identity",
        identity.to_str().unwrap(),
    ]);
    assert_eq!(verified.code, 0, "{verified:?}");
    let restored = site.run(&[
        "restore",
        "app",
        "--backup",
        id,
        "--to",
        "new.db",
        "--yes",
        "--identity",
        identity.to_str().unwrap(),
    ]);
    assert_eq!(restored.code, 0, "{restored:?}");
    assert_eq!(site.rows("new.db"), site.rows("app.db"));

    // A codec this version does not know: refused by name, nothing written.
    metadata.artifact.compression = "lz4".to_owned();
    metadata.seal().unwrap();
    let unknown = "20261130T020000Z";
    metadata.id = unknown.to_owned();
    metadata.artifact.name = format!("{unknown}.sqlite.lz4");
    metadata.seal().unwrap();
    std::fs::write(folder.join(&metadata.artifact.name), &stored).unwrap();
    std::fs::write(
        folder.join(format!("{unknown}.json")),
        serde_json::to_vec_pretty(&metadata).unwrap(),
    )
    .unwrap();
    let refused = site.run(&[
        "restore",
        "app",
        "--backup",
        unknown,
        "--to",
        "lz4.db",
        "--yes",
        "--identity",
        identity.to_str().unwrap(),
    ]);
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(refused.stderr.contains("lz4"), "{}", refused.stderr);
    assert!(!site.path().join("lz4.db").exists());
}

#[test]
fn validate_checks_recipients_and_keeps_the_identity_out_of_the_policy() {
    let site = Site::new(
        "  encryption:\n    age:\n      recipients: [age1notakey]\n      identity: AGE-SECRET-KEY-1CANARY\n",
    );
    let refused = site.run(&["validate"]);
    assert_eq!(refused.code, 3, "{refused:?}");
    let text = format!("{}{}", refused.stdout, refused.stderr);
    assert!(text.contains("app.yaml:16:20"), "{text}");
    assert!(text.contains("age1notakey"), "{text}");
    assert!(
        text.contains("must not be written into the policy"),
        "{text}"
    );
    assert!(!text.contains("CANARY"), "{text}");
    site.policy("  compression:\n    lz4: {}\n");
    let refused = site.run(&["validate"]);
    assert_eq!(refused.code, 3, "{refused:?}");
    let text = format!("{}{}", refused.stdout, refused.stderr);
    assert!(text.contains("zstd"), "{text}");
}

#[test]
fn status_warns_when_an_encrypted_policy_has_no_identity_to_restore_with() {
    let work = tempfile::tempdir().unwrap();
    let (identity, public) = keygen(work.path(), "key.txt");
    let site = Site::new(&format!(
        "  encryption:\n    age:\n      recipients: [{public}]\n"
    ));
    site.backup();
    let status = site.run(&["status", "--no-crontab"]);
    assert_eq!(status.code, 1, "{status:?}");
    assert!(status.stdout.contains("no identity"), "{}", status.stdout);
    site.policy(&format!(
        "  encryption:\n    age:\n      recipients: [{public}]\n      identity: ${{file:{}}}\n",
        identity.display()
    ));
    let status = site.run(&["status", "--no-crontab"]);
    assert!(!status.stdout.contains("no identity"), "{}", status.stdout);
}
