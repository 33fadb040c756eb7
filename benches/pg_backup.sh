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
# shellcheck source=benches/lib.sh
. "$root/benches/lib.sh"
start_postgres
bin="$pg_bin"

printf '%-8s %-9s %10s %10s %10s %10s %12s %12s\n' size dump backup pipeline source "pipe/back" "back/source" "backup RSS"
for size in "${sizes[@]}"; do
    db="bench_${size}"
    policy="bench-${size}"
    fill_postgres "$db" "$size"
    dump_size="$("$bin/pg_dump" -Fc -Z0 -d "$db" | wc -c)"

    mkdir -p "$work/store"
    policy "$policy" "$(postgres_source "$db")" "$(local_destination "$work/store")" > "$work/$db.yaml"
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
