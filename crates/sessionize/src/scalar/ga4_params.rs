//! `ga4_params(event_params)`: a GA4 event's parameters as one JSON object, so that the JSON
//! functions, and chart specs' `event.NAME`, read them as they read other exports' event
//! properties.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::StringBuilder;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use super::ga4_param::{Params, Value};
use crate::docs;

/// The `ga4_params` function.
pub fn ga4_params_udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(Ga4Params {
        signature: Signature::any(1, Volatility::Immutable),
    }))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Ga4Params {
    signature: Signature,
}

impl ScalarUDFImpl for Ga4Params {
    fn name(&self) -> &str {
        "ga4_params"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let params = args.args[0].to_array(args.number_rows)?;
        let params = Params::of("ga4_params", &params)?;
        let mut out = StringBuilder::new();
        for row in 0..args.number_rows {
            let object: serde_json::Map<String, serde_json::Value> = params
                .row(row)
                .into_iter()
                .map(|(key, value)| {
                    let value = match value {
                        Value::Text(t) => serde_json::Value::String(t),
                        Value::Integer(i) => serde_json::Value::from(i),
                        Value::Float(f) => serde_json::Value::from(f),
                    };
                    (key.to_string(), value)
                })
                .collect();
            out.append_value(serde_json::Value::Object(object).to_string());
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
            "Returns a GA4 event's parameters (the BigQuery export's event_params list) as one \
             JSON object of key to value (text, integer or number), for the JSON functions and \
             chart specs; `--source ga4` puts it in event_properties.",
            "ga4_params(event_params)",
        )
        .with_argument("event_params", "GA4's event_params list.")
        .with_sql_example(
            r#"```sql
> SELECT ga4_params([named_struct('key', 'page_location', 'value', named_struct('string_value', '/home', 'int_value', NULL))]) AS p;
+---------------------------+
| p                         |
+---------------------------+
| {"page_location":"/home"} |
+---------------------------+
```"#,
        )
        .with_related_udf("ga4_param")
        .build()
    });
    &DOC
}
