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

/// Classify a file: `("mlxfn", None)`, `("mlx", version)` or `("unknown", None)`.
#[pyfunction]
fn sniff(py: Python<'_>, path: &str) -> PyResult<(&'static str, Option<String>)> {
    match mlxfn_core::sniff(Path::new(path)) {
        Ok(FileKind::Mlxfn) => Ok(("mlxfn", None)),
        Ok(FileKind::MlxNative { mlx_version }) => Ok(("mlx", Some(mlx_version))),
        Ok(FileKind::Unknown) => Ok(("unknown", None)),
        Err(e) => Err(errors::to_pyerr(py, e)),
    }
}

#[pymodule]
fn _mlxfn(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<file::PyFile>()?;
    m.add_class::<constant_view::PyConstantView>()?;
    m.add_class::<atomic::PyAtomicFile>()?;
    m.add_function(wrap_pyfunction!(registry::register, m)?)?;
    m.add_function(wrap_pyfunction!(write::write_file, m)?)?;
    m.add_function(wrap_pyfunction!(sniff, m)?)?;
    m.add("FORMAT_VERSION", mlxfn_core::FORMAT_VERSION)?;
    m.add("SEGMENT_ALIGNMENT", mlxfn_core::SEGMENT_ALIGNMENT)?;
    m.add("SMALL_CONSTANT_ALIGNMENT", mlxfn_core::SMALL_CONSTANT_ALIGNMENT)?;
    m.add("ALIGNED_CONSTANT_MIN", mlxfn_core::ALIGNED_CONSTANT_MIN)?;
    m.add("LENGTH_PREFIX", mlxfn_core::LENGTH_PREFIX)?;
    m.add("OLDEST_FORMAT_VERSION", mlxfn_core::OLDEST_FORMAT_VERSION)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
