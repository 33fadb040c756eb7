//! A throwaway site for `plan`/`apply` tests: a folder with an SQLite
//! database `app.db`, a policy `app` (daily at 01:00 UTC) backing it up to
//! local folders of the site (and any other destination YAML given), and a
//! state folder of its own.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Run, backup, sqlite3};

pub struct SqliteSite {
    work: tempfile::TempDir,
}

impl SqliteSite {
    /// A site whose policy keeps `retention` (YAML lines) in `store/`.
    pub fn new(retention: &str) -> SqliteSite {
        let site = SqliteSite {
            work: tempfile::tempdir().unwrap(),
        };
        sqlite3(
            &site.path().join("app.db"),
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t (v) VALUES ('a'), ('b');",
        );
        site.policy(retention, &["    - local:\n        path: ../store\n"]);
        site
    }

    /// A new site holding a copy of everything in this one (`cp -a`).
    pub fn copy(&self) -> SqliteSite {
        let copy = SqliteSite {
            work: tempfile::tempdir().unwrap(),
        };
        let status = Command::new("cp")
            .args(["-a", &format!("{}/.", self.path().display())])
            .arg(copy.path())
            .status()
            .unwrap();
        assert!(status.success());
        copy
    }

    pub fn path(&self) -> &Path {
        self.work.path()
    }

    /// The policy's folder in `store/`.
    pub fn store(&self) -> PathBuf {
        self.path().join("store/app")
    }

    /// (Re)writes the policy with `retention` (YAML lines) and
    /// `destinations` (YAML list items, indented for `destinations:`).
    pub fn policy(&self, retention: &str, destinations: &[&str]) {
        let retention: String = retention
            .lines()
            .map(|line| format!("    {}\n", line.trim()))
            .collect();
        std::fs::create_dir_all(self.path().join("policies")).unwrap();
        std::fs::write(
            self.path().join("policies/app.yaml"),
            format!(
                "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: app\nspec:\n  source:\n    sqlite:\n      path: ../app.db\n  schedule:\n    cron: \"0 1 * * *\"\n  retention:\n{retention}  destinations:\n{}",
                destinations.concat()
            ),
        )
        .unwrap();
    }

    /// `backup` in the site, with its own state folder.
    pub fn command(&self) -> Command {
        backup(self.path())
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.command().args(args).output().unwrap().into()
    }

    /// `apply --auto-approve --no-crontab --now NOW`, plus `extra`.
    pub fn apply_at(&self, now: &str, extra: &[&str]) -> Run {
        let mut args = vec!["apply", "--auto-approve", "--no-crontab", "--now", now];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// The backup ids in `store/app`, sorted (by their sidecars).
    pub fn stored_ids(&self) -> Vec<String> {
        super::stored_ids(&self.store())
    }
}
