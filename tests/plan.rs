//! Scenario tests for `backup plan`: committed inputs, committed expected output.
//!
//! Each folder in `tests/scenarios/` holds `policies/`, an `inventory.txt`
//! describing what the destinations hold, `args.txt` (the plan's arguments,
//! always with a fixed `--now`), and the expected `plan.txt`, `plan.json`
//! and `plan.md` (the pull-request comment).
//! The test materializes the inventory in a temporary copy (real sidecars,
//! real data files), runs the real binary, and compares. Set
//! `BACKUP_UPDATE_SCENARIOS=1` to rewrite the expected files after a
//! deliberate change, then review the diff.
//!
//! `inventory.txt`, one line per object (`#` starts a comment):
//!
//! ```text
//! <folder> <policy> backup <id> [created_at] [pre-restore] [missing-data|size-mismatch]
//! <folder> <policy> object <name> <size> <modified, RFC 3339>
//! ```

mod common;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use common::{backup, root};

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn set_modified(path: &Path, time: DateTime<Utc>) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(time.into()).unwrap();
}

/// Writes the objects `inventory.txt` describes under `root`.
fn materialize(inventory: &str, root: &Path) {
    for (number, line) in inventory.lines().enumerate() {
        let line = line.split('#').next().unwrap().trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let folder = root.join(words[0]).join(words[1]);
        std::fs::create_dir_all(&folder).unwrap();
        match words[2] {
            "backup" => {
                let id = words[3];
                let created_at = words
                    .get(4)
                    .filter(|word| word.contains(':'))
                    .map(|word| DateTime::parse_from_rfc3339(word).unwrap().to_utc())
                    .unwrap_or_else(|| backup::inventory::id_time(id).unwrap());
                let state = words.last().copied().unwrap_or_default();
                // The same backup holds the same bytes on every destination.
                let repeat = id.bytes().map(usize::from).sum::<usize>() % 5;
                let data = format!("data of {id}\n").repeat(1 + repeat).into_bytes();
                let tags = words
                    .iter()
                    .filter(|word| **word == "pre-restore")
                    .map(|word| (*word).to_owned())
                    .collect();
                let metadata = common::sidecar_for(words[1], id, created_at, &data, tags);
                let name = metadata.artifact.name.clone();
                std::fs::write(
                    folder.join(format!("{id}.json")),
                    serde_json::to_vec_pretty(&metadata).unwrap(),
                )
                .unwrap();
                match state {
                    "missing-data" => {}
                    "size-mismatch" => std::fs::write(folder.join(&name), &data[1..]).unwrap(),
                    _ => std::fs::write(folder.join(&name), &data).unwrap(),
                }
            }
            "object" => {
                let path = folder.join(words[3]);
                std::fs::write(&path, vec![0_u8; words[4].parse().unwrap()]).unwrap();
                set_modified(
                    &path,
                    DateTime::parse_from_rfc3339(words[5]).unwrap().to_utc(),
                );
            }
            other => panic!("inventory.txt:{}: unknown kind `{other}`", number + 1),
        }
    }
}

/// Runs one scenario; returns the differences from the expected files.
fn check(scenario: &Path) -> Vec<String> {
    let work = tempfile::tempdir().unwrap();
    let copy = work.path().join("scenario");
    copy_tree(scenario, &copy);
    let inventory = std::fs::read_to_string(scenario.join("inventory.txt")).unwrap_or_default();
    materialize(&inventory, &copy);
    let args = std::fs::read_to_string(scenario.join("args.txt")).unwrap();
    let args: Vec<&str> = args.split_whitespace().collect();
    let mut problems = Vec::new();
    for (format, expected_name) in [
        ("text", "plan.txt"),
        ("json", "plan.json"),
        ("markdown", "plan.md"),
    ] {
        let output = backup(&copy)
            // cron reads schedules in the host's time zone; pin it.
            .env("TZ", "UTC")
            .args(["-p", "policies", "plan", "--format", format])
            .args(&args)
            .output()
            .unwrap();
        let code = output.status.code().unwrap_or(-1);
        let stdout = String::from_utf8_lossy(&output.stdout)
            .replace(copy.to_str().unwrap(), "[SCENARIO]")
            .replace(env!("CARGO_BIN_EXE_backup"), "[BIN]");
        let stderr =
            String::from_utf8_lossy(&output.stderr).replace(copy.to_str().unwrap(), "[SCENARIO]");
        let stdout = if format == "json" {
            // The fingerprint hashes absolute paths; it is checked by the apply tests.
            let mut value: serde_json::Value = serde_json::from_str(&stdout)
                .unwrap_or_else(|error| panic!("{}: {error}: {stdout}", scenario.display()));
            value["fingerprint"] = "[FINGERPRINT]".into();
            serde_json::to_string_pretty(&value).unwrap() + "\n"
        } else {
            stdout
        };
        let actual = format!(
            "$ backup plan {}\n# exit {code}\n{stderr}{stdout}",
            args.join(" ")
        );
        let expected_path = scenario.join(expected_name);
        if std::env::var_os("BACKUP_UPDATE_SCENARIOS").is_some() {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            let diff = similar::TextDiff::from_lines(&expected, &actual)
                .unified_diff()
                .header("expected", "actual")
                .to_string();
            problems.push(format!("{}:\n{diff}", expected_path.display()));
        }
    }
    problems
}

#[test]
fn plans_match_the_committed_scenarios() {
    let folder = root().join("tests/scenarios");
    let mut scenarios: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    scenarios.sort();
    assert!(scenarios.len() >= 6, "scenarios missing: {scenarios:?}");
    let problems: Vec<String> = scenarios
        .iter()
        .flat_map(|scenario| check(scenario))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The observe step gathers everything a plan is computed from into one
/// value: the inventory, the newest passing drill (here from this host's
/// evidence), the crontab (left alone here) and the free space of local
/// destinations; the plan over it is the pure `plan::compute`.
#[test]
fn observe_gathers_inventory_drill_evidence_crontab_and_space_in_one_value() {
    let work = tempfile::tempdir().unwrap();
    let folder = work.path();
    common::sqlite3(
        &folder.join("app.db"),
        "CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (1), (2);",
    );
    let store = folder.join("store");
    let policy = common::write_policy(folder, "app", "    sqlite:\n      path: app.db", &store);
    let mut text = std::fs::read_to_string(&policy).unwrap();
    text.push_str("  verify:\n    restore-test: weekly\n");
    std::fs::write(&policy, text).unwrap();
    let ran = common::run(folder, &["-p", "app.yaml", "run", "app"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let drill = common::run(folder, &["-p", "app.yaml", "verify", "--restore-test"]);
    assert_eq!(drill.code, 0, "{drill:?}");

    let loaded = backup::policy::load(
        std::slice::from_ref(&policy),
        backup::policy::Options::default(),
    );
    let selection = loaded.select(None).unwrap();
    let state = backup::state::StateDir::new(&folder.join(".state"));
    let now = Utc::now();
    let mut observed = common::observe_without_crontab(&selection, &state, now, true);
    let found = observed.inventory.policy("app").unwrap();
    let listing = found.destinations[0].listing.as_ref().unwrap();
    assert_eq!(listing.backups.len(), 1);
    let drilled = observed.inventory.restore_tests.get("app").copied();
    assert!(drilled.is_some_and(|at| at <= now), "{drilled:?}");
    assert!(
        matches!(
            &observed.crontab,
            backup::plan::CrontabInput::Unmanaged { reason } if reason == "--no-crontab"
        ),
        "{:?}",
        observed.crontab
    );
    let space = &observed.space["app"];
    assert!(space[&store.display().to_string()].is_ok(), "{space:?}");
    assert!(observed.warnings.is_empty(), "{:?}", observed.warnings);

    // Just backed up and drilled: nothing is due, and the plan is what the
    // pure planner computes from the same value.
    let scope = backup::plan::Scope::default();
    let plan = backup::observe::plan(&selection.selected, &mut observed, now, &scope);
    assert!(!plan.has_changes(), "{plan:?}");
    let pure = backup::plan::compute(
        &selection.selected,
        &observed.inventory,
        &observed.crontab,
        now,
        &scope,
    );
    assert_eq!(plan, pure);
}
