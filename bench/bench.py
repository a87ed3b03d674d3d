"""Side-by-side: the sessions table of one Parquet export by sessionize and by window SQL in DuckDB,
Polars and DataFusion (without sessionize's functions).

Each engine runs as its own process (so its peak resident memory is its own), the engines alternate,
each runs --runs times; the median wall time, the peak memory and the ratio to DuckDB are printed as a
table. Every engine must find the same number of sessions, events and sum of session numbers, or the
run fails.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

TIMEOUT = "30 minutes"

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

POLARS = """
import sys, polars as pl
src, out = sys.argv[1], sys.argv[2]
lf = pl.scan_parquet(src).select("user_id", "event_time").drop_nulls()
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

DUCKDB = """
import sys, duckdb
src, out, sql = sys.argv[1], sys.argv[2], sys.argv[3]
duckdb.sql(f"COPY ({sql}) TO '{out}' (FORMAT parquet)")
"""


def engines(bin_dir, data, out, sorted_input=False):
    source_duck = f"read_parquet('{parquet_glob(data)}')"
    declared = ["--sorted-by", "user_id,event_time"] if sorted_input else []
    return {
        "sessionize sessions": [f"{bin_dir}/sessionize", *declared, "sessions", data, "--output", out],
        "sessionize session_list": [
            f"{bin_dir}/sessionize", "query", data,
            "SELECT user_id, unnest(session_list(event_time, INTERVAL '30 minutes')) AS s "
            "FROM events WHERE user_id IS NOT NULL GROUP BY user_id",
            "--output", out,
        ],
        "sessionize window fns": [f"{bin_dir}/sessionize", *declared, "query", data, SESSIONIZE_WINDOW_SQL,
                                  "--output", out],
        "DuckDB window SQL": [sys.executable, "-c", DUCKDB, data, out,
                              WINDOW_SQL.format(source=source_duck, timeout=TIMEOUT)],
        "Polars window": [sys.executable, "-c", POLARS, parquet_glob(data), out],
        "DataFusion window SQL": [f"{bin_dir}/sessionize", "query", data,
                                  WINDOW_SQL.format(source="events", timeout=TIMEOUT),
                                  "--output", out],
    }


def run(command):
    """Wall seconds and peak resident MB of one run, through GNU time."""
    with tempfile.NamedTemporaryFile("r") as report:
        subprocess.run(["/usr/bin/time", "-o", report.name, "-f", "%e %M"] + command,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        seconds, kb = report.read().split()[-2:]
    return float(seconds), int(kb) / 1024


def check(engine, out):
    """Sessions, events and the sum of session numbers of an engine's output."""
    import duckdb
    if engine == "sessionize session_list":
        sql = (f"SELECT count(*), sum(s.event_count), sum(s.session_number) FROM read_parquet('{out}')")
    elif engine == "sessionize sessions":
        sql = (f"SELECT count(*), sum(events_per_session), sum(user_session_number) FROM read_parquet('{out}')")
    else:
        sql = f"SELECT count(*), sum(events), sum(session_number) FROM read_parquet('{out}')"
    return tuple(int(v) for v in duckdb.sql(sql).fetchall()[0])


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


def scaling(args):
    """`sessionize sessions` at several sizes (200 events per user) on 1 and 2 threads."""
    out = os.path.join(args.workdir, "out.parquet")
    rows = []
    for events in args.sizes:
        data = dataset(args, events, max(1, events // 200))
        for threads in (1, 2):
            command = [f"{args.bin}/sessionize", "--threads", str(threads), "sessions", data,
                       "--output", out]
            if args.memory_limit:
                command += ["--memory-limit", args.memory_limit]
            times, peak = [], 0.0
            for _ in range(args.runs):
                seconds, mb = run(command)
                times.append(seconds)
                peak = max(peak, mb)
            found = check("sessionize sessions", out)
            rows.append((events, threads, statistics.median(times), peak, found))
    print(f"sessionize sessions, {args.runs} runs each, memory limit {args.memory_limit or 'none'}")
    print(f"{'events':>12} {'threads':>7} {'median s':>9} {'peak MB':>8} {'s per 10M':>9}  sessions, events, sum of session numbers")
    for events, threads, median, peak, found in rows:
        print(f"{events:>12,} {threads:>7} {median:>9.2f} {peak:>8.0f} {median / events * 1e7:>9.2f}  {found}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bin", required=True)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--sorted", action="store_true")
    parser.add_argument("--files", type=int, default=1, help="write the export as this many files in a folder")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", default=os.path.expanduser("~/.cache/sessionize/bench"))
    parser.add_argument("--scaling", action="store_true",
                        help="instead of the side-by-side table: sessionize sessions at --sizes, 1 and 2 threads")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000, 100_000_000])
    parser.add_argument("--memory-limit", default="4GB", help="--memory-limit of the scaling runs")
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    if args.scaling:
        scaling(args)
        return
    data = dataset(args, args.events, args.users)
    out = os.path.join(args.workdir, "out.parquet")
    table = engines(args.bin, data, out, args.sorted)
    times = {name: [] for name in table}
    memory = {name: 0.0 for name in table}
    found = {}
    for _ in range(args.runs):
        for name, command in table.items():
            if os.path.exists(out):
                os.remove(out)
            seconds, mb = run(command)
            times[name].append(seconds)
            memory[name] = max(memory[name], mb)
            found[name] = check(name, out)
    duck = statistics.median(times["DuckDB window SQL"])
    print(f"input: {data} ({size_mb(data):.0f} MB), {args.runs} runs each, alternating"
          + (", sessionize told --sorted-by user_id,event_time" if args.sorted else ""))
    print(f"{'engine':<26} {'median s':>9} {'peak MB':>8} {'vs DuckDB':>10}  sessions, events, sum of session numbers")
    for name in table:
        median = statistics.median(times[name])
        print(f"{name:<26} {median:>9.2f} {memory[name]:>8.0f} {median / duck:>9.2f}x  {found[name]}")
    if len(set(found.values())) != 1:
        print("FAILED: the engines found different sessions", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
