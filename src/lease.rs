//! The lease: one writer at a time per policy on an S3 bucket many hosts share.
//!
//! A policy with `spec.lease` keeps `<prefix><policy>/lease.json` on its first
//! S3 destination. A writer takes it with a create-only PUT (`If-None-Match:
//! *`), renews it from a background thread every third of its ttl with a PUT
//! conditional on the ETag it got back (`If-Match`), and deletes it when done.
//! A lease is expired when the store's own clock says so (its `Date` answer
//! minus the object's `Last-Modified` is more than the ttl), never the local
//! clock: a writer whose clock is off cannot steal a live lease. An expired
//! lease is taken over with `If-Match` on its ETag and the next epoch.
//!
//! Fencing: the epoch and holder go into every sidecar the holder writes, and
//! [`fence`] re-reads the lease (same ETag, not lost, renewed in time by the
//! local monotonic clock) before each sidecar is committed and before each
//! batch of deletes, so a writer that lost its lease (killed and resumed, cut
//! off, or one of two that raced on a store whose create-only check is not
//! atomic) stops before it makes anything visible or removes anything.
//!
//! Before the first lease on a store, a probe checks that the store honours
//! conditional writes (two create-only PUTs of one key: the second must be
//! refused; so must a PUT with `If-Match` on a wrong ETag); stores that ignore them (Garage 2.5) cannot hold a lease and
//! are refused. A pass is remembered in the state folder.
//!
//! This module decides nothing about backups; it only holds, checks and
//! reports the lease. It never reads the local clock to judge expiry.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::destination::s3::{Condition, S3, Written};
use crate::destination::{self, Destination as _};
use crate::inventory::names;
use crate::policy::Policy;
use crate::policy::spec::DestinationSpec;
use crate::state::StateDir;

/// What went wrong with a lease.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] destination::Error),
    #[error(
        "{location} {what}: it ignores conditional writes, so it cannot hold the lease of policy `{policy}`; remove `spec.lease` (and let one host write the policy), or use a store that honours conditional writes (AWS S3, MinIO, Cloudflare R2)"
    )]
    Unsupported {
        location: String,
        policy: String,
        /// What the store did that it should have refused.
        what: &'static str,
    },
    #[error(
        "the lease of policy `{policy}` on {location} was lost ({reason}); nothing more is written"
    )]
    Lost {
        policy: String,
        location: String,
        reason: String,
    },
    #[error("policy `{policy}` has `spec.lease` but no S3 destination to keep it on")]
    NoStore { policy: String },
    #[error("cannot remember the probe of {location} in `{path}`: {message}")]
    Cache {
        location: String,
        path: std::path::PathBuf,
        message: String,
    },
}

/// The lease object's content.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Body {
    /// The holding host's name (`--host`, else the kernel's host name).
    holder: String,
    /// Grows by one at each takeover; recorded in the holder's sidecars.
    epoch: u64,
    /// How long the lease lasts without a renewal, in seconds.
    ttl_seconds: f64,
    pid: u32,
    /// When it was taken and last renewed, by the holder's clock (for people only).
    acquired: DateTime<Utc>,
    renewed: DateTime<Utc>,
    /// Renewals so far: every write of the lease has new content, so a new ETag.
    renewals: u64,
}

/// What a sidecar records of the lease its writer held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "LeaseStamp")]
pub struct Stamp {
    /// The lease's epoch: grows by one each time another writer takes it over.
    pub epoch: u64,
    /// The host that held it.
    pub holder: String,
}

/// A policy's lease as read, without taking it (fleet status).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeaseInfo {
    pub holder: String,
    pub epoch: u64,
    /// When it expires unless renewed, by the store's clock.
    pub expires_at: DateTime<Utc>,
    /// Whether the store's clock says it has expired already.
    pub expired: bool,
}

/// The outcome of [`acquire`].
pub enum Acquired {
    /// This process holds it, until [`Lease::release`] (or drop).
    Held(Lease),
    /// Another writer holds a live lease.
    Busy(LeaseInfo),
}

/// The S3 destination a policy's lease lives on: its first.
pub fn store_of(policy: &Policy) -> Option<&crate::policy::spec::S3Spec> {
    policy.destinations.iter().find_map(|spec| match spec {
        DestinationSpec::S3(s3) => Some(s3),
        DestinationSpec::Local(_) => None,
    })
}

/// How long before the ttl is up, by the local monotonic clock since the last
/// renewal was sent, a holder counts its lease as lost: room for the two
/// clocks' rates and the request's own time.
fn margin(ttl: Duration) -> Duration {
    (ttl / 10).max(Duration::from_millis(200))
}

fn parse(bytes: &[u8]) -> Option<Body> {
    serde_json::from_slice(bytes).ok()
}

/// Reads `policy`'s lease on `store` without taking it: `None` when there is none.
pub fn peek(store: &S3, policy: &str) -> Result<Option<LeaseInfo>, Error> {
    Ok(store
        .fetch(policy, names::LEASE)?
        .map(|fetched| info_of(&fetched)))
}

/// Reads the lease of `policy` on its first S3 destination without taking
/// it: `None` when there is none (or the policy has no S3 destination).
pub fn peek_policy(policy: &Policy) -> Result<Option<LeaseInfo>, Error> {
    match store_of(policy) {
        Some(spec) => peek(&S3::new(spec)?, &policy.name),
        None => Ok(None),
    }
}

/// What a fetched lease says, judged by the store's clock.
fn info_of(fetched: &destination::s3::Fetched) -> LeaseInfo {
    let body = parse(&fetched.bytes);
    // A lease that cannot be read lasts as long as any may.
    let ttl = body
        .as_ref()
        .map_or(crate::policy::units::LEASE_TTL_MAX.as_secs_f64(), |body| {
            body.ttl_seconds
        });
    let ttl = chrono::Duration::milliseconds((ttl * 1000.0) as i64);
    // A store that gives no times: live for its ttl from whenever it says
    // the lease was written.
    let written = fetched
        .last_modified
        .or(fetched.store_date)
        .unwrap_or_else(Utc::now);
    let now = fetched.store_date.unwrap_or(written);
    LeaseInfo {
        holder: body.as_ref().map_or_else(
            || "an unreadable lease".to_owned(),
            |body| body.holder.clone(),
        ),
        epoch: body.as_ref().map_or(0, |body| body.epoch),
        expires_at: written + ttl,
        expired: now - written > ttl,
    }
}

/// Checks once per store (endpoint and bucket) that it honours conditional
/// PUTs: the second of two `If-None-Match: *` PUTs of one key must be
/// refused, and so must a PUT with `If-Match` on an ETag it does not have.
/// A pass is remembered in the state folder; a failure is not, so a store
/// that is fixed passes the next time.
pub fn probe(store: &S3, state: &StateDir, policy: &str) -> Result<(), Error> {
    let cache_error = |path: &std::path::Path, message: String| Error::Cache {
        location: store.location(),
        path: path.to_owned(),
        message,
    };
    let folder = state
        .ensure("lease-probes")
        .map_err(|error| cache_error(state.path(), error.to_string()))?;
    let path = folder.join(format!("{}.ok", store.store_digest()));
    if path.exists() {
        return Ok(());
    }
    let key = format!(
        "{}{}-{}",
        names::LEASE_PROBE_PREFIX,
        std::process::id(),
        nonce()
    );
    let first = store.put_if(policy, &key, b"1", Condition::Absent)?;
    let second = store.put_if(policy, &key, b"2", Condition::Absent);
    // Renewals and takeovers rest on `If-Match` as creates rest on `If-None-Match`.
    let mismatched = store.put_if(policy, &key, b"3", Condition::Matches("\"0\""));
    let removed = store.remove(policy, &key);
    let (second, mismatched) = (second?, mismatched?);
    removed?;
    let what = if !matches!(first, Written::Done(_)) {
        Some("refused to create a new key with `If-None-Match: *`")
    } else if matches!(second, Written::Done(_)) {
        Some("accepted a second create-only PUT (`If-None-Match: *`) of one key")
    } else if matches!(mismatched, Written::Done(_)) {
        Some("accepted a PUT with `If-Match` on an ETag the object does not have")
    } else {
        None
    };
    if let Some(what) = what {
        return Err(Error::Unsupported {
            location: store.location(),
            policy: policy.to_owned(),
            what,
        });
    }
    std::fs::write(&path, format!("{}\n", store.location()))
        .map_err(|error| cache_error(&path, error.to_string()))
}

/// A few random hex digits, for names no other writer picks.
fn nonce() -> String {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    format!("{:016x}", hasher.finish())
}

/// Takes `policy`'s lease on `store` for `ttl` as `holder` (this host's
/// name, [`crate::engine::host_name`]), after the probe, or says who holds it.
pub fn acquire(
    store: &S3,
    state: &StateDir,
    policy: &str,
    ttl: Duration,
    holder: &str,
) -> Result<Acquired, Error> {
    probe(store, state, policy)?;
    let now = Utc::now();
    let mut body = Body {
        holder: holder.to_owned(),
        epoch: 1,
        ttl_seconds: ttl.as_secs_f64(),
        pid: std::process::id(),
        acquired: now,
        renewed: now,
        renewals: 0,
    };
    // Twice at most: a lease deleted between the refused create and the read is created again.
    for _ in 0..2 {
        let sent = Instant::now();
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        if let Written::Done(e_tag) =
            store.put_if(policy, names::LEASE, &bytes, Condition::Absent)?
        {
            return Ok(Acquired::Held(Lease::hold(
                store, policy, ttl, body, e_tag, sent, None,
            )));
        }
        let Some(fetched) = store.fetch(policy, names::LEASE)? else {
            continue;
        };
        let info = info_of(&fetched);
        if !info.expired {
            return Ok(Acquired::Busy(info));
        }
        let Some(e_tag) = fetched.e_tag.as_deref() else {
            return Ok(Acquired::Busy(info));
        };
        body.epoch = info.epoch + 1;
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let sent = Instant::now();
        match store.put_if(policy, names::LEASE, &bytes, Condition::Matches(e_tag))? {
            Written::Done(e_tag) => {
                tracing::info!(policy, epoch = body.epoch, previous = %info.holder, "Expired lease taken over.");
                return Ok(Acquired::Held(Lease::hold(
                    store,
                    policy,
                    ttl,
                    body,
                    e_tag,
                    sent,
                    Some(info),
                )));
            }
            // Another writer took it over first: it is theirs.
            Written::PreconditionFailed => {
                return Ok(match peek(store, policy)? {
                    Some(info) => Acquired::Busy(info),
                    None => Acquired::Busy(info),
                });
            }
        }
    }
    Err(Error::Lost {
        policy: policy.to_owned(),
        location: store.location(),
        reason: "the lease kept disappearing while it was being taken".to_owned(),
    })
}

/// A held lease. Dropping it releases it.
pub struct Lease {
    shared: Arc<Shared>,
    renewer: Option<std::thread::JoinHandle<()>>,
    /// The expired lease this one took over, if it did.
    took_over: Option<LeaseInfo>,
    released: bool,
}

struct Shared {
    store: S3,
    policy: String,
    ttl: Duration,
    state: Mutex<Held>,
    stop: Condvar,
}

struct Held {
    body: Body,
    e_tag: Option<String>,
    /// Until when, by the local monotonic clock, the lease is surely still ours.
    valid_until: Instant,
    lost: Option<String>,
    stopped: bool,
}

/// The leases this process holds, by policy: what [`fence`] checks.
fn registry() -> &'static Mutex<HashMap<String, Arc<Shared>>> {
    static HELD: OnceLock<Mutex<HashMap<String, Arc<Shared>>>> = OnceLock::new();
    HELD.get_or_init(Default::default)
}

impl Lease {
    fn hold(
        store: &S3,
        policy: &str,
        ttl: Duration,
        body: Body,
        e_tag: Option<String>,
        sent: Instant,
        took_over: Option<LeaseInfo>,
    ) -> Lease {
        let shared = Arc::new(Shared {
            store: store.clone(),
            policy: policy.to_owned(),
            ttl,
            state: Mutex::new(Held {
                body,
                e_tag,
                valid_until: sent + ttl.saturating_sub(margin(ttl)),
                lost: None,
                stopped: false,
            }),
            stop: Condvar::new(),
        });
        registry()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(policy.to_owned(), Arc::clone(&shared));
        let renewing = Arc::clone(&shared);
        let renewer = std::thread::Builder::new()
            .name("backup-lease".to_owned())
            .spawn(move || renewing.renew_until_stopped())
            .ok();
        Lease {
            shared,
            renewer,
            took_over,
            released: false,
        }
    }

    /// The policy it is the lease of.
    pub fn policy(&self) -> &str {
        &self.shared.policy
    }

    /// The expired lease this one took over (its holder and epoch), if it did.
    pub fn took_over(&self) -> Option<&LeaseInfo> {
        self.took_over.as_ref()
    }

    /// Stops renewing and leaves the lease in the store to expire, as a
    /// holder that crashed would (drills and tests).
    pub fn abandon(mut self) {
        self.released = true;
        self.stop_renewing();
    }

    /// What the sidecars written under this lease record.
    pub fn stamp(&self) -> Stamp {
        self.shared.stamp()
    }

    /// Fails when the lease is no longer this writer's (see [`fence`]).
    pub fn check(&self) -> Result<Stamp, Error> {
        self.shared.check()
    }

    /// Stops renewing and deletes the lease (only while it is still ours).
    pub fn release(mut self) -> Result<(), Error> {
        self.stop_and_delete()
    }

    fn stop_renewing(&mut self) {
        registry()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.shared.policy);
        self.shared.lock().stopped = true;
        self.shared.stop.notify_all();
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
    }

    fn stop_and_delete(&mut self) -> Result<(), Error> {
        self.released = true;
        self.stop_renewing();
        let held = self.shared.lock();
        if held.lost.is_some() {
            return Ok(());
        }
        let Some(e_tag) = held.e_tag.clone() else {
            return Ok(());
        };
        drop(held);
        Ok(self
            .shared
            .store
            .delete_if_tag(&self.shared.policy, names::LEASE, &e_tag)?)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.released
            && let Err(error) = self.stop_and_delete()
        {
            tracing::warn!(policy = %self.shared.policy, "The lease could not be released (it expires by itself): {error}");
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stamp(&self) -> Stamp {
        let held = self.lock();
        Stamp {
            epoch: held.body.epoch,
            holder: held.body.holder.clone(),
        }
    }

    fn lost(&self, reason: String) -> Error {
        Error::Lost {
            policy: self.policy.clone(),
            location: self.store.location(),
            reason,
        }
    }

    /// The lease is still ours: not lost, renewed in time, and the object
    /// in the store is the one we last wrote (same ETag).
    fn check(&self) -> Result<Stamp, Error> {
        let mut held = self.lock();
        if let Some(reason) = &held.lost {
            return Err(self.lost(reason.clone()));
        }
        if Instant::now() > held.valid_until {
            let reason = "not renewed in time".to_owned();
            held.lost = Some(reason.clone());
            return Err(self.lost(reason));
        }
        let found = self.store.tag_of(&self.policy, names::LEASE)?;
        let ours = match (&found, &held.e_tag) {
            (Some(found), Some(ours)) => destination::s3::same_e_tag(found, ours),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if !ours {
            let reason = match found {
                None => "it was deleted".to_owned(),
                Some(_) => "another writer holds it now".to_owned(),
            };
            held.lost = Some(reason.clone());
            return Err(self.lost(reason));
        }
        Ok(Stamp {
            epoch: held.body.epoch,
            holder: held.body.holder.clone(),
        })
    }

    /// Renews every third of the ttl until stopped or lost.
    fn renew_until_stopped(&self) {
        let period = self.ttl / 3;
        let mut held = self.lock();
        loop {
            let (next, _) = self
                .stop
                .wait_timeout(held, period)
                .unwrap_or_else(PoisonError::into_inner);
            held = next;
            if held.stopped || held.lost.is_some() {
                return;
            }
            if Instant::now() > held.valid_until {
                held.lost = Some("not renewed in time".to_owned());
                return;
            }
            let Some(e_tag) = held.e_tag.clone() else {
                return;
            };
            held.body.renewed = Utc::now();
            held.body.renewals += 1;
            let bytes = serde_json::to_vec(&held.body).unwrap_or_default();
            let sent = Instant::now();
            match self.store.put_if(
                &self.policy,
                names::LEASE,
                &bytes,
                Condition::Matches(&e_tag),
            ) {
                Ok(Written::Done(e_tag)) => {
                    held.e_tag = e_tag;
                    held.valid_until = sent + self.ttl.saturating_sub(margin(self.ttl));
                }
                Ok(Written::PreconditionFailed) => {
                    tracing::warn!(policy = %self.policy, "The lease was taken over by another writer.");
                    held.lost = Some("another writer took it over".to_owned());
                    return;
                }
                // Tried again at the next period, while there is time.
                Err(error) => {
                    tracing::warn!(policy = %self.policy, "The lease could not be renewed: {error}");
                }
            }
        }
    }
}

/// Before a sidecar is committed or a batch of deletes starts: when this
/// process holds `policy`'s lease, checks it is still ours and gives what
/// the sidecar records; `Ok(None)` when the policy has no lease here.
pub fn fence(policy: &str) -> Result<Option<Stamp>, Error> {
    let shared = registry()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(policy)
        .cloned();
    shared.map(|shared| shared.check()).transpose()
}

/// The stamp of `policy`'s lease, if this process holds it (no request).
pub fn stamp(policy: &str) -> Option<Stamp> {
    registry()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(policy)
        .map(|shared| shared.stamp())
}

/// The leases of a run's policies: taken, held by another writer, or failed.
#[derive(Default)]
pub struct Taken {
    pub held: Vec<Lease>,
    /// Policies another writer holds, with what their lease says.
    pub busy: Vec<(String, LeaseInfo)>,
    /// Policies whose lease could not be taken, and why.
    pub failed: Vec<(String, Error)>,
}

impl Taken {
    /// What people should hear of it, one line each, errors marked `true`:
    /// takeovers, policies another host's lease skips, leases that could
    /// not be taken.
    pub fn report(&self) -> Vec<(bool, String)> {
        let mut lines: Vec<(bool, String)> = self
            .held
            .iter()
            .filter_map(describe_takeover)
            .map(|line| (false, line))
            .collect();
        lines.extend(self.busy.iter().map(|(name, info)| {
            (
                false,
                format!("Skipped policy `{name}`: its lease is {}.", describe(info)),
            )
        }));
        lines.extend(
            self.failed
                .iter()
                .map(|(name, error)| (true, format!("policy `{name}`: {error}"))),
        );
        lines
    }

    /// Releases every lease taken; the problems of those that could not be
    /// deleted (they expire by themselves).
    pub fn release(self) -> Vec<String> {
        self.held
            .into_iter()
            .filter_map(|lease| {
                let policy = lease.policy().to_owned();
                lease.release().err().map(|error| {
                    format!("the lease of `{policy}` could not be released (it expires by itself): {error}")
                })
            })
            .collect()
    }

    /// Whether `policy` may be written by this run.
    pub fn allows(&self, policy: &str) -> bool {
        !self.busy.iter().any(|(name, _)| name == policy)
            && !self.failed.iter().any(|(name, _)| name == policy)
    }
}

/// Takes the lease of every policy in `policies` that has `spec.lease`.
pub fn take_all(state: &StateDir, policies: &[Policy]) -> Taken {
    let mut taken = Taken::default();
    for policy in policies {
        let Some(ttl) = policy.lease else {
            continue;
        };
        let result = store_of(policy)
            .ok_or_else(|| Error::NoStore {
                policy: policy.name.clone(),
            })
            .and_then(|spec| Ok(S3::new(spec)?))
            .and_then(|store| {
                acquire(
                    &store,
                    state,
                    &policy.name,
                    ttl,
                    &crate::engine::host_name(),
                )
            });
        match result {
            Ok(Acquired::Held(lease)) => taken.held.push(lease),
            Ok(Acquired::Busy(info)) => taken.busy.push((policy.name.clone(), info)),
            Err(error) => taken.failed.push((policy.name.clone(), error)),
        }
    }
    taken
}

/// One line for people when a run took over an expired lease:
/// `Took over the expired lease of `app` from db1 (epoch 8).`
fn describe_takeover(lease: &Lease) -> Option<String> {
    let info = lease.took_over()?;
    Some(format!(
        "Took over the expired lease of `{}` from {} (epoch {}).",
        lease.policy(),
        info.holder,
        info.epoch + 1
    ))
}

/// One line for people: `held by db2 (epoch 7) until ~20:41:07 UTC by the store's clock`.
pub fn describe(info: &LeaseInfo) -> String {
    format!(
        "held by {} (epoch {}) until ~{} by the store's clock",
        info.holder,
        info.epoch,
        info.expires_at.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetched(ttl: f64, written: &str, store_now: &str) -> destination::s3::Fetched {
        let body = Body {
            holder: "db2".to_owned(),
            epoch: 7,
            ttl_seconds: ttl,
            pid: 1,
            // The holder's own clock, far off: never used to judge expiry.
            acquired: "2030-01-01T00:00:00Z".parse().unwrap(),
            renewed: "2030-01-01T00:00:00Z".parse().unwrap(),
            renewals: 3,
        };
        destination::s3::Fetched {
            bytes: serde_json::to_vec(&body).unwrap(),
            e_tag: Some("\"a\"".to_owned()),
            last_modified: Some(written.parse().unwrap()),
            store_date: Some(store_now.parse().unwrap()),
        }
    }

    #[test]
    fn expiry_is_judged_by_the_store_clock_alone() {
        let live = info_of(&fetched(
            120.0,
            "2026-12-01T10:00:00Z",
            "2026-12-01T10:02:00Z",
        ));
        assert!(!live.expired);
        assert_eq!((live.holder.as_str(), live.epoch), ("db2", 7));
        assert_eq!(
            live.expires_at,
            "2026-12-01T10:02:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let dead = info_of(&fetched(
            120.0,
            "2026-12-01T10:00:00Z",
            "2026-12-01T10:02:01Z",
        ));
        assert!(dead.expired);
    }

    #[test]
    fn an_unreadable_lease_lasts_as_long_as_any_may() {
        let mut garbled = fetched(2.0, "2026-12-01T10:00:00Z", "2026-12-01T10:30:00Z");
        garbled.bytes = b"{\"holder\":".to_vec();
        assert!(!info_of(&garbled).expired);
        garbled.store_date = Some("2026-12-01T11:00:01Z".parse().unwrap());
        assert!(info_of(&garbled).expired);
    }
}
