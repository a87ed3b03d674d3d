"""Type stubs of sessionize's native module (crates/sessionize-python/src). Users call the
functions of the `sessionize` package, which name and document the options; these take them
already named (a dict with the command line's option names in snake case)."""

from typing import Any

class SessionizeError(Exception):
    """An error that is neither a missing input (FileNotFoundError) nor bad options or data
    (ValueError): I/O, object stores, memory, another datafusion version, or a bug."""

DATAFUSION_MAJOR: int
"""The DataFusion major version the functions are built with (55)."""

class WindowFunction:
    """A window function (session_number, session_id, conditional_true_event)."""

    @property
    def name(self) -> str: ...
    def __datafusion_window_udf__(self) -> object:
        """The `datafusion_window_udf` capsule datafusion-python reads. Raises SessionizeError
        when the datafusion package imported is not 55.x."""

class AggregateFunction:
    """An aggregate function (session_count, session_seconds, session_list, session_table,
    session_first_value, session_last_value)."""

    @property
    def name(self) -> str: ...
    def __datafusion_aggregate_udf__(self) -> object:
        """The `datafusion_aggregate_udf` capsule datafusion-python reads. Raises
        SessionizeError when the datafusion package imported is not 55.x."""

class ScalarFunction:
    """A scalar function (event_time, utc_day, ..., and the JSON functions)."""

    @property
    def name(self) -> str: ...
    def __datafusion_scalar_udf__(self) -> object:
        """The `datafusion_scalar_udf` capsule datafusion-python reads. Raises SessionizeError
        when the datafusion package imported is not 55.x."""

class ArrowResult:
    """A result, read once through the Arrow C stream interface (`pyarrow.table(result)`)."""

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object: ...

def functions() -> list[WindowFunction | AggregateFunction | ScalarFunction]:
    """Every function: window, aggregate, scalar, then the JSON functions."""

def ffi_version() -> int:
    """The datafusion-ffi major version of this module."""

def sessions(data: list[str] | Any, options: dict[str, Any]) -> tuple[ArrowResult, list[str]]:
    """The sessions table and the notes to show; `data` is a list of paths or Arrow data."""

def annotate(data: list[str] | Any, options: dict[str, Any]) -> tuple[ArrowResult, list[str]]:
    """Every event with its session and the notes to show."""

def chart(
    data: list[str] | Any, spec: str, options: dict[str, Any]
) -> tuple[ArrowResult, list[str]]:
    """The chart of `spec` (JSON text) and the notes to show."""

def sql(
    query: str, tables: dict[str, list[str] | Any], options: dict[str, Any]
) -> tuple[ArrowResult, list[str]]:
    """The result of one SQL statement over `tables` and the notes to show."""
