//! Regression tests: readme.

#[allow(unused_imports)]
use super::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::{root, run};

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).unwrap()
}

/// The README from the heading line `heading` to the next heading of the
/// same or a higher level.
fn section(text: &str, heading: &str) -> String {
    let level = heading
        .chars()
        .take_while(|character| *character == '#')
        .count();
    let start = text
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README has no heading `{heading}`"));
    let body = &text[start + heading.len() + 2..];
    let mut offset = 0;
    let mut fenced = false;
    for line in body.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        let hashes = line
            .chars()
            .take_while(|character| *character == '#')
            .count();
        if !fenced && hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
            return body[..offset].to_owned();
        }
        offset += line.len() + 1;
    }
    body.to_owned()
}

/// The fenced code blocks of `text` whose info string is `language`.
fn blocks(text: &str, language: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        match &mut current {
            None if trimmed == format!("```{language}") => current = Some(String::new()),
            Some(block) if trimmed == "```" => {
                found.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    found
}

fn promtool(args: &[&str], directory: &Path) -> std::process::Output {
    Command::new("promtool")
        .args(args)
        .current_dir(directory)
        .output()
        .expect("promtool (Debian's `prometheus` package; .ci/setup installs it)")
}

/// A policy `app` with `labels` whose textfile `status --prometheus` wrote.
fn textfile(work: &Path, labels: &str) -> String {
    std::fs::write(work.join("app.db"), "").unwrap();
    std::fs::write(
        work.join("app.yaml"),
        format!("apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: app\n  labels: {labels}\nspec:\n  source:\n    sqlite: {{path: app.db}}\n  schedule:\n    cron: \"0 1 * * *\"\n  retention:\n    keep-daily: 7\n  destinations:\n    - local: {{path: backups}}\n"),
    )
    .unwrap();
    common::sealed_backup(&work.join("backups"), "app", "2026-11-24T01:00:00Z", 1000);
    common::sealed_backup(&work.join("backups"), "app", "2026-11-25T01:00:00Z", 1100);
    let file = work.join("backup.prom");
    let result = run(
        work,
        &[
            "-p",
            "app.yaml",
            "status",
            "--no-crontab",
            "--now",
            "2026-11-25T03:00:00Z",
            "--prometheus",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(result.code, 0, "{result:?}");
    std::fs::read_to_string(file).unwrap()
}

#[test]
fn the_prometheus_textfile_passes_promtool_check_metrics() {
    let work = tempfile::tempdir().unwrap();
    let text = textfile(work.path(), "{team: payments}");
    assert!(text.contains("backup_complete_backups{"), "{text}");
    // promtool reads the metrics on stdin; any output is a complaint.
    let checked = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(work.path().join("backup.prom")).unwrap())
        .output()
        .expect("promtool (Debian's `prometheus` package; .ci/setup installs it)");
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[test]
fn policy_labels_reach_every_metric_sanitised_and_never_overriding_ours() {
    let work = tempfile::tempdir().unwrap();
    let text = textfile(
        work.path(),
        "{team: payments, cost-centre: \"42\", policy: spoofed, destination: elsewhere}",
    );
    let samples: Vec<&str> = text.lines().filter(|line| !line.starts_with('#')).collect();
    assert!(!samples.is_empty());
    for sample in &samples {
        assert!(
            sample.contains("policy=\"app\"")
                && sample.contains("team=\"payments\"")
                && sample.contains("cost_centre=\"42\"")
                && sample.contains("label_policy=\"spoofed\"")
                && sample.contains("label_destination=\"elsewhere\""),
            "{sample}"
        );
        for ours in ["{policy=", ",policy=", ",destination="] {
            assert!(
                !sample.contains(&format!("{ours}\"spoofed\""))
                    && !sample.contains(&format!("{ours}\"elsewhere\"")),
                "{sample}"
            );
        }
    }
    let location = work.path().join("backups");
    assert!(
        text.contains(&format!(
            "backup_complete_backups{{policy=\"app\",destination=\"{}\",",
            location.display()
        )),
        "{text}"
    );
}

/// The README's alert rules, as written there.
fn readme_rules() -> String {
    let metrics = section(&readme(), "### Prometheus metrics");
    blocks(&metrics, "yaml")
        .into_iter()
        .find(|block| block.contains("groups:"))
        .expect("the README's alert rules")
}

#[test]
fn the_readmes_alert_rules_pass_promtool_check_rules_and_fire_as_documented() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("rules.yml"), readme_rules()).unwrap();
    let checked = promtool(&["check", "rules", "rules.yml"], work.path());
    assert!(
        checked.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    // A host whose last attempt failed and whose health turned critical; a
    // healthy one beside it stays quiet.
    let tests = r#"rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'backup_last_attempt_success{policy="app"}'
        values: '0x120'
      - series: 'backup_last_attempt_success{policy="ok"}'
        values: '1x120'
      - series: 'backup_health{policy="app"}'
        values: '2x120'
      - series: 'backup_health{policy="ok"}'
        values: '0x120'
      - series: 'backup_destination_free_bytes{policy="app",destination="/var/backups"}'
        values: '100x120'
      - series: 'backup_next_backup_bytes{policy="app",destination="/var/backups"}'
        values: '50x120'
    alert_rule_test:
      - eval_time: 30m
        alertname: BackupFailing
        exp_alerts: []
      - eval_time: 90m
        alertname: BackupFailing
        exp_alerts:
          - exp_labels: {policy: app}
            exp_annotations: {summary: "The last backup attempt of app failed"}
      - eval_time: 5m
        alertname: BackupUnhealthy
        exp_alerts:
          - exp_labels: {policy: app}
            exp_annotations: {summary: "backup status is critical for app"}
      - eval_time: 5m
        alertname: BackupDiskFilling
        exp_alerts:
          - exp_labels: {policy: app, destination: /var/backups}
"#;
    std::fs::write(work.path().join("rules.test.yml"), tests).unwrap();
    let tested = promtool(&["test", "rules", "rules.test.yml"], work.path());
    assert!(
        tested.status.success(),
        "promtool test rules: {}{}",
        String::from_utf8_lossy(&tested.stdout),
        String::from_utf8_lossy(&tested.stderr)
    );
}

#[test]
fn the_readmes_metric_table_lists_exactly_the_metrics_the_textfile_has() {
    let work = tempfile::tempdir().unwrap();
    let text = textfile(work.path(), "{}");
    let written: BTreeSet<String> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split(' ').next())
        .map(str::to_owned)
        .collect();
    let documented: BTreeSet<String> = section(&readme(), "### Prometheus metrics")
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|line| line.split('`').next())
        .map(str::to_owned)
        .collect();
    assert_eq!(documented, written);
}

/// Every property path the schema allows (`spec.source.postgres.host`,
/// `spec.destinations[].s3.bucket`), following `$ref`s and every branch of
/// unions; free-form maps (`labels`, `headers`) count as their own name.
fn schema_paths(
    schema: &serde_json::Value,
    node: &serde_json::Value,
    path: &str,
    out: &mut BTreeSet<String>,
) {
    if let Some(reference) = node.get("$ref").and_then(|value| value.as_str()) {
        let target = schema.pointer(reference.trim_start_matches('#')).unwrap();
        schema_paths(schema, target, path, out);
    }
    for union in ["anyOf", "oneOf", "allOf"] {
        for branch in node
            .get(union)
            .and_then(|value| value.as_array())
            .into_iter()
            .flatten()
        {
            schema_paths(schema, branch, path, out);
        }
    }
    if let Some(items) = node.get("items") {
        schema_paths(schema, items, &format!("{path}[]"), out);
    }
    for (name, property) in node
        .get("properties")
        .and_then(|value| value.as_object())
        .into_iter()
        .flatten()
    {
        let child = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        out.insert(child.clone());
        schema_paths(schema, property, &child, out);
    }
}

/// Every key path the text of a block-style YAML file names, as
/// [`schema_paths`] writes them, commented-out keys included
/// (`    # host: db1` is `host` at indentation 4): the alternatives a
/// complete example can only show as comments.
fn named_paths(text: &str) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    // (indentation, path) of the keys enclosing the current line.
    let mut stack: Vec<(usize, String)> = Vec::new();
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let mut rest = line.trim_start();
        let mut indent = indent;
        if let Some(commented) = rest.strip_prefix("# ") {
            // `# key:` stands where `key:` would: a `#` in its first column.
            indent += commented.len() - commented.trim_start().len();
            rest = commented.trim_start();
        }
        let mut item = false;
        if let Some(entry) = rest.strip_prefix("- ") {
            item = true;
            indent += 2;
            rest = entry;
        }
        let Some((key, _)) = rest.split_once(':') else {
            continue;
        };
        if key.is_empty()
            || !key
                .chars()
                .all(|character| character.is_ascii_alphanumeric() || character == '-')
        {
            continue;
        }
        while stack.last().is_some_and(|(depth, _)| *depth >= indent) {
            stack.pop();
        }
        let parent = stack
            .last()
            .map(|(_, path)| path.clone())
            .unwrap_or_default();
        let parent = if item { format!("{parent}[]") } else { parent };
        let path = if parent.is_empty() {
            key.to_owned()
        } else {
            format!("{parent}.{key}")
        };
        paths.insert(path.clone());
        stack.push((indent, path));
    }
    paths
}

/// The string constants of the schema's fixed-choice fields (`allow`, `aws:kms`).
fn schema_choices(node: &serde_json::Value, out: &mut BTreeSet<String>) {
    match node {
        serde_json::Value::Object(entries) => {
            if let Some(serde_json::Value::String(constant)) = entries.get("const") {
                out.insert(constant.clone());
            }
            for value in entries
                .get("enum")
                .and_then(|value| value.as_array())
                .into_iter()
                .flatten()
            {
                if let Some(text) = value.as_str() {
                    out.insert(text.to_owned());
                }
            }
            entries
                .values()
                .for_each(|value| schema_choices(value, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| schema_choices(item, out)),
        _ => {}
    }
}

#[test]
fn complete_yaml_holds_every_field_and_choice_of_the_schema() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schema/policy.v1.json")).unwrap(),
    )
    .unwrap();
    let mut wanted = BTreeSet::new();
    schema_paths(&schema, &schema, "", &mut wanted);
    assert!(
        wanted.contains("spec.destinations[].s3.session-token"),
        "{wanted:?}"
    );
    let text = std::fs::read_to_string(root().join("examples/complete.yaml")).unwrap();
    let present = named_paths(&text);
    let missing: Vec<&String> = wanted.difference(&present).collect();
    assert!(
        missing.is_empty(),
        "examples/complete.yaml lacks {missing:?}"
    );
    let mut choices = BTreeSet::new();
    schema_choices(&schema, &mut choices);
    let words: BTreeSet<&str> = text
        .split(|character: char| !(character.is_ascii_alphanumeric() || "-:/_".contains(character)))
        .collect();
    let unnamed: Vec<&String> = choices
        .iter()
        .filter(|choice| !words.contains(choice.as_str()))
        .collect();
    assert!(
        unnamed.is_empty(),
        "examples/complete.yaml never names {unnamed:?}"
    );
    let validated = run(&root(), &["validate", "examples/complete.yaml"]);
    assert_eq!(validated.code, 0, "{validated:?}");
}

/// A valid SQLite policy with `extra` appended under `spec:`, validated.
fn validate_with(extra: &str) -> common::Run {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("app.db"), "").unwrap();
    std::fs::write(
        work.path().join("app.yaml"),
        format!("apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: app\nspec:\n  source:\n    sqlite: {{path: app.db}}\n  schedule: {{cron: \"0 1 * * *\"}}\n  retention: {{keep-daily: 7}}\n  destinations:\n    - local: {{path: backups}}\n{extra}"),
    )
    .unwrap();
    run(work.path(), &["validate", "--color", "never", "app.yaml"])
}

#[test]
fn a_bad_value_in_a_fixed_choice_field_is_named_with_every_allowed_value() {
    let cases: [(&str, &str, &[&str]); 4] = [
        (
            "  notify:\n    on: [failure, bogus]\n    healthchecks: {url: https://hc-ping.com/x}\n",
            "`bogus` is not allowed for `on`",
            &["failure", "success", "recovery", "critical"],
        ),
        (
            "  notify:\n    email:\n      from: a@b.c\n      to: [d@e.f]\n      smtp: {host: smtp.example.com, security: ssl}\n",
            "`ssl` is not allowed for `security`",
            &["starttls", "tls", "none"],
        ),
        (
            "  health:\n    max-age: soon\n",
            "`soon` is not a duration",
            &[],
        ),
        (
            "  compression: {gzip: {level: 6}}\n  verify: {restore-test: weekly}\n  notify:\n    on: [sometimes]\n    webhook: {url: https://hooks.example.com/x}\n",
            "`sometimes` is not allowed for `on`",
            &["failure", "success", "recovery", "critical"],
        ),
    ];
    for (extra, message, choices) in &cases {
        let result = validate_with(extra);
        assert_eq!(result.code, 3, "{extra}: {result:?}");
        assert!(
            result.stdout.contains(&format!("error: {message}")),
            "{extra}: {}",
            result.stdout
        );
        assert_eq!(
            result.stdout.matches("error: ").count(),
            1,
            "{extra}: one problem, one error: {}",
            result.stdout
        );
        assert!(
            !result.stdout.contains("unknown field"),
            "{}",
            result.stdout
        );
        for choice in *choices {
            assert!(
                result.stdout.contains(&format!("`{choice}`")),
                "{choice}: {}",
                result.stdout
            );
        }
    }
    // sslmode, on a PostgreSQL source.
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("app.yaml"),
        "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: app\nspec:\n  source:\n    postgres: {database: app, sslmode: bogus}\n  schedule: {cron: \"0 1 * * *\"}\n  retention: {keep-daily: 7}\n  destinations:\n    - local: {path: backups}\n",
    )
    .unwrap();
    let result = run(work.path(), &["validate", "--color", "never", "app.yaml"]);
    assert!(
        result
            .stdout
            .contains("error: `bogus` is not allowed for `sslmode`"),
        "{}",
        result.stdout
    );
    for choice in [
        "disable",
        "allow",
        "prefer",
        "require",
        "verify-ca",
        "verify-full",
    ] {
        assert!(
            result.stdout.contains(&format!("`{choice}`")),
            "{choice}: {}",
            result.stdout
        );
    }
}

#[test]
fn an_unset_reference_warns_alike_in_every_field_that_takes_references() {
    let work = tempfile::tempdir().unwrap();
    let policy = "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: app\nspec:\n  source:\n    postgres:\n      host: ${env:UNSET_1}\n      user: ${env:UNSET_2}\n      database: ${env:UNSET_3}\n      password: ${env:UNSET_4}\n  schedule: {cron: \"0 1 * * *\"}\n  retention: {keep-daily: 7}\n  destinations:\n    - s3:\n        bucket: app-backups\n        endpoint: ${env:UNSET_5}\n        region: ${env:UNSET_6}\n        access-key-id: ${env:UNSET_7}\n        secret-access-key: ${env:UNSET_8}\n        session-token: ${env:UNSET_9}\n  notify:\n    webhook: {url: \"${env:UNSET_10}\", headers: {X-Token: \"${env:UNSET_11}\"}}\n    email: {from: a@b.c, to: [d@e.f], smtp: {host: h, username: \"${env:UNSET_12}\", password: \"${env:UNSET_13}\"}}\n    healthchecks: {url: \"${env:UNSET_14}\"}\n---\napiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: other\nspec:\n  source:\n    postgres: {url: \"${env:UNSET_15}\"}\n  schedule: {cron: \"0 1 * * *\"}\n  retention: {keep-daily: 7}\n  destinations:\n    - local: {path: backups}\n";
    std::fs::write(work.path().join("app.yaml"), policy).unwrap();
    let result = run(work.path(), &["validate", "--color", "never", "app.yaml"]);
    assert_eq!(result.code, 0, "{result:?}");
    for number in 1..=15 {
        let name = format!("UNSET_{number}");
        let line = policy
            .lines()
            .position(|line| line.contains(&format!("{name}}}")))
            .unwrap()
            + 1;
        assert!(
            result.stdout.contains(&format!(
                "warning: environment variable `{name}` is not set"
            )),
            "{name}: {}",
            result.stdout
        );
        assert!(
            result.stdout.contains(&format!("app.yaml:{line}:")),
            "{name} at line {line}: {}",
            result.stdout
        );
    }
    assert!(result.stdout.contains("15 warnings"), "{}", result.stdout);
}

/// The README's sample policy with the two typos its validate sample shows,
/// in `policies/app.yaml` under `work`.
fn sample_policy_with_typos(work: &Path) {
    let text = readme();
    let policy = blocks(&section(&text, "### Write a policy"), "yaml")
        .into_iter()
        .next()
        .expect("the README's sample policy");
    assert!(policy.contains("timezone: Europe/Berlin") && policy.contains("keep-daily: 7"));
    let typos = policy
        .replace("timezone: Europe/Berlin", "timezone: Europe/Berln")
        .replace("keep-daily: 7", "keep-dayly: 7");
    std::fs::create_dir_all(work.join("policies")).unwrap();
    std::fs::write(work.join("policies/app.yaml"), typos).unwrap();
}

#[test]
fn the_readmes_validate_sample_is_what_validate_prints_for_its_sample_policy() {
    let work = tempfile::tempdir().unwrap();
    sample_policy_with_typos(work.path());
    let text = readme();
    let console = blocks(&section(&text, "### `backup validate`"), "console")
        .into_iter()
        .next()
        .expect("the README's validate sample");
    let (command, expected) = console.split_once('\n').unwrap();
    assert_eq!(command, "$ backup validate policies/");
    // As a new user runs it: `DATABASE_URL` is not set in the tour's shell.
    let validate = |args: &[&str]| -> common::Run {
        common::backup(work.path())
            .env_remove("DATABASE_URL")
            .args(args)
            .output()
            .unwrap()
            .into()
    };
    let result = validate(&["validate", "--color", "never", "policies/"]);
    assert_eq!(result.code, 3, "{result:?}");
    assert_eq!(result.stdout, expected);

    let json = blocks(&section(&text, "### `validate --format json`"), "json")
        .into_iter()
        .next()
        .expect("the README's JSON validate sample");
    let expected: serde_json::Value = serde_json::from_str(&json).unwrap();
    let result = validate(&["validate", "--format", "json", "policies/"]);
    let actual: serde_json::Value = serde_json::from_str(&result.stdout).unwrap();
    assert_eq!(actual, expected);
}

/// The key paths of a JSON value (`artifact.sha256`).
fn json_keys(value: &serde_json::Value, path: &str, out: &mut BTreeSet<String>) {
    if let serde_json::Value::Object(entries) = value {
        for (name, child) in entries {
            let key = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            out.insert(key.clone());
            json_keys(child, &key, out);
        }
    }
}

#[test]
fn the_readmes_sidecar_sample_has_every_field_a_sidecar_has() {
    let work = tempfile::tempdir().unwrap();
    let database = work.path().join("app.db");
    let created = Command::new("sqlite3")
        .arg(&database)
        .arg("CREATE TABLE orders (id INTEGER); INSERT INTO orders VALUES (1);")
        .status()
        .unwrap();
    assert!(created.success());
    common::write_policy(
        work.path(),
        "app",
        "    sqlite:\n      path: app.db",
        &work.path().join("store"),
    );
    let taken = run(work.path(), &["-p", "app.yaml", "run", "app"]);
    assert_eq!(taken.code, 0, "{taken:?}");
    let sidecar = common::sidecars(&work.path().join("store"))
        .pop()
        .expect("a sidecar");
    let mut actual = BTreeSet::new();
    json_keys(&sidecar, "", &mut actual);
    // Keys under row_counts are table names.
    actual.retain(|key| !key.starts_with("source.row_counts."));
    let sample = blocks(&section(&readme(), "### The metadata sidecar"), "json")
        .into_iter()
        .next()
        .expect("the README's sidecar sample");
    let mut documented = BTreeSet::new();
    json_keys(&serde_json::from_str(&sample).unwrap(), "", &mut documented);
    documented.retain(|key| !key.starts_with("source.row_counts."));
    assert_eq!(documented, actual);
}

#[test]
fn the_readmes_plan_sample_documents_every_summary_key() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("app.db"), "").unwrap();
    let policy = common::write_policy(
        work.path(),
        "app",
        "    sqlite:\n      path: app.db",
        &work.path().join("store"),
    );
    // A drill is due too, so every kind of action is counted.
    let mut text = std::fs::read_to_string(&policy).unwrap();
    text.push_str("  verify:\n    restore-test: daily\n");
    std::fs::write(&policy, text).unwrap();
    let planned = run(
        work.path(),
        &["-p", "app.yaml", "plan", "--no-crontab", "--format", "json"],
    );
    assert_eq!(planned.code, 0, "{planned:?}");
    let plan: serde_json::Value = serde_json::from_str(&planned.stdout).unwrap();
    let keys = |value: &serde_json::Value| -> BTreeSet<String> {
        value["summary"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    let reference = section(&readme(), "### `plan --format json`");
    let sample = blocks(&reference, "json")
        .into_iter()
        .next()
        .expect("the README's plan sample");
    let documented: serde_json::Value = serde_json::from_str(&sample).unwrap();
    let actual = keys(&plan);
    assert!(actual.contains("restore_test"), "{actual:?}");
    assert!(keys(&documented).is_subset(&actual));
    for key in actual.difference(&keys(&documented)) {
        assert!(
            reference.contains(&format!("`{key}`")),
            "the summary key `{key}` is not documented"
        );
    }
}

#[test]
fn every_file_the_readme_links_to_exists() {
    let text = readme();
    let mut targets = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("](") {
        rest = &rest[start + 2..];
        let end = rest.find(')').unwrap();
        targets.push(rest[..end].to_owned());
        rest = &rest[end..];
    }
    assert!(!targets.is_empty());
    for target in targets.iter().filter(|target| !target.contains("://")) {
        let path = target.split('#').next().unwrap();
        assert!(
            root().join(path).exists(),
            "README links to {target}, which does not exist"
        );
    }
    // The design contract the README cites is in the repository, and linked.
    assert!(root().join("docs/DESIGN.md").is_file());
    for (index, _) in text.match_indices("DESIGN.md") {
        let before = &text[..index];
        assert!(
            before.ends_with("[docs/")
                || before.ends_with("(docs/")
                || before.ends_with("[`docs/")
                || before.ends_with("(`docs/"),
            "an unlinked DESIGN.md: …{}",
            &text[index.saturating_sub(60)..index + 10]
        );
    }
}

/// The processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .bytes()
                .all(|byte| byte.is_ascii_digit())
        })
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
        .filter(|line| line.contains(needle))
        .collect()
}

#[test]
fn the_benchmarks_stop_their_garage_server_when_they_end() {
    let script = format!(
        "set -euo pipefail\nroot='{}'\nexport PATH=\"$PATH:${{CARGO_HOME:-$HOME/.cargo}}/bin\"\n. \"$root/benches/lib.sh\"\nstart_garage\necho \"$work\"\n",
        root().display()
    );
    let output = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let work = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(work.starts_with("/tmp/backup-bench."), "{work}");
    let left: Vec<String> = processes_mentioning(&format!("{work}/garage/garage.toml"));
    assert!(left.is_empty(), "left running: {left:?}");
    assert!(!Path::new(&work).exists(), "{work} was not removed");
}

#[test]
fn the_tour_starts_with_the_install_step_and_a_sandbox_that_runs() {
    let text = readme();
    let tour = section(&text, "## Tour");
    let sandbox = blocks(&tour, "sh")
        .into_iter()
        .next()
        .expect("the tour's first commands");
    let tour_start = tour.find("```sh").unwrap();
    let first_backup = tour.find("$ backup").unwrap();
    assert!(
        tour_start < first_backup,
        "the sandbox comes before the first `backup` command"
    );
    let install = sandbox.lines().next().unwrap();
    assert!(
        install.starts_with("cargo install --locked --path . "),
        "{sandbox}"
    );
    assert!(sandbox.contains("BACKUP_STATE_DIR"), "{sandbox}");
    // Run it as written, with the binary under test standing in for `cargo install`.
    let home = tempfile::tempdir().unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_backup"))
        .parent()
        .unwrap()
        .to_owned();
    let commands: String = sandbox
        .lines()
        .filter(|line| !line.starts_with("cargo install"))
        .map(|line| format!("{line}\n"))
        .collect();
    let policy = "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata: {name: app}\nspec:\n  source: {sqlite: {path: app.db}}\n  schedule: {cron: \"0 1 * * *\"}\n  retention: {keep-daily: 7}\n  destinations: [{local: {path: backups}}]\n";
    let script = format!(
        "set -euo pipefail\n{commands}: > policies/app.db\nprintf '%s' \"$POLICY\" > policies/app.yaml\nbackup validate --deny-warnings\necho \"$PWD\"\necho \"$BACKUP_STATE_DIR\"\n"
    );
    let output = Command::new("bash")
        .args(["-c", &script])
        .current_dir(root())
        .env("HOME", home.path())
        .env("TMPDIR", home.path())
        .env("PATH", format!("{}:/usr/bin:/bin", binary.display()))
        .env("POLICY", policy)
        .env_remove("BACKUP_STATE_DIR")
        .env_remove("BACKUP_POLICIES")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    let (scratch, state) = (lines[lines.len() - 2], lines[lines.len() - 1]);
    assert!(
        scratch.starts_with(home.path().to_str().unwrap()),
        "{scratch}"
    );
    assert!(state.starts_with(scratch), "{state}");
    assert!(stdout.contains("1 policy valid"), "{stdout}");
}
