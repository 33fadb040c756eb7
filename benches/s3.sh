#!/usr/bin/env bash
# S3 benchmarks against a throwaway Garage node on loopback, in one run on
# one machine; ratios against the AWS CLI doing the nearest raw equivalent.
#
#   benches/s3.sh upload [SIZE_MB]                  (default 1024)
#   benches/s3.sh inventory [POLICIES] [PER_POLICY] (default 100 100)
#
# upload: a PostgreSQL database of SIZE_MB (the engine benchmark's rows) is
#   backed up by `backup run` straight to S3 (dump, gzip on every core,
#   SHA-256 and a streamed multipart upload in one pass), against
#   `aws s3 cp` of the same compressed file (which only uploads), against
#   the script it replaces (`pg_dump -Fc | gzip > f; sha256sum f; aws s3 cp
#   f`), and against `backup run` to a local folder (what the upload adds).
#   Reports times, ratios, and peak RSS. With `codec` set (YAML under
#   `spec:`, e.g. codec=$'  compression:\n    zstd: {level: 3}') both
#   backups use it.
# inventory: POLICIES x PER_POLICY backups (sidecars and data) are put in the
#   bucket, then `backup plan` over all the policies (every sidecar listed,
#   read and checked against its data) is timed against
#   `aws s3api list-objects-v2` of the same keys (listing only), both
#   cold (a fresh state folder) and warm.
#
# Needs: garage (.ci/setup), the AWS CLI (target/ci-venv, from .ci/setup),
# GNU time, and for `upload` the PostgreSQL server packages.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mode="${1:-upload}"
shift || true

cargo build --release --quiet --manifest-path "$root/Cargo.toml"
backup="$root/target/release/backup"
# shellcheck source=benches/lib.sh
. "$root/benches/lib.sh"
aws_bin="$root/target/ci-venv/bin/aws"
[ -x "$aws_bin" ] || aws_bin="$(command -v aws)"
export BACKUP_STATE_DIR="$work/state"

upload() {
    local size="${1:-1024}"
    start_postgres
    fill_postgres bench_upload "$size"
    start_garage
    local source
    source="$(postgres_source bench_upload)"
    policy upload "$source" "$(s3_destination up/)" > "$work/upload.yaml"
    policy local "$source" "$(local_destination "$work/store")" > "$work/local.yaml"
    read -r backup_s backup_rss < <(measure "$backup" -q -p "$work/upload.yaml" run upload)
    read -r local_s _ < <(measure "$backup" -q -p "$work/local.yaml" run local)
    local file
    file="$(ls "$work"/store/local/*.pgdump*)"
    read -r aws_s aws_rss < <(measure "$aws_bin" --endpoint-url "$S3_ENDPOINT" s3 cp --only-show-errors "$file" s3://bench/cp/upload.pgdump.gz)
    # What a script does to get the same into S3: dump, compress, hash, upload.
    read -r script_s _ < <(measure bash -o pipefail -c "'$pg_bin/pg_dump' -Fc -d bench_upload | gzip > '$work/script.gz' && sha256sum '$work/script.gz' && '$aws_bin' --endpoint-url '$S3_ENDPOINT' s3 cp --only-show-errors '$work/script.gz' s3://bench/cp/script.gz")
    printf '%-8s %-11s %10s %10s %10s %10s %13s %13s %14s %11s %8s\n' size compressed "backup s3" "backup disk" "aws s3 cp" script "backup/awscp" "backup/script" "s3 over disk" "backup RSS" "aws RSS"
    printf '%-8s %-11s %9ss %10ss %9ss %9ss %13s %13s %14s %7s MiB %4s MiB\n' "${size}MB" "$(( $(stat -c %s "$file") / 1048576 ))MiB" \
        "$backup_s" "$local_s" "$aws_s" "$script_s" "$(ratio "$backup_s" "$aws_s")" "$(ratio "$backup_s" "$script_s")" \
        "$(ratio "$backup_s" "$local_s")" "$(( backup_rss / 1024 ))" "$(( aws_rss / 1024 ))"
}

inventory() {
    local policies="${1:-100}" per="${2:-100}"
    start_garage
    python3 - "$work/seed.sqlite" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("CREATE TABLE t (v TEXT)")
db.executemany("INSERT INTO t VALUES (?)", [("row %d" % i,) for i in range(100)])
db.commit()
PY
    local source="    sqlite:
      path: $work/seed.sqlite"
    policy seed "$source" "$(local_destination "$work/seed-store")" > "$work/seed.yaml"
    "$backup" -q -p "$work/seed.yaml" run seed
    # Every policy gets PER_POLICY daily backups: copies of the seed's data,
    # with sidecars naming their own policy, id and time.
    python3 - "$work/seed-store/seed" "$work/bucket/inv" "$policies" "$per" <<'PY'
import datetime, hashlib, json, os, shutil, sys
seed, out, policies, per = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sidecar = json.load(open(next(os.path.join(seed, n) for n in os.listdir(seed) if n.endswith(".json"))))
data = os.path.join(seed, sidecar["artifact"]["name"])
start = datetime.datetime(2026, 1, 1, 1, 0, tzinfo=datetime.timezone.utc)
for p in range(policies):
    name = "p%03d" % p
    folder = os.path.join(out, name)
    os.makedirs(folder)
    for k in range(per):
        at = start + datetime.timedelta(days=k)
        ident = at.strftime("%Y%m%dT%H%M%SZ")
        meta = dict(sidecar, policy=name, id=ident,
                    created_at=at.isoformat().replace("+00:00", "Z"),
                    finished_at=(at + datetime.timedelta(seconds=1)).isoformat().replace("+00:00", "Z"))
        meta["artifact"] = dict(sidecar["artifact"], name=ident + ".sqlite.gz")
        # Sealed as backup seals it: SHA-256 of the other fields as canonical JSON.
        meta.pop("sidecar_sha256", None)
        canonical = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        meta["sidecar_sha256"] = hashlib.sha256(canonical.encode()).hexdigest()
        json.dump(meta, open(os.path.join(folder, ident + ".json"), "w"))
        shutil.copyfile(data, os.path.join(folder, ident + ".sqlite.gz"))
PY
    mkdir -p "$work/policies"
    for p in $(seq 0 $(( policies - 1 ))); do
        name="$(printf 'p%03d' "$p")"
        keep="$per" policy "$name" "$source" "$(s3_destination inv/)" > "$work/policies/$name.yaml"
    done
    echo "putting $(( policies * per * 2 )) objects into the bucket..."
    "$aws_bin" --endpoint-url "$S3_ENDPOINT" s3 cp --recursive --only-show-errors "$work/bucket" s3://bench/
    local now="2027-01-01T00:00:00Z" plan_args
    plan_args=(-q -p "$work/policies" plan --no-crontab --now "$now")
    # The plan must have read every backup: nothing to back up or prune.
    "$backup" "${plan_args[@]}" --format json > "$work/plan.json"
    python3 - "$work/plan.json" "$(( policies * per ))" <<'PY'
import json, sys
plan = json.load(open(sys.argv[1]))
found = sum(p["backups"] for p in plan["policies"])
assert found == int(sys.argv[2]), (found, sys.argv[2])
PY
    # cold: a fresh state folder, every sidecar fetched; warm: the sidecar
    # cache from the previous plan, only listings.
    printf '%-6s %-6s %10s %12s %10s\n' run cache "backup plan" "aws list" "ratio"
    for run in 1 2 3; do
        for cache in cold warm; do
            [ "$cache" = warm ] || rm -rf "$BACKUP_STATE_DIR"
            read -r plan_s _ < <(measure "$backup" "${plan_args[@]}")
            read -r list_s _ < <(measure "$aws_bin" --endpoint-url "$S3_ENDPOINT" s3api list-objects-v2 --bucket bench --prefix inv/)
            printf '%-6s %-6s %10ss %11ss %10s\n' "$run" "$cache" "$plan_s" "$list_s" "$(ratio "$plan_s" "$list_s")"
        done
    done
}

case "$mode" in
    upload) upload "$@" ;;
    inventory) inventory "$@" ;;
    *) echo "usage: $0 upload [SIZE_MB] | inventory [POLICIES] [PER_POLICY]" >&2; exit 64 ;;
esac
