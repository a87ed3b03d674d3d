#!/usr/bin/env bash
# The Python package against the command line: builds both in release, puts the native module beside
# the package's Python files in a temporary folder, then runs bench/python.py with the Python tests'
# private environment (pyarrow, Polars; ~/.cache/sessionize/venv-python, made by `cargo test` or
# here). Arguments go to python.py (--events, --runs). Never part of `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sessionize/target}"
cargo build --release --workspace --lib --bin sessionize --bin sessionize-datagen
venv="$HOME/.cache/sessionize/venv-python"
if ! "$venv/bin/python" -c "import polars, pyarrow" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r crates/sessionize-python/requirements-test.txt
fi
site="$(mktemp -d)"
trap 'rm -rf "$site"' EXIT
mkdir "$site/sessionize"
cp crates/sessionize-python/python/sessionize/* "$site/sessionize/"
cp "$CARGO_TARGET_DIR/release/lib_sessionize.so" "$site/sessionize/_sessionize.abi3.so"
PYTHONPATH="$site" "$venv/bin/python" bench/python.py --bin "$CARGO_TARGET_DIR/release" "$@"
