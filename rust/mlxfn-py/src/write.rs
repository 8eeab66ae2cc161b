//! `write_file`: hand Python's graph and constant buffers to the core writer.

use std::path::Path;

use mlxfn_core::{write_into, AtomicFile, ConstantData, DType, WriteSummary};
use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::atomic::PyAtomicFile;
use crate::convert::graph_from_py;
use crate::errors::to_pyerr;

/// Raw bytes of a buffer that Python keeps alive while we hold `_buffer`.
struct Held {
    _buffer: PyUntypedBuffer,
    ptr: usize,
    len: usize,
    shape: Vec<i64>,
    dtype: DType,
}

/// Write a graph and its constants into `target`: an `AtomicFile` (left
/// uncommitted for the caller) or a path (written atomically). See `_mlxfn.pyi`.
#[pyfunction]
#[pyo3(signature = (target, graph, constants, durable = false))]
pub fn write_file<'py>(
    py: Python<'py>,
    target: &Bound<'py, PyAny>,
    graph: &Bound<'py, PyDict>,
    constants: Vec<Bound<'py, PyTuple>>,
    durable: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let table = crate::registry::dtypes(py)?;
    let graph = graph_from_py(graph, &table)?;
    let mut held = Vec::with_capacity(constants.len());
    for (i, c) in constants.iter().enumerate() {
        let (shape, dtype, buffer): (Vec<i64>, Bound<'py, PyAny>, Bound<'py, PyAny>) = c.extract()?;
        let dtype = table
            .code_of(&dtype)?
            .ok_or_else(|| PyValueError::new_err(format!("constant {i}: unknown dtype {dtype}")))?;
        let buffer = PyUntypedBuffer::get(&buffer)?;
        if !buffer.is_c_contiguous() {
            return Err(PyValueError::new_err(format!("constant {i}: the buffer is not C-contiguous")));
        }
        held.push(Held { ptr: buffer.buf_ptr() as usize, len: buffer.len_bytes(), _buffer: buffer, shape, dtype });
    }
    let write = |out: &AtomicFile| -> mlxfn_core::Result<WriteSummary> {
        let data: Vec<ConstantData<'_>> = held
            .iter()
            .map(|h| ConstantData {
                shape: &h.shape,
                dtype: h.dtype,
                // SAFETY: the buffer protocol keeps `len` bytes at `ptr`
                // valid and unmoved until `_buffer` is released, which
                // happens after this function returns.
                bytes: unsafe { std::slice::from_raw_parts(h.ptr as *const u8, h.len) },
            })
            .collect();
        write_into(out, &graph, &data)
    };
    let summary = if let Ok(pending) = target.cast::<PyAtomicFile>() {
        let pending = pending.get();
        pending.with(|out| py.detach(|| write(out)))?
    } else {
        let path: String = target.extract()?;
        py.detach(|| {
            let out = AtomicFile::create(Path::new(&path))?;
            let summary = write(&out)?;
            out.commit(durable)?;
            Ok(summary)
        })
    }
    .map_err(|e| to_pyerr(py, e))?;
    let out = PyDict::new(py);
    out.set_item("file_size", summary.file_size)?;
    out.set_item("constant_count", summary.constant_count)?;
    out.set_item("constant_bytes", summary.constant_bytes)?;
    out.set_item("deduplicated_count", summary.deduplicated_count)?;
    Ok(out)
}
