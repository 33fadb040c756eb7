//! Kubernetes CronJob manifests (`backup::schedule::kubernetes`) checked by a
//! real offline validator: `kubernetes-validate` from PyPI (installed by
//! `.ci/setup` into target/ci-venv), strict, against Kubernetes 1.30 (CronJob
//! `timeZone` is GA since 1.27). Policies are loaded from files as `backup`
//! loads them; rendering reads nothing but the policy files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use backup::policy::{self, Options, Policy};
use backup::schedule::RenderedFile;
use backup::schedule::kubernetes::{self, Error, Settings};

/// The Kubernetes version the manifests are validated against.
const KUBERNETES_VERSION: &str = "1.30.0";

/// Loading reads the environment (to warn about unset references) and one
/// test sets variables: every load holds this.
static ENVIRONMENT: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(paths: &[PathBuf]) -> Vec<Policy> {
    let _guard = ENVIRONMENT
        .lock()
        .unwrap_or_else(|error| error.into_inner());
    let loaded = policy::load(paths, Options::default());
    assert_eq!(loaded.error_count(), 0, "{:#?}", loaded.diagnostics);
    loaded.policies
}

/// Policy files written into `folder`, by file name.
fn write_policies(folder: &Path, files: &[(&str, &str)]) -> PathBuf {
    let policies = folder.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for (name, text) in files {
        std::fs::write(policies.join(name), text).unwrap();
    }
    policies
}

fn settings() -> Settings {
    Settings {
        namespace: "backups".to_owned(),
        image: "registry.example.com/backup:0.1.0".to_owned(),
        volumes: BTreeMap::from([
            (PathBuf::from("/var/backups"), "backup-archive".to_owned()),
            (PathBuf::from("/srv/app"), "app-data".to_owned()),
        ]),
        resources: kubernetes::Resources {
            requests: BTreeMap::from([
                ("cpu".to_owned(), "100m".to_owned()),
                ("memory".to_owned(), "256Mi".to_owned()),
            ]),
            limits: BTreeMap::from([("memory".to_owned(), "1Gi".to_owned())]),
        },
        ..Settings::default()
    }
}

/// Writes `files` into a new folder and runs the validator on every manifest
/// in it (not the kustomization, which has no Kubernetes schema); its output
/// and whether it passed.
fn validate(files: &[RenderedFile]) -> (bool, String) {
    let folder = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for file in files {
        let path = folder.path().join(&file.name);
        std::fs::write(&path, &file.text).unwrap();
        if file.name != kubernetes::KUSTOMIZATION {
            paths.push(path);
        }
    }
    let validator = root().join("target/ci-venv/bin/kubernetes-validate");
    let output = Command::new(&validator)
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .args(&paths)
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "{} runs ({error}): .ci/setup installs kubernetes-validate into target/ci-venv",
                validator.display()
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success() && !text.contains("ERROR"), text)
}

fn file<'a>(files: &'a [RenderedFile], name: &str) -> &'a str {
    &files
        .iter()
        .find(|file| file.name == name)
        .unwrap_or_else(|| panic!("no {name} among {:?}", names(files)))
        .text
}

fn names(files: &[RenderedFile]) -> Vec<&str> {
    files.iter().map(|file| file.name.as_str()).collect()
}

/// A manifest's YAML (after the comment lines), as JSON.
fn manifest(text: &str) -> serde_json::Value {
    let documents = backup::policy::yaml::parse(text).unwrap();
    documents[0].root.as_ref().unwrap().to_json()
}

const SQLITE_SITE: &str = "\
apiVersion: backup/v1
kind: BackupPolicy
metadata:
  name: site
spec:
  source:
    sqlite:
      path: /srv/app/data/site.db
  schedule:
    cron: \"@HOURLY\"
    timezone: America/New_York
  retention:
    keep-last: 24
  destinations:
    - local:
        path: /srv/app/backups
  verify:
    restore-test: weekly
";

const MYSQL_WEEKENDS: &str = "\
apiVersion: backup/v1
kind: BackupPolicy
metadata:
  name: shop
spec:
  source:
    mysql:
      host: mariadb.shop.svc
      user: backup
      password: ${env:ON}
      database: shop
  schedule:
    cron: \"30 4 * * 5-7\"
  retention:
    keep-daily: 7
  destinations:
    - s3:
        bucket: shop-backups
        access-key-id: ${env:S3_KEY_ID}
        secret-access-key: ${file:/run/secrets/s3 secret}
  notify:
    email:
      from: backup@example.com
      to: [ops@example.com]
      smtp:
        host: smtp.example.com
        password: ${file:/run/secrets/smtp-password}
";

/// The example, a SQLite policy on a claim, and a MariaDB one whose
/// variable is a YAML 1.1 boolean word (`ON`) and whose secret file's name
/// has a space.
fn rendered() -> (tempfile::TempDir, Vec<RenderedFile>) {
    let folder = tempfile::tempdir().unwrap();
    let policies = write_policies(
        folder.path(),
        &[("site.yaml", SQLITE_SITE), ("shop.yaml", MYSQL_WEEKENDS)],
    );
    let policies = load(&[PathBuf::from("examples/kubernetes.yaml"), policies]);
    let files = kubernetes::render(&policies, &settings()).unwrap();
    (folder, files)
}

#[test]
fn the_manifests_pass_the_strict_validator() {
    let (_folder, files) = rendered();
    assert_eq!(
        names(&files),
        [
            "configmap-backup-policies.yaml",
            "cronjob-backup-app-k8s-base.yaml",
            "cronjob-backup-app-k8s.yaml",
            "cronjob-backup-shop.yaml",
            "cronjob-backup-site.yaml",
            "kustomization.yaml",
        ]
    );
    let (valid, output) = validate(&files);
    assert!(valid, "{output}");
    for file in &files {
        assert!(
            file.text.starts_with("# Managed by backup: rendered from "),
            "{}",
            file.text
        );
    }
}

#[test]
fn the_validator_rejects_a_broken_manifest() {
    // Proof that the validator runs and is strict: the same CronJob with a
    // misspelt field and with a number where a string belongs fails.
    let (_folder, files) = rendered();
    let good = file(&files, "cronjob-backup-site.yaml");
    for broken in [
        good.replace("concurrencyPolicy:", "concurrencyPolicyy:"),
        good.replace("timeZone: America/New_York", "timeZone: 5"),
    ] {
        assert_ne!(broken, good);
        let (valid, output) = validate(&[RenderedFile {
            name: "cronjob-broken.yaml".to_owned(),
            text: broken,
        }]);
        assert!(!valid, "{output}");
        assert!(output.contains("did not validate"), "{output}");
    }
}

#[test]
fn a_cron_job_runs_apply_for_its_policy_on_its_schedule() {
    let (_folder, files) = rendered();
    let site = manifest(file(&files, "cronjob-backup-site.yaml"));
    let spec = &site["spec"];
    // Kubernetes reads nicknames in lowercase only.
    assert_eq!(spec["schedule"], "@hourly");
    assert_eq!(spec["timeZone"], "America/New_York");
    assert_eq!(spec["concurrencyPolicy"], "Forbid");
    assert_eq!(spec["startingDeadlineSeconds"], 3600);
    assert_eq!(spec["successfulJobsHistoryLimit"], 3);
    assert_eq!(spec["failedJobsHistoryLimit"], 3);
    assert_eq!(spec["jobTemplate"]["spec"]["backoffLimit"], 0);
    let pod = &spec["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "registry.example.com/backup:0.1.0");
    assert_eq!(container["command"], serde_json::json!(["backup"]));
    assert_eq!(
        container["args"],
        serde_json::json!([
            "--policies",
            "/etc/backup/policies",
            "--state-dir",
            "/var/lib/backup",
            "apply",
            "--policy",
            "site",
            "--auto-approve",
            "--no-crontab"
        ])
    );
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    // The SQLite file and the local destination are on the claim at /srv/app.
    let mounts = container["volumeMounts"].as_array().unwrap();
    assert!(
        mounts
            .iter()
            .any(|mount| mount["mountPath"] == "/srv/app" && mount["name"] == "app-data"),
        "{mounts:?}"
    );
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|volume| volume["persistentVolumeClaim"]["claimName"] == "app-data")
    );
    assert_eq!(site["metadata"]["labels"]["backup/policy"], "site");
    assert_eq!(site["metadata"]["namespace"], "backups");
    // Weekdays 5-7: Kubernetes has no 7 (Sunday is 0).
    let shop = manifest(file(&files, "cronjob-backup-shop.yaml"));
    assert_eq!(shop["spec"]["schedule"], "30 4 * * 0,5,6");
    assert_eq!(shop["spec"]["timeZone"], "UTC");
}

#[test]
fn a_physical_policy_gets_a_second_cron_job_at_its_base_backup_ticks() {
    let (_folder, files) = rendered();
    let dumps = manifest(file(&files, "cronjob-backup-app-k8s.yaml"));
    let base = manifest(file(&files, "cronjob-backup-app-k8s-base.yaml"));
    assert_eq!(dumps["spec"]["schedule"], "15 1 * * *");
    assert_eq!(base["spec"]["schedule"], "0 2 * * 0");
    assert_eq!(base["metadata"]["name"], "backup-app-k8s-base");
    // Both run the same apply, which decides what is due.
    let args = |cron_job: &serde_json::Value| {
        cron_job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"].clone()
    };
    assert_eq!(args(&dumps), args(&base));
}

#[test]
fn secrets_are_references_to_one_secret_and_never_rendered() {
    let folder = tempfile::tempdir().unwrap();
    let values = [
        ("DATABASE_URL", "postgresql://app:hunter2-in-env@db/app"),
        ("S3_KEY_ID", "AKIA-hunter2-key-id"),
        ("ALERT_WEBHOOK", "https://hooks.example.com/hunter2-hook"),
        ("ON", "hunter2-mariadb"),
    ];
    let policies = write_policies(folder.path(), &[("shop.yaml", MYSQL_WEEKENDS)]);
    let policies = {
        let _guard = ENVIRONMENT
            .lock()
            .unwrap_or_else(|error| error.into_inner());
        for (name, value) in values {
            // SAFETY: every read of the environment in this binary holds ENVIRONMENT.
            unsafe { std::env::set_var(name, value) };
        }
        let loaded = policy::load(
            &[PathBuf::from("examples/kubernetes.yaml"), policies],
            Options::default(),
        );
        for (name, _) in values {
            // SAFETY: as above.
            unsafe { std::env::remove_var(name) };
        }
        assert_eq!(loaded.error_count(), 0, "{:#?}", loaded.diagnostics);
        loaded.policies
    };
    let files = kubernetes::render(&policies, &settings()).unwrap();
    for file in &files {
        for (_, value) in values {
            assert!(!file.text.contains(value), "{}: {}", file.name, file.text);
        }
        assert!(!file.text.contains("hunter2"), "{}", file.text);
    }
    let shop = manifest(file(&files, "cronjob-backup-shop.yaml"));
    let container = &shop["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    let env: Vec<(String, serde_json::Value)> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|variable| {
            (
                variable["name"].as_str().unwrap().to_owned(),
                variable["valueFrom"]["secretKeyRef"].clone(),
            )
        })
        .collect();
    assert_eq!(
        env,
        [
            (
                "ON".to_owned(),
                serde_json::json!({"name": "backup-secrets", "key": "ON"})
            ),
            (
                "S3_KEY_ID".to_owned(),
                serde_json::json!({"name": "backup-secrets", "key": "S3_KEY_ID"})
            ),
        ]
    );
    // Each ${file:…} is the Secret's key of that file name, mounted at exactly its path.
    let mounts: Vec<(String, String)> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|mount| mount["name"] == "backup-secret-files")
        .map(|mount| {
            (
                mount["mountPath"].as_str().unwrap().to_owned(),
                mount["subPath"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        mounts,
        [
            ("/run/secrets/s3 secret".to_owned(), "s3-secret".to_owned()),
            (
                "/run/secrets/smtp-password".to_owned(),
                "smtp-password".to_owned()
            ),
        ]
    );
    let text = file(&files, "cronjob-backup-shop.yaml");
    assert!(
        text.contains("# Reads Secret `backup-secrets` in namespace `backups`"),
        "{text}"
    );
    assert!(
        text.contains("#   s3-secret: the file /run/secrets/s3 secret"),
        "{text}"
    );
    // The example's webhook and database URL come from the Secret too.
    let example = file(&files, "cronjob-backup-app-k8s.yaml");
    for key in ["DATABASE_URL", "ALERT_WEBHOOK", "age.key"] {
        assert!(example.contains(&format!("key: {key}")), "{key}: {example}");
    }
}

#[test]
fn the_config_map_holds_each_policy_file_as_written() {
    let (folder, files) = rendered();
    let config_map = manifest(file(&files, "configmap-backup-policies.yaml"));
    let data = config_map["data"].as_object().unwrap();
    let keys: Vec<&String> = data.keys().collect();
    assert_eq!(keys, ["kubernetes.yaml", "shop.yaml", "site.yaml"]);
    assert_eq!(
        data["kubernetes.yaml"],
        std::fs::read_to_string("examples/kubernetes.yaml").unwrap()
    );
    assert_eq!(data["site.yaml"], SQLITE_SITE);
    let _ = folder;
    let kustomization = manifest(file(&files, "kustomization.yaml"));
    let resources: Vec<&str> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|resource| resource.as_str().unwrap())
        .collect();
    let others: Vec<&str> = names(&files)
        .into_iter()
        .filter(|name| *name != "kustomization.yaml")
        .collect();
    assert_eq!(resources, others);
}

#[test]
fn rendering_twice_gives_the_same_bytes() {
    let (_first, files) = rendered();
    let (_second, again) = rendered();
    // The temporary folders' names differ; the manifests do not otherwise.
    let strip = |files: &[RenderedFile]| -> Vec<String> {
        files
            .iter()
            .filter(|file| file.name.starts_with("cronjob-backup-app-k8s"))
            .map(|file| file.text.clone())
            .collect()
    };
    assert_eq!(strip(&files), strip(&again));
}

#[test]
fn snapshot_of_the_example_cron_job() {
    let (_folder, files) = rendered();
    insta::assert_snapshot!(file(&files, "cronjob-backup-app-k8s.yaml"));
}

// --- What a pod cannot have ------------------------------------------------------------

fn render_one(text: &str, settings: &Settings) -> Result<Vec<RenderedFile>, Error> {
    let folder = tempfile::tempdir().unwrap();
    let policies = write_policies(folder.path(), &[("one.yaml", text)]);
    kubernetes::render(&load(&[policies]), settings)
}

fn policy_reason(result: Result<Vec<RenderedFile>, Error>) -> (String, String) {
    match result {
        Err(error @ Error::Policy { .. }) => {
            let Error::Policy {
                policy, location, ..
            } = &error
            else {
                unreachable!()
            };
            assert!(location.ends_with("one.yaml:4:9"), "{location}");
            (policy.clone(), error.to_string())
        }
        other => panic!("expected a policy error, got {other:?}"),
    }
}

#[test]
fn a_local_destination_outside_every_volume_is_refused() {
    let text = SQLITE_SITE.replace("/srv/app/backups", "/mnt/elsewhere");
    let (policy, message) = policy_reason(render_one(&text, &settings()));
    assert_eq!(policy, "site");
    assert!(
        message.contains("the local destination `/mnt/elsewhere` is on no volume the pod mounts"),
        "{message}"
    );
    // With a claim there, it renders.
    let mut settings = settings();
    settings
        .volumes
        .insert(PathBuf::from("/mnt"), "elsewhere".to_owned());
    render_one(&text, &settings).unwrap();
}

#[test]
fn an_sqlite_file_outside_every_volume_is_refused() {
    let mut settings = settings();
    settings.volumes.remove(Path::new("/srv/app"));
    settings
        .volumes
        .insert(PathBuf::from("/srv/app/backups"), "backups".to_owned());
    let (_, message) = policy_reason(render_one(SQLITE_SITE, &settings));
    assert!(
        message.contains("the SQLite file `/srv/app/data/site.db` is on no volume"),
        "{message}"
    );
}

#[test]
fn a_literal_password_is_refused_rather_than_put_in_a_config_map() {
    let text = MYSQL_WEEKENDS.replace("${env:ON}", "hunter2-literal");
    let (_, message) = policy_reason(render_one(&text, &settings()));
    assert!(message.contains("spec.source.mysql.password"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn a_cron_job_name_too_long_for_kubernetes_is_refused() {
    let text = SQLITE_SITE.replace("name: site", &format!("name: {}", "s".repeat(46)));
    let (_, message) = policy_reason(render_one(&text, &settings()));
    assert!(message.contains("longer than 52 characters"), "{message}");
}

#[test]
fn two_policy_files_with_one_name_are_refused() {
    let folder = tempfile::tempdir().unwrap();
    let first = folder.path().join("a");
    let second = folder.path().join("b");
    for (folder, name) in [(&first, "one"), (&second, "two")] {
        std::fs::create_dir_all(folder).unwrap();
        std::fs::write(
            folder.join("policy.yaml"),
            SQLITE_SITE.replace("name: site", &format!("name: {name}")),
        )
        .unwrap();
    }
    let policies = load(&[first, second]);
    let error = kubernetes::render(&policies, &settings()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("would both be `/etc/backup/policies/policy.yaml` in the pod"),
        "{error}"
    );
}

const POSTGRES: &str = "\
apiVersion: backup/v1
kind: BackupPolicy
metadata:
  name: db
spec:
  source:
    postgres:
      host: db.internal
      user: backup
      database: app
      password: ${env:PGPASSWORD}
  schedule:
    cron: \"0 1 * * *\"
  retention:
    keep-last: 3
  physical:
    schedule: {cron: \"0 2 * * 0\"}
    retention: {keep-last: 2}
  destinations:
    - s3:
        bucket: db-backups
";

#[test]
fn a_unix_socket_on_this_host_is_refused() {
    let text = POSTGRES.replace("host: db.internal", "host: /var/run/postgresql");
    let (policy, message) = policy_reason(render_one(&text, &settings()));
    assert_eq!(policy, "db");
    assert!(
        message.contains("the PostgreSQL socket folder `/var/run/postgresql` is on no volume"),
        "{message}"
    );
}

#[test]
fn a_ca_file_comes_from_the_secret_unless_the_image_has_it() {
    let container = |certificate: &str| {
        let text = POSTGRES.replace(
            "      database: app\n",
            &format!("      database: app\n      sslmode: verify-full\n      ssl-root-cert: {certificate}\n"),
        );
        let files = render_one(&text, &settings()).unwrap();
        let cron_job = manifest(file(&files, "cronjob-backup-db.yaml"));
        cron_job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0].clone()
    };
    let mounted = container("/etc/backup/db-ca.pem");
    let mount = mounted["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|mount| mount["mountPath"] == "/etc/backup/db-ca.pem")
        .cloned();
    assert_eq!(
        mount,
        Some(serde_json::json!({
            "mountPath": "/etc/backup/db-ca.pem",
            "name": "backup-secret-files",
            "readOnly": true,
            "subPath": "db-ca.pem",
        }))
    );
    // Debian's CA bundle is in the image.
    let system = container("/etc/ssl/certs/ca-certificates.crt");
    assert!(
        !system["volumeMounts"]
            .to_string()
            .contains("ca-certificates.crt"),
        "{system}"
    );
}

#[test]
fn two_policies_whose_cron_jobs_share_a_name_are_refused() {
    let folder = tempfile::tempdir().unwrap();
    let policies = write_policies(
        folder.path(),
        &[
            ("db.yaml", POSTGRES),
            (
                "db-base.yaml",
                &SQLITE_SITE.replace("name: site", "name: db-base"),
            ),
        ],
    );
    let error = kubernetes::render(&load(&[policies]), &settings()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("policy `db-base` cannot run in a Kubernetes pod: its CronJob `backup-db-base` is also policy `db`'s"),
        "{error}"
    );
}

#[test]
fn a_policy_file_the_pod_would_not_read_is_refused() {
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("site.policy");
    std::fs::write(&file, SQLITE_SITE).unwrap();
    let error = kubernetes::render(&load(&[file]), &settings()).unwrap_err();
    assert!(
        error.to_string().contains(
            "`/etc/backup/policies/site.policy` in the pod, which `backup` does not read"
        ),
        "{error}"
    );
}

#[test]
fn bad_settings_are_refused() {
    for (change, needle) in [
        (
            (|settings: &mut Settings| settings.namespace = "Backups".to_owned())
                as fn(&mut Settings),
            "not a Kubernetes namespace name",
        ),
        (
            |settings| settings.image = "backup latest".to_owned(),
            "has no whitespace",
        ),
        (|settings| settings.image = String::new(), "image is empty"),
        (
            |settings| settings.secret = "Backup_Secrets".to_owned(),
            "not a Secret name",
        ),
        (
            |settings| settings.starting_deadline_seconds = 5,
            "under 10 s",
        ),
        (
            |settings| {
                settings
                    .volumes
                    .insert(PathBuf::from("relative"), "data".to_owned());
            },
            "is not absolute",
        ),
        (
            |settings| {
                settings
                    .volumes
                    .insert(PathBuf::from("/data"), "backup-state".to_owned());
            },
            "not a claim name this renderer takes",
        ),
    ] {
        let mut settings = settings();
        change(&mut settings);
        let error = render_one(SQLITE_SITE, &settings).unwrap_err();
        assert!(matches!(error, Error::Settings(_)), "{error:?}");
        assert!(error.to_string().contains(needle), "{needle}: {error}");
    }
}

#[test]
fn no_policies_render_no_files() {
    assert!(kubernetes::render(&[], &settings()).unwrap().is_empty());
}
