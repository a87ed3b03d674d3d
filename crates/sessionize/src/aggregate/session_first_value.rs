//! `session_first_value(ts, timeout, restart, event_type, value)`: per session, the value of
//! its first event.

use std::sync::{Arc, LazyLock};

use datafusion::logical_expr::{AggregateUDF, Documentation};

use super::session_value::SessionValue;
use crate::docs;

/// The `session_first_value` aggregate function.
pub fn session_first_value_udaf() -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::new_from_impl(SessionValue::new(
        "session_first_value",
        false,
        documentation,
    )))
}

fn documentation() -> &'static Documentation {
    static DOC: LazyLock<Documentation> = LazyLock::new(|| {
        docs::session_value_function(
            "Returns the group's sessions as `session_list(ts, timeout, restart)` does (List of \
             Struct {session_number, session_id, started_at, ended_at, event_count}) with a sixth \
             field, `value` (Utf8View): the value of the session's first event. Events at the same \
             first time are ordered by event type, then by value, each compared as text with nulls \
             last, so the result never depends on row order (for text arguments, what \
             `first_value(value ORDER BY ts, event_type, value)` gives over each session's \
             events). Rows with a null ts are ignored.",
            "session_first_value(ts, timeout, restart, event_type, value)",
        )
        .with_sql_example(
            r#"```sql
> SELECT user_id, s['started_at'], s['value'] AS landing_page
  FROM (SELECT user_id,
               unnest(session_first_value(event_time, INTERVAL '30 minutes', false, event_type,
                                           json_as_text(event_properties, 'page'))) AS s
        FROM events GROUP BY user_id);
```"#,
        )
        .with_related_udf("session_last_value")
        .with_related_udf("session_list")
        .build()
    });
    &DOC
}
