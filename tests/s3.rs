//! S3 destinations against a real S3 server: Garage, a single node on
//! loopback, started by the harness and stopped even when a test fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::faultproxy::{FaultProxy, LOSE_COMPLETE_MULTIPART, LOSE_CREATE_MULTIPART};
use common::garage::Garage;
use common::{Run, sqlite3};

/// A site whose policy `app` backs an SQLite database up to a local folder
/// and to the Garage bucket, with credentials given as `${env:…}` references.
struct Site<'a> {
    work: tempfile::TempDir,
    garage: &'a Garage,
}

impl<'a> Site<'a> {
    fn new(garage: &'a Garage, prefix: &str, rows: u32) -> Site<'a> {
        let site = Site {
            work: tempfile::tempdir().unwrap(),
            garage,
        };
        sqlite3(
            &site.path().join("app.db"),
            &format!(
                "CREATE TABLE t (v BLOB); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) INSERT INTO t SELECT randomblob(4000) FROM n;"
            ),
        );
        std::fs::create_dir_all(site.path().join("policies")).unwrap();
        std::fs::write(
            site.path().join("policies/app.yaml"),
            format!(
                "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: app\nspec:\n  source:\n    sqlite:\n      path: ../app.db\n  schedule:\n    cron: \"0 1 * * *\"\n  retention:\n    keep-last: 3\n  destinations:\n    - local:\n        path: ../store\n    - s3:\n        bucket: {}\n        prefix: {prefix}\n        endpoint: {}\n        region: {}\n        path-style: true\n        access-key-id: ${{env:TEST_S3_KEY_ID}}\n        secret-access-key: ${{env:TEST_S3_SECRET}}\n",
                garage.bucket(),
                garage.endpoint(),
                garage.region()
            ),
        )
        .unwrap();
        site
    }

    fn path(&self) -> &Path {
        self.work.path()
    }

    fn command(&self) -> Command {
        s3_command(self.path(), self.garage)
    }

    fn run(&self, args: &[&str]) -> Run {
        run_checked(self.command(), self.garage, args)
    }

    fn apply_at(&self, now: &str) -> Run {
        self.run(&["apply", "--auto-approve", "--no-crontab", "--now", now])
    }

    fn plan_at(&self, now: &str) -> Run {
        self.run(&["plan", "--no-crontab", "--detailed-exitcode", "--now", now])
    }

    /// (destination, id, state) of every backup `list` shows.
    fn listed(&self) -> Vec<(String, String, String)> {
        let listed = self.run(&["list", "--format", "json"]);
        assert_eq!(listed.code, 0, "{listed:?}");
        let report: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
        let mut rows: Vec<(String, String, String)> = report["backups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                (
                    row["destination"].as_str().unwrap().to_owned(),
                    row["id"].as_str().unwrap().to_owned(),
                    row["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        rows.sort();
        rows
    }

    fn s3_location(&self, prefix: &str) -> String {
        // S3 destinations are named with their endpoint: the same bucket
        // on another store is another destination.
        format!(
            "s3:{}/{}/{prefix}",
            self.garage.endpoint(),
            self.garage.bucket()
        )
    }
}

fn s3_command(directory: &Path, garage: &Garage) -> Command {
    garage.backup_command(directory)
}

/// Runs `command ARGS`; fails the test if the secret key shows in its output.
fn run_checked(mut command: Command, garage: &Garage, args: &[&str]) -> Run {
    let result: Run = command.args(args).output().unwrap().into();
    let secret = garage.secret_access_key();
    assert!(
        !result.stdout.contains(secret) && !result.stderr.contains(secret),
        "the secret key leaked: {result:?}"
    );
    result
}

/// `curl` as an independent S3 client.
fn curl(garage: &Garage, method: &str, key: &str, output: Option<&Path>) -> std::process::Output {
    let mut command = Command::new("curl");
    let url = format!("{}/{}/{key}", garage.endpoint(), garage.bucket());
    command
        .args(["--silent", "--show-error", "--fail", "-X", method])
        .args(["--aws-sigv4", &format!("aws:amz:{}:s3", garage.region())])
        // S3 wants the payload's hash signed; these requests have no body.
        .args([
            "--header",
            "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ])
        .args([
            "--user",
            &format!("{}:{}", garage.access_key_id(), garage.secret_access_key()),
        ])
        .arg(url);
    if let Some(output) = output {
        command.arg("--output").arg(output);
    }
    command.stdin(Stdio::null()).output().unwrap()
}

/// Uploads `file` to `key` with `curl`.
fn curl_put(garage: &Garage, key: &str, file: &Path) {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "-X", "PUT"])
        .args(["--aws-sigv4", &format!("aws:amz:{}:s3", garage.region())])
        .args(["--header", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
        .args([
            "--user",
            &format!("{}:{}", garage.access_key_id(), garage.secret_access_key()),
        ])
        .arg("--upload-file")
        .arg(file)
        .arg(format!("{}/{}/{key}", garage.endpoint(), garage.bucket()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
}

fn sha256_of(path: &Path) -> String {
    let output = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(output.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn apply_keeps_a_local_and_an_s3_copy_of_every_backup() {
    let garage = Garage::start();
    // About 24 MB of incompressible rows: the upload takes several parts.
    let site = Site::new(&garage, "prod/", 6000);
    let s3 = site.s3_location("prod/");
    let local = site.path().join("store").display().to_string();

    let applied = site.apply_at("2026-11-24T01:30:00Z");
    assert_eq!(applied.code, 0, "{applied:?}");
    let applied = site.apply_at("2026-11-25T01:30:00Z");
    assert_eq!(applied.code, 0, "{applied:?}");
    let ids = ["20261124T013000Z", "20261125T013000Z"];
    let expected: Vec<(String, String, String)> = [&local, &s3]
        .iter()
        .flat_map(|destination| {
            ids.iter().map(move |id| {
                (
                    (*destination).clone(),
                    (*id).to_owned(),
                    "complete".to_owned(),
                )
            })
        })
        .collect();
    let mut expected = expected;
    expected.sort();
    assert_eq!(site.listed(), expected);
    // Debug logs of every layer, the SDK's included, keep the secret out too.
    assert_eq!(site.run(&["-vvv", "list"]).code, 0);
    let verified = site.run(&["verify"]);
    assert_eq!(verified.code, 0, "{verified:?}");
    assert!(
        verified.stdout.contains("Verified 4 backups: 4 ok"),
        "{}",
        verified.stdout
    );

    // An independent client reads what backup uploaded: same bytes as the sidecar says.
    let downloaded = site.path().join("downloaded.gz");
    let got = curl(
        &garage,
        "GET",
        &format!("prod/app/{}.sqlite.gz", ids[1]),
        Some(&downloaded),
    );
    assert!(got.status.success(), "{got:?}");
    let sidecar: serde_json::Value = serde_json::from_slice(
        &std::fs::read(site.path().join(format!("store/app/{}.json", ids[1]))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        sha256_of(&downloaded),
        sidecar["artifact"]["sha256"].as_str().unwrap()
    );

    // One copy deleted by hand on each side: plan shows exactly one copy each, apply restores.
    std::fs::remove_file(site.path().join(format!("store/app/{}.sqlite.gz", ids[0]))).unwrap();
    std::fs::remove_file(site.path().join(format!("store/app/{}.json", ids[0]))).unwrap();
    for name in [format!("{}.json", ids[1]), format!("{}.sqlite.gz", ids[1])] {
        let deleted = curl(&garage, "DELETE", &format!("prod/app/{name}"), None);
        assert!(deleted.status.success(), "{deleted:?}");
    }
    let plan = site.plan_at("2026-11-25T01:30:00Z");
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(
        plan.stdout
            .contains("Plan: 0 to back up, 2 to copy, 0 to prune"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains(&format!("+ copy {} to {local} (from {s3})", ids[0])),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains(&format!("+ copy {} to {s3} (from {local})", ids[1])),
        "{}",
        plan.stdout
    );
    let applied = site.apply_at("2026-11-25T01:30:00Z");
    assert_eq!(applied.code, 0, "{applied:?}");
    assert_eq!(site.listed(), expected);
    let settled = site.plan_at("2026-11-25T01:30:00Z");
    assert_eq!(settled.code, 0, "{settled:?}");
    assert_eq!(site.run(&["verify"]).code, 0);

    // plan caches sidecars by ETag; a sidecar changed behind its back is read again.
    let original = site.path().join("original.json");
    let got = curl(
        &garage,
        "GET",
        &format!("prod/app/{}.json", ids[0]),
        Some(&original),
    );
    assert!(got.status.success(), "{got:?}");
    let other = site.path().join(format!("store/app/{}.json", ids[1]));
    curl_put(&garage, &format!("prod/app/{}.json", ids[0]), &other);
    let plan = site.plan_at("2026-11-25T01:30:00Z");
    assert!(
        plan.stdout.contains(&format!(
            "sidecar {}.json on {s3} cannot be read (sidecar names policy `app` and id `{}`",
            ids[0], ids[1]
        )),
        "{}",
        plan.stdout
    );
    curl_put(&garage, &format!("prod/app/{}.json", ids[0]), &original);
    let settled = site.plan_at("2026-11-25T01:30:00Z");
    assert_eq!(settled.code, 0, "{settled:?}");

    // Retention prunes on S3 as on disk: sidecar first, then data, confirmed.
    for date in ["2026-11-26", "2026-11-27"] {
        assert_eq!(site.apply_at(&format!("{date}T01:30:00Z")).code, 0);
    }
    let listed = site.listed();
    assert_eq!(listed.len(), 6, "{listed:?}");
    assert!(!listed.iter().any(|(_, id, _)| id == ids[0]), "{listed:?}");
    let gone = curl(
        &garage,
        "GET",
        &format!("prod/app/{}.sqlite.gz", ids[0]),
        None,
    );
    assert!(!gone.status.success(), "pruned data still on S3");
}

#[test]
fn a_run_killed_mid_upload_leaves_a_multipart_upload_that_apply_aborts() {
    let garage = Garage::start();
    let site = Site::new(&garage, "", 12000);
    let mut child = site
        .command()
        .args(["run", "app"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once a multipart upload exists.
    let uploads = || garage.garage(&["bucket", "info", garage.bucket()]);
    let started = std::time::Instant::now();
    let mut seen_partial = false;
    while started.elapsed() < std::time::Duration::from_secs(60) {
        let listed = site.run(&["list", "--format", "json"]);
        let report: serde_json::Value =
            serde_json::from_str(&listed.stdout).unwrap_or(serde_json::Value::Null);
        if report["orphans"].as_array().is_some_and(|orphans| {
            orphans.iter().any(|orphan| {
                orphan["name"]
                    .as_str()
                    .unwrap_or_default()
                    .ends_with(".partial")
                    && orphan["destination"]
                        .as_str()
                        .unwrap_or_default()
                        .starts_with("s3:http://")
            })
        }) {
            seen_partial = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert!(seen_partial, "no multipart upload was seen: {}", uploads());
    assert!(site.listed().is_empty(), "a killed run left a backup");

    // Past the grace period, plan shows the abandoned upload as cleanup and apply aborts it.
    let plan = site.plan_at("2099-01-01T02:00:00Z");
    assert!(
        plan.stdout.contains(".sqlite.gz.partial on s3:http://"),
        "{}",
        plan.stdout
    );
    let applied = site.apply_at("2099-01-01T02:00:00Z");
    assert_eq!(applied.code, 0, "{applied:?}");
    let listed = site.run(&["list", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(report["orphans"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(site.listed().len(), 2);
}

/// Runs the AWS CLI (installed by `.ci/setup` into `target/ci-venv`, else
/// from PATH) against Garage, with a config in `directory`; its stdout.
fn aws_cli(garage: &Garage, directory: &Path, args: &[&str]) -> String {
    let venv = common::root().join("target/ci-venv/bin/aws");
    let binary = if venv.exists() {
        venv
    } else {
        PathBuf::from("aws")
    };
    let config = directory.join("aws-config");
    std::fs::write(
        &config,
        format!(
            "[default]\nregion = {}\ns3 =\n    addressing_style = path\n",
            garage.region()
        ),
    )
    .unwrap();
    let output = Command::new(binary)
        .args(args)
        .args(["--endpoint-url", &garage.endpoint()])
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_SHARED_CREDENTIALS_FILE", directory.join("none"))
        .env("AWS_ACCESS_KEY_ID", garage.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", garage.secret_access_key())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .output()
        .expect("the AWS CLI runs: .ci/setup installs it into target/ci-venv");
    assert!(
        output.status.success(),
        "aws {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_aws_cli_downloads_what_backup_uploaded() {
    let garage = Garage::start();
    // About 12 MB: a multipart upload, whose ETag is not an MD5 of the whole.
    let site = Site::new(&garage, "interop/", 3000);
    let applied = site.apply_at("2026-11-25T01:30:00Z");
    assert_eq!(applied.code, 0, "{applied:?}");
    let id = "20261125T013000Z";

    let aws = |args: &[&str]| aws_cli(&garage, site.path(), args);
    let listed = aws(&[
        "s3",
        "ls",
        &format!("s3://{}/interop/app/", garage.bucket()),
    ]);
    assert!(listed.contains(&format!("{id}.json")), "{listed}");
    assert!(listed.contains(&format!("{id}.sqlite.gz")), "{listed}");

    let downloaded = site.path().join("by-aws.sqlite.gz");
    let sidecar_copy = site.path().join("by-aws.json");
    for (key, to) in [
        (format!("{id}.sqlite.gz"), &downloaded),
        (format!("{id}.json"), &sidecar_copy),
    ] {
        aws(&[
            "s3",
            "cp",
            "--only-show-errors",
            &format!("s3://{}/interop/app/{key}", garage.bucket()),
            &to.display().to_string(),
        ]);
    }
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sidecar_copy).unwrap()).unwrap();
    assert_eq!(
        sha256_of(&downloaded),
        sidecar["artifact"]["sha256"].as_str().unwrap()
    );
    assert!(sidecar["artifact"]["size"].as_u64().unwrap() > 8 * 1024 * 1024);
    // And stock tools restore it: gunzip gives a database sqlite3 reads.
    let gunzip = Command::new("gunzip")
        .arg("-k")
        .arg(&downloaded)
        .status()
        .unwrap();
    assert!(gunzip.success());
    assert_eq!(
        sqlite3(&site.path().join("by-aws.sqlite"), "SELECT count(*) FROM t"),
        "3000"
    );
}

#[test]
fn fifty_backups_through_a_proxy_that_breaks_one_request_in_five_all_land_whole() {
    let garage = Garage::start();
    // Random faults, and the first three answers to starting and to
    // completing a multipart upload lost on the way back.
    let proxy = FaultProxy::with_targets(
        &garage.endpoint(),
        20,
        0x5eed,
        vec![LOSE_CREATE_MULTIPART, LOSE_COMPLETE_MULTIPART],
    );
    let work = tempfile::tempdir().unwrap();
    let policies = work.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    const POLICIES: usize = 50;
    for number in 0..POLICIES {
        // Every tenth about 16 MB of random rows: two parts and a bit.
        let rows = if number % 10 == 0 { 4200 } else { 20 };
        let database = work.path().join(format!("db{number:02}.sqlite"));
        sqlite3(
            &database,
            &format!(
                "CREATE TABLE t (v BLOB); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) INSERT INTO t SELECT randomblob(4000) FROM n;"
            ),
        );
        std::fs::write(
            policies.join(format!("p{number:02}.yaml")),
            format!(
                "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: p{number:02}\nspec:\n  source:\n    sqlite:\n      path: ../db{number:02}.sqlite\n  schedule:\n    cron: \"0 1 * * *\"\n  retention:\n    keep-last: 3\n  destinations:\n    - s3:\n        bucket: {}\n        prefix: faults/\n        endpoint: ${{env:TEST_S3_ENDPOINT}}\n        region: {}\n        path-style: true\n        access-key-id: ${{env:TEST_S3_KEY_ID}}\n        secret-access-key: ${{env:TEST_S3_SECRET}}\n",
                garage.bucket(),
                garage.region()
            ),
        )
        .unwrap();
    }
    let through = |endpoint: &str, args: &[&str]| {
        let mut command = s3_command(work.path(), &garage);
        command.env("TEST_S3_ENDPOINT", endpoint);
        run_checked(command, &garage, args)
    };
    let faulty = proxy.endpoint();
    let direct = garage.endpoint();

    let applied = through(
        &faulty,
        &[
            "apply",
            "--auto-approve",
            "--no-crontab",
            "--now",
            "2026-11-25T01:30:00Z",
        ],
    );
    assert_eq!(applied.code, 0, "{applied:?}");
    // Reading through the faults too: broken downloads resume where they broke.
    let verified = through(&faulty, &["verify"]);
    assert_eq!(verified.code, 0, "{verified:?}");
    assert!(
        verified
            .stdout
            .contains(&format!("Verified {POLICIES} backups: {POLICIES} ok")),
        "{}",
        verified.stdout
    );

    let stats = proxy.stats();
    eprintln!("{stats:?}");
    for (fault, count) in &stats.faults {
        assert!(*count > 0, "no {fault:?} was injected: {stats:?}");
    }
    assert!(stats.faulted() * 100 >= stats.requests * 10, "{stats:?}");

    // The truth, straight from the store: every backup there and whole, no
    // orphan, no multipart upload left behind, nothing left to do.
    let verified = through(&direct, &["verify"]);
    assert_eq!(verified.code, 0, "{verified:?}");
    assert!(
        verified
            .stdout
            .contains(&format!("Verified {POLICIES} backups: {POLICIES} ok")),
        "{}",
        verified.stdout
    );
    let listed = through(&direct, &["list", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(report["orphans"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(report["backups"].as_array().unwrap().len(), POLICIES);
    let uploads = aws_cli(
        &garage,
        work.path(),
        &[
            "s3api",
            "list-multipart-uploads",
            "--bucket",
            garage.bucket(),
            "--output",
            "json",
        ],
    );
    assert!(
        !uploads.contains("UploadId"),
        "multipart uploads left: {uploads}"
    );
    let plan = through(
        &direct,
        &[
            "plan",
            "--no-crontab",
            "--detailed-exitcode",
            "--now",
            "2026-11-25T01:30:00Z",
        ],
    );
    assert_eq!(plan.code, 0, "{plan:?}");
}

#[test]
fn plan_holds_prunes_a_read_only_key_cannot_do_and_validate_checks_access() {
    let garage = Garage::start();
    let site = Site::new(&garage, "ro/", 10);
    for day in 22..=25 {
        let applied = site.apply_at(&format!("2026-11-{day}T01:30:00Z"));
        assert_eq!(applied.code, 0, "{applied:?}");
    }
    let (ro_id, ro_secret) = garage.create_key("read-only");
    garage.garage(&[
        "bucket",
        "allow",
        "--read",
        garage.bucket(),
        "--key",
        "read-only",
    ]);
    // keep-last 1 now: two of the three backups to prune on each destination.
    let policy = site.path().join("policies/app.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, text.replace("keep-last: 3", "keep-last: 1")).unwrap();
    let read_only = |args: &[&str]| {
        let mut command = site.command();
        command
            .env("TEST_S3_KEY_ID", &ro_id)
            .env("TEST_S3_SECRET", &ro_secret);
        let run = run_checked(command, &garage, args);
        assert!(!run.stdout.contains(&ro_secret) && !run.stderr.contains(&ro_secret));
        run
    };
    let s3 = site.s3_location("ro/");
    let plan = read_only(&["plan", "--no-crontab", "--now", "2026-11-25T02:00:00Z"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(
        plan.stdout.contains(&format!(
            "{s3} refuses deletes, so 2 planned deletions there (prunes and cleanups) are held: may not delete in `{s3}app/`: AccessDenied"
        )),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("Plan: 0 to back up, 0 to copy, 2 to prune"),
        "{}",
        plan.stdout
    );
    assert!(
        !plan
            .stdout
            .contains(&format!("prune 20261123T013000Z from {s3}"))
    );
    // apply does what it can (the local prunes) and nothing fails halfway.
    let applied = read_only(&[
        "apply",
        "--auto-approve",
        "--no-crontab",
        "--now",
        "2026-11-25T02:00:00Z",
    ]);
    assert_eq!(applied.code, 0, "{applied:?}");
    let on_s3 = site
        .listed()
        .into_iter()
        .filter(|(destination, _, _)| *destination == s3)
        .count();
    assert_eq!(on_s3, 3);

    // validate --check-destinations writes, reads and deletes one object.
    let validated = site.run(&["validate", "--check-destinations"]);
    assert_eq!(validated.code, 0, "{validated:?}");
    let refused = read_only(&["validate", "--check-destinations"]);
    assert_eq!(refused.code, 3, "{refused:?}");
    assert!(
        refused.stdout.contains("is not usable") || refused.stderr.contains("is not usable"),
        "{refused:?}"
    );
    assert!(
        format!("{}{}", refused.stdout, refused.stderr).contains("app.yaml:"),
        "{refused:?}"
    );
    let listed = aws_cli(
        &garage,
        site.path(),
        &["s3", "ls", &format!("s3://{}/ro/", garage.bucket())],
    );
    assert!(
        !listed.contains(".backup-check"),
        "validate left its probe object behind: {listed}"
    );
}

/// The S3 destination of `garage`'s bucket under `prefix`, through `endpoint`.
fn s3_destination(
    garage: &Garage,
    endpoint: &str,
    prefix: &str,
) -> Box<dyn backup::destination::Destination> {
    let spec: backup::policy::spec::DestinationSpec = serde_json::from_value(serde_json::json!({
        "s3": {
            "bucket": garage.bucket(),
            "prefix": prefix,
            "endpoint": endpoint,
            "region": garage.region(),
            "path-style": true,
            "access-key-id": garage.access_key_id(),
            "secret-access-key": garage.secret_access_key(),
        }
    }))
    .unwrap();
    backup::destination::open(&spec).unwrap()
}

/// WAL comes as a stream of small objects in `<policy>/wal/`: that
/// sub-folder is listed on its own, and the backup listing (list, plan)
/// neither shows it nor pages through it: at its first key the listing
/// starts again after its last, one request instead of one per thousand keys.
#[test]
fn the_wal_sub_folder_is_listed_on_its_own_and_the_backup_listing_skips_it() {
    use backup::inventory::names;
    let garage = Garage::start();
    let site = Site::new(&garage, "prod/", 10);
    let applied = site.apply_at("2026-11-24T01:30:00Z");
    assert_eq!(applied.code, 0, "{applied:?}");
    let before = site.listed();
    assert_eq!(before.len(), 2, "{before:?}");

    // 3,000 segments: paging through them would take three more pages.
    let wal = names::sub_folder("app", names::WAL_FOLDER);
    let segments: Vec<String> = (0..3000)
        .map(|n| format!("0000000100000000{n:08X}"))
        .collect();
    let store = s3_destination(&garage, &garage.endpoint(), "prod/");
    std::thread::scope(|scope| {
        for chunk in segments.chunks(200) {
            let store = &store;
            let wal = &wal;
            scope.spawn(move || {
                for segment in chunk {
                    store.put(wal, segment, segment.as_bytes()).unwrap();
                }
            });
        }
    });
    let local = backup::destination::local::Local::new(site.path().join("store"));
    use backup::destination::Destination as _;
    for segment in &segments[..10] {
        local.put(&wal, segment, segment.as_bytes()).unwrap();
    }

    let proxy = FaultProxy::start(&garage.endpoint(), 0, 1);
    let counted = s3_destination(&garage, &proxy.endpoint(), "prod/");
    let listed = counted.list("app").unwrap();
    let requests = proxy.stats().requests;
    let mut names_listed: Vec<&str> = listed.iter().map(|entry| entry.name.as_str()).collect();
    names_listed.sort();
    assert_eq!(
        names_listed,
        ["20261124T013000Z.json", "20261124T013000Z.sqlite.gz"]
    );
    // Objects: one page, then the page after the sub-folder; and one of
    // unfinished uploads.
    assert!(requests <= 3, "{requests} requests to list 2 objects");
    let mut archived: Vec<String> = counted
        .list(&wal)
        .unwrap()
        .into_iter()
        .map(|entry| entry.name)
        .collect();
    archived.sort();
    assert_eq!(archived, segments);
    assert_eq!(local.list(&wal).unwrap().len(), 10);
    let folder = std::fs::metadata(site.path().join("store/app/wal")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&folder.permissions()) & 0o777,
        0o700
    );

    // Neither `list` nor `plan` sees it: no orphan, no unexpected entry.
    assert_eq!(site.listed(), before);
    let plan = site.plan_at("2026-11-24T02:00:00Z");
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(!plan.stdout.contains("wal"), "{}", plan.stdout);
    assert!(!plan.stderr.contains("wal"), "{}", plan.stderr);
}
