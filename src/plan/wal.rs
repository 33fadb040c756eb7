//! The WAL archive of a policy with base backups, as the plan sees it: what
//! it holds on each destination (in ranges, never segment by segment), its
//! gaps, the recoverable window, and which WAL retention deletes.
//!
//! WAL is kept from the start of the oldest base backup retention keeps; a
//! `pitr-window` keeps it for less: from the start of the newest kept base
//! backup that began before `now - window`. Timeline history files are never
//! deleted (they are tiny and every later timeline needs them). Nothing is
//! deleted while a destination cannot be read or before any base backup exists.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Action, ActionKind, Kept};
use crate::inventory::metadata::PhysicalInfo;
use crate::inventory::names::{self, WalKind};
use crate::inventory::{PolicyInventory, RecordState};
use crate::policy::Policy;
use crate::wal::{Archive, Range, SegmentName};

/// What an action on WAL says in its `format`: a range of the archive.
pub const WAL_FORMAT: &str = "wal";

/// One destination's WAL archive of the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalDestination {
    pub location: String,
    /// Distinct segments archived, and the bytes every WAL file takes.
    pub segments: u64,
    pub bytes: u64,
    /// The contiguous runs of segments.
    pub ranges: Vec<Range>,
    /// Missing runs between them, exact.
    pub gaps: Vec<Range>,
    /// When the newest WAL file was archived.
    pub newest: Option<DateTime<Utc>>,
    /// Why it could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The policy's WAL archive and recoverable window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalPlan {
    pub destinations: Vec<WalDestination>,
    /// The earliest point a restore reaches: the end of the oldest base
    /// backup whose WAL is complete from its start onwards.
    pub earliest: Option<DateTime<Utc>>,
    /// The latest: when the last segment of that unbroken run was archived.
    pub latest: Option<DateTime<Utc>>,
    /// The segment WAL is kept from, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_reason: Option<String>,
}

/// A base backup as WAL retention sees it.
struct Base<'a> {
    id: &'a str,
    created_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
    info: &'a PhysicalInfo,
}

impl<'a> Base<'a> {
    /// `record` as a base backup, if it is a complete one.
    fn of(record: &'a crate::inventory::BackupRecord) -> Option<Base<'a>> {
        (record.state == RecordState::Complete).then_some(())?;
        Some(Base {
            id: record.metadata.id.as_str(),
            created_at: record.metadata.created_at,
            finished_at: record.metadata.finished_at,
            info: record.metadata.physical.as_ref()?,
        })
    }
}

/// The window a restore can reach from `archive`, whose contiguous runs are
/// `ranges`, with the base backups `bases` (of one destination): earliest
/// and latest point.
fn window(
    archive: &Archive,
    ranges: &[Range],
    bases: &[Base],
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let size = archive.segment_size();
    let modified = |name: &str| {
        archive
            .files
            .iter()
            .filter(|file| file.name == name)
            .filter_map(|file| file.modified)
            .max()
    };
    let mut earliest: Option<DateTime<Utc>> = None;
    let mut latest: Option<DateTime<Utc>> = None;
    for base in bases {
        let (Some(start), Some(stop)) = (
            SegmentName::parse(&base.info.start_wal, size),
            SegmentName::parse(&base.info.stop_wal, size),
        ) else {
            continue;
        };
        let run = ranges.iter().find(|range| {
            let first = SegmentName::parse(&range.first, size);
            let last = SegmentName::parse(&range.last, size);
            range.timeline == start.timeline
                && first.is_some_and(|first| first.number <= start.number)
                && last.is_some_and(|last| last.number >= stop.number)
        });
        if let Some(run) = run {
            earliest = Some(earliest.map_or(base.finished_at, |time| time.min(base.finished_at)));
            let end = modified(&run.last)
                .unwrap_or(base.finished_at)
                .max(base.finished_at);
            latest = Some(latest.map_or(end, |time| time.max(end)));
        }
    }
    Some((earliest?, latest?))
}

/// The WAL part of a policy's plan, and the prunes of WAL retention no
/// longer keeps. `kept` is what the base backups' retention keeps.
pub fn plan(
    policy: &Policy,
    found: &PolicyInventory,
    kept: &[Kept],
    now: DateTime<Utc>,
) -> (WalPlan, Vec<Action>) {
    let mut plan = WalPlan {
        destinations: Vec::new(),
        earliest: None,
        latest: None,
        keep_from: None,
        keep_reason: None,
    };
    // Every complete base backup, by id, from whichever destination lists it.
    let mut bases: BTreeMap<&str, Base> = BTreeMap::new();
    for destination in &found.destinations {
        let Ok(listing) = &destination.listing else {
            continue;
        };
        for base in listing.backups.iter().filter_map(Base::of) {
            bases.entry(base.id).or_insert(base);
        }
    }
    let mut ordered: Vec<&Base> = bases.values().collect();
    ordered.sort_by_key(|base| (base.created_at, base.id));
    let kept_bases: Vec<&Base> = ordered
        .iter()
        .copied()
        .filter(|base| kept.iter().any(|kept| kept.backup == base.id))
        .collect();

    // Where WAL is kept from.
    let window = policy
        .physical
        .as_ref()
        .and_then(|physical| physical.pitr_window);
    let boundary = kept_bases.first().map(|oldest| {
        let mut from = (
            *oldest,
            format!("the start of {}, the oldest base backup kept", oldest.id),
        );
        if let Some(window) = window {
            let cutoff = now - window;
            if let Some(within) = kept_bases
                .iter()
                .rev()
                .find(|base| base.created_at <= cutoff)
                && within.created_at > from.0.created_at
            {
                from = (
                    *within,
                    format!(
                        "the start of {}, the newest base backup before the pitr-window of {}",
                        within.id,
                        crate::format::human_age(window)
                    ),
                );
            }
        }
        from
    });
    let unreadable = found.destinations.iter().any(|destination| {
        destination.listing.is_err() || matches!(&destination.wal, Some(Err(_)) | None)
    });

    let mut prunes = Vec::new();
    for destination in &found.destinations {
        let location = destination.location.clone();
        let archive = match &destination.wal {
            Some(Ok(archive)) => archive,
            Some(Err(error)) => {
                plan.destinations.push(WalDestination {
                    location,
                    segments: 0,
                    bytes: 0,
                    ranges: Vec::new(),
                    gaps: Vec::new(),
                    newest: None,
                    error: Some(error.clone()),
                });
                continue;
            }
            None => continue,
        };
        let summary = archive.summary();
        let size = archive.segment_size();
        // The bases this destination holds decide its window.
        let held: Vec<Base> = match &destination.listing {
            Ok(listing) => listing.backups.iter().filter_map(Base::of).collect(),
            Err(_) => Vec::new(),
        };
        if let Some((earliest, latest)) = self::window(archive, &summary.ranges, &held) {
            plan.earliest = Some(plan.earliest.map_or(earliest, |time| time.min(earliest)));
            plan.latest = Some(plan.latest.map_or(latest, |time| time.max(latest)));
        }
        plan.destinations.push(WalDestination {
            location: location.clone(),
            segments: summary.segments,
            bytes: summary.bytes,
            ranges: summary.ranges,
            gaps: summary.gaps,
            newest: summary.newest,
            error: None,
        });
        let Some((base, reason)) = &boundary else {
            continue;
        };
        let Some(keep) = SegmentName::parse(&base.info.start_wal, size) else {
            continue;
        };
        if unreadable {
            continue;
        }
        // Runs of deletable WAL files, per timeline.
        let mut runs: Vec<(u32, String, String, u64, u64)> = Vec::new();
        for file in &archive.files {
            let Some(kind) = names::wal_kind(&file.name) else {
                continue;
            };
            if kind == WalKind::History {
                continue;
            }
            let Some(segment) = SegmentName::parse(&file.name[..24], size) else {
                continue;
            };
            if segment.number >= keep.number {
                continue;
            }
            match runs.last_mut() {
                Some((timeline, _, last, count, bytes)) if *timeline == segment.timeline => {
                    last.clone_from(&file.name);
                    *count += 1;
                    *bytes += file.size;
                }
                _ => runs.push((
                    segment.timeline,
                    file.name.clone(),
                    file.name.clone(),
                    1,
                    file.size,
                )),
            }
        }
        for (_, first, last, count, bytes) in runs {
            let mut action = Action::new(ActionKind::Prune, &policy.name);
            action.destination = Some(location.clone());
            action.object = Some(format!("{first}..{last}"));
            action.format = Some(WAL_FORMAT.to_owned());
            action.reasons = vec![
                format!("WAL before {reason} (segment {})", base.info.start_wal),
                format!(
                    "{count} WAL file{}, {}",
                    if count == 1 { "" } else { "s" },
                    crate::format::human_bytes(bytes)
                ),
            ];
            prunes.push(action);
        }
    }
    if let Some((base, reason)) = &boundary {
        plan.keep_from = Some(base.info.start_wal.clone());
        plan.keep_reason = Some(reason.clone());
    }
    (plan, prunes)
}

/// `WAL: 120 segments (1.9 GiB), recoverable 2026-11-24 02:00 to 2026-12-01 17:40 UTC; gap …`.
pub fn line(plan: &WalPlan) -> String {
    let segments: u64 = plan
        .destinations
        .iter()
        .map(|destination| destination.segments)
        .max()
        .unwrap_or(0);
    let bytes: u64 = plan
        .destinations
        .iter()
        .map(|destination| destination.bytes)
        .max()
        .unwrap_or(0);
    let mut line = format!(
        "WAL: {segments} segment{} ({})",
        if segments == 1 { "" } else { "s" },
        crate::format::human_bytes(bytes)
    );
    match (plan.earliest, plan.latest) {
        (Some(earliest), Some(latest)) => line.push_str(&format!(
            ", recoverable {} to {}",
            earliest.format("%Y-%m-%d %H:%M:%S UTC"),
            latest.format("%Y-%m-%d %H:%M:%S UTC")
        )),
        _ => line.push_str(", nothing recoverable to a point in time yet"),
    }
    for destination in &plan.destinations {
        for gap in &destination.gaps {
            line.push_str(&format!(
                "; GAP on {}: missing {}",
                destination.location,
                gap.describe()
            ));
        }
        if let Some(error) = &destination.error {
            line.push_str(&format!(
                "; {} cannot be read: {error}",
                destination.location
            ));
        }
    }
    line
}
