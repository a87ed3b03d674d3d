//! Delta Lake tables, through `deltalake-core` (delta-rs) rather than hand-written log files: a
//! result written as a new version of a Delta table in one commit, and a Delta table read as a
//! DataFusion table.
//!
//! A Delta target is named `delta:PATH` (`--output delta:out/sessions`, `--table
//! s=delta:out/sessions`): the prefix says which format to write where a folder name cannot (a
//! Delta table is a folder of Parquet files plus `_delta_log/`, and a new one has no log yet).
//!
//! Atomicity is Delta's: the data files are written first, under new names, and the commit (one new
//! JSON file in `_delta_log/`, created only if that version does not exist yet) is the one step
//! that makes them part of the table. A run that fails or is killed before it leaves the table at
//! its previous version; of two runs at once, one commits and the other fails with a sentence
//! saying the table changed under it.

use std::sync::Arc;

use datafusion::common::{DataFusionError, Result, plan_err};
use datafusion::dataframe::DataFrame;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::prelude::SessionContext;
use deltalake_core::DeltaTable;
use deltalake_core::errors::DeltaTableError;
use deltalake_core::kernel::transaction::TransactionError;
use deltalake_core::protocol::SaveMode;
use url::Url;

/// The prefix that names a Delta table.
pub const PREFIX: &str = "delta:";

/// The table location of a target named `delta:LOCATION`, or `None` for other targets.
pub fn location(target: &str) -> Option<&str> {
    target.strip_prefix(PREFIX)
}

/// The URL of a Delta table location: a local path (made absolute; its folder is created) or a URL.
fn table_url(location: &str) -> Result<Url> {
    if location.contains("://") {
        register_stores();
        return Url::parse(location)
            .or_else(|e| plan_err!("'{location}' is not a valid Delta table URL: {e}"));
    }
    if location.is_empty() {
        return plan_err!("delta: needs a folder, for example delta:out/sessions");
    }
    // `s3:/bucket/table` (one slash) would be a local folder named `s3:`.
    if let Some((scheme, _)) = location.split_once(":/")
        && !scheme.is_empty()
        && scheme.len() > 1
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
    {
        return plan_err!(
            "'{location}' looks like a URL with one slash after '{scheme}:': write \
             {scheme}://BUCKET/PATH, or give a folder"
        );
    }
    std::fs::create_dir_all(location).map_err(|e| {
        DataFusionError::Plan(format!(
            "cannot create the Delta table folder '{location}': {e}"
        ))
    })?;
    let absolute = std::fs::canonicalize(location).map_err(|e| {
        DataFusionError::Plan(format!(
            "cannot read the Delta table folder '{location}': {e}"
        ))
    })?;
    Url::from_directory_path(&absolute)
        .or_else(|_| plan_err!("'{location}' is not a valid Delta table location"))
}

/// Registers, once, delta-rs's factories for object-store URLs (`s3://`, `gs://`, `az://`, ...):
/// the same object stores as inputs are read through ([`crate::tables::object_store_for`], from the
/// standard environment variables), and delta-rs's default log store. A commit is then one object
/// created only if it does not exist yet: on S3 a conditional write (`If-None-Match`, which
/// `object_store` uses by default), so that of two runs committing one version, one fails.
fn register_stores() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for scheme in ["s3", "s3a", "gs", "az", "abfs", "abfss", "azure"] {
            if let Ok(url) = Url::parse(&format!("{scheme}://")) {
                deltalake_core::logstore::object_store_factories()
                    .insert(url.clone(), Arc::new(EnvironmentStores));
                deltalake_core::logstore::logstore_factories()
                    .insert(url, Arc::new(DefaultLogStores));
            }
        }
    });
}

/// Object stores for Delta tables at URLs, configured as inputs' are ([`register_stores`]).
struct EnvironmentStores;

impl deltalake_core::logstore::ObjectStoreFactory for EnvironmentStores {
    fn parse_url_opts(
        &self,
        url: &Url,
        _config: &deltalake_core::logstore::StorageConfig,
    ) -> deltalake_core::DeltaResult<(
        deltalake_core::logstore::ObjectStoreRef,
        object_store::path::Path,
    )> {
        let store = crate::tables::object_store_for(url, url.as_str())
            .map_err(|e| DeltaTableError::Generic(e.to_string()))?
            .ok_or_else(|| DeltaTableError::InvalidTableLocation(url.to_string()))?;
        let path = object_store::path::Path::from_url_path(url.path())
            .map_err(|e| DeltaTableError::Generic(e.to_string()))?;
        Ok((store, path))
    }
}

/// delta-rs's default log store, for the schemes of [`EnvironmentStores`].
struct DefaultLogStores;

impl deltalake_core::logstore::LogStoreFactory for DefaultLogStores {
    fn with_options(
        &self,
        prefixed_store: deltalake_core::logstore::ObjectStoreRef,
        root_store: deltalake_core::logstore::ObjectStoreRef,
        location: &Url,
        options: &deltalake_core::logstore::StorageConfig,
    ) -> deltalake_core::DeltaResult<Arc<dyn deltalake_core::logstore::LogStore>> {
        Ok(deltalake_core::logstore::default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

/// The user's sentence for an error of delta-rs at `location`.
fn delta_error(location: &str, e: DeltaTableError) -> DataFusionError {
    match e {
        DeltaTableError::Transaction {
            source:
                TransactionError::VersionAlreadyExists(_)
                | TransactionError::CommitConflict(_)
                | TransactionError::MaxCommitAttempts(_),
        } => crate::error::user_error(
            crate::error::Kind::TableChanged,
            format!(
                "the Delta table '{location}' changed under this run (another run committed \
                 first): nothing was written; run again"
            ),
        ),
        DeltaTableError::NotATable(_) => DataFusionError::Plan(format!(
            "'{location}' is not a Delta table (it has no _delta_log folder)"
        )),
        DeltaTableError::InvalidTableLocation(_) => DataFusionError::Plan(format!(
            "'{location}' is not a location a Delta table can be kept at: give a folder, or an \
             s3://, gs:// or az:// URL"
        )),
        other => {
            // Rows against a NOT NULL column come back as text wrapped in other errors, followed
            // by a table of the rows (delta-rs's internal columns included).
            let text = other.to_string();
            if let Some(at) = text.find("rows failed validation check") {
                let count = text[..at]
                    .rsplit(|c: char| !c.is_ascii_digit())
                    .find(|w| !w.is_empty())
                    .unwrap_or("some");
                return DataFusionError::Plan(format!(
                    "{count} row(s) have nulls in columns that the Delta table '{location}' \
                     declares NOT NULL: nothing was written"
                ));
            }
            DataFusionError::External(Box::new(other))
        }
    }
}

/// `schema` with every field nullable: for tables that later rows may hold nulls in (a Delta
/// table created from a Parquet input's required columns would refuse a delivery without them).
pub fn nullable(
    schema: &datafusion::arrow::datatypes::Schema,
) -> datafusion::arrow::datatypes::SchemaRef {
    Arc::new(datafusion::arrow::datatypes::Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ))
}

/// Whether `e` says that another run committed to the table first ([`delta_error`]).
pub fn is_conflict(e: &DataFusionError) -> bool {
    crate::error::is_kind(e, crate::error::Kind::TableChanged)
}

/// How [`commit`] changes a table.
#[derive(Debug, Clone, Default)]
pub struct Commit<'a> {
    /// Add the rows to the table's (`false`: replace its contents, or the part `replace_where`
    /// selects).
    pub append: bool,
    /// Replace only the rows this predicate selects (every new row must satisfy it).
    pub replace_where: Option<datafusion::prelude::Expr>,
    /// Partition a new table by this column.
    pub partition_by: Option<&'a str>,
    /// Recorded in the commit's `commitInfo`, read back by [`last_commit_info`].
    pub metadata: Vec<(String, serde_json::Value)>,
    /// Add the columns of the rows that the table has not (Delta's schema merge); without it,
    /// rows of other columns are an error.
    pub merge_schema: bool,
    /// Let delta-rs retry the commit on a concurrent commit that does not conflict (appends). A
    /// commit whose rows were computed from the table's contents must not be retried: it fails
    /// instead, saying the table changed.
    pub retry: bool,
    /// The data files' Parquet writer properties (`None`: delta-rs's own). Their compression is
    /// Snappy, as delta-rs's default, where they leave it unset.
    pub parquet: Option<WriterProperties>,
}

/// Writes `df` as the new contents of the Delta table at `location` (created if missing), in one
/// commit, partitioned by `partition_by` when given. Returns the version committed.
///
/// Errors: a location that cannot be created or read; a table that changed under the run (another
/// commit came first); a table of other columns, time types or partitioning than `df` (the table
/// keeps its contents: see [`same_layout`]).
pub async fn write(
    ctx: &SessionContext,
    df: DataFrame,
    location: &str,
    partition_by: Option<&str>,
    parquet: Option<&WriterProperties>,
) -> Result<i64> {
    if exists(location).await? {
        same_layout(location, df.schema().as_arrow(), partition_by).await?;
    }
    let how = Commit {
        partition_by,
        retry: true,
        parquet: parquet.cloned(),
        ..Commit::default()
    };
    commit(ctx, df, location, &how).await
}

/// Checks that the Delta table at `location` can take rows of `schema`, partitioned by
/// `partition_by`, as its new contents: the same column names in the same order, each holding the
/// same kind of value (text, integer, float, ...; within a kind delta-rs casts as usual),
/// timestamps with a zone where it has them (Delta's `timestamp`) and without where it has none
/// (`timestamp_ntz`), and the same partition columns. Like Spark's overwrite without
/// `overwriteSchema`, a rewrite does not change what the table is.
///
/// Errors: one sentence naming the table and the first difference, expected and found.
async fn same_layout(
    location: &str,
    schema: &datafusion::arrow::datatypes::Schema,
    partition_by: Option<&str>,
) -> Result<()> {
    use datafusion::arrow::datatypes::DataType;
    let table = open(location).await?;
    let state = table.snapshot().map_err(|e| delta_error(location, e))?;
    let held = state.snapshot().arrow_schema();
    let held_partitions = state.metadata().partition_columns().to_vec();
    let refuse = |what: String| {
        DataFusionError::Plan(format!(
            "cannot rewrite the Delta table '{location}': {what}; write to a new folder, or \
             remove the table first (nothing was committed)"
        ))
    };
    let names = |s: &datafusion::arrow::datatypes::Schema| {
        s.fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if held.fields().len() != schema.fields().len()
        || held
            .fields()
            .iter()
            .zip(schema.fields())
            .any(|(h, o)| h.name() != o.name())
    {
        return Err(refuse(format!(
            "it has the columns {}, this output {}",
            names(&held),
            names(schema)
        )));
    }
    // The kind of value a column holds: a rewrite may widen or narrow within one (delta-rs casts
    // an Int32 output to a `long` column), never change it (delta-rs would also cast `true` to 1
    // or a date to its day number: a newcomer's audit).
    fn kind(t: &DataType) -> String {
        match t {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".to_string(),
            t if t.is_integer() => "an integer".to_string(),
            t if t.is_floating() => "a float".to_string(),
            DataType::Decimal32(..)
            | DataType::Decimal64(..)
            | DataType::Decimal128(..)
            | DataType::Decimal256(..) => "a decimal".to_string(),
            DataType::Boolean => "a boolean".to_string(),
            DataType::Date32 | DataType::Date64 => "a date".to_string(),
            DataType::Timestamp(..) => "a timestamp".to_string(),
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "binary".to_string(),
            DataType::Dictionary(_, value) => kind(value),
            DataType::Null => "null".to_string(),
            other => other.to_string(),
        }
    }
    let zone = |t: &DataType| match t {
        DataType::Timestamp(_, zone) => Some(zone.is_some()),
        _ => None,
    };
    let zoned = |z: bool| {
        if z {
            "with a time zone"
        } else {
            "without a time zone"
        }
    };
    for (h, o) in held.fields().iter().zip(schema.fields()) {
        let (held_kind, our_kind) = (kind(h.data_type()), kind(o.data_type()));
        // (A column of nulls of no type holds no value to change.)
        if held_kind != our_kind && our_kind != "null" {
            return Err(refuse(format!(
                "its column '{}' holds {held_kind} ({}), this output's {our_kind} ({})",
                h.name(),
                h.data_type(),
                o.data_type()
            )));
        }
        if let (Some(held_zone), Some(our_zone)) = (zone(h.data_type()), zone(o.data_type()))
            && held_zone != our_zone
        {
            return Err(refuse(format!(
                "its column '{}' is a timestamp {}, this output's {}",
                h.name(),
                zoned(held_zone),
                zoned(our_zone)
            )));
        }
    }
    let ours: Vec<String> = partition_by.map(str::to_string).into_iter().collect();
    if held_partitions != ours {
        let list = |p: &[String]| {
            if p.is_empty() {
                "nothing".to_string()
            } else {
                p.join(", ")
            }
        };
        return Err(refuse(format!(
            "it is partitioned by {}, this output by {}",
            list(&held_partitions),
            list(&ours)
        )));
    }
    Ok(())
}

/// Commits `df` to the Delta table at `location` (created if missing) as `how` says, in one
/// commit. Returns the version committed.
///
/// Errors: as [`write`].
pub async fn commit(
    ctx: &SessionContext,
    df: DataFrame,
    location: &str,
    how: &Commit<'_>,
) -> Result<i64> {
    // Delta Lake compares column names without regard to case: two that differ only in case
    // cannot both be written (delta-rs's own error names neither the table nor a remedy).
    let mut seen = std::collections::HashMap::new();
    for b in df.schema().fields() {
        if let Some(a) = seen.insert(b.name().to_lowercase(), b.name()) {
            return plan_err!(
                "the events have columns '{}' and '{}', which the Delta table '{location}' cannot \
                 hold both of (Delta Lake compares column names without regard to case): rename \
                 or drop one of them in the input first (sessionize query can, with SELECT * \
                 EXCLUDE)",
                a,
                b.name()
            );
        }
    }
    let url = table_url(location)?;
    let table = DeltaTable::try_from_url(url)
        .await
        .map_err(|e| delta_error(location, e))?;
    let plan = df.logical_plan().clone();
    // This context's state (its functions, memory limit and threads), with delta-rs's planner for
    // the nodes delta-rs adds to the plan it writes.
    let state = datafusion::execution::SessionStateBuilder::new_from_existing(ctx.state())
        .with_query_planner(deltalake_core::delta_datafusion::planner::DeltaPlanner::new())
        .build();
    let mut properties = deltalake_core::kernel::transaction::CommitProperties::default()
        .with_metadata(how.metadata.clone());
    if !how.retry {
        properties = properties.with_max_retries(0);
    }
    let mut write = table
        .write(vec![])
        .with_input_plan(plan)
        .with_session_state(Arc::new(state))
        .with_commit_properties(properties)
        .with_save_mode(if how.append {
            SaveMode::Append
        } else {
            SaveMode::Overwrite
        });
    if let Some(predicate) = &how.replace_where {
        write = write.with_replace_where(predicate.clone());
    }
    if let Some(column) = how.partition_by {
        write = write.with_partition_columns(vec![column.to_string()]);
    }
    if let Some(properties) = &how.parquet {
        write = write.with_writer_properties(delta_properties(properties));
    }
    if how.merge_schema {
        write = write.with_schema_mode(deltalake_core::operations::write::SchemaMode::Merge);
    }
    let table = write.await.map_err(|e| delta_error(location, e))?;
    Ok(table
        .version()
        .map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX)))
}

/// `properties` with Snappy compression where they leave it at the parquet crate's default
/// (none): Delta tables are written compressed, as delta-rs and Spark write them, while a local
/// Parquet output stays uncompressed for speed.
fn delta_properties(properties: &WriterProperties) -> WriterProperties {
    use datafusion::parquet::basic::Compression;
    use datafusion::parquet::schema::types::ColumnPath;
    let unset = properties.compression(&ColumnPath::from("")) == Compression::UNCOMPRESSED;
    if !unset {
        return properties.clone();
    }
    properties
        .clone()
        .into_builder()
        .set_compression(Compression::SNAPPY)
        .build()
}

/// Registers `table` again with its `time` column as `Timestamp(µs, "UTC")` where it is a
/// timestamp of another unit or zone (other columns as they are), before sessions are formed for
/// a Delta table: the type `--into` keeps its events' times in, so that a table built by
/// `--output delta:` and one kept by `--into` have the same column types (a newcomer audit found
/// zone-less times typed as Delta's `timestamp_ntz` by one and `timestamp` by the other). The
/// instants are kept; a time without a zone is read as UTC, as everywhere in sessionize.
///
/// Delta Lake's timestamps are microseconds (the protocol's `timestamp`, as Spark's), so a Delta
/// table cannot hold the nanoseconds, and `--into` keeps its events in microseconds. Sessions
/// written to a Delta table are therefore formed from the times the table holds: two events a
/// timeout plus less than 1 µs apart are one session there (and in the table `--into` keeps), two
/// in a Parquet output of the nanoseconds. Nanoseconds are floored to the microsecond (as
/// [`micros_sql`] does for the events table), so a time before 1970 moves back, never forward.
///
/// Errors: a `table` that is not registered or has no column `time`.
pub async fn at_delta_precision(ctx: &SessionContext, table: &str, time: &str) -> Result<()> {
    use datafusion::arrow::datatypes::{DataType, TimeUnit};
    use datafusion::prelude::Expr;
    let df = ctx.table(table).await?;
    let Ok(field) = df.schema().as_arrow().field_with_name(time).cloned() else {
        return plan_err!("the events have no column '{time}'");
    };
    let micros = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    if !matches!(field.data_type(), DataType::Timestamp(..)) || field.data_type() == &micros {
        return Ok(());
    }
    let held = df.parse_sql_expr(&micros_sql(df.schema().as_arrow(), time))?;
    let columns: Vec<Expr> = df
        .schema()
        .columns()
        .into_iter()
        .map(|c| {
            if c.name == time {
                held.clone().alias(time)
            } else {
                Expr::Column(c)
            }
        })
        .collect();
    let df = df.select(columns)?;
    ctx.deregister_table(table)?;
    ctx.register_table(table, df.into_view())?;
    Ok(())
}

/// SQL for the column `time` of `schema` as Delta Lake holds times: `Timestamp(µs, "UTC")`, a
/// time without a zone read as UTC. Nanoseconds are floored to the microsecond (`date_trunc`, as
/// Spark's cast to its microsecond timestamp floors): Arrow's cast truncates toward zero, which
/// moved a time before 1970 forward (-1 ns became 1970-01-01T00:00:00, a newcomer audit's
/// finding). The one conversion for the events `--into` keeps and for `--output delta:`.
pub fn micros_sql(schema: &datafusion::arrow::datatypes::Schema, time: &str) -> String {
    use datafusion::arrow::datatypes::{DataType, TimeUnit};
    let column = crate::sessions::ident(time);
    let floored = match schema.field_with_name(time).map(|f| f.data_type()) {
        Ok(DataType::Timestamp(TimeUnit::Nanosecond, _)) => {
            format!("date_trunc('microsecond', {column})")
        }
        _ => column,
    };
    format!("arrow_cast({floored}, 'Timestamp(Microsecond, Some(\"UTC\"))')")
}

/// Whether `location` holds a Delta table (a local folder with `_delta_log`, or a URL whose log
/// can be read).
pub async fn exists(location: &str) -> Result<bool> {
    if !location.contains("://") {
        return Ok(std::path::Path::new(location).join("_delta_log").is_dir());
    }
    Ok(open(location).await.is_ok())
}

/// The Delta table at `location`, loaded at its latest version.
async fn open(location: &str) -> Result<DeltaTable> {
    let url = table_url(location)?;
    let mut table = deltalake_core::DeltaTableBuilder::from_url(url)
        .map_err(|e| delta_error(location, e))?
        .build()
        .map_err(|e| delta_error(location, e))?;
    table.load().await.map_err(|e| delta_error(location, e))?;
    Ok(table)
}

/// The latest version of the Delta table at `location`.
pub async fn version(location: &str) -> Result<i64> {
    let table = open(location).await?;
    Ok(table
        .version()
        .map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX)))
}

/// The `commitInfo` fields of the latest commit of the Delta table at `location`.
pub async fn last_commit_info(
    location: &str,
) -> Result<std::collections::HashMap<String, serde_json::Value>> {
    use futures::TryStreamExt;
    let table = open(location).await?;
    let infos: Vec<_> = table
        .history(Some(1))
        .try_collect()
        .await
        .map_err(|e| delta_error(location, e))?;
    Ok(infos.into_iter().next().map(|i| i.info).unwrap_or_default())
}

/// Registers version `version` of the Delta table at `location` as table `name` in `ctx`.
pub async fn register_version(
    ctx: &SessionContext,
    name: &str,
    location: &str,
    version: i64,
) -> Result<()> {
    let url = table_url(location)?;
    let mut table = deltalake_core::DeltaTableBuilder::from_url(url)
        .map_err(|e| delta_error(location, e))?
        .build()
        .map_err(|e| delta_error(location, e))?;
    let Ok(version) = u64::try_from(version) else {
        return plan_err!("'{location}' has no version {version}");
    };
    table
        .load_version(version)
        .await
        .map_err(|e| delta_error(location, e))?;
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| delta_error(location, e))?;
    ctx.deregister_table(name)?;
    ctx.register_table(name, table.table_provider().await?)?;
    Ok(())
}

/// Registers the Delta table at `location` (its latest version) as table `name` in `ctx`.
///
/// Errors: a location without a Delta table.
pub async fn register(ctx: &SessionContext, name: &str, location: &str) -> Result<()> {
    if !location.contains("://") && !std::path::Path::new(location).join("_delta_log").is_dir() {
        return plan_err!("'{location}' is not a Delta table (it has no _delta_log folder)");
    }
    let table = open(location).await?;
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| delta_error(location, e))?;
    let provider = table.table_provider().await?;
    ctx.register_table(name, provider)?;
    Ok(())
}
