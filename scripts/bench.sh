#!/usr/bin/env bash
# Relay's load benchmark, in one go: builds release binaries, then runs crates/relay-bench,
# which measures (a) a minimal axum endpoint, (b) the token read on SQLite, (c) on Postgres +
# Redis, (d) a 1,000-read stampede at expiry, and the RSS of 100,000 cached connections, and
# prints the table recorded in docs/BENCHMARKS.md. Loopback only. Needs wrk, psql, PostgreSQL
# and Redis (RELAY_TEST_POSTGRES_URL / RELAY_TEST_REDIS_URL, defaults: the local ones).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }
cargo build --release -q -p relay -p relay-bench
target_dir="${CARGO_TARGET_DIR:-target}"
exec "$target_dir/release/relay-bench" --relay-bin "$target_dir/release/relay" "$@"
