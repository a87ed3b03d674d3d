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
pub mod annotate;
mod args;
pub mod chart;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod delta;
mod docs;
pub mod error;
pub mod formula;
pub mod identity;
pub mod incremental;
pub mod job;
pub mod output;
pub mod parquet_writer;
pub mod plot;
pub mod rules;
pub mod scalar;
pub mod sessions;
pub mod sources;
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
    for udf in scalar::all_udfs() {
        registry.register_udf(udf)?;
    }
    Ok(())
}

/// A new [`SessionContext`] with every function registered.
pub fn context() -> Result<SessionContext> {
    context_with_config(datafusion::prelude::SessionConfig::new())
}

/// `config` with what every context of the project sets: DataFusion 55's leaf-expression pushdown
/// off. That rule moves `json_get_str` (which datafusion-functions-json marks as cheap to move)
/// towards the scans: through a join it parses every event's properties where a chart needs one
/// event's per session, and through the union of several JSON files (a Mixpanel or PostHog export
/// of two files) it failed with "Schema contains qualified field name ... which would be
/// ambiguous".
pub fn session_config(
    mut config: datafusion::prelude::SessionConfig,
) -> datafusion::prelude::SessionConfig {
    config
        .options_mut()
        .optimizer
        .enable_leaf_expression_pushdown = false;
    config
}

/// A new [`SessionContext`] with `config` and every function registered.
pub fn context_with_config(config: datafusion::prelude::SessionConfig) -> Result<SessionContext> {
    let mut ctx = SessionContext::new_with_config(session_config(config));
    register_all(&mut ctx)?;
    Ok(ctx)
}

/// A context with every function registered, on the given runtime (memory pool, disk manager).
pub fn context_with_runtime(
    config: datafusion::prelude::SessionConfig,
    runtime: std::sync::Arc<datafusion::execution::runtime_env::RuntimeEnv>,
) -> Result<SessionContext> {
    let mut ctx = SessionContext::new_with_config_rt(session_config(config), runtime);
    register_all(&mut ctx)?;
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every function is registered, documented, and listed in the README with an example.
    #[test]
    fn every_function_is_documented_and_in_the_readme() {
        let readme = include_str!("../../../README.md");
        let mut ctx = SessionContext::new();
        register_all(&mut ctx).unwrap();
        let state = ctx.state();
        let mut names = vec![];
        for udwf in window::all_udwfs() {
            let registered = state
                .window_functions()
                .get(udwf.name())
                .expect("registered");
            let doc = registered.documentation().expect("documented");
            assert!(doc.sql_example.is_some(), "{} has an example", udwf.name());
            names.push(udwf.name().to_string());
        }
        for udaf in aggregate::all_udafs() {
            let registered = state
                .aggregate_functions()
                .get(udaf.name())
                .expect("registered");
            let doc = registered.documentation().expect("documented");
            assert!(doc.sql_example.is_some(), "{} has an example", udaf.name());
            names.push(udaf.name().to_string());
        }
        for udf in scalar::all_udfs() {
            let registered = state
                .scalar_functions()
                .get(udf.name())
                .expect("registered");
            let doc = registered.documentation().expect("documented");
            assert!(doc.sql_example.is_some(), "{} has an example", udf.name());
            names.push(udf.name().to_string());
        }
        assert_eq!(names.len(), 17);
        assert!(state.scalar_functions().contains_key("json_get_str"));
        for name in names {
            assert!(readme.contains(&format!("`{name}(")), "README lists {name}");
        }
    }

    /// The window functions run in DataFusion's bounded (streaming) window operator, and the
    /// aggregates group by hash without sorting the input.
    #[tokio::test]
    async fn window_is_bounded_and_aggregate_does_not_sort() {
        let ctx = context().unwrap();
        ctx.sql(
            "CREATE TABLE ev AS SELECT * FROM (VALUES ('a', 3), ('b', 1), ('a', 2)) AS v(actor, t)",
        )
        .await
        .unwrap();
        let plan = |sql: &'static str| {
            let ctx = ctx.clone();
            async move {
                let df = ctx.sql(sql).await.unwrap();
                let physical = df.create_physical_plan().await.unwrap();
                datafusion::physical_plan::displayable(physical.as_ref())
                    .indent(true)
                    .to_string()
            }
        };
        let window = plan(
            "SELECT session_number(to_timestamp_seconds(t), INTERVAL '30 minutes') \
             OVER (PARTITION BY actor ORDER BY to_timestamp_seconds(t)) FROM ev",
        )
        .await;
        assert!(window.contains("BoundedWindowAggExec"), "{window}");
        let aggregate = plan(
            "SELECT actor, session_count(to_timestamp_seconds(t), INTERVAL '30 minutes') FROM ev GROUP BY actor",
        )
        .await;
        assert!(aggregate.contains("AggregateExec"), "{aggregate}");
        assert!(!aggregate.contains("SortExec"), "{aggregate}");
    }
}
