//! Errors across the C ABI: an error object the caller reads and frees.
//!
//! Every call that can fail takes `MlxfnError** error` last: on failure it
//! returns a null pointer or `false` and, when `error` is not null, stores a
//! new error there (free it with [`mlxfn_error_free`]); on success it stores
//! null.  The message is the one Python's exception carries (file, field,
//! expected and actual values).

use std::ffi::{c_char, c_int, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What kind of failure an error is: the Python exception it maps to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MlxfnErrorKind {
    /// No such file (Python: `FileNotFoundError`).
    NotFound = 0,
    /// Another operating-system failure (`OSError`; see [`mlxfn_error_os_code`]).
    Io = 1,
    /// Not an mlxfn file, or a corrupted, truncated or changed one (`mlxfn.FormatError`).
    Format = 2,
    /// Written by a newer format version (`mlxfn.VersionError`).
    Version = 3,
    /// A constant's bytes do not match their hash (`mlxfn.IntegrityError`).
    Integrity = 4,
    /// A bad argument: a null pointer, a constant that does not exist (`ValueError`).
    Usage = 5,
    /// A bug in mlxfn (a panic caught at the boundary).
    Internal = 6,
}

/// A failure: its kind, its operating-system error code and its message.
#[derive(Debug)]
pub struct MlxfnError {
    kind: MlxfnErrorKind,
    os_code: c_int,
    message: CString,
}

impl MlxfnError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: MlxfnErrorKind, message: impl Into<String>) -> MlxfnError {
        // A C string ends at the first NUL: show one inside the message instead.
        let text = message.into().replace('\0', "\\0");
        MlxfnError { kind, os_code: 0, message: CString::new(text).expect("no NUL left") }
    }

    /// A bad argument.
    pub fn usage(message: impl Into<String>) -> MlxfnError {
        MlxfnError::new(MlxfnErrorKind::Usage, message)
    }

    /// The kind.
    pub fn kind(&self) -> MlxfnErrorKind {
        self.kind
    }

    /// The message.
    pub fn message(&self) -> &str {
        self.message.to_str().unwrap_or("(message not UTF-8)")
    }
}

impl From<mlxfn_core::Error> for MlxfnError {
    fn from(err: mlxfn_core::Error) -> MlxfnError {
        use mlxfn_core::Error as E;
        let kind = match &err {
            E::NotFound { .. } => MlxfnErrorKind::NotFound,
            E::Io { .. } => MlxfnErrorKind::Io,
            E::NewerVersion { .. } => MlxfnErrorKind::Version,
            E::Integrity { .. } => MlxfnErrorKind::Integrity,
            E::Usage { .. } | E::InvalidGraph { .. } => MlxfnErrorKind::Usage,
            E::NotMlxfn { .. }
            | E::Unrecognized { .. }
            | E::MlxFile { .. }
            | E::Truncated { .. }
            | E::BadHeader { .. }
            | E::Flatbuffer { .. }
            | E::Invalid { .. }
            | E::Changed { .. } => MlxfnErrorKind::Format,
        };
        let os_code = match &err {
            E::NotFound { .. } => 2, // ENOENT
            E::Io { source, .. } => source.raw_os_error().unwrap_or(0),
            _ => 0,
        };
        MlxfnError { os_code, ..MlxfnError::new(kind, err.to_string()) }
    }
}

/// Run `body` for an exported function: store its error (or null) in
/// `error`, turn a panic into an `Internal` error, and return `failed` on
/// any failure.
pub(crate) fn guard<T>(error: *mut *mut MlxfnError, failed: T, body: impl FnOnce() -> Result<T, MlxfnError>) -> T {
    let outcome = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(MlxfnError::new(MlxfnErrorKind::Internal, format!("internal error in mlxfn: {what}")))
    });
    let (value, err) = match outcome {
        Ok(value) => (value, std::ptr::null_mut()),
        Err(e) => (failed, Box::into_raw(Box::new(e))),
    };
    if !error.is_null() {
        // SAFETY: the caller passes null or a pointer it can write an error pointer to.
        unsafe { error.write(err) };
    } else if !err.is_null() {
        // SAFETY: just made by Box::into_raw and not handed out.
        drop(unsafe { Box::from_raw(err) });
    }
    value
}

/// The error's message: NUL-terminated UTF-8, valid until the error is freed.
///
/// # Safety
/// `error` is null or an error from this library not yet freed.
#[no_mangle]
pub unsafe extern "C" fn mlxfn_error_message(error: *const MlxfnError) -> *const c_char {
    // SAFETY: the caller's contract.
    match unsafe { error.as_ref() } {
        Some(e) => e.message.as_ptr(),
        None => c"(no error)".as_ptr(),
    }
}

/// The error's kind (`Internal` for a null error).
///
/// # Safety
/// `error` is null or an error from this library not yet freed.
#[no_mangle]
pub unsafe extern "C" fn mlxfn_error_kind(error: *const MlxfnError) -> MlxfnErrorKind {
    // SAFETY: the caller's contract.
    unsafe { error.as_ref() }.map_or(MlxfnErrorKind::Internal, |e| e.kind)
}

/// The operating system's error code (`errno`) of an `Io` or `NotFound`
/// error, else 0.
///
/// # Safety
/// `error` is null or an error from this library not yet freed.
#[no_mangle]
pub unsafe extern "C" fn mlxfn_error_os_code(error: *const MlxfnError) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { error.as_ref() }.map_or(0, |e| e.os_code)
}

/// Free an error (null is allowed).
///
/// # Safety
/// `error` is null or an error from this library, freed only once.
#[no_mangle]
pub unsafe extern "C" fn mlxfn_error_free(error: *mut MlxfnError) {
    if !error.is_null() {
        // SAFETY: the caller's contract: made by Box::into_raw in `guard`.
        drop(unsafe { Box::from_raw(error) });
    }
}

/// A new error of `kind` saying `message` (null reads as an empty message):
/// for code built on this library, such as its C calling API, that reports
/// its own failures as the same error objects.  Free it with
/// [`mlxfn_error_free`].
///
/// # Safety
/// `message` is null or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn mlxfn_error_new(kind: MlxfnErrorKind, message: *const c_char) -> *mut MlxfnError {
    let text = if message.is_null() {
        String::new()
    } else {
        // SAFETY: the caller's contract.
        unsafe { std::ffi::CStr::from_ptr(message) }.to_string_lossy().into_owned()
    };
    Box::into_raw(Box::new(MlxfnError::new(kind, text)))
}
