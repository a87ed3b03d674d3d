"""sessionize's functions inside datafusion-python (the PyPI `datafusion` package 55.x), through
datafusion-ffi: registration, every function through SQL, results equal to the command line's
over several partitions, the version check, and the argument checks' sentences."""

from __future__ import annotations

import os

import datafusion
import pyarrow as pa
import pytest
import sessionize
from conftest import rows

WINDOW = """
SELECT user_id, event_time, event_type,
       session_number(event_time, INTERVAL '30 minutes')
         OVER (PARTITION BY user_id ORDER BY event_time) AS n,
       session_id(event_time, INTERVAL '30 minutes', event_type = 'app_open', INTERVAL '2 hours')
         OVER (PARTITION BY user_id ORDER BY event_time) AS s,
       session_number(event_time, INTERVAL '10 minutes', false, INTERVAL '1 hour')
         OVER (PARTITION BY user_id ORDER BY event_time) AS capped,
       conditional_true_event(event_type = 'app_open')
         OVER (PARTITION BY user_id ORDER BY event_time) AS opens
FROM events
"""

AGGREGATE = """
SELECT user_id,
       session_count(event_time, INTERVAL '30 minutes') AS sessions,
       session_seconds(event_time, INTERVAL '30 minutes', event_type = 'app_open') AS seconds,
       session_list(event_time, INTERVAL '30 minutes', false, INTERVAL '1 hour') AS list,
       session_table(event_time, INTERVAL '30 minutes') AS tab
FROM events GROUP BY user_id
"""

SCALAR = """
SELECT user_id,
       session_key(user_id, session_id) AS key,
       utc_day(event_time) AS day,
       epoch_seconds(event_time) AS seconds,
       event_time(epoch_seconds(event_time), 's') AS parsed,
       json_get_str(event_properties, 'page') AS page
FROM events
"""


def context(table: pa.Table, partitions: int = 4) -> datafusion.SessionContext:
    """A datafusion-python context with the functions and `table` as `events`, split into
    `partitions` partitions of unordered batches."""
    config = datafusion.SessionConfig().with_target_partitions(partitions)
    ctx = datafusion.SessionContext(config)
    sessionize.register(ctx)
    batches = table.to_batches(max_chunksize=500)
    ctx.register_record_batches("events", [batches[i::partitions] for i in range(partitions)])
    return ctx


def run(ctx: datafusion.SessionContext, sql: str) -> pa.Table:
    return pa.Table.from_batches(ctx.sql(sql).collect())


@pytest.mark.parametrize(
    "sql,keys",
    [
        (WINDOW, ("user_id", "event_time", "event_type", "n", "s", "capped", "opens")),
        (AGGREGATE, ("user_id",)),
        (SCALAR, ("user_id", "key", "seconds", "page")),
    ],
)
def test_every_function_equals_the_command_line(sql, keys, sample, sample_table, cli):
    """Window functions with a restart condition and a max length, aggregates and scalar
    functions, on 4 partitions: the same rows as `sessionize query` on the same file."""
    ours = run(context(sample_table), sql)
    theirs = cli("query", str(sample), sql)
    assert ours.num_rows > 0
    assert rows(ours, *keys) == rows(theirs, *keys)


def test_each_function_alone():
    """Each function can be taken alone and registered by the user."""
    ctx = datafusion.SessionContext()
    ctx.register_udwf(sessionize.udwf("session_number"))
    ctx.register_udaf(sessionize.udaf("session_count"))
    ctx.register_udf(sessionize.udf("utc_day"))
    table = pa.table(
        {
            "actor": ["a", "a", "a", "b"],
            "t": pa.array([0, 60, 4000, 0], pa.int64()).cast(pa.timestamp("s")),
        }
    )
    ctx.register_record_batches("ev", [table.to_batches()])
    got = run(
        ctx,
        "SELECT actor, t, session_number(t, INTERVAL '30 minutes') "
        "OVER (PARTITION BY actor ORDER BY t) AS n, utc_day(t) AS d FROM ev",
    )
    assert [r["n"] for r in rows(got, "actor", "t")] == [1, 1, 2, 1]
    assert rows(got, "actor", "t")[0]["d"].isoformat() == "1970-01-01"
    counts = run(
        ctx, "SELECT actor, session_count(t, INTERVAL '30 minutes') AS c FROM ev GROUP BY actor"
    )
    assert rows(counts, "actor") == [{"actor": "a", "c": 2}, {"actor": "b", "c": 1}]
    with pytest.raises(ValueError, match="no WindowFunction named 'nope'"):
        sessionize.udwf("nope")


def test_constant_arguments_checked_across_the_boundary(sample_table):
    """Constant arguments arrive as foreign expressions, not literals: they are still read, and
    wrong ones give the Rust error sentences."""
    ctx = context(sample_table)
    with pytest.raises(Exception, match=r"argument 2 \(timeout\) must be positive"):
        run(
            ctx,
            "SELECT session_number(event_time, INTERVAL '0 minutes') "
            "OVER (PARTITION BY user_id ORDER BY event_time) FROM events",
        )
    with pytest.raises(Exception, match="must be a constant INTERVAL"):
        run(
            ctx,
            "SELECT session_count(event_time, event_time - event_time) FROM events",
        )
    with pytest.raises(Exception, match="must not use months"):
        run(ctx, "SELECT session_count(event_time, INTERVAL '1 month') FROM events")


def test_another_datafusion_major_version_is_refused(monkeypatch):
    """A datafusion of another major version gets a Python exception naming both versions, from
    register() and from the capsule methods datafusion-python calls."""
    monkeypatch.setattr(datafusion, "__version__", "54.1.0")
    with pytest.raises(sessionize.SessionizeError, match=r"built for datafusion 55\.x.*is 54\.1\.0"):
        sessionize.register(datafusion.SessionContext())
    window = next(f for f in sessionize.functions() if isinstance(f, sessionize.WindowFunction))
    with pytest.raises(sessionize.SessionizeError, match="is 54.1.0"):
        window.__datafusion_window_udf__()
    with pytest.raises(sessionize.SessionizeError, match="is 54.1.0"):
        datafusion.udwf(window)


def test_every_function_is_offered():
    names = {f.name for f in sessionize.functions()}
    for name in [
        "session_number",
        "session_id",
        "conditional_true_event",
        "session_count",
        "session_seconds",
        "session_list",
        "session_first_value",
        "session_last_value",
        "session_key",
        "utc_day",
        "epoch_seconds",
        "event_time",
        "ga4_param",
        "json_get_str",
    ]:
        assert name in names
    assert len(names) == 17 + 13


def test_ga4_and_text_key_functions_equal_the_command_line(tmp_path):
    """The GA4 parameter functions, text session keys and epoch times on the GA4 fixture, in
    datafusion-python and in `sessionize query` (the file as a plain table, unmapped)."""
    import subprocess

    import pyarrow.parquet as pq
    from conftest import BIN, WORKSPACE

    path = WORKSPACE / "tests" / "fixtures" / "sources" / "ga4.parquet"
    sql = (
        "SELECT user_pseudo_id, event_timestamp, "
        "ga4_param(event_params, 'ga_session_id') AS s, ga4_params(event_params) AS p, "
        "session_key_id(user_pseudo_id) AS k, event_time(event_timestamp, 'us') AS t, "
        "session_number(event_time(event_timestamp), INTERVAL '30 minutes') "
        "OVER (PARTITION BY user_pseudo_id ORDER BY event_timestamp) AS n FROM ga4"
    )
    ctx = datafusion.SessionContext()
    sessionize.register(ctx)
    ctx.register_record_batches("ga4", [pq.read_table(path).to_batches(max_chunksize=3)])
    ours = run(ctx, sql)
    out = tmp_path / "cli.parquet"
    subprocess.run(
        [BIN, "query", "--table", f"ga4={path}", sql, "-o", str(out)], check=True
    )
    theirs = pq.read_table(out)
    keys = ("user_pseudo_id", "event_timestamp", "p")
    assert ours.num_rows > 0
    assert rows(ours, *keys) == rows(theirs, *keys)


def test_a_real_datafusion_54_is_refused(tmp_path):
    """With the PyPI datafusion 54.1.0 really installed (a private environment, made once), both
    register() and datafusion's own udwf() on a function object raise SessionizeError naming both
    versions, and the interpreter lives on (no crash reading a capsule of another layout)."""
    import shutil
    import subprocess
    import venv
    from pathlib import Path

    home = Path(os.environ.get("HOME", tmp_path))
    env_dir = home / ".cache" / "sessionize" / "venv-python-datafusion-54"
    python = env_dir / "bin" / "python"
    stamp = env_dir / "sessionize-requirements.txt"
    wanted = "datafusion==54.1.0\npyarrow==26.0.1\n"
    if not stamp.exists() or stamp.read_text() != wanted:
        venv.create(env_dir, with_pip=True, clear=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             *wanted.split()],
            check=True,
        )
        stamp.write_text(wanted)
    # The package alone (not the environment it is installed in, whose datafusion is 55).
    site = tmp_path / "site"
    shutil.copytree(Path(sessionize.__file__).parent, site / "sessionize")
    script = (
        "import datafusion, sessionize\n"
        "assert datafusion.__version__.startswith('54.'), datafusion.__version__\n"
        "for attempt in ('register', 'udwf'):\n"
        "    try:\n"
        "        if attempt == 'register':\n"
        "            sessionize.register(datafusion.SessionContext())\n"
        "        else:\n"
        "            datafusion.udwf(sessionize.functions()[0])\n"
        "    except sessionize.SessionizeError as e:\n"
        "        print(attempt, e)\n"
        "print('alive')\n"
    )
    done = subprocess.run(
        [str(python), "-c", script],
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "alive"
    for attempt in ("register", "udwf"):
        line = next(l for l in lines if l.startswith(attempt))
        assert "built for datafusion 55.x" in line and "is 54.1.0" in line, line
