"""sessionize: sessions and session metrics from product-analytics event exports.

Two ways in, one engine (the Rust library behind the ``sessionize`` command line):

* ``register(ctx)`` puts every SQL function of sessionize (``session_number``, ``session_id``,
  ``session_count``, ``session_list``, ``event_time``, ...) and the JSON functions into a
  ``datafusion.SessionContext`` of the ``datafusion`` package 55.x, through datafusion-ffi.
* ``sessions``, ``annotate``, ``chart`` and ``sql`` run the command line's jobs on paths (files,
  folders, globs, object-store URLs) or on Arrow data (a PyArrow Table or RecordBatchReader, a
  Polars DataFrame, a pandas DataFrame, a DuckDB relation), and return a ``pyarrow.Table``.

The session rule is the command line's: a new session starts at an actor's first event and
wherever the gap to the previous event is strictly greater than the timeout; equal timestamps
never split.

Errors: ``FileNotFoundError`` for an input that does not exist, ``ValueError`` for bad options,
SQL and data and for inputs that cannot be read, ``TypeError`` for data of an unknown kind,
``SessionizeError`` for the rest; their messages are the command line's sentences (which name the
command line's flags: ``--timeout`` is ``timeout=`` here).
Long work releases the GIL and stops on Ctrl-C (``KeyboardInterrupt``); a spinner with the
elapsed time shows on stderr in terminals and notebooks (``sessionize.progress = False`` turns it
off).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa

from . import _sessionize
from ._sessionize import (
    AggregateFunction,
    ScalarFunction,
    SessionizeError,
    WindowFunction,
)

__all__ = [
    "AggregateFunction",
    "ScalarFunction",
    "SessionizeError",
    "WindowFunction",
    "annotate",
    "chart",
    "functions",
    "register",
    "sessions",
    "sql",
    "udaf",
    "udf",
    "udwf",
]

#: The major version of the ``datafusion`` package ``register`` works with.
DATAFUSION_MAJOR: int = _sessionize.DATAFUSION_MAJOR


# --------------------------------------------------------------------------------------------
# Into datafusion-python apps
# --------------------------------------------------------------------------------------------


def functions() -> list[WindowFunction | AggregateFunction | ScalarFunction]:
    """Every function: sessionize's window, aggregate and scalar functions, then the JSON
    functions of datafusion-functions-json (``json_get_str``, ...). Each exposes
    ``__datafusion_window_udf__``, ``__datafusion_aggregate_udf__`` or
    ``__datafusion_scalar_udf__`` for ``datafusion.udwf`` / ``udaf`` / ``udf``."""
    return list(_sessionize.functions())


def _check_datafusion() -> Any:
    import datafusion

    major = str(datafusion.__version__).split(".")[0]
    if major != str(DATAFUSION_MAJOR):
        raise SessionizeError(
            f"sessionize's functions are built for datafusion {DATAFUSION_MAJOR}.x "
            f"(datafusion-ffi {_sessionize.ffi_version()}), but the datafusion package imported "
            f"is {datafusion.__version__}: install a datafusion {DATAFUSION_MAJOR}.x "
            f"(pip install 'datafusion>={DATAFUSION_MAJOR},<{DATAFUSION_MAJOR + 1}')"
        )
    return datafusion


def _wrap(function: WindowFunction | AggregateFunction | ScalarFunction) -> Any:
    datafusion = _check_datafusion()
    if isinstance(function, WindowFunction):
        return datafusion.udwf(function)
    if isinstance(function, AggregateFunction):
        return datafusion.udaf(function)
    return datafusion.udf(function)


def register(ctx: Any) -> None:
    """Registers every function of sessionize, and the JSON functions, into ``ctx``, a
    ``datafusion.SessionContext`` of the ``datafusion`` package 55.x.

    The JSON operators ``->`` and ``->>`` are a SQL planner extension that datafusion-ffi cannot
    carry: in datafusion-python write ``json_get_str(event_properties, 'page')``.

    Raises ``SessionizeError`` naming both versions when the ``datafusion`` package imported is
    not 55.x (its function structures would not match).
    """
    if not all(hasattr(ctx, m) for m in ("register_udwf", "register_udaf", "register_udf")):
        raise TypeError(
            "register expects a datafusion.SessionContext, but got " + type(ctx).__name__
        )
    for function in functions():
        wrapped = _wrap(function)
        if isinstance(function, WindowFunction):
            ctx.register_udwf(wrapped)
        elif isinstance(function, AggregateFunction):
            ctx.register_udaf(wrapped)
        else:
            ctx.register_udf(wrapped)


def _function(name: str, kind: type) -> Any:
    for function in functions():
        if function.name == name and isinstance(function, kind):
            return _wrap(function)
    names = sorted(f.name for f in functions() if isinstance(f, kind))
    raise ValueError(f"sessionize has no {kind.__name__} named '{name}' (it has {', '.join(names)})")


def udwf(name: str) -> Any:
    """The window function ``name`` (``session_number``, ``session_id``,
    ``conditional_true_event``) as a ``datafusion.WindowUDF``, for ``ctx.register_udwf``."""
    return _function(name, WindowFunction)


def udaf(name: str) -> Any:
    """The aggregate function ``name`` (``session_count``, ``session_seconds``,
    ``session_list``, ``session_table``, ``session_first_value``,
    ``session_last_value``) as a ``datafusion.AggregateUDF``, for
    ``ctx.register_udaf``."""
    return _function(name, AggregateFunction)


def udf(name: str) -> Any:
    """The scalar function ``name`` (``event_time``, ``utc_day``, ``json_get_str``, ...) as a
    ``datafusion.ScalarUDF``, for ``ctx.register_udf``."""
    return _function(name, ScalarFunction)


# --------------------------------------------------------------------------------------------
# The command line's jobs on paths and Arrow data
# --------------------------------------------------------------------------------------------

Data = Any
"""A path (str or os.PathLike: a file, folder, glob or s3:// gs:// az:// http(s):// URL), a list
of paths, or Arrow data: an object with ``__arrow_c_stream__`` (a PyArrow Table or
RecordBatchReader, a Polars DataFrame, a DuckDB relation) or a pandas DataFrame."""

Duration = str | datetime.timedelta
"""A duration: text as on the command line (``"30m"``, ``"1h30m"``, ``"90s"``) or a timedelta."""


def _data(data: Data) -> Any:
    if isinstance(data, (str, os.PathLike)):
        return [os.fspath(data)]
    if isinstance(data, (list, tuple)) and data and all(
        isinstance(d, (str, os.PathLike)) for d in data
    ):
        return [os.fspath(d) for d in data]
    module = type(data).__module__.split(".")[0]
    if module == "polars" and type(data).__name__ == "LazyFrame":
        return data.collect()
    if module == "polars" and type(data).__name__ == "Series":
        raise TypeError("expected a table of events, but got a Polars Series: pass a DataFrame")
    if module == "pandas" and type(data).__name__ == "DataFrame":
        # The index is not an event column (pandas' own Arrow stream would add a named one).
        return pa.Table.from_pandas(data, preserve_index=False)
    if hasattr(data, "__arrow_c_stream__"):
        return data
    if module == "duckdb" and hasattr(data, "arrow"):
        return data.arrow()
    raise TypeError(
        "expected a path, a list of paths, or Arrow data (a PyArrow Table or RecordBatchReader, "
        f"a Polars or pandas DataFrame, a DuckDB relation), but got {type(data).__name__}"
    )


def _duration(name: str, value: Duration | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        micros = value // datetime.timedelta(microseconds=1)
        if micros <= 0:
            raise ValueError(f"{name} must be positive, but got {value}")
        return f"{micros}us"
    if isinstance(value, str):
        return value
    raise ValueError(
        f"{name} expects a duration such as '30m' or a datetime.timedelta, but got {value!r}"
    )


def _names(name: str, value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    try:
        values = list(value)
    except TypeError:
        values = [value]
    if not all(isinstance(v, str) for v in values):
        raise ValueError(f"{name} expects a name or a list of names (str), but got {value!r}")
    return values


def _threads(threads: int | None) -> int | None:
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads expects a positive integer, but got {threads!r}")
    return threads


#: Whether calls show a spinner on stderr: None (the default) shows one where the command line
#: would (stderr is a terminal) and in Jupyter notebooks; True or False force it.
progress: bool | None = None

_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def _shows_progress() -> bool:
    if progress is not None:
        return progress
    if "ipykernel" in sys.modules:
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def _spinner(what: str) -> Iterator[None]:
    """A spinner with the elapsed time on stderr while the engine runs (it releases the GIL, so
    this thread runs beside it), as the command line's; shown after half a second, then cleared."""
    if not _shows_progress():
        yield
        return
    done = threading.Event()
    started = time.monotonic()

    def spin() -> None:
        shown = False
        frame = 0
        while not done.wait(0.12):
            elapsed = time.monotonic() - started
            if elapsed < 0.5:
                continue
            sys.stderr.write(f"\r{_SPINNER[frame % len(_SPINNER)]} {what} [{elapsed:.0f}s]")
            sys.stderr.flush()
            shown = True
            frame += 1
        if shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _answer(answer: tuple[Any, list[str]]) -> pa.Table:
    result, notes = answer
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return pa.table(result)


def _session_options(
    *,
    source: str | None,
    session_source: str | None,
    compat: str | None,
    timeout: Duration | None,
    max_length: Duration | None,
    restart_events: str | Iterable[str] | None,
    exclude_events: str | Iterable[str] | None,
    exclude_presets: str | Iterable[str] | None,
    timeout_by: tuple[str, Mapping[str, Duration]] | None,
    actor: str | Sequence[str] | None,
    stitch: str | None,
    time: str,
    time_unit: str,
    event: str,
    session_id_col: str,
    insert_id_col: str | None,
    event_id_col: str | None,
    dedup: str | None,
    time_zone: str,
    source_relation: str,
    date_from: str | datetime.date | None,
    date_to: str | datetime.date | None,
    threads: int | None,
) -> dict[str, Any]:
    if timeout_by is not None:
        try:
            column, timeouts = timeout_by
            spec = ",".join(
                f"{platform}={_duration('timeout_by', d)}" for platform, d in timeouts.items()
            )
        except (TypeError, ValueError, AttributeError):
            raise ValueError(
                "timeout_by expects (column, {platform: duration}), for example "
                "('platform', {'web': '30m', 'ios': '5m'}), "
                f"but got {timeout_by!r}"
            ) from None
        timeout_by = (column, spec)
    if actor is not None and not isinstance(actor, str):
        actor = ",".join(_names("actor", actor))
    return {
        "source": source,
        "session_source": session_source,
        "compat": compat,
        "timeout": _duration("timeout", timeout),
        "max_length": _duration("max_length", max_length),
        "restart_events": _names("restart_events", restart_events),
        "exclude_events": _names("exclude_events", exclude_events),
        "exclude_presets": _names("exclude_presets", exclude_presets),
        "timeout_by": timeout_by,
        "actor": actor,
        "stitch": stitch,
        "time": time,
        "time_unit": time_unit,
        "event": event,
        "session_id_col": session_id_col,
        "insert_id_col": insert_id_col,
        "event_id_col": event_id_col,
        "dedup": dedup,
        "time_zone": time_zone,
        "source_relation": source_relation,
        "date_from": None if date_from is None else str(date_from),
        "date_to": None if date_to is None else str(date_to),
        "threads": _threads(threads),
    }


def sessions(
    data: Data,
    *,
    timeout: Duration | None = None,
    max_length: Duration | None = None,
    restart_events: str | Iterable[str] | None = None,
    exclude_events: str | Iterable[str] | None = None,
    exclude_presets: str | Iterable[str] | None = None,
    timeout_by: tuple[str, Mapping[str, Duration]] | None = None,
    source: str | None = None,
    session_source: str | None = None,
    compat: str | None = None,
    actor: str | Sequence[str] | None = None,
    stitch: str | None = None,
    time: str = "event_time",
    time_unit: str = "auto",
    event: str = "event_type",
    session_id_col: str = "session_id",
    insert_id_col: str | None = None,
    event_id_col: str | None = None,
    dedup: str | None = None,
    time_zone: str = "UTC",
    source_relation: str = "",
    date_from: str | datetime.date | None = None,
    date_to: str | datetime.date | None = None,
    threads: int | None = None,
) -> pa.Table:
    """The sessions table of ``sessionize sessions``: one row per session with the columns of
    Fivetran's dbt model ``amplitude__sessions`` (``unique_session_id``, ``user_id``,
    ``events_per_session``, ``session_started_at``, ``session_ended_at``,
    ``session_length_in_minutes``, ..., ``session_length_seconds``).

    Every option is the command line's flag in snake case: ``timeout`` (default 30 minutes; a gap
    strictly longer starts a session), ``max_length``, ``restart_events``, ``exclude_events``,
    ``exclude_presets`` (``"clevertap"``), ``timeout_by=("platform", {"web": "30m", "ios":
    "5m"})``, ``source`` (``"amplitude"``, ``"amplitude-fivetran"``, ``"segment"``,
    ``"mixpanel"``, ``"posthog"``, ``"ga4"``, ``"snowplow"``; default: recognised from the
    columns), ``session_source`` (``"derived"``, the default, or ``"sdk"``), ``compat="dbt"``
    (which takes the SDK's sessions: not with ``session_source``), ``actor`` (a column, or
    several: the first non-null), ``stitch="anonymous_id=user_id"``, ``time``,
    ``time_unit`` (of epoch numbers: ``"auto"``, ``"s"``, ``"ms"``, ``"us"``, ``"ns"``),
    ``event``, ``session_id_col``, ``insert_id_col``, ``event_id_col``, ``dedup="insert_id"``,
    ``time_zone`` (of the ``*_day`` columns), ``source_relation``, ``date_from`` / ``date_to``
    (``YYYY-MM-DD``, with ``compat="dbt"``), ``threads``.

    Durations are text as on the command line (``"30m"``, ``"1h30m"``) or ``timedelta``.
    Times have the time column's type (``timestamp[us, tz=UTC]`` where it was converted: epoch
    numbers, text, zones other than UTC); lengths are minutes and seconds (float64).
    Notes the command line prints (events left out for a null actor or time) go to stderr.
    Returns a ``pyarrow.Table`` (``polars.from_arrow`` and DuckDB read it without a copy,
    ``.to_pandas()`` gives pandas).
    """
    options = _session_options(**{k: v for k, v in locals().items() if k != "data"})
    with _spinner("reading events and building sessions"):
        answer = _sessionize.sessions(_data(data), options)
    return _answer(answer)


def annotate(
    data: Data,
    *,
    concluded: bool = False,
    timeout: Duration | None = None,
    max_length: Duration | None = None,
    restart_events: str | Iterable[str] | None = None,
    exclude_events: str | Iterable[str] | None = None,
    exclude_presets: str | Iterable[str] | None = None,
    timeout_by: tuple[str, Mapping[str, Duration]] | None = None,
    source: str | None = None,
    session_source: str | None = None,
    compat: str | None = None,
    actor: str | Sequence[str] | None = None,
    stitch: str | None = None,
    time: str = "event_time",
    time_unit: str = "auto",
    event: str = "event_type",
    session_id_col: str = "session_id",
    insert_id_col: str | None = None,
    event_id_col: str | None = None,
    dedup: str | None = None,
    time_zone: str = "UTC",
    source_relation: str = "",
    date_from: str | datetime.date | None = None,
    date_to: str | datetime.date | None = None,
    threads: int | None = None,
) -> pa.Table:
    """Every event with its session, as ``sessionize annotate``: the input's columns, in the
    input's row order, plus ``session_id`` (int64: the session's start in epoch milliseconds, or
    the SDK's session id; the sessions table's ``session_id``) and ``session_number`` (int64, from 1
    per actor); null for events left out of sessions.
    ``concluded=True`` appends one ``Session Concluded`` event per session. The other options
    are those of :func:`sessions`."""
    options = _session_options(
        **{k: v for k, v in locals().items() if k not in ("data", "concluded")}
    )
    options["concluded"] = concluded
    with _spinner("reading events and annotating them"):
        answer = _sessionize.annotate(_data(data), options)
    return _answer(answer)


def chart(
    data: Data,
    spec: Mapping[str, Any] | str | os.PathLike | None = None,
    *,
    interval: str | None = None,
    date_from: str | datetime.date | None = None,
    date_to: str | datetime.date | None = None,
    time_zone: str | None = None,
    group_by: str | Iterable[str] | None = None,
    rows: Sequence[Mapping[str, Any]] | None = None,
    segments: Sequence[Mapping[str, Any]] | None = None,
    formulas: str | Iterable[str] | None = None,
    buckets: Sequence[float] | None = None,
    min_duration: Duration | None = None,
    timeout: Duration | None = None,
    session_source: str | None = None,
    restart_events: str | Iterable[str] | None = None,
    exclude_events: str | Iterable[str] | None = None,
    exclude_presets: str | Iterable[str] | None = None,
    source: str | None = None,
    time_unit: str = "auto",
    threads: int | None = None,
) -> pa.Table:
    """The User Sessions chart of ``sessionize chart``: one row per interval (and series), with
    the metrics of each row of the spec (sessions, average length, ...) as columns.

    ``spec`` is the command line's spec: a dict in the shape of its JSON (``{"interval": "week",
    "rows": [...], "group_by": [...], "segments": [...], "formulas": [...], "session":
    {"timeout": "30m"}}``), or the path of a ``.toml`` / ``.json`` spec file. The keyword
    arguments are the command line's flags over it: ``interval`` (``"day"``, ``"week"``,
    ``"month"``, ``"total"``), ``date_from`` / ``date_to`` (the spec's ``from`` / ``to``),
    ``time_zone``, ``group_by`` (``"event.page"``, ``"last:event.page"``), ``rows``,
    ``segments``, ``formulas`` (``"SESSIONTOTALS(A)"``, ...; several separated by ``;``, at most
    10), ``buckets`` (length edges in seconds), ``min_duration`` (every row's), ``timeout``,
    ``session_source``, ``restart_events``, ``exclude_events``, ``exclude_presets``
    (``"clevertap"``); ``source`` and ``time_unit`` as for :func:`sessions`. Returns a ``pyarrow.Table``."""
    if spec is None:
        merged: dict[str, Any] = {}
    elif isinstance(spec, Mapping):
        merged = json.loads(json.dumps(spec, default=str))
    elif isinstance(spec, (str, os.PathLike)):
        path = os.fspath(spec)
        try:
            with open(path, encoding="utf-8") as file:
                text = file.read()
        except OSError as e:
            raise FileNotFoundError(f"cannot read the chart spec '{path}': {e.strerror}") from None
        if path.lower().endswith(".json"):
            try:
                merged = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"cannot read the chart spec '{path}': {e}") from None
        else:
            import tomllib

            try:
                merged = tomllib.loads(text)
            except tomllib.TOMLDecodeError as e:
                raise ValueError(f"cannot read the chart spec '{path}': {e}") from None
    else:
        raise ValueError(f"spec expects a dict or the path of a spec file, but got {spec!r}")
    flags = {
        "interval": interval,
        "from": None if date_from is None else str(date_from),
        "to": None if date_to is None else str(date_to),
        "time_zone": time_zone,
        "rows": None if rows is None else _mappings("rows", rows),
    }
    for key, value in flags.items():
        if value is not None:
            merged[key] = value
    if min_duration is not None:
        chart_rows = merged.get("rows") or [{}]
        merged["rows"] = [
            {**row, "min_duration": _duration("min_duration", min_duration)} for row in chart_rows
        ]
    merged.setdefault("group_by", [])
    merged["group_by"] = list(merged["group_by"]) + _names("group_by", group_by)
    if segments is not None:
        merged["segments"] = list(merged.get("segments", [])) + _mappings("segments", segments)
    if formulas is not None:
        # As --formula: several separated by ';'.
        listed = [formulas] if isinstance(formulas, str) else _names("formulas", formulas)
        split = [f.strip() for text in listed for f in text.split(";") if f.strip()]
        merged["formulas"] = list(merged.get("formulas", [])) + split
        if len(merged["formulas"]) > 10:
            raise ValueError(
                f"at most 10 formulas are allowed, but {len(merged['formulas'])} were given"
            )
    if buckets is not None:
        try:
            edges = [float(b) for b in buckets]
        except (TypeError, ValueError):
            raise ValueError(
                f"buckets expects a list of numbers (seconds), but got {buckets!r}"
            ) from None
        merged["length_buckets"] = {"edges": edges}
    session = dict(merged.get("session", {}))
    if timeout is not None:
        session["timeout"] = _duration("timeout", timeout)
    if session_source is not None:
        session["source"] = session_source
    for key, value in (("restart_events", restart_events), ("exclude_events", exclude_events)):
        if value is not None:
            session[key] = list(session.get(key, [])) + _names(key, value)
    if session:
        merged["session"] = session
    options = {
        "source": source,
        "time_unit": time_unit,
        "threads": _threads(threads),
        "exclude_presets": _names("exclude_presets", exclude_presets),
    }
    with _spinner("reading events and charting sessions"):
        answer = _sessionize.chart(_data(data), json.dumps(merged), options)
    return _answer(answer)


def _mappings(name: str, value: Any) -> list[dict[str, Any]]:
    if isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value):
        raise ValueError(f"{name} expects a list of dicts, but got {value!r}")
    return [dict(v) for v in value]


def sql(
    query: str,
    *,
    source: str | None = None,
    time_unit: str = "auto",
    threads: int | None = None,
    **tables: Data,
) -> pa.Table:
    """Runs one SQL statement, as ``sessionize query``, with every function of sessionize and
    the JSON functions registered, over the tables given by name
    (``sql("SELECT ... FROM events", events=df)``; ``"delta:FOLDER"`` names a Delta Lake table).
    The table ``events`` is mapped by its export
    source (``source``, or recognised from its columns); text and epoch-number ``event_time``
    columns become timestamps. Returns a ``pyarrow.Table``."""
    registered = {name: _data(data) for name, data in tables.items()}
    options = {"source": source, "time_unit": time_unit, "threads": _threads(threads)}
    with _spinner("running the query"):
        answer = _sessionize.sql(query, registered, options)
    return _answer(answer)
