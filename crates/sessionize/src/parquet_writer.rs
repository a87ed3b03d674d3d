//! A Parquet writer that encodes the columns of each row group on several threads.
//!
//! Profiling the `sessions` command showed the single-threaded `ArrowWriter` taking more time than
//! the whole query (statistics, dictionaries and levels of 16 columns, one after the other). This
//! writer uses the parquet crate's own column writers, the way its documentation shows for parallel
//! encoding: each worker thread owns some of the columns of the row group in progress and encodes
//! the batches as they arrive, while the query goes on producing the next ones. Row groups, pages,
//! statistics and the embedded Arrow schema are those `ArrowWriter` writes.

use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, Result};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowColumnWriter, ArrowLeafColumn, ArrowRowGroupWriterFactory,
    compute_leaves,
};
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::parquet::file::writer::SerializedFileWriter;

/// Batches a worker may have queued before the sender waits (bounds memory).
const QUEUE: usize = 4;

type Encoded = std::result::Result<Vec<(usize, ArrowColumnChunk)>, ParquetError>;

/// One thread encoding some columns (by leaf index) of the current row group.
struct Worker {
    sender: SyncSender<Vec<ArrowLeafColumn>>,
    handle: JoinHandle<Encoded>,
    leaves: Vec<usize>,
}

fn spawn_worker(
    mut writers: Vec<(usize, ArrowColumnWriter)>,
    receiver: Receiver<Vec<ArrowLeafColumn>>,
) -> JoinHandle<Encoded> {
    std::thread::spawn(move || {
        for leaves in receiver {
            for ((_, writer), leaf) in writers.iter_mut().zip(&leaves) {
                writer.write(leaf)?;
            }
        }
        writers
            .into_iter()
            .map(|(index, writer)| Ok((index, writer.close()?)))
            .collect()
    })
}

/// Writes record batches to `W` as Parquet, encoding columns in parallel.
pub struct ParallelParquetWriter<W: Write + Send> {
    schema: SchemaRef,
    file: SerializedFileWriter<W>,
    factory: ArrowRowGroupWriterFactory,
    threads: usize,
    max_rows: usize,
    row_groups: usize,
    rows_in_group: usize,
    workers: Vec<Worker>,
}

fn parquet_error(e: ParquetError) -> DataFusionError {
    DataFusionError::ParquetError(Box::new(e))
}

impl<W: Write + Send> ParallelParquetWriter<W> {
    /// A writer of `schema` to `sink` with the parquet crate's default properties, on `threads`
    /// encoding threads (at least one).
    pub fn try_new(sink: W, schema: SchemaRef, threads: usize) -> Result<Self> {
        Self::try_new_with_properties(sink, schema, threads, WriterProperties::default())
    }

    /// A writer with the given properties (row group size, encodings, statistics, compression).
    pub fn try_new_with_properties(
        sink: W,
        schema: SchemaRef,
        threads: usize,
        props: WriterProperties,
    ) -> Result<Self> {
        // ArrowWriter converts the schema and embeds the Arrow schema in the metadata; its lower
        // layers are then driven directly.

        let max_rows = props
            .max_row_group_row_count()
            .unwrap_or(1024 * 1024)
            .max(1);
        let writer = ArrowWriter::try_new(sink, schema.clone(), Some(props))?;
        let (file, factory) = writer.into_serialized_writer()?;
        Ok(Self {
            schema,
            file,
            factory,
            threads: threads.max(1),
            max_rows,
            row_groups: 0,
            rows_in_group: 0,
            workers: vec![],
        })
    }

    fn start_row_group(&mut self) -> Result<()> {
        let writers = self.factory.create_column_writers(self.row_groups)?;
        let threads = self.threads.min(writers.len()).max(1);
        let mut shares: Vec<Vec<(usize, ArrowColumnWriter)>> =
            (0..threads).map(|_| vec![]).collect();
        for (index, writer) in writers.into_iter().enumerate() {
            shares[index % threads].push((index, writer));
        }
        self.workers = shares
            .into_iter()
            .map(|share| {
                let (sender, receiver) = sync_channel(QUEUE);
                let leaves = share.iter().map(|(index, _)| *index).collect();
                Worker {
                    sender,
                    handle: spawn_worker(share, receiver),
                    leaves,
                }
            })
            .collect();
        Ok(())
    }

    /// Hands the columns of `batch` (which fits in the row group) to the workers.
    fn send(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.workers.is_empty() {
            self.start_row_group()?;
        }
        let mut leaves: Vec<Option<ArrowLeafColumn>> = vec![];
        for (field, column) in self.schema.fields().iter().zip(batch.columns()) {
            leaves.extend(compute_leaves(field, column)?.into_iter().map(Some));
        }
        for worker in &self.workers {
            let share: Vec<ArrowLeafColumn> = worker
                .leaves
                .iter()
                .filter_map(|&index| leaves.get_mut(index).and_then(Option::take))
                .collect();
            if worker.sender.send(share).is_err() {
                // The worker stopped on an error; finishing the row group reports it.
                return self.finish_row_group();
            }
        }
        self.rows_in_group += batch.num_rows();
        if self.rows_in_group >= self.max_rows {
            self.finish_row_group()?;
        }
        Ok(())
    }

    fn finish_row_group(&mut self) -> Result<()> {
        let mut chunks = vec![];
        for worker in std::mem::take(&mut self.workers) {
            drop(worker.sender);
            let encoded = worker.handle.join().map_err(|_| {
                DataFusionError::Execution("a Parquet encoding thread panicked".into())
            })?;
            chunks.extend(encoded.map_err(parquet_error)?);
        }
        chunks.sort_by_key(|(index, _)| *index);
        let mut row_group = self.file.next_row_group()?;
        for (_, chunk) in chunks {
            chunk.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
        self.row_groups += 1;
        self.rows_in_group = 0;
        Ok(())
    }

    /// Writes `batch`, starting new row groups as they fill.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let room = self.max_rows - self.rows_in_group;
            let take = room.min(batch.num_rows() - offset);
            self.send(&batch.slice(offset, take))?;
            offset += take;
        }
        Ok(())
    }

    /// Writes the last row group and the footer; returns the sink.
    pub fn into_inner(mut self) -> Result<W> {
        if !self.workers.is_empty() {
            self.finish_row_group()?;
        }
        Ok(self.file.into_inner()?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray, StructArray};
    use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema};
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    fn batch(from: i64, rows: i64) -> RecordBatch {
        let inner = Fields::from(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
            Field::new("nested", DataType::Struct(inner.clone()), true),
        ]));
        let n: ArrayRef = Arc::new(Int64Array::from_iter_values(from..from + rows));
        let s: ArrayRef = Arc::new(StringArray::from_iter(
            (from..from + rows).map(|i| (i % 3 != 0).then(|| format!("v{i}"))),
        ));
        let nested: ArrayRef = Arc::new(StructArray::new(
            inner,
            vec![Arc::clone(&n), Arc::clone(&s)],
            None,
        ));
        RecordBatch::try_new(schema, vec![n, s, nested]).unwrap()
    }

    /// Reads back a file written in batches of `sizes` rows, on `threads` threads.
    fn round_trip(sizes: &[i64], threads: usize) -> (Vec<RecordBatch>, usize) {
        let mut from = 0;
        let batches: Vec<RecordBatch> = sizes
            .iter()
            .map(|&rows| {
                let b = batch(from, rows);
                from += rows;
                b
            })
            .collect();
        let schema = batches[0].schema();
        let file = tempfile::tempfile().unwrap();
        let mut writer = ParallelParquetWriter::try_new(file, schema.clone(), threads).unwrap();
        writer.max_rows = 1000;
        for b in &batches {
            writer.write(b).unwrap();
        }
        let file = writer.into_inner().unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        let row_groups = reader.metadata().num_row_groups();
        let read: Vec<RecordBatch> = reader.build().unwrap().map(|b| b.unwrap()).collect();
        let expected = datafusion::arrow::compute::concat_batches(&schema, &batches).unwrap();
        let got = datafusion::arrow::compute::concat_batches(&schema, &read).unwrap();
        assert_eq!(got, expected);
        (read, row_groups)
    }

    #[test]
    fn same_rows_and_row_groups_as_arrow_writer() {
        // 2,500 rows in uneven batches over row groups of 1,000: batches are split at the limit.
        let (_, groups) = round_trip(&[700, 700, 1, 1099], 3);
        assert_eq!(groups, 3);
        let (_, groups) = round_trip(&[1000], 1);
        assert_eq!(groups, 1);
        let (_, groups) = round_trip(&[5], 8);
        assert_eq!(groups, 1);
    }

    #[test]
    fn empty_file_has_the_schema() {
        let schema = batch(0, 1).schema();
        let file = tempfile::tempfile().unwrap();
        let mut writer = ParallelParquetWriter::try_new(file, schema.clone(), 2).unwrap();
        writer
            .write(&RecordBatch::new_empty(schema.clone()))
            .unwrap();
        let file = writer.into_inner().unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        assert_eq!(reader.schema().as_ref(), schema.as_ref());
        assert_eq!(reader.metadata().num_row_groups(), 0);
    }
}
