# Shared by the benchmark scripts: a throwaway PostgreSQL cluster, a
# throwaway MariaDB server, a throwaway Garage node, and a timer. Source it after setting `root`; it
# creates "$work" and removes it, with both servers, on exit.

work="$(mktemp -d /tmp/backup-bench.XXXXXX)"
chmod 755 "$work"
pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
stoppers=()
cleanup() {
    for stopper in "${stoppers[@]}"; do eval "$stopper" >/dev/null 2>&1 || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# stop_process PID: SIGTERM, up to 5 s to exit, then SIGKILL.
stop_process() {
    kill "$1" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# seconds and peak RSS (KiB) of a command; needs GNU time (Debian package `time`)
measure() { /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null; cat "$work/time"; }

ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }

as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# start_postgres: a cluster on a free port; sets pg_port, PGHOST, PGPORT, PGUSER.
start_postgres() {
    [ "$(id -u)" -eq 0 ] && chown postgres: "$work"
    pg_port="$(free_port)"
    as_postgres "$pg_bin/initdb" -D "$work/data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
    as_postgres "$pg_bin/pg_ctl" -D "$work/data" -l "$work/server.log" -w \
        -o "-p $pg_port -k $work -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_wal_size=4GB" start >/dev/null
    stoppers+=("as_postgres '$pg_bin/pg_ctl' -D '$work/data' -m immediate -w stop")
    export PGHOST=127.0.0.1 PGPORT="$pg_port" PGUSER=postgres
}

psql() { "$pg_bin/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U postgres "$@"; }

# fill_postgres DB SIZE_MB: a database of realistic rows (random hex text,
# words and numbers, not pgbench's blank padding), about 200 bytes a row.
fill_postgres() {
    local db="$1" size="$2"
    psql -d postgres -c "CREATE DATABASE $db"
    local rows=$(( size * 1024 * 1024 / 200 ))
    psql -d "$db" -c "CREATE TABLE orders (id bigint, customer text, note text, quantity int, price double precision, created timestamptz);
        INSERT INTO orders SELECT i, md5(random()::text) || md5(random()::text),
            substr(repeat(md5(random()::text) || ' lorem ipsum dolor ' || (random() * 1e9)::bigint, 3), 1, 40 + (random() * 40)::int),
            (random() * 1000)::int, random() * 10000, now() - random() * interval '365 days'
        FROM generate_series(1, $rows) i;"
    psql -d "$db" -c "VACUUM ANALYZE orders"
}

# start_mariadb: mariadb-install-db + mariadbd (--no-defaults: nothing of the
# machine's own server) on a free port and the socket "$work/mysql.sock"; as
# root the server runs as `mysql` and root connects over the socket.
start_mariadb() {
    mkdir -p "$work/mysql"
    local user=()
    if [ "$(id -u)" -eq 0 ]; then chown mysql: "$work/mysql"; user=(--user=mysql); fi
    mariadb-install-db --no-defaults --datadir="$work/mysql/data" --skip-test-db "${user[@]}" >/dev/null
    mysql_socket="$work/mysql/sock"
    mariadbd --no-defaults --datadir="$work/mysql/data" --port="$(free_port)" --bind-address=127.0.0.1 \
        --socket="$mysql_socket" --log-error="$work/mysql/err.log" --pid-file="$work/mysql/pid" \
        --skip-log-bin --innodb-buffer-pool-size=256M --innodb-flush-log-at-trx-commit=0 "${user[@]}" >/dev/null 2>&1 &
    stoppers+=("stop_process $!")
    until mariadb_sql -e 'SELECT 1' >/dev/null 2>&1; do sleep 0.2; done
}

mariadb_sql() { mariadb --no-defaults --socket="$mysql_socket" -u root --batch --skip-column-names "$@"; }

# fill_mariadb DB SIZE_MB: the same realistic rows as fill_postgres.
fill_mariadb() {
    local db="$1" size="$2"
    local rows=$(( size * 1024 * 1024 / 200 ))
    mariadb_sql -e "CREATE DATABASE $db"
    mariadb_sql "$db" -e "CREATE TABLE orders (id bigint, customer text, note text, quantity int, price double, created timestamp NULL);
        INSERT INTO orders SELECT seq, CONCAT(MD5(RAND()), MD5(RAND())),
            SUBSTR(REPEAT(CONCAT(MD5(RAND()), ' lorem ipsum dolor ', FLOOR(RAND() * 1e9)), 3), 1, 40 + FLOOR(RAND() * 40)),
            FLOOR(RAND() * 1000), RAND() * 10000, NOW() - INTERVAL FLOOR(RAND() * 365 * 86400) SECOND
        FROM seq_1_to_$rows;"
}

# mysql_source DB: a source block for DB on the throwaway MariaDB server.
mysql_source() {
    printf '    mysql:\n      host: localhost\n      socket: %s\n      user: root\n      database: %s\n' "$mysql_socket" "$1"
}

garage_bin() { command -v garage || echo "${CARGO_HOME:-$HOME/.cargo}/bin/garage"; }

# start_garage: a single node on loopback with bucket `bench` and a key;
# sets S3_ENDPOINT, and exports the key as TEST_S3_KEY_ID/TEST_S3_SECRET
# (for policies) and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (for the AWS CLI).
start_garage() {
    local garage rpc s3 admin
    garage="$(garage_bin)"
    rpc="$(free_port)" s3="$(free_port)" admin="$(free_port)"
    mkdir -p "$work/garage"
    cat > "$work/garage/garage.toml" <<TOML
metadata_dir = "$work/garage/meta"
data_dir = "$work/garage/data"
db_engine = "sqlite"
metadata_fsync = false
data_fsync = false
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(openssl rand -hex 32)"
[s3_api]
api_bind_addr = "127.0.0.1:$s3"
s3_region = "garage"
[admin]
api_bind_addr = "127.0.0.1:$admin"
admin_token = "$(openssl rand -hex 32)"
TOML
    chmod 600 "$work/garage/garage.toml"
    g() { "$garage" -c "$work/garage/garage.toml" "$@"; }
    # The binary itself in the background, not the function `g`: `$!` of a
    # backgrounded function is the subshell running it, and killing that
    # left the server running after every benchmark.
    "$garage" -c "$work/garage/garage.toml" server > "$work/garage/server.log" 2>&1 &
    stoppers+=("stop_process $!")
    until g status >/dev/null 2>&1; do sleep 0.2; done
    local node
    node="$(g node id --quiet | cut -d@ -f1)"
    g layout assign -z dc1 -c 10G "$node" >/dev/null
    g layout apply --version 1 >/dev/null
    until g health --quiet >/dev/null 2>&1; do sleep 0.2; done
    g bucket create bench >/dev/null
    g key create bench >/dev/null
    g bucket allow --read --write --owner bench --key bench >/dev/null
    local info
    info="$(g key info bench --show-secret)"
    TEST_S3_KEY_ID="$(sed -n 's/^Key ID: *//p' <<<"$info")"
    TEST_S3_SECRET="$(sed -n 's/^Secret key: *//p' <<<"$info")"
    export TEST_S3_KEY_ID TEST_S3_SECRET
    export AWS_ACCESS_KEY_ID="$TEST_S3_KEY_ID" AWS_SECRET_ACCESS_KEY="$TEST_S3_SECRET"
    S3_ENDPOINT="http://127.0.0.1:$s3"
    printf '[default]\nregion = garage\ns3 =\n    addressing_style = path\n' > "$work/aws-config"
    export AWS_CONFIG_FILE="$work/aws-config" AWS_SHARED_CREDENTIALS_FILE="$work/none" AWS_EC2_METADATA_DISABLED=true
}

aws_cli() {
    local venv="$root/target/ci-venv/bin/aws"
    if [ -x "$venv" ]; then "$venv" --endpoint-url "$S3_ENDPOINT" "$@"; else aws --endpoint-url "$S3_ENDPOINT" "$@"; fi
}

# policy NAME SOURCE-YAML DESTINATION-YAML: a policy, daily, keeping
# ${keep:-1} backups, with ${codec} (compression/encryption YAML under
# `spec:`) when set.
policy() {
    cat <<YAML
apiVersion: backup/v1
kind: BackupPolicy
metadata:
  name: $1
spec:
  source:
$2
  schedule:
    cron: "@daily"
  retention:
    keep-last: ${keep:-1}
  destinations:
$3
${codec:-}
YAML
}

# postgres_source DB: a source block for DB on the throwaway cluster.
postgres_source() {
    printf '    postgres:\n      url: postgresql://postgres@127.0.0.1:%s/%s\n' "$pg_port" "$1"
}

# local_destination PATH: a destination block for a local folder.
local_destination() {
    printf '    - local:\n        path: %s\n' "$1"
}

# s3_destination PREFIX: a policy's destination block for the bench bucket.
s3_destination() {
    cat <<YAML
    - s3:
        bucket: bench
        prefix: $1
        endpoint: $S3_ENDPOINT
        region: garage
        path-style: true
        access-key-id: \${env:TEST_S3_KEY_ID}
        secret-access-key: \${env:TEST_S3_SECRET}
YAML
}
