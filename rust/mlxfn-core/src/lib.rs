//! The mlxfn file format, without Python.
//!
//! An mlxfn file holds traced MLX functions: a fixed header ([`header`]), a
//! FlatBuffers graph (schema in `schema/mlxfn.fbs`), and the constants in
//! page-aligned segments. [`writer::write_file`] writes one atomically;
//! [`reader::MlxfnFile::open`] maps one, validates all of it, and hands out
//! zero-copy views of the constant bytes. See FORMAT.md for the layout.
#![deny(missing_docs)]

pub mod codec;
pub mod copy;
pub mod dtype;
pub mod error;
mod generated;
pub mod header;
pub mod model;
pub mod reader;
pub mod writer;

pub use dtype::DType;
pub use error::{Error, Result};
pub use header::{FORMAT_VERSION, SEGMENT_ALIGNMENT, SMALL_CONSTANT_ALIGNMENT};
pub use model::{Arg, Graph, Node, TensorInfo, Trace};
pub use reader::{sniff, sniff_bytes, FileKind, MlxfnFile};
pub use writer::{write_file, ConstantData, WriteOptions, WriteSummary};
