//! The Arrow C stream interface (the Arrow PyCapsule protocol), both ways, without copying data:
//! any object with `__arrow_c_stream__` (a PyArrow Table or RecordBatchReader, a Polars DataFrame,
//! a DuckDB relation) is read into record batches that share its buffers, and results are handed
//! back as an object with `__arrow_c_stream__`, which `pyarrow.table()` reads.

use std::ptr::NonNull;

use datafusion::arrow::array::{RecordBatch, RecordBatchIterator, RecordBatchReader};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::arrow::ffi_stream::{ArrowArrayStreamReader, FFI_ArrowArrayStream};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

const STREAM: &std::ffi::CStr = c"arrow_array_stream";

/// Reads every batch of the Arrow C stream `data` exports (`data.__arrow_c_stream__()`).
///
/// Errors: `TypeError` for an object without `__arrow_c_stream__`, `ValueError` for a stream that
/// fails while read.
pub fn read_stream(data: &Bound<'_, PyAny>) -> PyResult<(SchemaRef, Vec<RecordBatch>)> {
    if !data.hasattr("__arrow_c_stream__")? {
        return Err(PyTypeError::new_err(format!(
            "expected a path, a list of paths, or Arrow data (an object with __arrow_c_stream__: \
             a PyArrow Table, a Polars DataFrame, a DuckDB relation), but got {}",
            data.get_type().name()?
        )));
    }
    let capsule = data.call_method0("__arrow_c_stream__")?;
    let capsule = capsule.cast::<PyCapsule>()?;
    let pointer: NonNull<FFI_ArrowArrayStream> = capsule.pointer_checked(Some(STREAM))?.cast();
    // SAFETY: the capsule named `arrow_array_stream` holds an `ArrowArrayStream` (the Arrow
    // PyCapsule protocol); `from_raw` moves it out and leaves a released one behind, which the
    // capsule's destructor then leaves alone.
    let stream = unsafe { FFI_ArrowArrayStream::from_raw(pointer.as_ptr()) };
    let reader = ArrowArrayStreamReader::try_new(stream)
        .map_err(|e| PyValueError::new_err(format!("cannot read the Arrow data: {e}")))?;
    let schema = reader.schema();
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PyValueError::new_err(format!("cannot read the Arrow data: {e}")))?;
    Ok((schema, batches))
}

/// A result: record batches that `pyarrow.table(result)` (or Polars, DuckDB) reads through
/// `__arrow_c_stream__`, once.
#[pyclass(module = "sessionize._sessionize")]
pub struct ArrowResult {
    data: Option<(SchemaRef, Vec<RecordBatch>)>,
}

impl ArrowResult {
    /// The result of `batches`, their text and binary views made plain text and binary.
    ///
    /// DataFusion reads Parquet text as `Utf8View`, which pyarrow's `take` kernel (so
    /// `Table.sort_by`) and older pandas do not handle: results in Python have plain strings.
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> datafusion::error::Result<Self> {
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_data_type(plain(f.data_type())))
            .collect();
        let plain_schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
        // Each column is checked against the schema, not only the schema against itself: a plan
        // can say `Utf8` where its arrays are `Utf8View` (DataFusion 55's `substr` on views), and
        // pyarrow reading views as plain strings crashed the interpreter.
        let converted = batches
            .into_iter()
            .map(|batch| sessionize::tables::cast_to_schema(batch, &plain_schema))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        Ok(Self {
            data: Some((plain_schema, converted)),
        })
    }
}

/// `data_type` with text and binary views replaced by plain text and binary, at any depth.
fn plain(data_type: &DataType) -> DataType {
    let field = |f: &FieldRef| Arc::new(f.as_ref().clone().with_data_type(plain(f.data_type())));
    match data_type {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::List(f) => DataType::List(field(f)),
        DataType::LargeList(f) => DataType::LargeList(field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(field(f), *n),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(field).collect()),
        DataType::Map(f, sorted) => DataType::Map(field(f), *sorted),
        other => other.clone(),
    }
}

#[pymethods]
impl ArrowResult {
    /// The Arrow C stream of the result (the Arrow PyCapsule protocol). A requested schema is
    /// ignored: the result has one schema.
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &mut self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let Some((schema, batches)) = self.data.take() else {
            return Err(PyValueError::new_err("this result was already read"));
        };
        let reader: Box<dyn RecordBatchReader + Send> = Box::new(RecordBatchIterator::new(
            batches.into_iter().map(Ok),
            schema,
        ));
        let stream = FFI_ArrowArrayStream::new(reader);
        PyCapsule::new_with_value(py, stream, STREAM)
    }
}
