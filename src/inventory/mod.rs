//! Actual state: what the destinations hold, read by listing sidecars.
//!
//! There is no other database: a backup exists if and only if its sidecar
//! exists and its data exists with the recorded size. Anything else in a
//! policy's folder is an orphan (left by a crash) or damage. Reading the
//! inventory changes nothing.

pub mod cache;
pub mod metadata;
pub mod names;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::destination::{self, Destination, Entry};
use crate::policy::spec::DestinationSpec;
pub use cache::SidecarCache;
pub use metadata::BackupMetadata;
pub use names::{
    base_id, claim_name, drill_record_name, drill_record_time, id_time, is_claim, is_id,
};

/// A nonce no other writer picks: 16 hex digits from this process's
/// random hash keys, the clock and a counter.
pub fn claim_nonce() -> String {
    use std::hash::BuildHasher as _;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let value = std::hash::RandomState::new().hash_one((
        std::process::id(),
        Utc::now().timestamp_nanos_opt(),
        count,
    ));
    format!("{value:016x}")
}

/// What every destination of every policy holds: the actual state that `plan` compares.
#[derive(Debug, Default)]
pub struct Inventory {
    pub policies: Vec<PolicyInventory>,
    /// When the newest passing restore drill of each policy started, from
    /// this host's state folder (the one piece of actual state not on the
    /// destinations); filled in by the observe step.
    pub restore_tests: std::collections::BTreeMap<String, DateTime<Utc>>,
}

/// What the destinations of one policy hold, in the policy's order.
#[derive(Debug)]
pub struct PolicyInventory {
    pub policy: String,
    pub destinations: Vec<DestinationInventory>,
}

/// One destination's listing for one policy, or why it could not be read.
#[derive(Debug)]
pub struct DestinationInventory {
    pub location: String,
    pub listing: Result<Listing, String>,
    /// Why deletes are refused here, when [`probe_deletes`] found out.
    pub delete_denied: Option<String>,
    /// The policy's WAL archive here (policies with base backups; filled in
    /// by the observe step), or why it could not be listed.
    pub wal: Option<Result<crate::wal::Archive, String>>,
}

impl Inventory {
    pub fn policy(&self, name: &str) -> Option<&PolicyInventory> {
        self.policies.iter().find(|policy| policy.policy == name)
    }
}

/// Reads every destination of every policy, through `cache` where given. A
/// destination that cannot be opened or listed is recorded as such; reading
/// never stops early.
pub fn gather(policies: &[crate::policy::Policy], cache: Option<&SidecarCache>) -> Inventory {
    // Every distinct destination is opened and listed once, for all the
    // policies that use it.
    let mut stores: Vec<(&DestinationSpec, Vec<&str>)> = Vec::new();
    for policy in policies {
        for spec in &policy.destinations {
            match stores.iter_mut().find(|(known, _)| *known == spec) {
                Some((_, users)) => users.push(&policy.name),
                None => stores.push((spec, vec![&policy.name])),
            }
        }
    }
    type Listed = Result<(Box<dyn Destination>, BTreeMap<String, Vec<Entry>>), String>;
    let listed: Vec<Listed> = parallel_map(&stores, POLICIES_IN_FLIGHT, |(spec, users)| {
        destination::open(spec)
            .and_then(|destination| {
                let entries = destination.list_many(users)?;
                Ok((destination, entries))
            })
            .map_err(|error| error.to_string())
    });
    let policies = parallel_map(policies, POLICIES_IN_FLIGHT, |policy| PolicyInventory {
        policy: policy.name.clone(),
        destinations: policy
            .destinations
            .iter()
            .map(|spec| {
                let store = stores.iter().position(|(known, _)| *known == spec);
                let shared = store.is_some_and(|index| stores[index].1.len() > 1);
                let listing = match store.map(|index| &listed[index]) {
                    Some(Ok((destination, entries))) => Ok(read_listed(
                        destination.as_ref(),
                        &policy.name,
                        entries.get(&policy.name).cloned().unwrap_or_default(),
                        cache,
                    )),
                    // One policy's folder (or a listing right scoped to
                    // each policy's prefix) must not fail the others: each
                    // is read on its own.
                    Some(Err(_)) if shared => destination::open(spec)
                        .and_then(|destination| read(destination.as_ref(), &policy.name, cache))
                        .map_err(|error| error.to_string()),
                    Some(Err(error)) => Err(error.clone()),
                    None => Err("not listed".to_owned()),
                };
                DestinationInventory {
                    location: destination::describe(spec),
                    listing,
                    delete_denied: None,
                    wal: None,
                }
            })
            .collect(),
    });
    Inventory {
        policies,
        restore_tests: std::collections::BTreeMap::new(),
    }
}

/// Asks each `(policy, location)` in `wanted` whether it allows deletes,
/// and records refusals in `inventory`. Whether any was refused.
pub fn probe_deletes(
    policies: &[crate::policy::Policy],
    inventory: &mut Inventory,
    wanted: &std::collections::BTreeSet<(String, String)>,
) -> bool {
    let mut refused = false;
    for found in &mut inventory.policies {
        let Some(policy) = policies.iter().find(|policy| policy.name == found.policy) else {
            continue;
        };
        for (spec, found) in policy.destinations.iter().zip(&mut found.destinations) {
            if !wanted.contains(&(policy.name.clone(), found.location.clone())) {
                continue;
            }
            if let Err(error) = destination::open(spec)
                .and_then(|destination| destination.probe_delete(&policy.name))
            {
                found.delete_denied = Some(error.to_string());
                refused = true;
            }
        }
    }
    refused
}

/// One backup on one destination.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupRecord {
    pub destination: String,
    pub metadata: BackupMetadata,
    pub state: RecordState,
}

/// Whether a sidecar's data is there as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordState {
    /// Data present with the recorded size (the checksum is checked by `verify`).
    Complete,
    /// The sidecar names data that is not there.
    MissingData,
    /// The data is there with another size.
    SizeMismatch { actual: u64 },
}

impl RecordState {
    pub fn describe(self) -> String {
        match self {
            RecordState::Complete => "complete".to_owned(),
            RecordState::MissingData => "missing data".to_owned(),
            RecordState::SizeMismatch { actual } => format!("size mismatch ({actual} bytes)"),
        }
    }
}

/// Something in a policy's folder that is not part of a complete backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub destination: String,
    pub name: String,
    pub size: u64,
    /// When it was last written (else the time in its id).
    pub modified: Option<DateTime<Utc>>,
    pub reason: &'static str,
}

/// What one destination holds for one policy.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Backups, oldest first (by `created_at`, then id).
    pub backups: Vec<BackupRecord>,
    pub orphans: Vec<Orphan>,
    /// Sidecars that could not be read, with the reason (a sidecar that is
    /// not a plain file, or whose data is not, counts as unreadable).
    pub unreadable: Vec<(String, String)>,
    /// Entries that are neither plain files nor sidecars (symbolic links,
    /// folders, FIFOs), with what they are: reported, never touched.
    pub unexpected: Vec<(String, String)>,
    /// When the passing restore drills whose evidence is here started.
    pub drills: Vec<DateTime<Utc>>,
}

/// Reads the inventory of `policy` on `destination`; sidecars whose listed
/// ETag and size are in `cache` are not fetched again.
pub fn read(
    destination: &dyn Destination,
    policy: &str,
    cache: Option<&SidecarCache>,
) -> Result<Listing, destination::Error> {
    let entries = destination.list(policy)?;
    Ok(read_listed(destination, policy, entries, cache))
}

/// [`read`], from a listing already made.
pub fn read_listed(
    destination: &dyn Destination,
    policy: &str,
    entries: Vec<Entry>,
    cache: Option<&SidecarCache>,
) -> Listing {
    let location = destination.location();
    let mut listing = Listing {
        drills: entries
            .iter()
            .filter_map(|entry| drill_record_time(&entry.name))
            .collect(),
        ..Listing::default()
    };
    let by_name: std::collections::HashMap<&str, &Entry> = entries
        .iter()
        .map(|entry| (entry.name.as_str(), entry))
        .collect();
    let mut sidecars: Vec<(&str, &Entry)> = Vec::new();
    for entry in &entries {
        let Some(id) = names::sidecar_id(&entry.name) else {
            continue;
        };
        match entry.irregular {
            // Never read through: reported, and its backup's data is never an orphan.
            Some(kind) => listing
                .unreadable
                .push((entry.name.clone(), format!("it is {kind}, not a file"))),
            None => sidecars.push((id, entry)),
        }
    }
    let cached = cache
        .map(|cache| cache.load(&location, policy))
        .unwrap_or_default();
    let hit = |id: &str, entry: &Entry| {
        let cached = cached.get(id)?;
        (entry.tag.as_deref() == Some(cached.tag.as_str()) && entry.size == cached.size)
            .then_some(cached)
    };
    let missed: Vec<&str> = sidecars
        .iter()
        .filter(|(id, entry)| hit(id, entry).is_none())
        .map(|(id, _)| *id)
        .collect();
    let mut fetched: BTreeMap<&str, Result<(Vec<u8>, BackupMetadata), String>> = missed
        .iter()
        .copied()
        .zip(read_sidecars(destination, policy, &missed))
        .collect();
    let mut keep: BTreeMap<String, cache::Cached> = BTreeMap::new();
    for (id, entry) in &sidecars {
        let sidecar = match hit(id, entry) {
            Some(cached) => {
                keep.insert((*id).to_owned(), cached.clone());
                parse_sidecar(cached.text.as_bytes(), policy, id)
            }
            None => fetched
                .remove(id)
                .unwrap_or_else(|| Err("not read".to_owned()))
                .map(|(bytes, metadata)| {
                    if let (Some(tag), Ok(text)) = (&entry.tag, String::from_utf8(bytes)) {
                        keep.insert(
                            (*id).to_owned(),
                            cache::Cached {
                                tag: tag.clone(),
                                size: entry.size,
                                text,
                            },
                        );
                    }
                    metadata
                }),
        };
        let metadata = match sidecar {
            Ok(metadata) => metadata,
            Err(reason) => {
                listing.unreadable.push((names::sidecar(id), reason));
                continue;
            }
        };
        // Every part must be there, a plain file of the recorded size; a
        // part that is not a file makes the sidecar unreadable.
        let irregular = metadata.objects().iter().find_map(|object| {
            let kind = by_name.get(object.name.as_str())?.irregular?;
            Some((object.name.as_str(), kind))
        });
        if let Some((name, kind)) = irregular {
            listing.unreadable.push((
                names::sidecar(id),
                format!("its data {name} is {kind}, not a file"),
            ));
            continue;
        }
        // The first part that is not as recorded says how.
        let state = metadata
            .objects()
            .iter()
            .map(|object| match by_name.get(object.name.as_str()) {
                None => RecordState::MissingData,
                Some(data) if data.size != object.size => {
                    RecordState::SizeMismatch { actual: data.size }
                }
                Some(_) => RecordState::Complete,
            })
            .find(|state| *state != RecordState::Complete)
            .unwrap_or(RecordState::Complete);
        listing.backups.push(BackupRecord {
            destination: location.clone(),
            metadata,
            state,
        });
    }
    for Entry {
        name,
        size,
        modified,
        irregular,
        ..
    } in &entries
    {
        let id = names::object_id(name);
        // Anything but a temporary beside a sidecar, in whatever form
        // (readable or not, a link even), belongs to that backup: its data,
        // its claim, or a copy someone unpacked next to it. It is never an orphan.
        let claimed = id.is_some_and(|id| by_name.contains_key(names::sidecar(id).as_str()));
        if let Some(kind) = irregular {
            // A sub-folder (`wal/`) is listed on its own.
            let known = names::is_sub_folder(name) && *kind == "a folder";
            if !(known || names::is_json(name) && id.is_some()) {
                listing.unexpected.push((
                    name.clone(),
                    format!("it is {kind}, not a file; left as is"),
                ));
            }
            continue;
        }
        let reason = if names::is_partial(name) {
            "partial data (a backup that did not finish)"
        } else if names::is_temporary(name) {
            "partial sidecar (a write that did not finish)"
        } else if names::is_json(name) || name.starts_with('.') || claimed {
            continue;
        } else if is_claim(name) {
            "claim of a backup id whose writer did not finish"
        } else if id.is_some() {
            "data without a sidecar (a backup that did not commit)"
        } else {
            continue;
        };
        listing.orphans.push(Orphan {
            destination: location.clone(),
            name: name.clone(),
            size: *size,
            modified: modified.or_else(|| names::object_id(name).and_then(id_time)),
            reason,
        });
    }
    if let Some(cache) = cache
        && keep != cached
    {
        cache.store(&location, policy, keep);
    }
    listing.backups.sort_by(|left, right| {
        (left.metadata.created_at, &left.metadata.id)
            .cmp(&(right.metadata.created_at, &right.metadata.id))
    });
    listing
        .orphans
        .sort_by(|left, right| left.name.cmp(&right.name));
    listing
}

/// Policies read at once.
const POLICIES_IN_FLIGHT: usize = 4;

/// Sidecars read at once: a store far away answers each GET in tens of
/// milliseconds, and thousands of backups would otherwise take minutes.
const SIDECARS_IN_FLIGHT: usize = 16;

/// What [`read_sidecar`] returns.
type Sidecar = Result<(Vec<u8>, BackupMetadata), String>;

/// Reads the sidecars of `ids`, several at a time; results in `ids`' order.
fn read_sidecars(destination: &dyn Destination, policy: &str, ids: &[&str]) -> Vec<Sidecar> {
    parallel_map(ids, SIDECARS_IN_FLIGHT, |id| {
        read_sidecar(destination, policy, id)
    })
}

/// `items.iter().map(work)` on up to `workers` threads; results in order.
fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<R>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..workers.min(items.len()) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(item) = items.get(index) else { break };
                    let result = work(item);
                    if let Ok(mut slot) = results[index].lock() {
                        *slot = Some(result);
                    }
                }
            });
        }
    });
    results
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .ok()
                .flatten()
                .expect("every item was worked on")
        })
        .collect()
}

/// Reads the sidecar `<id>.json` of `policy`: its bytes as stored and what
/// they say, which must be about this policy and this id.
pub fn read_sidecar(
    destination: &dyn Destination,
    policy: &str,
    id: &str,
) -> Result<(Vec<u8>, BackupMetadata), String> {
    let name = names::sidecar(id);
    let reader = destination
        .open(policy, &name)
        .map_err(|error| error.to_string())?;
    let bytes = crate::bounded::read_capped(reader, crate::bounded::RECORD_LIMIT)
        .map_err(|error| format!("cannot read {name}: {error}"))?;
    let metadata = parse_sidecar(&bytes, policy, id)?;
    Ok((bytes, metadata))
}

/// What a sidecar says, which must be about this policy and this id.
fn parse_sidecar(bytes: &[u8], policy: &str, id: &str) -> Result<BackupMetadata, String> {
    // Checked against its own seal: a damaged sidecar is no backup, here
    // as in `verify` and `restore`.
    let metadata = metadata::parse_checked(bytes)?;
    if metadata.policy != policy || metadata.id != id {
        return Err(format!(
            "sidecar names policy `{}` and id `{}`, not its own place",
            metadata.policy, metadata.id
        ));
    }
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_and_its_probe_are_neither_backups_nor_orphans() {
        let folder = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(folder.path().join("app")).unwrap();
        std::fs::write(folder.path().join("app").join(names::LEASE), b"{}").unwrap();
        let probe = format!("{}123-abc", names::LEASE_PROBE_PREFIX);
        std::fs::write(folder.path().join("app").join(probe), b"1").unwrap();
        let local = crate::destination::local::Local::new(folder.path().to_owned());
        let listing = read(&local, "app", None).unwrap();
        assert!(listing.backups.is_empty(), "{:?}", listing.backups);
        assert!(listing.orphans.is_empty(), "{:?}", listing.orphans);
        assert!(listing.unreadable.is_empty(), "{:?}", listing.unreadable);
        assert!(listing.unexpected.is_empty(), "{:?}", listing.unexpected);
    }
}
