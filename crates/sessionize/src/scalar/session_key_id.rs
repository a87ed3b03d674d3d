//! `session_key_id(key)`: a text session key (PostHog's `$session_id`, Snowplow's
//! `domain_sessionid`, both UUIDs) as the non-negative Int64 that SDK sessions are keyed by.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{AsArray, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::docs;

/// FNV-1a (64 bits) of the key's UTF-8 bytes, its top bit cleared: the same number for the same
/// text on every machine and version (unlike Rust's or DataFusion's hashers), never -1 (the
/// "out of session" id). Two keys of one actor share a number with probability 2^-63.
pub fn session_key_id(key: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash >> 1) as i64
}

/// The `session_key_id` function.
pub fn session_key_id_udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(SessionKeyId {
        signature: Signature::any(1, Volatility::Immutable),
    }))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SessionKeyId {
    signature: Signature,
}

impl ScalarUDFImpl for SessionKeyId {
    fn name(&self) -> &str {
        "session_key_id"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let keys = cast(&args.args[0].to_array(args.number_rows)?, &DataType::Utf8)?;
        let keys = keys.as_string::<i32>();
        let ids: Int64Array = keys
            .iter()
            .map(|k| k.filter(|k| !k.is_empty()).map(session_key_id))
            .collect();
        Ok(match &args.args[0] {
            ColumnarValue::Scalar(_) => {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&ids, 0)?)
            }
            ColumnarValue::Array(_) => ColumnarValue::Array(Arc::new(ids)),
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
            "Returns a non-negative Int64 for a text session key (FNV-1a of its UTF-8 bytes, top \
             bit cleared; null for null or empty text), the same on every machine, so that text \
             session ids (PostHog's $session_id, Snowplow's domain_sessionid) serve as SDK \
             session ids, which are integers.",
            "session_key_id(key)",
        )
        .with_argument("key", "The text session key.")
        .with_sql_example(
            r#"```sql
> SELECT session_key_id('a') AS id;
+---------------------+
| id                  |
+---------------------+
| 6319093600277820998 |
+---------------------+
```"#,
        )
        .build()
    });
    &DOC
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_stable_and_non_negative() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c; shifted right by one.
        assert_eq!(
            super::session_key_id("a"),
            (0xaf63_dc4c_8601_ec8c_u64 >> 1) as i64
        );
        assert!(super::session_key_id("0190c1d2-aaaa-7bbb-8ccc-000000000000") >= 0);
    }
}
