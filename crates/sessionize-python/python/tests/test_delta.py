"""Delta Lake tables written by the command line (`--output delta:FOLDER`) read by the PyPI
`deltalake` package, by Polars and by sessionize.sql(), with the rows of the Parquet output."""

from __future__ import annotations

import deltalake
import polars as pl
import sessionize
from conftest import rows


def test_delta_tables_read_by_deltalake_polars_and_sql(sample, tmp_path, cli):
    table = tmp_path / "sessions"
    parquet = cli("sessions", str(sample))
    import subprocess

    from conftest import BIN

    subprocess.run(
        [BIN, "sessions", str(sample), "--partition-by-day", "--output", f"delta:{table}"],
        check=True,
        capture_output=True,
    )
    delta = deltalake.DeltaTable(str(table))
    assert delta.version() == 0
    assert "session_started_at_day" in delta.metadata().partition_columns
    read = delta.to_pyarrow_table()
    keys = ("unique_session_id",)
    assert rows(read.select(parquet.column_names), *keys) == rows(parquet, *keys)
    assert pl.read_delta(str(table)).height == parquet.num_rows
    counted = sessionize.sql("SELECT count(*) AS n FROM s", s=f"delta:{table}")
    assert counted.column("n").to_pylist() == [parquet.num_rows]
