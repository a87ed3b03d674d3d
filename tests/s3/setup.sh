#!/usr/bin/env bash
# Installs moto's S3-compatible server (from PyPI, into a private virtual environment) for the
# object-store tests, once per machine. Prints the path of the environment's bin folder.
# The environment lives at $SESSIONIZE_VENV, default ~/.cache/sessionize/venv-moto.
set -euo pipefail
venv="${SESSIONIZE_VENV:-$HOME/.cache/sessionize/venv-moto}"
mkdir -p "$(dirname "$venv")"
# One install at a time: the tests of tests/s3.rs run this at once, and two `python3 -m venv` of
# one folder failed on a new machine ("Unable to symlink ... are the same file").
exec 9>"$venv.lock"
flock 9
if [ ! -x "$venv/bin/moto_server" ] || ! "$venv/bin/python" -c "import boto3, moto" 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==5.2.5" >&2
fi
echo "$venv/bin"
