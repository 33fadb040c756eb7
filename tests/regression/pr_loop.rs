//! Regression tests: pr loop.

#[allow(unused_imports)]
use super::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::garage::Garage;
use common::sinks::{HttpSink, Request};
use common::sqlite_site::SqliteSite;
use common::{Run, root};

/// A stand-in for the GitHub REST API's issue comments: list (paginated),
/// create, update, as `examples/ci/post-plan-comment.sh` calls them, for
/// the repository `acme/policies`, with the token `test-token`.
struct GitHub {
    sink: HttpSink,
    /// (id, body) of every comment on pull request 7.
    comments: Arc<Mutex<Vec<(u64, String)>>>,
}

impl GitHub {
    fn start(existing: Vec<String>) -> GitHub {
        let comments: Arc<Mutex<Vec<(u64, String)>>> = Arc::new(Mutex::new(
            existing
                .into_iter()
                .enumerate()
                .map(|(index, body)| (1000 + index as u64, body))
                .collect(),
        ));
        let store = Arc::clone(&comments);
        let sink = HttpSink::answering(move |request| answer(request, &store));
        GitHub { sink, comments }
    }

    /// The environment the script reads, as GitHub Actions would set it.
    fn environment(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GITHUB_API_URL", self.sink.url("/api")),
            ("GITHUB_REPOSITORY", "acme/policies".to_owned()),
            ("PR_NUMBER", "7".to_owned()),
            ("GITHUB_TOKEN", "test-token".to_owned()),
        ]
    }

    /// (method, path) of every request since the last call.
    fn requests(&self) -> Vec<(String, String)> {
        self.sink
            .taken()
            .into_iter()
            .map(|request| (request.method, request.path))
            .collect()
    }

    fn comments(&self) -> Vec<(u64, String)> {
        self.comments.lock().unwrap().clone()
    }
}

fn answer(request: &Request, store: &Mutex<Vec<(u64, String)>>) -> (u16, String) {
    if request.header("authorization") != Some("Bearer test-token") {
        return (401, r#"{"message":"Bad credentials"}"#.to_owned());
    }
    let json = |id: u64, body: &str| {
        serde_json::json!({
            "id": id,
            "body": body,
            "html_url": format!("https://github.example/acme/policies/pull/7#issuecomment-{id}"),
        })
    };
    let mut comments = store.lock().unwrap();
    let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
    let body = || -> String {
        let value: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        value["body"].as_str().unwrap().to_owned()
    };
    match (request.method.as_str(), path) {
        ("GET", "/api/repos/acme/policies/issues/7/comments") => {
            let parameter = |name: &str| -> usize {
                query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
                    .and_then(|value| value.parse().ok())
                    .unwrap_or(0)
            };
            let (per_page, page) = (parameter("per_page").max(1), parameter("page").max(1));
            let listed: Vec<serde_json::Value> = comments
                .iter()
                .skip((page - 1) * per_page)
                .take(per_page)
                .map(|(id, body)| json(*id, body))
                .collect();
            (200, serde_json::Value::from(listed).to_string())
        }
        ("POST", "/api/repos/acme/policies/issues/7/comments") => {
            let id = 5000 + comments.len() as u64;
            let body = body();
            comments.push((id, body.clone()));
            (201, json(id, &body).to_string())
        }
        ("PATCH", path) if path.starts_with("/api/repos/acme/policies/issues/comments/") => {
            let id: u64 = path.rsplit('/').next().unwrap().parse().unwrap();
            let body = body();
            match comments.iter_mut().find(|(known, _)| *known == id) {
                Some(comment) => {
                    comment.1 = body.clone();
                    (200, json(id, &body).to_string())
                }
                None => (404, r#"{"message":"Not Found"}"#.to_owned()),
            }
        }
        _ => (404, r#"{"message":"Not Found"}"#.to_owned()),
    }
}

/// One step of a GitHub Actions workflow: its name, `env:` and `run:`.
#[derive(Debug, Default)]
struct Step {
    name: String,
    env: Vec<(String, String)>,
    run: String,
}

/// The steps of the workflow file: enough YAML for the example (block
/// scalars for `run: |`, one-line `env:` entries).
fn workflow_steps(text: &str) -> Vec<Step> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |line: &str| line.len() - line.trim_start().len();
    let mut steps: Vec<Step> = Vec::new();
    let mut step_indent = None;
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index];
        let trimmed = line.trim_start();
        index += 1;
        if trimmed.starts_with("steps:") {
            step_indent = Some(indent(line) + 2);
            continue;
        }
        let Some(base) = step_indent else { continue };
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if indent(line) < base {
            step_indent = None;
            continue;
        }
        let (key_line, new_step) = match trimmed.strip_prefix("- ") {
            Some(rest) if indent(line) == base => (rest, true),
            _ => (trimmed, false),
        };
        if new_step {
            steps.push(Step::default());
        }
        let step = steps.last_mut().unwrap();
        let Some((key, value)) = key_line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        // Lines deeper than the step's keys belong to the key above.
        let mut block = Vec::new();
        while index < lines.len()
            && (lines[index].trim().is_empty() || indent(lines[index]) > base + 2)
        {
            block.push(lines[index]);
            index += 1;
        }
        match key.trim() {
            "name" => step.name = value.to_owned(),
            "run" if value == "|" => {
                let depth = block
                    .iter()
                    .filter(|line| !line.trim().is_empty())
                    .map(|line| indent(line))
                    .min()
                    .unwrap_or(0);
                step.run = block
                    .iter()
                    .map(|line| line.get(depth..).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("\n")
                    + "\n";
            }
            "run" => step.run = format!("{value}\n"),
            "env" => {
                for entry in block.iter().filter(|line| !line.trim().is_empty()) {
                    let (name, value) = entry.trim().split_once(':').unwrap();
                    step.env
                        .push((name.trim().to_owned(), value.trim().to_owned()));
                }
            }
            _ => {}
        }
    }
    steps
}

/// Runs a step's script as GitHub Actions does (`bash -eo pipefail`), in
/// `directory`, with `environment` and the step's own `env:`, each
/// `${{ … }}` replaced as `expressions` says (an unknown one fails the test).
fn run_step(
    step: &Step,
    directory: &Path,
    environment: &[(&str, String)],
    expressions: &BTreeMap<&str, String>,
) -> Run {
    let script = directory.join(".step.sh");
    std::fs::write(&script, &step.run).unwrap();
    let mut command = Command::new("bash");
    command
        .args(["--noprofile", "--norc", "-eo", "pipefail"])
        .arg(&script)
        .current_dir(directory)
        .env_clear()
        .env("PATH", test_path())
        .env("HOME", directory.join("home"))
        .env("NO_COLOR", "1")
        .env("TZ", "UTC");
    for (name, value) in environment {
        command.env(name, value);
    }
    for (name, value) in &step.env {
        let value = expressions.get(value.as_str()).unwrap_or_else(|| {
            panic!(
                "step `{}` sets {name} from `{value}`, which the test does not know",
                step.name
            )
        });
        command.env(name, value);
    }
    command.output().unwrap().into()
}

/// The built `backup` first on PATH (the workflow's install step puts it there).
fn test_path() -> String {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_backup"));
    format!(
        "{}:{}",
        binary.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn s3_command(directory: &Path, key: &(String, String)) -> Command {
    common::garage::backup_with_key(directory, &key.0, &key.1)
}

/// An S3 destination on `garage`'s `bucket` under `prefix`, credentials from
/// `TEST_S3_KEY_ID`/`TEST_S3_SECRET`.
fn s3_destination(garage: &Garage, bucket: &str, prefix: &str) -> String {
    format!(
        "    - s3:\n        bucket: {bucket}\n        prefix: {prefix}\n        endpoint: {}\n        region: {}\n        path-style: true\n        access-key-id: ${{env:TEST_S3_KEY_ID}}\n        secret-access-key: ${{env:TEST_S3_SECRET}}\n",
        garage.endpoint(),
        garage.region()
    )
}

/// A key that may only read `bucket`.
fn read_only_key(garage: &Garage, bucket: &str) -> (String, String) {
    let key = garage.create_key("read-only");
    garage.garage(&["bucket", "allow", "--read", bucket, "--key", "read-only"]);
    key
}

#[test]
fn a_plan_with_read_only_credentials_lists_held_prunes_as_changes_and_exits_2() {
    let garage = Garage::start();
    let site = SqliteSite::new("keep-last: 3");
    let s3 = s3_destination(&garage, garage.bucket(), "held/");
    let local = "    - local:\n        path: ../store\n";
    site.policy("keep-last: 3", &[local, &s3]);
    let writer = (
        garage.access_key_id().to_owned(),
        garage.secret_access_key().to_owned(),
    );
    for day in 22..=25 {
        let applied: Run = s3_command(site.path(), &writer)
            .args(["apply", "--auto-approve", "--no-crontab", "--now"])
            .arg(format!("2026-11-{day}T01:30:00Z"))
            .output()
            .unwrap()
            .into();
        assert_eq!(applied.code, 0, "{applied:?}");
    }
    let reader = read_only_key(&garage, garage.bucket());
    // keep-last 1: two prunes on each destination; the S3 ones are held.
    site.policy("keep-last: 1", &[local, &s3]);
    let as_reader = |args: &[&str]| -> Run {
        s3_command(site.path(), &reader)
            .args(args)
            .output()
            .unwrap()
            .into()
    };
    let now = "2026-11-25T02:00:00Z";
    let location = format!("s3:{}/{}/held/", garage.endpoint(), garage.bucket());

    let text = as_reader(&["plan", "--no-crontab", "--detailed-exitcode", "--now", now]);
    assert_eq!(text.code, 2, "{text:?}");
    assert!(!text.stdout.contains("No changes"), "{}", text.stdout);
    for id in ["20261123T013000Z", "20261124T013000Z"] {
        assert!(
            text.stdout
                .contains(&format!("- prune {id} on {location} (held)")),
            "{}",
            text.stdout
        );
    }
    assert!(
        text.stdout.contains(&format!(
            "held: {location} refuses deletes with these credentials"
        )),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains(
            "Plan: 0 to back up, 0 to copy, 2 to prune, 0 to clean up, 2 held (deletes refused here), crontab not managed."
        ),
        "{}",
        text.stdout
    );

    let json = as_reader(&["plan", "--no-crontab", "--format", "json", "--now", now]);
    assert_eq!(json.code, 0, "{json:?}");
    let plan: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(plan["summary"]["prune"], 2);
    assert_eq!(plan["summary"]["held"], 2);
    let held: Vec<&serde_json::Value> = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|action| action["held"].is_string())
        .collect();
    assert_eq!(held.len(), 2, "{}", json.stdout);
    assert!(
        held.iter()
            .all(|action| action["destination"] == location.as_str())
    );

    let markdown = as_reader(&["plan", "--no-crontab", "--format", "markdown", "--now", now]);
    assert!(
        markdown.stdout.contains("**2 deletions are held**"),
        "{}",
        markdown.stdout
    );
    assert!(
        markdown.stdout.contains("**2 backups would be deleted**"),
        "{}",
        markdown.stdout
    );

    // apply does the local prunes, does not attempt the held ones, and
    // nothing fails halfway.
    let applied = as_reader(&["apply", "--auto-approve", "--no-crontab", "--now", now]);
    assert_eq!(applied.code, 0, "{applied:?}");
    assert!(!applied.stdout.contains("FAILED"), "{}", applied.stdout);
    assert!(
        applied.stdout.contains(&format!(
            "skipped app: - prune 20261123T013000Z on {location}: held:"
        )),
        "{}",
        applied.stdout
    );
    assert_eq!(site.stored_ids(), ["20261125T013000Z"]);
    let listed = as_reader(&["list", "app", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let on_s3 = report["backups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["destination"] == location.as_str())
        .count();
    assert_eq!(on_s3, 3, "{}", listed.stdout);
}

/// The workflow in `examples/ci/`, run step by step as GitHub Actions would:
/// on this repository's own `policies/` (their local folders moved into the
/// test's folder), against a real S3 server with a read-only key, posting to
/// a stand-in for the GitHub API. Twice, as for two pushes to one pull request.
#[test]
fn the_ci_workflow_plans_the_repository_policies_and_keeps_one_comment() {
    let workflow =
        std::fs::read_to_string(root().join("examples/ci/github-actions.yml.example")).unwrap();
    let steps = workflow_steps(&workflow);
    let step = |name: &str| {
        steps
            .iter()
            .find(|step| step.name == name)
            .unwrap_or_else(|| panic!("no step `{name}` in the workflow: {steps:?}"))
    };
    let install = step("Install backup");
    assert!(
        install.run.contains("cargo install --locked --path ."),
        "{}",
        install.run
    );

    let garage = Garage::start();
    garage.create_bucket("app-backups");
    let work = tempfile::tempdir().unwrap();
    let checkout = work.path().join("checkout");
    let local = work.path().join("var-backups");
    std::fs::create_dir_all(checkout.join("policies")).unwrap();
    for entry in std::fs::read_dir(root().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            checkout.join("policies").join(path.file_name().unwrap()),
            text.replace("/var/backups", local.to_str().unwrap()),
        )
        .unwrap();
    }
    std::fs::create_dir_all(checkout.join("examples/ci")).unwrap();
    std::fs::copy(
        root().join("examples/ci/post-plan-comment.sh"),
        checkout.join("examples/ci/post-plan-comment.sh"),
    )
    .unwrap();
    std::fs::create_dir_all(checkout.join("home")).unwrap();

    // What the host has stored: four backups of app-db two days ago, taken
    // by a stand-in policy of the same name with the writing key.
    let seed = work.path().join("seed");
    std::fs::create_dir_all(seed.join("policies")).unwrap();
    common::sqlite3(
        &seed.join("app.db"),
        "CREATE TABLE t (v); INSERT INTO t VALUES (1);",
    );
    std::fs::write(
        seed.join("policies/app-db.yaml"),
        format!(
            "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: app-db\nspec:\n  source:\n    sqlite:\n      path: ../app.db\n  schedule:\n    cron: \"0 * * * *\"\n  retention:\n    keep-last: 10\n  destinations:\n{}",
            s3_destination(&garage, "app-backups", "prod/")
        ),
    )
    .unwrap();
    let writer = (
        garage.access_key_id().to_owned(),
        garage.secret_access_key().to_owned(),
    );
    let day = (chrono::Utc::now() - chrono::Duration::days(2)).format("%Y-%m-%d");
    for hour in 1..=4 {
        let seeded: Run = s3_command(&seed, &writer)
            .args(["apply", "--auto-approve", "--no-crontab", "--now"])
            .arg(format!("{day}T0{hour}:00:00Z"))
            .output()
            .unwrap()
            .into();
        assert_eq!(seeded.code, 0, "{seeded:?}");
    }
    let reader = read_only_key(&garage, "app-backups");

    let expressions: BTreeMap<&str, String> = [
        ("${{ secrets.BACKUP_S3_READ_KEY_ID }}", reader.0.clone()),
        ("${{ secrets.BACKUP_S3_READ_SECRET }}", reader.1.clone()),
        ("${{ vars.BACKUP_S3_ENDPOINT }}", garage.endpoint()),
        ("${{ vars.BACKUP_S3_REGION }}", garage.region().to_owned()),
        ("${{ secrets.GITHUB_TOKEN }}", "test-token".to_owned()),
        ("${{ github.event.pull_request.number }}", "7".to_owned()),
    ]
    .into_iter()
    .collect();
    // Someone else's comments come first: 100 of them, so the plan's is on page 2.
    let github = GitHub::start((1..=100).map(|n| format!("looks good {n}")).collect());
    let summary = work.path().join("step-summary.md");
    let output = work.path().join("step-output");
    let mut environment = github.environment();
    environment.retain(|(name, _)| !["PR_NUMBER", "GITHUB_TOKEN"].contains(name));
    environment.extend([
        ("GITHUB_STEP_SUMMARY", summary.display().to_string()),
        ("GITHUB_OUTPUT", output.display().to_string()),
        (
            "BACKUP_STATE_DIR",
            checkout.join(".state").display().to_string(),
        ),
        (
            "AWS_CONFIG_FILE",
            work.path().join("no-aws-config").display().to_string(),
        ),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            work.path().join("no-aws-credentials").display().to_string(),
        ),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ]);

    let mut posted = Vec::new();
    for push in 1..=2 {
        for name in ["Validate", "Plan", "Comment on the pull request"] {
            let ran = run_step(step(name), &checkout, &environment, &expressions);
            assert_eq!(ran.code, 0, "push {push}, step `{name}`: {ran:?}");
            assert!(!ran.stdout.contains(&reader.1) && !ran.stderr.contains(&reader.1));
        }
        let status = std::fs::read_to_string(&output).unwrap();
        assert!(status.ends_with("status=2\n"), "{status}");
        posted.push(github.requests());
    }
    let comments = "/api/repos/acme/policies/issues/7/comments";
    let get = |page: u32| {
        (
            "GET".to_owned(),
            format!("{comments}?per_page=100&page={page}"),
        )
    };
    assert_eq!(
        posted[0],
        [get(1), get(2), ("POST".to_owned(), comments.to_owned())]
    );
    let all = github.comments();
    let ours: Vec<&(u64, String)> = all
        .iter()
        .filter(|(_, body)| body.starts_with("<!-- backup-plan -->\n"))
        .collect();
    assert_eq!(ours.len(), 1, "{all:?}");
    let (id, body) = ours[0];
    assert_eq!(
        posted[1],
        [
            get(1),
            get(2),
            (
                "PATCH".to_owned(),
                format!("/api/repos/acme/policies/issues/comments/{id}")
            )
        ]
    );
    assert_eq!(all.len(), 101);
    // The comment tells the truth a read-only key can see: the prunes the
    // host will make, held here.
    assert!(body.contains(" held (deletes refused here)"), "{body}");
    assert!(body.contains("> [!CAUTION]"), "{body}");
    assert!(body.contains("| app-db |"), "{body}");
    assert!(body.contains("| app-queue |"), "{body}");
    assert!(!body.contains("is not set"), "{body}");
    // The job summary gets the plan of each push.
    let summary = std::fs::read_to_string(&summary).unwrap();
    assert_eq!(
        summary.matches("<!-- backup-plan -->").count(),
        2,
        "{summary}"
    );
    assert!(summary.ends_with(body.as_str()), "{summary}");
}

#[test]
fn plan_as_markdown_starts_with_the_marker_and_calls_out_deletes_first() {
    let site = SqliteSite::new("keep-last: 5");
    for date in ["2026-11-21", "2026-11-22", "2026-11-23", "2026-11-24"] {
        assert_eq!(site.apply_at(&format!("{date}T01:30:00Z"), &[]).code, 0);
    }
    site.policy("keep-last: 2", &["    - local:\n        path: ../store\n"]);
    let crontab = site.path().join("crontab");
    let plan = site.run(&[
        "plan",
        "--format",
        "markdown",
        "--detailed-exitcode",
        "--now",
        "2026-11-25T01:30:00Z",
        "--crontab-file",
        crontab.to_str().unwrap(),
    ]);
    assert_eq!(plan.code, 2, "{plan:?}");
    let body = &plan.stdout;
    assert!(body.starts_with("<!-- backup-plan -->\n"), "{body}");
    let caution = body.find("> [!CAUTION]").expect("deletes called out");
    let table = body.find("| policy |").expect("a summary table");
    let details = body.find("<details><summary><b>app</b>").expect("details");
    let diff = body.find("```diff\n").expect("the crontab diff");
    assert!(
        caution < table && table < details && details < diff,
        "{body}"
    );
    assert!(
        body.contains("> - **app**: `20261121T013000Z`, `20261122T013000Z`"),
        "{body}"
    );
    assert!(body.contains("</details>"), "{body}");
    // The same state gives the same comment (it is updated, not re-posted).
    let again = site.run(&[
        "plan",
        "--format",
        "markdown",
        "--now",
        "2026-11-25T01:30:00Z",
        "--crontab-file",
        crontab.to_str().unwrap(),
    ]);
    assert_eq!(&again.stdout, body);
}

#[test]
fn the_pre_commit_hook_runs_backup_validate_on_policy_files() {
    let hooks = std::fs::read_to_string(root().join(".pre-commit-hooks.yaml")).unwrap();
    let field = |name: &str| {
        hooks
            .lines()
            .find_map(|line| {
                line.trim_start_matches("- ")
                    .trim()
                    .strip_prefix(&format!("{name}: "))
            })
            .unwrap_or_else(|| panic!("no `{name}` in .pre-commit-hooks.yaml"))
            .to_owned()
    };
    assert_eq!(field("id"), "backup-validate");
    assert_eq!(field("language"), "rust");
    assert_eq!(field("pass_filenames"), "true");
    assert!(field("files").contains("policies/"));
    // pre-commit runs `entry` with the changed files as arguments.
    let entry = field("entry");
    let mut words = entry.split_whitespace();
    assert_eq!(words.next(), Some("backup"));
    let arguments: Vec<&str> = words.collect();
    let fixtures = root().join("tests/fixtures/policies");
    let hook = |files: &[PathBuf]| -> Run {
        let directory = tempfile::tempdir().unwrap();
        common::backup(directory.path())
            .args(&arguments)
            .args(files)
            .output()
            .unwrap()
            .into()
    };
    let valid = hook(&[fixtures.join("valid/minimal-sqlite.yaml")]);
    assert_eq!(valid.code, 0, "{valid:?}");
    let invalid_file = std::fs::read_dir(fixtures.join("invalid"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            path.extension()
                .is_some_and(|extension| extension == "yaml")
        })
        .unwrap();
    let invalid = hook(&[fixtures.join("valid/minimal-sqlite.yaml"), invalid_file]);
    assert_eq!(invalid.code, 3, "{invalid:?}");
}
