#!/usr/bin/env bash
# Codec benchmark: `backup run` with gzip-6, zstd-3 and zstd-3 + age against
# the zstd CLI pipeline and the source limit, and a zstd restore against
# `zstd -dc | pg_restore`, in one run on one machine.
#
#   benches/pg_codec.sh [SIZE_MB ...]      (default: 100 1024)
#
# Same throwaway cluster and realistic rows as benches/pg_backup.sh. For each size:
#   gzip      backup run, gzip level 6 (the default)
#   zstd      backup run, zstd level 3 on every core
#   zstd+age  backup run, zstd level 3, encrypted to one age recipient
#   pipeline  pg_dump -Fc -Z0 | zstd -3 -T2 > f; sha256sum f
#   source    pg_dump -Fc -Z0 > /dev/null
#   restore   backup restore --to a new database, of the zstd backup
#   manual    zstd -dc f | pg_restore -d a new database
# Needs GNU time (/usr/bin/time), zstd and age-keygen.
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
age-keygen -o "$work/key.txt" 2>/dev/null
recipient="$(age-keygen -y "$work/key.txt")"
threads="$(nproc)"

printf '%-6s %-8s | %8s %8s %9s %8s %8s | %8s %8s | %9s %9s %9s | %7s %7s %7s | %s\n' \
    size dump gzip zstd zstd+age pipeline source restore manual \
    "z/source" "age cost" "pipe/z" "gz MiB" "zst MiB" "RSS MiB" "restore/manual"
for size in "${sizes[@]}"; do
    db="codec_${size}"
    fill_postgres "$db" "$size"
    dump_size="$("$bin/pg_dump" -Fc -Z0 -d "$db" | wc -c)"
    run_with() { # NAME CODEC-YAML: seconds, peak RSS KiB and stored bytes of one backup
        local name="$1"
        rm -rf "$work/store"
        mkdir -p "$work/store"
        codec="$2" policy "$name" "$(postgres_source "$db")" "$(local_destination "$work/store")" > "$work/$name.yaml"
        read -r seconds rss < <(measure "$backup" -q -p "$work/$name.yaml" run "$name")
        local stored
        stored="$(find "$work/store/$name" -name '*.gz' -o -name '*.zst' -o -name '*.age' | xargs stat -c %s)"
        echo "$seconds $rss $stored"
    }
    read -r gzip_s gzip_rss gzip_bytes < <(run_with gz "")
    read -r age_s age_rss _ < <(run_with za "$(printf '  compression:\n    zstd: {level: 3}\n  encryption:\n    age:\n      recipients: [%s]\n' "$recipient")")
    read -r zstd_s zstd_rss zstd_bytes < <(run_with zs "$(printf '  compression:\n    zstd: {level: 3}\n')")
    read -r pipeline_s _ < <(measure bash -o pipefail -c \
        "'$bin/pg_dump' -Fc -Z0 -d '$db' | zstd -q -3 -T$threads > '$work/pipeline.zst' && sha256sum '$work/pipeline.zst'")
    read -r source_s _ < <(measure bash -c "'$bin/pg_dump' -Fc -Z0 -d '$db' > /dev/null")
    # Restores of the zstd backup (the store still holds it) into new databases.
    read -r restore_s _ < <(measure "$backup" -q -p "$work/zs.yaml" restore zs --to "${db}_restored" --yes)
    psql -d postgres -c "CREATE DATABASE ${db}_manual"
    read -r manual_s _ < <(measure bash -o pipefail -c \
        "zstd -dc '$work/pipeline.zst' | '$bin/pg_restore' -d '${db}_manual' -h 127.0.0.1 -p '$pg_port' -U postgres")
    rss="$(( $(printf '%s\n' "$gzip_rss" "$zstd_rss" "$age_rss" | sort -n | tail -1) / 1024 ))"
    printf '%-6s %-8s | %7ss %7ss %8ss %7ss %7ss | %7ss %7ss | %9s %9s %9s | %7s %7s %7s | %s\n' \
        "${size}MB" "$(( dump_size / 1048576 ))MiB" "$gzip_s" "$zstd_s" "$age_s" "$pipeline_s" "$source_s" \
        "$restore_s" "$manual_s" \
        "$(ratio "$zstd_s" "$source_s")x" \
        "$(python3 -c "print(f'{($age_s / $zstd_s - 1) * 100:+.0f}%')")" \
        "$(ratio "$pipeline_s" "$zstd_s")x" \
        "$(( gzip_bytes / 1048576 ))" "$(( zstd_bytes / 1048576 ))" "$rss" \
        "$(ratio "$restore_s" "$manual_s")x"
    psql -d postgres -c "DROP DATABASE ${db}_restored" -c "DROP DATABASE ${db}_manual" -c "DROP DATABASE $db"
    rm -rf "$work/store" "$work/pipeline.zst"
done
