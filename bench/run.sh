#!/usr/bin/env bash
# The side-by-side benchmark: builds the release binaries, installs DuckDB and Polars into a private
# virtual environment (once), then runs bench.py. Arguments go to bench.py (--events, --users, ...).
# Never part of `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sessionize/target}"
cargo build --release --bin sessionize --bin sessionize-datagen
venv="${SESSIONIZE_BENCH_VENV:-$HOME/.cache/sessionize/venv-bench}"
if ! "$venv/bin/python" -c "import duckdb, polars" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "duckdb==2.0.0" "polars==2.1.0"
fi
exec "$venv/bin/python" bench/bench.py --bin "$CARGO_TARGET_DIR/release" "$@"
