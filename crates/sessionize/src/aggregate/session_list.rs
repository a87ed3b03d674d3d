//! `session_list(ts, timeout [, restart [, max_length]])`: one struct per session of each group.

use std::sync::{Arc, LazyLock};

use datafusion::logical_expr::{AggregateUDF, Documentation};

use super::{AggOutput, SessionAggregate};
use crate::docs;

/// The `session_list` aggregate function.
pub fn session_list_udaf() -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::new_from_impl(SessionAggregate::new(
        "session_list",
        AggOutput::List,
        documentation,
    )))
}

fn documentation() -> &'static Documentation {
    static DOC: LazyLock<Documentation> = LazyLock::new(|| {
        docs::session_function(
            "Returns the group's sessions in time order as a list of structs {session_number, session_id, started_at, ended_at, event_count}; `started_at` and `ended_at` have the type of `ts` and `session_id` is the epoch milliseconds of the first event. With unnest it gives one row per session without a window sort.",
            "session_list(ts, timeout [, restart [, max_length]])",
        )
        .with_sql_example(
            r#"```sql
> SELECT user_id, unnest(session_list(event_time, INTERVAL '30 minutes')) AS s
  FROM events GROUP BY user_id;
```"#,
        )
        .with_related_udf("session_number")
        .build()
    });
    &DOC
}
