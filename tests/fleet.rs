//! One policy folder for a fleet: `metadata.hosts` decides which hosts plan,
//! apply and schedule a policy (`--host` names the host), sidecars record
//! the host that took each backup, and `status --all-hosts` reads the
//! destinations alone to show every host's part. Real SQLite files, real
//! local destinations, the real binary.

mod common;

use std::path::Path;

use common::{run, sqlite3};
use serde_json::Value;

/// A policy `name` backing up `folder/<name>.db` daily to `folder/backups`,
/// run by `hosts` (a YAML flow list, or "" for every host).
fn policy(folder: &Path, name: &str, hosts: &str) {
    let hosts = if hosts.is_empty() {
        String::new()
    } else {
        format!("  hosts: {hosts}\n")
    };
    std::fs::write(
        folder.join(format!("{name}.yaml")),
        format!(
            "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: {name}\n{hosts}spec:\n  source:\n    sqlite: {{path: {name}.db}}\n  schedule:\n    cron: \"0 1 * * *\"\n  retention:\n    keep-last: 5\n  destinations:\n    - local: {{path: backups}}\n"
        ),
    )
    .unwrap();
    sqlite3(
        &folder.join(format!("{name}.db")),
        "CREATE TABLE IF NOT EXISTS t(x); INSERT INTO t VALUES (1);",
    );
}

/// The names of the policies `plan` plans for `host`.
fn planned_policies(folder: &Path, host: &str) -> Vec<String> {
    let result = run(
        folder,
        &[
            "--host",
            host,
            "plan",
            "--no-crontab",
            "--format",
            "json",
            "--now",
            "2026-11-25T03:00:00Z",
        ],
    );
    assert!(matches!(result.code, 0 | 2), "{result:?}");
    let plan: Value = serde_json::from_str(&result.stdout).unwrap();
    plan["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|policy| policy["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn metadata_hosts_decide_which_hosts_plan_and_schedule_a_policy() {
    let work = tempfile::tempdir().unwrap();
    let folder = work.path();
    std::fs::create_dir(folder.join("policies")).unwrap();
    let policies = folder.join("policies");
    policy(&policies, "orders", "[db1]");
    policy(&policies, "web", "[\"web-*\", db9]");
    policy(&policies, "everywhere", "");
    assert_eq!(planned_policies(folder, "db1"), ["everywhere", "orders"]);
    assert_eq!(planned_policies(folder, "web-3"), ["everywhere", "web"]);
    assert_eq!(planned_policies(folder, "db9"), ["everywhere", "web"]);
    assert_eq!(planned_policies(folder, "db2"), ["everywhere"]);

    // The crontab block of a host holds its policies only.
    let crontab = folder.join("crontab");
    let applied = run(
        folder,
        &[
            "--host",
            "web-3",
            "apply",
            "--only",
            "crontab",
            "--crontab-file",
            crontab.to_str().unwrap(),
            "--auto-approve",
        ],
    );
    assert_eq!(applied.code, 0, "{applied:?}");
    let block = std::fs::read_to_string(&crontab).unwrap();
    assert!(block.contains("# web:"), "{block}");
    assert!(block.contains("# everywhere:"), "{block}");
    assert!(!block.contains("# orders:"), "{block}");

    // A policy named for another host is not backed up here, and says so.
    let elsewhere = run(
        folder,
        &[
            "--host",
            "db2",
            "apply",
            "--policy",
            "orders",
            "--no-crontab",
            "--auto-approve",
        ],
    );
    assert_eq!(elsewhere.code, 0, "{elsewhere:?}");
    assert!(
        elsewhere.stderr.contains("does not run on host `db2`"),
        "{elsewhere:?}"
    );
    assert!(!folder.join("backups/orders").exists());
}

#[test]
fn a_malformed_host_selector_is_refused_at_its_position() {
    let work = tempfile::tempdir().unwrap();
    policy(work.path(), "orders", "[db1, \"db 2\", \"role=\"]");
    let result = run(
        work.path(),
        &["-p", "orders.yaml", "validate", "--color", "never"],
    );
    assert_eq!(result.code, 3, "{result:?}");
    let result = common::Run {
        stderr: format!("{}{}", result.stdout, result.stderr),
        stdout: String::new(),
        code: result.code,
    };
    assert!(
        result.stderr.contains("orders.yaml:5:"),
        "position of the entry: {}",
        result.stderr
    );
    assert!(result.stderr.contains("`db 2`"), "{}", result.stderr);
    assert!(result.stderr.contains("`role=`"), "{}", result.stderr);
}

#[test]
fn status_all_hosts_shows_each_hosts_last_run_and_the_backups_it_took() {
    let work = tempfile::tempdir().unwrap();
    let folder = work.path();
    policy(folder, "orders", "[db1, db2, db3]");
    let state = |host: &str| folder.join(format!(".state-{host}"));
    let as_host = |host: &str, args: &[&str]| {
        let state = state(host);
        let mut full = vec![
            "--host",
            host,
            "--state-dir",
            state.to_str().unwrap(),
            "-p",
            "orders.yaml",
        ];
        full.extend_from_slice(args);
        run(folder, &full)
    };
    assert_eq!(as_host("db1", &["run", "orders"]).code, 0);
    assert_eq!(as_host("db2", &["run", "orders"]).code, 0);
    // db2's next attempt fails: its database is gone.
    std::fs::rename(folder.join("orders.db"), folder.join("moved.db")).unwrap();
    assert_ne!(as_host("db2", &["run", "orders"]).code, 0);
    std::fs::rename(folder.join("moved.db"), folder.join("orders.db")).unwrap();

    // Each sidecar names the host that took it.
    let mut hosts: Vec<String> = common::sidecars(&folder.join("backups/orders"))
        .iter()
        .filter(|sidecar| sidecar.get("artifact").is_some())
        .map(|sidecar| sidecar["host"].as_str().unwrap().to_owned())
        .collect();
    hosts.sort();
    assert_eq!(hosts, ["db1", "db2"]);

    // A third machine that never ran the policy sees the whole fleet.
    let result = as_host("laptop", &["status", "--all-hosts", "--format", "json"]);
    let report: Value =
        serde_json::from_str(&result.stdout).unwrap_or_else(|_| panic!("{result:?}"));
    let fleet = &report["fleet"]["policies"][0];
    assert_eq!(fleet["policy"], "orders");
    assert_eq!(
        report["fleet"]["hosts"],
        serde_json::json!(["db1", "db2", "db3"])
    );
    let host = |name: &str| {
        fleet["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|host| host["host"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(host("db1")["state"], "ok");
    assert_eq!(host("db1")["backups"], 1);
    assert_eq!(host("db1")["last_run"]["result"], "ok");
    assert_eq!(host("db2")["state"], "warning");
    assert_eq!(host("db2")["backups"], 1);
    assert_eq!(host("db2")["last_run"]["result"], "failed");
    assert_eq!(host("db3")["state"], "warning");
    assert!(host("db3")["last_run"].is_null());
    assert_eq!(fleet["newest_host"], "db2");
    assert_eq!(fleet["state"], "warning");
    assert_eq!(result.code, 1, "warning: {result:?}");

    let text = as_host("laptop", &["status", "--all-hosts"]).stdout;
    assert!(text.contains("Fleet: 1 policy, 3 hosts."), "{text}");
    assert!(
        text.contains("db3: never reported, though metadata.hosts names it"),
        "{text}"
    );
    assert!(text.contains("db2: last run failed"), "{text}");
    assert!(text.contains("db1: last run ok"), "{text}");
    // Plain `status` on that machine has no policy of its own to judge.
    let own = as_host("laptop", &["status", "--format", "json"]);
    let own: Value = serde_json::from_str(&own.stdout).unwrap();
    assert!(own["fleet"].is_null());
    assert_eq!(own["policies"].as_array().unwrap().len(), 0);
}

#[test]
fn the_fleet_view_judges_label_selectors_by_the_settings_labels() {
    let work = tempfile::tempdir().unwrap();
    let folder = work.path();
    policy(folder, "orders", "[\"role=primary\"]");
    std::fs::write(
        folder.join("settings.yaml"),
        "apiVersion: backup/v1\nkind: Settings\nspec:\n  hosts:\n    db7:\n      labels: {role: primary}\n",
    )
    .unwrap();
    let paths = ["-p", "orders.yaml", "-p", "settings.yaml"];
    let as_host = |host: &str, args: &[&str]| {
        let state = folder.join(format!(".state-{host}"));
        let mut full = vec!["--host", host, "--state-dir", state.to_str().unwrap()];
        full.extend_from_slice(&paths);
        full.extend_from_slice(args);
        run(folder, &full)
    };
    let ran = as_host("db7", &["apply", "--no-crontab", "--auto-approve"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let result = as_host("laptop", &["status", "--all-hosts", "--format", "json"]);
    let report: Value =
        serde_json::from_str(&result.stdout).unwrap_or_else(|_| panic!("{result:?}"));
    let db7 = &report["fleet"]["policies"][0]["hosts"][0];
    assert_eq!(db7["host"], "db7", "{report}");
    assert_eq!(db7["backups"], 1, "{report}");
    assert_eq!(db7["selected"], true, "db7 has the label: {report}");
}
