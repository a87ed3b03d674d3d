//! `event_time(value [, unit [, source]])`: an event's time in any of the encodings exports use, as
//! one instant type, `Timestamp(µs, "UTC")`.
//!
//! Exports store times in many ways: Parquet timestamps of any unit with or without a zone
//! (Amplitude, Segment, Snowplow), integer epochs (GA4's BigQuery export: `event_timestamp` in
//! microseconds; Mixpanel's `time`: seconds), epoch text in CSV, and ISO-8601 text with or without
//! an offset (Segment's and PostHog's JSON). The loader passes every time column through this
//! conversion (see [`crate::tables`]), so every command sees one type; in SQL it is there for
//! anything the loader did not convert.

use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, TimestampMicrosecondArray, new_null_array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::compute::kernels::cast_utils::string_to_datetime;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit};
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::docs;

/// The unit of epoch numbers (integers, floats, or digits in text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EpochUnit {
    /// Each value's own magnitude tells its unit: below 10^11 seconds, below 10^14 milliseconds,
    /// below 10^17 microseconds, else nanoseconds. Every unit is told apart this way for times
    /// from 1973-03-03 to the year 5138.
    #[default]
    Auto,
    Seconds,
    Milliseconds,
    Microseconds,
    Nanoseconds,
}

impl FromStr for EpochUnit {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "s" | "sec" | "second" | "seconds" => Ok(Self::Seconds),
            "ms" | "millisecond" | "milliseconds" => Ok(Self::Milliseconds),
            "us" | "µs" | "microsecond" | "microseconds" => Ok(Self::Microseconds),
            "ns" | "nanosecond" | "nanoseconds" => Ok(Self::Nanoseconds),
            other => Err(format!(
                "unknown time unit '{other}': expected auto, s, ms, us or ns"
            )),
        }
    }
}

impl EpochUnit {
    /// The name [`EpochUnit::from_str`] reads.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Seconds => "s",
            Self::Milliseconds => "ms",
            Self::Microseconds => "us",
            Self::Nanoseconds => "ns",
        }
    }

    /// Microseconds per unit of `value` (an epoch number in this unit), as a float factor.
    fn micros_per_unit(self, value: f64) -> f64 {
        let unit = match self {
            Self::Auto => {
                let magnitude = value.abs();
                if magnitude < 1e11 {
                    Self::Seconds
                } else if magnitude < 1e14 {
                    Self::Milliseconds
                } else if magnitude < 1e17 {
                    Self::Microseconds
                } else {
                    Self::Nanoseconds
                }
            }
            unit => unit,
        };
        match unit {
            Self::Seconds => 1e6,
            Self::Milliseconds => 1e3,
            Self::Microseconds | Self::Auto => 1.0,
            Self::Nanoseconds => 1e-3,
        }
    }

    /// An integer epoch in this unit as epoch microseconds (floored), or `None` past the range of
    /// microsecond timestamps.
    fn micros_of_integer(self, value: i64) -> Option<i64> {
        let factor = self.micros_per_unit(value as f64);
        if factor >= 1.0 {
            value.checked_mul(factor as i64)
        } else {
            Some(value.div_euclid((1.0 / factor).round() as i64))
        }
    }

    fn micros_of_float(self, value: f64) -> Option<i64> {
        let micros = (value * self.micros_per_unit(value)).floor();
        (micros.is_finite() && micros.abs() < 9.2e18).then_some(micros as i64)
    }
}

/// The type every time becomes.
pub fn event_time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// `array` as `Timestamp(µs, "UTC")`: timestamps of any unit (without a zone: taken as UTC),
/// dates (their midnight, UTC), integer and float epochs in `unit`, and text, either ISO-8601 /
/// RFC 3339 with or without an offset (`2026-01-01T10:00:00+02:00`, `2026-01-01 10:00:00.123`,
/// taken as UTC without one) or epoch digits in `unit`. Empty text and nulls are null.
///
/// Errors: text that is none of these, as the sentence `unparsable(row, text)` gives; a type
/// that holds no time.
pub fn to_event_time(
    array: &ArrayRef,
    unit: EpochUnit,
    unparsable: &dyn Fn(usize, &str) -> String,
) -> Result<ArrayRef> {
    let target = event_time_type();
    Ok(match array.data_type() {
        DataType::Null => new_null_array(&target, array.len()),
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => {
            let utc = match array.data_type() {
                DataType::Timestamp(u, Some(_)) => {
                    cast(array, &DataType::Timestamp(*u, Some("UTC".into())))?
                }
                _ => Arc::clone(array),
            };
            // A zone-less timestamp (and a date) keeps its wall-clock value, read as UTC.
            cast(
                &cast(&utc, &DataType::Timestamp(TimeUnit::Microsecond, None))?,
                &target,
            )?
        }
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => {
            let values = cast(array, &DataType::Int64)?;
            let values = values.as_primitive::<Int64Type>();
            let micros = values
                .iter()
                .map(|v| match v {
                    None => Ok(None),
                    Some(v) => unit
                        .micros_of_integer(v)
                        .map(Some)
                        .ok_or_else(|| out_of_range(&v.to_string(), unit)),
                })
                .collect::<Result<TimestampMicrosecondArray>>()?;
            Arc::new(micros.with_timezone("UTC"))
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            let values = cast(array, &DataType::Float64)?;
            let values = values.as_primitive::<Float64Type>();
            let micros = values
                .iter()
                .map(|v| match v {
                    // NaN and infinities are no time: null, as an empty field.
                    Some(v) if v.is_finite() => unit
                        .micros_of_float(v)
                        .map(Some)
                        .ok_or_else(|| out_of_range(&v.to_string(), unit)),
                    _ => Ok(None),
                })
                .collect::<Result<TimestampMicrosecondArray>>()?;
            Arc::new(micros.with_timezone("UTC"))
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..) => {
            let text = cast(array, &DataType::Utf8)?;
            let text = text.as_string::<i32>();
            let mut micros = Vec::with_capacity(text.len());
            for i in 0..text.len() {
                let raw = if text.is_null(i) {
                    ""
                } else {
                    text.value(i).trim()
                };
                micros.push(if raw.is_empty() {
                    None
                } else {
                    Some(
                        parse_text(raw, unit)
                            .ok_or_else(|| DataFusionError::Execution(unparsable(i, raw)))?,
                    )
                });
            }
            Arc::new(TimestampMicrosecondArray::from(micros).with_timezone("UTC"))
        }
        other => {
            return plan_err!(
                "a time must be a timestamp, a date, an epoch number or text, but found {other}"
            );
        }
    })
}

/// The error for an epoch number past the years a microsecond timestamp holds.
fn out_of_range(value: &str, unit: EpochUnit) -> DataFusionError {
    DataFusionError::Execution(format!(
        "event_time: the time {value} read as epoch {} is past the years a timestamp holds \
         (about 290,000 either side of 1970): check the epoch unit (--time-unit, or \
         event_time's second argument)",
        match unit {
            EpochUnit::Auto => "numbers of the unit their magnitude tells",
            EpochUnit::Seconds => "seconds",
            EpochUnit::Milliseconds => "milliseconds",
            EpochUnit::Microseconds => "microseconds",
            EpochUnit::Nanoseconds => "nanoseconds",
        }
    ))
}

/// Epoch microseconds of ISO-8601 text or of epoch digits.
fn parse_text(raw: &str, unit: EpochUnit) -> Option<i64> {
    if raw.bytes().all(|b| b.is_ascii_digit() || b == b'-')
        && let Ok(value) = raw.parse::<i64>()
    {
        return unit.micros_of_integer(value);
    }
    if let Some(micros) = iso_micros(raw) {
        return Some(micros);
    }
    // ISO-8601 allows a time without seconds (`2026-01-01T10:00Z`, `2026-01-01 10:00`).
    if let Some(with_seconds) = add_seconds(raw)
        && let Some(micros) = iso_micros(&with_seconds)
    {
        return Some(micros);
    }
    let value: f64 = raw.parse().ok()?;
    unit.micros_of_float(value)
}

/// Epoch microseconds of ISO-8601 / RFC 3339 text (UTC without an offset), by Arrow's parser into
/// a date and time rather than into nanoseconds, so that times past 2262-04-11 (the end of i64
/// nanoseconds; `9999-12-31` is a common far-future sentinel) read too.
fn iso_micros(raw: &str) -> Option<i64> {
    // Parsed once: this runs on every text time of an input.
    static UTC: std::sync::LazyLock<Option<datafusion::arrow::array::timezone::Tz>> =
        std::sync::LazyLock::new(|| "+00:00".parse().ok());
    string_to_datetime(UTC.as_ref()?, raw)
        .ok()
        .map(|t| t.timestamp_micros())
}

/// `raw` with `:00` seconds after its `HH:MM`, when it is a day and a time without seconds.
fn add_seconds(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let time = 11; // after `YYYY-MM-DD` and `T` or a space
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|b| b.iter().all(u8::is_ascii_digit))
    };
    let shaped = bytes.len() >= time + 5
        && matches!(bytes[10], b'T' | b' ')
        && digits(0..4)
        && digits(time..time + 2)
        && bytes[time + 2] == b':'
        && digits(time + 3..time + 5)
        && bytes.get(time + 5) != Some(&b':');
    shaped.then(|| format!("{}:00{}", &raw[..time + 5], &raw[time + 5..]))
}

/// The `event_time` function.
pub fn event_time_udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(EventTime {
        signature: Signature::user_defined(Volatility::Immutable),
    }))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct EventTime {
    signature: Signature,
}

/// A constant text argument, or `None` when absent.
fn constant_text(args: &[ColumnarValue], i: usize, what: &str) -> Result<Option<String>> {
    let Some(arg) = args.get(i) else {
        return Ok(None);
    };
    let Ok(value) = super::constant_argument(arg) else {
        return exec_err!("event_time: the {what} must be a constant, such as 'ms'");
    };
    match value {
        None => Ok(None),
        Some(scalar) if scalar.is_null() => Ok(None),
        Some(scalar) => match scalar.cast_to(&DataType::Utf8)? {
            ScalarValue::Utf8(text) => Ok(text),
            _ => Ok(None),
        },
    }
}

impl ScalarUDFImpl for EventTime {
    fn name(&self) -> &str {
        "event_time"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.is_empty() || arg_types.len() > 3 {
            return plan_err!(
                "event_time takes a time and optionally its epoch unit and a name for errors, \
                 such as event_time(event_timestamp, 'us')"
            );
        }
        Ok(arg_types
            .iter()
            .enumerate()
            .map(|(i, t)| if i == 0 { t.clone() } else { DataType::Utf8 })
            .collect())
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(event_time_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let unit = match constant_text(&args.args, 1, "unit")? {
            Some(text) => text
                .parse::<EpochUnit>()
                .map_err(|e| DataFusionError::Execution(format!("event_time: {e}")))?,
            None => EpochUnit::Auto,
        };
        let source = constant_text(&args.args, 2, "name")?;
        let unparsable = |_: usize, raw: &str| match &source {
            Some(name) => format!(
                "'{name}': cannot parse the time '{raw}' (expected for example \
                 2026-01-01T00:00:00Z, 2026-01-01 00:00:00.123456 (UTC) or epoch seconds)"
            ),
            None => format!(
                "event_time: cannot parse the time '{raw}' (expected for example \
                 2026-01-01T00:00:00Z, 2026-01-01 00:00:00.123456 (UTC) or epoch seconds)"
            ),
        };
        Ok(match &args.args[0] {
            ColumnarValue::Array(array) => {
                ColumnarValue::Array(to_event_time(array, unit, &unparsable)?)
            }
            ColumnarValue::Scalar(scalar) => {
                let array = to_event_time(&scalar.to_array()?, unit, &unparsable)?;
                ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
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
            "Returns an event's time as Timestamp(µs, \"UTC\") from any encoding exports use: a \
             timestamp of any unit (without a time zone: read as UTC), a date, an integer or float \
             epoch (GA4's event_timestamp in microseconds, Mixpanel's time in seconds), or text \
             (ISO-8601 / RFC 3339 with or without an offset, or epoch digits). Empty text is null; \
             other text is an error naming it. The loader of the sessionize commands applies it to \
             the time column of every input.",
            "event_time(value [, unit [, name]])",
        )
        .with_argument("value", "The time, in any of the encodings above.")
        .with_argument(
            "unit",
            "The unit of epoch numbers: 's', 'ms', 'us', 'ns', or 'auto' (the default): each \
             value's magnitude tells its unit (below 1e11 seconds, below 1e14 milliseconds, below \
             1e17 microseconds, else nanoseconds), right for times from 1973-03-03 to the year 5138.",
        )
        .with_argument(
            "name",
            "A name for the input (such as its file), used in the error on unparsable text.",
        )
        .with_sql_example(
            r#"```sql
> SELECT event_time(1767225600123456, 'us') AS a, event_time('2026-01-01T02:00:00+02:00') AS b;
+-----------------------------+----------------------+
| a                           | b                    |
+-----------------------------+----------------------+
| 2026-01-01T00:00:00.123456Z | 2026-01-01T00:00:00Z |
+-----------------------------+----------------------+
```"#,
        )
        .build()
    });
    &DOC
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, Int64Array, StringArray};

    fn micros(array: ArrayRef, unit: EpochUnit) -> Vec<Option<i64>> {
        let out = to_event_time(&array, unit, &|_, raw| format!("bad {raw}")).unwrap();
        assert_eq!(out.data_type(), &event_time_type());
        out.as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>()
            .iter()
            .collect()
    }

    #[test]
    fn epochs_of_every_unit_are_one_instant() {
        // 2026-01-01T00:00:00.123456Z in s (floored), ms, µs and ns.
        let s = 1_767_225_600_i64;
        let us = s * 1_000_000 + 123_456;
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(s),
            Some(us / 1000),
            Some(us),
            Some(us * 1000 + 789),
            None,
        ]));
        assert_eq!(
            micros(Arc::clone(&ints), EpochUnit::Auto),
            vec![
                Some(s * 1_000_000),
                Some(s * 1_000_000 + 123_000),
                Some(us),
                Some(us),
                None
            ]
        );
        assert_eq!(
            micros(
                Arc::new(Int64Array::from(vec![us])),
                EpochUnit::Microseconds
            ),
            vec![Some(us)]
        );
        // Forced units override the magnitude: 1000 ms is one second.
        assert_eq!(
            micros(
                Arc::new(Int64Array::from(vec![1000])),
                EpochUnit::Milliseconds
            ),
            vec![Some(1_000_000)]
        );
        assert_eq!(
            micros(Arc::new(Float64Array::from(vec![1.5])), EpochUnit::Seconds),
            vec![Some(1_500_000)]
        );
    }

    #[test]
    fn text_with_and_without_offsets() {
        let text: ArrayRef = Arc::new(StringArray::from(vec![
            Some("2026-01-01T02:00:00+02:00"),
            Some("2026-01-01 00:00:00.5"),
            Some("2026-01-01T00:00:00Z"),
            Some("1767225600"),
            Some(" "),
            None,
            Some("2026-01-01T02:00+02:00"),
            Some("2026-01-01 00:00"),
        ]));
        let midnight = 1_767_225_600_000_000_i64;
        assert_eq!(
            micros(text, EpochUnit::Auto),
            vec![
                Some(midnight),
                Some(midnight + 500_000),
                Some(midnight),
                Some(midnight),
                None,
                None,
                Some(midnight),
                Some(midnight)
            ]
        );
        let bad: ArrayRef = Arc::new(StringArray::from(vec!["2026-01-01", "yesterday"]));
        let err = to_event_time(&bad, EpochUnit::Auto, &|row, raw| {
            format!("row {row}: {raw}")
        })
        .unwrap_err();
        assert!(err.to_string().contains("row 1: yesterday"), "{err}");
    }

    #[test]
    fn zone_less_timestamps_are_utc() {
        let naive: ArrayRef = Arc::new(datafusion::arrow::array::TimestampMillisecondArray::from(
            vec![Some(1_000), None],
        ));
        assert_eq!(micros(naive, EpochUnit::Auto), vec![Some(1_000_000), None]);
    }
}
