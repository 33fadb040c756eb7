//! The fleet: what every host that runs a policy last did, kept beside the
//! policy's backups so that one listing of a bucket shows the whole fleet
//! (`backup status --all-hosts`) without reaching any host.
//!
//! After each `apply` or `run` that did something for a policy meant for a
//! fleet (one with `metadata.hosts`), the host writes its run record to `<policy>/hosts/<host>.json` on every
//! destination, replacing its previous one (the only object `backup`
//! overwrites: it is no backup, and each host writes only its own). The
//! record is the one the host keeps in its state folder, less the path of
//! its local log file.

use std::collections::BTreeMap;
use std::io::Read as _;

use crate::destination::{self, Destination};
use crate::inventory::names;
use crate::policy::Policy;
use crate::runlog::RunRecord;

/// The folder of `policy`'s host records, as destinations take it.
pub fn folder(policy: &str) -> String {
    names::sub_folder(policy, names::HOSTS_FOLDER)
}

/// Writes `record` as its host's last run of `policy` on every destination.
/// Returns the problems, one a line; never fails the run it reports.
pub fn publish(policy: &Policy, record: &RunRecord) -> Vec<String> {
    if !for_fleet(policy) {
        return Vec::new();
    }
    let mut published = record.clone();
    published.log = None;
    let bytes = match serde_json::to_vec_pretty(&published) {
        Ok(bytes) => bytes,
        Err(error) => return vec![format!("host record not written: {error}")],
    };
    let name = names::host_record(&published.host);
    let mut problems = Vec::new();
    for spec in &policy.destinations {
        let written = destination::open(spec)
            .and_then(|destination| destination.replace(&folder(&policy.name), &name, &bytes));
        if let Err(error) = written {
            tracing::warn!(policy = %policy.name, "Host record not written: {error}");
            problems.push(format!(
                "host record not written to {}: {error}",
                destination::describe(spec)
            ));
        }
    }
    problems
}

/// Whether hosts publish their runs of `policy`: when `metadata.hosts`
/// names who runs it. A policy without is one host's, whose own state
/// folder has its runs.
pub fn for_fleet(policy: &Policy) -> bool {
    !policy.hosts.is_empty()
}

/// Every host's last run of `policy` on `destination`, by host name.
/// Records that do not parse are skipped (another version may write more).
/// A fleet has many hosts: records are read [`READERS`] at a time.
pub fn read(
    destination: &dyn Destination,
    policy: &str,
) -> Result<BTreeMap<String, RunRecord>, destination::Error> {
    let folder = folder(policy);
    let entries: Vec<destination::Entry> = destination
        .list(&folder)?
        .into_iter()
        .filter(|entry| {
            names::host_record_host(&entry.name).is_some()
                && entry.irregular.is_none()
                && entry.size <= MAX_RECORD_BYTES
        })
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let found = std::sync::Mutex::new(BTreeMap::new());
    std::thread::scope(|scope| {
        for _ in 0..READERS.min(entries.len()) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(entry) = entries.get(index) else {
                        break;
                    };
                    if let Some((host, record)) = read_one(destination, &folder, policy, entry)
                        && let Ok(mut found) = found.lock()
                    {
                        found.insert(host, record);
                    }
                }
            });
        }
    });
    Ok(found.into_inner().unwrap_or_default())
}

/// Host records read at once by [`read`].
const READERS: usize = 8;

/// One host record, if it reads and is what its name says.
fn read_one(
    destination: &dyn Destination,
    folder: &str,
    policy: &str,
    entry: &destination::Entry,
) -> Option<(String, RunRecord)> {
    let host = names::host_record_host(&entry.name)?;
    let mut bytes = Vec::new();
    destination
        .open(folder, &entry.name)
        .ok()?
        .take(MAX_RECORD_BYTES)
        .read_to_end(&mut bytes)
        .ok()?;
    let record: RunRecord = serde_json::from_slice(&bytes).ok()?;
    (record.policy == policy && record.host == host).then(|| (host.to_owned(), record))
}

/// A host record is a few hundred bytes; anything much larger is no record.
const MAX_RECORD_BYTES: u64 = 64 * 1024;
