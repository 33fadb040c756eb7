//! The lease (`spec.lease`) against a real S3 server that honours
//! conditional writes (s3s-fs, started by the harness), and Garage, which
//! does not: two "hosts" (processes with their own `--host` and
//! `--state-dir`) applying one policy to one bucket, killed at random; a
//! takeover judged by the store's clock; a lost lease stopping a prune; the
//! probe; the round trips of a free lease; validate's positioned error.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use backup::destination::s3::{Condition, S3, Written};
use backup::lease::{self, Acquired};
use chrono::{DateTime, TimeDelta, Utc};
use common::s3s::S3s;

/// Tests that send S3 requests from this process (the round-trip count
/// counts them all) run one at a time.
static IN_PROCESS: Mutex<()> = Mutex::new(());

/// A folder with an SQLite database and policy `app` (daily at 01:00 UTC,
/// `retention`) on `server`'s bucket under `prefix`, with `lease` (YAML
/// lines under `lease:`, or none).
fn site(server_yaml: &str, retention: &str, lease: Option<&str>) -> tempfile::TempDir {
    let folder = tempfile::tempdir().unwrap();
    common::sqlite3(
        &folder.path().join("app.db"),
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t (v) VALUES ('a'), ('b');",
    );
    write_policy(folder.path(), server_yaml, retention, lease);
    folder
}

fn write_policy(folder: &Path, destinations: &str, retention: &str, lease: Option<&str>) {
    let lease = lease.map_or_else(String::new, |lines| format!("  lease:\n{lines}"));
    std::fs::create_dir_all(folder.join("policies")).unwrap();
    std::fs::write(
        folder.join("policies/app.yaml"),
        format!(
            "apiVersion: backup/v1\nkind: BackupPolicy\nmetadata:\n  name: app\nspec:\n  source:\n    sqlite:\n      path: ../app.db\n  schedule:\n    cron: \"0 1 * * *\"\n  retention:\n    {retention}\n  destinations:\n{destinations}{lease}"
        ),
    )
    .unwrap();
}

/// `backup --host HOST --state-dir <folder>/.state-HOST -p policies ARGS` against `server`.
fn host(server: &S3s, folder: &Path, name: &str, args: &[&str]) -> Command {
    let mut command = server.backup_command(folder);
    command
        .args(["--host", name, "--state-dir"])
        .arg(folder.join(format!(".state-{name}")))
        .args(["-p", "policies"])
        .args(args);
    command
}

fn apply_args(now: DateTime<Utc>) -> Vec<String> {
    ["apply", "--auto-approve", "--no-crontab", "--now"]
        .iter()
        .map(|text| (*text).to_owned())
        .chain([now.to_rfc3339()])
        .collect()
}

fn run(mut command: Command) -> common::Run {
    command.output().unwrap().into()
}

/// The sidecars in the policy's folder of the bucket (s3s-fs keeps objects as files), by id.
fn sidecars(folder: &Path) -> Vec<serde_json::Value> {
    common::stored_ids(folder)
        .iter()
        .map(|id| {
            serde_json::from_slice(&std::fs::read(folder.join(format!("{id}.json"))).unwrap())
                .unwrap()
        })
        .collect()
}

fn library_store(server: &S3s, prefix: &str) -> S3 {
    S3::new(&server.spec(prefix)).unwrap()
}

/// A small xorshift generator: the rounds are random but can be replayed from the printed seed.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

#[test]
fn validate_refuses_a_lease_without_an_s3_destination_at_its_position() {
    let folder = tempfile::tempdir().unwrap();
    write_policy(
        folder.path(),
        "    - local:\n        path: ../store\n",
        "keep-last: 3",
        Some("    ttl: 2m\n"),
    );
    let ran = common::run(folder.path(), &["validate", "policies"]);
    assert_ne!(ran.code, 0, "{ran:?}");
    let text = format!("{}{}", ran.stdout, ran.stderr);
    assert!(text.contains("policies/app.yaml:16:3"), "{text}");
    assert!(
        text.contains("`lease` is kept on an S3 destination"),
        "{text}"
    );
    assert!(text.contains("hint: add an `s3:` destination"), "{text}");
}

#[test]
fn validate_refuses_a_lease_ttl_out_of_range() {
    let server_yaml = "    - s3:\n        bucket: bkt\n        endpoint: http://127.0.0.1:9\n        path-style: true\n";
    for (ttl, message) in [
        ("1s", "`1s` is not a lease ttl from 2s to 1h"),
        ("2h", "`2h` is not a lease ttl from 2s to 1h"),
        ("2d", "`2d` does not match `^([0-9]+[smh])+$`"),
    ] {
        let folder = tempfile::tempdir().unwrap();
        write_policy(
            folder.path(),
            server_yaml,
            "keep-last: 3",
            Some(&format!("    ttl: {ttl}\n")),
        );
        let ran = common::run(folder.path(), &["validate", "policies"]);
        let text = format!("{}{}", ran.stdout, ran.stderr);
        assert_ne!(ran.code, 0, "{ttl}: {text}");
        assert!(text.contains(message), "{ttl}: {text}");
        assert!(text.contains("policies/app.yaml:19:10"), "{ttl}: {text}");
    }
}

#[test]
fn a_free_lease_is_taken_and_released_in_two_round_trips() {
    let _serial = IN_PROCESS.lock().unwrap_or_else(|error| error.into_inner());
    let server = S3s::start();
    let store = library_store(&server, "trips/");
    let state_folder = tempfile::tempdir().unwrap();
    let state = backup::state::StateDir::new(state_folder.path());
    // The probe runs once per store; its pass is remembered.
    lease::probe(&store, &state, "app").unwrap();
    let before = backup::destination::s3::requests();
    let Acquired::Held(held) =
        lease::acquire(&store, &state, "app", Duration::from_secs(60), "db1").unwrap()
    else {
        panic!("a free lease is taken");
    };
    held.release().unwrap();
    let trips = backup::destination::s3::requests() - before;
    assert!(trips < 3, "{trips} round trips");
    assert_eq!(trips, 2);
    assert!(lease::peek(&store, "app").unwrap().is_none());
}

#[test]
fn a_held_lease_is_renewed_past_its_ttl_and_still_passes_the_fence() {
    let _serial = IN_PROCESS.lock().unwrap_or_else(|error| error.into_inner());
    let server = S3s::start();
    let store = library_store(&server, "renew/");
    let state_folder = tempfile::tempdir().unwrap();
    let state = backup::state::StateDir::new(state_folder.path());
    let Acquired::Held(held) =
        lease::acquire(&store, &state, "renewed", Duration::from_secs(2), "db1").unwrap()
    else {
        panic!("a free lease is taken");
    };
    let first = store.fetch("renewed", "lease.json").unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(3500));
    // Renewed (new content, new ETag), so alive by the store's clock, and still ours.
    let info = lease::peek(&store, "renewed").unwrap().unwrap();
    assert!(!info.expired, "{info:?}");
    let now = store.fetch("renewed", "lease.json").unwrap().unwrap();
    assert_ne!(now.e_tag, first.e_tag);
    assert_eq!(
        lease::fence("renewed").unwrap(),
        Some(lease::Stamp {
            epoch: 1,
            holder: "db1".to_owned()
        })
    );
    held.release().unwrap();
    assert_eq!(lease::fence("renewed").unwrap(), None);
    assert!(lease::peek(&store, "renewed").unwrap().is_none());
}

#[test]
fn an_expired_lease_is_taken_over_by_the_store_clock_whatever_the_local_clocks_say() {
    let _serial = IN_PROCESS.lock().unwrap_or_else(|error| error.into_inner());
    let server = S3s::start();
    let folder = site(
        &server.destination_yaml("skew/"),
        "keep-last: 3",
        Some("    ttl: 2s\n"),
    );
    let store = library_store(&server, "skew/");
    // db2 holds it (this process, renewing).
    let state_folder = tempfile::tempdir().unwrap();
    let state = backup::state::StateDir::new(state_folder.path());
    let Acquired::Held(held) =
        lease::acquire(&store, &state, "app", Duration::from_secs(2), "db2").unwrap()
    else {
        panic!("a free lease is taken");
    };
    // db1's clock is ten minutes ahead, then ten behind: the lease is still db2's.
    for skew in [10, -10] {
        let now = Utc::now() + TimeDelta::minutes(skew);
        let args = apply_args(now);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ran = run(host(&server, folder.path(), "db1", &args));
        assert_eq!(ran.code, 0, "{ran:?}");
        assert!(
            ran.stderr.contains("held by db2 (epoch 1) until ~"),
            "{ran:?}"
        );
        assert!(sidecars(&server.bucket_folder().join("skew/app")).is_empty());
    }
    // The fleet view, from a machine that runs nothing, names the holder.
    let fleet = fleet_view(&server, folder.path());
    assert_eq!(fleet["lease"]["holder"], "db2", "{fleet}");
    assert_eq!(fleet["lease"]["expired"], false, "{fleet}");
    let db2 = fleet["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|host| host["host"] == "db2")
        .cloned()
        .unwrap_or_else(|| panic!("{fleet}"));
    assert_eq!(db2["holds_lease"], true, "{fleet}");
    // `run` refuses like a held lock.
    let ran = run(host(&server, folder.path(), "db1", &["run", "app"]));
    assert_eq!(ran.code, 4, "{ran:?}");
    assert!(
        ran.stderr
            .contains("`app` was not backed up: another host writes it now"),
        "{ran:?}"
    );
    assert!(sidecars(&server.bucket_folder().join("skew/app")).is_empty());
    let info = lease::peek(&store, "app").unwrap().unwrap();
    assert_eq!(
        (info.holder.as_str(), info.epoch, info.expired),
        ("db2", 1, false)
    );
    // db2 stops renewing without releasing (as if killed): once the store's
    // clock says the ttl is up, db1 takes it over with the next epoch.
    let stamp = held.stamp();
    held.abandon();
    std::thread::sleep(Duration::from_millis(3200));
    assert!(lease::peek(&store, "app").unwrap().unwrap().expired);
    let args = apply_args(Utc::now() - TimeDelta::minutes(10));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ran = run(host(&server, folder.path(), "db1", &args));
    assert_eq!(ran.code, 0, "{ran:?}");
    let written = sidecars(&server.bucket_folder().join("skew/app"));
    assert_eq!(written.len(), 1, "{ran:?}");
    assert_eq!(written[0]["lease"]["holder"], "db1");
    assert_eq!(written[0]["lease"]["epoch"], stamp.epoch + 1);
    // Released at the end of the run.
    assert!(lease::peek(&store, "app").unwrap().is_none());
    // db1 published its run beside the backups; nobody holds the lease now.
    let fleet = fleet_view(&server, folder.path());
    assert!(fleet["lease"]["holder"].is_null(), "{fleet}");
    let db1 = fleet["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|host| host["host"] == "db1")
        .cloned()
        .unwrap_or_else(|| panic!("{fleet}"));
    assert_eq!(db1["last_run"]["result"], "ok", "{fleet}");
    assert_eq!(db1["backups"], 1, "{fleet}");
    assert_eq!(db1["holds_lease"], false, "{fleet}");
}

/// `status --all-hosts --format json` as a host that runs nothing: the fleet's only policy.
fn fleet_view(server: &S3s, folder: &Path) -> serde_json::Value {
    let ran = run(host(
        server,
        folder,
        "laptop",
        &["status", "--all-hosts", "--format", "json"],
    ));
    let report: serde_json::Value =
        serde_json::from_str(&ran.stdout).unwrap_or_else(|_| panic!("{ran:?}"));
    report["fleet"]["policies"][0].clone()
}

#[test]
fn a_lost_lease_stops_a_prune_before_anything_is_deleted() {
    let _serial = IN_PROCESS.lock().unwrap_or_else(|error| error.into_inner());
    let server = S3s::start();
    let keys = tempfile::tempdir().unwrap();
    let destination = server.destination_yaml_files("lost/", keys.path());
    let folder = site(&destination, "keep-last: 5", Some("    ttl: 1m\n"));
    let start: DateTime<Utc> = "2026-11-01T12:00:00Z".parse().unwrap();
    for day in 0..4 {
        let args = apply_args(start + TimeDelta::days(day));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ran = run(host(&server, folder.path(), "db1", &args));
        assert_eq!(ran.code, 0, "{ran:?}");
    }
    let bucket = server.bucket_folder().join("lost/app");
    let objects = |bucket: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(bucket)
            .unwrap()
            .flatten()
            .map(|entry| entry.file_name().into_string().unwrap())
            // The lease and the hosts' last-run records are no backups.
            .filter(|name| name != "lease.json" && name != "hosts")
            .collect();
        names.sort();
        names
    };
    let before = objects(&bucket);
    assert_eq!(before.len(), 8, "{before:?}");
    assert_eq!(sidecars(&bucket).len(), 4);
    // Now keep-last 1: three prunes are due.
    write_policy(
        folder.path(),
        &destination,
        "keep-last: 1",
        Some("    ttl: 1m\n"),
    );
    let loaded = backup::policy::load(&[folder.path().join("policies")], Default::default());
    let selection = loaded.select(None).unwrap();
    let state = backup::state::StateDir::new(&folder.path().join(".state-db1"));
    let store = library_store(&server, "lost/");
    let Acquired::Held(held) =
        lease::acquire(&store, &state, "app", Duration::from_secs(60), "db1").unwrap()
    else {
        panic!("a free lease is taken");
    };
    let now = start + TimeDelta::days(3) + TimeDelta::hours(1);
    let mut observed = common::observe_without_crontab(&selection, &state, now, false);
    let plan = backup::observe::plan(
        &selection.selected,
        &mut observed,
        now,
        &backup::plan::Scope::default(),
    );
    let prunes = plan
        .actions
        .iter()
        .filter(|action| action.kind == backup::plan::ActionKind::Prune)
        .count();
    assert_eq!(prunes, 3, "{plan:?}");
    // In the middle of the run, db2 takes the lease over (as it would once
    // it judged it expired): the ETag db1 holds is no longer the lease's.
    let current = store.fetch("app", "lease.json").unwrap().unwrap();
    let theirs = br#"{"holder":"db2","epoch":2,"ttl_seconds":60.0,"pid":1,"acquired":"2026-11-04T13:00:00Z","renewed":"2026-11-04T13:00:00Z","renewals":0}"#;
    let replaced = store
        .put_if(
            "app",
            "lease.json",
            theirs,
            Condition::Matches(current.e_tag.as_deref().unwrap()),
        )
        .unwrap();
    assert!(matches!(replaced, Written::Done(_)));
    let report = backup::apply::execute(
        &plan,
        &selection.selected,
        &backup::apply::Options {
            allow_mass_delete: true,
            ..Default::default()
        },
        &mut |_| Err("no crontab here".to_owned()),
        &mut |_| backup::apply::Outcome::Skipped("no scheduler here".to_owned()),
        &mut |_| {},
    );
    let failed: Vec<&String> = report
        .results
        .iter()
        .filter_map(|result| match &result.outcome {
            backup::apply::Outcome::Failed(reason) => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 3, "{:?}", report.results);
    assert!(
        failed
            .iter()
            .all(|reason| reason.contains("was lost (another writer holds it now)")),
        "{failed:?}"
    );
    // Nothing was deleted, and db2's lease is untouched by db1's release.
    held.release().unwrap();
    assert_eq!(objects(&bucket), before);
    let info = lease::peek(&store, "app").unwrap().unwrap();
    assert_eq!((info.holder.as_str(), info.epoch), ("db2", 2));
}

#[test]
fn the_probe_refuses_a_store_that_ignores_conditional_writes() {
    let garage = common::garage::Garage::start();
    let folder = site(
        &garage.destination_yaml("probe/", "TEST_S3"),
        "keep-last: 3",
        Some("    ttl: 2m\n"),
    );
    let mut command = garage.backup_command(folder.path());
    command.args(["-p", "policies", "apply", "--auto-approve", "--no-crontab"]);
    let ran = run(command);
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(
        ran.stderr
            .contains("accepted a second create-only PUT (`If-None-Match: *`) of one key"),
        "{ran:?}"
    );
    assert!(ran.stderr.contains(&garage.endpoint()), "{ran:?}");
    assert!(ran.stderr.contains("remove `spec.lease`"), "{ran:?}");
    // Nothing was backed up, and the probe left nothing behind.
    let mut listing = garage.backup_command(folder.path());
    listing.args(["-p", "policies", "list", "app", "--format", "json"]);
    let listed = run(listing);
    assert!(!listed.stdout.contains("\"id\""), "{listed:?}");
    // A pass is not remembered for a store that failed.
    assert!(
        !folder.path().join(".state/lease-probes").exists()
            || std::fs::read_dir(folder.path().join(".state/lease-probes"))
                .unwrap()
                .next()
                .is_none()
    );
}

/// Two hosts, one bucket, 200 rounds (`LEASE_ROUNDS` to change), each a
/// day later; db2's clock is ten minutes off (ahead or behind, by round);
/// now and then one of them is killed at a random moment. After every
/// round: never two backups for one tick, every sidecar's data there with
/// its recorded size, none of the backups retention keeps lost; a killed
/// holder's lease expires and the other host takes it over.
#[test]
fn two_hosts_applying_one_policy_to_one_bucket_with_random_kills() {
    let rounds: u64 = std::env::var("LEASE_ROUNDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(200);
    let seed = std::env::var("LEASE_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| Utc::now().timestamp_nanos_opt().unwrap_or(1) as u64 | 1);
    eprintln!("LEASE_SEED={seed}");
    let mut random = Random(seed);
    let server = S3s::start();
    let folder = site(
        &server.destination_yaml("fleet/"),
        "keep-last: 3",
        Some("    ttl: 2s\n"),
    );
    let bucket = server.bucket_folder().join("fleet/app");
    let start: DateTime<Utc> = "2026-01-01T12:00:00Z".parse().unwrap();
    // Every backup ever seen committed: (created_at, id).
    let mut seen: std::collections::BTreeSet<(String, String)> = Default::default();
    let mut kills = 0;
    let mut takeovers = 0;
    let mut lost_races = 0;
    let started = Instant::now();
    for round in 0..rounds {
        let now = start + TimeDelta::days(round as i64);
        let skew = if round % 2 == 0 { 10 } else { -10 };
        let mut children: Vec<(&str, std::process::Child)> =
            [("db1", now), ("db2", now + TimeDelta::minutes(skew))]
                .into_iter()
                .map(|(name, at)| {
                    let args = apply_args(at);
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    let mut command = host(&server, folder.path(), name, &args);
                    command.stdout(Stdio::null()).stderr(Stdio::piped());
                    (name, command.spawn().unwrap())
                })
                .collect();
        if random.below(8) == 0 {
            let victim = random.below(2) as usize;
            std::thread::sleep(Duration::from_millis(random.below(250)));
            let _ = children[victim].1.kill();
            kills += 1;
        }
        for (name, child) in children.iter_mut() {
            let status = child.wait().unwrap();
            // Killed, or done. A run that was not killed succeeds, or (when
            // both created the lease at once: s3s-fs checks, then renames)
            // finds it lost at its first fence and stops there.
            if status.code().is_some() {
                let mut stderr = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
                if status.code() == Some(1) && stderr.contains("was lost (") {
                    lost_races += 1;
                } else {
                    assert_eq!(status.code(), Some(0), "round {round}, {name}: {stderr}");
                }
            }
        }
        // The bucket as it stands between rounds.
        let found = sidecars(&bucket);
        let mut ticks = std::collections::BTreeMap::new();
        for sidecar in &found {
            let created: DateTime<Utc> = sidecar["created_at"].as_str().unwrap().parse().unwrap();
            let tick = (created - TimeDelta::hours(1)).date_naive();
            *ticks.entry(tick).or_insert(0) += 1;
            let artifact = &sidecar["artifact"];
            let data = bucket.join(artifact["name"].as_str().unwrap());
            let size = std::fs::metadata(&data).map(|metadata| metadata.len());
            assert_eq!(
                size.ok(),
                artifact["size"].as_u64(),
                "round {round}: {} has no data of its recorded size",
                sidecar["id"]
            );
            assert!(sidecar["lease"]["epoch"].as_u64().is_some(), "{sidecar}");
            seen.insert((
                sidecar["created_at"].as_str().unwrap().to_owned(),
                sidecar["id"].as_str().unwrap().to_owned(),
            ));
        }
        assert!(
            ticks.values().all(|count| *count == 1),
            "round {round}: two backups for one tick: {ticks:?}\n{}",
            found
                .iter()
                .map(|sidecar| format!(
                    "{} {} {} {}",
                    sidecar["id"], sidecar["host"], sidecar["lease"], sidecar["finished_at"]
                ))
                .collect::<Vec<_>>()
                .join("\n")
        );
        // keep-last 3: the three newest ever committed are all still there.
        let ids: std::collections::BTreeSet<&str> = found
            .iter()
            .map(|sidecar| sidecar["id"].as_str().unwrap())
            .collect();
        for (_, id) in seen.iter().rev().take(3) {
            assert!(ids.contains(id.as_str()), "round {round}: {id} was lost");
        }
        // A lease left by a killed holder expires, and the other host takes it over.
        if let Ok(text) = std::fs::read(bucket.join("lease.json")) {
            let body: serde_json::Value = serde_json::from_slice(&text).unwrap();
            let holder = body["holder"].as_str().unwrap().to_owned();
            std::thread::sleep(Duration::from_millis(3200));
            let other = if holder == "db1" { "db2" } else { "db1" };
            let args = apply_args(now + TimeDelta::hours(1));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let ran = run(host(&server, folder.path(), other, &args));
            assert_eq!(ran.code, 0, "round {round}: {ran:?}");
            assert!(
                ran.stderr.contains(&format!(
                    "Took over the expired lease of `app` from {holder}"
                )),
                "round {round}: {ran:?}"
            );
            assert!(!bucket.join("lease.json").exists(), "round {round}");
            takeovers += 1;
        }
    }
    eprintln!(
        "{rounds} rounds, {kills} kills, {takeovers} takeovers, {lost_races} lost races, {} backups seen, {:.0} s",
        seen.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        seen.len() as u64 >= rounds / 2,
        "{} backups in {rounds} rounds",
        seen.len()
    );
    if rounds >= 100 {
        assert!(
            takeovers > 0,
            "no killed holder's lease was taken over in {kills} kills"
        );
    }
}
