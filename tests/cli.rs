//! The command line, run as a user runs it: the real binary in a directory.

mod common;

use std::path::Path;

use common::{backup, root, run};

const INVALID_POLICY: i32 = 3;

#[test]
fn every_invalid_fixture_is_refused_with_a_positioned_diagnostic() {
    insta::glob!("fixtures/policies/invalid/*.yaml", |path| {
        let folder = path.parent().unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        let result = run(folder, &["validate", "--color", "never", name]);
        assert_eq!(result.code, INVALID_POLICY, "{name}: {result:?}");
        assert!(
            result.stdout.contains("error: "),
            "{name}: {}",
            result.stdout
        );
        let positioned = format!("--> {name}:");
        assert!(
            result.stdout.contains(&positioned),
            "{name} names no position: {}",
            result.stdout
        );
        assert!(
            !result.stderr.contains("panicked"),
            "{name}: {}",
            result.stderr
        );
        insta::assert_snapshot!(result.stdout);
    });
}

#[test]
fn every_valid_fixture_is_accepted() {
    let folder = root().join("tests/fixtures/policies/valid");
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let result = run(&folder, &["validate", &name]);
        assert_eq!(result.code, 0, "{name}: {result:?}");
        assert!(
            result.stdout.contains(", 0 errors, 0 warnings."),
            "{name}: {}",
            result.stdout
        );
    }
}

#[test]
fn examples_and_policies_validate() {
    let result = run(&root(), &["validate", "examples", "policies"]);
    assert_eq!(result.code, 0, "{result:?}");
    assert!(result.stdout.contains(" 0 errors"), "{}", result.stdout);
    // Every example announces the schema to editors.
    for file in yaml_files(&root().join("examples"))
        .into_iter()
        .chain(yaml_files(&root().join("policies")))
    {
        let text = std::fs::read_to_string(&file).unwrap();
        let first = text.lines().next().unwrap_or("");
        // The settings document has a schema of its own.
        let schema = if text.lines().any(|line| line == "kind: Settings") {
            "schema/settings.v1.json"
        } else {
            "schema/policy.v1.json"
        };
        assert!(
            first.starts_with("# yaml-language-server: $schema=") && first.ends_with(schema),
            "{} does not start with the schema line",
            file.display()
        );
    }
}

fn yaml_files(folder: &Path) -> Vec<std::path::PathBuf> {
    common::files_under(folder)
        .into_iter()
        .map(|(path, _)| path)
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "yaml" || extension == "yml")
        })
        .collect()
}

#[test]
fn a_ten_megabyte_file_is_refused_unread() {
    let directory = tempfile::tempdir().unwrap();
    let mut text = String::from("apiVersion: backup/v1\nkind: BackupPolicy\n# ");
    text.push_str(&"x".repeat(10 * 1024 * 1024));
    std::fs::write(directory.path().join("huge.yaml"), text).unwrap();
    let result = run(directory.path(), &["validate", "huge.yaml"]);
    assert_eq!(result.code, INVALID_POLICY);
    insta::assert_snapshot!(result.stdout, @r"
    error: file is larger than 1024 KiB, the limit for a policy file
     --> huge.yaml:1:1
      = hint: is this the right file? a policy is a few dozen lines

    Checked 1 file: 0 policies valid, 1 error, 0 warnings.
    ");
}

#[test]
fn problems_in_many_files_are_reported_in_one_run() {
    let folder = root().join("tests/fixtures/policies/invalid");
    let result = run(
        &folder,
        &[
            "validate",
            "bad-cron.yaml",
            "bad-timezone.yaml",
            "misspelled-key.yaml",
        ],
    );
    assert_eq!(result.code, INVALID_POLICY);
    for position in [
        "bad-cron.yaml:10:11",
        "bad-timezone.yaml:11:15",
        "misspelled-key.yaml:13:5",
    ] {
        assert!(
            result.stdout.contains(position),
            "{position} missing: {}",
            result.stdout
        );
    }
    assert!(
        result
            .stdout
            .ends_with("Checked 3 files: 0 policies valid, 3 errors, 0 warnings.\n")
    );
}

#[test]
fn json_output_carries_the_same_diagnostics() {
    let folder = root().join("tests/fixtures/policies/invalid");
    let result = run(
        &folder,
        &["validate", "--format", "json", "many-problems.yaml"],
    );
    assert_eq!(result.code, INVALID_POLICY);
    let report: serde_json::Value = serde_json::from_str(&result.stdout).unwrap();
    insta::assert_json_snapshot!(report);
}

#[test]
fn the_default_folder_is_policies() {
    let directory = tempfile::tempdir().unwrap();
    let result = run(directory.path(), &["validate"]);
    assert_eq!(result.code, INVALID_POLICY);
    insta::assert_snapshot!(result.stdout, @r"
    error: cannot read `policies`: no such file or folder
     --> policies
      = hint: name policy files or folders with -p/--policies (default: `policies/`)

    Checked 0 files: 0 policies valid, 1 error, 0 warnings.
    ");
    let policies = directory.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    let result = run(directory.path(), &["validate"]);
    assert!(
        result
            .stdout
            .contains("no policy files (*.yaml, *.yml) in `policies`"),
        "{}",
        result.stdout
    );
    std::fs::copy(
        root().join("tests/fixtures/policies/valid/minimal-sqlite.yaml"),
        policies.join("app.yaml"),
    )
    .unwrap();
    let result = run(directory.path(), &["validate"]);
    assert_eq!(result.code, 0, "{result:?}");
}

#[test]
fn policies_come_from_the_flag_or_the_environment() {
    let valid = root().join("tests/fixtures/policies/valid");
    let invalid = root().join("tests/fixtures/policies/invalid");
    let directory = tempfile::tempdir().unwrap();
    let flag = run(
        directory.path(),
        &[
            "-p",
            valid.join("minimal-sqlite.yaml").to_str().unwrap(),
            "validate",
        ],
    );
    assert_eq!(flag.code, 0, "{flag:?}");
    let joined = format!(
        "{}:{}",
        valid.join("minimal-sqlite.yaml").display(),
        invalid.join("bad-cron.yaml").display()
    );
    let environment: common::Run = backup(directory.path())
        .env("BACKUP_POLICIES", &joined)
        .args(["validate"])
        .output()
        .unwrap()
        .into();
    assert_eq!(environment.code, INVALID_POLICY, "{environment:?}");
    assert!(
        environment
            .stdout
            .contains("Checked 2 files: 1 policy valid (app-db), 1 error")
    );
}

#[test]
fn warnings_pass_unless_denied() {
    let directory = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(
        root().join("tests/fixtures/policies/valid/minimal-sqlite.yaml"),
    )
    .unwrap()
    .replace(
        "  retention:",
        "  notify:\n    webhook:\n      url: ${env:BACKUP_TEST_UNSET_WEBHOOK}\n  retention:",
    )
    // The fixture's placeholder database, beside the copy: only the variable is missing.
    .replace("path: ../app.db", "path: app.db");
    std::fs::write(directory.path().join("app.db"), "").unwrap();
    std::fs::write(directory.path().join("app.yaml"), text).unwrap();
    let warned = run(directory.path(), &["validate", "app.yaml"]);
    assert_eq!(warned.code, 0, "{warned:?}");
    assert!(
        warned
            .stdout
            .contains("warning: environment variable `BACKUP_TEST_UNSET_WEBHOOK` is not set")
    );
    let denied = run(
        directory.path(),
        &["validate", "--deny-warnings", "app.yaml"],
    );
    assert_eq!(denied.code, INVALID_POLICY);
    let set: common::Run = backup(directory.path())
        .env("BACKUP_TEST_UNSET_WEBHOOK", "https://hooks.example.com/x")
        .args(["validate", "--deny-warnings", "app.yaml"])
        .output()
        .unwrap()
        .into();
    assert_eq!(set.code, 0, "{set:?}");
}

#[test]
fn check_destinations_finds_unusable_folders() {
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(directory.path().join("a-file"), "").unwrap();
    let text =
        std::fs::read_to_string(root().join("tests/fixtures/policies/valid/minimal-sqlite.yaml"))
            .unwrap()
            .replace("path: /var/backups", "path: a-file/backups");
    std::fs::write(directory.path().join("app.yaml"), &text).unwrap();
    let unchecked = run(directory.path(), &["validate", "app.yaml"]);
    assert_eq!(unchecked.code, 0, "{unchecked:?}");
    let checked = run(
        directory.path(),
        &["validate", "--check-destinations", "app.yaml"],
    );
    assert_eq!(checked.code, INVALID_POLICY, "{checked:?}");
    assert!(
        checked.stdout.contains("is not a folder"),
        "{}",
        checked.stdout
    );
    std::fs::write(
        directory.path().join("app.yaml"),
        text.replace("path: a-file/backups", "path: fresh/backups"),
    )
    .unwrap();
    let creatable = run(
        directory.path(),
        &["validate", "--check-destinations", "app.yaml"],
    );
    assert_eq!(creatable.code, 0, "{creatable:?}");
    assert!(
        !directory.path().join("fresh").exists(),
        "validate must not create anything"
    );
}

#[test]
fn literal_secrets_never_reach_the_output() {
    let directory = tempfile::tempdir().unwrap();
    let policy = r#"apiVersion: backup/v1
kind: BackupPolicy
metadata:
  name: canary
spec:
  source:
    postgres:
      url: postgresql://app:CANARY-url-pw@db1/app
      password: CANARY-field-pw
  schedule: {cron: "@daily"}
  retention: {keep-last: 1}
  destinations:
    - s3: {bucket: b-ok, access-key-id: AKIA, secret-access-key: CANARY-s3}
  notify:
    webhook: {url: "ftp://CANARY-hook", headers: {X-Token: CANARY-header}}
    email: {from: a@b, to: [c@d], smtp: {host: h, password: CANARY-smtp}}
"#;
    std::fs::write(directory.path().join("canary.yaml"), policy).unwrap();
    for format in ["text", "json"] {
        let result = run(
            directory.path(),
            &["-vvv", "validate", "--format", format, "canary.yaml"],
        );
        assert_eq!(result.code, INVALID_POLICY, "{result:?}");
        assert!(
            result.stdout.contains("secret written in plain text"),
            "{}",
            result.stdout
        );
        for output in [&result.stdout, &result.stderr] {
            assert!(
                !output.contains("CANARY"),
                "a secret leaked ({format}): {output}"
            );
        }
    }
}

#[test]
fn schema_command_prints_the_committed_schema() {
    let result = run(&root(), &["schema"]);
    assert_eq!(result.code, 0);
    let committed = std::fs::read_to_string(root().join("schema/policy.v1.json")).unwrap();
    assert_eq!(result.stdout, committed);
}

#[test]
fn usage_errors_have_their_own_exit_code() {
    let directory = tempfile::tempdir().unwrap();
    assert_eq!(run(directory.path(), &["frobnicate"]).code, 64);
    assert_eq!(
        run(directory.path(), &["validate", "--format", "yaml"]).code,
        64
    );
    assert_eq!(run(directory.path(), &["run"]).code, 64);
    assert_eq!(run(directory.path(), &["--help"]).code, 0);
}

/// A sidecar holding only the fields DESIGN.md lists as the contract (as
/// another tool, or a script, would write it) is a backup like any other.
#[test]
fn a_sidecar_with_only_the_contract_fields_is_a_backup() {
    let directory = tempfile::tempdir().unwrap();
    let folder = directory.path().join("store/app-db");
    std::fs::create_dir_all(&folder).unwrap();
    let data = folder.join("20261125T010000Z.pgdump.gz");
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gzip, b"a dump").unwrap();
    let bytes = gzip.finish().unwrap();
    std::fs::write(&data, &bytes).unwrap();
    let sha256 = {
        use sha2::Digest as _;
        backup::inventory::metadata::hex(&sha2::Sha256::digest(&bytes))
    };
    std::fs::write(
        folder.join("20261125T010000Z.json"),
        format!(
            r#"{{
  "format_version": 1,
  "policy": "app-db",
  "id": "20261125T010000Z",
  "created_at": "2026-11-25T01:00:00Z",
  "finished_at": "2026-11-25T01:00:42Z",
  "artifact": {{ "name": "20261125T010000Z.pgdump.gz", "size": {}, "sha256": "{sha256}", "compression": "gzip" }},
  "source": {{ "kind": "postgres", "server_version": "15.18" }},
  "tool_version": "0.1.0",
  "host": "db1"
}}"#,
            bytes.len()
        ),
    )
    .unwrap();
    std::fs::write(
        directory.path().join("app-db.yaml"),
        "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: app-db\nspec:\n  source:\n    postgres:\n      url: postgresql://postgres@127.0.0.1:1/app\n  schedule:\n    cron: \"0 1 * * *\"\n  retention:\n    keep-last: 3\n  destinations:\n    - local:\n        path: store\n",
    )
    .unwrap();
    let listed = run(directory.path(), &["-p", "app-db.yaml", "list"]);
    assert_eq!(listed.code, 0, "{listed:?}");
    assert!(
        listed.stdout.contains("20261125T010000Z") && listed.stdout.contains("complete"),
        "{}",
        listed.stdout
    );
    let verified = run(directory.path(), &["-p", "app-db.yaml", "verify"]);
    assert_eq!(verified.code, 0, "{verified:?}");
    let plan = run(
        directory.path(),
        &[
            "-p",
            "app-db.yaml",
            "plan",
            "--no-crontab",
            "--detailed-exitcode",
            "--now",
            "2026-11-25T02:00:00Z",
        ],
    );
    assert_eq!(plan.code, 0, "{plan:?}");
}

/// DESIGN.md's example policy, as written there: its
/// `webhook: { url: ${env:ALERT_WEBHOOK} }` puts a reference's braces inside
/// a flow mapping, which strict YAML would end at the first `}`.
#[test]
fn the_design_example_policy_validates() {
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(
        directory.path().join("app-db.yaml"),
        r#"# yaml-language-server: $schema=../schema/policy.v1.json
apiVersion: backup/v1
kind: BackupPolicy
metadata:
  name: app-db                 # [a-z0-9][a-z0-9-]*, unique; used in paths and cron lines
spec:
  source:
    postgres:                  # or  sqlite: { path: /srv/app/app.db }
      url: ${env:DATABASE_URL} # libpq URL; or host/port/user/database/password fields
  schedule:
    cron: "0 1 * * *"          # 5-field crontab syntax, or @hourly/@daily/@weekly/@monthly
    timezone: Europe/Berlin    # IANA name; default UTC
  retention:                   # restic's meaning; at least one keep-* that keeps something
    keep-last: 3
    keep-daily: 7
    keep-weekly: 4
    keep-monthly: 12
  destinations:
    - local:
        path: /var/backups
    - s3:
        bucket: app-backups
        prefix: prod/
        endpoint: https://s3.example.com   # omit for AWS
        region: eu-central-1
        path-style: true                   # MinIO, Garage and most self-hosted stores
  compression:
    gzip: { level: 6 }
  notify:
    on: [failure]
    webhook: { url: ${env:ALERT_WEBHOOK} }
"#,
    )
    .unwrap();
    let result: common::Run = backup(directory.path())
        .env("DATABASE_URL", "postgresql://app@db1/app")
        .env("ALERT_WEBHOOK", "https://hooks.example.com/x")
        .args(["validate", "app-db.yaml"])
        .output()
        .unwrap()
        .into();
    assert_eq!(result.code, 0, "{result:?}");
    assert!(
        result
            .stdout
            .contains("1 policy valid (app-db), 0 errors, 0 warnings."),
        "{}",
        result.stdout
    );
    // Unset, the reference is reported where it stands.
    let unset = run(directory.path(), &["validate", "app-db.yaml"]);
    assert!(
        unset.stdout.contains("app-db.yaml:31:21"),
        "{}",
        unset.stdout
    );
}

#[test]
fn schema_kind_settings_prints_the_committed_settings_schema() {
    let result = run(&root(), &["schema", "--kind", "settings"]);
    assert_eq!(result.code, 0, "{result:?}");
    let committed = std::fs::read_to_string(root().join("schema/settings.v1.json")).unwrap();
    assert_eq!(result.stdout, committed);
    let policy = run(&root(), &["schema"]);
    assert_ne!(policy.stdout, committed);
}
