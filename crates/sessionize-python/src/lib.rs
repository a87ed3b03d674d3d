//! The `sessionize` Python package's native module, `sessionize._sessionize`: a thin shell over the
//! `sessionize` library, as datafusion-python is over DataFusion.
//!
//! - [`functions`]: every SQL function of the project as an object datafusion-python 55 registers
//!   through `datafusion-ffi` (`__datafusion_window_udf__` and its kin).
//! - [`api`]: sessions, annotate, chart and SQL with the library's own engine, on paths or any
//!   object that exports an Arrow C stream.
//! - [`arrow`]: the Arrow C stream interface, both ways, without copying the data.
//! - [`run`]: running the engine with the GIL released, Ctrl-C, and the error classes.
//!
//! The Python API (`python/sessionize/__init__.py`) names the options and documents them; this
//! module takes them already named.

use pyo3::prelude::*;

mod api;
mod arrow;
mod functions;
mod run;

#[pymodule]
fn _sessionize(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("SessionizeError", m.py().get_type::<run::SessionizeError>())?;
    m.add("DATAFUSION_MAJOR", functions::DATAFUSION_MAJOR)?;
    m.add_class::<functions::WindowFunction>()?;
    m.add_class::<functions::AggregateFunction>()?;
    m.add_class::<functions::ScalarFunction>()?;
    m.add_class::<arrow::ArrowResult>()?;
    m.add_function(wrap_pyfunction!(functions::functions, m)?)?;
    m.add_function(wrap_pyfunction!(functions::ffi_version, m)?)?;
    m.add_function(wrap_pyfunction!(api::sessions, m)?)?;
    m.add_function(wrap_pyfunction!(api::annotate, m)?)?;
    m.add_function(wrap_pyfunction!(api::chart, m)?)?;
    m.add_function(wrap_pyfunction!(api::sql, m)?)?;
    Ok(())
}
