#!/usr/bin/env bash
# The fleet in one bucket: 10 policies, each run by 100 hosts
# (`metadata.hosts: ["h*"]`), whose backups (sidecars naming the host that
# took them, and their data) and host records all sit in one Garage bucket.
# Measures, warm (the sidecar cache filled by a first run):
#
#   - `backup plan --host h042` (what one host of the fleet would do);
#   - `backup status --all-hosts` (the fleet view: every host's last run);
#   - a bare listing of the whole bucket: ListObjectsV2 pages fetched with
#     curl (SigV4 signed), one process per page, nothing parsed but the
#     continuation token. This is the floor any tool that reads the bucket
#     pays.
#
# Reports the median of RUNS runs of each and the ratio plan / listing
# (target: at most 1.5).
#
#   benches/fleet.sh [BACKUPS_PER_HOST] [RUNS]     # default 3 and 7
#
# Needs: garage (.ci/setup), the AWS CLI (target/ci-venv, to upload),
# curl with --aws-sigv4 (7.75 or later), python3, sqlite3, GNU time.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
source "$root/benches/lib.sh"
per_host="${1:-3}"
runs="${2:-7}"
hosts=100
policies=10
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
backup="$root/target/release/backup"
export BACKUP_STATE_DIR="$work/state"
start_garage

# One real backup to copy: its sidecar and data are the template.
sqlite3 "$work/seed.sqlite" "CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('seed');"
source_yaml="    sqlite:
      path: $work/seed.sqlite"
policy seed "$source_yaml" "$(local_destination "$work/seed-store")" > "$work/seed.yaml"
"$backup" -q -p "$work/seed.yaml" run seed

mkdir -p "$work/policies"
for p in $(seq -w 1 "$policies"); do
    # Many hosts take turns on one policy: it has a lease (which plan and
    # status only read; Garage could not hold one for apply).
    codec="  lease: {ttl: 2m}" keep=1000 policy "app$p" "$source_yaml" "$(s3_destination fleet/)" \
        | sed 's/^  name: \(.*\)$/  name: \1\n  hosts: ["h*"]/' > "$work/policies/app$p.yaml"
done

# The bucket's contents, written as files and uploaded in one sync: per
# policy, BACKUPS_PER_HOST hourly backups by each host (sealed sidecars
# naming it) and each host's last-run record.
python3 - "$work/seed-store/seed" "$work/bucket/fleet" "$policies" "$hosts" "$per_host" <<'PY'
import datetime, hashlib, json, os, sys
seed, out, policies, hosts, per_host = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
sidecar = json.load(open(next(os.path.join(seed, n) for n in os.listdir(seed) if n.endswith(".json"))))
data = open(os.path.join(seed, sidecar["artifact"]["name"]), "rb").read()
start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
stamp = lambda at: at.isoformat().replace("+00:00", "Z")
for p in range(1, policies + 1):
    name = f"app{p:02d}"
    folder = os.path.join(out, name)
    os.makedirs(os.path.join(folder, "hosts"))
    k = 0
    for h in range(hosts):
        host = f"h{h:03d}"
        for _ in range(per_host):
            at = start + datetime.timedelta(hours=k)
            k += 1
            ident = at.strftime("%Y%m%dT%H%M%SZ")
            meta = dict(sidecar, policy=name, id=ident, host=host, created_at=stamp(at),
                        finished_at=stamp(at + datetime.timedelta(seconds=1)))
            meta["artifact"] = dict(sidecar["artifact"], name=ident + ".sqlite.gz")
            meta.pop("sidecar_sha256", None)
            canonical = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            meta["sidecar_sha256"] = hashlib.sha256(canonical.encode()).hexdigest()
            json.dump(meta, open(os.path.join(folder, ident + ".json"), "w"))
            open(os.path.join(folder, ident + ".sqlite.gz"), "wb").write(data)
        record = {"format_version": 1, "policy": name, "kind": "apply", "started_at": stamp(at),
                  "finished_at": stamp(at + datetime.timedelta(seconds=1)), "duration_seconds": 1.0,
                  "result": "ok", "backup": ident, "bytes": len(data), "host": host}
        json.dump(record, open(os.path.join(folder, "hosts", host + ".json"), "w"))
PY
aws_cli s3 sync --quiet "$work/bucket" s3://bench/
objects="$(find "$work/bucket" -type f | wc -l)"

# list_pages: every ListObjectsV2 page of the bucket, one curl each (the
# query's parameters in sorted order: curl signs them as written).
list_pages() {
    local token="" page
    while :; do
        page="$(curl -sS --fail -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" --aws-sigv4 "aws:amz:garage:s3" -u "$TEST_S3_KEY_ID:$TEST_S3_SECRET" \
            "$S3_ENDPOINT/bench?${token:+continuation-token=$token&}list-type=2&max-keys=1000")"
        token="$(printf '%s' "$page" | sed -n 's:.*<NextContinuationToken>\([^<]*\)</NextContinuationToken>.*:\1:p')"
        [ -n "$token" ] || break
        # URL-encoded in the shell: no other process per page than curl.
        token="${token//%/%25}"; token="${token//]/%5D}"; token="${token//=/%3D}"
        token="${token//+/%2B}"; token="${token//\//%2F}"
    done
}
export -f list_pages
export S3_ENDPOINT

plan_cmd=("$backup" -q -p "$work/policies" --host h042 plan --no-crontab --format json)
status_cmd=("$backup" -q -p "$work/policies" --host h042 status --all-hosts --no-crontab --format json)
# Warm: the sidecar cache, and the store's own caches.
"${plan_cmd[@]}" > /dev/null || [ $? -eq 2 ]
"${status_cmd[@]}" > /dev/null || true
list_pages

median_of() {
    local times=()
    for _ in $(seq "$runs"); do
        local start end
        start="$(date +%s.%N)"
        "$@" > /dev/null 2>&1 || true
        end="$(date +%s.%N)"
        times+=("$(python3 -c "print($end - $start)")")
    done
    python3 -c 'import statistics, sys; print(f"{statistics.median(map(float, sys.argv[1:])):.3f}")' "${times[@]}"
}
plan_s="$(median_of "${plan_cmd[@]}")"
status_s="$(median_of "${status_cmd[@]}")"
list_s="$(median_of bash -c list_pages)"
printf '%s objects (%s policies x %s hosts x %s backups, data and sidecars, plus host records)\n' \
    "$objects" "$policies" "$hosts" "$per_host"
printf '%-32s %8s\n' "bare listing (curl, every page)" "$list_s"
printf '%-32s %8s %6sx\n' "backup plan --host h042" "$plan_s" "$(ratio "$plan_s" "$list_s")"
printf '%-32s %8s %6sx\n' "backup status --all-hosts" "$status_s" "$(ratio "$status_s" "$list_s")"
