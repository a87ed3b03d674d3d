//! Annotated events written to Parquet by copying the input's column chunks.
//!
//! Annotating adds two columns and changes no other: when the input is Parquet files of one
//! schema, each input row group becomes an output row group whose input columns are the input's
//! column chunks, copied byte for byte (pages, compression, statistics and page index as they
//! are), followed by the new `session_id` and `session_number` chunks. Only the columns that
//! sessions depend on are decoded. Decoding and encoding the wide columns of an export (JSON
//! properties above all) was most of the time of writing them anew: on 10M events with every
//! Amplitude column, `SELECT *` to Parquet alone took 2.8 s, longer than everything else.
//!
//! This is the parquet crate's column-chunk splicing ([`SerializedRowGroupWriter::append_column`],
//! what its `parquet-concat` tool uses), not a writer of our own. The output is what
//! [`super::annotate`] gives, row for row and in the same order; only the encoding of the input
//! columns is the input's rather than the writer's defaults.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::LogicalPlan;
#[allow(deprecated)]
use datafusion::parquet::arrow::arrow_writer::{compute_leaves, get_column_writers};
use datafusion::parquet::arrow::{
    ArrowSchemaConverter, add_encoded_arrow_schema_to_metadata, parquet_to_arrow_schema,
};
use datafusion::parquet::basic::Compression;
use datafusion::parquet::column::writer::ColumnCloseResult;
use datafusion::parquet::file::metadata::{
    ColumnChunkMetaData, PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader,
};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::file::writer::SerializedFileWriter;
use datafusion::parquet::schema::types::{ColumnDescriptor, SchemaDescriptor, Type, TypePtr};
use datafusion::physical_plan::{ExecutionPlan, execute_stream_partitioned};
use datafusion::prelude::SessionContext;
use futures::StreamExt;

use super::{events_plan, in_order, output_names, sessions_index};
use crate::output::{Progress, commit};
use crate::sessions::SessionsOptions;

/// Writes every event of `table` with its session to the Parquet file `target` (a local path or
/// an object store URL, committed atomically as [`crate::output::write_to`] does), by copying the
/// input's column chunks. Returns the number of events written, or `None`, having read nothing,
/// where this way does not apply: an input that is not only local Parquet files of one schema,
/// `--dedup`, or `concluded`. The caller then writes [`super::annotate`]'s stream.
///
/// Errors: those of [`super::annotate`], and of reading the input or writing `target`.
pub async fn write_parquet(
    ctx: &SessionContext,
    table: &str,
    options: &SessionsOptions,
    concluded: bool,
    target: &str,
    progress: Progress<'_>,
) -> Result<Option<usize>> {
    if options.dedup_insert_id || concluded || !is_plain_parquet(ctx, table).await? {
        return Ok(None);
    }
    let schema = ctx.table(table).await?.schema().as_arrow().clone();
    let plan = super::Plan::new(table, &schema, options)?;
    // The files as the events query reads them, in its order, before anything is read.
    let (task, keys_plan) = events_plan(ctx, &plan.keys_sql).await?;
    let Some(input) = Input::of(&keys_plan, &schema)? else {
        return Ok(None);
    };
    let (_, index) = sessions_index(ctx, &plan, options).await?;
    let partitions = execute_stream_partitioned(keys_plan, task)?;
    let concurrency = ctx.state().config().target_partitions().max(1);
    let annotated_schema: SchemaRef = Arc::new(Schema::new(new_fields()));
    let mut annotated = {
        let schema = Arc::clone(&annotated_schema);
        in_order(partitions, concurrency, move |batch| {
            index.annotate(&batch, 0, &schema, false)
        })
    };
    commit(ctx, target, |file| async move {
        // The writing has a thread of its own: copying and encoding would otherwise hold one of
        // the runtime's threads, which meanwhile read and annotate the input.
        let (sender, receiver) = tokio::sync::mpsc::channel(QUEUE);
        let writing = tokio::task::spawn_blocking(move || {
            write_row_groups(file, &input, annotated_schema, receiver)
        });
        let mut rows = 0;
        let mut failed = None;
        while let Some(batch) = annotated.next().await {
            match batch {
                Ok(batch) => {
                    rows += batch.num_rows();
                    if sender.send(batch).await.is_err() {
                        break; // the writer failed: its error follows
                    }
                    if let Some(report) = progress {
                        report(rows);
                    }
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        drop(sender);
        let written = writing
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        match failed {
            Some(e) => Err(e),
            None => written,
        }
    })
    .await
    .map(Some)
}

/// Annotated batches the writer may have queued.
const QUEUE: usize = 64;

/// Writes the output file: each row group of the input files, in order, with the annotations of
/// its rows, which arrive in order on `annotations`. Returns the file and the number of rows.
fn write_row_groups(
    file: File,
    input: &Input,
    schema: SchemaRef,
    mut annotations: tokio::sync::mpsc::Receiver<RecordBatch>,
) -> Result<(File, usize)> {
    let mut writer = Writer::new(file, input, schema)?;
    let mut pending: Option<RecordBatch> = None;
    let mut rows = 0;
    for (path, metadata) in &input.files {
        let source = File::open(path).map_err(|e| {
            DataFusionError::Execution(format!("cannot read '{}': {e}", path.display()))
        })?;
        for group in 0..metadata.num_row_groups() {
            let wanted = metadata.row_group(group).num_rows() as usize;
            // The group's annotations, from as many batches as it spans.
            let mut parts = vec![];
            let mut have = 0;
            while have < wanted {
                let Some(batch) = pending.take().or_else(|| annotations.blocking_recv()) else {
                    return Err(changed(path));
                };
                let take = batch.num_rows().min(wanted - have);
                if take < batch.num_rows() {
                    pending = Some(batch.slice(take, batch.num_rows() - take));
                }
                parts.push(batch.slice(0, take));
                have += take;
            }
            if wanted > 0 {
                writer.row_group(&source, metadata, group, &parts)?;
            }
            rows += wanted;
        }
    }
    let mut extra = pending.map_or(0, |b| b.num_rows());
    while let Some(batch) = annotations.blocking_recv() {
        extra += batch.num_rows();
    }
    if extra > 0 {
        let last = input.files.last().map(|(p, _)| p.as_path());
        return Err(changed(last.unwrap_or(std::path::Path::new("the input"))));
    }
    Ok((writer.finish()?, rows))
}

fn changed(file: &std::path::Path) -> DataFusionError {
    DataFusionError::Execution(format!(
        "'{}' changed while it was read: its row groups no longer hold the rows read",
        file.display()
    ))
}

/// `session_id` and `session_number`, the columns annotating adds.
fn new_fields() -> Vec<Field> {
    vec![
        Field::new("session_id", DataType::Int64, true),
        Field::new("session_number", DataType::Int64, true),
    ]
}

/// Whether `table` is a plain scan of a listing table of Parquet files: no filter, limit, renamed
/// or computed column between the files and the table.
async fn is_plain_parquet(ctx: &SessionContext, table: &str) -> Result<bool> {
    let mut provider = ctx.table_provider(table).await?;
    // A view of a DataFrame (what the loader registers) is looked through.
    while let Some(plan) = provider.get_logical_plan() {
        let LogicalPlan::TableScan(scan) = plan.as_ref() else {
            return Ok(false);
        };
        if !scan.filters.is_empty() || scan.fetch.is_some() || scan.projection.is_some() {
            return Ok(false);
        }
        let next = source_as_provider(&scan.source)?;
        provider = next;
    }
    let any: &dyn std::any::Any = provider.as_ref();
    Ok(any.downcast_ref::<ListingTable>().is_some_and(|listing| {
        listing.options().format.get_ext() == "parquet"
            && listing.options().table_partition_cols.is_empty()
    }))
}

/// The input files, each with its footer, when all are local Parquet files of one schema, that of
/// the table.
struct Input {
    files: Vec<(PathBuf, Arc<ParquetMetaData>)>,
    /// The files' Parquet schema.
    parquet: SchemaDescriptor,
    /// The files' Arrow schema (the embedded one where there is one).
    arrow: Schema,
}

impl Input {
    /// The files `plan` scans, in its order, or `None` when they are not local Parquet files of
    /// one schema equal (but for string and binary views) to `table`.
    fn of(plan: &Arc<dyn ExecutionPlan>, table: &Schema) -> Result<Option<Self>> {
        let mut scans = vec![];
        collect_scans(plan, &mut scans);
        let [config] = scans.as_slice() else {
            return Ok(None);
        };
        if config.file_source().file_type() != "parquet"
            || config.object_store_url.as_str() != "file:///"
        {
            return Ok(None);
        }
        let local = object_store::local::LocalFileSystem::new();
        let mut paths: Vec<PathBuf> = vec![];
        for group in &config.file_groups {
            for file in group.files() {
                let path = local
                    .path_to_filesystem(&file.object_meta.location)
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                if paths.last() != Some(&path) {
                    paths.push(path);
                }
            }
        }
        let mut files = vec![];
        let mut schemas: Option<(SchemaDescriptor, Schema)> = None;
        for path in paths {
            let file = File::open(&path).map_err(|e| {
                DataFusionError::Execution(format!("cannot read '{}': {e}", path.display()))
            })?;
            let metadata = ParquetMetaDataReader::new()
                .with_page_index_policy(PageIndexPolicy::Optional)
                .parse_and_finish(&file)?;
            let file_metadata = metadata.file_metadata();
            let descriptor = file_metadata.schema_descr();
            let arrow = parquet_to_arrow_schema(descriptor, file_metadata.key_value_metadata())?;
            match &schemas {
                None => {
                    if !same_columns(&arrow, table) {
                        return Ok(None);
                    }
                    schemas = Some((descriptor.clone(), arrow));
                }
                Some((first, first_arrow)) => {
                    if first.root_schema() != descriptor.root_schema() || *first_arrow != arrow {
                        return Ok(None);
                    }
                }
            }
            files.push((path, Arc::new(metadata)));
        }
        let Some((parquet, arrow)) = schemas else {
            return Ok(None);
        };
        Ok(Some(Self {
            files,
            parquet,
            arrow,
        }))
    }
}

fn collect_scans(plan: &Arc<dyn ExecutionPlan>, scans: &mut Vec<FileScanConfig>) {
    if let Some(config) = plan
        .downcast_ref::<DataSourceExec>()
        .and_then(|exec| exec.data_source().downcast_ref::<FileScanConfig>())
    {
        scans.push(config.clone());
    }
    for child in plan.children() {
        collect_scans(child, scans);
    }
}

/// Whether two schemas have the same columns, names and types, where text and binary of any
/// offset size or view count as one (DataFusion reads Parquet text as views).
fn same_columns(a: &Schema, b: &Schema) -> bool {
    fn plain(t: &DataType) -> DataType {
        match t {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => DataType::Binary,
            other => other.clone(),
        }
    }
    a.fields().len() == b.fields().len()
        && a.fields()
            .iter()
            .zip(b.fields())
            .all(|(x, y)| x.name() == y.name() && plain(x.data_type()) == plain(y.data_type()))
}

/// The output file: the input's columns (renamed by [`output_name`]), then the new ones.
struct Writer {
    writer: SerializedFileWriter<File>,
    /// The output's leaf columns, the input's first.
    columns: Vec<Arc<ColumnDescriptor>>,
    /// The new columns alone, for their encoders.
    new_parquet: SchemaDescriptor,
    new_arrow: SchemaRef,
    properties: Arc<WriterProperties>,
    /// Whether every input column chunk has an offset index (the page index's page locations).
    /// The parquet crate writes a file's offset indexes for all column chunks or for none (it
    /// panics on a mix), so without them in the input the new columns get none either.
    offset_indexes: bool,
}

impl Writer {
    fn new(file: File, input: &Input, new_arrow: SchemaRef) -> Result<Self> {
        let root = input.parquet.root_schema();
        let new_parquet = ArrowSchemaConverter::new().convert(&new_arrow)?;
        let names = output_names(&input.arrow);
        let mut fields: Vec<TypePtr> = vec![];
        for (field, name) in root.get_fields().iter().zip(&names) {
            fields.push(if name == field.name() {
                Arc::clone(field)
            } else {
                Arc::new(renamed(field, name)?)
            });
        }
        fields.extend(new_parquet.root_schema().get_fields().iter().cloned());
        let output_root = Arc::new(
            Type::group_type_builder(root.name())
                .with_fields(fields)
                .build()?,
        );
        let arrow = Schema::new(
            input
                .arrow
                .fields()
                .iter()
                .zip(&names)
                .map(|(f, name)| f.as_ref().clone().with_name(name))
                .chain(new_arrow.fields().iter().map(|f| f.as_ref().clone()))
                .collect::<Vec<_>>(),
        );
        // The new columns are compressed as the input's first column is.
        let compression = input
            .files
            .iter()
            .find_map(|(_, m)| Some(m.row_groups().first()?.columns().first()?.compression()))
            .unwrap_or(Compression::UNCOMPRESSED);
        let offset_indexes = input.files.iter().all(|(_, metadata)| {
            metadata.offset_index().is_some_and(|groups| {
                groups.len() == metadata.num_row_groups()
                    && groups
                        .iter()
                        .zip(metadata.row_groups())
                        .all(|(index, group)| index.len() == group.num_columns())
            })
        });
        let mut builder = WriterProperties::builder().set_compression(compression);
        if !offset_indexes {
            builder = builder
                .set_statistics_enabled(EnabledStatistics::Chunk)
                .set_offset_index_disabled(true);
        }
        let mut properties = builder.build();
        add_encoded_arrow_schema_to_metadata(&arrow, &mut properties);
        let properties = Arc::new(properties);
        let writer =
            SerializedFileWriter::new(file, Arc::clone(&output_root), Arc::clone(&properties))?;
        let columns = SchemaDescriptor::new(output_root).columns().to_vec();
        Ok(Self {
            writer,
            columns,
            new_parquet,
            new_arrow,
            properties,
            offset_indexes,
        })
    }

    /// Row group `group` of the input file `source` (whose footer is `metadata`), with the
    /// annotations of its rows in `parts`.
    fn row_group(
        &mut self,
        source: &File,
        metadata: &ParquetMetaData,
        group: usize,
        parts: &[RecordBatch],
    ) -> Result<()> {
        let row_group = metadata.row_group(group);
        let rows = row_group.num_rows() as u64;
        // The new columns first, while nothing is being written. (The writer factory that
        // replaces `get_column_writers` makes encoders for every column of a file; here only the
        // new columns are encoded.)
        #[allow(deprecated)]
        let mut encoders =
            get_column_writers(&self.new_parquet, &self.properties, &self.new_arrow)?;
        for (c, (encoder, field)) in encoders.iter_mut().zip(self.new_arrow.fields()).enumerate() {
            for part in parts {
                let column: &ArrayRef = part.column(c);
                for leaf in compute_leaves(field, column)? {
                    encoder.write(&leaf)?;
                }
            }
        }
        let mut out = self.writer.next_row_group()?;
        for (c, chunk) in row_group.columns().iter().enumerate() {
            let descriptor = self.columns.get(c).ok_or_else(|| {
                DataFusionError::Internal("annotate: the output has fewer columns".into())
            })?;
            let close = ColumnCloseResult {
                bytes_written: chunk.compressed_size() as u64,
                rows_written: rows,
                metadata: described(chunk, Arc::clone(descriptor))?,
                bloom_filter: None,
                column_index: metadata
                    .column_index()
                    .and_then(|index| index.get(group)?.get(c).cloned()),
                offset_index: metadata
                    .offset_index()
                    .filter(|_| self.offset_indexes)
                    .and_then(|index| index.get(group)?.get(c).cloned()),
            };
            out.append_column(source, close)?;
        }
        for encoder in encoders {
            encoder.close()?.append_to_row_group(&mut out)?;
        }
        out.close()?;
        Ok(())
    }

    fn finish(self) -> Result<File> {
        Ok(self.writer.into_inner()?)
    }
}

/// `chunk`'s metadata for the output column `descriptor`, whose name may differ from the input's.
fn described(
    chunk: &ColumnChunkMetaData,
    descriptor: Arc<ColumnDescriptor>,
) -> Result<ColumnChunkMetaData> {
    let mut builder = ColumnChunkMetaData::builder(descriptor)
        .set_compression_codec(chunk.compression_codec())
        .set_encodings_mask(*chunk.encodings_mask())
        .set_total_compressed_size(chunk.compressed_size())
        .set_total_uncompressed_size(chunk.uncompressed_size())
        .set_num_values(chunk.num_values())
        .set_data_page_offset(chunk.data_page_offset())
        .set_dictionary_page_offset(chunk.dictionary_page_offset())
        .set_unencoded_byte_array_data_bytes(chunk.unencoded_byte_array_data_bytes())
        .set_repetition_level_histogram(chunk.repetition_level_histogram().cloned())
        .set_definition_level_histogram(chunk.definition_level_histogram().cloned());
    if let Some(statistics) = chunk.statistics() {
        builder = builder.set_statistics(statistics.clone());
    }
    if let Some(stats) = chunk.page_encoding_stats() {
        builder = builder.set_page_encoding_stats(stats.clone());
    }
    Ok(builder.build()?)
}

/// The top-level Parquet field `field` under the name `name`.
fn renamed(field: &Type, name: &str) -> Result<Type> {
    let info = field.get_basic_info();
    let id = info.has_id().then(|| info.id());
    Ok(match field {
        Type::PrimitiveType {
            physical_type,
            type_length,
            scale,
            precision,
            ..
        } => Type::primitive_type_builder(name, *physical_type)
            .with_repetition(info.repetition())
            .with_converted_type(info.converted_type())
            .with_logical_type(info.logical_type_ref().cloned())
            .with_length(*type_length)
            .with_precision(*precision)
            .with_scale(*scale)
            .with_id(id)
            .build()?,
        Type::GroupType { fields, .. } => Type::group_type_builder(name)
            .with_repetition(info.repetition())
            .with_converted_type(info.converted_type())
            .with_logical_type(info.logical_type_ref().cloned())
            .with_fields(fields.clone())
            .with_id(id)
            .build()?,
    })
}
