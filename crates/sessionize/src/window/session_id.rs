//! `session_id(ts, timeout [, restart [, max_length]])`: Amplitude's session id of each event.

use std::sync::{Arc, LazyLock};

use datafusion::logical_expr::{Documentation, WindowUDF};

use super::{SessionOutput, SessionWindow};
use crate::docs;

/// The `session_id` window function.
pub fn session_id_udwf() -> Arc<WindowUDF> {
    Arc::new(WindowUDF::new_from_impl(SessionWindow::new(
        "session_id",
        SessionOutput::Id,
        documentation,
    )))
}

fn documentation() -> &'static Documentation {
    static DOC: LazyLock<Documentation> = LazyLock::new(|| {
        docs::session_function(
            "Returns the id (Int64) of the event's session, in Amplitude's convention: the epoch \
             milliseconds of the session's first event. Sessions follow the same rule as \
             `session_number`. A null `ts` gives null.",
            "session_id(ts, timeout [, restart [, max_length]]) OVER (PARTITION BY actor ORDER BY ts)",
        )
        .with_sql_example(
            r#"```sql
> SELECT user_id, event_time,
         session_id(event_time, INTERVAL '30 minutes', event_type = 'app_open')
           OVER (PARTITION BY user_id ORDER BY event_time) AS sid
  FROM events;
```"#,
        )
        .with_related_udf("session_number")
        .build()
    });
    &DOC
}
