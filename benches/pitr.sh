#!/usr/bin/env bash
# Point-in-time recovery benchmark: `backup`'s base backup, WAL archiving and
# restore-to-time against pgBackRest (and pg_basebackup), in one run on one
# throwaway cluster.
#
#   benches/pitr.sh                       (SCALE=100: pgbench -i -s 100, about 1.6 GB)
#   SCALE=10 DURATION=20 benches/pitr.sh  (a smoke run)
#   BACKUP=target/debug/backup benches/pitr.sh   (another build; default: a release build)
#
# One cluster (initdb + pg_ctl as `postgres`, a free port, wal_level=replica,
# archive_mode=on, track_commit_timestamp=on) whose archive_command feeds both
# archives, one after the other, each timed (GNU time) into a log:
#   backup -p POLICY wal push app %p && pgbackrest --stanza=bench archive-push %p
# Then:
#   1. pgbench -i -s $SCALE, and the archive drained;
#   2. base backups, each timed with peak RSS (the largest process of its tree):
#        backup      backup run app --physical    (pg_basebackup -Ft -X none, zstd 3, SHA-256, fsync, sidecar)
#        pgbackrest  pgbackrest --type=full backup (compress-type=zst level 3, process-max=2, local repo)
#        basebackup  pg_basebackup -Ft --compress=client-zstd -X none -c fast
#        source      pg_basebackup -D - -Ft -X none -c fast > /dev/null (the stream `backup` reads, uncompressed)
#      each after a CHECKPOINT;
#   3. pgbench -c 4 -j 2 -T $DURATION while both archive: WAL produced per
#      second, segments archived per second (pg_stat_archiver), the backlog
#      and archive lag sampled every 2 s, the lag at the end, each push's time;
#   4. T noted in the middle of that run; restore to T:
#        backup      backup restore app --target-time T --to DIR1 --yes
#                    (WAL chain proved, unpacked, pg_verifybackup, replayed, promoted, checked, stopped)
#        pgbackrest  pgbackrest --type=time --target=T --target-action=promote restore,
#                    then the server started and waited for until promoted
#      and both restored clusters' pgbench_history row counts compared.
# Everything runs as `postgres` when started as root. Needs PostgreSQL server
# packages (pgbench, pg_basebackup), GNU time, zstd; installs pgbackrest with
# apt-get when it is missing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
scale="${SCALE:-100}"
duration="${DURATION:-60}"

if [ -z "${BACKUP:-}" ]; then
    cargo build --release --quiet --manifest-path "$root/Cargo.toml"
    BACKUP="$root/target/release/backup"
fi
backup="$(cd "$(dirname "$BACKUP")" && pwd)/$(basename "$BACKUP")"
if ! command -v pgbackrest >/dev/null; then
    echo "installing pgbackrest (apt-get)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbackrest >/dev/null
fi
# shellcheck source=benches/lib.sh
. "$root/benches/lib.sh"
[ "$(id -u)" -eq 0 ] && chown postgres: "$work"
logs="$work/logs"
as_postgres mkdir -p "$logs" "$work/state" "$work/store" "$work/pgbackrest/repo" "$work/pgbackrest/log" "$work/pgbackrest/lock"
bin="$pg_bin"
as_pg=()
[ "$(id -u)" -eq 0 ] && as_pg=(runuser -u postgres --)
pg_port="$(free_port)"
export PGHOST=127.0.0.1 PGPORT="$pg_port" PGUSER=postgres

# timed NAME LOG COMMAND...: runs COMMAND (its output to LOG), sets NAME_s
# (seconds) and NAME_rss (peak RSS, MiB); on failure shows the log and stops.
timed() {
    local name="$1" log="$2"
    shift 2
    if ! /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$log" 2>&1; then
        echo "FAILED: $* (log $log):" >&2
        tail -n 40 "$log" >&2
        exit 1
    fi
    local seconds kib
    read -r seconds kib < "$work/time"
    printf -v "${name}_s" '%s' "$seconds"
    printf -v "${name}_rss" '%s' "$(( kib / 1024 ))"
}

pgbr() { as_postgres pgbackrest --config="$work/pgbackrest/pgbackrest.conf" --stanza=bench "$@"; }
mib() { python3 -c "print(f'{$1 / 1048576:.0f}')"; }
bk() { as_postgres "$backup" -p "$work/policy.yaml" --state-dir "$work/state" "$@"; }

# --- the policy, pgBackRest's configuration, the archive command ---------------
cat > "$work/policy.yaml" <<YAML
apiVersion: backup/v1
kind: BackupPolicy
metadata:
  name: app
spec:
  source:
    postgres:
      host: 127.0.0.1
      port: $pg_port
      user: postgres
      database: postgres
  schedule: { cron: "0 1 * * *" }
  retention: { keep-last: 3 }
  physical:
    schedule: { cron: "0 2 * * 0", timezone: UTC }
    retention: { keep-last: 2 }
  compression:
    zstd: { level: 3 }
  destinations:
    - local: { path: $work/store }
YAML
cat > "$work/pgbackrest/pgbackrest.conf" <<INI
[global]
repo1-path=$work/pgbackrest/repo
repo1-retention-full=2
log-path=$work/pgbackrest/log
lock-path=$work/pgbackrest/lock
log-level-console=warn
log-level-file=info
compress-type=zst
compress-level=3
process-max=2
start-fast=y

[bench]
pg1-path=$work/data
pg1-port=$pg_port
pg1-socket-path=$work
pg1-user=postgres
INI
# Both pushes, one after the other, each timed: "<seconds> <peak RSS KiB>" a
# line, in the order of the segments (pgbackrest check wants its name in the line; %% is PostgreSQL's %).
archive_command="/usr/bin/time -f \"%%e %%M\" -a -o $logs/push-backup.times $backup -q -p $work/policy.yaml --state-dir $work/state wal push app %p"
archive_command+=" && /usr/bin/time -f \"%%e %%M\" -a -o $logs/push-pgbackrest.times pgbackrest --config=$work/pgbackrest/pgbackrest.conf --stanza=bench archive-push %p"
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$work"

# --- the cluster ---------------------------------------------------------------
as_postgres "$bin/initdb" -D "$work/data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
cat >> "$work/data/postgresql.conf" <<CONF
port = $pg_port
unix_socket_directories = '$work'
listen_addresses = '127.0.0.1'
fsync = off
max_wal_size = 4GB
wal_level = replica
archive_mode = on
archive_command = '$archive_command'
track_commit_timestamp = on
CONF
as_postgres "$bin/pg_ctl" -D "$work/data" -l "$logs/server.log" -w start >/dev/null
stoppers+=("as_postgres '$bin/pg_ctl' -D '$work/data' -m immediate -w stop")
pgbr stanza-create >"$logs/stanza-create.log" 2>&1 || { cat "$logs/stanza-create.log" >&2; exit 1; }

# archive_backlog: segments waiting (.ready) and the age in seconds of the oldest of them.
archive_backlog() {
    psql -d postgres -F ' ' -c "SELECT count(*), coalesce(extract(epoch FROM now() - min(modification)), 0)::numeric(10,1)
        FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'"
}
# drain: switches to a new segment and waits (up to 10 minutes) until every
# finished one is archived; prints the seconds it took. A failed push is
# retried by PostgreSQL; the failures are counted in the results.
drain() {
    local start
    start="$(date +%s.%N)"
    psql -d postgres -c "SELECT pg_switch_wal()" >/dev/null
    until [ "$(archive_backlog | cut -d' ' -f1)" = 0 ]; do
        if python3 -c "import sys; sys.exit($(date +%s.%N) - $start < 600)"; then
            echo "the archive did not drain in 10 minutes; archive_command messages in $logs/server.log:" >&2
            grep -i 'archive' "$logs/server.log" | tail -n 10 >&2
            exit 1
        fi
        sleep 0.5
    done
    python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')"
}

# --- 1. load ----------------------------------------------------------------------
echo "loading: pgbench -i -s $scale" >&2
timed load "$logs/pgbench-init.log" "$bin/pgbench" -i -s "$scale" -q postgres
load_drain_s="$(drain)"
db_bytes="$(psql -d postgres -c "SELECT sum(pg_database_size(datname)) FROM pg_database")"
pgbr check >"$logs/pgbackrest-check.log" 2>&1 || { cat "$logs/pgbackrest-check.log" >&2; exit 1; }

# --- 2. base backups ----------------------------------------------------------------
echo "base backups" >&2
psql -d postgres -c CHECKPOINT
timed base_backup "$logs/backup-run.log" "${as_pg[@]}" "$backup" -p "$work/policy.yaml" --state-dir "$work/state" run app --physical
base_backup_bytes="$(find "$work/store/app" -maxdepth 1 -name '*.base.tar.*' -printf '%s\n' | awk '{ s += $1 } END { print s }')"
psql -d postgres -c CHECKPOINT
timed base_pgbr "$logs/pgbackrest-backup.log" "${as_pg[@]}" pgbackrest --config="$work/pgbackrest/pgbackrest.conf" --stanza=bench --type=full backup
base_pgbr_bytes="$(du -sb "$work/pgbackrest/repo/backup" | cut -f1)"
psql -d postgres -c CHECKPOINT
timed base_pgbb "$logs/pg_basebackup.log" "${as_pg[@]}" "$bin/pg_basebackup" -h 127.0.0.1 -p "$pg_port" -U postgres \
    -D "$work/basebackup" -Ft --compress=client-zstd -X none -c fast
base_pgbb_bytes="$(du -sb "$work/basebackup" | cut -f1)"
rm -rf "$work/basebackup"
psql -d postgres -c CHECKPOINT
timed base_source "$logs/pg_basebackup-source.log" "${as_pg[@]}" bash -o pipefail -c \
    "'$bin/pg_basebackup' -h 127.0.0.1 -p '$pg_port' -U postgres -D - -Ft -X none -c fast > /dev/null"
base_drain_s="$(drain)"

# --- 3. WAL under load, 4. T in the middle ----------------------------------------------
echo "pgbench -c 4 -j 2 -T $duration, archiving" >&2
read -r archived_before < <(psql -d postgres -c "SELECT archived_count FROM pg_stat_archiver")
lsn_before="$(psql -d postgres -c "SELECT pg_current_wal_lsn()")"
pushed() { grep -c '^[0-9]' "$1" || true; }
pushes_before="$(pushed "$logs/push-backup.times")"
pgbr_pushes_before="$(pushed "$logs/push-pgbackrest.times")"
: > "$logs/backlog.samples"
( while sleep 2; do archive_backlog >> "$logs/backlog.samples" 2>/dev/null || true; done ) &
sampler=$!
stoppers+=("stop_process $sampler")
start="$(date +%s.%N)"
"$bin/pgbench" -c 4 -j 2 -T "$duration" postgres > "$logs/pgbench-run.log" 2>&1 &
pgbench_pid=$!
sleep "$(( duration / 2 ))"
target="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
target_pg="$(date -u -d "$target" '+%Y-%m-%d %H:%M:%S+00')"
wait "$pgbench_pid" || { cat "$logs/pgbench-run.log" >&2; exit 1; }
elapsed="$(python3 -c "print($(date +%s.%N) - $start)")"
stop_process "$sampler"
# At the end of the load: what is archived, and how old is the newest archived WAL.
read -r archived_after archive_age < <(psql -d postgres -F ' ' -c \
    "SELECT archived_count, extract(epoch FROM now() - last_archived_time)::numeric(10,1) FROM pg_stat_archiver")
lsn_after="$(psql -d postgres -c "SELECT pg_current_wal_lsn()")"
wal_bytes="$(psql -d postgres -c "SELECT pg_wal_lsn_diff('$lsn_after', '$lsn_before')")"
read -r backlog_end backlog_age_end < <(archive_backlog)
newest_object="$(find "$work/store/app/wal" -type f -printf '%T@\n' | sort -n | tail -n 1)"
store_age="$(python3 -c "print(f'{$(date +%s.%N) - $newest_object:.1f}')")"
read -r backlog_max backlog_age_max < <(awk '$1 > c { c = $1 } $2 > a { a = $2 } END { print c + 0, a + 0 }' "$logs/backlog.samples")
tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$logs/pgbench-run.log" | head -n 1)"
run_drain_s="$(drain)"
# Each tool's own push time over the segments of the run (the drain included).
push_stats() { # FILE FROM: mean seconds, max seconds, peak RSS MiB of the pushes after line FROM
    grep '^[0-9]' "$1" | tail -n "+$(( $2 + 1 ))" | awk '{ s += $1; n++; if ($1 > m) m = $1; if ($2 > r) r = $2 } END { printf "%d %.2f %.2f %d\n", n, s / n, m, r / 1024 }'
}
read -r pushes push_mean push_max push_rss < <(push_stats "$logs/push-backup.times" "$pushes_before")
read -r _ pgbr_push_mean pgbr_push_max pgbr_push_rss < <(push_stats "$logs/push-pgbackrest.times" "$pgbr_pushes_before")

# --- 4. restore to T -----------------------------------------------------------------
echo "restores to $target" >&2
timed restore_backup "$logs/backup-restore.log" "${as_pg[@]}" "$backup" -p "$work/policy.yaml" --state-dir "$work/state" \
    restore app --target-time "$target" --to "$work/restored-backup" --yes
as_postgres mkdir -m 700 "$work/restored-pgbackrest"
timed restore_pgbr "$logs/pgbackrest-restore.log" "${as_pg[@]}" pgbackrest --config="$work/pgbackrest/pgbackrest.conf" --stanza=bench \
    --type=time "--target=$target_pg" --target-action=promote --pg1-path="$work/restored-pgbackrest" restore
pgbr_port="$(free_port)"
promote_start="$(date +%s.%N)"
as_postgres "$bin/pg_ctl" -D "$work/restored-pgbackrest" -l "$logs/restored-pgbackrest.log" -w -t 3600 \
    -o "-p $pgbr_port -c archive_mode=off" start >/dev/null
stoppers+=("as_postgres '$bin/pg_ctl' -D '$work/restored-pgbackrest' -m immediate -w stop")
until [ "$(pg_port="$pgbr_port" psql -d postgres -c "SELECT pg_is_in_recovery()" 2>/dev/null)" = f ]; do sleep 0.1; done
promote_s="$(python3 -c "print(f'{$(date +%s.%N) - $promote_start:.2f}')")"
restore_pgbr_total="$(python3 -c "print(f'{$restore_pgbr_s + $promote_s:.2f}')")"
rows_pgbr="$(pg_port="$pgbr_port" psql -d postgres -c "SELECT count(*) FROM pgbench_history")"
as_postgres "$bin/pg_ctl" -D "$work/restored-pgbackrest" -m fast -w stop >/dev/null
# backup's restore left its cluster promoted and stopped: start it to count the same rows.
check_port="$(free_port)"
as_postgres "$bin/pg_ctl" -D "$work/restored-backup" -l "$logs/restored-backup.log" -w \
    -o "-p $check_port -c archive_mode=off" start >/dev/null
stoppers+=("as_postgres '$bin/pg_ctl' -D '$work/restored-backup' -m immediate -w stop")
rows_backup="$(pg_port="$check_port" psql -d postgres -c "SELECT count(*) FROM pgbench_history")"
as_postgres "$bin/pg_ctl" -D "$work/restored-backup" -m fast -w stop >/dev/null
rows_source="$(psql -d postgres -c "SELECT count(*) FROM pgbench_history")"

# --- results ---------------------------------------------------------------------------
seg=16777216
wal_rate="$(python3 -c "print(f'{$wal_bytes / $elapsed / 1048576:.2f}')")"
wal_seg_rate="$(python3 -c "print(f'{$wal_bytes / $seg / $elapsed:.3f}')")"
push_rate="$(python3 -c "print(f'{($archived_after - $archived_before) / $elapsed:.3f}')")"
push_capacity="$(python3 -c "print(f'{1 / $push_mean:.2f}')")"
cat <<RESULTS

PITR benchmark, $(date -u +%Y-%m-%d), SCALE=$scale DURATION=${duration}s, $(nproc) cores, PostgreSQL $("$bin/postgres" -V | awk '{ print $3 }'), $(pgbackrest version)
database            $(mib "$db_bytes") MiB (pgbench -i -s $scale in ${load_s} s; archive drained ${load_drain_s} s later)

base backup         seconds  peak RSS   stored
  backup            ${base_backup_s} s  ${base_backup_rss} MiB  $(mib "$base_backup_bytes") MiB
  pgbackrest        ${base_pgbr_s} s  ${base_pgbr_rss} MiB  $(mib "$base_pgbr_bytes") MiB
  pg_basebackup     ${base_pgbb_s} s  ${base_pgbb_rss} MiB  $(mib "$base_pgbb_bytes") MiB
  source limit      ${base_source_s} s  (pg_basebackup -D - -Ft, uncompressed, > /dev/null)
  backup / pgbackrest time      $(ratio "$base_backup_s" "$base_pgbr_s")x   (target <= 1.0)
  backup / pg_basebackup time   $(ratio "$base_backup_s" "$base_pgbb_s")x
  backup / source limit         $(ratio "$base_backup_s" "$base_source_s")x
  backup peak RSS               ${base_backup_rss} MiB   (target < 64 MiB)

WAL under pgbench -c 4 -j 2 -T $duration ($tps tps)
  WAL produced                  $(mib "$wal_bytes") MiB, ${wal_rate} MiB/s = ${wal_seg_rate} segments/s
  archived (both pushes)        $(( archived_after - archived_before )) segments, ${push_rate} segments/s
  backup wal push               ${pushes} pushes, mean ${push_mean} s, max ${push_max} s (capacity ${push_capacity} segments/s), peak RSS ${push_rss} MiB
  pgbackrest archive-push       mean ${pgbr_push_mean} s, max ${pgbr_push_max} s, peak RSS ${pgbr_push_rss} MiB
  backlog during the run        at most ${backlog_max} segments waiting, oldest ${backlog_age_max} s
  at the end                    ${backlog_end} waiting (oldest ${backlog_age_end} s); last archived ${archive_age} s ago; newest object in wal/ ${store_age} s old
  archive drained               ${run_drain_s} s after the run   (target: lag < 60 s)
  failed archive_command runs   $(psql -d postgres -c "SELECT failed_count FROM pg_stat_archiver") in the whole benchmark

restore to T = $target (middle of the run)
  backup restore --target-time  ${restore_backup_s} s (peak RSS ${restore_backup_rss} MiB; includes pg_verifybackup, replay, promote, checks, stop)
  pgbackrest restore            ${restore_pgbr_s} s + start and promote ${promote_s} s = ${restore_pgbr_total} s
  backup / pgbackrest           $(ratio "$restore_backup_s" "$restore_pgbr_total")x
  pgbench_history rows at T     backup ${rows_backup}, pgbackrest ${rows_pgbr} (source now ${rows_source})
RESULTS
echo
echo "backup restore's steps:"
grep -E '^(done|FAILED)' "$logs/backup-restore.log" || true
if [ -n "${KEEP_LOGS:-}" ]; then rm -rf "$KEEP_LOGS" && cp -a "$logs" "$KEEP_LOGS" && echo "logs kept in $KEEP_LOGS"; fi
