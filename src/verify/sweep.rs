//! `backup verify` over a set of policies: every stored backup checked
//! against its sidecar ([`backups`]), with the tally that decides the exit
//! status. (`--restore-test` drills are the restore module's.)
//!
//! It reports each result to the caller as it comes and prints nothing.

use super::Problem;
use crate::destination;
use crate::exit::ExitStatus;
use crate::inventory;
use crate::policy::Policy;

/// One result of [`backups`].
pub enum Checked<'a> {
    /// A destination could not be opened or listed.
    Unlisted {
        policy: &'a str,
        location: &'a str,
        reason: &'a str,
    },
    /// A sidecar could not be read: it fails verification all the same.
    Unreadable {
        policy: &'a str,
        location: &'a str,
        name: &'a str,
        reason: &'a str,
    },
    /// A policy's WAL archive on a destination was checked for gaps.
    Wal {
        policy: &'a str,
        location: &'a str,
        result: &'a Result<String, String>,
    },
    /// A backup was read and checked.
    Backup {
        policy: &'a str,
        location: &'a str,
        id: &'a str,
        result: &'a Result<super::Verified, Problem>,
    },
}

/// What [`backups`] counted. Backups (sidecars that could be read) and
/// unreadable sidecars are counted apart: an unreadable sidecar is no backup.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub checked: usize,
    pub ok: usize,
    pub failed: usize,
    pub unreadable: usize,
    /// Destinations that could not be listed.
    pub errors: usize,
    /// WAL archives checked for continuity (counted in `ok` or `failed` too).
    pub wal: usize,
}

impl Tally {
    /// `Verified 3 backups: 3 ok, 0 failed.`
    pub fn summary(&self) -> String {
        let noun = if self.checked - self.wal == 1 {
            "backup"
        } else {
            "backups"
        };
        let sidecars = match self.unreadable {
            0 => String::new(),
            1 => "; 1 sidecar unreadable".to_owned(),
            count => format!("; {count} sidecars unreadable"),
        };
        let archives = match self.wal {
            0 => String::new(),
            1 => " and 1 WAL archive".to_owned(),
            count => format!(" and {count} WAL archives"),
        };
        format!(
            "Verified {} {noun}{archives}: {} ok, {} failed{sidecars}.",
            self.checked - self.wal,
            self.ok,
            self.failed
        )
    }

    pub fn exit_status(&self) -> ExitStatus {
        if self.failed + self.unreadable > 0 {
            ExitStatus::VerificationFailed
        } else if self.errors > 0 {
            ExitStatus::Failure
        } else {
            ExitStatus::Success
        }
    }
}

/// Verifies every backup of `policies` (with `only`, that backup id alone).
pub fn backups(policies: &[Policy], only: Option<&str>, report: &mut dyn FnMut(Checked)) -> Tally {
    let mut tally = Tally::default();
    for policy in policies {
        for spec in &policy.destinations {
            let location = destination::describe(spec);
            let opened = destination::open(spec);
            let listing = opened
                .as_ref()
                .map_err(ToString::to_string)
                .and_then(|destination| {
                    inventory::read(destination.as_ref(), &policy.name, None)
                        .map_err(|error| error.to_string())
                });
            let (Ok(destination), Ok(listing)) = (opened.as_ref(), listing.as_ref()) else {
                let reason = listing.err().unwrap_or_default();
                report(Checked::Unlisted {
                    policy: &policy.name,
                    location: &location,
                    reason: &reason,
                });
                tally.errors += 1;
                continue;
            };
            for (name, reason) in &listing.unreadable {
                if only.is_some_and(|id| inventory::names::sidecar_id(name) != Some(id)) {
                    continue;
                }
                report(Checked::Unreadable {
                    policy: &policy.name,
                    location: &location,
                    name,
                    reason,
                });
                tally.unreadable += 1;
            }
            if policy.physical.is_some() && only.is_none() {
                let result = wal_continuity(destination.as_ref(), &policy.name, listing);
                tally.checked += 1;
                tally.wal += 1;
                match result {
                    Ok(_) => tally.ok += 1,
                    Err(_) => tally.failed += 1,
                }
                report(Checked::Wal {
                    policy: &policy.name,
                    location: &location,
                    result: &result,
                });
            }
            for record in &listing.backups {
                if only.is_some_and(|id| id != record.metadata.id) {
                    continue;
                }
                tally.checked += 1;
                let result = super::verify(destination.as_ref(), record);
                match result {
                    Ok(_) => tally.ok += 1,
                    Err(_) => tally.failed += 1,
                }
                report(Checked::Backup {
                    policy: &policy.name,
                    location: &location,
                    id: &record.metadata.id,
                    result: &result,
                });
            }
        }
    }
    tally
}

/// Whether the WAL archive of `policy` on `destination` is continuous: no
/// gap between its first and last segment of each timeline, and every base
/// backup's own WAL (start to stop) there. What it holds, or the exact
/// missing ranges.
fn wal_continuity(
    destination: &dyn destination::Destination,
    policy: &str,
    listing: &inventory::Listing,
) -> Result<String, String> {
    use crate::wal::SegmentName;
    let archive = crate::wal::list(destination, policy)
        .map_err(|error| format!("the WAL archive cannot be listed: {error}"))?;
    let size = archive.segment_size();
    let summary = archive.summary();
    let mut problems: Vec<String> = summary
        .gaps
        .iter()
        .map(|gap| format!("WAL gap: missing {}", gap.describe()))
        .collect();
    for record in &listing.backups {
        let Some(info) = &record.metadata.physical else {
            continue;
        };
        let (Some(start), Some(stop)) = (
            SegmentName::parse(&info.start_wal, size),
            SegmentName::parse(&info.stop_wal, size),
        ) else {
            continue;
        };
        let missing = archive.missing(&start, &stop);
        if !missing.is_empty() {
            problems.push(format!(
                "base backup {} cannot be restored: its WAL misses {}",
                record.metadata.id,
                missing
                    .iter()
                    .map(crate::wal::Range::describe)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    Ok(match (summary.ranges.first(), summary.ranges.last()) {
        (Some(first), Some(last)) => format!(
            "WAL {} to {}: {} segment{}, no gap",
            first.first,
            last.last,
            summary.segments,
            if summary.segments == 1 { "" } else { "s" }
        ),
        _ => "WAL: nothing archived yet".to_owned(),
    })
}
