//! `session_table(ts, timeout [, restart [, max_length]])`: `session_list` plus the end of the
//! previous session, the rows of the sessions table without a window sort.

use std::sync::{Arc, LazyLock};

use datafusion::logical_expr::{AggregateUDF, Documentation};

use super::{AggOutput, SessionAggregate};
use crate::docs;

/// The `session_table` aggregate function.
pub fn session_table_udaf() -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::new_from_impl(SessionAggregate::new(
        "session_table",
        AggOutput::Table,
        documentation,
    )))
}

fn documentation() -> &'static Documentation {
    static DOC: LazyLock<Documentation> = LazyLock::new(|| {
        docs::session_function(
            "Returns what session_list returns plus a sixth field, previous_ended_at: the last event time of the group's previous session (null for the first). The sessions table takes user_session_number and last_session_ended_at from it, so it needs no window function and no sort of the sessions.",
            "session_table(ts, timeout [, restart [, max_length]])",
        )
        .with_sql_example(
            r#"```sql
> SELECT user_id, s['session_number'], s['previous_ended_at']
  FROM (SELECT user_id, unnest(session_table(event_time, INTERVAL '30 minutes')) AS s
        FROM events GROUP BY user_id);
```"#,
        )
        .with_related_udf("session_list")
        .build()
    });
    &DOC
}
