//! The in-memory graph: what the writer takes and the reader gives back.

use crate::dtype::DType;

/// The shape and element type of one tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// Dimensions (non-negative).
    pub shape: Vec<i64>,
    /// Element type.
    pub dtype: DType,
}

/// A fraction `num / den` (`den > 0`), exact in the file.
pub type Ratio = (i64, i64);

/// The most sizes one term of an expression multiplies.
pub const MAX_TERM_DIMS: usize = 8;

/// One term of an [`Expr`]: `coeff` times the product of the sizes of `dims`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    /// The coefficient.
    pub coeff: Ratio,
    /// Indices into the trace's [`Dim`]s (one or two).
    pub dims: Vec<u32>,
}

/// `constant + sum(terms)`: a number of a dynamic trace that follows its sizes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expr {
    /// The constant term.
    pub constant: Ratio,
    /// The terms.
    pub terms: Vec<Term>,
    /// Whether the number is an integer (it must come out whole).
    pub integer: bool,
}

/// Fractions with checked arithmetic (a hostile file cannot overflow them).
fn ratio_add(a: (i128, i128), b: (i128, i128)) -> Option<(i128, i128)> {
    Some((a.0.checked_mul(b.1)?.checked_add(b.0.checked_mul(a.1)?)?, a.1.checked_mul(b.1)?))
}

impl Expr {
    /// The value at `sizes` (one per dim) as an unreduced fraction, or None
    /// when it overflows or a dim index is out of range.
    pub fn value(&self, sizes: &[i64]) -> Option<(i128, i128)> {
        let mut total = (i128::from(self.constant.0), i128::from(self.constant.1));
        for term in &self.terms {
            let mut product = i128::from(term.coeff.0);
            for &d in &term.dims {
                product = product.checked_mul(i128::from(*sizes.get(d as usize)?))?;
            }
            total = ratio_add(total, (product, i128::from(term.coeff.1)))?;
        }
        Some(total)
    }

    /// Describe what is wrong with the expression for a trace of `dims`
    /// dynamic sizes, if anything.
    pub fn check(&self, dims: usize) -> Result<(), String> {
        if self.constant.1 <= 0 || self.terms.iter().any(|t| t.coeff.1 <= 0) {
            return Err("an expression has a denominator that is not positive".into());
        }
        for term in &self.terms {
            if term.dims.is_empty() || term.dims.len() > MAX_TERM_DIMS {
                return Err(format!(
                    "an expression term has {} sizes (1 to {MAX_TERM_DIMS} expected)",
                    term.dims.len()
                ));
            }
            if let Some(d) = term.dims.iter().find(|&&d| d as usize >= dims) {
                return Err(format!("an expression uses dim {d} but the trace has {dims}"));
            }
        }
        Ok(())
    }
}

/// One field of a primitive's state, as MLX's export callback reports it.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    /// `None` (an empty `std::optional`).
    None,
    /// A boolean.
    Bool(bool),
    /// An integer (int, size_t, enum).
    Int(i64),
    /// A float or double.
    Float(f64),
    /// A string.
    Str(String),
    /// An MLX dtype.
    Dtype(DType),
    /// A sequence of integers; `tuple` keeps Python's tuple/list distinction.
    Ints {
        /// The integers.
        values: Vec<i64>,
        /// Whether Python gave a tuple (true) or a list (false).
        tuple: bool,
    },
    /// A sequence of any other args.
    List {
        /// The items.
        items: Vec<Arg>,
        /// Whether Python gave a tuple (true) or a list (false).
        tuple: bool,
    },
    /// A number that follows the trace's dynamic sizes.
    Expr(Expr),
}

/// The size of axis `axis` of output `output` of a node, in a dynamic trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputExpr {
    /// Which output of the node.
    pub output: u32,
    /// Which axis of it.
    pub axis: u32,
    /// Its size; None when it follows the sizes in a way no expression here
    /// captures (a strided convolution's length): the primitive computes
    /// it from its inputs and state, and it is not checked.
    pub expr: Option<Expr>,
}

/// A dynamic size of a trace: the input axes that share it and the sizes
/// the trace serves (`min..=max`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dim {
    /// (input index in value-id order, axis).
    pub axes: Vec<(u32, u32)>,
    /// The smallest size served.
    pub min: i64,
    /// The largest size served.
    pub max: i64,
}

/// A scalar constant of a dynamic trace whose value follows its sizes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConstantExpr {
    /// Position in the trace's `constants`.
    pub position: u32,
    /// Its value.
    pub expr: Expr,
}

impl Arg {
    /// Every expression in this arg (tree).
    fn exprs<'a>(&'a self, out: &mut Vec<&'a Expr>) {
        match self {
            Arg::Expr(e) => out.push(e),
            Arg::List { items, .. } => items.iter().for_each(|i| i.exprs(out)),
            _ => {}
        }
    }
}

/// One primitive application; its outputs get the next value ids.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The MLX primitive name (e.g. `Matmul`).
    pub op: String,
    /// The primitive's state.
    pub args: Vec<Arg>,
    /// Value ids of the inputs.
    pub inputs: Vec<u32>,
    /// Shapes and dtypes of the outputs (at the traced sizes).
    pub outputs: Vec<TensorInfo>,
    /// The output axes that follow the dynamic sizes.
    pub output_exprs: Vec<OutputExpr>,
}

/// One traced signature of a function.
///
/// Value ids count the inputs (positional, then keyword inputs sorted by
/// name), then `constants` in order, then every node's outputs in order.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Trace {
    /// Names of the keyword inputs (the last `keyword_names.len()` inputs).
    pub keyword_names: Vec<String>,
    /// All inputs.
    pub inputs: Vec<TensorInfo>,
    /// Indices into the file's constant list.
    pub constants: Vec<u32>,
    /// The primitives in topological order.
    pub nodes: Vec<Node>,
    /// Value ids of the outputs.
    pub outputs: Vec<u32>,
    /// The dynamic sizes (empty for a trace of one shape).
    pub dims: Vec<Dim>,
    /// The scalar constants whose values follow the dynamic sizes.
    pub constant_exprs: Vec<ConstantExpr>,
}

impl Trace {
    /// How many value ids the trace defines.
    pub fn value_count(&self) -> usize {
        self.inputs.len() + self.constants.len() + self.nodes.iter().map(|n| n.outputs.len()).sum::<usize>()
    }

    /// Check that every id refers to a value defined before its use and every
    /// constant index is below `constant_count`; the first problem found is
    /// described in words.
    pub fn check_ids(&self, constant_count: usize) -> Result<(), String> {
        if self.keyword_names.len() > self.inputs.len() {
            return Err(format!("{} keyword names for {} inputs", self.keyword_names.len(), self.inputs.len()));
        }
        if let Some(c) = self.constants.iter().find(|&&c| c as usize >= constant_count) {
            return Err(format!("constant index {c} but the file has {constant_count} constants"));
        }
        let mut defined = self.inputs.len() + self.constants.len();
        for (n, node) in self.nodes.iter().enumerate() {
            if let Some(i) = node.inputs.iter().find(|&&i| i as usize >= defined) {
                return Err(format!("node {n} ({}) uses value {i} but only {defined} are defined before it", node.op));
            }
            defined += node.outputs.len();
        }
        if let Some(o) = self.outputs.iter().find(|&&o| o as usize >= defined) {
            return Err(format!("output refers to value {o} but only {defined} are defined"));
        }
        self.check_dims()
    }

    /// The sizes the trace was traced at, one per dim (call after `check_dims`).
    pub fn base_sizes(&self) -> Vec<i64> {
        self.dims.iter().map(|d| self.inputs[d.axes[0].0 as usize].shape[d.axes[0].1 as usize]).collect()
    }

    /// Check the dynamic sizes and every expression against the trace.
    fn check_dims(&self) -> Result<(), String> {
        for (k, dim) in self.dims.iter().enumerate() {
            let mut base = None;
            for &(input, axis) in &dim.axes {
                let size = self.inputs.get(input as usize).and_then(|t| t.shape.get(axis as usize));
                let Some(&size) = size else {
                    return Err(format!("dim {k} names axis {axis} of input {input}, which does not exist"));
                };
                if base.is_some_and(|b| b != size) {
                    return Err(format!("dim {k} joins input axes of different sizes"));
                }
                base = Some(size);
            }
            match base {
                Some(b) if 0 <= dim.min && dim.min <= b && b <= dim.max => {}
                Some(b) => return Err(format!("dim {k} serves {}..{} but was traced at {b}", dim.min, dim.max)),
                None => return Err(format!("dim {k} names no input axis")),
            }
        }
        let base = self.base_sizes();
        // Expressions belong to dynamic traces only: readers take a static
        // trace's arguments as they are.
        let check = |e: &Expr, what: &dyn Fn() -> String| {
            if self.dims.is_empty() {
                return Err(format!("{}: an expression in a trace without dynamic sizes", what()));
            }
            e.check(self.dims.len()).map_err(|p| format!("{}: {p}", what()))
        };
        for (n, node) in self.nodes.iter().enumerate() {
            let mut exprs = Vec::new();
            node.args.iter().for_each(|a| a.exprs(&mut exprs));
            for e in exprs {
                check(e, &|| format!("node {n} ({})", node.op))?;
            }
            for oe in &node.output_exprs {
                let what = || format!("node {n} ({}) output {} axis {}", node.op, oe.output, oe.axis);
                let stored = node.outputs.get(oe.output as usize).and_then(|t| t.shape.get(oe.axis as usize));
                let Some(&stored) = stored else { return Err(format!("{}: no such output axis", what())) };
                let Some(expr) = &oe.expr else { continue };
                check(expr, &what)?;
                match expr.value(&base) {
                    Some((num, den)) if num == i128::from(stored) * den => {}
                    _ => return Err(format!("{}: its expression does not give the traced size {stored}", what())),
                }
            }
        }
        for ce in &self.constant_exprs {
            if ce.position as usize >= self.constants.len() {
                return Err(format!(
                    "a constant expression names constant {} of {}",
                    ce.position,
                    self.constants.len()
                ));
            }
            check(&ce.expr, &|| format!("constant {}", ce.position))?;
        }
        Ok(())
    }
}

/// Everything in a file except the constant bytes.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Graph {
    /// The MLX version that traced the function.
    pub mlx_version: String,
    /// User metadata (MLX's `metadata=` string).
    pub metadata: String,
    /// Whether the traces were exported with `shapeless=True`.
    pub shapeless: bool,
    /// The traces, in export order.
    pub traces: Vec<Trace>,
}
