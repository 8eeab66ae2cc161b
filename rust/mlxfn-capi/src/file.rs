//! An open, validated mlxfn file behind an opaque handle.

use std::ffi::{c_char, c_int, CStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use mlxfn_core::MlxfnFile as CoreFile;

use crate::error::{guard, MlxfnError};
use crate::graph::{Arena, MlxfnConstant, MlxfnGraph, MlxfnString};

/// An open mlxfn file: the core's validated file and its graph as C
/// structs.  Immutable once open: any thread may read it.
pub struct MlxfnFile {
    file: Arc<CoreFile>,
    graph: MlxfnGraph,
    path: MlxfnString,
    _arena: Arena,
}

impl MlxfnFile {
    fn new(file: Arc<CoreFile>) -> MlxfnFile {
        let mut arena = Arena::default();
        let mut graph = arena.graph(file.graph(), file.header().format_version, file.mlxfn_version());
        let constants = (0..file.constants().len())
            .map(|i| {
                let entry = &file.constants()[i];
                let bytes = file.constant_bytes(i);
                let tensor = arena.tensor(&mlxfn_core::TensorInfo { shape: entry.shape.clone(), dtype: entry.dtype });
                let pages = file.constant_pages(i);
                MlxfnConstant {
                    data: if bytes.is_empty() { std::ptr::null() } else { bytes.as_ptr() },
                    length: entry.length,
                    dtype: entry.dtype,
                    shape: tensor.shape,
                    shape_len: tensor.shape_len,
                    pages: pages.map_or(std::ptr::null(), <[u8]>::as_ptr),
                    pages_len: pages.map_or(0, <[u8]>::len),
                    offset: file.constant_offset(i),
                    hash: entry.hash,
                }
            })
            .collect();
        (graph.constants, graph.constants_len) = arena.slice(constants);
        let path = arena.string(file.path());
        MlxfnFile { file, graph, path, _arena: arena }
    }

    /// The core's file (for Rust callers and tests).
    pub fn core(&self) -> &CoreFile {
        &self.file
    }
}

/// Read a caller's C string argument.
///
/// # Safety
/// `s` is null or a NUL-terminated string.
unsafe fn c_str<'a>(s: *const c_char, what: &str) -> Result<&'a CStr, MlxfnError> {
    if s.is_null() {
        return Err(MlxfnError::usage(format!("{what} is null")));
    }
    // SAFETY: the caller's contract.
    Ok(unsafe { CStr::from_ptr(s) })
}

/// A caller's file handle, or a usage error for null.
///
/// # Safety
/// `file` is null or a live handle from `mlxfn_file_open*`.
unsafe fn handle<'a>(file: *const MlxfnFile) -> Result<&'a MlxfnFile, MlxfnError> {
    // SAFETY: the caller's contract.
    unsafe { file.as_ref() }.ok_or_else(|| MlxfnError::usage("the file handle is null"))
}

fn boxed(file: Arc<CoreFile>) -> *mut MlxfnFile {
    Box::into_raw(Box::new(MlxfnFile::new(file)))
}

/// Map and validate the mlxfn file at `path` (checks the header, checksums,
/// graph, tables and ids: everything but the constants' hashes).  Returns
/// null on failure, with the reason in `*error`.
///
/// # Safety
/// `path` is a NUL-terminated string; `error` is null or writable.
#[no_mangle]
pub unsafe extern "C" fn mlxfn_file_open(path: *const c_char, error: *mut *mut MlxfnError) -> *mut MlxfnFile {
    guard(error, std::ptr::null_mut(), || {
        // SAFETY: the caller's contract.
        let path = unsafe { c_str(path, "path") }?;
        Ok(boxed(CoreFile::open(Path::new(std::ffi::OsStr::from_bytes(path.to_bytes())))?))
    })
}

/// `len` bytes at `data` that the caller keeps alive and unchanged until
/// `mlxfn_file_free`.
struct Borrowed {
    data: *const u8,
    len: usize,
}

// SAFETY: the bytes are only read, and the caller keeps them alive and
// unchanged while the file is open (mlxfn_file_open_bytes's contract).
unsafe impl Send for Borrowed {}
// SAFETY: as for Send.
unsafe impl Sync for Borrowed {}

impl AsRef<[u8]> for Borrowed {
    fn as_ref(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: non-null (checked at open) and alive: the caller's contract.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }
}

/// Validate an mlxfn file held in memory, exactly as `mlxfn_file_open`
/// validates a file on disk, without copying it: the constants point into
/// `data`.  `name` (may be null: `"<memory>"`) stands for the path in
/// messages.  Returns null on failure, with the reason in `*error`.
///
/// # Safety
/// `data` points to `len` readable bytes that stay alive and unchanged
/// until `mlxfn_file_free` of the result (null is allowed when `len` is 0);
/// `name` is null or a NUL-terminated string; `error` is null or writable.
#[no_mangle]
pub unsafe extern "C" fn mlxfn_file_open_bytes(
    data: *const u8,
    len: usize,
    name: *const c_char,
    error: *mut *mut MlxfnError,
) -> *mut MlxfnFile {
    guard(error, std::ptr::null_mut(), || {
        let name = if name.is_null() {
            "<memory>".to_owned()
        } else {
            // SAFETY: the caller's contract.
            unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned()
        };
        if data.is_null() && len > 0 {
            return Err(MlxfnError::usage(format!("{name}: data is null but len is {len}")));
        }
        Ok(boxed(CoreFile::from_shared(&name, Box::new(Borrowed { data, len }))?))
    })
}

/// Close a file: its graph, constants and mapping go (null is allowed).
///
/// # Safety
/// `file` is null or a handle from `mlxfn_file_open*`, freed only once,
/// and nothing from it is used afterwards.
#[no_mangle]
pub unsafe extern "C" fn mlxfn_file_free(file: *mut MlxfnFile) {
    if !file.is_null() {
        // SAFETY: the caller's contract: made by Box::into_raw in `boxed`.
        drop(unsafe { Box::from_raw(file) });
    }
}

/// The decoded graph and constants, valid until `mlxfn_file_free`; null for
/// a null handle.
///
/// # Safety
/// `file` is null or a live handle.
#[no_mangle]
pub unsafe extern "C" fn mlxfn_file_graph(file: *const MlxfnFile) -> *const MlxfnGraph {
    // SAFETY: the caller's contract.
    unsafe { file.as_ref() }.map_or(std::ptr::null(), |f| &f.graph)
}

/// The path as given to `mlxfn_file_open` (or the name given to
/// `mlxfn_file_open_bytes`), valid until `mlxfn_file_free`.
///
/// # Safety
/// `file` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn mlxfn_file_path(file: *const MlxfnFile) -> MlxfnString {
    // SAFETY: the caller's contract.
    unsafe { file.as_ref() }.map_or(MlxfnString { ptr: c"".as_ptr(), len: 0 }, |f| f.path)
}

/// The total size of the file in bytes (0 for a null handle).
///
/// # Safety
/// `file` is null or a live handle.
#[no_mangle]
pub unsafe extern "C" fn mlxfn_file_size(file: *const MlxfnFile) -> u64 {
    // SAFETY: the caller's contract.
    unsafe { file.as_ref() }.map_or(0, |f| f.file.header().file_size)
}

/// The open descriptor of the validated file, to map the same inode again
/// (for copy-on-write arrays); -1 for bytes in memory.  The handle owns it:
/// do not close it.
///
/// # Safety
/// `file` is null or a live handle.
#[no_mangle]
pub unsafe extern "C" fn mlxfn_file_fd(file: *const MlxfnFile) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { file.as_ref() }.and_then(|f| f.file.raw_fd()).unwrap_or(-1)
}

/// Fail (`Format`) if the file was truncated or written to in place since
/// it was opened: call it before reading constants, as Python does.  A
/// file replaced by rename or deleted passes (the mapping keeps the old one).
///
/// # Safety
/// `file` is null or a live handle; `error` is null or writable.
#[no_mangle]
pub unsafe extern "C" fn mlxfn_file_check_unchanged(file: *const MlxfnFile, error: *mut *mut MlxfnError) -> bool {
    guard(error, false, || {
        // SAFETY: the caller's contract.
        unsafe { handle(file) }?.file.check_unchanged()?;
        Ok(true)
    })
}

/// Check every constant against its stored hash (reads all of them);
/// `Integrity` names the first that differs.
///
/// # Safety
/// `file` is null or a live handle; `error` is null or writable.
#[no_mangle]
pub unsafe extern "C" fn mlxfn_file_verify(file: *const MlxfnFile, error: *mut *mut MlxfnError) -> bool {
    guard(error, false, || {
        // SAFETY: the caller's contract.
        unsafe { handle(file) }?.file.verify_hashes()?;
        Ok(true)
    })
}

/// Copy `count` constants out of the file: constant `indices[k]` into
/// `destinations[k]`, which holds exactly its `length` bytes.  Several
/// threads share the work; a file on disk is read with `pread` (its pages
/// never count in this process's memory), after `check_unchanged`.
///
/// # Safety
/// `file` is null or a live handle; `indices` and `destinations` point to
/// `count` items (may be null when `count` is 0); each destination is
/// writable for its constant's length and overlaps no other; `error` is
/// null or writable.
#[no_mangle]
pub unsafe extern "C" fn mlxfn_file_copy_constants(
    file: *const MlxfnFile,
    indices: *const usize,
    destinations: *const *mut u8,
    count: usize,
    error: *mut *mut MlxfnError,
) -> bool {
    guard(error, false, || {
        // SAFETY: the caller's contract.
        let file = unsafe { handle(file) }?;
        if count > 0 && (indices.is_null() || destinations.is_null()) {
            return Err(MlxfnError::usage("indices or destinations is null"));
        }
        let (indices, destinations) = if count == 0 {
            (&[][..], &[][..])
        } else {
            // SAFETY: the caller's contract: `count` items each.
            unsafe { (std::slice::from_raw_parts(indices, count), std::slice::from_raw_parts(destinations, count)) }
        };
        let constants = file.file.constants();
        let mut jobs = Vec::with_capacity(count);
        for (&index, &dst) in indices.iter().zip(destinations) {
            let Some(c) = constants.get(index) else {
                return Err(MlxfnError::usage(format!(
                    "{}: constant {index} out of range: the file has {}",
                    file.file.path(),
                    constants.len()
                )));
            };
            if dst.is_null() && c.length > 0 {
                return Err(MlxfnError::usage(format!(
                    "{}: destination of constant {index} is null",
                    file.file.path()
                )));
            }
            let dst: &mut [u8] = if c.length == 0 {
                &mut []
            } else {
                // SAFETY: the caller's contract: writable for the constant's length, not shared.
                unsafe { std::slice::from_raw_parts_mut(dst, c.length as usize) }
            };
            jobs.push((index, dst));
        }
        file.file.copy_constants(jobs)?;
        Ok(true)
    })
}
