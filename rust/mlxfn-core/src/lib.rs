//! The mlxfn file format, without Python.
//!
//! An mlxfn file holds traced MLX functions: a fixed header ([`header`]), a
//! FlatBuffers graph (schema in `schema/mlxfn.fbs`), and the constants laid
//! out by [`layout`]. [`writer::write_file`] writes one atomically (through
//! [`atomic::AtomicFile`]); [`reader::MlxfnFile::open`] maps one, validates
//! all of it, and hands out zero-copy views of the constant bytes. See
//! FORMAT.md for the format.
#![deny(missing_docs)]

pub mod atomic;
pub mod codec;
pub mod dtype;
pub mod error;
mod generated;
pub mod header;
pub mod layout;
pub mod mlx_format;
pub mod model;
pub mod parallel;
pub mod reader;
pub mod writer;

pub use atomic::AtomicFile;
pub use dtype::DType;
pub use error::{Error, Result};
pub use header::{FORMAT_VERSION, OLDEST_FORMAT_VERSION};
pub use layout::{ALIGNED_CONSTANT_MIN, LENGTH_PREFIX, SEGMENT_ALIGNMENT, SMALL_CONSTANT_ALIGNMENT};
pub use model::{
    Arg, ConstantExpr, Dim, Expr, ExprOp, Graph, Node, OutputExpr, Step, TensorInfo, Term, Trace, MAX_EXPR_STEPS,
};
pub use reader::{recognise, sniff, sniff_bytes, FileKind, MlxfnFile, SharedBytes};
pub use writer::{write_file, write_into, ConstantData, WriteOptions, WriteSummary};
