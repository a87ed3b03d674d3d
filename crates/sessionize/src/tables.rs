//! Loading event tables: Parquet, CSV and newline-delimited JSON (plain, `.gz`, or Amplitude's
//! `.zip` archive of such files), from files, folders and globs, locally or on an object store
//! (`s3://`, `gs://`, `az://`, `http(s)://`, `file://`).
//!
//! Parquet stays lazy (a DataFusion listing table reads only the columns a query needs). CSV and JSON
//! are read into memory, where text times are parsed (naming the file, row and text that fails) and
//! JSON objects such as `event_properties` become JSON text, so the same SQL runs on every format.
//! Several inputs, and files with different columns, are combined by column name: a column missing in
//! one file is null there.
//!
//! Errors name the path and say what was wrong with it, since they are shown to users as they are.

use std::collections::HashSet;
use std::io::Read;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::json::reader::{ReaderBuilder, infer_json_schema_from_iterator};
use datafusion::common::{DataFusionError, Result, plan_err};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use url::Url;

use crate::scalar::{EpochUnit, event_time_udf, to_event_time};

/// How to load events.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The events' time column: in every input it becomes `Timestamp(µs, "UTC")` by
    /// [`crate::scalar::to_event_time`] (text, epoch numbers, dates, timestamps of other units or
    /// zones), except where all the Parquet files already share one timestamp type, which is kept.
    pub time_column: Option<String>,
    /// The unit of epoch numbers in the time column (default: each value's magnitude tells it).
    pub time_unit: EpochUnit,
    /// The inputs go to a Ballista cluster: only Parquet, which executors read themselves, works
    /// (CSV and JSON are read into this process's memory).
    pub for_cluster: bool,
    /// Columns the Parquet files are already sorted by (ascending, nulls last), file by file. The
    /// planner then trusts this order: window functions partitioned and ordered by these columns
    /// do not sort again, and grouping by the first one streams, emitting each group as it ends.
    pub sorted_by: Vec<String>,
    /// Accept input columns named with [`RESERVED_PREFIX`] (`query`, where such a column can be
    /// renamed); otherwise a file holding one is refused, naming it and the column.
    pub allow_reserved: bool,
}

/// The prefix of the helper columns that `annotate`'s SQL form, deduplication and `--into` add
/// to the events: an input column of such a name would be ambiguous with them.
pub const RESERVED_PREFIX: &str = "__sessionize_";

/// Refuses `schema` (of the input `file`) where a column's name starts with [`RESERVED_PREFIX`],
/// unless `options` allows it.
fn refuse_reserved(schema: &Schema, file: &str, options: &LoadOptions) -> Result<()> {
    if options.allow_reserved {
        return Ok(());
    }
    let all: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let reserved: Vec<&str> = all
        .iter()
        .copied()
        .filter(|name| name.starts_with(RESERVED_PREFIX))
        .collect();
    if reserved.is_empty() {
        return Ok(());
    }
    Err(clashing_columns(
        file,
        &reserved,
        &all,
        &format!(
            "but column names starting with {RESERVED_PREFIX} are reserved for sessionize's own helper columns"
        ),
    ))
}

/// The error for the input `file` whose columns `names` clash with sessionize's own (`why` says
/// whose), with a `sessionize query` command that renames them, quoted for SQL and for a POSIX
/// shell, so that it runs as shown: each to its name without the leading underscores, or with
/// `_2`, `_3`, ... after it where the file's columns (`all`) or another new name has that name
/// (compared without regard to case, as Delta Lake compares them).
pub fn clashing_columns(file: &str, names: &[&str], all: &[&str], why: &str) -> DataFusionError {
    let listed: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    let quoted: Vec<String> = names.iter().map(|n| crate::sessions::ident(n)).collect();
    let mut taken: HashSet<String> = all
        .iter()
        .filter(|a| !names.contains(a))
        .map(|a| a.to_lowercase())
        .collect();
    let renamed: Vec<String> = names
        .iter()
        .zip(&quoted)
        .map(|(n, q)| {
            let base = n.trim_start_matches('_');
            let mut new = base.to_string();
            let mut k = 2;
            while !taken.insert(new.to_lowercase()) {
                new = format!("{base}_{k}");
                k += 1;
            }
            format!("{q} AS {}", crate::sessions::ident(&new))
        })
        .collect();
    let sql = format!(
        "SELECT * EXCLUDE ({}), {} FROM events",
        quoted.join(", "),
        renamed.join(", ")
    );
    let (columns, them) = if names.len() == 1 {
        ("a column", "it")
    } else {
        ("columns", "them")
    };
    DataFusionError::Plan(format!(
        "'{file}' has {columns} named {}, {why}: rename {them} first, for example with \
         sessionize query {} {} --output renamed.parquet",
        listed.join(", "),
        shell_quote(file),
        shell_quote(&sql)
    ))
}

/// `text` as one word for a POSIX shell (single quotes; a quote inside as `'\''`).
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The format of one input file, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileFormat {
    Parquet,
    Csv,
    Json,
    Zip,
}

fn file_format(name: &str) -> Option<FileFormat> {
    let lower = name.to_ascii_lowercase();
    let lower = lower.strip_suffix(".gz").unwrap_or(&lower);
    let extension = lower.rsplit_once('.').map(|(_, e)| e)?;
    match extension {
        "parquet" | "parq" => Some(FileFormat::Parquet),
        "csv" => Some(FileFormat::Csv),
        "json" | "ndjson" | "jsonl" => Some(FileFormat::Json),
        "zip" => Some(FileFormat::Zip),
        _ => None,
    }
}

/// Whether `path` holds glob characters.
fn is_glob(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

/// Registers an object store for `url`'s scheme and host when it is a remote URL, configured from
/// the standard environment variables (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_REGION`,
/// `AWS_ALLOW_HTTP`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, ...).
pub fn register_object_store(ctx: &SessionContext, location: &str) -> Result<()> {
    let Ok(url) = Url::parse(location) else {
        return Ok(());
    };
    let Some(store) = object_store_for(&url, location)? else {
        return Ok(());
    };
    let base = Url::parse(&format!("{}://{}", url.scheme(), url.authority()))
        .map_err(|e| DataFusionError::Plan(format!("'{location}' is not a valid URL: {e}")))?;
    ctx.register_object_store(&base, store);
    Ok(())
}

/// The object store of `url`'s scheme and bucket (S3, GCS, Azure, HTTP), configured from the
/// standard environment variables; `None` for other schemes (local paths). `location` names the
/// input in errors. Also what Delta tables at such URLs are written through ([`crate::delta`]).
pub(crate) fn object_store_for(url: &Url, location: &str) -> Result<Option<Arc<dyn ObjectStore>>> {
    let bucket = url.host_str().unwrap_or_default();
    let error = |e: object_store::Error| {
        DataFusionError::Plan(format!("cannot set up access to '{location}': {e}"))
    };
    // Fail within seconds, not minutes, when a bucket is unreachable.
    let retry = object_store::RetryConfig {
        max_retries: 3,
        retry_timeout: std::time::Duration::from_secs(20),
        ..Default::default()
    };
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" | "s3a" => Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_retry(retry)
                .with_bucket_name(bucket)
                .build()
                .map_err(error)?,
        ),
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_retry(retry)
                .with_bucket_name(bucket)
                .build()
                .map_err(error)?,
        ),
        "az" | "abfs" | "abfss" | "azure" => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_retry(retry)
                .with_container_name(bucket)
                .build()
                .map_err(error)?,
        ),
        "http" | "https" => Arc::new(
            object_store::http::HttpBuilder::new()
                .with_retry(retry)
                .with_url(format!("{}://{}", url.scheme(), url.authority()))
                .build()
                .map_err(error)?,
        ),
        _ => return Ok(None),
    };
    Ok(Some(store))
}

/// A path, folder, glob or URL as a listing location. DataFusion expands globs in local paths only;
/// in a URL (`s3://bucket/exports/*.json.gz`) the part from the first glob character's folder on
/// becomes the pattern.
fn parse_location(location: &str) -> Result<ListingTableUrl> {
    if !(location.contains("://") && is_glob(location)) {
        return ListingTableUrl::parse(location);
    }
    let first_glob = location.find(['*', '?', '[']).unwrap_or(location.len());
    let split = location[..first_glob].rfind('/').map_or(0, |i| i + 1);
    let (prefix, pattern) = location.split_at(split);
    let url = Url::parse(prefix).map_err(|e| DataFusionError::External(Box::new(e)))?;
    let pattern =
        glob::Pattern::new(pattern).map_err(|e| DataFusionError::External(Box::new(e)))?;
    ListingTableUrl::try_new(url, Some(pattern))
}

/// One input file found behind a path, folder, glob or URL.
struct Found {
    url: ListingTableUrl,
    display: String,
    format: FileFormat,
    /// A file of zero bytes (an hour of an export without events): left out of the table.
    empty: bool,
    /// What tells this file from another delivery: its path, size and modification time.
    stamp: String,
}

/// One input file behind the paths, folders, globs or URLs given, with the stamp that recognises
/// it in a later run: `PATH|SIZE|MODIFIED` (bytes; microseconds since the epoch, UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// The file, as an input path or URL that reads it alone.
    pub path: String,
    pub stamp: String,
}

/// Every input file behind `inputs` (files, folders, globs or URLs), in name order.
///
/// Errors: as [`read_inputs`] for a path that does not exist or holds no readable files.
pub async fn input_files(ctx: &SessionContext, inputs: &[String]) -> Result<Vec<InputFile>> {
    let mut files = vec![];
    for input in inputs {
        for found in list_inputs(ctx, input).await? {
            files.push(InputFile {
                path: found.display,
                stamp: found.stamp,
            });
        }
    }
    Ok(files)
}

/// Lists the files behind `path` with a format this loader reads.
async fn list_inputs(ctx: &SessionContext, path: &str) -> Result<Vec<Found>> {
    let has_scheme = path.contains("://");
    if !has_scheme
        && !is_glob(path)
        && let Err(e) = std::fs::metadata(path)
    {
        let message = format!("cannot read '{path}': {e}");
        return Err(if e.kind() == std::io::ErrorKind::NotFound {
            crate::error::input_not_found(message)
        } else {
            DataFusionError::Plan(message)
        });
    }
    register_object_store(ctx, path)?;
    let url = parse_location(path)
        .map_err(|e| DataFusionError::Plan(format!("'{path}' is not a valid path or URL: {e}")))?;
    let state = ctx.state();
    let store = state.runtime_env().object_store(&url)?;
    let listed: Vec<object_store::ObjectMeta> = url
        .list_all_files(&state, store.as_ref(), "")
        .await
        .map_err(|e| DataFusionError::Plan(format!("cannot list '{path}': {}", root_message(&e))))?
        .try_collect()
        .await
        .map_err(|e| {
            DataFusionError::Plan(format!("cannot list '{path}': {}", root_message(&e)))
        })?;
    let mut found = vec![];
    for meta in listed {
        let location = meta.location.to_string();
        let Some(format) = file_format(&location) else {
            continue;
        };
        let file_url = format!("{}{}", url.object_store().as_str(), location);
        let display = if has_scheme {
            file_url.clone()
        } else {
            format!("/{location}")
        };
        found.push(Found {
            empty: meta.size == 0,
            url: ListingTableUrl::parse(&file_url)?,
            stamp: format!(
                "{display}|{}|{}",
                meta.size,
                meta.last_modified.timestamp_micros()
            ),
            display,
            format,
        });
    }
    found.sort_by(|a, b| a.display.cmp(&b.display));
    if found.is_empty() {
        return if is_glob(path) {
            Err(crate::error::input_not_found(format!(
                "no files match '{path}'"
            )))
        } else if has_scheme || std::path::Path::new(path).is_dir() {
            plan_err!("'{path}' holds no .parquet, .csv, .json, .ndjson, .json.gz or .zip files")
        } else {
            plan_err!(
                "cannot tell the format of '{path}': expected a name ending in .parquet, .csv, \
                 .json, .ndjson, .json.gz or .zip"
            )
        };
    }
    Ok(found)
}

/// A column name as `col` takes it: quoted, so case and dots are kept.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn root_message(e: &DataFusionError) -> String {
    e.find_root().message().trim().to_string()
}

/// A lazy table over Parquet files. The time column is kept as it is where every file has the
/// same timestamp type; otherwise (epoch numbers, text, or units and zones that differ between
/// files) each file is read alone and its times converted by `event_time`, naming the file in
/// errors, and the files are combined by column name.
async fn parquet_frame(
    ctx: &SessionContext,
    files: Vec<&Found>,
    options: &LoadOptions,
) -> Result<DataFrame> {
    let state = ctx.state();
    let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
    let listing = ListingOptions::new(Arc::new(format)).with_file_extension("");
    let mut schemas = vec![];
    for file in &files {
        let schema = listing.infer_schema(&state, &file.url).await.map_err(|e| {
            DataFusionError::Plan(format!(
                "cannot read '{}' as Parquet: {}",
                file.display,
                root_message(&e)
            ))
        })?;
        refuse_reserved(&schema, &file.display, options)?;
        schemas.push(schema.as_ref().clone());
    }
    // Time columns to convert: the commands' time column unless every file has it as one
    // timestamp type in UTC (or without a zone); a source's raw time column (GA4's INT64
    // `event_timestamp`, PostHog's text `timestamp`) only where its type differs between files,
    // so that a table of one shape keeps its types. Other timestamp columns whose types differ
    // (Segment's `received_at` in ms in one file, ns with a zone in another) are unified by
    // [`one_timestamp_type`] over the files read one by one.
    let types = column_types(&schemas);
    let mut convert: Vec<String> = vec![];
    for schema in &schemas {
        for column in time_columns(schema, options) {
            if !convert.contains(&column) {
                convert.push(column);
            }
        }
    }
    convert.retain(|column| {
        let types = &types[column.as_str()];
        let same = types.iter().all(|u| *u == types[0]);
        if options.time_column.as_deref() == Some(column.as_str()) {
            !(is_kept_time_type(types[0]) && same)
        } else {
            !same
        }
    });
    if !convert.is_empty() || !differing_timestamps(&types).is_empty() {
        let mut frames = vec![];
        for (file, schema) in files.iter().zip(schemas.iter().cloned()) {
            let present: Vec<&String> = convert
                .iter()
                .filter(|c| schema.field_with_name(c).is_ok())
                .collect();
            let mut frame = listing_frame(
                ctx,
                listing.clone(),
                vec![file.url.clone()],
                schema,
                &options.sorted_by,
            )?;
            for column in present {
                let types = &types[column.as_str()];
                // A zone is relabelled only where every file has the one type; otherwise the
                // files' times meet in one type, `Timestamp(µs, "UTC")`.
                let one_type = types.iter().all(|u| *u == types[0]).then_some(types[0]);
                frame = time_in_utc(frame, column, one_type, options, &file.display)?;
            }
            frames.push(frame);
        }
        return union_by_name(one_timestamp_type(frames)?);
    }
    let Ok(merged) = Schema::try_merge(schemas.clone()) else {
        // A column of other types in other files (a `user_id` of int32 in one file, int64 or
        // text in another): each file read as it is, and the union gives each such column one
        // type (the wider integer, or text), as `--into` does taking the files one by one.
        if let Some(found) = conflict(&files, &schemas) {
            return plan_err!("the Parquet inputs have conflicting column types: {found}");
        }
        let frames = files
            .iter()
            .zip(schemas.iter().cloned())
            .map(|(file, schema)| {
                listing_frame(
                    ctx,
                    listing.clone(),
                    vec![file.url.clone()],
                    schema,
                    &options.sorted_by,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        return union_by_name(frames);
    };
    // A column that some files lack is null in their rows, whatever the others declare.
    let fields: Vec<Field> = merged
        .fields()
        .iter()
        .map(|f| {
            let in_all = types.get(f.name().as_str()).map_or(0, Vec::len) == schemas.len();
            f.as_ref().clone().with_nullable(f.is_nullable() || !in_all)
        })
        .collect();
    let schema = Schema::new_with_metadata(fields, merged.metadata().clone());
    let urls = files.iter().map(|f| f.url.clone()).collect();
    listing_frame(ctx, listing, urls, schema, &options.sorted_by)
}

/// The time columns the loader converts in a file of schema `schema`: the time column of `options`
/// where the file has it, else the export sources' raw time columns it has
/// ([`crate::sources::RAW_TIME_COLUMNS`]: Segment's and PostHog's `timestamp`, Snowplow's
/// `derived_tstamp` and `collector_tstamp`, GA4's `event_timestamp`), which their mappings read
/// as the time. Each becomes `Timestamp(µs, "UTC")`, so that the files of one export whose time
/// columns differ in unit or encoding are read together, and an unparsable value names its file.
fn time_columns(schema: &Schema, options: &LoadOptions) -> Vec<String> {
    let Some(column) = &options.time_column else {
        return vec![];
    };
    if schema.field_with_name(column).is_ok() {
        return vec![column.clone()];
    }
    crate::sources::RAW_TIME_COLUMNS
        .iter()
        .filter(|c| schema.field_with_name(c).is_ok())
        .map(|c| c.to_string())
        .collect()
}

/// `frame` with its time column `column` converted by `event_time` (lazily, at execution), in the
/// unit of `options`; `display` names the data in errors.
fn with_event_time(
    frame: DataFrame,
    column: &str,
    options: &LoadOptions,
    display: &str,
) -> Result<DataFrame> {
    let time = event_time_udf().call(vec![
        datafusion::prelude::col(ident(column)),
        datafusion::prelude::lit(options.time_unit.as_str()),
        datafusion::prelude::lit(display.to_string()),
    ]);
    frame.with_column(column, time)
}

/// `frame` with its time column `column` in UTC: where `data_type` (the column's one type) is a
/// timestamp in another zone, relabelled in its own unit (see [`utc_label`]); otherwise converted
/// by [`with_event_time`].
fn time_in_utc(
    frame: DataFrame,
    column: &str,
    data_type: Option<&DataType>,
    options: &LoadOptions,
    display: &str,
) -> Result<DataFrame> {
    match data_type.and_then(utc_label) {
        Some(utc) => frame.with_column(
            column,
            datafusion::prelude::cast(datafusion::prelude::col(ident(column)), utc),
        ),
        None => with_event_time(frame, column, options, display),
    }
}

/// A listing table over `urls` with `schema`, declared sorted by `sorted_by` when given.
fn listing_frame(
    ctx: &SessionContext,
    listing: ListingOptions,
    urls: Vec<ListingTableUrl>,
    schema: Schema,
    sorted_by: &[String],
) -> Result<DataFrame> {
    let listing = if sorted_by.is_empty() {
        listing
    } else {
        let mut order = vec![];
        for column in sorted_by {
            if schema.field_with_name(column).is_err() {
                let found: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return plan_err!(
                    "--sorted-by names '{column}', which the Parquet inputs do not have (columns found: {})",
                    found.join(", ")
                );
            }
            order.push(datafusion::prelude::col(ident(column)).sort(true, false));
        }
        listing.with_file_sort_order(vec![order])
    };
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(listing)
        .with_schema(Arc::new(schema));
    ctx.read_table(Arc::new(ListingTable::try_new(config)?))
}

/// Reads the whole object behind `file`.
async fn read_bytes(ctx: &SessionContext, file: &Found) -> Result<Vec<u8>> {
    let store = ctx.state().runtime_env().object_store(&file.url)?;
    let bytes = store
        .get(file.url.prefix())
        .await
        .map_err(|e| DataFusionError::Plan(format!("cannot read '{}': {e}", file.display)))?
        .bytes()
        .await
        .map_err(|e| DataFusionError::Plan(format!("cannot read '{}': {e}", file.display)))?;
    Ok(bytes.to_vec())
}

fn gunzip(name: &str, bytes: Vec<u8>) -> Result<Vec<u8>> {
    if !name.to_ascii_lowercase().ends_with(".gz") {
        return Ok(bytes);
    }
    let mut out = vec![];
    flate2::read::MultiGzDecoder::new(bytes.as_slice())
        .read_to_end(&mut out)
        .map_err(|e| DataFusionError::Plan(format!("cannot decompress '{name}': {e}")))?;
    Ok(out)
}

/// Newline-delimited JSON into record batches. Objects and arrays (Amplitude's `event_properties`,
/// `user_properties`) become JSON text; blank lines are skipped.
fn json_batches(
    name: &str,
    bytes: &[u8],
    time_column: Option<&str>,
) -> Result<(SchemaRef, Vec<RecordBatch>, Vec<usize>)> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| DataFusionError::Plan(format!("'{name}' is not UTF-8 text: {e}")))?;
    let mut values = vec![];
    let mut lines = vec![];
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            DataFusionError::Plan(format!(
                "'{name}' line {}: not a JSON object ({e}): {}",
                number + 1,
                excerpt(line)
            ))
        })?;
        let Some(object) = value.as_object_mut() else {
            return plan_err!(
                "'{name}' line {}: expected a JSON object, found {}",
                number + 1,
                excerpt(line)
            );
        };
        for (key, field) in object.iter_mut() {
            // Objects and arrays as JSON text; a time given as a number in some lines and as
            // text in others as text throughout (`event_time` reads both).
            let number_time = field.is_number()
                && (Some(key.as_str()) == time_column
                    || crate::sources::RAW_TIME_COLUMNS.contains(&key.as_str()));
            if field.is_object() || field.is_array() || number_time {
                *field = serde_json::Value::String(field.to_string());
            }
        }
        values.push(value);
        lines.push(number + 1);
    }
    if values.is_empty() {
        return Ok((Arc::new(Schema::empty()), vec![], vec![]));
    }
    text_where_mixed(&mut values);
    let schema = infer_json_schema_from_iterator(values.iter().map(Ok))
        .map_err(|e| DataFusionError::Plan(format!("cannot read '{name}' as JSON: {e}")))?;
    let schema = Arc::new(schema);
    let mut decoder = ReaderBuilder::new(schema.clone())
        .build_decoder()
        .map_err(|e| DataFusionError::Plan(format!("cannot read '{name}' as JSON: {e}")))?;
    let mut batches = vec![];
    for chunk in values.chunks(8192) {
        decoder
            .serialize(chunk)
            .map_err(|e| DataFusionError::Plan(format!("cannot read '{name}' as JSON: {e}")))?;
        if let Some(batch) = decoder
            .flush()
            .map_err(|e| DataFusionError::Plan(format!("cannot read '{name}' as JSON: {e}")))?
        {
            batches.push(batch);
        }
    }
    Ok((schema, batches, lines))
}

/// A field that holds text in some objects and numbers or booleans in others (a user id sent as
/// `"42"` by one SDK and `42` by another) becomes text in all of them, as written: Arrow's JSON
/// reader would refuse the file.
fn text_where_mixed(values: &mut [serde_json::Value]) {
    let mut text = HashSet::new();
    let mut other = HashSet::new();
    for value in values.iter() {
        for (key, field) in value.as_object().into_iter().flatten() {
            // A key is copied once per kind, not once per object.
            let kind = match field {
                serde_json::Value::String(_) => &mut text,
                serde_json::Value::Number(_) | serde_json::Value::Bool(_) => &mut other,
                _ => continue,
            };
            if !kind.contains(key) {
                kind.insert(key.clone());
            }
        }
    }
    let mixed: HashSet<&String> = text.intersection(&other).collect();
    if mixed.is_empty() {
        return;
    }
    for value in values.iter_mut() {
        for (key, field) in value.as_object_mut().into_iter().flatten() {
            if mixed.contains(key) && (field.is_number() || field.is_boolean()) {
                *field = serde_json::Value::String(field.to_string());
            }
        }
    }
}

fn excerpt(text: &str) -> String {
    let short: String = text.chars().take(60).collect();
    if short.len() < text.len() {
        format!("{short}…")
    } else {
        short
    }
}

/// The time column `column` of `batch` as `Timestamp(µs, "UTC")` (see
/// [`crate::scalar::to_event_time`]); `row_names` gives the line of each row for errors.
fn normalize_time(
    name: &str,
    batch: RecordBatch,
    column: &str,
    unit: EpochUnit,
    first_row: usize,
    row_names: &dyn Fn(usize) -> String,
) -> Result<RecordBatch> {
    let Ok(index) = batch.schema().index_of(column) else {
        return Ok(batch);
    };
    let unparsable = |row: usize, raw: &str| {
        format!(
            "'{name}' {}: cannot parse the time '{raw}' in column '{column}' (expected for \
             example 2026-01-01 00:00:00.123456 in UTC, 2026-01-01T02:00:00+02:00 or epoch seconds)",
            row_names(first_row + row)
        )
    };
    let converted = to_event_time(batch.column(index), unit, &unparsable).map_err(|e| match e {
        DataFusionError::Plan(message) => {
            DataFusionError::Plan(format!("'{name}', column '{column}': {message}"))
        }
        other => other,
    })?;
    let mut columns = batch.columns().to_vec();
    columns[index] = converted;
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields[index] = Field::new(column, crate::scalar::event_time_type(), true);
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// [`normalize_time`] over every batch of one file; `row_names` names a row by its index in the file.
fn normalize_times(
    name: &str,
    batches: Vec<RecordBatch>,
    options: &LoadOptions,
    row_names: &dyn Fn(usize) -> String,
) -> Result<Vec<RecordBatch>> {
    let mut first_row = 0;
    let mut out = Vec::with_capacity(batches.len());
    for mut batch in batches {
        let rows = batch.num_rows();
        for column in time_columns(&batch.schema(), options) {
            batch = normalize_time(
                name,
                batch,
                &column,
                options.time_unit,
                first_row,
                row_names,
            )?;
        }
        out.push(batch);
        first_row += rows;
    }
    Ok(out)
}

/// A table in memory from batches that share a schema.
fn memory_frame(
    ctx: &SessionContext,
    batches: Vec<RecordBatch>,
    schema: SchemaRef,
) -> Result<DataFrame> {
    let schema = batches.first().map(|b| b.schema()).unwrap_or(schema);
    let table = MemTable::try_new(schema, vec![batches])?;
    ctx.read_table(Arc::new(table))
}

/// A CSV file in memory, or `None` when it has no rows.
async fn csv_frame(
    ctx: &SessionContext,
    file: &Found,
    options: &LoadOptions,
) -> Result<Option<DataFrame>> {
    let state = ctx.state();
    let mut format = CsvFormat::default().with_has_header(true);
    if file.display.to_ascii_lowercase().ends_with(".gz") {
        format = format.with_file_compression_type(
            datafusion::datasource::file_format::file_compression_type::FileCompressionType::GZIP,
        );
    }
    let listing = ListingOptions::new(Arc::new(format)).with_file_extension("");
    let schema = listing.infer_schema(&state, &file.url).await.map_err(|e| {
        DataFusionError::Plan(format!(
            "cannot read '{}' as CSV: {}",
            file.display,
            root_message(&e)
        ))
    })?;
    let config = ListingTableConfig::new(file.url.clone())
        .with_listing_options(listing)
        .with_schema(schema.clone());
    let batches = ctx
        .read_table(Arc::new(ListingTable::try_new(config)?))?
        .collect()
        .await
        .map_err(|e| {
            DataFusionError::Plan(format!(
                "cannot read '{}' as CSV: {}",
                file.display,
                root_message(&e)
            ))
        })?;
    if batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(None);
    }
    // Line 1 is the header.
    let batches = normalize_times(&file.display, batches, options, &|row| {
        format!("line {}", row + 2)
    })?;
    memory_frame(ctx, batches, schema).map(Some)
}

/// Newline-delimited JSON in memory, or `None` when it holds no objects.
fn json_frame(
    ctx: &SessionContext,
    name: &str,
    bytes: &[u8],
    options: &LoadOptions,
) -> Result<Option<DataFrame>> {
    let (schema, batches, lines) = json_batches(name, bytes, options.time_column.as_deref())?;
    if batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(None);
    }
    let batches = normalize_times(name, batches, options, &|row| {
        format!("line {}", lines.get(row).copied().unwrap_or(row + 1))
    })?;
    memory_frame(ctx, batches, schema).map(Some)
}

/// The JSON files (plain or gzip) inside an Amplitude Export API `.zip` archive.
fn zip_frames(
    ctx: &SessionContext,
    name: &str,
    bytes: Vec<u8>,
    options: &LoadOptions,
) -> Result<Vec<DataFrame>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| {
        DataFusionError::Plan(format!("cannot read '{name}' as a zip archive: {e}"))
    })?;
    let mut frames = vec![];
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| DataFusionError::Plan(format!("cannot read '{name}': {e}")))?;
        let inner = entry.name().map(|n| n.to_string()).unwrap_or_default();
        let entry_name = format!("{name}!{inner}");
        if entry.is_dir() || file_format(&inner) != Some(FileFormat::Json) {
            continue;
        }
        let mut data = vec![];
        entry
            .read_to_end(&mut data)
            .map_err(|e| DataFusionError::Plan(format!("cannot read '{entry_name}': {e}")))?;
        let data = gunzip(&entry_name, data)?;
        frames.extend(json_frame(ctx, &entry_name, &data, options)?);
    }
    if frames.is_empty() {
        return plan_err!("the archive '{name}' holds no .json or .json.gz files");
    }
    Ok(frames)
}

/// All inputs as one DataFrame, combined by column name.
pub async fn read_inputs(
    ctx: &SessionContext,
    inputs: &[String],
    options: &LoadOptions,
) -> Result<DataFrame> {
    let mut found = vec![];
    for input in inputs {
        found.extend(list_inputs(ctx, input).await?);
    }
    // Files of zero bytes add nothing; alone they are an input without events.
    let empty: Vec<String> = found
        .iter()
        .filter(|f| f.empty)
        .map(|f| format!("'{}' is empty", f.display))
        .collect();
    found.retain(|f| !f.empty);
    if found.is_empty()
        && let Some(first) = empty.first()
    {
        return Err(crate::error::no_events(format!(
            "the input holds no events: {first}"
        )));
    }
    if options.for_cluster
        && let Some(other) = found.iter().find(|f| f.format != FileFormat::Parquet)
    {
        return plan_err!(
            "with --cluster, inputs must be Parquet that the executors can read, but '{}' is not: \
             convert it first, for example with sessionize query INPUT \"SELECT * FROM events\" \
             --output events.parquet",
            other.display
        );
    }
    // The files in their order (arguments in turn, each folder or glob by path), so that
    // `annotate` writes the rows in the input's order; each run of consecutive Parquet files is
    // one table. CSV and JSON files without rows: their columns have no types to read, so they
    // are left out (a Parquet file without rows has types, and stays).
    let mut frames = vec![];
    let mut empty = vec![];
    let mut parquet: Vec<&Found> = vec![];
    for file in &found {
        if file.format == FileFormat::Parquet {
            parquet.push(file);
            continue;
        }
        if !parquet.is_empty() {
            frames.push(parquet_frame(ctx, std::mem::take(&mut parquet), options).await?);
        }
        // The frames this file gives (a `.zip` gives one per JSON file inside), each checked
        // for reserved column names under the file's name.
        let added = frames.len();
        match file.format {
            FileFormat::Csv => match csv_frame(ctx, file, options).await? {
                Some(frame) => frames.push(frame),
                None => empty.push(format!("'{}' has a header and no rows", file.display)),
            },
            FileFormat::Json => {
                let bytes = gunzip(&file.display, read_bytes(ctx, file).await?)?;
                match json_frame(ctx, &file.display, &bytes, options)? {
                    Some(frame) => frames.push(frame),
                    None => empty.push(format!("'{}' holds no JSON objects", file.display)),
                }
            }
            FileFormat::Zip => {
                let bytes = read_bytes(ctx, file).await?;
                frames.extend(zip_frames(ctx, &file.display, bytes, options)?);
            }
            FileFormat::Parquet => {}
        }
        for frame in &frames[added..] {
            refuse_reserved(frame.schema().as_arrow(), &file.display, options)?;
        }
    }
    if !parquet.is_empty() {
        frames.push(parquet_frame(ctx, parquet, options).await?);
    }
    let frames = one_timestamp_type(frames)?;
    if frames.is_empty()
        && let Some(first) = empty.first()
    {
        return Err(crate::error::no_events(format!(
            "the input holds no events: {first}"
        )));
    }
    union_by_name(frames)
}

/// Each column's types in `schemas`, in the files' order (a column some lack has fewer).
fn column_types(schemas: &[Schema]) -> std::collections::HashMap<&str, Vec<&DataType>> {
    let mut types: std::collections::HashMap<&str, Vec<&DataType>> = Default::default();
    for schema in schemas {
        for field in schema.fields() {
            types
                .entry(field.name().as_str())
                .or_default()
                .push(field.data_type());
        }
    }
    types
}

/// The first column whose types in two of `files` (with their `schemas`) no type holds both of,
/// as "column 'C' is T1 in 'FILE1' and T2 in 'FILE2'".
fn conflict(files: &[&Found], schemas: &[Schema]) -> Option<String> {
    use datafusion::logical_expr::type_coercion::binary::type_union_coercion;
    for (i, schema) in schemas.iter().enumerate() {
        for field in schema.fields() {
            for (j, other) in schemas.iter().enumerate().skip(i + 1) {
                if let Ok(found) = other.field_with_name(field.name())
                    && type_union_coercion(field.data_type(), found.data_type()).is_none()
                {
                    return Some(format!(
                        "column '{}' is {} in '{}' and {} in '{}'",
                        field.name(),
                        field.data_type(),
                        files[i].display,
                        found.data_type(),
                        files[j].display
                    ));
                }
            }
        }
    }
    None
}

/// The timestamp columns whose types differ between the files of `types` ([`column_types`]).
fn differing_timestamps(types: &std::collections::HashMap<&str, Vec<&DataType>>) -> Vec<String> {
    types
        .iter()
        .filter(|(_, t)| {
            t.iter().all(|t| matches!(t, DataType::Timestamp(_, _))) && t.iter().any(|u| *u != t[0])
        })
        .map(|(name, _)| name.to_string())
        .collect()
}

/// `frames` (files of several formats, or Parquet files read one by one) with every timestamp
/// column whose type differs between them as `Timestamp(µs, "UTC")` (zone-less as UTC): a
/// Parquet file's time kept in milliseconds beside a CSV file's converted to µs would otherwise be
/// combined as one of the two types, and read in the other's unit.
fn one_timestamp_type(frames: Vec<DataFrame>) -> Result<Vec<DataFrame>> {
    if frames.len() < 2 {
        return Ok(frames);
    }
    let schemas: Vec<Schema> = frames
        .iter()
        .map(|f| f.schema().as_arrow().clone())
        .collect();
    let recast = differing_timestamps(&column_types(&schemas));
    if recast.is_empty() {
        return Ok(frames);
    }
    frames
        .into_iter()
        .map(|mut frame| {
            for column in &recast {
                let differs = frame
                    .schema()
                    .as_arrow()
                    .field_with_name(column)
                    .is_ok_and(|f| *f.data_type() != crate::scalar::event_time_type());
                if differs {
                    frame = frame.with_column(
                        column,
                        datafusion::prelude::cast(
                            datafusion::prelude::col(ident(column)),
                            crate::scalar::event_time_type(),
                        ),
                    )?;
                }
            }
            Ok(frame)
        })
        .collect()
}

/// `frames` combined by column name, in order.
fn union_by_name(frames: Vec<DataFrame>) -> Result<DataFrame> {
    let mut frames = frames.into_iter();
    let Some(mut combined) = frames.next() else {
        return plan_err!("no input given");
    };
    for frame in frames {
        combined = combined.union_by_name(frame)?;
    }
    Ok(combined)
}

/// Registers the inputs (files, folders, globs or URLs of any supported format) as table `name`.
pub async fn register_inputs(
    ctx: &SessionContext,
    name: &str,
    inputs: &[String],
    options: &LoadOptions,
) -> Result<()> {
    let frame = read_inputs(ctx, inputs, options).await?;
    ctx.register_table(name, frame.into_view())?;
    Ok(())
}

/// Registers the file, folder, glob or URL at `path` as table `name`. In CSV and JSON inputs, text
/// times in a column named `event_time` (Amplitude's) are parsed as UTC, as the other commands do.
pub async fn register_events(ctx: &SessionContext, name: &str, path: &str) -> Result<()> {
    let options = LoadOptions {
        time_column: Some("event_time".to_string()),
        ..LoadOptions::default()
    };
    register_inputs(ctx, name, &[path.to_string()], &options).await
}

/// The type a timestamp column in a zone other than UTC is read as: the same unit in UTC. Arrow's
/// zoned timestamps hold UTC instants, so only the label changes, and nanoseconds stay
/// nanoseconds (converting them to microseconds, as text and epoch numbers are, once merged two
/// events a timeout plus 300 ns apart into one session: newcomer audit). `None` for other types.
fn utc_label(data_type: &DataType) -> Option<DataType> {
    match data_type {
        DataType::Timestamp(unit, Some(_)) => Some(DataType::Timestamp(*unit, Some("UTC".into()))),
        _ => None,
    }
}

/// Whether a time column of type `data_type` is read as it is: a timestamp without a zone (taken as
/// UTC) or in UTC. Other zones are converted to UTC, so that days and intervals are UTC's unless
/// `--time-zone` says otherwise, whatever zone the export's writer attached.
fn is_kept_time_type(data_type: &DataType) -> bool {
    match data_type {
        DataType::Timestamp(_, None) => true,
        DataType::Timestamp(_, Some(zone)) => {
            matches!(
                zone.as_ref(),
                "UTC" | "utc" | "Z" | "+00:00" | "Etc/UTC" | "GMT"
            )
        }
        _ => false,
    }
}

/// `batch` with its struct columns as JSON text (JSON objects, as the JSON reader turns an
/// export's objects into text: in-memory exports then meet the same mappings and JSON functions as
/// files do; see [`crate::scalar::struct_as_json`]).
fn structs_as_json(batch: RecordBatch) -> Result<RecordBatch> {
    use datafusion::arrow::array::AsArray;
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Struct(_)))
    {
        return Ok(batch);
    }
    let mut fields = vec![];
    let mut columns = vec![];
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if let DataType::Struct(_) = field.data_type() {
            fields.push(Field::new(field.name(), DataType::Utf8, true));
            columns.push(crate::scalar::struct_as_json(column.as_struct())?);
        } else {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
        }
    }
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new_with_metadata(
            fields,
            batch.schema().metadata().clone(),
        )),
        columns,
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )?)
}

/// `batch` in the types of `schema` (the same columns, in its order), each column cast where its
/// type differs (a plan's arrays can differ from its schema: `Utf8View` where it says `Utf8`, or
/// another query's arrays of the same columns).
///
/// Errors: a column that cannot be cast; nulls where `schema` has none.
pub fn cast_to_schema(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema() == *schema {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(Arc::clone(column))
            } else {
                datafusion::arrow::compute::cast(column, field.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// Registers in-memory batches (for example an Arrow C stream from Python) as table `name`, read as
/// [`read_inputs`] reads a file: struct columns (JSON objects, as pandas, Polars and PyArrow read
/// properties) become JSON text, as the JSON reader makes them, and the time column is converted
/// as a Parquet file's is (epoch numbers, text, other units become `Timestamp(µs, "UTC")`; zones
/// other than UTC become UTC; a timestamp in UTC or without a zone is kept). `display` names the
/// data in errors. Other columns are not copied.
///
/// Errors: a time column that cannot be read as times (at execution, naming `display`).
pub fn register_batches(
    ctx: &SessionContext,
    name: &str,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    options: &LoadOptions,
    display: &str,
) -> Result<()> {
    let batches = batches
        .into_iter()
        .map(structs_as_json)
        .collect::<Result<Vec<_>>>()?;
    let schema = match batches.first() {
        Some(batch) => batch.schema(),
        None => structs_as_json(RecordBatch::new_empty(schema))?.schema(),
    };
    let table = datafusion::datasource::MemTable::try_new(schema.clone(), vec![batches])?;
    let mut frame = ctx.read_table(Arc::new(table))?;
    if let Some(column) = &options.time_column
        && let Ok(field) = schema.field_with_name(column)
        && !is_kept_time_type(field.data_type())
    {
        frame = time_in_utc(frame, column, Some(field.data_type()), options, display)?;
    }
    ctx.register_table(name, frame.into_view())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{
        Array, ArrayRef, AsArray, Int64Array, StringArray, StructArray,
    };
    use datafusion::arrow::buffer::NullBuffer;
    use datafusion::arrow::datatypes::{TimeUnit, TimestampMicrosecondType};

    /// In-memory data: struct columns become JSON text (null structs null), and a time column in
    /// another zone becomes UTC, so days are UTC's.
    #[tokio::test]
    async fn in_memory_structs_become_json_and_zones_utc() {
        let page = Arc::new(StringArray::from(vec![Some("home"), None, Some("cart")]));
        let price = Arc::new(Int64Array::from(vec![Some(3), Some(4), None]));
        let properties = StructArray::new(
            vec![
                Field::new("page", DataType::Utf8, true),
                Field::new("price", DataType::Int64, true),
            ]
            .into(),
            vec![page as ArrayRef, price as ArrayRef],
            Some(NullBuffer::from(vec![true, true, false])),
        );
        // 2026-01-01 03:00 UTC is still 2025-12-31 in New York.
        let time = datafusion::arrow::array::TimestampMicrosecondArray::from(vec![
            1_767_236_400_000_000;
            3
        ])
        .with_timezone("America/New_York");
        let schema = Arc::new(Schema::new(vec![
            Field::new("event_properties", properties.data_type().clone(), true),
            Field::new("event_time", time.data_type().clone(), true),
        ]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(properties), Arc::new(time)])
                .unwrap();
        let ctx = crate::context().unwrap();
        let options = LoadOptions {
            time_column: Some("event_time".into()),
            ..LoadOptions::default()
        };
        register_batches(&ctx, "events", schema, vec![batch], &options, "the data").unwrap();
        let batches = ctx
            .sql("SELECT event_properties, event_time, utc_day(event_time) AS day FROM events")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let batch = &batches[0];
        let text = batch.column(0).as_string::<i32>();
        assert_eq!(text.value(0), r#"{"page":"home","price":3}"#);
        assert_eq!(text.value(1), r#"{"price":4}"#);
        assert!(text.is_null(2));
        assert_eq!(
            batch.column(1).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        let time = batch.column(1).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(time.value(0), 1_767_236_400_000_000);
        let day = datafusion::common::ScalarValue::try_from_array(batch.column(2), 0).unwrap();
        assert_eq!(day.to_string(), "2026-01-01");
    }
}
