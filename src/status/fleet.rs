//! `backup status --all-hosts`: the fleet as the destinations show it. Per
//! policy, whichever hosts run it: the policy's own health (freshness,
//! retention, integrity, as `status` judges it), who holds its lease, and
//! per host its last run (from `<policy>/hosts/<host>.json`, see
//! [`crate::fleet`]) and the backups it took (the sidecars' `host`).
//!
//! A host is judged on what only it can tell: its last run failed
//! (warning), or it is named in `metadata.hosts` and has never reported
//! (warning). Freshness belongs to the policy: when several hosts take
//! turns, it does not matter which one took the newest backup.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Health, PolicyHealth};
use crate::inventory::PolicyInventory;
use crate::policy::Policy;
use crate::policy::hosts::HostSelector;
use crate::runlog::RunRecord;

/// The fleet part of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fleet {
    pub policies: Vec<PolicyFleet>,
    /// Every host seen or named, sorted.
    pub hosts: Vec<String>,
}

/// One policy across the fleet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyFleet {
    pub policy: String,
    /// The worst of the policy's own health and its hosts'.
    pub state: Health,
    /// `metadata.hosts` as written; empty: every host.
    pub selectors: Vec<String>,
    /// Whether every readable destination keeps what retention asks for.
    pub retention_compliant: bool,
    pub newest_backup: Option<String>,
    pub newest_created_at: Option<DateTime<Utc>>,
    /// The host that took the newest backup.
    pub newest_host: Option<String>,
    /// The lease (`spec.lease`), as the store holds it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseView>,
    pub hosts: Vec<HostFleet>,
    /// Destinations whose host records could not be read.
    pub unreadable: Vec<String>,
}

/// Who holds a policy's lease.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeaseView {
    pub holder: Option<String>,
    pub epoch: Option<u64>,
    pub expires_at: Option<DateTime<Utc>>,
    pub expired: bool,
    /// Why the lease could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One host's part in one policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostFleet {
    pub host: String,
    pub state: Health,
    /// Whether `metadata.hosts` names it by name or glob (label selectors
    /// need the host's labels, which only the settings hold: see `selected_by_label`).
    pub selected: bool,
    pub last_run: Option<RunRecord>,
    /// Backups on the policy's destinations taken by this host.
    pub backups: usize,
    pub newest_backup: Option<String>,
    pub newest_created_at: Option<DateTime<Utc>>,
    pub holds_lease: bool,
    pub findings: Vec<String>,
}

/// Per host, the ids of the backups it took and when each was created.
pub type Taken = BTreeMap<String, BTreeMap<String, DateTime<Utc>>>;

/// The backups of a policy by the host that took them, each id once
/// whatever the number of copies; pre-restore safety backups left out.
pub fn taken(inventory: &PolicyInventory) -> Taken {
    let mut taken: Taken = BTreeMap::new();
    for destination in &inventory.destinations {
        if let Ok(listing) = &destination.listing {
            for record in &listing.backups {
                if record.metadata.is_pre_restore() {
                    continue;
                }
                taken
                    .entry(record.metadata.host.clone())
                    .or_default()
                    .insert(record.metadata.id.clone(), record.metadata.created_at);
            }
        }
    }
    taken
}

/// What the fleet view of one policy is judged from.
pub struct Input<'a> {
    pub policy: &'a Policy,
    pub health: &'a PolicyHealth,
    /// The backups each host took ([`taken`]).
    pub taken: Taken,
    /// Per destination location: the host records, or why they could not be read.
    pub records: Vec<super::gather::HostRecords>,
    pub lease: Option<LeaseView>,
    /// The labels of each host, from the settings (for label selectors).
    pub labels: &'a dyn Fn(&str) -> BTreeMap<String, String>,
}

/// Judges one policy across the fleet.
pub fn evaluate(input: Input) -> PolicyFleet {
    let Input {
        policy,
        health,
        taken,
        records,
        lease,
        labels,
    } = input;
    // The newest record of each host over every destination.
    let mut last: BTreeMap<String, RunRecord> = BTreeMap::new();
    let mut unreadable = Vec::new();
    for (location, found) in records {
        match found {
            Ok(found) => {
                for (host, record) in found {
                    let newer = last
                        .get(&host)
                        .is_none_or(|known| record.finished_at > known.finished_at);
                    if newer {
                        last.insert(host, record);
                    }
                }
            }
            Err(error) => unreadable.push(format!("{location}: {error}")),
        }
    }
    let named: BTreeSet<String> = policy
        .hosts
        .iter()
        .filter_map(HostSelector::exact_name)
        .map(str::to_owned)
        .collect();
    let holder = lease
        .as_ref()
        .filter(|lease| !lease.expired)
        .and_then(|lease| lease.holder.clone());
    let everyone: BTreeSet<String> = last
        .keys()
        .chain(taken.keys())
        .chain(named.iter())
        .chain(holder.iter())
        .cloned()
        .collect();
    let mut hosts = Vec::new();
    for host in everyone {
        let selected = crate::policy::hosts::selects(&policy.hosts, &host, &labels(&host));
        let backups = taken.get(&host);
        let newest = backups.and_then(|backups| {
            backups
                .iter()
                .max_by_key(|(id, created)| (**created, (*id).clone()))
                .map(|(id, created)| (id.clone(), *created))
        });
        let last_run = last.get(&host).cloned();
        let mut state = Health::Ok;
        let mut findings = Vec::new();
        match &last_run {
            Some(run) if !run.ok() => {
                state = Health::Warning;
                findings.push(format!(
                    "last {} failed: {}",
                    run.kind.word(),
                    run.error.as_deref().unwrap_or("no reason recorded")
                ));
            }
            None if named.contains(&host) && backups.is_none() => {
                state = Health::Warning;
                findings.push("named in metadata.hosts but has never reported".to_owned());
            }
            _ => {}
        }
        hosts.push(HostFleet {
            holds_lease: holder.as_deref() == Some(host.as_str()),
            host,
            state,
            selected,
            last_run,
            backups: backups.map_or(0, BTreeMap::len),
            newest_backup: newest.as_ref().map(|(id, _)| id.clone()),
            newest_created_at: newest.map(|(_, created)| created),
            findings,
        });
    }
    let newest_host = health.freshness.newest_backup.as_ref().and_then(|id| {
        hosts
            .iter()
            .find(|host| {
                taken
                    .get(&host.host)
                    .is_some_and(|ids| ids.contains_key(id))
            })
            .map(|host| host.host.clone())
    });
    let state = hosts
        .iter()
        .map(|host| host.state)
        .chain([health.state])
        .chain((!unreadable.is_empty()).then_some(Health::Warning))
        .max()
        .unwrap_or(Health::Ok);
    PolicyFleet {
        policy: policy.name.clone(),
        state,
        selectors: policy.hosts.iter().map(ToString::to_string).collect(),
        retention_compliant: health
            .destinations
            .iter()
            .filter(|destination| destination.readable)
            .all(|destination| destination.retention_compliant),
        newest_backup: health.freshness.newest_backup.clone(),
        newest_created_at: health.freshness.newest_created_at,
        newest_host,
        lease,
        hosts,
        unreadable,
    }
}

/// The fleet from each policy's view, hosts listed once.
pub fn fleet(policies: Vec<PolicyFleet>) -> Fleet {
    let hosts: BTreeSet<String> = policies
        .iter()
        .flat_map(|policy| policy.hosts.iter().map(|host| host.host.clone()))
        .collect();
    Fleet {
        policies,
        hosts: hosts.into_iter().collect(),
    }
}

/// The fleet as text: per policy a line, then one line per host.
pub fn render(fleet: &Fleet, now: DateTime<Utc>, color: bool) -> String {
    use crate::format::human_ago;
    let mut text = format!(
        "Fleet: {} polic{}, {} host{}.\n",
        fleet.policies.len(),
        if fleet.policies.len() == 1 {
            "y"
        } else {
            "ies"
        },
        fleet.hosts.len(),
        if fleet.hosts.len() == 1 { "" } else { "s" }
    );
    for policy in &fleet.policies {
        let newest = match (&policy.newest_backup, policy.newest_created_at) {
            (Some(id), Some(created)) => format!(
                "newest {id} ({}{})",
                human_ago(now - created),
                policy
                    .newest_host
                    .as_ref()
                    .map(|host| format!(", by {host}"))
                    .unwrap_or_default()
            ),
            _ => "no backup yet".to_owned(),
        };
        let lease = match &policy.lease {
            None => String::new(),
            Some(LeaseView {
                error: Some(error), ..
            }) => format!("; lease unreadable: {error}"),
            Some(LeaseView {
                holder: Some(holder),
                epoch,
                expires_at,
                expired: false,
                ..
            }) => format!(
                "; lease held by {holder}{}{}",
                epoch
                    .map(|epoch| format!(" (epoch {epoch})"))
                    .unwrap_or_default(),
                expires_at
                    .map(|at| format!(", expires {}", at.format("%Y-%m-%d %H:%M:%S UTC")))
                    .unwrap_or_default()
            ),
            Some(_) => "; lease free".to_owned(),
        };
        text.push_str(&format!(
            "\n{} {}: {newest}; retention {}; hosts {}{lease}\n",
            super::text::word(policy.state, color),
            policy.policy,
            if policy.retention_compliant {
                "kept"
            } else {
                "NOT kept"
            },
            if policy.selectors.is_empty() {
                "all".to_owned()
            } else {
                policy.selectors.join(", ")
            },
        ));
        for problem in &policy.unreadable {
            text.push_str(&format!("    host records unreadable: {problem}\n"));
        }
        for host in &policy.hosts {
            let run = match &host.last_run {
                Some(run) if run.ok() => format!(
                    "last {} ok {}",
                    run.kind.word(),
                    human_ago(now - run.finished_at)
                ),
                Some(run) => format!(
                    "last {} failed {}: {}",
                    run.kind.word(),
                    human_ago(now - run.finished_at),
                    run.error.as_deref().unwrap_or("no reason recorded")
                ),
                None if host.state > Health::Ok => {
                    "never reported, though metadata.hosts names it".to_owned()
                }
                None => "no run reported".to_owned(),
            };
            let mut notes = vec![
                run,
                format!("{} backup{}", host.backups, plural(host.backups)),
            ];
            if host.holds_lease {
                notes.push("holds the lease".to_owned());
            }
            if !host.selected {
                notes.push("not selected by metadata.hosts".to_owned());
            }
            text.push_str(&format!(
                "    {} {}: {}\n",
                super::text::word(host.state, color),
                host.host,
                notes.join("; ")
            ));
        }
    }
    text
}

fn plural(count: usize) -> &'static str {
    if count == 1 { "" } else { "s" }
}
