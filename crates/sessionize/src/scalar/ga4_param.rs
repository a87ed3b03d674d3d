//! `ga4_param(event_params, key)`: one parameter of a GA4 event, from the BigQuery export's
//! `event_params` (a list of `{key, value {string_value, int_value, float_value, double_value}}`),
//! as text. The shared reading of that list ([`Params`]) is also what `ga4_params` uses.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, GenericListArray, OffsetSizeTrait, StringArray, StringBuilder,
    StructArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::docs;

/// A parameter's value: GA4 fills one of the four fields.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Text(String),
    Integer(i64),
    Float(f64),
}

impl Value {
    pub(crate) fn text(&self) -> String {
        match self {
            Value::Text(t) => t.clone(),
            Value::Integer(i) => i.to_string(),
            // As JSON writes it (`0.0`, `1e20`), so that `ga4_param` and the `ga4_params` object
            // read through the JSON functions give one text per value.
            Value::Float(f) => {
                serde_json::Number::from_f64(*f).map_or_else(|| f.to_string(), |n| n.to_string())
            }
        }
    }
}

/// The `event_params` column of a batch, read row by row.
pub(crate) struct Params {
    offsets: Vec<usize>,
    nulls: Option<datafusion::arrow::buffer::NullBuffer>,
    keys: StringArray,
    text: Option<StringArray>,
    integers: Option<ArrayRef>,
    floats: Vec<ArrayRef>,
}

impl Params {
    /// Reads a list of `{key, value {...}}` structs; anything else is an error naming the type.
    pub(crate) fn of(function: &str, array: &ArrayRef) -> Result<Self> {
        match array.data_type() {
            DataType::List(_) => Self::of_list(function, array.as_list::<i32>()),
            DataType::LargeList(_) => Self::of_list(function, array.as_list::<i64>()),
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => {
                Self::of_json(function, &cast(array, &DataType::Utf8)?)
            }
            other => plan_err!(
                "{function}: event_params must be GA4's list of {{key, value}} structs, but found {other}"
            ),
        }
    }

    fn of_list<O: OffsetSizeTrait>(function: &str, list: &GenericListArray<O>) -> Result<Self> {
        let Some(items) = list.values().as_struct_opt() else {
            return plan_err!("{function}: event_params items must be {{key, value}} structs");
        };
        let field = |s: &StructArray, name: &str| s.column_by_name(name).cloned();
        let Some(keys) = field(items, "key") else {
            return plan_err!("{function}: event_params items have no 'key' field");
        };
        let keys = cast(&keys, &DataType::Utf8)?.as_string::<i32>().clone();
        let value = field(items, "value");
        let value = value.as_ref().and_then(|v| v.as_struct_opt());
        let text = match value.and_then(|v| field(v, "string_value")) {
            Some(t) => Some(cast(&t, &DataType::Utf8)?.as_string::<i32>().clone()),
            None => None,
        };
        let integers = match value.and_then(|v| field(v, "int_value")) {
            Some(i) => Some(cast(&i, &DataType::Int64)?),
            None => None,
        };
        let mut floats = vec![];
        for name in ["double_value", "float_value"] {
            if let Some(f) = value.and_then(|v| field(v, name)) {
                floats.push(cast(&f, &DataType::Float64)?);
            }
        }
        Ok(Self {
            offsets: list.offsets().iter().map(|o| o.as_usize()).collect(),
            nulls: list.nulls().cloned(),
            keys,
            text,
            integers,
            floats,
        })
    }

    /// The parameters as JSON text, as BigQuery's JSON export writes them (a list of `{"key",
    /// "value": {"string_value" | "int_value" | "float_value" | "double_value"}}`, INT64 values as
    /// text): the same pairs as the list of structs.
    fn of_json(function: &str, text: &ArrayRef) -> Result<Self> {
        use datafusion::arrow::array::{Float64Builder, Int64Builder};
        let text = text.as_string::<i32>();
        let (mut keys, mut strings) = (StringBuilder::new(), StringBuilder::new());
        let (mut integers, mut floats) = (Int64Builder::new(), Float64Builder::new());
        let mut offsets = vec![0];
        for row in 0..text.len() {
            let items: Vec<serde_json::Value> = if text.is_valid(row) {
                serde_json::from_str(text.value(row)).map_err(|_| {
                    datafusion::error::DataFusionError::Execution(format!(
                        "{function}: event_params must be GA4's list of {{key, value}}, but found \
                         the text {:?}",
                        text.value(row).chars().take(60).collect::<String>()
                    ))
                })?
            } else {
                vec![]
            };
            for item in &items {
                keys.append_option(item.get("key").and_then(|k| k.as_str()));
                let value = item.get("value");
                let field = |name: &str| value.and_then(|v| v.get(name)).filter(|v| !v.is_null());
                strings.append_option(field("string_value").and_then(|v| v.as_str()));
                // INT64 as a number, or as text (BigQuery writes it so in JSON).
                integers.append_option(field("int_value").and_then(|v| {
                    v.as_i64()
                        .or_else(|| v.as_str().and_then(|t| t.parse().ok()))
                }));
                floats.append_option(
                    field("double_value")
                        .or_else(|| field("float_value"))
                        .and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok())),
                );
            }
            offsets.push(offsets[row] + items.len());
        }
        Ok(Self {
            offsets,
            nulls: text.nulls().cloned(),
            keys: keys.finish(),
            text: Some(strings.finish()),
            integers: Some(std::sync::Arc::new(integers.finish())),
            floats: vec![std::sync::Arc::new(floats.finish())],
        })
    }

    /// The (key, value) pairs of row `row`; a parameter without a value is left out.
    pub(crate) fn row(&self, row: usize) -> Vec<(&str, Value)> {
        if self.nulls.as_ref().is_some_and(|n| n.is_null(row)) {
            return vec![];
        }
        let mut out = vec![];
        for i in self.offsets[row]..self.offsets[row + 1] {
            if self.keys.is_null(i) {
                continue;
            }
            if let Some(value) = self.value(i) {
                out.push((self.keys.value(i), value));
            }
        }
        out
    }

    fn value(&self, i: usize) -> Option<Value> {
        if let Some(t) = &self.text
            && t.is_valid(i)
        {
            return Some(Value::Text(t.value(i).to_string()));
        }
        if let Some(n) = &self.integers
            && n.is_valid(i)
        {
            return Some(Value::Integer(n.as_primitive::<Int64Type>().value(i)));
        }
        self.floats
            .iter()
            .find(|f| f.is_valid(i))
            .map(|f| Value::Float(f.as_primitive::<Float64Type>().value(i)))
    }
}

/// The `ga4_param` function.
pub fn ga4_param_udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(Ga4Param {
        signature: Signature::any(2, Volatility::Immutable),
    }))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Ga4Param {
    signature: Signature,
}

impl ScalarUDFImpl for Ga4Param {
    fn name(&self) -> &str {
        "ga4_param"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let key = match super::constant_argument(&args.args[1]) {
            Ok(Some(s)) => match s.cast_to(&DataType::Utf8)? {
                ScalarValue::Utf8(Some(k)) => k,
                _ => return exec_err!("ga4_param: the key must be text, such as 'page_location'"),
            },
            // No rows: nothing to look up.
            Ok(None) => String::new(),
            Err(_) => {
                return exec_err!("ga4_param: the key must be a constant, such as 'page_location'");
            }
        };
        let params = args.args[0].to_array(args.number_rows)?;
        let params = Params::of("ga4_param", &params)?;
        let mut out = StringBuilder::new();
        for row in 0..args.number_rows {
            match params.row(row).into_iter().find(|(k, _)| *k == key) {
                Some((_, value)) => out.append_value(value.text()),
                None => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(documentation())
    }
}

fn documentation() -> &'static Documentation {
    static DOC: LazyLock<Documentation> = LazyLock::new(|| {
        Documentation::builder(
            docs::DOC_SECTION_COLUMNS,
            "Returns one parameter of a GA4 event as text (string_value, else int_value, else \
             double_value or float_value), or null when the event has no such parameter. \
             event_params is the BigQuery export's list of {key, value {string_value, int_value, \
             float_value, double_value}} structs, as written to Parquet. GA4's session key is \
             user_pseudo_id with ga4_param(event_params, 'ga_session_id').",
            "ga4_param(event_params, key)",
        )
        .with_argument("event_params", "GA4's event_params list.")
        .with_argument("key", "The parameter, such as 'page_location' or 'ga_session_id'.")
        .with_sql_example(
            r#"```sql
> SELECT ga4_param([named_struct('key', 'ga_session_id', 'value', named_struct('string_value', NULL, 'int_value', 1767225600))], 'ga_session_id') AS s;
+------------+
| s          |
+------------+
| 1767225600 |
+------------+
```"#,
        )
        .with_related_udf("ga4_params")
        .build()
    });
    &DOC
}
