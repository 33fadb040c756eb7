#!/usr/bin/env bash
# Inventory at scale on a local folder: `backup list` and `backup plan` of one
# policy holding N backups (sealed sidecars and their data, as `backup`
# writes them), for each N given. Reports seconds and peak RSS per N, and the
# growth from one N to the next (linear is 10x per 10x).
#
#   benches/inventory.sh 1000 10000 100000
#
# Needs python3, sqlite3 and GNU time (Debian package `time`).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
source "$root/benches/lib.sh"
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
backup="$root/target/release/backup"
export BACKUP_STATE_DIR="$work/state"

sqlite3 "$work/seed.sqlite" "CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('seed');"
source_yaml="    sqlite:
      path: $work/seed.sqlite"
policy seed "$source_yaml" "$(local_destination "$work/seed-store")" > "$work/seed.yaml"
"$backup" -q -p "$work/seed.yaml" run seed

printf '%-8s %10s %10s %10s %10s %12s\n' backups "list s" "list MiB" "plan s" "plan MiB" "list growth"
previous=""
for count in "${@:-1000 10000 100000}"; do
    store="$work/store-$count"
    # COUNT hourly backups: the seed's data (copies: a file system allows
    # fewer hard links than that), sidecars naming their
    # own id and time, sealed as backup seals them.
    python3 - "$work/seed-store/seed" "$store/app" "$count" <<'PY'
import datetime, hashlib, json, os, sys
seed, out, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
sidecar = json.load(open(next(os.path.join(seed, n) for n in os.listdir(seed) if n.endswith(".json"))))
data = open(os.path.join(seed, sidecar["artifact"]["name"]), "rb").read()
os.makedirs(out)
start = datetime.datetime(2015, 1, 1, 0, 0, tzinfo=datetime.timezone.utc)
for k in range(count):
    at = start + datetime.timedelta(hours=k)
    ident = at.strftime("%Y%m%dT%H%M%SZ")
    meta = dict(sidecar, policy="app", id=ident,
                created_at=at.isoformat().replace("+00:00", "Z"),
                finished_at=(at + datetime.timedelta(seconds=1)).isoformat().replace("+00:00", "Z"))
    meta["artifact"] = dict(sidecar["artifact"], name=ident + ".sqlite.gz")
    meta.pop("sidecar_sha256", None)
    canonical = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    meta["sidecar_sha256"] = hashlib.sha256(canonical.encode()).hexdigest()
    with open(os.path.join(out, ident + ".json"), "w") as f:
        json.dump(meta, f)
    with open(os.path.join(out, ident + ".sqlite.gz"), "wb") as f:
        f.write(data)
PY
    keep="$count" policy app "$source_yaml" "$(local_destination "$store")" > "$work/app-$count.yaml"
    # Warm the page cache once, so every N is measured the same way.
    "$backup" -q -p "$work/app-$count.yaml" list > /dev/null
    read -r list_s list_rss < <(measure "$backup" -q -p "$work/app-$count.yaml" list --format json)
    read -r plan_s plan_rss < <(measure "$backup" -q -p "$work/app-$count.yaml" plan --no-crontab \
        --now 2099-01-01T00:00:00Z --format json)
    growth="-"
    [ -n "$previous" ] && growth="$(ratio "$list_s" "$previous")x"
    printf '%-8s %10s %10s %10s %10s %12s\n' "$count" "$list_s" "$(( list_rss / 1024 ))" \
        "$plan_s" "$(( plan_rss / 1024 ))" "$growth"
    previous="$list_s"
    rm -rf "$store"
done
