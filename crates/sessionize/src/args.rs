//! Arguments shared by every session function: `(ts, timeout [, restart [, max_length]])`.
//!
//! Type checks run while DataFusion plans the query (`coerce_types`), so a wrong type is a planning
//! error that names the function, the argument, the type found and the fix. The constant arguments
//! (`timeout`, `max_length`) are read when the physical evaluator is created.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use datafusion::arrow::buffer::{NullBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Literal;

use crate::rules::SessionRule;

/// Index of the `ts` argument.
pub const TS: usize = 0;
/// Index of the optional `restart` argument.
pub const RESTART: usize = 2;

const SIGNATURE: &str = "(ts, timeout [, restart [, max_length]])";

/// The types to coerce a session function's arguments to (a null `restart` becomes boolean).
///
/// Wrong types pass through unchanged here and are reported by [`check_session_args`] when the
/// planner asks for the return type: DataFusion folds errors raised during coercion into a longer
/// message of its own, while return-type errors reach the user as written.
pub fn coerce_session_args(function: &str, arg_types: &[DataType]) -> Result<Vec<DataType>> {
    Ok(check_session_args(function, arg_types).unwrap_or_else(|_| arg_types.to_vec()))
}

/// Checks the argument types of a session function and returns the types to coerce them to.
pub fn check_session_args(function: &str, arg_types: &[DataType]) -> Result<Vec<DataType>> {
    if !(2..=4).contains(&arg_types.len()) {
        return plan_err!(
            "{function} takes 2 to 4 arguments {SIGNATURE}, but {} were given",
            arg_types.len()
        );
    }
    let mut coerced = Vec::with_capacity(arg_types.len());
    coerced.push(coerce_timestamp(function, &arg_types[TS])?);
    coerced.push(coerce_interval(function, 2, "timeout", &arg_types[1])?);
    if let Some(restart) = arg_types.get(RESTART) {
        coerced.push(coerce_boolean(function, 3, "restart", restart)?);
    }
    if let Some(max_length) = arg_types.get(3) {
        coerced.push(coerce_interval(function, 4, "max_length", max_length)?);
    }
    Ok(coerced)
}

/// Checks that `found` is a timestamp; otherwise an error naming the function and the conversion
/// to use for the type found.
pub fn coerce_timestamp(function: &str, found: &DataType) -> Result<DataType> {
    match found {
        DataType::Timestamp(_, _) => Ok(found.clone()),
        DataType::Int64 | DataType::Int32 | DataType::UInt64 | DataType::UInt32 => plan_err!(
            "{function}: argument 1 (ts) must be a timestamp, but found {found}; convert epoch numbers \
             first, for example {function}(to_timestamp_millis(ts), ...) for epoch milliseconds or \
             to_timestamp_seconds(ts) for epoch seconds"
        ),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => plan_err!(
            "{function}: argument 1 (ts) must be a timestamp, but found {found}; parse text first, for \
             example {function}(to_timestamp(ts), ...)"
        ),
        DataType::Date32 | DataType::Date64 => plan_err!(
            "{function}: argument 1 (ts) must be a timestamp, but found {found}; cast dates first, for \
             example {function}(CAST(ts AS TIMESTAMP), ...)"
        ),
        other => plan_err!(
            "{function}: argument 1 (ts) must be a timestamp, but found {other}; convert it with \
             to_timestamp(...) or CAST(... AS TIMESTAMP)"
        ),
    }
}

fn coerce_interval(
    function: &str,
    position: usize,
    name: &str,
    found: &DataType,
) -> Result<DataType> {
    match found {
        DataType::Interval(_) | DataType::Duration(_) => Ok(found.clone()),
        other => plan_err!(
            "{function}: argument {position} ({name}) must be a constant INTERVAL such as \
             INTERVAL '30 minutes', but found {other}"
        ),
    }
}

fn coerce_boolean(
    function: &str,
    position: usize,
    name: &str,
    found: &DataType,
) -> Result<DataType> {
    match found {
        DataType::Boolean | DataType::Null => Ok(DataType::Boolean),
        other => plan_err!(
            "{function}: argument {position} ({name}) must be a boolean expression such as \
             event_type = 'app_open', but found {other}"
        ),
    }
}

/// Checks the argument types and returns the type of `ts`.
pub fn checked_timestamp_type(function: &str, arg_types: &[DataType]) -> Result<DataType> {
    let mut types = check_session_args(function, arg_types)?;
    Ok(types.swap_remove(TS))
}

/// The data types of a function's input fields.
pub fn input_types(fields: &[datafusion::arrow::datatypes::FieldRef]) -> Vec<DataType> {
    fields.iter().map(|f| f.data_type().clone()).collect()
}

/// The unit of the (coerced) `ts` argument.
pub fn timestamp_unit(function: &str, ts_type: &DataType) -> Result<TimeUnit> {
    match ts_type {
        DataType::Timestamp(unit, _) => Ok(*unit),
        other => plan_err!("{function}: argument 1 (ts) must be a timestamp, but found {other}"),
    }
}

/// Reads the constant `timeout` and optional `max_length` arguments into a [`SessionRule`].
pub fn session_rule(
    function: &str,
    exprs: &[Arc<dyn PhysicalExpr>],
    unit: TimeUnit,
) -> Result<SessionRule> {
    let Some(timeout) = exprs.get(1) else {
        return plan_err!("{function} takes 2 to 4 arguments {SIGNATURE}, but 1 was given");
    };
    let timeout = constant_nanos(function, 2, "timeout", timeout)?;
    let max_length = match exprs.get(3) {
        Some(expr) => Some(constant_nanos(function, 4, "max_length", expr)?),
        None => None,
    };
    Ok(SessionRule::new(timeout, max_length, unit))
}

/// The length in nanoseconds of a constant, positive, month-free interval argument.
fn constant_nanos(
    function: &str,
    position: usize,
    name: &str,
    expr: &Arc<dyn PhysicalExpr>,
) -> Result<i128> {
    let Some(value) = constant_value(expr) else {
        return plan_err!(
            "{function}: argument {position} ({name}) must be a constant INTERVAL such as \
             INTERVAL '30 minutes', but found the expression {expr}"
        );
    };
    let nanos: Option<i128> = match value.clone() {
        ScalarValue::IntervalMonthDayNano(Some(v)) => {
            if v.months != 0 {
                return plan_err!(
                    "{function}: argument {position} ({name}) must not use months (their length \
                     varies), but found {}; use days or hours instead",
                    interval_text(&value)
                );
            }
            Some(i128::from(v.days) * 86_400_000_000_000 + i128::from(v.nanoseconds))
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            Some(i128::from(v.days) * 86_400_000_000_000 + i128::from(v.milliseconds) * 1_000_000)
        }
        ScalarValue::IntervalYearMonth(Some(months)) => {
            return plan_err!(
                "{function}: argument {position} ({name}) must not use months or years (their length \
                 varies), but found {months} months; use days or hours instead"
            );
        }
        ScalarValue::DurationSecond(Some(v)) => Some(i128::from(v) * 1_000_000_000),
        ScalarValue::DurationMillisecond(Some(v)) => Some(i128::from(v) * 1_000_000),
        ScalarValue::DurationMicrosecond(Some(v)) => Some(i128::from(v) * 1_000),
        ScalarValue::DurationNanosecond(Some(v)) => Some(i128::from(v)),
        _ => None,
    };
    match nanos {
        Some(n) if n > 0 => Ok(n),
        Some(_) => plan_err!(
            "{function}: argument {position} ({name}) must be positive, but found {}",
            interval_text(&value)
        ),
        None => plan_err!(
            "{function}: argument {position} ({name}) must be a constant, non-null INTERVAL such as \
             INTERVAL '30 minutes', but found {}",
            interval_text(&value)
        ),
    }
}

/// An interval as SQL writes it (`INTERVAL '-1 hours'`), for messages; other values as they print.
fn interval_text(value: &ScalarValue) -> String {
    let parts = |months: i64, days: i64, nanos: i128| {
        let mut parts = vec![];
        if months != 0 {
            parts.push(format!("{months} months"));
        }
        if days != 0 {
            parts.push(format!("{days} days"));
        }
        if nanos != 0 || parts.is_empty() {
            let seconds = nanos as f64 / 1e9;
            parts.push(format!("{seconds} seconds"));
        }
        format!("INTERVAL '{}'", parts.join(" "))
    };
    match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) => parts(
            i64::from(v.months),
            i64::from(v.days),
            i128::from(v.nanoseconds),
        ),
        ScalarValue::IntervalDayTime(Some(v)) => {
            parts(0, i64::from(v.days), i128::from(v.milliseconds) * 1_000_000)
        }
        ScalarValue::IntervalYearMonth(Some(months)) => parts(i64::from(*months), 0, 0),
        other => other.to_string(),
    }
}

/// The raw values and validity of a timestamp array of any unit, borrowed (no allocation: the
/// window functions call this once per row).
pub fn timestamp_slice<'a>(
    function: &str,
    array: &'a ArrayRef,
) -> Result<(&'a [i64], Option<&'a NullBuffer>)> {
    use datafusion::arrow::datatypes::{
        TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
        TimestampSecondType,
    };
    let values: &[i64] = match array.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => {
            array.as_primitive::<TimestampSecondType>().values()
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            array.as_primitive::<TimestampMillisecondType>().values()
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            array.as_primitive::<TimestampMicrosecondType>().values()
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            array.as_primitive::<TimestampNanosecondType>().values()
        }
        other => return exec_err!("{function}: expected a timestamp array, got {other}"),
    };
    Ok((values, array.nulls()))
}

/// The raw values and validity of a timestamp array of any unit.
pub fn timestamp_values(
    function: &str,
    array: &ArrayRef,
) -> Result<(ScalarBuffer<i64>, Option<NullBuffer>)> {
    // Every timestamp unit is stored as i64 values, so one view serves them all.
    if !matches!(array.data_type(), DataType::Timestamp(_, _)) {
        return exec_err!(
            "{function}: expected a timestamp array, got {}",
            array.data_type()
        );
    }
    let data = array.to_data();
    let values = ScalarBuffer::new(data.buffers()[0].clone(), data.offset(), data.len());
    Ok((values, array.nulls().cloned()))
}

/// The optional `restart` argument as a boolean array, from the first `arg_count` of `values` (a
/// window evaluator's values carry the ORDER BY columns after the arguments).
pub fn restart_values<'a>(
    function: &str,
    values: &'a [ArrayRef],
    arg_count: usize,
) -> Result<Option<&'a BooleanArray>> {
    match values[..arg_count.min(values.len())].get(RESTART) {
        None => Ok(None),
        Some(array) => match array.as_boolean_opt() {
            Some(b) => Ok(Some(b)),
            None => exec_err!(
                "{function}: argument 3 (restart) must be boolean, got {}",
                array.data_type()
            ),
        },
    }
}

/// Whether row `i` of an optional restart array is true (null counts as false).
pub fn is_restart(restart: Option<&BooleanArray>, i: usize) -> bool {
    restart.is_some_and(|r| r.is_valid(i) && r.value(i))
}

/// Whether `expr` is the constant `false` (a restart condition that never restarts).
pub fn is_false_literal(expr: &Arc<dyn PhysicalExpr>) -> bool {
    constant_value(expr).is_some_and(|v| matches!(v, ScalarValue::Boolean(Some(false))))
}

/// The value of a constant argument: a literal, or an expression that reads no column.
///
/// Through `datafusion-ffi` (a function registered into datafusion-python), arguments arrive as
/// foreign expressions that wrap the literal, so a downcast alone would miss them: those are
/// evaluated on a batch of one row and no columns, which fails for any expression that reads a
/// column.
pub fn constant_value(expr: &Arc<dyn PhysicalExpr>) -> Option<ScalarValue> {
    use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
    use datafusion::arrow::datatypes::Schema;
    use datafusion::logical_expr::ColumnarValue;
    if let Some(literal) = expr.downcast_ref::<Literal>() {
        return Some(literal.value().clone());
    }
    let batch = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )
    .ok()?;
    match expr.evaluate(&batch).ok()? {
        ColumnarValue::Scalar(value) => Some(value),
        ColumnarValue::Array(array) if array.len() == 1 => {
            ScalarValue::try_from_array(&array, 0).ok()
        }
        ColumnarValue::Array(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, IntervalUnit, Schema};
    use datafusion::physical_expr::expressions::{CastExpr, Column, NotExpr};

    /// A constant that is not a `Literal` node (as the arguments that cross `datafusion-ffi`
    /// arrive) is still read as a constant; an expression over a column is not.
    #[test]
    fn constants_behind_other_nodes_are_evaluated() {
        let interval = ScalarValue::new_interval_mdn(0, 0, 60_000_000_000);
        let wrapped: Arc<dyn PhysicalExpr> = Arc::new(CastExpr::new(
            Arc::new(Literal::new(interval.clone())),
            DataType::Interval(IntervalUnit::MonthDayNano),
            None,
        ));
        assert_eq!(constant_value(&wrapped), Some(interval));
        let rule = session_rule(
            "session_number",
            &[wrapped.clone(), wrapped],
            TimeUnit::Microsecond,
        );
        assert!(rule.is_ok());
        let not_true: Arc<dyn PhysicalExpr> = Arc::new(NotExpr::new(Arc::new(Literal::new(
            ScalarValue::Boolean(Some(true)),
        ))));
        assert!(is_false_literal(&not_true));
        let schema = Schema::new(vec![Field::new("t", DataType::Boolean, true)]);
        let column: Arc<dyn PhysicalExpr> =
            Arc::new(Column::new_with_schema("t", &schema).unwrap());
        assert_eq!(constant_value(&column), None);
        let error = session_rule(
            "session_number",
            &[column.clone(), column],
            TimeUnit::Microsecond,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("must be a constant INTERVAL"), "{error}");
    }
}
