#!/usr/bin/env bash
# Restore benchmark: `backup restore` of a PostgreSQL backup against the
# stock-tools restore of the same file, in one run on one machine.
#
#   benches/pg_restore.sh [SIZE_MB]      (default 1024)
#
# Fills a throwaway cluster's database with SIZE_MB of the engine
# benchmark's rows, takes one backup with `backup run` to a local folder,
# then restores that file into a new, empty database each time:
#   backup     backup restore --to DB --yes   (SHA-256, gzip and `pg_restore --list`
#              checked first in one pass, then streamed into pg_restore --clean
#              --if-exists --single-transaction, row counts checked after)
#   backup -j  backup restore --to DB --yes --jobs 2   (decompressed to a local
#              temporary file, then pg_restore -j 2; same checks)
#   stock      createdb DB && gunzip -c FILE | pg_restore -d DB
# Needs the PostgreSQL server packages and GNU time.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
size="${1:-1024}"

cargo build --release --quiet --manifest-path "$root/Cargo.toml"
backup="$root/target/release/backup"
# shellcheck source=benches/lib.sh
. "$root/benches/lib.sh"
export BACKUP_STATE_DIR="$work/state"
start_postgres
fill_postgres bench_source "$size"
mkdir -p "$work/policies"
policy source "$(postgres_source bench_source)" "$(local_destination "$work/store")" > "$work/policies/source.yaml"
"$backup" -q -p "$work/policies" run source
file="$(ls "$work"/store/source/*.pgdump.gz)"

read -r backup_s backup_rss < <(measure "$backup" -q -p "$work/policies" restore source --to restored_backup --yes)
read -r jobs_s jobs_rss < <(measure "$backup" -q -p "$work/policies" restore source --to restored_jobs --yes --jobs 2)
# Like `backup restore --to`, the stock restore creates its database.
read -r stock_s _ < <(measure bash -o pipefail -c "'$pg_bin/createdb' -h 127.0.0.1 -p $pg_port -U postgres restored_stock && gunzip -c '$file' | '$pg_bin/pg_restore' -h 127.0.0.1 -p $pg_port -U postgres -d restored_stock")
# All three hold the same rows.
for db in restored_backup restored_jobs restored_stock; do
    [ "$(psql -d "$db" -c 'SELECT count(*) FROM orders')" = "$(psql -d bench_source -c 'SELECT count(*) FROM orders')" ]
done
printf '%-8s %-12s %10s %10s %10s %16s %16s %12s\n' size compressed backup "backup -j2" stock "backup / stock" "backup-j2 / stock" "backup RSS"
printf '%-8s %-12s %9ss %9ss %9ss %16s %16s %8s MiB\n' "${size}MB" "$(( $(stat -c %s "$file") / 1048576 ))MiB" \
    "$backup_s" "$jobs_s" "$stock_s" "$(ratio "$backup_s" "$stock_s")" "$(ratio "$jobs_s" "$stock_s")" "$(( backup_rss / 1024 ))"
