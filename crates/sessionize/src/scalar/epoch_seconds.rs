//! `epoch_seconds(ts)`: the whole seconds since 1970 of a timestamp, floored.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use super::{floor_div, one_timestamp};
use crate::docs;
use crate::rules::units_per_second;

/// The `epoch_seconds` function.
pub fn epoch_seconds_udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(EpochSeconds {
        signature: Signature::user_defined(Volatility::Immutable),
    }))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct EpochSeconds {
    signature: Signature,
}

impl ScalarUDFImpl for EpochSeconds {
    fn name(&self) -> &str {
        "epoch_seconds"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        // Checked in `return_type`, whose errors reach the user as written.
        Ok(arg_types.to_vec())
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        one_timestamp(self.name(), arg_types)?;
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return exec_err!("epoch_seconds takes one argument");
        };
        let unit = one_timestamp(self.name(), &[arg.data_type()])?;
        let per_second = units_per_second(unit);
        Ok(match arg {
            ColumnarValue::Array(array) => {
                ColumnarValue::Array(Arc::new(floor_div(array, per_second)?))
            }
            ColumnarValue::Scalar(scalar) => {
                let seconds = floor_div(&scalar.to_array()?, per_second)?;
                ColumnarValue::Scalar(ScalarValue::Int64(
                    seconds.is_valid(0).then(|| seconds.value(0)),
                ))
            }
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
            "Returns the whole seconds (Int64) since 1970-01-01 of a timestamp's stored value, cut \
             to the second as dbt's `datediff(..., 'second')` counts them: the floor, also before \
             1970 (where `to_unixtime` rounds toward zero). The difference of two of them is the \
             number of second boundaries between two times. A null `ts` gives null.",
            "epoch_seconds(ts)",
        )
        .with_argument("ts", "A timestamp of any unit.")
        .with_sql_example(
            r#"```sql
> SELECT epoch_seconds(TIMESTAMP '1970-01-01 00:01:00.9');
+---------------------------------------------------------+
| epoch_seconds(Utf8("1970-01-01 00:01:00.9"))            |
+---------------------------------------------------------+
| 60                                                      |
+---------------------------------------------------------+
```"#,
        )
        .with_related_udf("utc_day")
        .build()
    });
    &DOC
}
