//! `utc_day(ts)`: the day (DATE) of a timestamp's raw value, by integer arithmetic.

use std::sync::{Arc, LazyLock};

use datafusion::logical_expr::{Documentation, ScalarUDF};

use super::{Floor, FloorFunction};
use crate::docs;

/// The `utc_day` function.
pub fn utc_day_udf() -> Arc<ScalarUDF> {
    FloorFunction::udf("utc_day", Floor::Days, documentation)
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
> SELECT utc_day(TIMESTAMP '2024-03-01 23:59:59') AS day;
+------------+
| day        |
+------------+
| 2024-03-01 |
+------------+
```"#,
        )
        .with_related_udf("epoch_seconds")
        .build()
    });
    &DOC
}
