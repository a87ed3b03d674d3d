//! `utc_day(ts)`: the day (DATE) of a timestamp's raw value, by integer arithmetic.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, Date32Array};
use datafusion::arrow::datatypes::{DataType, Date32Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use super::{floor_div, one_timestamp};
use crate::docs;
use crate::rules::units_per_second;

/// The `utc_day` function.
pub fn utc_day_udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(UtcDay {
        signature: Signature::user_defined(Volatility::Immutable),
    }))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct UtcDay {
    signature: Signature,
}

impl ScalarUDFImpl for UtcDay {
    fn name(&self) -> &str {
        "utc_day"
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
        Ok(DataType::Date32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return exec_err!("utc_day takes one argument");
        };
        let unit = one_timestamp(self.name(), &[arg.data_type()])?;
        let per_day = units_per_second(unit) * 86_400;
        let days = |array| -> Result<Date32Array> {
            let days = floor_div(&array, per_day)?;
            // Days since 1970 of any i64 timestamp fit in an i32 unless the unit is seconds and the
            // year is past ±5.8 million; those become null rather than wrap.
            Ok(days.unary_opt::<_, Date32Type>(|d| i32::try_from(d).ok()))
        };
        Ok(match arg {
            ColumnarValue::Array(array) => ColumnarValue::Array(Arc::new(days(array.clone())?)),
            ColumnarValue::Scalar(scalar) => {
                let day = days(scalar.to_array()?)?;
                ColumnarValue::Scalar(ScalarValue::Date32(day.is_valid(0).then(|| day.value(0))))
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
            "Returns the day (DATE) of a timestamp's stored value: for a timestamp in UTC, or one \
             without a time zone, the same day as `CAST(ts AS DATE)`, computed by integer division \
             instead of a calendar conversion per value. Days before 1970 are floored (one \
             microsecond before 1970-01-01 is 1969-12-31). For the day in another time zone use \
             `CAST(to_local_time(ts AT TIME ZONE 'Europe/Berlin') AS DATE)`. A null `ts` gives null.",
            "utc_day(ts)",
        )
        .with_argument("ts", "A timestamp of any unit.")
        .with_sql_example(
            r#"```sql
> SELECT utc_day(TIMESTAMP '2024-03-01 23:59:59');
+-----------------------------------------------+
| utc_day(Utf8("2024-03-01 23:59:59"))          |
+-----------------------------------------------+
| 2024-03-01                                    |
+-----------------------------------------------+
```"#,
        )
        .with_related_udf("epoch_seconds")
        .build()
    });
    &DOC
}
