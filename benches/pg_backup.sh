#!/usr/bin/env bash
# Backup-engine benchmark: `backup run` against the hand-written pipeline and
# against how fast PostgreSQL can produce the dump, in one run on one machine.
#
#   benches/pg_backup.sh [SIZE_MB ...]      (default: 100 1024)
#
# Starts its own throwaway cluster (initdb + pg_ctl from /usr/lib/postgresql,
# a free port, a temporary folder; as root it runs as the `postgres` user),
# fills one database per size with realistic rows (random text and numbers,
# not pgbench's blank padding), and times, for each size:
#   backup    target/release/backup run   (gzip level 6 on every core, SHA-256, fsync, sidecar)
#   pipeline  pg_dump -Fc | gzip > f; sha256sum f; gzip -t f
#   source    pg_dump -Fc -Z0 > /dev/null
# Needs GNU time (/usr/bin/time, Debian package `time`) for peak RSS.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
sizes=("$@")
[ "${#sizes[@]}" -gt 0 ] || sizes=(100 1024)

cargo build --release --quiet --manifest-path "$root/Cargo.toml"
backup="$root/target/release/backup"
bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"

work="$(mktemp -d /tmp/backup-bench.XXXXXX)"
chmod 755 "$work"
as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" -eq 0 ] && chown postgres: "$work"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cleanup() { as_postgres "$bin/pg_ctl" -D "$work/data" -m immediate -w stop >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

as_postgres "$bin/initdb" -D "$work/data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
as_postgres "$bin/pg_ctl" -D "$work/data" -l "$work/server.log" -w \
    -o "-p $port -k $work -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_wal_size=4GB" start >/dev/null
psql() { "$bin/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres "$@"; }
export PGHOST=127.0.0.1 PGPORT="$port" PGUSER=postgres

# seconds and peak RSS (KiB) of a command
measure() { /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null; cat "$work/time"; }

printf '%-8s %-9s %10s %10s %10s %10s %12s %12s\n' size dump backup pipeline source "pipe/back" "back/source" "backup RSS"
for size in "${sizes[@]}"; do
    db="bench_${size}"
    policy="bench-${size}"
    psql -d postgres -c "CREATE DATABASE $db"
    # ~200 bytes a row on disk: two text columns of random hex and words, numbers, a timestamp.
    rows=$(( size * 1024 * 1024 / 200 ))
    psql -d "$db" -c "CREATE TABLE orders (id bigint, customer text, note text, quantity int, price double precision, created timestamptz);
        INSERT INTO orders SELECT i, md5(random()::text) || md5(random()::text),
            substr(repeat(md5(random()::text) || ' lorem ipsum dolor ' || (random() * 1e9)::bigint, 3), 1, 40 + (random() * 40)::int),
            (random() * 1000)::int, random() * 10000, now() - random() * interval '365 days'
        FROM generate_series(1, $rows) i;"
    psql -d "$db" -c "VACUUM ANALYZE orders"
    dump_size="$("$bin/pg_dump" -Fc -Z0 -d "$db" | wc -c)"

    mkdir -p "$work/store"
    cat > "$work/$db.yaml" <<POLICY
apiVersion: backup/v1
kind: BackupPolicy
metadata:
  name: $policy
spec:
  source:
    postgres:
      url: postgresql://postgres@127.0.0.1:$port/$db
  schedule:
    cron: "@daily"
  retention:
    keep-last: 1
  destinations:
    - local:
        path: $work/store
POLICY
    read -r backup_s backup_rss < <(measure "$backup" -q -p "$work/$db.yaml" run "$policy")
    read -r pipeline_s _ < <(measure bash -o pipefail -c \
        "'$bin/pg_dump' -Fc -d '$db' | gzip > '$work/pipeline.gz' && sha256sum '$work/pipeline.gz' && gzip -t '$work/pipeline.gz'")
    read -r source_s _ < <(measure bash -c "'$bin/pg_dump' -Fc -Z0 -d '$db' > /dev/null")
    printf '%-8s %-9s %9ss %9ss %9ss %10s %12s %9s MiB\n' "${size}MB" "$(( dump_size / 1048576 ))MiB" \
        "$backup_s" "$pipeline_s" "$source_s" \
        "$(python3 -c "print(f'{$pipeline_s / $backup_s:.2f}x')")" \
        "$(python3 -c "print(f'{$backup_s / $source_s:.2f}x')")" \
        "$(( backup_rss / 1024 ))"
    rm -rf "$work/store" "$work/pipeline.gz"
done
