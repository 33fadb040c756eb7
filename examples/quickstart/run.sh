#!/usr/bin/env bash
# The quickstart: build backup, create a small SQLite database, and take it
# through the commands that exist so far. Safe to run again; it only writes
# under examples/quickstart/ (data/ and backups/, both git-ignored).
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
