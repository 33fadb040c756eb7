//! Plans saved by `backup plan --out` and carried out by `backup apply FILE`.
//!
//! A saved plan is JSON of [`FORMAT_VERSION`]. It is carried out only if it
//! is what planning computes now from the same policies, inventory and
//! crontab at the plan's time ([`check`]): nothing changed since, and nobody
//! edited the file. This module reads and writes the file; it plans only
//! through [`crate::observe::plan`], as `plan` does.

use std::path::{Path, PathBuf};

use chrono::Utc;

use crate::observe::Observed;
use crate::plan::{FORMAT_VERSION, Plan, Scope};
use crate::policy::Policy;

/// Why a plan could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write the plan next to {}", .path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the plan to {}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot save the plan as {}", .path.display())]
    Persist {
        path: PathBuf,
        source: tempfile::PersistError,
    },
    #[error("cannot read the plan {}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a saved plan (not JSON)", .path.display())]
    NotJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{} is a plan of format_version {version:?}; this backup reads {FORMAT_VERSION}", .path.display())]
    Version { path: PathBuf, version: Option<u64> },
    #[error("{} is not a saved plan", .path.display())]
    NotPlan {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// How old a saved plan may be.
const LIFETIME: chrono::Duration = chrono::Duration::hours(24);

/// Writes the plan as JSON, atomically.
pub fn save(plan: &Plan, out: &Path) -> Result<(), Error> {
    let folder = out
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(folder).map_err(|source| Error::Create {
        path: out.to_owned(),
        source,
    })?;
    let write = |source| Error::Write {
        path: out.to_owned(),
        source,
    };
    serde_json::to_writer_pretty(&mut file, plan).map_err(|error| write(error.into()))?;
    std::io::Write::write_all(&mut file, b"\n").map_err(write)?;
    file.persist(out).map_err(|source| Error::Persist {
        path: out.to_owned(),
        source,
    })?;
    Ok(())
}

/// Reads a saved plan, refusing other format versions.
pub fn load(file: &Path) -> Result<Plan, Error> {
    let path = || file.to_owned();
    let text = std::fs::read_to_string(file).map_err(|source| Error::Read {
        path: path(),
        source,
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| Error::NotJson {
            path: path(),
            source,
        })?;
    let version = value
        .get("format_version")
        .and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(FORMAT_VERSION)) {
        return Err(Error::Version {
            path: path(),
            version,
        });
    }
    serde_json::from_value(value).map_err(|source| Error::NotPlan {
        path: path(),
        source,
    })
}

/// The saved plan, if it is still what planning computes from what
/// `observed` found (deletes probed as planning probes them); else why not.
pub fn check(saved: Plan, policies: &[Policy], observed: &mut Observed) -> Result<Plan, String> {
    let now = Utc::now();
    if saved.now > now + chrono::Duration::minutes(5) {
        return Err(format!(
            "the saved plan was made for {}, which is still to come",
            saved.now.to_rfc3339()
        ));
    }
    if now - saved.now > LIFETIME {
        return Err(format!(
            "the saved plan was made for {}, more than a day ago",
            saved.now.to_rfc3339()
        ));
    }
    // Probing first: the saved plan's fingerprint covers what probing found.
    let scope = Scope {
        only: saved.only.clone(),
    };
    let recomputed = crate::observe::plan(policies, observed, saved.now, &scope);
    let current = crate::plan::fingerprint_scheduled(
        policies,
        &observed.inventory,
        &observed.crontab,
        observed.scheduler.as_ref(),
    );
    if current != saved.fingerprint {
        return Err(
            "the policies, the backups or the crontab changed since the plan was saved".to_owned(),
        );
    }
    if recomputed != saved {
        return Err(
            "the saved plan is not what this version of backup plans from the same state (was it edited?)"
                .to_owned(),
        );
    }
    Ok(saved)
}

/// The policies `saved` covers, from every loaded one; else the name of one
/// it covers that is no longer loaded.
pub fn policies(saved: &Plan, loaded: &[Policy]) -> Result<Vec<Policy>, String> {
    let names: Vec<&str> = saved
        .policies
        .iter()
        .map(|policy| policy.name.as_str())
        .collect();
    if let Some(missing) = names
        .iter()
        .find(|name| !loaded.iter().any(|policy| policy.name == **name))
    {
        return Err((*missing).to_owned());
    }
    Ok(loaded
        .iter()
        .filter(|policy| names.contains(&policy.name.as_str()))
        .cloned()
        .collect())
}
