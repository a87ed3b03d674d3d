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

use datafusion::parquet::file::properties::WriterProperties;

use crate::parquet_writer::ParallelParquetWriter;
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
    Parquet(Box<ParallelParquetWriter<W>>),
}

impl<W: Write + Send> Writer<W> {
    fn new(
        format: Format,
        schema: &SchemaRef,
        sink: W,
        parquet: Option<&WriterProperties>,
    ) -> Result<Self> {
        Ok(match format {
            Format::Table => Self::Table(sink, vec![]),
            Format::Csv => Self::Csv(Box::new(csv::Writer::new(sink))),
            Format::Json => Self::Json(json::ArrayWriter::new(sink)),
            Format::NdJson => Self::NdJson(json::LineDelimitedWriter::new(sink)),
            Format::Parquet => {
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                Self::Parquet(Box::new(ParallelParquetWriter::try_new_with_properties(
                    sink,
                    schema.clone(),
                    threads,
                    parquet.cloned().unwrap_or_default(),
                )?))
            }
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            Self::Table(_, batches) => batches.push(batch.clone()),
            Self::Csv(w) => w.write(&nested_as_json(batch)?)?,
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

/// `batch` with its nested columns (lists, structs, maps: GA4's `event_params`, `device`, `geo`)
/// as JSON text, which CSV can hold; other columns unchanged.
fn nested_as_json(batch: &RecordBatch) -> Result<RecordBatch> {
    use datafusion::arrow::array::{ArrayRef, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let nested = |t: &DataType| t.is_nested();
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| nested(f.data_type()))
    {
        return Ok(batch.clone());
    }
    let mut fields = vec![];
    let mut columns: Vec<ArrayRef> = vec![];
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if !nested(field.data_type()) {
            fields.push(field.as_ref().clone());
            columns.push(std::sync::Arc::clone(column));
            continue;
        }
        // One JSON object per row, {"v": value}, through arrow's JSON writer.
        let single = RecordBatch::try_new(
            std::sync::Arc::new(Schema::new(vec![field.as_ref().clone().with_name("v")])),
            vec![std::sync::Arc::clone(column)],
        )?;
        let mut lines = json::LineDelimitedWriter::new(Vec::new());
        lines.write(&single)?;
        lines.finish()?;
        let text = lines.into_inner();
        let values: Vec<Option<String>> = text
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| {
                let object: serde_json::Value = serde_json::from_slice(line).map_err(|e| {
                    DataFusionError::Execution(format!("JSON of a nested column: {e}"))
                })?;
                Ok(object.get("v").map(|v| v.to_string()))
            })
            .collect::<Result<_>>()?;
        fields.push(Field::new(field.name(), DataType::Utf8, true));
        columns.push(std::sync::Arc::new(StringArray::from(values)));
    }
    Ok(RecordBatch::try_new(
        std::sync::Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// Called with the number of rows written so far, after each batch.
pub type Progress<'a> = Option<&'a (dyn Fn(usize) + Sync)>;

/// Writes every batch of `stream` to `sink` in `format`; returns the sink and the number of rows.
pub async fn write_stream<W: Write + Send>(
    stream: SendableRecordBatchStream,
    format: Format,
    sink: W,
    progress: Progress<'_>,
) -> Result<(W, usize)> {
    write_stream_with(stream, format, sink, progress, None).await
}

/// [`write_stream`] with Parquet writer properties (`None`: the parquet crate's defaults).
pub async fn write_stream_with<W: Write + Send>(
    mut stream: SendableRecordBatchStream,
    format: Format,
    sink: W,
    progress: Progress<'_>,
    parquet: Option<&WriterProperties>,
) -> Result<(W, usize)> {
    let schema = stream.schema();
    let mut writer = Writer::new(format, &schema, sink, parquet)?;
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows += batch.num_rows();
        writer.write(&batch)?;
        if let Some(report) = progress {
            report(rows);
        }
    }
    if rows == 0 {
        // A header (CSV) or an empty file of the right schema (Parquet) even without rows.
        writer.write(&RecordBatch::new_empty(schema.clone()))?;
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
    progress: Progress<'_>,
    parquet: Option<&WriterProperties>,
) -> Result<usize> {
    commit_file(path, |file| {
        write_stream_with(stream, format, file, progress, parquet)
    })
    .await
}

/// Whether `target` names an object store location (`s3://`, `gs://`, ...) rather than a local path.
pub fn is_remote(target: &str) -> bool {
    target.contains("://") && !target.starts_with("file://")
}

/// Writes `stream` to `target`, a local path or an object store URL, in `format`, so that a failure
/// leaves nothing: a local file is written under a temporary name and renamed; a remote object is
/// staged in a local temporary file and sent as a multipart upload that is completed only when all
/// was written. Returns the number of rows.
pub async fn write_to(
    ctx: &datafusion::prelude::SessionContext,
    stream: SendableRecordBatchStream,
    format: Format,
    target: &str,
    progress: Progress<'_>,
) -> Result<usize> {
    write_to_with(ctx, stream, format, target, progress, None).await
}

/// [`write_to`] with Parquet writer properties (`None`: the parquet crate's defaults).
pub async fn write_to_with(
    ctx: &datafusion::prelude::SessionContext,
    stream: SendableRecordBatchStream,
    format: Format,
    target: &str,
    progress: Progress<'_>,
    parquet: Option<&WriterProperties>,
) -> Result<usize> {
    commit(ctx, target, |file| {
        write_stream_with(stream, format, file, progress, parquet)
    })
    .await
}

/// Gives `write` a file to write the output for `target` (a local path or an object store URL)
/// into, and commits what it wrote only when it succeeded, as [`write_to`] does: a local file is
/// written under a temporary name and renamed; a remote object is staged in a local temporary file
/// and sent as a multipart upload. `write` returns the file and its result.
pub(crate) async fn commit<R, F, Fut>(
    ctx: &datafusion::prelude::SessionContext,
    target: &str,
    write: F,
) -> Result<R>
where
    F: FnOnce(std::fs::File) -> Fut,
    Fut: std::future::Future<Output = Result<(std::fs::File, R)>>,
{
    if !is_remote(target) {
        let local = target.strip_prefix("file://").unwrap_or(target);
        return commit_file(Path::new(local), write).await;
    }
    crate::tables::register_object_store(ctx, target)?;
    let url = datafusion::datasource::listing::ListingTableUrl::parse(target)?;
    let store = ctx.state().runtime_env().object_store(&url)?;
    let staged = tempfile::tempfile()
        .map_err(|e| DataFusionError::Execution(format!("cannot stage the output: {e}")))?;
    let (mut staged, result) = write(staged).await?;
    upload(store, url.prefix().clone(), &mut staged, target).await?;
    Ok(result)
}

/// [`commit`] to a local file.
async fn commit_file<R, F, Fut>(path: &Path, write: F) -> Result<R>
where
    F: FnOnce(std::fs::File) -> Fut,
    Fut: std::future::Future<Output = Result<(std::fs::File, R)>>,
{
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let io_error = |what: &str, e: std::io::Error| {
        DataFusionError::Execution(format!("cannot {what} '{}': {e}", path.display()))
    };
    let temp = temporary_output(folder).map_err(|e| io_error("write", e))?;
    let file = temp
        .as_file()
        .try_clone()
        .map_err(|e| io_error("write", e))?;
    let (file, result) = write(file).await?;
    file.sync_all().map_err(|e| io_error("write", e))?;
    drop(file);
    temp.persist(path).map_err(|e| io_error("write", e.error))?;
    Ok(result)
}

async fn upload(
    store: std::sync::Arc<dyn object_store::ObjectStore>,
    path: object_store::path::Path,
    staged: &mut std::fs::File,
    target: &str,
) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    use tokio::io::AsyncWriteExt;
    let error =
        |e: std::io::Error| DataFusionError::Execution(format!("cannot write '{target}': {e}"));
    staged.seek(SeekFrom::Start(0)).map_err(error)?;
    let mut writer = object_store::buffered::BufWriter::new(store, path);
    let mut buffer = vec![0u8; 8 << 20];
    loop {
        let n = staged.read(&mut buffer).map_err(error)?;
        if n == 0 {
            break;
        }
        if let Err(e) = writer.write_all(&buffer[..n]).await {
            writer.abort().await.ok();
            return Err(error(e));
        }
    }
    // The upload is completed (and the object made visible) only here.
    writer.shutdown().await.map_err(error)
}

/// Writes `df` under the local folder `target` as Hive-style partitions by `column`
/// (`column=VALUE/part-*.ext`), atomically: into a temporary folder beside `target` that replaces it
/// only when all was written.
pub async fn write_partitioned(
    _ctx: &datafusion::prelude::SessionContext,
    df: datafusion::dataframe::DataFrame,
    format: Format,
    target: &str,
    column: &str,
) -> Result<()> {
    use datafusion::dataframe::DataFrameWriteOptions;
    if is_remote(target) {
        return Err(DataFusionError::Plan(format!(
            "--partition-by-day writes to a local folder; '{target}' is an object store URL"
        )));
    }
    let target = Path::new(target.strip_prefix("file://").unwrap_or(target));
    let folder = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let io_error = |e: std::io::Error| {
        DataFusionError::Execution(format!("cannot write '{}': {e}", target.display()))
    };
    let temp = tempfile::Builder::new()
        .prefix(".sessionize-")
        .tempdir_in(folder)
        .map_err(io_error)?;
    let staged = temp.path().join("out");
    let staged_str = format!("{}/", staged.display());
    let options = DataFrameWriteOptions::new().with_partition_by(vec![column.to_string()]);
    match format {
        Format::Parquet => df.write_parquet(&staged_str, options, None).await?,
        Format::Csv => df.write_csv(&staged_str, options, None).await?,
        Format::NdJson => df.write_json(&staged_str, options, None).await?,
        other => {
            return Err(DataFusionError::Plan(format!(
                "--partition-by-day writes parquet, csv or ndjson, not {other}"
            )));
        }
    };
    if target.exists() {
        let old = temp.path().join("old");
        std::fs::rename(target, &old).map_err(io_error)?;
    }
    std::fs::rename(&staged, target).map_err(io_error)?;
    Ok(())
}

/// A temporary file in `folder` that becomes an output file by a rename. It is created with the
/// permissions of any new file (read-write for all, less the umask, as `File::create` gives),
/// not the owner-only permissions of a temporary file, so the renamed output is readable as
/// other tools' output is.
fn temporary_output(folder: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".sessionize-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(folder)
}

/// Writes `text` to the local file `path` atomically (temporary name, then rename).
pub fn write_text_file(path: &Path, text: &str) -> Result<()> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let io_error = |e: std::io::Error| {
        DataFusionError::Execution(format!("cannot write '{}': {e}", path.display()))
    };
    let mut temp = temporary_output(folder).map_err(io_error)?;
    temp.write_all(text.as_bytes()).map_err(io_error)?;
    temp.as_file().sync_all().map_err(io_error)?;
    temp.persist(path).map_err(|e| io_error(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output file gets the permissions of any new file in its folder (the umask applied to
    /// read-write for all), not a temporary file's owner-only ones.
    #[cfg(unix)]
    #[test]
    fn output_files_get_the_permissions_of_new_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.txt");
        std::fs::File::create(&plain).unwrap();
        let output = dir.path().join("output.txt");
        write_text_file(&output, "x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&output), mode(&plain));
    }
}
