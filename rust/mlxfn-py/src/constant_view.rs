//! `ConstantView`: a read-only buffer over one constant's mapped bytes.

use std::ffi::{c_int, c_void, CStr};
use std::sync::Arc;

use mlxfn_core::MlxfnFile;
use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;

/// The bytes of one constant, straight from the file mapping (no copy).
///
/// It holds the mapping alive: the bytes stay valid as long as this object
/// or any memoryview of it exists, even after the `File` is gone.
#[pyclass(name = "ConstantView", module = "mlxfn._mlxfn", frozen)]
pub struct PyConstantView {
    pub(crate) file: Arc<MlxfnFile>,
    pub(crate) index: usize,
    /// The constant's whole-page region (`MlxfnFile::constant_pages`), not its bytes.
    pub(crate) pages: bool,
}

impl PyConstantView {
    fn bytes(&self) -> &[u8] {
        if self.pages {
            // Checked to exist when the view was made (File.constant_pages).
            self.file.constant_pages(self.index).unwrap_or_default()
        } else {
            self.file.constant_bytes(self.index)
        }
    }
}

static FORMAT_B: &CStr = c"B";

#[pymethods]
impl PyConstantView {
    fn __len__(&self) -> usize {
        self.bytes().len()
    }

    /// Export the bytes as a 1-D, read-only, C-contiguous buffer of format "B".
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("null Py_buffer"));
        }
        if flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE {
            return Err(PyBufferError::new_err("mlxfn constants are read-only"));
        }
        let this = slf.get();
        let bytes = this.bytes();
        // SAFETY: `view` is a valid Py_buffer given by the interpreter; the
        // bytes live in a mapping kept alive by `obj` (a reference to self,
        // which holds the Arc) until the buffer is released.
        unsafe {
            (*view).obj = slf.clone().into_any().into_ptr();
            (*view).buf = bytes.as_ptr() as *mut c_void;
            (*view).len = bytes.len() as ffi::Py_ssize_t;
            (*view).readonly = 1;
            (*view).itemsize = 1;
            (*view).format = if flags & ffi::PyBUF_FORMAT == ffi::PyBUF_FORMAT {
                FORMAT_B.as_ptr() as *mut _
            } else {
                std::ptr::null_mut()
            };
            (*view).ndim = 1;
            (*view).shape =
                if flags & ffi::PyBUF_ND == ffi::PyBUF_ND { &mut (*view).len } else { std::ptr::null_mut() };
            (*view).strides = if flags & ffi::PyBUF_STRIDES == ffi::PyBUF_STRIDES {
                &mut (*view).itemsize
            } else {
                std::ptr::null_mut()
            };
            (*view).suboffsets = std::ptr::null_mut();
            (*view).internal = std::ptr::null_mut();
        }
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}

    fn __repr__(&self) -> String {
        format!("<ConstantView {} of {}: {} bytes>", self.index, self.file.path(), self.__len__())
    }
}
