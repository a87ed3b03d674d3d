//! Scalar functions (UDF) for the columns of the sessions table: `session_key`, `utc_day`,
//! `epoch_seconds`; `event_time`, which reads the time of an event in any encoding exports use; and
//! for the export sources, `ga4_param` / `ga4_params` (GA4's event parameters), `session_key_id`
//! (text session keys as SDK session ids) and `to_json` (properties stored as a struct).
//!
//! Each does in one pass over its input what the equivalent SQL does in several: `user_id || '-' ||
//! CAST(session_id AS VARCHAR)` builds two intermediate string columns, and the floor division
//! behind a UTC day or a whole second is five kernels (cast, divide, remainder, compare, `CASE`).
//! Profiling the `sessions` command showed these expressions at about a tenth of its CPU time.

mod epoch_seconds;
mod event_time;
mod ga4_param;
mod ga4_params;
mod session_key;
mod session_key_id;
mod to_json;
mod utc_day;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array};
use datafusion::arrow::datatypes::{DataType, Date32Type, TimeUnit};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::args;
use crate::docs::DocFn;
use crate::rules::units_per_second;

pub use epoch_seconds::epoch_seconds_udf;
pub use event_time::{EpochUnit, event_time_type, event_time_udf, to_event_time};
pub use ga4_param::ga4_param_udf;
pub use ga4_params::ga4_params_udf;
pub use session_key::session_key_udf;
pub use session_key_id::{session_key_id, session_key_id_udf};
pub use to_json::{struct_as_json, to_json_udf};
pub use utc_day::utc_day_udf;

/// All scalar functions of the project.
pub fn all_udfs() -> Vec<Arc<ScalarUDF>> {
    vec![
        session_key_udf(),
        utc_day_udf(),
        epoch_seconds_udf(),
        event_time_udf(),
        ga4_param_udf(),
        ga4_params_udf(),
        session_key_id_udf(),
        to_json_udf(),
    ]
}

/// What a flooring function returns for a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Floor {
    /// Whole seconds since 1970 (Int64).
    Seconds,
    /// Days since 1970 (Date32).
    Days,
}

/// The shared implementation of `epoch_seconds` and `utc_day`: the floor of a timestamp's stored
/// value divided by the units of a second or of a day.
#[derive(Debug, PartialEq, Eq, Hash)]
struct FloorFunction {
    name: &'static str,
    floor: Floor,
    signature: Signature,
    documentation: DocFn,
}

impl FloorFunction {
    fn udf(
        name: &'static str,
        floor: Floor,
        documentation: fn() -> &'static Documentation,
    ) -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::new_from_impl(Self {
            name,
            floor,
            signature: Signature::user_defined(Volatility::Immutable),
            documentation: DocFn(documentation),
        }))
    }

    fn floor_array(&self, array: &ArrayRef, unit: TimeUnit) -> Result<ArrayRef> {
        Ok(match self.floor {
            Floor::Seconds => Arc::new(floor_div(self.name, array, units_per_second(unit))?),
            // Days since 1970 of any i64 timestamp fit in an i32 unless the unit is seconds and
            // the year is past ±5.8 million; those become null rather than wrap.
            Floor::Days => Arc::new(
                floor_div(self.name, array, units_per_second(unit) * 86_400)?
                    .unary_opt::<_, Date32Type>(|d| i32::try_from(d).ok()),
            ),
        })
    }
}

impl ScalarUDFImpl for FloorFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        // Checked in `return_type`, whose errors reach the user as written.
        Ok(arg_types.to_vec())
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        one_timestamp(self.name, arg_types)?;
        Ok(match self.floor {
            Floor::Seconds => DataType::Int64,
            Floor::Days => DataType::Date32,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return exec_err!("{} takes one argument", self.name);
        };
        let unit = one_timestamp(self.name, &[arg.data_type()])?;
        Ok(match arg {
            ColumnarValue::Array(array) => ColumnarValue::Array(self.floor_array(array, unit)?),
            ColumnarValue::Scalar(scalar) => ColumnarValue::Scalar(ScalarValue::try_from_array(
                &self.floor_array(&scalar.to_array()?, unit)?,
                0,
            )?),
        })
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(self.documentation.get())
    }
}

/// Checks that a one-argument function got one timestamp and returns its unit (the type errors are
/// those of the session functions' `ts` argument).
fn one_timestamp(function: &str, arg_types: &[DataType]) -> Result<TimeUnit> {
    match arg_types {
        [found] => args::timestamp_unit(function, &args::coerce_timestamp(function, found)?),
        _ => plan_err!(
            "{function} takes one argument (a timestamp), but {} were given",
            arg_types.len()
        ),
    }
}

/// `floor(value / divisor)` for each raw timestamp value of `array` (nulls stay null), as Int64.
///
/// The divisors a unit can need (units per second or per day) are dispatched to constants, so the
/// compiler turns each division into a multiplication: a division by a run-time value costs
/// several times more, and it is most of these functions' work.
fn floor_div(function: &str, array: &ArrayRef, divisor: i64) -> Result<Int64Array> {
    let (values, nulls) = args::timestamp_values(function, array)?;
    let values = Int64Array::new(values, nulls);
    fn by<const D: i64>(values: &Int64Array) -> Int64Array {
        values.unary(|v| v.div_euclid(D))
    }
    const DAY: i64 = 86_400;
    Ok(match divisor {
        1 => values,
        1_000 => by::<1_000>(&values),
        1_000_000 => by::<1_000_000>(&values),
        1_000_000_000 => by::<1_000_000_000>(&values),
        DAY => by::<DAY>(&values),
        86_400_000 => by::<{ DAY * 1_000 }>(&values),
        86_400_000_000 => by::<{ DAY * 1_000_000 }>(&values),
        86_400_000_000_000 => by::<{ DAY * 1_000_000_000 }>(&values),
        d => values.unary(|v| v.div_euclid(d)),
    })
}

/// The value of an argument that must be constant (a unit, a key): a scalar, or an array whose
/// rows all hold one value. Through `datafusion-ffi` (the functions in datafusion-python), constant
/// arguments arrive as arrays of the batch's length; an array of differing values is not constant.
/// `None` for an empty array.
pub(crate) fn constant_argument(value: &ColumnarValue) -> Result<Option<ScalarValue>> {
    use datafusion::arrow::array::{Array, Scalar};
    use datafusion::arrow::compute::kernels::cmp::not_distinct;
    match value {
        ColumnarValue::Scalar(scalar) => Ok(Some(scalar.clone())),
        ColumnarValue::Array(array) if array.is_empty() => Ok(None),
        ColumnarValue::Array(array) => {
            let first = array.slice(0, 1);
            let same = not_distinct(array, &Scalar::new(first))?;
            if same.true_count() != array.len() {
                return exec_err!("not a constant");
            }
            Ok(Some(ScalarValue::try_from_array(array, 0)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;

    async fn count(sql: &str) -> i64 {
        let ctx = crate::context().unwrap();
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        batches[0].column(0).as_primitive::<Int64Type>().value(0)
    }

    /// `utc_day` and `epoch_seconds` agree with DataFusion's casts (which go through a calendar),
    /// before and after 1970, on whole and fractional seconds, in every unit, with and without a
    /// UTC zone; nulls stay null.
    #[tokio::test]
    async fn day_and_seconds_match_the_casts() {
        for unit in ["Second", "Millisecond", "Microsecond", "Nanosecond"] {
            for zone in ["None", "Some(\"UTC\")"] {
                let sql = format!(
                    "SELECT count(*) FROM (SELECT arrow_cast(to_timestamp(column1), 'Timestamp({unit}, {zone})') AS ts \
                     FROM (VALUES ('1969-12-31T23:59:59.5'), ('1969-12-31T00:00:00'), ('1969-12-30T12:00:00.000001'), \
                       ('1970-01-01T00:00:00'), ('1970-01-01T00:00:00.999999'), ('2026-01-05T10:00:01.25'), \
                       ('1900-02-28T23:59:59.9'), (NULL))) \
                     WHERE (utc_day(ts) IS DISTINCT FROM CAST(ts AS DATE)) \
                        OR (epoch_seconds(ts) IS DISTINCT FROM \
                           arrow_cast(arrow_cast(date_trunc('second', ts), 'Timestamp(Second, None)'), 'Int64'))"
                );
                assert_eq!(
                    count(&sql).await,
                    0,
                    "rows that differ in unit {unit}, zone {zone}"
                );
            }
        }
        // One microsecond before 1970 is on 1969-12-31 and in second -1 (to_unixtime gives 0).
        let sql = "SELECT count(*) FROM (SELECT TIMESTAMP '1969-12-31T23:59:59.999999' AS ts) \
                   WHERE utc_day(ts) = DATE '1969-12-31' AND epoch_seconds(ts) = -1";
        assert_eq!(count(sql).await, 1);
    }

    /// `session_key` equals the `||` expression it replaces, nulls included, on columns and
    /// constants of the types the sessions table passes.
    #[tokio::test]
    async fn session_key_matches_concatenation() {
        let sql = "SELECT count(*) FROM (VALUES ('u1', 'web', 1700000000000), ('ü-2', NULL, -5), \
                     (NULL, 'ios', 0), ('', '', 42), ('a much longer user id than twelve bytes', 'android', 7)) \
                     AS v(u, p, s) \
                   WHERE (session_key(arrow_cast(u, 'Utf8View'), s) IS DISTINCT FROM (u || '-' || CAST(s AS VARCHAR))) \
                      OR (session_key(u, p, s) IS DISTINCT FROM (u || '-' || p || '-' || CAST(s AS VARCHAR))) \
                      OR (session_key(u, arrow_cast(s % 1000, 'Int32')) IS DISTINCT FROM (u || '-' || CAST(s % 1000 AS VARCHAR))) \
                      OR (session_key('x', s) IS DISTINCT FROM ('x-' || CAST(s AS VARCHAR)))";
        assert_eq!(count(sql).await, 0);
        let sql = "SELECT count(*) FROM (SELECT session_key('a', 1, NULL) AS k, session_key('a', 2) AS j) \
                   WHERE k IS NULL AND j = 'a-2'";
        assert_eq!(count(sql).await, 1);
    }

    /// A wrong argument type is a planning error that names the function and the type.
    #[tokio::test]
    async fn wrong_types_are_named() {
        let ctx = crate::context().unwrap();
        let err = ctx.sql("SELECT utc_day(1)").await.unwrap_err().to_string();
        assert!(
            err.contains("utc_day: argument 1 (ts) must be a timestamp, but found Int64"),
            "{err}"
        );
        let err = ctx
            .sql("SELECT session_key('a', [1, 2])")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("session_key") && err.contains("List"), "{err}");
    }
}
