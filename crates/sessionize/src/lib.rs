//! sessionize: sessionization for Apache DataFusion.
//!
//! Turns product-analytics events into sessions at read time with SQL functions:
//!
//! * window functions [`session_number`](window::session_number_udwf),
//!   [`session_id`](window::session_id_udwf) and
//!   [`conditional_true_event`](window::conditional_true_event_udwf);
//! * aggregate functions [`session_count`](aggregate::session_count_udaf),
//!   [`session_seconds`](aggregate::session_seconds_udaf) and
//!   [`session_list`](aggregate::session_list_udaf).
//!
//! ```no_run
//! # async fn example() -> datafusion::error::Result<()> {
//! use datafusion::prelude::*;
//! let mut ctx = SessionContext::new();
//! sessionize::register_all(&mut ctx)?;
//! sessionize::tables::register_events(&ctx, "events", "data/events.parquet").await?;
//! ctx.sql("SELECT user_id, session_count(event_time, INTERVAL '30 minutes') FROM events GROUP BY user_id")
//!     .await?
//!     .show()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Every function applies the rule of [`rules`], the project's one implementation of where a
//! session starts.

pub mod aggregate;
mod args;
mod docs;
pub mod output;
pub mod rules;
pub mod tables;
pub mod window;

use datafusion::common::Result;
use datafusion::execution::FunctionRegistry;
use datafusion::prelude::SessionContext;

/// Registers every function of the project, plus the JSON functions of `datafusion-functions-json`
/// (`json_get_str(event_properties, 'page')`, the `->` and `->>` operators), into `registry`.
pub fn register_all(registry: &mut dyn FunctionRegistry) -> Result<()> {
    datafusion_functions_json::register_all(registry)?;
    for udwf in window::all_udwfs() {
        registry.register_udwf(udwf)?;
    }
    for udaf in aggregate::all_udafs() {
        registry.register_udaf(udaf)?;
    }
    Ok(())
}

/// A new [`SessionContext`] with every function registered.
pub fn context() -> Result<SessionContext> {
    context_with_config(datafusion::prelude::SessionConfig::new())
}

/// A new [`SessionContext`] with `config` and every function registered.
pub fn context_with_config(config: datafusion::prelude::SessionConfig) -> Result<SessionContext> {
    let mut ctx = SessionContext::new_with_config(config);
    register_all(&mut ctx)?;
    Ok(ctx)
}
