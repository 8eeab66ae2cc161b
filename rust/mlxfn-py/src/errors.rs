//! The one place where core errors become Python exceptions.
//!
//! The classes are the package's (`mlxfn.errors`, registered once through
//! `registry::register`), so they can subclass both `MlxfnError` and the
//! builtin a caller of MLX already catches.

use mlxfn_core::Error;
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyValueError};
use pyo3::prelude::*;

fn mlxfn_error(py: Python<'_>, class: &str, message: String) -> PyErr {
    match crate::registry::error_class(py, class) {
        Ok(cls) => PyErr::from_type(cls, message),
        Err(unregistered) => unregistered,
    }
}

/// Convert a core error into the matching Python exception.
pub fn to_pyerr(py: Python<'_>, err: Error) -> PyErr {
    let message = err.to_string();
    match err {
        Error::NotFound { path } => PyFileNotFoundError::new_err((2, "No such file or directory", path)),
        Error::Io { path, source } => {
            PyOSError::new_err((source.raw_os_error().unwrap_or(0), format!("{path}: {source}"), path))
        }
        Error::NewerVersion { .. } => mlxfn_error(py, "VersionError", message),
        Error::Integrity { .. } => mlxfn_error(py, "IntegrityError", message),
        Error::InvalidGraph { .. } => mlxfn_error(py, "ExportError", message),
        Error::Usage { .. } => PyValueError::new_err(message),
        Error::NotMlxfn { .. }
        | Error::Unrecognized { .. }
        | Error::MlxFile { .. }
        | Error::Truncated { .. }
        | Error::BadHeader { .. }
        | Error::Flatbuffer { .. }
        | Error::Invalid { .. }
        | Error::Changed { .. } => mlxfn_error(py, "FormatError", message),
    }
}
