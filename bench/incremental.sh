#!/usr/bin/env bash
# Incremental sessions tables against a full rebuild: a history (the wide benchmark export, made by
# bench/run.sh: --events N --users U), then a delivery of 1% new events (most after the history's
# end, one in ten up to 3 days late), applied with `sessions --into --partition-by-day`;
# beside it, the full rebuild over both, alternated with the delivery's run three times (the median
# ratio is the result). Prints each step's wall time and peak memory, the files written, and whether
# the incremental table equals the rebuild. Never part of `cargo test`.
# The same for `annotate --into` (every event with its session, against `annotate --output delta:`)
# follows.
#   bench/incremental.sh [EVENTS] [USERS] [sessions|annotate|both]     (default 10000000 50000 both)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sessionize/target}"
cargo build --release --bin sessionize
bin="$CARGO_TARGET_DIR/release/sessionize"
events="${1:-10000000}"
users="${2:-50000}"
paths="${3:-both}"
history="$HOME/.cache/sessionize/bench/events-$events-$users-30-42-unsorted.parquet"
if [ ! -f "$history" ]; then
  echo "no $history: run bench/run.sh --events $events --users $users --paths sessions first" >&2
  exit 1
fi
work="$(mktemp -d "$HOME/.cache/sessionize/bench/incremental.XXXXXX")"
trap 'rm -rf "$work"' EXIT
last=0
timed() { # label, command... (sets `last` to the step's seconds)
  local label="$1"; shift
  # The previous step's written files flushed first, so that no step pays for another's writeback.
  sync
  local measured="$work/time.txt"
  /usr/bin/time -o "$measured" -f "%e %M" "$@" 2>&1 >/dev/null | grep -v '^note' || true
  read -r last peak < <(tail -1 "$measured")
  echo "$label: $last s, $peak KB peak"
}
# The delivery: 1% of the history's events, copied with new times. Nine in ten fall in the day
# after the history's newest event; one in ten in the 3 days before it (up to 3 days late). Each
# keeps its place in the history's spread, squeezed into that window.
span="(SELECT min(arrow_cast(event_time, 'Int64')) AS s, max(arrow_cast(event_time, 'Int64')) AS m FROM events)"
"$bin" query "$history" "SELECT e.* EXCEPT (event_time), arrow_cast(CASE WHEN random() < 0.9 THEN r.m + (arrow_cast(e.event_time, 'Int64') - r.s) / 30 ELSE r.m - 259200000000 + (arrow_cast(e.event_time, 'Int64') - r.s) / 10 END, 'Timestamp(Microsecond, Some(\"UTC\"))') AS event_time FROM events e CROSS JOIN $span r WHERE random() < 0.01" --output "$work/delivery.parquet"
echo "delivery: $("$bin" query "$work/delivery.parquet" "SELECT count(*) FROM events" --format csv | tail -1) events"
if [ "$paths" != annotate ]; then
timed "first --into (the history)" "$bin" sessions "$history" --into "delta:$work/table" --partition-by-day
before=$(find "$work/table" -name '*.parquet' | wc -l)
bytes_before=$(du -sb "$work/table" | cut -f1)
# The delivery's run and the rebuild, alternated three times: this VM's speed drifts by a third
# within minutes (and is slower right after the first run's minute of work), so each ratio
# compares two runs made side by side, and the median of three is the result. Each delivery run
# starts from the table the first run built (hard-linked: a run writes new files and never
# changes one in place).
cp -al "$work/table" "$work/base"
ratios=()
for run in 1 2 3; do
  rm -rf "$work/table" && cp -al "$work/base" "$work/table"
  timed "incremental --into (the delivery), run $run" "$bin" sessions "$history" "$work/delivery.parquet" --into "delta:$work/table" --partition-by-day
  incremental=$last
  rm -rf "$work/full"
  timed "full rebuild (sessions --output delta:), run $run" "$bin" sessions "$history" "$work/delivery.parquet" --output "delta:$work/full" --partition-by-day
  ratios+=("$(awk -v a="$incremental" -v b="$last" 'BEGIN { printf "%.3f", a / b }')")
done
echo "incremental / rebuild, run by run: ${ratios[*]}; median $(printf '%s\n' "${ratios[@]}" | sort -n | sed -n 2p)"
after=$(find "$work/table" -name '*.parquet' | wc -l)
bytes_after=$(du -sb "$work/table" | cut -f1)
echo "files: $before before, $after after; bytes written by the delivery's run: $((bytes_after - bytes_before)) of $bytes_before"
same=$("$bin" query --table "t=delta:$work/table" --table "f=delta:$work/full" --format csv \
  "SELECT (SELECT count(*) FROM (SELECT * FROM t EXCEPT SELECT * FROM f)) + (SELECT count(*) FROM (SELECT * FROM f EXCEPT SELECT * FROM t)) AS differing" | tail -1)
echo "rows differing between the incremental table and the rebuild: $same"
fi
[ "$paths" = sessions ] && exit 0
echo
echo "annotate --into (every event with its session):"
timed "first annotate --into (the history)" "$bin" annotate "$history" --into "delta:$work/events"
bytes_before=$(du -sb "$work/events" | cut -f1)
# Alternated with the full run three times, each delivery run from the table the first run built,
# as for the sessions table above.
cp -al "$work/events" "$work/events_base"
ratios=()
for run in 1 2 3; do
  rm -rf "$work/events" && cp -al "$work/events_base" "$work/events"
  timed "incremental annotate --into (the delivery), run $run" "$bin" annotate "$history" "$work/delivery.parquet" --into "delta:$work/events"
  incremental=$last
  rm -rf "$work/events_full"
  timed "full annotate --output delta:, run $run" "$bin" annotate "$history" "$work/delivery.parquet" --output "delta:$work/events_full"
  ratios+=("$(awk -v a="$incremental" -v b="$last" 'BEGIN { printf "%.3f", a / b }')")
done
echo "incremental / full run, run by run: ${ratios[*]}; median $(printf '%s\n' "${ratios[@]}" | sort -n | sed -n 2p)"
bytes_after=$(du -sb "$work/events" | cut -f1)
echo "bytes written by the delivery's run: $((bytes_after - bytes_before)) of $bytes_before"
if [ "$events" -le 20000000 ]; then
  same=$("$bin" query --table "t=delta:$work/events" --table "f=delta:$work/events_full" --format csv \
    "SELECT (SELECT count(*) FROM (SELECT * EXCLUDE (_sessionize_file, _sessionize_day) FROM t EXCEPT ALL SELECT * FROM f)) + (SELECT count(*) FROM (SELECT * FROM f EXCEPT ALL SELECT * EXCLUDE (_sessionize_file, _sessionize_day) FROM t)) AS differing" | tail -1)
  echo "events differing between the incremental table and the full run: $same"
else
  # Every column of 100M wide events does not fit a hash table here: the sessions the events
  # carry instead (each actor's session ids and numbers, with their events' count, first and last
  # times), in both directions.
  per_session="SELECT user_id, session_id, session_number, count(*) AS n, min(event_time) AS first, max(event_time) AS last FROM"
  same=$("$bin" query --table "t=delta:$work/events" --table "f=delta:$work/events_full" --format csv \
    "WITH a AS ($per_session t GROUP BY 1, 2, 3), b AS ($per_session f GROUP BY 1, 2, 3) SELECT (SELECT count(*) FROM (SELECT * FROM a EXCEPT ALL SELECT * FROM b)) + (SELECT count(*) FROM (SELECT * FROM b EXCEPT ALL SELECT * FROM a)) AS differing" | tail -1)
  echo "sessions (actor, id, number, events, first and last time) differing between the incremental table and the full run: $same"
fi
