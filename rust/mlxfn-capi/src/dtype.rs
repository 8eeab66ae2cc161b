//! The dtype codes, written once: the C header's `MlxfnDType` enum is the
//! core's [`DType`] (generated from it), and the names here are its
//! variants' names in lower case, which are MLX's (`bfloat16`, `uint8`).

use std::ffi::{c_char, CString};
use std::sync::OnceLock;

use mlxfn_core::dtype::ALL_DTYPES;
use mlxfn_core::DType;

/// MLX's name of each dtype, by code.
fn names() -> &'static [CString] {
    static NAMES: OnceLock<Vec<CString>> = OnceLock::new();
    NAMES.get_or_init(|| ALL_DTYPES.iter().map(|d| CString::new(d.mlx_name()).expect("no NUL")).collect())
}

/// How many dtype codes there are (codes are `0..count`).
#[no_mangle]
pub extern "C" fn mlxfn_dtype_count() -> usize {
    ALL_DTYPES.len()
}

/// MLX's name of the dtype `code` (an `MlxfnDType`: `"float32"`), or null
/// for an unknown code.  The string is static.
#[no_mangle]
pub extern "C" fn mlxfn_dtype_name(code: u8) -> *const c_char {
    // A byte, not the enum: a C caller may pass any value.
    names().get(usize::from(code)).map_or(std::ptr::null(), |n| n.as_ptr())
}

/// Bytes per element of the dtype `code` (an `MlxfnDType`), or 0 for an
/// unknown code.
#[no_mangle]
pub extern "C" fn mlxfn_dtype_size(code: u8) -> usize {
    DType::from_code(code).map_or(0, |d| d.itemsize() as usize)
}
