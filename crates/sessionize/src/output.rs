//! Writing query results: a terminal table, CSV, JSON, NDJSON or Parquet, to stdout or a file.
//!
//! A file is written under a temporary name in the target's folder and renamed over the target only
//! when everything was written, so a failure never leaves a partial file behind.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::arrow::{csv, json};
use datafusion::common::{DataFusionError, Result};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A bordered text table (all rows are collected first).
    Table,
    /// CSV with a header.
    Csv,
    /// One JSON array of objects.
    Json,
    /// One JSON object per line.
    NdJson,
    /// Parquet.
    Parquet,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "table" => Ok(Self::Table),
            "csv" => Ok(Self::Csv),
            "json" => Ok(Self::Json),
            "ndjson" | "jsonl" => Ok(Self::NdJson),
            "parquet" => Ok(Self::Parquet),
            other => Err(format!(
                "unknown format '{other}': expected table, csv, json, ndjson or parquet"
            )),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Table => "table",
            Self::Csv => "csv",
            Self::Json => "json",
            Self::NdJson => "ndjson",
            Self::Parquet => "parquet",
        })
    }
}

enum Writer<W: Write + Send> {
    Table(W, Vec<RecordBatch>),
    Csv(Box<csv::Writer<W>>),
    Json(json::ArrayWriter<W>),
    NdJson(json::LineDelimitedWriter<W>),
    Parquet(Box<ArrowWriter<W>>),
}

impl<W: Write + Send> Writer<W> {
    fn new(format: Format, schema: &SchemaRef, sink: W) -> Result<Self> {
        Ok(match format {
            Format::Table => Self::Table(sink, vec![]),
            Format::Csv => Self::Csv(Box::new(csv::Writer::new(sink))),
            Format::Json => Self::Json(json::ArrayWriter::new(sink)),
            Format::NdJson => Self::NdJson(json::LineDelimitedWriter::new(sink)),
            Format::Parquet => {
                Self::Parquet(Box::new(ArrowWriter::try_new(sink, schema.clone(), None)?))
            }
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            Self::Table(_, batches) => batches.push(batch.clone()),
            Self::Csv(w) => w.write(batch)?,
            Self::Json(w) => w.write(batch)?,
            Self::NdJson(w) => w.write(batch)?,
            Self::Parquet(w) => w.write(batch)?,
        }
        Ok(())
    }

    fn finish(self, schema: &SchemaRef) -> Result<W> {
        Ok(match self {
            Self::Table(mut sink, batches) => {
                let table = if batches.is_empty() {
                    pretty_format_batches(&[RecordBatch::new_empty(schema.clone())])?
                } else {
                    pretty_format_batches(&batches)?
                };
                writeln!(sink, "{table}")?;
                sink
            }
            Self::Csv(w) => w.into_inner(),
            Self::Json(mut w) => {
                w.finish()?;
                w.into_inner()
            }
            Self::NdJson(mut w) => {
                w.finish()?;
                w.into_inner()
            }
            Self::Parquet(w) => w.into_inner()?,
        })
    }
}

/// Writes every batch of `stream` to `sink` in `format`; returns the sink and the number of rows.
pub async fn write_stream<W: Write + Send>(
    mut stream: SendableRecordBatchStream,
    format: Format,
    sink: W,
) -> Result<(W, usize)> {
    let schema = stream.schema();
    let mut writer = Writer::new(format, &schema, sink)?;
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows += batch.num_rows();
        writer.write(&batch)?;
    }
    let mut sink = writer.finish(&schema)?;
    sink.flush()?;
    Ok((sink, rows))
}

/// Writes `stream` to the file `path` in `format`, atomically: under a temporary name in the same
/// folder, renamed over `path` only when all was written. Returns the number of rows.
pub async fn write_file(
    stream: SendableRecordBatchStream,
    format: Format,
    path: &Path,
) -> Result<usize> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let io_error = |what: &str, e: std::io::Error| {
        DataFusionError::Execution(format!("cannot {what} '{}': {e}", path.display()))
    };
    let temp = tempfile::Builder::new()
        .prefix(".sessionize-")
        .suffix(".tmp")
        .tempfile_in(folder)
        .map_err(|e| io_error("write", e))?;
    let (temp, rows) = write_stream(stream, format, temp).await?;
    temp.as_file()
        .sync_all()
        .map_err(|e| io_error("write", e))?;
    temp.persist(path).map_err(|e| io_error("write", e.error))?;
    Ok(rows)
}
