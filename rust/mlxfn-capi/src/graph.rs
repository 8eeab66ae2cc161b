//! The decoded graph as C structs, named after the schema's tables
//! (`rust/mlxfn-core/schema/mlxfn.fbs`) and mirroring the core's model
//! (`mlxfn_core::model`).
//!
//! Arrays are a pointer and a `_len` (null when empty), strings are
//! [`MlxfnString`]s (NUL-terminated, with their length).  Everything is
//! built once when the file is opened and owned by it ([`Arena`]): valid,
//! and never changed, until `mlxfn_file_free`.

use std::any::Any;
use std::ffi::c_char;
use std::ptr;

use mlxfn_core::model::Ratio;
use mlxfn_core::{Arg, DType, Dim, Expr, ExprOp, Graph, Node, Step, TensorInfo, Term, Trace};

/// A string: `ptr` is NUL-terminated (never null) and `len` bytes long
/// without the NUL (a string from a file may hold NULs: use `len`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MlxfnString {
    /// The bytes, UTF-8, followed by a NUL.
    pub ptr: *const c_char,
    /// The number of bytes before the final NUL.
    pub len: usize,
}

/// An exact fraction `num / den` (`den > 0`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MlxfnRatio {
    /// The numerator.
    pub num: i64,
    /// The denominator, positive.
    pub den: i64,
}

/// One term of an expression: `coeff` times the product of the sizes of
/// `dims` (indices into the trace's dims).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MlxfnTerm {
    /// The coefficient.
    pub coeff: MlxfnRatio,
    /// Indices of the trace's dims (one to eight).
    pub dims: *const u32,
    /// How many.
    pub dims_len: usize,
}

/// One step of an expression program (schema: `ExprStep`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MlxfnExprStep {
    /// What the step computes.
    pub op: ExprOp,
    /// `Poly`: the constant term.
    pub constant: MlxfnRatio,
    /// `Poly`: the terms.
    pub terms: *const MlxfnTerm,
    /// How many terms.
    pub terms_len: usize,
    /// The first operand, an earlier step's index (not `Poly`).
    pub a: u32,
    /// The second operand, an earlier step's index (not `Poly`).
    pub b: u32,
}

/// A number that follows a dynamic trace's sizes: `constant + sum(terms)`,
/// or, when `program_len > 0`, the value of the program's last step.  An
/// `integer` expression must come out whole.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MlxfnExpr {
    /// The constant term.
    pub constant: MlxfnRatio,
    /// The terms.
    pub terms: *const MlxfnTerm,
    /// How many terms.
    pub terms_len: usize,
    /// Whether the value must be an integer.
    pub integer: bool,
    /// The program's steps, in order (format 3).
    pub program: *const MlxfnExprStep,
    /// How many steps.
    pub program_len: usize,
}

/// Which field of an [`MlxfnArg`] holds its value (schema: `ArgKind`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MlxfnArgKind {
    /// `None` (an empty `std::optional`).
    None = 0,
    /// `int_value`: 0 or 1.
    Bool = 1,
    /// `int_value`.
    Int = 2,
    /// `float_value`.
    Float = 3,
    /// `str_value`.
    Str = 4,
    /// `int_value`: an `MlxfnDType` code.
    Dtype = 5,
    /// `ints` (a sequence of integers), `is_tuple`.
    Ints = 6,
    /// `items` (a sequence of args), `is_tuple`.
    List = 7,
    /// `expr`: a number that follows the trace's dynamic sizes.
    Expr = 8,
}

/// One field of a primitive's state: `kind` says which field holds it; the
/// others are zero, empty or null.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MlxfnArg {
    /// Which field holds the value.
    pub kind: MlxfnArgKind,
    /// `Bool` (0 or 1), `Int`, `Dtype` (the code).
    pub int_value: i64,
    /// `Float`.
    pub float_value: f64,
    /// `Str` (empty otherwise).
    pub str_value: MlxfnString,
    /// `Ints`.
    pub ints: *const i64,
    /// How many ints.
    pub ints_len: usize,
    /// `List`.
    pub items: *const MlxfnArg,
    /// How many items.
    pub items_len: usize,
    /// `Ints`, `List`: a Python tuple (true) or list (false).
    pub is_tuple: bool,
    /// `Expr` (null otherwise).
    pub expr: *const MlxfnExpr,
}

/// The shape and element type of a tensor.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MlxfnTensorInfo {
    /// The dimensions (non-negative).
    pub shape: *const i64,
    /// How many dimensions.
    pub shape_len: usize,
    /// The element type.
    pub dtype: DType,
}

/// The size of axis `axis` of output `output` of a node in a dynamic trace.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MlxfnOutputExpr {
    /// Which output of the node.
    pub output: u32,
    /// Which axis of it.
    pub axis: u32,
    /// Its size; null when no expression captures it (the primitive
    /// computes it, and it is not checked).
    pub expr: *const MlxfnExpr,
}

/// One primitive application; its outputs get the next value ids.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MlxfnNode {
    /// The MLX primitive's name (`Matmul`).
    pub op: MlxfnString,
    /// The primitive's state.
    pub args: *const MlxfnArg,
    /// How many args.
    pub args_len: usize,
    /// Value ids of the inputs.
    pub inputs: *const u32,
    /// How many inputs.
    pub inputs_len: usize,
    /// Shapes and dtypes of the outputs (at the traced sizes).
    pub outputs: *const MlxfnTensorInfo,
    /// How many outputs.
    pub outputs_len: usize,
    /// The output axes that follow the dynamic sizes.
    pub output_exprs: *const MlxfnOutputExpr,
    /// How many.
    pub output_exprs_len: usize,
}

/// Axis `axis` of input `input` (in value-id order).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MlxfnInputAxis {
    /// The input.
    pub input: u32,
    /// The axis.
    pub axis: u32,
}

/// A dynamic size: the input axes that share it, and the sizes the trace
/// serves (`min..=max`).  The inputs' shapes hold the traced size.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MlxfnDim {
    /// The input axes (at least one).
    pub axes: *const MlxfnInputAxis,
    /// How many.
    pub axes_len: usize,
    /// The smallest size served.
    pub min: i64,
    /// The largest size served.
    pub max: i64,
}

/// A scalar constant of a dynamic trace whose value follows its sizes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MlxfnConstantExpr {
    /// Its position in the trace's `constants`.
    pub position: u32,
    /// Its value.
    pub expr: MlxfnExpr,
}

/// One traced signature.  Value ids count the inputs (positional, then
/// keyword inputs sorted by name), then `constants`, then every node's
/// outputs in order.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MlxfnTrace {
    /// Names of the keyword inputs (the last `keyword_names_len` inputs).
    pub keyword_names: *const MlxfnString,
    /// How many.
    pub keyword_names_len: usize,
    /// All inputs.
    pub inputs: *const MlxfnTensorInfo,
    /// How many.
    pub inputs_len: usize,
    /// Indices into the file's constants (`MlxfnGraph::constants`).
    pub constants: *const u32,
    /// How many.
    pub constants_len: usize,
    /// The primitives, in topological order.
    pub nodes: *const MlxfnNode,
    /// How many.
    pub nodes_len: usize,
    /// Value ids of the outputs.
    pub outputs: *const u32,
    /// How many.
    pub outputs_len: usize,
    /// The dynamic sizes (none for a trace of one shape).
    pub dims: *const MlxfnDim,
    /// How many.
    pub dims_len: usize,
    /// The scalar constants whose values follow the dynamic sizes.
    pub constant_exprs: *const MlxfnConstantExpr,
    /// How many.
    pub constant_exprs_len: usize,
}

/// One constant of the file: where its bytes are and what they hold.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MlxfnConstant {
    /// The bytes (row-major), in the file's read-only mapping or the
    /// caller's buffer: no copy.  Null when `length` is 0.
    pub data: *const u8,
    /// Their number.
    pub length: u64,
    /// The element type.
    pub dtype: DType,
    /// The dimensions.
    pub shape: *const i64,
    /// How many.
    pub shape_len: usize,
    /// The constant with the padding after it up to the next multiple of
    /// 16 KiB of the file: a whole-page region to adopt (what Python's
    /// `File.constant_pages` gives); null when the constant does not start
    /// on such a multiple.  For bytes in memory the address is page-aligned
    /// only if the caller's buffer is.
    pub pages: *const u8,
    /// Bytes of `pages`.
    pub pages_len: usize,
    /// Where `data` starts in the file (to map it again from
    /// `mlxfn_file_fd`).
    pub offset: u64,
    /// The xxh3-64 hash of the bytes, as stored.
    pub hash: u64,
}

/// Everything in a file: versions, metadata, traces and constants.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MlxfnGraph {
    /// The file's format version.
    pub format_version: u32,
    /// The mlxfn version that wrote the file.
    pub mlxfn_version: MlxfnString,
    /// The MLX version that traced the function.
    pub mlx_version: MlxfnString,
    /// User metadata (MLX's `metadata=` string).
    pub metadata: MlxfnString,
    /// Whether the traces were exported with `shapeless=True`.
    pub shapeless: bool,
    /// The traces, in export order.
    pub traces: *const MlxfnTrace,
    /// How many.
    pub traces_len: usize,
    /// The constants, by index (`MlxfnTrace::constants` refers to them).
    pub constants: *const MlxfnConstant,
    /// How many.
    pub constants_len: usize,
}

/// The storage behind the C structs: every array is a `Vec` kept here, so
/// its elements stay put (moving a Vec does not move its buffer).
#[derive(Default)]
pub(crate) struct Arena {
    kept: Vec<Box<dyn Any>>,
}

impl Arena {
    /// Keep `items`; their address and number (null for none).
    pub(crate) fn slice<T: 'static>(&mut self, items: Vec<T>) -> (*const T, usize) {
        if items.is_empty() {
            return (ptr::null(), 0);
        }
        let out = (items.as_ptr(), items.len());
        self.kept.push(Box::new(items));
        out
    }

    /// Keep one item; its address.
    fn one<T: 'static>(&mut self, item: T) -> *const T {
        self.slice(vec![item]).0
    }

    /// Keep a NUL-terminated copy of `s`.
    pub(crate) fn string(&mut self, s: &str) -> MlxfnString {
        let mut bytes = Vec::with_capacity(s.len() + 1);
        bytes.extend_from_slice(s.as_bytes());
        bytes.push(0);
        MlxfnString { ptr: self.slice(bytes).0.cast(), len: s.len() }
    }

    fn ratio((num, den): Ratio) -> MlxfnRatio {
        MlxfnRatio { num, den }
    }

    fn terms(&mut self, terms: &[Term]) -> (*const MlxfnTerm, usize) {
        let items = terms
            .iter()
            .map(|t| {
                let (dims, dims_len) = self.slice(t.dims.clone());
                MlxfnTerm { coeff: Self::ratio(t.coeff), dims, dims_len }
            })
            .collect();
        self.slice(items)
    }

    fn step(&mut self, s: &Step) -> MlxfnExprStep {
        let (terms, terms_len) = self.terms(&s.terms);
        MlxfnExprStep { op: s.op, constant: Self::ratio(s.constant), terms, terms_len, a: s.a, b: s.b }
    }

    fn expr(&mut self, e: &Expr) -> MlxfnExpr {
        let (terms, terms_len) = self.terms(&e.terms);
        let steps = e.program.iter().map(|s| self.step(s)).collect();
        let (program, program_len) = self.slice(steps);
        MlxfnExpr { constant: Self::ratio(e.constant), terms, terms_len, integer: e.integer, program, program_len }
    }

    fn arg(&mut self, a: &Arg) -> MlxfnArg {
        let mut out = MlxfnArg {
            kind: MlxfnArgKind::None,
            int_value: 0,
            float_value: 0.0,
            str_value: MlxfnString { ptr: c"".as_ptr(), len: 0 },
            ints: ptr::null(),
            ints_len: 0,
            items: ptr::null(),
            items_len: 0,
            is_tuple: false,
            expr: ptr::null(),
        };
        match a {
            Arg::None => {}
            Arg::Bool(b) => (out.kind, out.int_value) = (MlxfnArgKind::Bool, i64::from(*b)),
            Arg::Int(i) => (out.kind, out.int_value) = (MlxfnArgKind::Int, *i),
            Arg::Float(f) => (out.kind, out.float_value) = (MlxfnArgKind::Float, *f),
            Arg::Str(s) => (out.kind, out.str_value) = (MlxfnArgKind::Str, self.string(s)),
            Arg::Dtype(d) => (out.kind, out.int_value) = (MlxfnArgKind::Dtype, i64::from(d.code())),
            Arg::Ints { values, tuple } => {
                (out.ints, out.ints_len) = self.slice(values.clone());
                (out.kind, out.is_tuple) = (MlxfnArgKind::Ints, *tuple);
            }
            Arg::List { items, tuple } => {
                let items = items.iter().map(|i| self.arg(i)).collect();
                (out.items, out.items_len) = self.slice(items);
                (out.kind, out.is_tuple) = (MlxfnArgKind::List, *tuple);
            }
            Arg::Expr(e) => {
                let e = self.expr(e);
                (out.kind, out.expr) = (MlxfnArgKind::Expr, self.one(e));
            }
        }
        out
    }

    fn tensors(&mut self, ts: &[TensorInfo]) -> (*const MlxfnTensorInfo, usize) {
        let items = ts.iter().map(|t| self.tensor(t)).collect();
        self.slice(items)
    }

    pub(crate) fn tensor(&mut self, t: &TensorInfo) -> MlxfnTensorInfo {
        let (shape, shape_len) = self.slice(t.shape.clone());
        MlxfnTensorInfo { shape, shape_len, dtype: t.dtype }
    }

    fn node(&mut self, n: &Node) -> MlxfnNode {
        let op = self.string(&n.op);
        let args = n.args.iter().map(|a| self.arg(a)).collect();
        let (args, args_len) = self.slice(args);
        let (inputs, inputs_len) = self.slice(n.inputs.clone());
        let (outputs, outputs_len) = self.tensors(&n.outputs);
        let exprs = n
            .output_exprs
            .iter()
            .map(|o| {
                let expr = match &o.expr {
                    Some(e) => {
                        let e = self.expr(e);
                        self.one(e)
                    }
                    None => ptr::null(),
                };
                MlxfnOutputExpr { output: o.output, axis: o.axis, expr }
            })
            .collect();
        let (output_exprs, output_exprs_len) = self.slice(exprs);
        MlxfnNode { op, args, args_len, inputs, inputs_len, outputs, outputs_len, output_exprs, output_exprs_len }
    }

    fn dim(&mut self, d: &Dim) -> MlxfnDim {
        let axes = d.axes.iter().map(|&(input, axis)| MlxfnInputAxis { input, axis }).collect();
        let (axes, axes_len) = self.slice(axes);
        MlxfnDim { axes, axes_len, min: d.min, max: d.max }
    }

    fn trace(&mut self, t: &Trace) -> MlxfnTrace {
        let names = t.keyword_names.iter().map(|n| self.string(n)).collect();
        let (keyword_names, keyword_names_len) = self.slice(names);
        let (inputs, inputs_len) = self.tensors(&t.inputs);
        let (constants, constants_len) = self.slice(t.constants.clone());
        let nodes = t.nodes.iter().map(|n| self.node(n)).collect();
        let (nodes, nodes_len) = self.slice(nodes);
        let (outputs, outputs_len) = self.slice(t.outputs.clone());
        let dims = t.dims.iter().map(|d| self.dim(d)).collect();
        let (dims, dims_len) = self.slice(dims);
        let exprs = t
            .constant_exprs
            .iter()
            .map(|c| MlxfnConstantExpr { position: c.position, expr: self.expr(&c.expr) })
            .collect();
        let (constant_exprs, constant_exprs_len) = self.slice(exprs);
        MlxfnTrace {
            keyword_names,
            keyword_names_len,
            inputs,
            inputs_len,
            constants,
            constants_len,
            nodes,
            nodes_len,
            outputs,
            outputs_len,
            dims,
            dims_len,
            constant_exprs,
            constant_exprs_len,
        }
    }

    /// The graph's C form, all but its constants (`file` adds them).
    pub(crate) fn graph(&mut self, g: &Graph, format_version: u32, mlxfn_version: &str) -> MlxfnGraph {
        let traces = g.traces.iter().map(|t| self.trace(t)).collect();
        let (traces, traces_len) = self.slice(traces);
        MlxfnGraph {
            format_version,
            mlxfn_version: self.string(mlxfn_version),
            mlx_version: self.string(&g.mlx_version),
            metadata: self.string(&g.metadata),
            shapeless: g.shapeless,
            traces,
            traces_len,
            constants: ptr::null(),
            constants_len: 0,
        }
    }
}
