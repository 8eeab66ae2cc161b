//! `mlxfn._mlxfn`: the thin Python binding of `mlxfn-core`.

mod atomic;
mod constant_view;
mod convert;
mod errors;
mod file;
mod registry;
mod write;

use std::path::Path;

use mlxfn_core::FileKind;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

/// A file kind as Python sees it: `("mlxfn", None)`, `("mlx", version)` or `("unknown", None)`.
fn kind_to_py(kind: FileKind) -> (&'static str, Option<String>) {
    match kind {
        FileKind::Mlxfn => ("mlxfn", None),
        FileKind::MlxNative { mlx_version } => ("mlx", Some(mlx_version)),
        FileKind::Unknown => ("unknown", None),
    }
}

/// Classify a file: `("mlxfn", None)`, `("mlx", version)` or `("unknown", None)`.
#[pyfunction]
fn sniff(py: Python<'_>, path: &str) -> PyResult<(&'static str, Option<String>)> {
    mlxfn_core::sniff(Path::new(path)).map(kind_to_py).map_err(|e| errors::to_pyerr(py, e))
}

/// What the file holds: `("mlxfn", None)` or `("mlx", version)`; FormatError
/// for anything else (FileNotFoundError for a missing file).
#[pyfunction]
fn recognise(py: Python<'_>, path: &str) -> PyResult<(&'static str, Option<String>)> {
    mlxfn_core::recognise(Path::new(path)).map(kind_to_py).map_err(|e| errors::to_pyerr(py, e))
}

/// The header of a file written by MLX's exporter and its first function's
/// signature: `{"mlx_version", "function_count", "shapeless", "metadata",
/// "first": None or (keyword_names, [(shape, dtype)])}`.
#[pyfunction]
fn read_mlx_header<'py>(py: Python<'py>, path: &str) -> PyResult<Bound<'py, PyDict>> {
    let header =
        py.detach(|| mlxfn_core::mlx_format::read_header(Path::new(path))).map_err(|e| errors::to_pyerr(py, e))?;
    let table = registry::dtypes(py)?;
    let out = PyDict::new(py);
    out.set_item("mlx_version", header.mlx_version)?;
    out.set_item("function_count", header.function_count)?;
    out.set_item("shapeless", header.shapeless)?;
    out.set_item("metadata", header.metadata)?;
    match header.first {
        None => out.set_item("first", py.None())?,
        Some(first) => {
            let inputs =
                first.inputs.iter().map(|t| convert::tensor_to_py(py, t, &table)).collect::<PyResult<Vec<_>>>()?;
            out.set_item("first", (first.keyword_names, inputs))?;
        }
    }
    Ok(out)
}

#[pymodule]
fn _mlxfn(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<file::PyFile>()?;
    m.add_class::<constant_view::PyConstantView>()?;
    m.add_class::<atomic::PyAtomicFile>()?;
    m.add_function(wrap_pyfunction!(registry::register, m)?)?;
    m.add_function(wrap_pyfunction!(write::write_file, m)?)?;
    m.add_function(wrap_pyfunction!(sniff, m)?)?;
    m.add_function(wrap_pyfunction!(recognise, m)?)?;
    m.add_function(wrap_pyfunction!(read_mlx_header, m)?)?;
    m.add("FORMAT_VERSION", mlxfn_core::FORMAT_VERSION)?;
    let names: Vec<String> = mlxfn_core::dtype::ALL_DTYPES.iter().map(|d| d.mlx_name()).collect();
    m.add("DTYPE_NAMES", PyTuple::new(m.py(), names)?)?;
    m.add("SEGMENT_ALIGNMENT", mlxfn_core::SEGMENT_ALIGNMENT)?;
    m.add("SMALL_CONSTANT_ALIGNMENT", mlxfn_core::SMALL_CONSTANT_ALIGNMENT)?;
    m.add("ALIGNED_CONSTANT_MIN", mlxfn_core::ALIGNED_CONSTANT_MIN)?;
    m.add("LENGTH_PREFIX", mlxfn_core::LENGTH_PREFIX)?;
    m.add("OLDEST_FORMAT_VERSION", mlxfn_core::OLDEST_FORMAT_VERSION)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
