//! Layering: no import runs back up the layers (issue 13). Core modules
//! formatted with `crate::cli::human_bytes`, the policy checks opened S3 and
//! took `max-age` and `min-free` from `status`, `plan` probed destinations
//! itself, and retention read the wire type `RetentionSpec`.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/<folder>` (or the file `src/<folder>.rs`), with its text.
fn sources(folder: &str) -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut pending = vec![root.join(folder), root.join(format!("{folder}.rs"))];
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                pending.push(entry.unwrap().path());
            }
        } else if path.is_file() && path.extension().is_some_and(|extension| extension == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            files.push((path, text));
        }
    }
    assert!(!files.is_empty(), "no sources for {folder}");
    files
}

/// The places in `folder`'s code (comments aside) that name one of `needles`.
fn mentions(folder: &str, needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in sources(folder) {
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if needles.iter().any(|needle| code.contains(needle)) {
                found.push(format!(
                    "{}:{}: {}",
                    path.display(),
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    found
}

#[test]
fn no_core_module_imports_the_command_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let module = name.trim_end_matches(".rs");
        if ["cli", "main", "lib"].contains(&module) {
            continue;
        }
        found.extend(mentions(module, &["crate::cli", "super::cli"]));
    }
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn policy_checks_open_no_connection_and_take_nothing_from_status() {
    let found = mentions(
        "policy",
        &[
            "crate::status",
            "destination::s3",
            "check_access",
            "destination::open",
        ],
    );
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn plan_reads_only_the_inventory_it_is_given() {
    let found = mentions(
        "plan",
        &[
            "probe_deletes",
            "destination::",
            "inventory::gather",
            "std::fs",
            "PARTIAL_SUFFIX",
        ],
    );
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn retention_works_on_resolved_rules() {
    let found = mentions("retention", &["RetentionSpec", "crate::policy"]);
    assert!(found.is_empty(), "{found:#?}");
}
