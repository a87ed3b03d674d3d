//! `session_number(ts, timeout [, restart [, max_length]])`: the session ordinal of each event.

use std::sync::{Arc, LazyLock};

use datafusion::logical_expr::{Documentation, WindowUDF};

use super::{SessionOutput, SessionWindow};
use crate::docs;

/// The `session_number` window function.
pub fn session_number_udwf() -> Arc<WindowUDF> {
    Arc::new(WindowUDF::new_from_impl(SessionWindow::new(
        "session_number",
        SessionOutput::Number,
        documentation,
    )))
}

fn documentation() -> &'static Documentation {
    static DOC: LazyLock<Documentation> = LazyLock::new(|| {
        docs::session_function(
            "Returns the 1-based ordinal (Int64) of the event's session within its window partition. \
             A new session starts at the partition's first event, at every event whose gap to the \
             previous event is strictly greater than `timeout`, at every timestamp where `restart` is \
             true, and at every event more than `max_length` after its session's first event. Events \
             with equal timestamps always share a session. A null `ts` gives null.",
            "session_number(ts, timeout [, restart [, max_length]]) OVER (PARTITION BY actor ORDER BY ts)",
        )
        .with_sql_example(
            r#"```sql
> SELECT user_id, event_time,
         session_number(event_time, INTERVAL '30 minutes') OVER (PARTITION BY user_id ORDER BY event_time) AS n
  FROM events;
```"#,
        )
        .with_related_udf("session_id")
        .build()
    });
    &DOC
}
