//! `File`: an open, validated mlxfn file.

use std::path::Path;
use std::sync::Arc;

use mlxfn_core::MlxfnFile;
use pyo3::exceptions::PyIndexError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::PyValueError;

use crate::constant_view::PyConstantView;
use crate::convert::trace_to_py;
use crate::errors::to_pyerr;

/// An mlxfn file, memory-mapped and fully validated by `File.open`.
#[pyclass(name = "File", module = "mlxfn._mlxfn", frozen)]
pub struct PyFile {
    pub(crate) inner: Arc<MlxfnFile>,
}

#[pymethods]
impl PyFile {
    /// Map and validate the file (the GIL is released meanwhile).
    #[staticmethod]
    fn open(py: Python<'_>, path: &str) -> PyResult<Self> {
        let owned = path.to_owned();
        let inner = py.detach(move || MlxfnFile::open(Path::new(&owned))).map_err(|e| to_pyerr(py, e))?;
        Ok(PyFile { inner })
    }

    #[getter]
    fn path(&self) -> &str {
        self.inner.path()
    }

    #[getter]
    fn format_version(&self) -> u32 {
        self.inner.header().format_version
    }

    #[getter]
    fn mlxfn_version(&self) -> &str {
        self.inner.mlxfn_version()
    }

    #[getter]
    fn mlx_version(&self) -> &str {
        &self.inner.graph().mlx_version
    }

    #[getter]
    fn metadata(&self) -> &str {
        &self.inner.graph().metadata
    }

    #[getter]
    fn shapeless(&self) -> bool {
        self.inner.graph().shapeless
    }

    #[getter]
    fn num_traces(&self) -> usize {
        self.inner.graph().traces.len()
    }

    #[getter]
    fn num_constants(&self) -> usize {
        self.inner.constants().len()
    }

    #[getter]
    fn file_size(&self) -> u64 {
        self.inner.header().file_size
    }

    /// The CRC-32 of the graph (from the header): names this graph.
    #[getter]
    fn graph_checksum(&self) -> u32 {
        self.inner.header().flatbuffer_crc32
    }

    /// Every trace as a dict (the format `write_file` takes).
    fn traces<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let table = crate::registry::dtypes(py)?;
        let traces =
            self.inner.graph().traces.iter().map(|t| trace_to_py(py, t, &table)).collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, traces)
    }

    /// `(shape, dtype, nbytes)` for every constant.
    fn constant_infos<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let table = crate::registry::dtypes(py)?;
        let infos = self
            .inner
            .constants()
            .iter()
            .map(|c| {
                PyTuple::new(
                    py,
                    [
                        PyTuple::new(py, &c.shape)?.into_any(),
                        table.object(c.dtype).clone(),
                        c.length.into_pyobject(py)?.into_any(),
                    ],
                )
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, infos)
    }

    /// The xxh3-64 content hash of every constant, as stored in the file.
    fn constant_hashes(&self) -> Vec<u64> {
        self.inner.constants().iter().map(|c| c.hash).collect()
    }

    /// The absolute file offset of every constant's bytes.
    fn constant_offsets(&self) -> Vec<u64> {
        (0..self.inner.constants().len()).map(|i| self.inner.constant_offset(i)).collect()
    }

    /// The descriptor of the open, validated file, to map it again (the C++
    /// bridge does); -1 for a file that was not opened from disk.
    fn fileno(&self) -> i32 {
        self.inner.raw_fd().unwrap_or(-1)
    }

    /// Copy constants into writable buffers of exactly their sizes (the
    /// memory of evaluated MLX arrays), several threads sharing the work,
    /// without the GIL; FormatError if the file was rewritten in place.
    fn copy_into(&self, py: Python<'_>, indices: Vec<usize>, buffers: Vec<Bound<'_, PyAny>>) -> PyResult<()> {
        if indices.len() != buffers.len() {
            return Err(PyValueError::new_err(format!("{} indices for {} buffers", indices.len(), buffers.len())));
        }
        let mut held = Vec::with_capacity(buffers.len());
        for (index, buffer) in indices.iter().zip(&buffers) {
            let buffer = PyUntypedBuffer::get(buffer)?;
            if buffer.readonly() || !buffer.is_c_contiguous() {
                return Err(PyValueError::new_err(format!(
                    "constant {index}: the buffer is read-only or not contiguous"
                )));
            }
            held.push((buffer.buf_ptr() as usize, buffer.len_bytes(), buffer));
        }
        let inner = self.inner.clone();
        py.detach(|| {
            let jobs = indices
                .iter()
                .zip(&held)
                // SAFETY: each buffer is writable, C-contiguous and `len` bytes
                // long, and stays valid (held by `buffer`) until this returns;
                // the caller passes distinct buffers.
                .map(|(&index, (ptr, len, _))| {
                    (index, unsafe { std::slice::from_raw_parts_mut(*ptr as *mut u8, *len) })
                })
                .collect();
            inner.copy_constants(jobs)
        })
        .map_err(|e| to_pyerr(py, e))
    }

    /// A zero-copy view of constant `index`'s bytes.
    fn constant(&self, index: usize) -> PyResult<PyConstantView> {
        if index >= self.inner.constants().len() {
            return Err(PyIndexError::new_err(format!(
                "constant {index} out of range: the file has {}",
                self.inner.constants().len()
            )));
        }
        Ok(PyConstantView { file: self.inner.clone(), index, pages: false })
    }

    /// Constant `index` with its padding up to the next 16 KiB page boundary,
    /// for unified-memory adoption; None where it does not start on a page or
    /// its padded end lies outside the file.
    fn constant_pages(&self, index: usize) -> PyResult<Option<PyConstantView>> {
        self.constant(index)?;
        Ok(self.inner.constant_pages(index).map(|_| PyConstantView { file: self.inner.clone(), index, pages: true }))
    }

    /// Raise FormatError if the file was truncated or written to in place
    /// since it was opened (a rename over it or deleting it is fine).
    fn check_unchanged(&self, py: Python<'_>) -> PyResult<()> {
        self.inner.check_unchanged().map_err(|e| to_pyerr(py, e))
    }

    /// Check every constant against its stored hash (reads all of them).
    fn verify(&self, py: Python<'_>) -> PyResult<()> {
        let inner = self.inner.clone();
        py.detach(move || inner.verify_hashes()).map_err(|e| to_pyerr(py, e))
    }

    /// Header fields, segments and constant placement, for `mlxfn inspect`.
    fn describe<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let h = self.inner.header();
        let out = PyDict::new(py);
        out.set_item("format_version", h.format_version)?;
        out.set_item("flatbuffer_offset", h.flatbuffer_offset)?;
        out.set_item("flatbuffer_size", h.flatbuffer_size)?;
        out.set_item("segments_offset", h.segments_offset)?;
        out.set_item("segments_size", h.segments_size)?;
        out.set_item("file_size", h.file_size)?;
        let segments: Vec<(u64, u64)> =
            self.inner.segments().iter().map(|s| (h.segments_offset + s.offset, s.size)).collect();
        out.set_item("segments", segments)?;
        let constants: Vec<(u32, u64, u64)> =
            self.inner.constants().iter().map(|c| (c.segment, c.offset, c.length)).collect();
        out.set_item("constants", constants)?;
        Ok(out)
    }

    fn __repr__(&self) -> String {
        format!("<mlxfn File {}: {} traces, {} constants>", self.inner.path(), self.num_traces(), self.num_constants())
    }
}
