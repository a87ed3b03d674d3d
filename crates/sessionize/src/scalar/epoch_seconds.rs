//! `epoch_seconds(ts)`: the whole seconds since 1970 of a timestamp, floored.

use std::sync::{Arc, LazyLock};

use datafusion::logical_expr::{Documentation, ScalarUDF};

use super::{Floor, FloorFunction};
use crate::docs;

/// The `epoch_seconds` function.
pub fn epoch_seconds_udf() -> Arc<ScalarUDF> {
    FloorFunction::udf("epoch_seconds", Floor::Seconds, documentation)
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
> SELECT epoch_seconds(TIMESTAMP '1970-01-01 00:01:00.9') AS seconds;
+---------+
| seconds |
+---------+
| 60      |
+---------+
```"#,
        )
        .with_related_udf("utc_day")
        .build()
    });
    &DOC
}
