//! The mlxfn core behind a C ABI, for the native runtime (`libmlxfn.so`)
//! and any other language: the Rust core stays the one reader that
//! validates files (the security boundary), and hands the decoded graph
//! over as plain C structs (`native/include/mlxfn/mlxfn_core.h`, generated
//! from this crate by cbindgen: `scripts/regen-capi-header.sh`).
//!
//! - [`file`]: open a file from a path or from a caller's bytes, free it,
//!   its descriptor, self-checks and constant copies.
//! - [`graph`]: the decoded graph as `#[repr(C)]` structs named after the
//!   schema's tables (`MlxfnGraph`, `MlxfnTrace`, `MlxfnNode`, ...), owned
//!   by the open file.
//! - [`error`]: the error object every call that can fail fills in.
//! - [`dtype`]: names and sizes of the dtype codes.
//!
//! No call panics across the boundary: each body runs under
//! `catch_unwind`, and a panic comes back as an error of kind `Internal`.
#![deny(missing_docs)]

pub mod dtype;
pub mod error;
pub mod file;
pub mod graph;
