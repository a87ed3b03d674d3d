"""The Pythonic API: sessions, annotate, chart and sql on paths and on PyArrow, Polars, pandas and
DuckDB data, equal to the command line's output on the same data; the error classes; Ctrl-C."""

from __future__ import annotations

import datetime
import os
import signal
import threading
import time

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
import sessionize
from conftest import assert_same, rows

SESSION_KEYS = ("unique_session_id",)


def test_sessions_on_a_path_equal_the_command_line(sample, cli):
    ours = sessionize.sessions(str(sample))
    theirs = cli("sessions", str(sample))
    assert ours.column_names == theirs.column_names
    # Text comes back as plain strings (pandas and pyarrow's compute kernels do not all take
    # string views), the command line's Parquet as string views: the same values.
    assert ours.schema.field("user_id").type == pa.string()
    assert ours.schema.field("session_started_at").type == pa.timestamp("us", tz="UTC")
    ours.sort_by("unique_session_id")
    assert ours.num_rows == theirs.num_rows > 0
    assert rows(ours, *SESSION_KEYS) == rows(theirs, *SESSION_KEYS)


@pytest.mark.parametrize("kind", ["pyarrow", "reader", "polars", "pandas", "duckdb"])
def test_sessions_on_in_memory_data_equal_the_command_line(kind, sample, sample_table, cli):
    """The same sessions from every kind of in-memory data, with options: restart events, a
    max length, a timedelta timeout and an actor list."""
    if kind == "pyarrow":
        data = sample_table
    elif kind == "reader":
        data = pa.RecordBatchReader.from_batches(
            sample_table.schema, sample_table.to_batches(max_chunksize=1000)
        )
    elif kind == "polars":
        data = pl.from_arrow(sample_table)
    elif kind == "pandas":
        data = sample_table.to_pandas()
    else:
        connection = duckdb.connect()
        connection.register("sample_table", sample_table)
        data = connection.sql("SELECT * FROM sample_table")
    ours = sessionize.sessions(
        data,
        timeout=datetime.timedelta(minutes=20),
        max_length="2h",
        restart_events=["app_open"],
        actor=["user_id", "device_id"],
    )
    theirs = cli(
        "sessions",
        str(sample),
        "--timeout",
        "20m",
        "--max-length",
        "2h",
        "--restart-event",
        "app_open",
        "--actor",
        "user_id,device_id",
    )
    assert ours.num_rows == theirs.num_rows > 0
    assert rows(ours, *SESSION_KEYS) == rows(theirs, *SESSION_KEYS)


def test_sessions_compat_dbt_and_sdk(sample, cli):
    for args, kwargs in [
        (
            ["--compat", "dbt", "--event-id-col", "insert_id"],
            {"compat": "dbt", "event_id_col": "insert_id"},
        ),
        (["--session-source", "sdk"], {"session_source": "sdk"}),
    ]:
        ours = sessionize.sessions(sample, **kwargs)
        theirs = cli("sessions", str(sample), *args)
        assert rows(ours, *SESSION_KEYS) == rows(theirs, *SESSION_KEYS)


def test_annotate_keeps_the_input_order_and_equals_the_command_line(sample, sample_table, cli):
    shuffled = sample_table.take(pa.array(list(range(sample_table.num_rows))[::-1]))
    ours = sessionize.annotate(shuffled)
    assert ours.num_rows == sample_table.num_rows
    assert ours.column("insert_id").to_pylist() == shuffled.column("insert_id").to_pylist()
    theirs = cli("annotate", str(sample))
    assert rows(ours, "insert_id") == rows(theirs, "insert_id")
    concluded = sessionize.annotate(sample, concluded=True)
    assert concluded.num_rows > sample_table.num_rows


def test_chart_equals_the_command_line(sample, tmp_path, cli):
    ours = sessionize.chart(sample, interval="week", group_by="platform")
    theirs = cli(
        "chart", str(sample), "--interval", "week", "--group-by", "platform", "--format", "parquet"
    )
    keys = ("interval_start", "segment", "platform")
    assert ours.num_rows > 0
    assert_same(rows(ours, *keys), rows(theirs, *keys))
    spec = tmp_path / "spec.toml"
    spec.write_text('interval = "total"\n[session]\ntimeout = "10m"\n')
    from_file = sessionize.chart(sample, spec)
    theirs = cli("chart", str(sample), "--spec", str(spec), "--format", "parquet")
    assert_same(from_file.to_pylist(), theirs.to_pylist())
    from_dict = sessionize.chart(sample, {"interval": "total", "session": {"timeout": "10m"}})
    assert_same(from_dict.to_pylist(), from_file.to_pylist())
    longer = sessionize.chart(sample, interval="total", min_duration="10s")
    theirs = cli(
        "chart", str(sample), "--interval", "total", "--min-duration", "10s", "--format", "parquet"
    )
    assert_same(longer.to_pylist(), theirs.to_pylist())
    presets = sessionize.chart(sample, interval="total", exclude_presets="clevertap")
    theirs = cli(
        "chart", str(sample), "--interval", "total", "--exclude-preset", "clevertap",
        "--format", "parquet",
    )
    assert_same(presets.to_pylist(), theirs.to_pylist())
    every = sessionize.chart(sample, interval="total")
    assert (
        0 < longer.column("A_total_sessions")[0].as_py() < every.column("A_total_sessions")[0].as_py()
    )


def test_sql_over_several_tables(sample_table):
    users = pa.table({"user_id": sample_table.column("user_id").unique()})
    got = sessionize.sql(
        "SELECT count(*) AS n, sum(s) AS sessions FROM (SELECT e.user_id, "
        "session_count(event_time, INTERVAL '30 minutes') AS s FROM events e "
        "JOIN users u ON e.user_id = u.user_id GROUP BY e.user_id)",
        events=pl.from_arrow(sample_table),
        users=users,
    )
    total = sessionize.sessions(sample_table).num_rows
    known_users = users.num_rows - users.column("user_id").null_count
    assert got.to_pylist() == [{"n": known_users, "sessions": total}]


def test_epoch_and_text_times_are_read(sample_table):
    """An in-memory export with epoch-microsecond or text times gives the same sessions."""
    micros = sample_table.set_column(
        sample_table.schema.get_field_index("event_time"),
        "event_time",
        sample_table.column("event_time").cast(pa.int64()),
    )
    expected = rows(sessionize.sessions(sample_table), *SESSION_KEYS)
    assert rows(sessionize.sessions(micros, time_unit="us"), *SESSION_KEYS) == expected
    text = sample_table.set_column(
        sample_table.schema.get_field_index("event_time"),
        "event_time",
        pa.array([t.isoformat() for t in sample_table.column("event_time").to_pylist()]),
    )
    assert rows(sessionize.sessions(text), *SESSION_KEYS) == expected


def test_errors_are_python_exceptions_with_the_command_lines_sentences(tmp_path, sample):
    with pytest.raises(FileNotFoundError, match="cannot read '/no/such/file.parquet'"):
        sessionize.sessions("/no/such/file.parquet")
    with pytest.raises(FileNotFoundError, match="no files match"):
        sessionize.sessions(str(tmp_path / "*.parquet"))
    with pytest.raises(ValueError, match="is not a duration"):
        sessionize.sessions(sample, timeout="soon")
    with pytest.raises(ValueError, match="--timeout shapes derived sessions"):
        sessionize.sessions(sample, compat="dbt", timeout="10m")
    with pytest.raises(ValueError, match="no column 'nobody'|nobody"):
        sessionize.sessions(sample, actor="nobody")
    with pytest.raises(ValueError, match="cannot parse the time 'yesterday'"):
        sessionize.sessions(
            pa.table({"user_id": ["a"], "event_time": ["yesterday"], "event_type": ["x"]})
        )
    with pytest.raises(ValueError, match="SQL syntax error"):
        sessionize.sql("SELEC 1")
    with pytest.raises(TypeError, match="expected a path"):
        sessionize.sessions(42)
    assert issubclass(sessionize.SessionizeError, Exception)


def test_ctrl_c_stops_a_long_query_that_leaves_the_gil_free(capsys, monkeypatch):
    """SIGINT during a long query raises KeyboardInterrupt within seconds, not at its end; while
    the query runs, other Python threads run (the GIL is released) and the spinner shows."""
    monkeypatch.setattr(sessionize, "progress", True)
    ticks = []
    stop = threading.Event()

    def count() -> None:
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.01)

    counter = threading.Thread(target=count)
    timer = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    started = time.monotonic()
    counter.start()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            sessionize.sql("SELECT sum(value) FROM generate_series(1, 100000000000)")
    finally:
        stop.set()
        counter.join()
    assert time.monotonic() - started < 6
    # About 100 ticks in the second before the interrupt; a held GIL would allow almost none.
    assert len(ticks) > 30
    assert "running the query [" in capsys.readouterr().err


def test_in_memory_exports_with_struct_properties_read_as_files(sample):
    """pandas, Polars and PyArrow read JSON exports' properties as structs: the sources' mappings
    and the JSON functions see the same JSON text as from the file."""
    from conftest import WORKSPACE

    fixtures = WORKSPACE / "tests" / "fixtures" / "sources"
    for name in ["mixpanel", "posthog", "segment"]:
        path = fixtures / f"{name}.ndjson"
        expected = rows(sessionize.sessions(path, source=name), *SESSION_KEYS)
        assert expected
        frame = pl.read_ndjson(path)
        assert any(isinstance(t, pl.Struct) for t in frame.dtypes)
        assert rows(sessionize.sessions(frame, source=name), *SESSION_KEYS) == expected
        assert sessionize.annotate(frame, source=name).num_rows == frame.height
    table = pa.table(
        {
            "user_id": ["a", "a"],
            "event_time": pa.array([0, 1_000_000], pa.timestamp("us", tz="UTC")),
            "event_type": ["view", "view"],
            "event_properties": [{"page": "home"}, {"page": "cart"}],
        }
    )
    pages = sessionize.sql(
        "SELECT event_properties->>'page' AS page FROM events ORDER BY event_time", events=table
    )
    assert pages.column("page").to_pylist() == ["home", "cart"]


def test_a_time_zone_of_the_data_does_not_move_days(sample_table):
    """A tz-aware time column in another zone gives UTC days, as the same instants in UTC do."""
    frame = sample_table.to_pandas()
    frame["event_time"] = frame["event_time"].dt.tz_convert("America/New_York")
    expected = rows(sessionize.sessions(sample_table), *SESSION_KEYS)
    assert rows(sessionize.sessions(frame), *SESSION_KEYS) == expected
    assert sessionize.chart(frame, interval="day").num_rows == sessionize.chart(
        sample_table, interval="day"
    ).num_rows


def test_more_kinds_of_data_and_options(sample_table):
    lazy = pl.from_arrow(sample_table).lazy()
    assert sessionize.sessions(lazy).num_rows == sessionize.sessions(sample_table).num_rows
    with pytest.raises(TypeError, match="Polars Series"):
        sessionize.sessions(pl.Series([1, 2]))
    both = sessionize.chart(sample_table, interval="total", formulas="SESSIONTOTALS(A); UNIQUES(A)")
    assert both.num_rows == 1
    with pytest.raises(ValueError, match="at most 10 formulas"):
        sessionize.chart(sample_table, formulas=["UNIQUES(A)"] * 11)
    for bad in [0, -1, 1.5]:
        with pytest.raises(ValueError, match="threads expects a positive integer"):
            sessionize.sessions(sample_table, threads=bad)
    with pytest.raises(ValueError, match="restart_events expects a name or a list of names"):
        sessionize.sessions(sample_table, restart_events=5)
    with pytest.raises(ValueError, match="buckets expects a list of numbers"):
        sessionize.chart(sample_table, buckets="0,3")
    with pytest.raises(ValueError, match="rows expects a list of dicts"):
        sessionize.chart(sample_table, rows={"kind": "sessions"})
    with pytest.raises(TypeError, match="register expects a datafusion.SessionContext"):
        sessionize.register(object())


def test_data_errors_and_malformed_files(tmp_path, sample_table):
    with pytest.raises(ValueError, match="[Dd]ivide by zero"):
        sessionize.sql("SELECT 1/0 AS x")
    spec = tmp_path / "bad.json"
    spec.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read the chart spec '.*bad.json'"):
        sessionize.chart(sample_table, spec)
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"PAR1garbagePAR1")
    # An exception (not a PanicException, which `except Exception` misses).
    with pytest.raises(Exception) as raised:
        sessionize.sessions(junk)
    assert isinstance(raised.value, (ValueError, sessionize.SessionizeError))
