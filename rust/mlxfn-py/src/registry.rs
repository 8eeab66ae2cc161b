//! What the Python package hands the binding once, at import: its exception
//! classes and its dtype objects.  The arrow points down: the binding never
//! imports the package; `mlxfn/__init__.py` calls `register` before anything
//! else can reach the binding.

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};

use mlxfn_core::dtype::ALL_DTYPES;

use crate::convert::DtypeTable;

/// The exception classes the core's errors map to (`errors.rs`).
pub const ERROR_CLASSES: [&str; 4] = ["FormatError", "VersionError", "IntegrityError", "ExportError"];

struct Registered {
    errors: Vec<Py<PyType>>,
    dtypes: Vec<Py<PyAny>>,
}

static REGISTERED: PyOnceLock<Registered> = PyOnceLock::new();

/// Register the package's exception classes (a dict naming every class in
/// `ERROR_CLASSES`) and dtype objects (one per dtype code, in code order).
/// Later calls must pass the same objects.
#[pyfunction]
pub fn register(py: Python<'_>, errors: &Bound<'_, PyDict>, dtypes: Vec<Bound<'_, PyAny>>) -> PyResult<()> {
    if dtypes.len() != ALL_DTYPES.len() {
        return Err(PyValueError::new_err(format!("register needs {} dtypes, got {}", ALL_DTYPES.len(), dtypes.len())));
    }
    let classes = ERROR_CLASSES
        .iter()
        .map(|name| match errors.get_item(name)? {
            Some(cls) => Ok(cls.cast_into::<PyType>()?.unbind()),
            None => Err(PyValueError::new_err(format!("register needs the exception class {name}"))),
        })
        .collect::<PyResult<Vec<_>>>()?;
    let fresh = Registered { errors: classes, dtypes: dtypes.iter().map(|d| d.clone().unbind()).collect() };
    let current = REGISTERED.get_or_init(py, || fresh);
    let same = current.dtypes.iter().zip(&dtypes).all(|(a, b)| a.bind(py).is(b))
        && ERROR_CLASSES
            .iter()
            .zip(&current.errors)
            .all(|(name, cls)| errors.get_item(name).ok().flatten().is_some_and(|given| given.is(cls.bind(py))));
    if same {
        Ok(())
    } else {
        Err(PyRuntimeError::new_err("mlxfn._mlxfn.register was called again with other classes or dtypes"))
    }
}

fn registered(py: Python<'_>) -> PyResult<&Registered> {
    REGISTERED
        .get(py)
        .ok_or_else(|| PyRuntimeError::new_err("mlxfn._mlxfn is used before mlxfn registered itself: import mlxfn"))
}

/// The registered dtype objects.
pub fn dtypes(py: Python<'_>) -> PyResult<DtypeTable<'_>> {
    Ok(DtypeTable::from_objects(registered(py)?.dtypes.iter().map(|d| d.bind(py).clone()).collect()))
}

/// The registered exception class called `name` (one of `ERROR_CLASSES`).
pub fn error_class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyType>> {
    let index = ERROR_CLASSES.iter().position(|n| *n == name).expect("a known exception class");
    Ok(registered(py)?.errors[index].bind(py).clone())
}
