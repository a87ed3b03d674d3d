//! Past one machine: Apache DataFusion Ballista contexts, schedulers and executors that know every
//! function of the project (feature `cluster`).
//!
//! Ballista's stock scheduler and executor know only DataFusion's functions. The scheduler plans
//! with the session state [`scheduler_session_builder`] makes; executors decode plans with the
//! function registry [`executor_function_registry`] returns. On the client, Ballista replaces the
//! window functions of the state it is given when it upgrades it for the cluster, so
//! [`remote_context`] and [`standalone_context`] register the project's functions again afterwards.

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::registry::BallistaFunctionRegistry;
use datafusion::common::Result;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::session_state::SessionState;
use datafusion::prelude::{SessionConfig, SessionContext};

/// A session state with DataFusion's defaults and every function of the project.
pub fn session_state(config: SessionConfig) -> Result<SessionState> {
    let mut state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .build();
    crate::register_all(&mut state)?;
    Ok(state)
}

/// The scheduler's session builder (Ballista's `override_session_builder`).
pub fn scheduler_session_builder(config: SessionConfig) -> Result<SessionState> {
    session_state(config)
}

/// The executors' function registry (Ballista's `override_function_registry`): DataFusion's
/// functions and the project's.
pub fn executor_function_registry() -> Result<BallistaFunctionRegistry> {
    let state = session_state(crate::session_config(SessionConfig::new_with_ballista()))?;
    Ok(BallistaFunctionRegistry {
        scalar_functions: state.scalar_functions().clone(),
        aggregate_functions: state.aggregate_functions().clone(),
        window_functions: state.window_functions().clone(),
        ..BallistaFunctionRegistry::default()
    })
}

/// A context whose queries run on the Ballista cluster at `url` (`df://HOST:PORT`).
pub async fn remote_context(url: &str, config: SessionConfig) -> Result<SessionContext> {
    let state = session_state(crate::session_config(config).upgrade_for_ballista())?;
    let mut ctx = SessionContext::remote_with_state(url, state).await?;
    crate::register_all(&mut ctx)?;
    Ok(ctx)
}

/// A context with an in-process Ballista scheduler and executor (Ballista's standalone mode).
pub async fn standalone_context(config: SessionConfig) -> Result<SessionContext> {
    let state = session_state(crate::session_config(config).upgrade_for_ballista())?;
    let mut ctx = SessionContext::standalone_with_state(state).await?;
    crate::register_all(&mut ctx)?;
    Ok(ctx)
}
