#!/usr/bin/env bash
# The quickstart: build backup, create a small SQLite database, then the
# GitOps loop: plan (a backup is due), apply (take it), plan again (nothing
# to do); list and verify the backups, run a restore drill and show a
# restore plan. Safe to run again. It writes only under
# examples/quickstart/ (data/, backups/ and state/, all git-ignored) and
# leaves your crontab alone (--no-crontab).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

echo "==> Building backup (release)"
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
backup="$root/target/release/backup"

echo "==> Creating the demo database examples/quickstart/data/app.db"
mkdir -p "$here/data"
sql="CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, total_cents INTEGER NOT NULL, created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
INSERT INTO orders (customer, total_cents) SELECT 'customer-' || value, value * 100 FROM (WITH RECURSIVE n(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM n WHERE value < 1000) SELECT value FROM n);"
if command -v sqlite3 >/dev/null; then
    sqlite3 "$here/data/app.db" "$sql"
else
    python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()' "$here/data/app.db" "$sql"
fi

echo "==> backup validate"
"$backup" --policies "$here/policy.yaml" validate

# Locks and cron logs go here instead of ~/.local/state/backup.
export BACKUP_STATE_DIR="$here/state"
policies=(--policies "$here/policy.yaml")

echo "==> backup plan  (exit 2: changes pending)"
status=0
"$backup" "${policies[@]}" plan --no-crontab --detailed-exitcode || status=$?
[ "$status" -le 2 ] || exit "$status"

echo "==> backup apply --auto-approve"
"$backup" "${policies[@]}" apply --no-crontab --auto-approve

echo "==> backup plan  (exit 0: nothing to do)"
"$backup" "${policies[@]}" plan --no-crontab --detailed-exitcode

echo "==> backup list"
"$backup" "${policies[@]}" list

echo "==> backup verify"
"$backup" "${policies[@]}" verify

echo "==> backup verify --restore-test  (a restore drill into a scratch file, checked, removed)"
"$backup" "${policies[@]}" verify --restore-test

echo "==> backup restore quickstart --dry-run  (the restore plan; nothing is changed)"
"$backup" "${policies[@]}" restore quickstart --dry-run

echo
echo "The backups are in examples/quickstart/backups/quickstart/: <id>.sqlite.gz and its <id>.json sidecar."
