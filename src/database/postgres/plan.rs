//! What a restore plan says of a PostgreSQL target: the tables the restore
//! drops, creates and keeps, versions, the checks after, the lock timeout.

use std::collections::BTreeSet;

use super::target::PostgresTarget;
use crate::database::{
    TargetInfo, TargetPlan, compatibility, created_tables, dropped_tables, major, table_differences,
};
use crate::inventory::BackupMetadata;

/// The PostgreSQL part of the restore plan of `target` for `metadata`.
pub(super) fn plan(
    target: &PostgresTarget,
    metadata: &BackupMetadata,
    info: &TargetInfo,
) -> TargetPlan {
    let contents = target.contents_found();
    let kept: Vec<&String> = target
        .kept()
        .map_or_else(Vec::new, |kept| kept.tables().collect());
    let mut plan = TargetPlan::default();
    if let Some(contents) = contents.filter(|contents| !contents.without_data.is_empty()) {
        let names: Vec<&str> = contents.without_data.iter().map(String::as_str).collect();
        plan.source = format!(
            ", and {} without {} rows: {}",
            names.len(),
            their(names.len()),
            names.join(", ")
        );
    }
    if let (Some(contents), Some(tables)) = (contents, &info.tables) {
        let dropped: Vec<&str> = contents
            .tables
            .intersection(tables)
            .filter(|table| !kept.contains(table))
            .map(String::as_str)
            .collect();
        plan.contents.extend(dropped_tables(&dropped));
    }
    if let Some(kept) = target.kept() {
        let rows = |table: &String| {
            kept.rows_before
                .get(table)
                .map_or_else(String::new, |rows| format!(" ({rows} rows)"))
        };
        let names = |tables: &[String]| {
            tables
                .iter()
                .map(|table| format!("{table}{}", rows(table)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let count = kept.keep.tables.len();
        if count > 0 {
            plan.contents.push((
                "keeps",
                format!(
                    "{}, as {} with {} rows, indexes, constraints, triggers and sequences: the backup holds {} definition, not {} rows",
                    names(&kept.keep.tables),
                    if count == 1 { "it is" } else { "they are" },
                    their(count),
                    their(count),
                    their(count),
                ),
            ));
        }
        if !kept.keep.also.is_empty() {
            plan.contents.push((
                "keeps",
                format!(
                    "also {}, as it is (a partition of a kept table, or needed by one): the backup's rows for it are not restored",
                    names(&kept.keep.also)
                ),
            ));
        }
        if !kept.keep.schemas.is_empty() {
            plan.contents.push((
                "keeps",
                format!(
                    "schema {} (not dropped: it holds kept tables or tables the backup does not hold)",
                    kept.keep.schemas.join(", ")
                ),
            ));
        }
    }
    plan.compatibility = compatibility(
        metadata.source.server_version.as_ref(),
        info.version.as_ref(),
        major,
    );
    let counted = metadata
        .source
        .row_counts
        .keys()
        .filter(|table| !kept.contains(table))
        .count();
    plan.checks_after = format!(
        "row counts of {counted} table{}{}",
        plural(counted),
        if kept.is_empty() {
            ""
        } else {
            ", and that the kept tables are still there with their rows"
        }
    );
    if info.exists {
        plan.more.push((
            "locks",
            if target.lock_timeout().is_zero() {
                "waits for ever for locks other sessions hold on what it drops (--lock-timeout 0)"
                    .to_owned()
            } else {
                format!(
                    "waits at most {} (--lock-timeout) for locks other sessions hold on what it drops, then gives up and changes nothing",
                    super::locks::describe_timeout(target.lock_timeout())
                )
            },
        ));
    }
    plan.warnings = warnings(target, metadata, info);
    plan
}

/// Versions, a safety backup of another database, and the tables only on one side.
fn warnings(target: &PostgresTarget, metadata: &BackupMetadata, info: &TargetInfo) -> Vec<String> {
    let mut warnings = Vec::new();
    if let (Some(backup), Some(target)) = (&metadata.source.server_version, &info.version)
        && major(backup) != major(target)
    {
        warnings.push(format!(
            "the backup comes from PostgreSQL {backup}, the target runs {target}: major versions differ"
        ));
    }
    // A safety backup of another database (taken before a `--to` restore)
    // put back into this one would be that database's data.
    if let Some(database) = &metadata.source.database
        && metadata.is_pre_restore()
        && target.database() != database
    {
        warnings.push(format!(
            "this is a safety backup of database `{database}`, not of the target `{}`: to undo a restore with `--to`, restore it with the same `--to`",
            target.database()
        ));
    }
    // The dump's own table of contents when known; else the tables the sidecar counts.
    let contents = target.contents_found();
    let backup: BTreeSet<String> = match contents {
        Some(contents) => contents.tables.clone(),
        None => metadata.source.row_counts.keys().cloned().collect(),
    };
    let (mut differences, only_backup) =
        table_differences(info, &backup, "pg_restore --clean leaves them as they are");
    warnings.append(&mut differences);
    let without_data = contents.map(|contents| &contents.without_data);
    let (empty, created): (Vec<String>, Vec<String>) = only_backup
        .into_iter()
        .partition(|table| without_data.is_some_and(|tables| tables.contains(table)));
    warnings.extend(created_tables(&created));
    if !empty.is_empty() {
        warnings.push(format!(
            "tables in the backup without their rows and not in the target (created empty): {}",
            empty.join(", ")
        ));
    }
    warnings
}

fn plural(count: usize) -> &'static str {
    if count == 1 { "" } else { "s" }
}

fn their(count: usize) -> &'static str {
    if count == 1 { "its" } else { "their" }
}
