//! `session_count(ts, timeout [, restart [, max_length]])`: the number of sessions of each group.

use std::sync::{Arc, LazyLock};

use datafusion::logical_expr::{AggregateUDF, Documentation};

use super::{AggOutput, SessionAggregate};
use crate::docs;

/// The `session_count` aggregate function.
pub fn session_count_udaf() -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::new_from_impl(SessionAggregate::new(
        "session_count",
        AggOutput::Count,
        documentation,
    )))
}

fn documentation() -> &'static Documentation {
    static DOC: LazyLock<Documentation> = LazyLock::new(|| {
        docs::session_function(
            "Returns the number of sessions (Int64) of the group's events, by the same rule as `session_number`. Null timestamps are ignored; a group whose timestamps are all null has 0 sessions.",
            "session_count(ts, timeout [, restart [, max_length]])",
        )
        .with_sql_example(
            r#"```sql
> SELECT user_id, session_count(event_time, INTERVAL '30 minutes') AS sessions
  FROM events GROUP BY user_id;
```"#,
        )
        .with_related_udf("session_number")
        .build()
    });
    &DOC
}
