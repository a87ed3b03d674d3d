//! `session_key(part, ...)`: the text of its arguments joined by `-`, such as the sessions table's
//! `unique_session_id` (`user_id-session_id`).

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, StringArray, StringViewArray,
};
use datafusion::arrow::buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::docs;

/// The `session_key` function.
pub fn session_key_udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(SessionKey {
        signature: Signature::variadic_any(Volatility::Immutable),
    }))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SessionKey {
    signature: Signature,
}

/// One argument, read the cheapest way for its type.
enum Part {
    /// A constant (a scalar argument): its text, or `None` for null.
    Constant(Option<String>),
    /// Integers, written with `itoa`.
    Integers(Int64Array),
    /// Strings (any other type is cast to a string view first).
    Strings(StringViewArray),
}

impl Part {
    fn of(value: &ColumnarValue) -> Result<Self> {
        Ok(match value {
            ColumnarValue::Scalar(scalar) => Part::Constant(if scalar.is_null() {
                None
            } else {
                match scalar.cast_to(&DataType::Utf8)? {
                    ScalarValue::Utf8(text) => text,
                    _ => None,
                }
            }),
            ColumnarValue::Array(array) => match array.data_type() {
                DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32 => Part::Integers(
                    cast(array, &DataType::Int64)?
                        .as_primitive::<Int64Type>()
                        .clone(),
                ),
                DataType::Utf8View => Part::Strings(array.as_string_view().clone()),
                _ => Part::Strings(Self::as_string_view(array)?),
            },
        })
    }

    fn as_string_view(array: &ArrayRef) -> Result<StringViewArray> {
        Ok(cast(array, &DataType::Utf8View)?.as_string_view().clone())
    }

    /// Appends row `i`'s text to `out`; false if it is null.
    fn write(&self, i: usize, out: &mut Vec<u8>, digits: &mut itoa::Buffer) -> bool {
        match self {
            Part::Constant(Some(text)) => out.extend_from_slice(text.as_bytes()),
            Part::Constant(None) => return false,
            Part::Integers(values) => {
                if values.is_null(i) {
                    return false;
                }
                out.extend_from_slice(digits.format(values.value(i)).as_bytes());
            }
            Part::Strings(values) => {
                if values.is_null(i) {
                    return false;
                }
                out.extend_from_slice(values.value(i).as_bytes());
            }
        }
        true
    }
}

impl ScalarUDFImpl for SessionKey {
    fn name(&self) -> &str {
        "session_key"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if arg_types.is_empty() {
            return plan_err!(
                "session_key takes one or more arguments, such as (user_id, session_id)"
            );
        }
        if let Some(bad) = arg_types.iter().find(|t| {
            !matches!(
                t,
                DataType::Null
                    | DataType::Utf8
                    | DataType::Utf8View
                    | DataType::LargeUtf8
                    | DataType::Dictionary(..)
                    | DataType::Int8
                    | DataType::Int16
                    | DataType::Int32
                    | DataType::Int64
                    | DataType::UInt8
                    | DataType::UInt16
                    | DataType::UInt32
                    | DataType::UInt64
                    | DataType::Boolean
                    | DataType::Date32
            )
        }) {
            return plan_err!(
                "session_key joins strings and integers, but found {bad}; cast it to VARCHAR first"
            );
        }
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let parts = args.args.iter().map(Part::of).collect::<Result<Vec<_>>>()?;
        let rows = if all_scalar { 1 } else { rows };
        // The text of all rows in one buffer, with offsets: no per-row allocation and no copy.
        let mut text: Vec<u8> = Vec::with_capacity(rows * 24);
        let mut offsets: Vec<i32> = Vec::with_capacity(rows + 1);
        offsets.push(0);
        let mut valid: Vec<bool> = Vec::with_capacity(rows);
        let mut digits = itoa::Buffer::new();
        for i in 0..rows {
            let start = text.len();
            let mut ok = true;
            for (n, part) in parts.iter().enumerate() {
                if n > 0 {
                    text.push(b'-');
                }
                if !part.write(i, &mut text, &mut digits) {
                    ok = false;
                    break;
                }
            }
            if !ok {
                text.truncate(start);
            }
            valid.push(ok);
            let Ok(end) = i32::try_from(text.len()) else {
                return exec_err!(
                    "session_key: the keys of one batch exceed 2 GiB; use smaller batches"
                );
            };
            offsets.push(end);
        }
        let nulls = NullBuffer::from(valid);
        let keys = StringArray::try_new(
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            Buffer::from_vec(text),
            (nulls.null_count() > 0).then_some(nulls),
        )?;
        Ok(if all_scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&keys, 0)?)
        } else {
            ColumnarValue::Array(Arc::new(keys))
        })
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(documentation())
    }
}

fn documentation() -> &'static Documentation {
    static DOC: LazyLock<Documentation> = LazyLock::new(|| {
        Documentation::builder(
            docs::DOC_SECTION_COLUMNS,
            "Returns the text of its arguments joined by '-', or null when any \
             argument is null (a string): the same value as `a || '-' || CAST(b AS VARCHAR)`, built in one pass \
             without intermediate strings. The sessions table's `unique_session_id` is \
             `session_key(user_id, session_id)` (with the platform between them for per-platform \
             timeouts).",
            "session_key(part [, part ...])",
        )
        .with_argument(
            "part",
            "A string, integer, boolean or date column or constant; other types must be cast to VARCHAR.",
        )
        .with_sql_example(
            r#"```sql
> SELECT session_key('user-7', 1700000000000) AS unique_session_id;
+----------------------+
| unique_session_id    |
+----------------------+
| user-7-1700000000000 |
+----------------------+
```"#,
        )
        .with_related_udf("session_list")
        .build()
    });
    &DOC
}
