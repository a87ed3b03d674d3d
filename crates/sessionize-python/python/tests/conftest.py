"""Shared fixtures: the shipped sample export, and the command line to compare with."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

WORKSPACE = Path(os.environ.get("SESSIONIZE_WORKSPACE", Path(__file__).parents[4]))
BIN = os.environ.get("SESSIONIZE_BIN", str(WORKSPACE / "target/debug/sessionize"))


@pytest.fixture
def sample() -> Path:
    """The sample Amplitude export shipped in data/ (6,412 events of 289 users)."""
    return WORKSPACE / "data" / "events.parquet"


@pytest.fixture
def sample_table(sample: Path) -> pa.Table:
    return pq.read_table(sample)


@pytest.fixture
def cli(tmp_path: Path):
    """Runs `sessionize ARGS... -o OUT.parquet` and returns OUT as a pyarrow Table."""

    def run(*args: str) -> pa.Table:
        out = tmp_path / f"cli-{len(list(tmp_path.iterdir()))}.parquet"
        done = subprocess.run(
            [BIN, *args, "-o", str(out)], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        return pq.read_table(out)

    return run


def rows(table: pa.Table, *keys: str) -> list[dict]:
    """The rows of `table` as dicts, sorted by `keys` (nulls first), for comparing results whose
    types may differ only in their Arrow layout (string and string_view)."""
    listed = table.to_pylist()
    return sorted(listed, key=lambda r: tuple((r[k] is not None, r[k]) for k in keys))


def assert_same(ours: list[dict], theirs: list[dict]) -> None:
    """Equal rows, floats to 1e-9 relative: sums of floats differ in their last bits with the
    order in which partitions add them, in any engine."""
    assert len(ours) == len(theirs)
    for mine, other in zip(ours, theirs):
        assert mine.keys() == other.keys()
        for key, value in mine.items():
            if isinstance(value, float):
                assert value == pytest.approx(other[key], rel=1e-9), key
            else:
                assert value == other[key], key
