"""sessionize.sessions() on in-memory data against the command line on the same data as Parquet.

The issue's target: `sessionize.sessions(polars_df)` on 10M in-memory events within 1.2x of
`sessionize sessions FILE.parquet -o OUT.parquet`. The input is the benchmark's wide export (every
Amplitude column, JSON properties included), made by bench/run.sh or here with sessionize-datagen;
Polars reads it into memory once, outside the timings. Each engine runs --runs times, alternating;
the medians are printed, and every run's row count must agree.
"""

import argparse
import os
import statistics
import subprocess
import tempfile
import time

import polars as pl
import pyarrow.parquet as pq
import sessionize


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bin", required=True)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", default=os.path.expanduser("~/.cache/sessionize/bench"))
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    data = os.path.join(args.workdir, f"events-{args.events}-{args.users}-30-42-unsorted.parquet")
    if not os.path.exists(data):
        subprocess.run(
            [os.path.join(args.bin, "sessionize-datagen"), "--output", data, "--events",
             str(args.events), "--users", str(args.users), "--days", "30", "--seed", "42"],
            check=True,
        )
    frame = pl.read_parquet(data)
    print(f"input: {data}, {frame.height} events, {frame.width} columns, "
          f"{frame.estimated_size() / 1e6:.0f} MB in memory")
    times = {"cli (Parquet file)": [], "python (Polars DataFrame)": [], "python (Parquet path)": []}
    counts = set()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "sessions.parquet")
        for _ in range(args.runs):
            started = time.perf_counter()
            subprocess.run([os.path.join(args.bin, "sessionize"), "sessions", data, "-o", out],
                           check=True, stderr=subprocess.DEVNULL)
            times["cli (Parquet file)"].append(time.perf_counter() - started)
            counts.add(pq.read_metadata(out).num_rows)
            started = time.perf_counter()
            table = sessionize.sessions(frame)
            times["python (Polars DataFrame)"].append(time.perf_counter() - started)
            counts.add(table.num_rows)
            started = time.perf_counter()
            table = sessionize.sessions(data)
            times["python (Parquet path)"].append(time.perf_counter() - started)
            counts.add(table.num_rows)
            del table
    assert len(counts) == 1, f"the engines disagree: {counts}"
    cli = statistics.median(times["cli (Parquet file)"])
    print(f"sessions: {counts.pop()} in every run")
    print("| what | median s | runs | against the CLI |")
    print("| --- | --- | --- | --- |")
    for name, runs in times.items():
        median = statistics.median(runs)
        print(f"| {name} | {median:.2f} | {', '.join(f'{r:.2f}' for r in runs)} | "
              f"{median / cli:.2f}x |")


if __name__ == "__main__":
    main()
