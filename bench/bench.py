"""Side-by-side: every path a sessionize user runs, by sessionize and by DuckDB and Polars, on one
generated export with all its columns (the JSON property text included).

The groups, chosen with --paths (comma-separated, all by default), each print their own table:

- sessions: the sessions table (user, session number, start, end, event count) by `sessionize
  sessions`, by a `session_list` query, by the window functions, and by lag + running-sum window
  SQL in DuckDB, Polars and DataFusion (without sessionize's functions). Every engine must find the
  same number of sessions, events and sum of session numbers.
- dedup: the sessions table with `--dedup insert_id` (of the copies of an event, by insert_id, the
  first by time, then user and event type, is kept; events without an insert_id are all kept),
  against the same first copies by a row_number() window in DuckDB and Polars before the lag +
  running-sum sessions. Sessions, events and the sum of session numbers must agree.
- annotate: `sessionize annotate` (every input column plus session_id and session_number, null for
  events without a user or a time) against every input column plus session_number by DuckDB
  (lag + running-sum window SQL, COPY to Parquet) and Polars (lazy `over(..., order_by=...)`,
  sink_parquet). Rows, non-null session numbers and their sum must agree; for sessionize, every
  session_id of a sample of users (1 in 16) must be the epoch milliseconds (floored) of the first
  event of its (user, session_number).
- annotate-dedup: `sessionize annotate --dedup insert_id` (of each insert_id's copies, over every
  event, the first by time, then user, then event type is numbered; the other copies, like the events
  without a user or a time, get null) against the same by DuckDB (a row_number() window over the
  copies, then the lag + running-sum SQL over the first copies) and Polars. Rows, non-null session
  numbers and their sum must agree; session_id is checked as in annotate.
- window: `sessionize query` writing `SELECT *, <window> FROM events` to Parquet with (a)
  session_number(...) OVER, (b) session_number and session_id (as derived_session_id: the export
  has a session_id column of its own), (c) DataFusion's row_number() OVER
  in the same shape (the floor: the target is (a) at most 1.2x (c)), against DuckDB's lag +
  running-sum SQL. (a), (b) and DuckDB must agree on rows, non-null session numbers, their sum and
  their sum over events with a user (events without a user are numbered as one partition by all
  of them); (b)'s session_id is checked as in annotate; (c) must have the same rows.
- chart: `sessionize chart --interval day` and the same `--group-by event.page` (the `page` key of
  the event_properties JSON; a session takes its first event's page), as CSV, and `sessionize board
  --days 30` (timed only), against DuckDB SQL computing the same daily columns from the raw export
  with lag + running-sum sessions (and Polars for the plain daily chart). Every column of every day
  (and page) must agree within 1e-6 relative (a session's page is that of its first event by
  time, then event type, then page, in both).

Each engine runs as its own process (so its peak resident memory is its own), the engines of a group
alternate, each runs --runs times; the median wall time, the peak memory and the ratio to the
group's DuckDB engine are printed. Each engine writes its own output file, removed before every run.
If engines disagree, an engine fails, or an engine's result changes between runs, everything is
still printed and the run exits with 1.

--scaling instead runs sessionize alone for each chosen path (sessions, dedup, annotate, window (a), chart
by day) at --sizes events (200 events per user), on --threads threads, with --memory-limit.
"""

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Callable, Optional

TIMEOUT = "30 minutes"
PATHS = ("sessions", "dedup", "annotate", "annotate-dedup", "window", "chart")

# ---------------------------------------------------------------------------------------------------
# sessions: the sessions table

WINDOW_SQL = """
WITH e AS (
  SELECT user_id, event_time FROM {source} WHERE user_id IS NOT NULL AND event_time IS NOT NULL
), g AS (
  SELECT user_id, event_time,
         CASE WHEN lag(event_time) OVER (PARTITION BY user_id ORDER BY event_time) IS NULL
                OR event_time - lag(event_time) OVER (PARTITION BY user_id ORDER BY event_time) > INTERVAL '{timeout}'
              THEN 1 ELSE 0 END AS new_session
  FROM e
), n AS (
  SELECT user_id, event_time,
         sum(new_session) OVER (PARTITION BY user_id ORDER BY event_time) AS session_number
  FROM g
)
SELECT user_id, session_number, min(event_time) AS started_at, max(event_time) AS ended_at,
       count(*) AS events
FROM n GROUP BY user_id, session_number
"""

# The same table through the project's window function instead of lag + running sum.
SESSIONIZE_WINDOW_SQL = """
SELECT user_id, session_number, min(event_time) AS started_at, max(event_time) AS ended_at,
       count(*) AS events
FROM (SELECT user_id, event_time,
             session_number(event_time, INTERVAL '30 minutes') OVER (PARTITION BY user_id ORDER BY event_time)
               AS session_number
      FROM events WHERE user_id IS NOT NULL AND event_time IS NOT NULL)
GROUP BY user_id, session_number
"""

# `--dedup insert_id` before the sessions: of each insert_id's copies (among the events with a user
# and a time) the first by time, then user, then event type; events without an insert_id stay.
DUCK_FIRST_COPIES = """(SELECT user_id, event_time FROM {source}
  WHERE user_id IS NOT NULL AND event_time IS NOT NULL
  QUALIFY insert_id IS NULL OR row_number() OVER (PARTITION BY insert_id
    ORDER BY event_time, user_id NULLS LAST, event_type NULLS LAST) = 1) AS first_copies"""

# The sessions of Polars' engines: from `lf` (user_id, event_time, no nulls) to the table at `out`.
POLARS_SESSIONS = """
gap = pl.col("event_time").diff().over("user_id", order_by="event_time")
lf = lf.with_columns((gap.is_null() | (gap > pl.duration(minutes=30))).cast(pl.Int64).alias("new_session"))
lf = lf.with_columns(pl.col("new_session").cum_sum().over("user_id", order_by="event_time").alias("session_number"))
lf = lf.group_by("user_id", "session_number").agg(
    pl.col("event_time").min().alias("started_at"),
    pl.col("event_time").max().alias("ended_at"),
    pl.len().alias("events"),
)
lf.sink_parquet(out)
"""

POLARS_DEDUP = """
import sys, polars as pl
src, out = sys.argv[1], sys.argv[2]
lf = pl.scan_parquet(src).select("user_id", "event_time", "event_type", "insert_id")
lf = lf.filter(pl.col("user_id").is_not_null() & pl.col("event_time").is_not_null())
rank = pl.int_range(pl.len()).over("insert_id", order_by=["event_time", "user_id", "event_type"])
lf = lf.filter(pl.col("insert_id").is_null() | (rank == 0)).select("user_id", "event_time")
""" + POLARS_SESSIONS

POLARS = """
import sys, polars as pl
src, out = sys.argv[1], sys.argv[2]
lf = pl.scan_parquet(src).select("user_id", "event_time").drop_nulls()
""" + POLARS_SESSIONS

# DuckDB in its own process: COPY the query to Parquet (default) or CSV with a header, in UTC (the
# charts' days are UTC days).
DUCKDB = """
import sys, duckdb
src, out, sql = sys.argv[1], sys.argv[2], sys.argv[3]
fmt = sys.argv[4] if len(sys.argv) > 4 else "parquet"
duckdb.sql("SET TimeZone = 'UTC'")
options = "FORMAT parquet" if fmt == "parquet" else "FORMAT csv, HEADER"
duckdb.sql(f"COPY ({sql}) TO '{out}' ({options})")
"""

# ---------------------------------------------------------------------------------------------------
# annotate and window: every event with its session number

# Every input column plus session_number by lag + running sum. `nulls`: null for events without a
# user (annotate); otherwise the events without a user are one partition, numbered like any other
# (the window functions' PARTITION BY user_id). Events without a time get null and do not count
# (they sort last, so they change no other event's number).
DUCK_NUMBERED_SQL = """
WITH g AS (
  SELECT *,
         CASE WHEN event_time IS NULL THEN 0
              WHEN lag(event_time) OVER w IS NULL
                OR event_time - lag(event_time) OVER w > INTERVAL '{timeout}' THEN 1
              ELSE 0 END AS __new_session
  FROM {source}
  WINDOW w AS (PARTITION BY user_id ORDER BY event_time ASC NULLS LAST)
)
SELECT * EXCLUDE (__new_session),
       CASE WHEN {known} THEN sum(__new_session) OVER (PARTITION BY user_id ORDER BY event_time ASC NULLS LAST)
       END AS session_number
FROM g
"""

POLARS_ANNOTATE = """
import sys, polars as pl
src, out = sys.argv[1], sys.argv[2]
t = pl.col("event_time")
gap = t.diff().over("user_id", order_by="event_time")
new = pl.when(t.is_null()).then(0).when(gap.is_null() | (gap > pl.duration(minutes=30))).then(1).otherwise(0)
lf = pl.scan_parquet(src).with_columns(new.cast(pl.Int64).alias("__new_session"))
known = pl.col("user_id").is_not_null() & t.is_not_null()
number = pl.col("__new_session").cum_sum().over("user_id", order_by="event_time")
lf = lf.with_columns(pl.when(known).then(number).alias("session_number")).drop("__new_session")
lf.sink_parquet(out)
"""

# annotate --dedup insert_id: each insert id's first copy (over every event: by time, then user,
# then event type, nulls last) is numbered; the other copies, as the events without a user or a
# time, get null. Every input column plus session_number.
DUCK_DEDUP_NUMBERED_SQL = """
WITH r AS (
  SELECT *, insert_id IS NULL OR row_number() OVER (PARTITION BY insert_id
    ORDER BY event_time ASC NULLS LAST, CAST(user_id AS VARCHAR) ASC NULLS LAST,
             CAST(event_type AS VARCHAR) ASC NULLS LAST) = 1 AS __first
  FROM {source}
), k AS (
  SELECT * EXCLUDE (__first), __first AND user_id IS NOT NULL AND event_time IS NOT NULL AS __kept FROM r
), g AS (
  SELECT *,
         CASE WHEN NOT __kept THEN 0
              WHEN lag(event_time) OVER w IS NULL
                OR event_time - lag(event_time) OVER w > INTERVAL '{timeout}' THEN 1
              ELSE 0 END AS __new_session
  FROM k
  WINDOW w AS (PARTITION BY user_id, __kept ORDER BY event_time ASC NULLS LAST)
)
SELECT * EXCLUDE (__kept, __new_session),
       CASE WHEN __kept THEN sum(__new_session) OVER (PARTITION BY user_id, __kept ORDER BY event_time ASC NULLS LAST)
       END AS session_number
FROM g
"""

POLARS_DEDUP_ANNOTATE = """
import sys, polars as pl
src, out = sys.argv[1], sys.argv[2]
t = pl.col("event_time")
rank = pl.int_range(pl.len()).over("insert_id", order_by=["event_time", "user_id", "event_type"], nulls_last=True)
kept = (pl.col("insert_id").is_null() | (rank == 0)) & pl.col("user_id").is_not_null() & t.is_not_null()
lf = pl.scan_parquet(src).with_columns(kept.alias("__kept"))
gap = t.diff().over("user_id", "__kept", order_by="event_time")
new = pl.when(~pl.col("__kept")).then(0).when(gap.is_null() | (gap > pl.duration(minutes=30))).then(1).otherwise(0)
lf = lf.with_columns(new.cast(pl.Int64).alias("__new_session"))
number = pl.col("__new_session").cum_sum().over("user_id", "__kept", order_by="event_time")
lf = lf.with_columns(pl.when(pl.col("__kept")).then(number).alias("session_number")).drop("__kept", "__new_session")
lf.sink_parquet(out)
"""

SESSION_NUMBER = "session_number(event_time, INTERVAL '30 minutes') OVER (PARTITION BY user_id ORDER BY event_time)"
SESSION_ID = "session_id(event_time, INTERVAL '30 minutes') OVER (PARTITION BY user_id ORDER BY event_time)"
ROW_NUMBER = "row_number() OVER (PARTITION BY user_id ORDER BY event_time)"
# The export has a session_id column of its own (the SDK's), so the derived one gets another name.
WINDOW_A = f"SELECT *, {SESSION_NUMBER} AS session_number FROM events"
WINDOW_B = f"SELECT *, {SESSION_NUMBER} AS session_number, {SESSION_ID} AS derived_session_id FROM events"
WINDOW_C = f"SELECT *, {ROW_NUMBER} AS session_number FROM events"

# ---------------------------------------------------------------------------------------------------
# chart: the User Sessions chart by day (crates/sessionize/src/chart.rs, the default spec): events
# with a user and a time; derived sessions (30 minutes); sessions longer than 24 h left out; a
# session counts on the (UTC) day of its first event; lengths in seconds (last minus first event);
# active users: users with an event that day (per day, also on the rows of a group); a group value
# is the session's first event's (by time, then event type).

LENGTH_EDGES = [0.0, 3.0, 10.0, 30.0, 60.0, 180.0, 600.0, 1800.0, 3600.0, 86400.0]
MAX_SESSION_SECONDS = 86400
CHART_GROUP = "event.page"


def _number(v):
    return f"{v:.0f}" if float(v).is_integer() else f"{v}"


def _seconds(v):
    if v >= 3600 and float(v / 3600).is_integer():
        return f"{_number(v / 3600)}h"
    if v >= 60 and float(v / 60).is_integer():
        return f"{_number(v / 60)}m"
    return f"{_number(v)}s"


def length_buckets():
    """(column, low, high) of the default length buckets, named as sessionize names them."""
    return [(f"A_length[{_seconds(lo)},{_seconds(hi)})", lo, hi)
            for lo, hi in zip(LENGTH_EDGES, LENGTH_EDGES[1:])]


def duck_chart_sql(source, group):
    """The daily chart (optionally by the first event's page) in DuckDB, with sessionize's columns."""
    g_select = ", json_extract_string(event_properties, '$.page') AS g" if group else ""
    # chart.rs takes a session's first event by time, then event type, then the value itself.
    g_session = ", first(g ORDER BY event_time, event_type, g) AS g" if group else ""
    g_key = ", g" if group else ""
    g_out = f', m.g AS "{CHART_GROUP}"' if group else ""
    buckets = "".join(f', count(*) FILTER (WHERE len >= {lo} AND len < {hi}) AS "{name}"'
                      for name, lo, hi in length_buckets())
    bucket_out = "".join(f', "{name}"' for name, _, _ in length_buckets())
    return f"""
WITH ev AS (
  SELECT user_id, event_time, event_type, CAST(event_time AS DATE) AS day{g_select}
  FROM {source} WHERE user_id IS NOT NULL AND event_time IS NOT NULL
), gaps AS (
  SELECT *, CASE WHEN lag(event_time) OVER w IS NULL
                   OR event_time - lag(event_time) OVER w > INTERVAL '{TIMEOUT}' THEN 1 ELSE 0 END AS new_session
  FROM ev WINDOW w AS (PARTITION BY user_id ORDER BY event_time)
), numbered AS (
  SELECT *, sum(new_session) OVER (PARTITION BY user_id ORDER BY event_time) AS sn FROM gaps
), ses AS (
  SELECT user_id, sn, min(event_time) AS started, (epoch_us(max(event_time)) - epoch_us(min(event_time))) / 1e6 AS len{g_session}
  FROM numbered GROUP BY user_id, sn
), ok AS (
  SELECT *, CAST(started AS DATE) AS day FROM ses WHERE len <= {MAX_SESSION_SECONDS}
), active AS (
  SELECT day, count(DISTINCT user_id) AS active_users FROM ev GROUP BY day
), m AS (
  SELECT day{g_key}, count(*) AS A_total_sessions, count(DISTINCT user_id) AS A_uniques,
         sum(len) AS A_time_spent, avg(len) AS A_avg_length, median(len) AS A_median_length,
         quantile_cont(len, 0.95) AS A_p95_length{buckets}
  FROM ok GROUP BY day{g_key}
)
SELECT m.day AS interval_start{g_out}, A_total_sessions, A_time_spent,
       A_time_spent / NULLIF(active_users, 0) AS A_time_spent_per_user, A_avg_length, A_median_length,
       A_p95_length, A_total_sessions / NULLIF(active_users, 0) AS A_avg_per_user, A_uniques{bucket_out},
       COALESCE(active_users, 0) AS active_users
FROM m LEFT JOIN active USING (day)
ORDER BY interval_start{g_key}
"""


POLARS_CHART = """
import sys, json, polars as pl
src, out, buckets, max_len = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), float(sys.argv[4])
ev = pl.scan_parquet(src).select("user_id", "event_time").drop_nulls()
gap = pl.col("event_time").diff().over("user_id", order_by="event_time")
n = ev.with_columns((gap.is_null() | (gap > pl.duration(minutes=30))).cast(pl.Int64).alias("new_session"))
n = n.with_columns(pl.col("new_session").cum_sum().over("user_id", order_by="event_time").alias("sn"))
ses = n.group_by("user_id", "sn").agg(pl.col("event_time").min().alias("s"), pl.col("event_time").max().alias("e"))
ses = ses.with_columns(((pl.col("e") - pl.col("s")).dt.total_microseconds() / 1e6).alias("len"),
                       pl.col("s").dt.date().alias("interval_start")).filter(pl.col("len") <= max_len)
length = pl.col("len")
metrics = [pl.len().alias("A_total_sessions"), pl.col("user_id").n_unique().alias("A_uniques"),
           length.sum().alias("A_time_spent"), length.mean().alias("A_avg_length"),
           length.median().alias("A_median_length"),
           length.quantile(0.95, interpolation="linear").alias("A_p95_length")]
metrics += [((length >= lo) & (length < hi)).sum().alias(name) for name, lo, hi in buckets]
m = ses.group_by("interval_start").agg(metrics)
active = ev.group_by(pl.col("event_time").dt.date().alias("interval_start")).agg(
    pl.col("user_id").n_unique().alias("active_users"))
chart = m.join(active, on="interval_start", how="left").with_columns(
    (pl.col("A_time_spent") / pl.col("active_users")).alias("A_time_spent_per_user"),
    (pl.col("A_total_sessions") / pl.col("active_users")).alias("A_avg_per_user"),
).sort("interval_start")
chart.collect().write_csv(out)
"""

# ---------------------------------------------------------------------------------------------------
# Running and checking


def run(command):
    """Wall seconds and peak resident MB of one run, through GNU time; None and stderr on failure."""
    with tempfile.NamedTemporaryFile("r") as report:
        done = subprocess.run(["/usr/bin/time", "-o", report.name, "-f", "%e %M"] + command,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            return None, done.stderr.strip()[-2000:]
        seconds, kb = report.read().split()[-2:]
    return (float(seconds), int(kb) / 1024), None


def duck(sql):
    """Rows of a DuckDB query in this process (the checks), in UTC."""
    import duckdb
    duckdb.sql("SET TimeZone = 'UTC'")
    return duckdb.sql(sql).fetchall()


def check(engine, out):
    """Sessions, events and the sum of session numbers of a sessions-table engine's output."""
    if engine == "sessionize session_list":
        sql = (f"SELECT count(*), sum(s.event_count), sum(s.session_number) FROM read_parquet('{out}')")
    elif engine.startswith("sessionize sessions"):
        sql = (f"SELECT count(*), sum(events_per_session), sum(user_session_number) FROM read_parquet('{out}')")
    else:
        sql = f"SELECT count(*), sum(events), sum(session_number) FROM read_parquet('{out}')"
    return tuple(int(v) for v in duck(sql)[0])


def numbered(out):
    """Rows, non-null session numbers, their sum, and their sum over events with a user."""
    row = duck(f"SELECT count(*), count(session_number), coalesce(sum(session_number), 0), "
               f"coalesce(sum(session_number) FILTER (WHERE user_id IS NOT NULL), 0) "
               f"FROM read_parquet('{out}')")[0]
    return tuple(int(v) for v in row)


def annotated(out):
    """Rows, non-null session numbers and their sum (the columns are null for events without a user)."""
    return numbered(out)[:3]


def session_ids(column, sample=16):
    """A check that every session id of one user in `sample` is the epoch ms of the first event of
    its (user, session_number) group, floored (as the SDK's; DuckDB's epoch_ms rounds)."""
    def verify(out):
        bad, sessions = duck(f"""
            SELECT count(*) FILTER (WHERE lo IS DISTINCT FROM hi OR lo IS DISTINCT FROM first_ms), count(*)
            FROM (SELECT min({column}) AS lo, max({column}) AS hi,
                         CAST(floor(epoch_us(min(event_time)) / 1000.0) AS BIGINT) AS first_ms
                  FROM read_parquet('{out}')
                  WHERE session_number IS NOT NULL AND hash(user_id) % {sample} = 0
                  GROUP BY user_id, session_number)""")[0]
        if sessions == 0:
            return [f"no sessions in the {column} sample"]
        if bad:
            return [f"{column} is not the epoch ms of the session's first event in {bad} of "
                    f"{sessions} sampled sessions"]
        return []
    return verify


def html_page(out):
    """The board is timed only; it must at least have written a page with pictures."""
    with open(out, errors="replace") as f:
        return [] if "<svg" in f.read() else [f"{out} holds no <svg> picture"]


def chart_table(keys):
    """The rows of a chart CSV, by their key columns: {key: {column: number or None}}."""
    def read(out):
        with open(out, newline="") as f:
            reader = csv.DictReader(f)
            columns = [c for c in reader.fieldnames if c not in keys and c != "segment"]
            rows = {}
            for line in reader:
                key = tuple(line[k] for k in keys)
                if key in rows:
                    raise ValueError(f"{out}: the key {key} appears twice")
                rows[key] = {c: (float(line[c]) if line[c] != "" else None) for c in columns}
        return {"key": keys, "columns": columns, "rows": rows}
    return read


def with_sessions(chart):
    """The chart's rows that have sessions: sessionize also writes a row of 0 for every interval of
    every series without one, which the peers' SQL (grouping the sessions) does not."""
    rows = {k: v for k, v in chart["rows"].items() if v.get("A_total_sessions") != 0}
    return {**chart, "rows": rows}


def same_chart(reference, other):
    """Differences between two charts, over the reference's columns (1e-6 relative), on the rows
    with sessions."""
    problems = []
    missing = [c for c in reference["columns"] if c not in other["columns"]]
    if missing:
        return [f"missing columns {missing}"]
    reference, other = with_sessions(reference), with_sessions(other)
    ref_keys, other_keys = set(reference["rows"]), set(other["rows"])
    if ref_keys != other_keys:
        problems.append(f"keys only in the reference: {sorted(ref_keys - other_keys)[:5]}, "
                        f"only in the other: {sorted(other_keys - ref_keys)[:5]}")
    for key in sorted(ref_keys & other_keys):
        for column in reference["columns"]:
            a, b = reference["rows"][key][column], other["rows"][key][column]
            if a is None or b is None:
                agree = a is None and b is None
            else:
                agree = math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
            if not agree:
                problems.append(f"{key} {column}: {a} against {b}")
    if len(problems) > 10:
        problems = problems[:10] + [f"... and {len(problems) - 10} more"]
    return problems


def show_chart(found):
    rows = with_sessions(found)["rows"].values()
    return (f"{len(rows)} rows with sessions, {sum(r['A_total_sessions'] for r in rows):.0f} sessions, "
            f"time spent {sum(r['A_time_spent'] for r in rows):.1f} s")


def equal(a, b):
    return [] if a == b else [f"{a} against {b}"]


def rows_only(a, b):
    return [] if a[0] == b[0] else [f"{a[0]} rows against {b[0]}"]


@dataclass
class Engine:
    name: str
    command: list
    out: str
    ref: str                                  # the DuckDB engine its time is compared to
    check: Optional[Callable] = None          # output -> what it found (None: timed only)
    verify: Optional[Callable] = None         # output -> problems (sessionize's own checks)


@dataclass
class Group:
    key: str
    title: str
    found_label: str
    engines: list
    # (names, compare): every other engine compared with the first by compare(first, other).
    agreements: list
    show: Callable = str
    same: Callable = equal                    # whether two runs of one engine agree
    notes: Callable = lambda medians, found: []  # lines printed under the table
    problems: list = field(default_factory=list)


def output(args, group, engine, ext):
    slug = engine.lower().replace(" ", "-").replace("(", "").replace(")", "").replace(".", "")
    return os.path.join(args.workdir, f"out-{group}-{slug}.{ext}")


def sessions_group(key, title, engines, duck_name):
    """A group of sessions-table engines: each checked by `check`, all against `duck_name`."""
    for e in engines:
        e.check = (lambda name: lambda path: check(name, path))(e.name)
    return Group(key, title, "sessions, events, sum of session numbers", engines,
                 [([duck_name] + [e.name for e in engines if e.name != duck_name], equal)])


def groups(args, data, paths):
    """The chosen groups of engines over `data`."""
    bin_dir = args.bin
    sessionize = [f"{bin_dir}/sessionize"] + (["--sorted-by", "user_id,event_time"] if args.sorted else [])
    source_duck = f"read_parquet('{parquet_glob(data)}')"
    chosen = []

    if "sessions" in paths:
        def out(name):
            return output(args, "sessions", name, "parquet")
        duck_name = "DuckDB window SQL"
        engines = [
            Engine("sessionize sessions", [*sessionize, "sessions", data, "--output", out("sessionize sessions")],
                   out("sessionize sessions"), duck_name),
            Engine("sessionize session_list", [
                f"{bin_dir}/sessionize", "query", data,
                "SELECT user_id, unnest(session_list(event_time, INTERVAL '30 minutes')) AS s "
                "FROM events WHERE user_id IS NOT NULL GROUP BY user_id",
                "--output", out("sessionize session_list")], out("sessionize session_list"), duck_name),
            Engine("sessionize window fns", [*sessionize, "query", data, SESSIONIZE_WINDOW_SQL,
                                             "--output", out("sessionize window fns")],
                   out("sessionize window fns"), duck_name),
            Engine(duck_name, [sys.executable, "-c", DUCKDB, data, out(duck_name),
                               WINDOW_SQL.format(source=source_duck, timeout=TIMEOUT)],
                   out(duck_name), duck_name),
            Engine("Polars window", [sys.executable, "-c", POLARS, parquet_glob(data), out("Polars window")],
                   out("Polars window"), duck_name),
            Engine("DataFusion window SQL", [f"{bin_dir}/sessionize", "query", data,
                                             WINDOW_SQL.format(source="events", timeout=TIMEOUT),
                                             "--output", out("DataFusion window SQL")],
                   out("DataFusion window SQL"), duck_name),
        ]
        chosen.append(sessions_group("sessions", "the sessions table (user, session number, start, end, events)",
                                     engines, duck_name))

    if "dedup" in paths:
        def out(name):
            return output(args, "dedup", name, "parquet")
        duck_name = "DuckDB first copies + window"
        ours = "sessionize sessions --dedup insert_id"
        engines = [
            Engine(ours, [*sessionize, "sessions", data, "--dedup", "insert_id", "--output", out(ours)],
                   out(ours), duck_name),
            Engine(duck_name, [sys.executable, "-c", DUCKDB, data, out(duck_name),
                               WINDOW_SQL.format(source=DUCK_FIRST_COPIES.format(source=source_duck),
                                                 timeout=TIMEOUT)],
                   out(duck_name), duck_name),
            Engine("Polars first copies + window", [sys.executable, "-c", POLARS_DEDUP, parquet_glob(data),
                                                    out("Polars first copies + window")],
                   out("Polars first copies + window"), duck_name),
        ]
        chosen.append(sessions_group("dedup",
                                     "the sessions table with --dedup insert_id (first copy of each insert_id)",
                                     engines, duck_name))

    if "annotate" in paths:
        def out(name):
            return output(args, "annotate", name, "parquet")
        duck_name = "DuckDB window SQL"
        engines = [
            Engine("sessionize annotate", [*sessionize, "annotate", data, "--output", out("sessionize annotate")],
                   out("sessionize annotate"), duck_name, annotated, session_ids("session_id")),
            Engine(duck_name, [sys.executable, "-c", DUCKDB, data, out(duck_name),
                               DUCK_NUMBERED_SQL.format(source=source_duck, timeout=TIMEOUT,
                                                        known="user_id IS NOT NULL AND event_time IS NOT NULL")],
                   out(duck_name), duck_name, annotated),
            Engine("Polars window", [sys.executable, "-c", POLARS_ANNOTATE, parquet_glob(data), out("Polars window")],
                   out("Polars window"), duck_name, annotated),
        ]
        chosen.append(Group("annotate", "every event with its session (all input columns + session_number)",
                            "rows, non-null session_number, sum", engines,
                            [([duck_name, "sessionize annotate", "Polars window"], equal)]))

    if "annotate-dedup" in paths:
        def out(name):
            return output(args, "annotate-dedup", name, "parquet")
        duck_name = "DuckDB first copies + window"
        ours, polars_name = "sessionize annotate --dedup", "Polars first copies + window"
        engines = [
            Engine(ours, [*sessionize, "annotate", data, "--dedup", "insert_id", "--output", out(ours)],
                   out(ours), duck_name, annotated, session_ids("session_id")),
            Engine(duck_name, [sys.executable, "-c", DUCKDB, data, out(duck_name),
                               DUCK_DEDUP_NUMBERED_SQL.format(source=source_duck, timeout=TIMEOUT)],
                   out(duck_name), duck_name, annotated),
            Engine(polars_name, [sys.executable, "-c", POLARS_DEDUP_ANNOTATE, parquet_glob(data),
                                 out(polars_name)], out(polars_name), duck_name, annotated),
        ]
        chosen.append(Group("annotate-dedup",
                            "every event with its session, --dedup insert_id (first copy of each insert_id)",
                            "rows, non-null session_number, sum", engines,
                            [([duck_name, ours, polars_name], equal)]))

    if "window" in paths:
        def out(name):
            return output(args, "window", name, "parquet")
        duck_name = "DuckDB lag + sum SQL"
        a, b, c = "(a) session_number", "(b) session_number+id", "(c) row_number floor"
        engines = [
            Engine(a, [*sessionize, "query", data, WINDOW_A, "--output", out(a)], out(a), duck_name, numbered),
            Engine(b, [*sessionize, "query", data, WINDOW_B, "--output", out(b)], out(b), duck_name, numbered,
                   session_ids("derived_session_id")),
            Engine(c, [*sessionize, "query", data, WINDOW_C, "--output", out(c)], out(c), duck_name, numbered),
            Engine(duck_name, [sys.executable, "-c", DUCKDB, data, out(duck_name),
                               DUCK_NUMBERED_SQL.format(source=source_duck, timeout=TIMEOUT,
                                                        known="event_time IS NOT NULL")],
                   out(duck_name), duck_name, numbered),
        ]

        def window_notes(medians, found):
            if medians.get(c) and medians.get(a):
                lines = [f"(a) / (c): {medians[a] / medians[c]:.2f}x (target: at most 1.20x)"]
                if medians.get(b):
                    lines.append(f"(b) / (c): {medians[b] / medians[c]:.2f}x")
                return lines
            return []
        chosen.append(Group("window", "SELECT *, <window function> FROM events, by `sessionize query`",
                            "rows, non-null session_number, sum, sum with a user", engines,
                            [([duck_name, a, b], equal), ([duck_name, c], rows_only)],
                            notes=window_notes))

    if "chart" in paths:
        day, page = "sessionize chart day", "sessionize chart day by page"
        duck_day, duck_page = "DuckDB chart day SQL", "DuckDB chart day by page SQL"
        polars_day, board = "Polars chart day", "sessionize board (time only)"

        def out(name, ext="csv"):
            return output(args, "chart", name, ext)
        chart = [*sessionize, "chart", data, "--interval", "day", "--format", "csv"]
        by_day, by_page = chart_table(["interval_start"]), chart_table(["interval_start", CHART_GROUP])
        buckets = json.dumps(length_buckets())
        engines = [
            Engine(day, [*chart, "--output", out(day)], out(day), duck_day, by_day),
            Engine(duck_day, [sys.executable, "-c", DUCKDB, data, out(duck_day),
                              duck_chart_sql(source_duck, group=False), "csv"], out(duck_day), duck_day, by_day),
            Engine(polars_day, [sys.executable, "-c", POLARS_CHART, parquet_glob(data), out(polars_day), buckets,
                                str(MAX_SESSION_SECONDS)], out(polars_day), duck_day, by_day),
            Engine(page, [*chart, "--group-by", CHART_GROUP, "--output", out(page)], out(page), duck_page, by_page),
            Engine(duck_page, [sys.executable, "-c", DUCKDB, data, out(duck_page),
                               duck_chart_sql(source_duck, group=True), "csv"], out(duck_page), duck_page, by_page),
            Engine(board, [*sessionize, "board", data, "--days", "30", "--output", out(board, "html")],
                   out(board, "html"), duck_day, verify=html_page),
        ]
        chosen.append(Group("chart", "the User Sessions chart by day (CSV) and the session board (HTML)",
                            "rows, sessions, time spent (every column compared)", engines,
                            [([duck_day, day, polars_day], same_chart), ([duck_page, page], same_chart)],
                            show=show_chart, same=same_chart,
                            notes=lambda medians, found: [f"vs DuckDB: the chart by page against {duck_page}, "
                                                          f"the others against {duck_day}"]))
    return chosen


def measure(group, runs):
    """Runs the group's engines `runs` times, alternating; fills group.problems."""
    times = {e.name: [] for e in group.engines}
    memory = {e.name: 0.0 for e in group.engines}
    found = {}
    for r in range(runs):
        for e in group.engines:
            if os.path.exists(e.out):
                os.remove(e.out)
            result, error = run(e.command)
            if result is None:
                group.problems.append(f"{e.name} failed (run {r + 1}): {error}")
                continue
            seconds, mb = result
            times[e.name].append(seconds)
            memory[e.name] = max(memory[e.name], mb)
            if e.check is None:
                if e.verify is not None and r == runs - 1:
                    group.problems.extend(f"{e.name}: {p}" for p in e.verify(e.out))
                continue
            try:
                value = e.check(e.out)
            except Exception as error:  # an unreadable or malformed output
                group.problems.append(f"{e.name}: cannot read its output {e.out} (run {r + 1}): {error}")
                continue
            if e.name in found:
                for p in group.same(found[e.name], value):
                    group.problems.append(f"{e.name}: run {r + 1} differs from run 1: {p}")
            else:
                found[e.name] = value
            if e.verify is not None and r == runs - 1:
                group.problems.extend(f"{e.name}: {p}" for p in e.verify(e.out))
    for names, compare in group.agreements:
        base = names[0]
        for other in names[1:]:
            if base in found and other in found:
                for p in compare(found[base], found[other]):
                    group.problems.append(f"{other} disagrees with {base}: {p}")
            else:
                group.problems.append(f"{base} and {other} cannot be compared: one of them has no result")
    medians = {name: statistics.median(t) for name, t in times.items() if t}
    print(f"\n{group.key}: {group.title}")
    print(f"{'engine':<30} {'median s':>9} {'peak MB':>8} {'vs DuckDB':>10}  {group.found_label}")
    for e in group.engines:
        if e.name not in medians:
            print(f"{e.name:<30} {'FAILED':>9}")
            continue
        ref = medians.get(e.ref)
        ratio = f"{medians[e.name] / ref:>9.2f}x" if ref else f"{'-':>10}"
        shown = group.show(found[e.name]) if e.name in found else "(time only)"
        print(f"{e.name:<30} {medians[e.name]:>9.2f} {memory[e.name]:>8.0f} {ratio}  {shown}")
    for line in group.notes(medians, found):
        print(line)
    for p in group.problems:
        print(f"  DISAGREEMENT {p}")
    sys.stdout.flush()


def dataset(args, events, users):
    """The generated export for `events` and `users` (made once, then reused)."""
    order = "sorted" if args.sorted else "unsorted"
    name = f"events-{events}-{users}-{args.days}-{args.seed}-{order}"
    if args.files > 1:
        # A folder of files; kept apart from the one-file export of the same events.
        data = os.path.join(args.workdir, f"{name}-{args.files}-files")
    else:
        data = os.path.join(args.workdir, f"{name}.parquet")
    if not os.path.exists(data):
        command = [f"{args.bin}/sessionize-datagen", "--events", str(events), "--users", str(users),
                   "--days", str(args.days), "--seed", str(args.seed), "--output", data]
        if args.sorted:
            command.append("--sorted")
        if args.files > 1:
            command += ["--files", str(args.files)]
        subprocess.run(command, check=True)
    return data


def parquet_glob(data):
    """What DuckDB and Polars read: the file, or every Parquet file of the folder."""
    return os.path.join(data, "*.parquet") if os.path.isdir(data) else data


def size_mb(data):
    """The export's size in MB, a file or a folder of files."""
    if os.path.isdir(data):
        return sum(os.path.getsize(os.path.join(data, f)) for f in os.listdir(data)) / 1e6
    return os.path.getsize(data) / 1e6


def input_line(args, data):
    rows = duck(f"SELECT count(*) FROM read_parquet('{parquet_glob(data)}')")[0][0]
    return (f"input: {data} ({size_mb(data):.0f} MB, {rows:,} events, all columns), {args.runs} runs each, "
            f"alternating" + (", sessionize told --sorted-by user_id,event_time" if args.sorted else ""))


def scaling(args, paths):
    """sessionize alone on each chosen path at several sizes (200 events per user), per thread count."""
    memory = ["--memory-limit", args.memory_limit] if args.memory_limit else []
    declared = ["--sorted-by", "user_id,event_time"] if args.sorted else []
    day_chart = chart_table(["interval_start"])
    table = {
        "sessions": ("sessions", lambda data, out: ["sessions", data, "--output", out], "parquet",
                     lambda out: check("sessionize sessions", out), "sessions, events, sum of session numbers"),
        "dedup": ("sessions --dedup insert_id",
                  lambda data, out: ["sessions", data, "--dedup", "insert_id", "--output", out], "parquet",
                  lambda out: check("sessionize sessions", out), "sessions, events, sum of session numbers"),
        "annotate": ("annotate", lambda data, out: ["annotate", data, "--output", out], "parquet",
                     annotated, "rows, non-null session_number, sum"),
        "annotate-dedup": ("annotate --dedup insert_id",
                           lambda data, out: ["annotate", data, "--dedup", "insert_id", "--output", out],
                           "parquet", annotated, "rows, non-null session_number, sum"),
        "window": ("window (a): query SELECT *, session_number(...) OVER ...",
                   lambda data, out: ["query", data, WINDOW_A, "--output", out], "parquet",
                   numbered, "rows, non-null session_number, sum, sum with a user"),
        "chart": ("chart --interval day",
                  lambda data, out: ["chart", data, "--interval", "day", "--format", "csv", "--output", out],
                  "csv", lambda out: show_chart(day_chart(out)), "rows, sessions, time spent"),
    }
    rows = {path: [] for path in paths}
    failed = False
    for events in args.sizes:
        data = dataset(args, events, max(1, events // 200))
        for path in paths:
            _, subcommand, ext, found_of, _ = table[path]
            out = os.path.join(args.workdir, f"out-scaling-{path}.{ext}")
            for threads in args.threads:
                command = [f"{args.bin}/sessionize", *memory, "--threads", str(threads), *declared,
                           *subcommand(data, out)]
                times, peak, found = [], 0.0, None
                for _ in range(args.runs):
                    if os.path.exists(out):
                        os.remove(out)
                    result, error = run(command)
                    if result is None:
                        print(f"FAILED: {' '.join(command)}: {error}", file=sys.stderr)
                        failed = True
                        break
                    times.append(result[0])
                    peak = max(peak, result[1])
                    found = found_of(out)
                rows[path].append((events, threads, statistics.median(times) if times else None, peak, found))
    for path in paths:
        title, _, _, _, label = table[path]
        print(f"\nsessionize {title}: {args.runs} runs each, memory limit {args.memory_limit or 'none'}"
              + (", --sorted-by user_id,event_time" if args.sorted else ""))
        print(f"{'events':>12} {'threads':>7} {'median s':>9} {'peak MB':>8} {'s per 10M':>9}  {label}")
        for events, threads, median, peak, found in rows[path]:
            if median is None:
                print(f"{events:>12,} {threads:>7} {'FAILED':>9}")
            else:
                print(f"{events:>12,} {threads:>7} {median:>9.2f} {peak:>8.0f} {median / events * 1e7:>9.2f}  {found}")
    if failed:
        sys.exit(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True)
    parser.add_argument("--paths", default=",".join(PATHS),
                        help=f"comma-separated groups to run, of {','.join(PATHS)} (default: all)")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--sorted", action="store_true")
    parser.add_argument("--files", type=int, default=1, help="write the export as this many files in a folder")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", default=os.path.expanduser("~/.cache/sessionize/bench"))
    parser.add_argument("--scaling", action="store_true",
                        help="instead of the side-by-side tables: sessionize alone on each path at --sizes")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000, 100_000_000])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="--threads of the scaling runs")
    parser.add_argument("--memory-limit", default="4GB", help="--memory-limit of the scaling runs ('' for none)")
    args = parser.parse_args()
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = [p for p in paths if p not in PATHS]
    if unknown or not paths:
        parser.error(f"--paths takes a comma-separated list of {', '.join(PATHS)}; got {args.paths!r}")
    paths = [p for p in PATHS if p in paths]
    os.makedirs(args.workdir, exist_ok=True)
    if args.scaling:
        scaling(args, paths)
        return
    data = dataset(args, args.events, args.users)
    print(input_line(args, data))
    chosen = groups(args, data, paths)
    for group in chosen:
        measure(group, args.runs)
    problems = [f"{g.key}: {p}" for g in chosen for p in g.problems]
    if problems:
        print(f"\nFAILED: {len(problems)} disagreement(s) or failure(s):", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
