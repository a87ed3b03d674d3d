//! Every SQL function of the project as an object that datafusion-python 55 registers through
//! `datafusion-ffi`: `datafusion.udwf(f)`, `datafusion.udaf(f)` and `datafusion.udf(f)` call the
//! object's `__datafusion_window_udf__`, `__datafusion_aggregate_udf__` or
//! `__datafusion_scalar_udf__` and read the capsule it returns.
//!
//! datafusion-python does not check the FFI version of a function capsule, and structures of
//! another major version would be read as garbage; so each capsule method first checks that the
//! `datafusion` package imported is of the major version this module was built with, and raises a
//! `SessionizeError` naming both versions otherwise.

use std::sync::Arc;

use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};
use datafusion_ffi::udaf::FFI_AggregateUDF;
use datafusion_ffi::udf::FFI_ScalarUDF;
use datafusion_ffi::udwf::FFI_WindowUDF;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use crate::run::SessionizeError;

/// The DataFusion major version this module is built with (the `datafusion` package must match).
pub const DATAFUSION_MAJOR: u64 = 55;

/// The FFI version of `datafusion-ffi` in this module.
#[pyfunction]
pub fn ffi_version() -> u64 {
    datafusion_ffi::version()
}

/// Checks the major version of the `datafusion` package that will read the capsule.
fn check_datafusion_version(py: Python<'_>) -> PyResult<()> {
    let version: String = py.import("datafusion")?.getattr("__version__")?.extract()?;
    let major = version
        .split('.')
        .next()
        .and_then(|m| m.parse::<u64>().ok());
    if major != Some(DATAFUSION_MAJOR) {
        return Err(SessionizeError::new_err(format!(
            "sessionize's functions are built for datafusion {DATAFUSION_MAJOR}.x (datafusion-ffi \
             {}), but the datafusion package imported is {version}: install a datafusion \
             {DATAFUSION_MAJOR}.x (pip install 'datafusion>={DATAFUSION_MAJOR},<{}')",
            datafusion_ffi::version(),
            DATAFUSION_MAJOR + 1
        )));
    }
    Ok(())
}

/// A window function of sessionize (`session_number`, `session_id`, `conditional_true_event`).
#[pyclass(frozen, module = "sessionize._sessionize")]
pub struct WindowFunction {
    udf: Arc<WindowUDF>,
}

#[pymethods]
impl WindowFunction {
    /// The SQL name.
    #[getter]
    fn name(&self) -> &str {
        self.udf.name()
    }

    /// The capsule datafusion-python's `udwf()` reads.
    fn __datafusion_window_udf__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        check_datafusion_version(py)?;
        let ffi = FFI_WindowUDF::from(self.udf.clone());
        PyCapsule::new_with_value(py, ffi, c"datafusion_window_udf")
    }

    fn __repr__(&self) -> String {
        format!("WindowFunction({})", self.udf.name())
    }
}

/// An aggregate function of sessionize (`session_count`, `session_seconds`, `session_list`,
/// `session_table`, `session_first_value`, `session_last_value`).
#[pyclass(frozen, module = "sessionize._sessionize")]
pub struct AggregateFunction {
    udf: Arc<AggregateUDF>,
}

#[pymethods]
impl AggregateFunction {
    /// The SQL name.
    #[getter]
    fn name(&self) -> &str {
        self.udf.name()
    }

    /// The capsule datafusion-python's `udaf()` reads.
    fn __datafusion_aggregate_udf__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        check_datafusion_version(py)?;
        let ffi = FFI_AggregateUDF::from(self.udf.clone());
        PyCapsule::new_with_value(py, ffi, c"datafusion_aggregate_udf")
    }

    fn __repr__(&self) -> String {
        format!("AggregateFunction({})", self.udf.name())
    }
}

/// A scalar function of sessionize (`event_time`, `utc_day`, ...) or of
/// datafusion-functions-json (`json_get_str`, ...).
#[pyclass(frozen, module = "sessionize._sessionize")]
pub struct ScalarFunction {
    udf: Arc<ScalarUDF>,
}

#[pymethods]
impl ScalarFunction {
    /// The SQL name.
    #[getter]
    fn name(&self) -> &str {
        self.udf.name()
    }

    /// The capsule datafusion-python's `udf()` reads.
    fn __datafusion_scalar_udf__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        check_datafusion_version(py)?;
        let ffi = FFI_ScalarUDF::from(self.udf.clone());
        PyCapsule::new_with_value(py, ffi, c"datafusion_scalar_udf")
    }

    fn __repr__(&self) -> String {
        format!("ScalarFunction({})", self.udf.name())
    }
}

/// The JSON functions of datafusion-functions-json that `register_all` registers (their `->` and
/// `->>` operators are a SQL planner extension, which `datafusion-ffi` cannot carry).
fn json_udfs() -> Vec<Arc<ScalarUDF>> {
    use datafusion_functions_json::udfs;
    vec![
        udfs::json_get_udf(),
        udfs::json_get_bool_udf(),
        udfs::json_get_float_udf(),
        udfs::json_get_int_udf(),
        udfs::json_get_json_udf(),
        udfs::json_get_array_udf(),
        udfs::json_as_text_udf(),
        udfs::json_get_str_udf(),
        udfs::json_contains_udf(),
        udfs::json_length_udf(),
        udfs::json_object_keys_udf(),
        udfs::json_from_scalar_udf(),
        udfs::json_union_to_text_udf(),
    ]
}

/// Every function: the window, aggregate and scalar functions of sessionize, then the JSON
/// functions.
#[pyfunction]
pub fn functions(py: Python<'_>) -> PyResult<Vec<Py<PyAny>>> {
    let mut all = vec![];
    for udf in sessionize::window::all_udwfs() {
        all.push(Py::new(py, WindowFunction { udf })?.into_any());
    }
    for udf in sessionize::aggregate::all_udafs() {
        all.push(Py::new(py, AggregateFunction { udf })?.into_any());
    }
    for udf in sessionize::scalar::all_udfs()
        .into_iter()
        .chain(json_udfs())
    {
        all.push(Py::new(py, ScalarFunction { udf })?.into_any());
    }
    Ok(all)
}
