//! Running the engine from Python: on one Tokio runtime per process, with the GIL released, Ctrl-C
//! checked every 100 ms (it cancels the query), and errors raised as Python exceptions carrying the
//! command line's sentences:
//!
//! - `FileNotFoundError`: an input path that does not exist, or a glob that matches nothing;
//! - `ValueError`: bad options, SQL or data (planning, SQL, schema and execution errors);
//! - `sessionize.SessionizeError`: the rest (I/O, object stores, memory, internal errors).

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use datafusion::error::DataFusionError;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyFileNotFoundError, PyValueError};
use pyo3::prelude::*;

create_exception!(
    _sessionize,
    SessionizeError,
    PyException,
    "An error of sessionize that is neither a missing input (FileNotFoundError) nor bad options or \
     data (ValueError): I/O, object stores, memory, or a bug."
);

/// The Python exception for `e`, with the sentence the command line would print.
pub fn to_py(e: DataFusionError) -> PyErr {
    let message = sessionize::error::user_message(&e);
    if sessionize::error::is_not_found(&e) {
        return PyFileNotFoundError::new_err(message);
    }
    match e.find_root() {
        DataFusionError::Plan(_)
        | DataFusionError::SQL(..)
        | DataFusionError::SchemaError(..)
        | DataFusionError::Configuration(_)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::Execution(_) => PyValueError::new_err(message),
        // Arrow's errors are the data's (a cast, a division by zero, an overflow), except I/O.
        DataFusionError::ArrowError(error, _)
            if !matches!(
                error.as_ref(),
                datafusion::arrow::error::ArrowError::IoError(..)
            ) =>
        {
            PyValueError::new_err(message)
        }
        _ => SessionizeError::new_err(message),
    }
}

fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sessionize")
        .build()
        .map_err(|e| SessionizeError::new_err(format!("cannot start the runtime: {e}")))?;
    Ok(RUNTIME.get_or_init(|| runtime))
}

/// Runs `work` to completion with the GIL released; a signal (Ctrl-C) raises its exception
/// (`KeyboardInterrupt`) and drops `work`, which cancels the query.
pub fn run<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    T: Send,
    F: Future<Output = datafusion::error::Result<T>> + Send,
{
    let runtime = runtime()?;
    // A panic inside the engine (a bug, or one of a dependency on malformed input) is an
    // exception, not a `PanicException` that `except Exception` would miss.
    let work = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(work));
    let work = async {
        match work.await {
            Ok(result) => result,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                Err(DataFusionError::Internal(format!(
                    "sessionize stopped on an internal error ({what}); the input may be malformed"
                )))
            }
        }
    };
    py.detach(|| {
        runtime.block_on(async {
            let mut work = std::pin::pin!(work);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    result = &mut work => return result.map_err(to_py),
                    _ = tick.tick() => Python::attach(|py| py.check_signals())?,
                }
            }
        })
    })
}
