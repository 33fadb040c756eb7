#!/usr/bin/env bash
# Backup-engine benchmark for MariaDB: `backup run` against the hand-written
# pipeline and against how fast MariaDB can produce the dump, in one run on
# one machine, on the same realistic rows as benches/pg_backup.sh.
#
#   benches/mysql_backup.sh [SIZE_MB ...]      (default: 100 1024)
#   BACKUP=target/debug/backup benches/mysql_backup.sh 20   (a smoke run on a debug build)
#
# Starts its own throwaway server (mariadb-install-db + mariadbd, a free port,
# a socket in a temporary folder; as root it runs as the `mysql` user), fills
# one database per size, and times, for each size:
#   backup    target/release/backup run   (mariadb-dump --single-transaction …, rows counted
#             in the stream, gzip level 6 on every core, SHA-256, fsync, sidecar)
#   pipeline  mariadb-dump --single-transaction DB | gzip > f; sha256sum f; gzip -t f
#   source    mariadb-dump --single-transaction DB > /dev/null
# Needs GNU time (/usr/bin/time, Debian package `time`) for peak RSS.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
sizes=("$@")
[ "${#sizes[@]}" -gt 0 ] || sizes=(100 1024)

if [ -z "${BACKUP:-}" ]; then
    cargo build --release --quiet --manifest-path "$root/Cargo.toml"
    BACKUP="$root/target/release/backup"
fi
backup="$(cd "$(dirname "$BACKUP")" && pwd)/$(basename "$BACKUP")"
# shellcheck source=benches/lib.sh
. "$root/benches/lib.sh"
start_mariadb
dump=(mariadb-dump --no-defaults --socket="$mysql_socket" -u root --single-transaction --routines --triggers --events --hex-blob)

printf '%-8s %-9s %10s %10s %10s %10s %12s %12s\n' size dump backup pipeline source "pipe/back" "back/source" "backup RSS"
for size in "${sizes[@]}"; do
    db="bench_${size}"
    policy="bench-${size}"
    fill_mariadb "$db" "$size"
    dump_size="$("${dump[@]}" "$db" | wc -c)"

    mkdir -p "$work/store"
    policy "$policy" "$(mysql_source "$db")" "$(local_destination "$work/store")" > "$work/$db.yaml"
    read -r backup_s backup_rss < <(BACKUP_STATE_DIR="$work/state" measure "$backup" -q -p "$work/$db.yaml" run "$policy")
    read -r pipeline_s _ < <(measure bash -o pipefail -c \
        "${dump[*]} '$db' | gzip > '$work/pipeline.gz' && sha256sum '$work/pipeline.gz' && gzip -t '$work/pipeline.gz'")
    read -r source_s _ < <(measure bash -c "${dump[*]} '$db' > /dev/null")
    printf '%-8s %-9s %9ss %9ss %9ss %10s %12s %9s MiB\n' "${size}MB" "$(( dump_size / 1048576 ))MiB" \
        "$backup_s" "$pipeline_s" "$source_s" \
        "$(python3 -c "print(f'{$pipeline_s / $backup_s:.2f}x')")" \
        "$(python3 -c "print(f'{$backup_s / $source_s:.2f}x')")" \
        "$(( backup_rss / 1024 ))"
    rm -rf "$work/store" "$work/pipeline.gz"
done
