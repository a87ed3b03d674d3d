//! `session_seconds(ts, timeout [, restart [, max_length]])`: the total time in sessions of each group.

use std::sync::{Arc, LazyLock};

use datafusion::logical_expr::{AggregateUDF, Documentation};

use super::{AggOutput, SessionAggregate};
use crate::docs;

/// The `session_seconds` aggregate function.
pub fn session_seconds_udaf() -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::new_from_impl(SessionAggregate::new(
        "session_seconds",
        AggOutput::Seconds,
        documentation,
    )))
}

fn documentation() -> &'static Documentation {
    static DOC: LazyLock<Documentation> = LazyLock::new(|| {
        docs::session_function(
            "Returns the total time in sessions (Float64 seconds) of the group's events: the sum over sessions of last minus first event time, so a one-event session adds 0. Null timestamps are ignored; a group without timestamps gives 0.",
            "session_seconds(ts, timeout [, restart [, max_length]])",
        )
        .with_sql_example(
            r#"```sql
> SELECT user_id, session_seconds(event_time, INTERVAL '30 minutes') / 60 AS minutes
  FROM events GROUP BY user_id;
```"#,
        )
        .with_related_udf("session_number")
        .build()
    });
    &DOC
}
