//! `AtomicFile`: the core's locked temporary file, renamed over its target
//! on `commit` (every writer of the package goes through it).

use std::path::Path;
use std::sync::Mutex;

use mlxfn_core::AtomicFile;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::errors::to_pyerr;

/// A locked temporary file beside `target`; `commit` renames it over the
/// target, `discard` (or garbage collection) removes it.
#[pyclass(name = "AtomicFile", module = "mlxfn._mlxfn", frozen)]
pub struct PyAtomicFile {
    target: String,
    temp_path: String,
    inner: Mutex<Option<AtomicFile>>,
}

impl PyAtomicFile {
    /// Run `f` on the open file; an error once committed or discarded.
    pub fn with<R>(&self, f: impl FnOnce(&AtomicFile) -> R) -> PyResult<R> {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(file) => Ok(f(file)),
            None => {
                Err(PyRuntimeError::new_err(format!("{}: the file was already committed or discarded", self.target)))
            }
        }
    }

    fn take(&self) -> PyResult<AtomicFile> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).take().ok_or_else(|| {
            PyRuntimeError::new_err(format!("{}: the file was already committed or discarded", self.target))
        })
    }
}

#[pymethods]
impl PyAtomicFile {
    /// Create the temporary (sweeping stale ones of dead writers); fails,
    /// naming `target`, when its directory is missing or not writable.
    #[new]
    fn new(py: Python<'_>, target: &str) -> PyResult<Self> {
        let file = AtomicFile::create(Path::new(target)).map_err(|e| to_pyerr(py, e))?;
        let temp_path = file.temp_path().display().to_string();
        Ok(PyAtomicFile { target: target.to_owned(), temp_path, inner: Mutex::new(Some(file)) })
    }

    #[getter]
    fn target(&self) -> &str {
        &self.target
    }

    #[getter]
    fn temp_path(&self) -> &str {
        &self.temp_path
    }

    /// Whether `commit` or `discard` still can be called.
    #[getter]
    fn pending(&self) -> bool {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Rename the temporary over the target (fsync first with `durable`).
    #[pyo3(signature = (durable = false))]
    fn commit(&self, py: Python<'_>, durable: bool) -> PyResult<()> {
        let file = self.take()?;
        py.detach(move || file.commit(durable)).map_err(|e| to_pyerr(py, e))
    }

    /// Remove the temporary; the target is untouched.  Idempotent.
    fn discard(&self) {
        drop(self.inner.lock().unwrap_or_else(|p| p.into_inner()).take());
    }

    fn __repr__(&self) -> String {
        format!("<mlxfn AtomicFile {} ({})>", self.target, if self.pending() { "pending" } else { "closed" })
    }
}
