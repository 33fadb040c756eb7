//! Restore drills (`backup verify --restore-test`): restore a backup into a
//! scratch target, check it against the sidecar, remove the scratch target,
//! and keep the evidence.
//!
//! The scratch target is a temporary SQLite file, or a temporary database
//! `<db>_restore_test_<random>` on the policy's own server, marked as the
//! drill's by its comment ([`scratch_marker`]) and dropped afterwards
//! whatever happened. Only marked databases are taken for abandoned ones. Evidence records are JSON files under
//! `<state>/restore-tests/<policy>/`, one per drill; `plan` reads the newest
//! passing one to decide when the next drill is due; each drill also
//! appends a run record of kind `drill` to `<state>/runs/<policy>.jsonl`.
//! Never touches the policy's own database.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Choice, Request, Step};
use crate::inventory::base_id;
use crate::policy::Policy;
use crate::runlog::{RunKind, RunRecord};
use crate::state::StateDir;

/// Version of the evidence record format.
pub const EVIDENCE_VERSION: u32 = 1;

/// Expected and actual rows of one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rows {
    pub expected: u64,
    pub actual: Option<u64>,
}

/// What a drill did and found: its evidence record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evidence {
    pub format_version: u32,
    pub policy: String,
    pub backup: Option<String>,
    pub destination: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// `passed` or `failed`.
    pub result: String,
    pub error: Option<String>,
    /// The stored artifact: name, size and SHA-256 as checked.
    pub artifact: Option<ArtifactEvidence>,
    pub scratch_target: Option<String>,
    pub row_counts: BTreeMap<String, Rows>,
    pub steps: Vec<StepEvidence>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArtifactEvidence {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub uncompressed_size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepEvidence {
    pub step: String,
    pub seconds: f64,
    pub ok: bool,
    pub detail: String,
}

impl From<&Step> for StepEvidence {
    fn from(step: &Step) -> Self {
        StepEvidence {
            step: step.step.to_owned(),
            seconds: step.seconds,
            ok: step.ok,
            detail: step.detail.clone(),
        }
    }
}

impl Evidence {
    pub fn passed(&self) -> bool {
        self.result == "passed"
    }
}

/// The folder of a policy's evidence records.
pub fn evidence_dir(state: &Path, policy: &str) -> PathBuf {
    state.join("restore-tests").join(policy)
}

/// Runs one drill of `policy` on `backup` (or the newest).
pub fn run(policy: &Policy, backup: Option<&str>) -> Evidence {
    let clock = Instant::now();
    let started_at = Utc::now();
    let mut evidence = Evidence {
        format_version: EVIDENCE_VERSION,
        policy: policy.name.clone(),
        backup: None,
        destination: None,
        started_at,
        finished_at: started_at,
        result: "failed".to_owned(),
        error: None,
        artifact: None,
        scratch_target: None,
        row_counts: BTreeMap::new(),
        steps: Vec::new(),
        seconds: 0.0,
    };
    let result = drill(policy, backup, &mut evidence);
    if let Err(error) = result {
        evidence.error = Some(error);
    } else {
        evidence.result = "passed".to_owned();
    }
    evidence.finished_at = Utc::now();
    evidence.seconds = clock.elapsed().as_secs_f64();
    evidence
}

fn drill(policy: &Policy, backup: Option<&str>, evidence: &mut Evidence) -> Result<(), String> {
    // An encrypted policy's drill decrypts with the policy's identity,
    // unless the command was given one.
    if !crate::codec::keys::has(&policy.name) {
        crate::codec::keys::load(policy, None).map_err(|error| error.to_string())?;
    }
    let request = Request {
        backup: backup.map_or(Choice::Latest, |id| Choice::Id(id.to_owned())),
        from: None,
        to: None,
        jobs: None,
        lock_timeout: None,
        dry_run: false,
    };
    // Pick and verify exactly as a restore does, without touching the real target.
    let started = Instant::now();
    let candidates = super::select(policy, &request).map_err(|error| error.to_string())?;
    let database = crate::database::open(&policy.source);
    let mut problems = Vec::new();
    let mut chosen = None;
    for candidate in candidates {
        evidence.backup = Some(candidate.record.metadata.id.clone());
        match crate::verify::verify_restorable(
            candidate.destination.as_ref(),
            &candidate.record,
            database.as_ref(),
        ) {
            Ok(_) => {
                chosen = Some(candidate);
                break;
            }
            Err(problem) => {
                problems.push(format!("{}: {problem}", candidate.destination.location()))
            }
        }
    }
    let Some(chosen) = chosen else {
        let detail = problems.join("; ");
        evidence
            .steps
            .push((&Step::timed("verify", started, false, detail.clone())).into());
        return Err(format!("verification failed: {detail}"));
    };
    let metadata = &chosen.record.metadata;
    evidence.destination = Some(chosen.destination.location());
    evidence.artifact = Some(ArtifactEvidence {
        name: metadata.artifact.name.clone(),
        size: metadata.artifact.size,
        sha256: metadata.artifact.sha256.clone(),
        uncompressed_size: metadata.artifact.uncompressed_size,
    });
    evidence.row_counts = metadata
        .source
        .row_counts
        .iter()
        .map(|(table, rows)| {
            (
                table.clone(),
                Rows {
                    expected: *rows,
                    actual: None,
                },
            )
        })
        .collect();
    evidence.steps.push(
        (&Step::timed(
            "verify",
            started,
            true,
            format!("{} on {}", metadata.id, chosen.destination.location()),
        ))
            .into(),
    );

    let scratch = database
        .scratch(&policy.name, &metadata.id)
        .map_err(|error| error.to_string())?;
    evidence.scratch_target = Some(scratch.target().describe());
    let started = Instant::now();
    let restored = scratch
        .target()
        .restore(chosen.destination.as_ref(), &chosen.record, false);
    let result = match restored {
        Err(failed) => {
            evidence
                .steps
                .push((&Step::timed("restore", started, false, failed.error.to_string())).into());
            Err(format!("restore failed: {}", failed.error))
        }
        Ok(detail) => {
            evidence
                .steps
                .push((&Step::timed("restore", started, true, detail)).into());
            let started = Instant::now();
            let checked = scratch.target().check(metadata, false);
            // Actual counts, also when they do not match.
            let actual = scratch.target().count_rows(metadata);
            for (table, rows) in &mut evidence.row_counts {
                rows.actual = actual.get(table).copied();
            }
            match checked {
                Ok(checked) => {
                    evidence
                        .steps
                        .push((&Step::timed("check", started, true, checked.detail)).into());
                    Ok(())
                }
                Err(error) => {
                    evidence
                        .steps
                        .push((&Step::timed("check", started, false, error.to_string())).into());
                    Err(error.to_string())
                }
            }
        }
    };
    let started = Instant::now();
    let removed = scratch.remove().map_err(|error| error.to_string());
    evidence.steps.push(
        (&Step::timed(
            "drop scratch",
            started,
            removed.is_ok(),
            removed.as_ref().err().cloned().unwrap_or_default(),
        ))
            .into(),
    );
    result?;
    removed.map_err(|error| format!("the scratch target could not be removed: {error}"))
}

pub use crate::database::postgres::{scratch_database_prefix, scratch_marker};

/// Writes `evidence` as `<dir>/<started id>.json` (0600, atomically).
pub fn write_evidence(state: &Path, evidence: &Evidence) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    let folder = evidence_dir(state, &evidence.policy);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&folder)?;
    let path = folder.join(format!("{}.json", base_id(evidence.started_at)));
    let mut file = tempfile::NamedTempFile::new_in(&folder)?;
    serde_json::to_writer_pretty(&mut file, evidence).map_err(std::io::Error::other)?;
    std::io::Write::write_all(&mut file, b"\n")?;
    file.as_file().sync_all()?;
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.persist(&path).map_err(|error| error.error)?;
    Ok(path)
}

/// Evidence records kept beside the backups, per destination.
const PUBLISHED_KEEP: usize = 10;

/// Puts a passing drill's evidence beside the backups on every destination
/// of `policy` ([`crate::inventory::drill_record_name`]), so that any host,
/// a CI job planning against the destinations included, knows when the last
/// drill passed; keeps the newest [`PUBLISHED_KEEP`]. What could not be
/// published, by destination: a drill is not failed by it.
pub fn publish(policy: &Policy, evidence: &Evidence) -> Vec<String> {
    if !evidence.passed() {
        return Vec::new();
    }
    let Ok(mut bytes) = serde_json::to_vec_pretty(evidence) else {
        return vec!["cannot encode the evidence".to_owned()];
    };
    bytes.push(b'\n');
    let name = crate::inventory::drill_record_name(evidence.started_at);
    let mut problems = Vec::new();
    for spec in &policy.destinations {
        let published = crate::destination::open(spec).and_then(|destination| {
            destination.put(&policy.name, &name, &bytes)?;
            let mut records: Vec<String> = destination
                .list(&policy.name)?
                .into_iter()
                .map(|entry| entry.name)
                .filter(|name| crate::inventory::drill_record_time(name).is_some())
                .collect();
            records.sort_by(|left, right| right.cmp(left));
            for old in records.iter().skip(PUBLISHED_KEEP) {
                destination.remove(&policy.name, old)?;
            }
            Ok(())
        });
        if let Err(error) = published {
            problems.push(format!("{}: {error}", crate::destination::describe(spec)));
        }
    }
    problems
}

/// The run record of a drill (kind `drill`): it never counts toward, nor
/// ends, the policy's backup failures (see [`crate::runlog::RunKind::is_backup`]).
pub fn run_record(evidence: &Evidence) -> RunRecord {
    let mut record = RunRecord::new(&evidence.policy, RunKind::Drill, evidence.started_at);
    record.finished_at = evidence.finished_at;
    record.duration_seconds = evidence.seconds;
    record.backup = evidence.backup.clone();
    record.bytes = evidence.artifact.as_ref().map(|artifact| artifact.size);
    match &evidence.error {
        Some(error) if !evidence.passed() => record.failed(error.clone()),
        None if !evidence.passed() => record.failed("failed"),
        _ => record,
    }
}

/// Keeps what a finished drill found: its evidence record in the state
/// folder (the path returned), beside the backups when it passed, and its
/// run record. What could not be kept beside the backups or in the run
/// records comes back as problems, one a line: they never fail a drill.
pub fn keep(
    state: &StateDir,
    policy: &Policy,
    evidence: &Evidence,
) -> (std::io::Result<PathBuf>, Vec<String>) {
    let written = write_evidence(state.path(), evidence);
    let mut problems: Vec<String> = publish(policy, evidence)
        .into_iter()
        .map(|problem| format!("drill evidence not put beside the backups on {problem}"))
        .collect();
    if let Err(error) = crate::runlog::record(state, &run_record(evidence)) {
        problems.push(format!("run record not written: {error}"));
    }
    (written, problems)
}

/// When the newest passing drill of `policy` started, from its evidence records.
pub fn last_passed(state: &Path, policy: &str) -> Option<DateTime<Utc>> {
    let entries = std::fs::read_dir(evidence_dir(state, policy)).ok()?;
    entries
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".json"))
        .filter_map(|entry| {
            crate::bounded::read_file(&entry.path(), crate::bounded::RECORD_LIMIT).ok()
        })
        .filter_map(|bytes| serde_json::from_slice::<Evidence>(&bytes).ok())
        .filter(|evidence| evidence.passed() && evidence.policy == policy)
        .map(|evidence| evidence.started_at)
        .max()
}
