//! `to_json(struct)`: a struct (an export's properties object, as Parquet writers, pandas, Polars
//! and PyArrow store it) as JSON text, the form the JSON functions and the sources' mappings read
//! (`event_properties` is JSON text in every source). DuckDB and Spark name it the same.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::StringArray;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::{DataFusionError, Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::docs;

/// The `to_json` function.
pub fn to_json_udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(ToJson {
        signature: Signature::any(1, Volatility::Immutable),
    }))
}

/// The rows of a struct array as JSON objects, one line of text each (null where the struct is
/// null; null fields left out), written by Arrow's JSON writer.
///
/// Errors: a field of a type Arrow's JSON writer cannot write.
pub fn struct_as_json(array: &datafusion::arrow::array::StructArray) -> Result<ArrayRef> {
    let rows = RecordBatch::try_new_with_options(
        Arc::new(Schema::new(array.fields().clone())),
        array.columns().to_vec(),
        &RecordBatchOptions::new().with_row_count(Some(array.len())),
    )?;
    let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(Vec::new());
    writer.write(&rows)?;
    writer.finish()?;
    let text = String::from_utf8(writer.into_inner())
        .map_err(|e| DataFusionError::Execution(format!("JSON text of a struct column: {e}")))?;
    let lines: Vec<Option<&str>> = text
        .lines()
        .enumerate()
        .map(|(i, line)| array.is_valid(i).then_some(line))
        .collect();
    Ok(Arc::new(StringArray::from(lines)))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ToJson {
    signature: Signature,
}

impl ScalarUDFImpl for ToJson {
    fn name(&self) -> &str {
        "to_json"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match &arg_types[0] {
            DataType::Struct(_) | DataType::Null => Ok(DataType::Utf8),
            other => plan_err!("to_json: argument 1 must be a struct, but found {other}"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let value = args.args[0].to_array(args.number_rows)?;
        if value.data_type() == &DataType::Null {
            return Ok(ColumnarValue::Array(Arc::new(StringArray::new_null(
                args.number_rows,
            ))));
        }
        Ok(ColumnarValue::Array(struct_as_json(value.as_struct())?))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(documentation())
    }
}

fn documentation() -> &'static Documentation {
    static DOC: LazyLock<Documentation> = LazyLock::new(|| {
        Documentation::builder(
            docs::DOC_SECTION_COLUMNS,
            "Returns a struct as JSON object text (null for a null struct; null fields left out), \
             so that properties stored as a struct are read by the JSON functions like \
             properties stored as text; the sources put it in event_properties.",
            "to_json(value)",
        )
        .with_argument("value", "A struct, such as an export's properties column.")
        .with_sql_example(
            r#"```sql
> SELECT to_json(named_struct('page', '/home', 'n', 2)) AS p;
+------------------------+
| p                      |
+------------------------+
| {"page":"/home","n":2} |
+------------------------+
```"#,
        )
        .build()
    });
    &DOC
}
