#!/usr/bin/env bash
# Incremental sessions tables against a full rebuild: a history (the wide benchmark export, made by
# bench/run.sh: --events N --users U), then a delivery of 1% new events (mostly the day after the
# history, one in ten of them 3 days late), applied with `sessions --into`; beside it, the full
# rebuild over both. Prints each step's wall time and peak memory, the files written, and whether
# the incremental table equals the rebuild. Never part of `cargo test`.
#   bench/incremental.sh [EVENTS] [USERS]     (default 10000000 50000)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sessionize/target}"
cargo build --release --bin sessionize
bin="$CARGO_TARGET_DIR/release/sessionize"
events="${1:-10000000}"
users="${2:-50000}"
history="$HOME/.cache/sessionize/bench/events-$events-$users-30-42-unsorted.parquet"
if [ ! -f "$history" ]; then
  echo "no $history: run bench/run.sh --events $events --users $users --paths sessions first" >&2
  exit 1
fi
work="$(mktemp -d "$HOME/.cache/sessionize/bench/incremental.XXXXXX")"
trap 'rm -rf "$work"' EXIT
timed() { # label, command...
  local label="$1"; shift
  /usr/bin/time -f "$label: %e s, %M KB peak" "$@" 2>&1 >/dev/null | grep -v '^note' || true
}
# The delivery: 1% of the history's events a day after its end, and 0.1% three days late.
"$bin" query "$history" "SELECT * EXCEPT (event_time), CASE WHEN random() < 0.1 THEN event_time - INTERVAL '3 days' ELSE event_time + INTERVAL '30 days' END AS event_time FROM events WHERE random() < 0.01" --output "$work/delivery.parquet" 2>/dev/null
echo "delivery: $("$bin" query "$work/delivery.parquet" "SELECT count(*) FROM events" --format csv | tail -1) events"
timed "first --into (the history)" "$bin" sessions "$history" --into "delta:$work/table"
before=$(find "$work/table" -name '*.parquet' | wc -l)
bytes_before=$(du -sb "$work/table" | cut -f1)
timed "incremental --into (the delivery)" "$bin" sessions "$history" "$work/delivery.parquet" --into "delta:$work/table"
after=$(find "$work/table" -name '*.parquet' | wc -l)
bytes_after=$(du -sb "$work/table" | cut -f1)
echo "files: $before before, $after after; bytes written by the delivery's run: $((bytes_after - bytes_before)) of $bytes_before"
timed "full rebuild (sessions --output delta:)" "$bin" sessions "$history" "$work/delivery.parquet" --output "delta:$work/full"
same=$("$bin" query --table "t=delta:$work/table" --table "f=delta:$work/full" --format csv \
  "SELECT (SELECT count(*) FROM (SELECT * FROM t EXCEPT SELECT * FROM f)) + (SELECT count(*) FROM (SELECT * FROM f EXCEPT SELECT * FROM t)) AS differing" | tail -1)
echo "rows differing between the incremental table and the rebuild: $same"
