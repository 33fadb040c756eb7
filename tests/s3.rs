//! S3 destinations against a real S3 server: Garage, a single node on
//! loopback, started by the harness and stopped even when a test fails.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::garage::Garage;
use common::{Run, backup, sqlite3};

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
        let mut command = backup(self.path());
        command
            .env("TEST_S3_KEY_ID", self.garage.access_key_id())
            .env("TEST_S3_SECRET", self.garage.secret_access_key())
            // Nothing may come from the host's own AWS setup.
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_CONFIG_FILE", self.path().join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.path().join("no-aws-credentials"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true");
        command
    }

    fn run(&self, args: &[&str]) -> Run {
        let result: Run = self.command().args(args).output().unwrap().into();
        let secret = self.garage.secret_access_key();
        assert!(
            !result.stdout.contains(secret) && !result.stderr.contains(secret),
            "the secret key leaked: {result:?}"
        );
        result
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
        format!("s3://{}/{prefix}", self.garage.bucket())
    }
}

/// `curl` as an independent S3 client.
fn curl(garage: &Garage, method: &str, key: &str, output: Option<&Path>) -> std::process::Output {
    let mut command = Command::new("curl");
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
        .arg(format!("{}/{}/{key}", garage.endpoint(), garage.bucket()));
    if let Some(output) = output {
        command.arg("--output").arg(output);
    }
    command.stdin(Stdio::null()).output().unwrap()
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
                        .starts_with("s3://")
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
        plan.stdout.contains(".sqlite.gz.partial on s3://"),
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
