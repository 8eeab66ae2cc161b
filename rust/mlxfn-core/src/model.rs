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

/// The most steps an expression program holds (a program's depth is at most
/// its length: every step's operands are earlier steps).
pub const MAX_EXPR_STEPS: usize = 64;

/// What one step of an expression program computes.  The codes are stored
/// in files: values are only appended.  `repr(u8)`: the C ABI
/// (`mlxfn-capi`) hands the codes over as this enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ExprOp {
    /// The step's own polynomial (`constant + sum(terms)`).
    Poly,
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `floor(a / b)`.
    FloorDiv,
    /// `ceil(a / b)`.
    CeilDiv,
    /// `a - b * floor(a / b)` (the sign of `b`, as Python's `%`).
    Mod,
    /// The smaller of `a` and `b`.
    Min,
    /// The larger of `a` and `b`.
    Max,
}

impl ExprOp {
    /// Every op, in code order.
    pub const ALL: [ExprOp; 9] = [
        ExprOp::Poly,
        ExprOp::Add,
        ExprOp::Sub,
        ExprOp::Mul,
        ExprOp::FloorDiv,
        ExprOp::CeilDiv,
        ExprOp::Mod,
        ExprOp::Min,
        ExprOp::Max,
    ];

    /// The code stored in files.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The op of a stored code, None for an unknown one (a newer writer).
    pub fn from_code(code: u8) -> Option<ExprOp> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// Whether `b` is a divisor (a zero `b` has no value).
    pub fn divides(self) -> bool {
        matches!(self, ExprOp::FloorDiv | ExprOp::CeilDiv | ExprOp::Mod)
    }
}

/// One step of an expression program: its own polynomial (`Poly`) or an
/// operation on the values of two earlier steps `a` and `b`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// What the step computes.
    pub op: ExprOp,
    /// `Poly`: the constant term.
    pub constant: Ratio,
    /// `Poly`: the terms.
    pub terms: Vec<Term>,
    /// The first operand (an earlier step's index); unused by `Poly`.
    pub a: u32,
    /// The second operand (an earlier step's index); unused by `Poly`.
    pub b: u32,
}

/// A number of a dynamic trace that follows its sizes: `constant +
/// sum(terms)` (format 2), or, when `program` is not empty, the value of the
/// program's last step (format 3; then `constant` is 0 and `terms` empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expr {
    /// The constant term.
    pub constant: Ratio,
    /// The terms.
    pub terms: Vec<Term>,
    /// Whether the number is an integer (it must come out whole).
    pub integer: bool,
    /// The steps of a program, evaluated in order (format 3).
    pub program: Vec<Step>,
}

impl Default for Expr {
    /// The integer 0.
    fn default() -> Self {
        Expr { constant: (0, 1), terms: Vec::new(), integer: true, program: Vec::new() }
    }
}

type Fraction = (i128, i128); // numerator, denominator > 0

fn gcd(mut a: i128, mut b: i128) -> i128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.abs()
}

/// A fraction in lowest terms with a positive denominator (None: a zero
/// denominator, or overflow).
fn reduce((num, den): (i128, i128)) -> Option<Fraction> {
    if den == 0 {
        return None;
    }
    let g = gcd(num, den).max(1);
    let (num, den) = (num / g, den / g);
    if den < 0 {
        Some((num.checked_neg()?, den.checked_neg()?))
    } else {
        Some((num, den))
    }
}

/// Fractions with checked arithmetic (a hostile file cannot overflow them).
fn ratio_add(a: Fraction, b: Fraction) -> Option<Fraction> {
    reduce((a.0.checked_mul(b.1)?.checked_add(b.0.checked_mul(a.1)?)?, a.1.checked_mul(b.1)?))
}

fn ratio_mul(a: Fraction, b: Fraction) -> Option<Fraction> {
    reduce((a.0.checked_mul(b.0)?, a.1.checked_mul(b.1)?))
}

/// `floor(a / b)`; None when `b` is zero or on overflow.
fn ratio_floor_div(a: Fraction, b: Fraction) -> Option<i128> {
    let (num, den) = reduce((a.0.checked_mul(b.1)?, a.1.checked_mul(b.0)?))?;
    Some(num.div_euclid(den)) // den > 0: Euclid's quotient is the floor
}

/// `constant + sum(terms)` at `sizes`.
fn polynomial(constant: Ratio, terms: &[Term], sizes: &[i64]) -> Option<Fraction> {
    let mut total = reduce((i128::from(constant.0), i128::from(constant.1)))?;
    for term in terms {
        let mut product = i128::from(term.coeff.0);
        for &d in &term.dims {
            product = product.checked_mul(i128::from(*sizes.get(d as usize)?))?;
        }
        total = ratio_add(total, reduce((product, i128::from(term.coeff.1)))?)?;
    }
    Some(total)
}

/// Describe what is wrong with a polynomial for a trace of `dims` sizes.
fn check_polynomial(constant: Ratio, terms: &[Term], dims: usize) -> Result<(), String> {
    if constant.1 <= 0 || terms.iter().any(|t| t.coeff.1 <= 0) {
        return Err("an expression has a denominator that is not positive".into());
    }
    for term in terms {
        if term.dims.is_empty() || term.dims.len() > MAX_TERM_DIMS {
            return Err(format!("an expression term has {} sizes (1 to {MAX_TERM_DIMS} expected)", term.dims.len()));
        }
        if let Some(d) = term.dims.iter().find(|&&d| d as usize >= dims) {
            return Err(format!("an expression uses dim {d} but the trace has {dims}"));
        }
    }
    Ok(())
}

/// `op` applied to two values.
fn apply(op: ExprOp, a: Fraction, b: Fraction) -> Option<Fraction> {
    match op {
        ExprOp::Poly => None,
        ExprOp::Add => ratio_add(a, b),
        ExprOp::Sub => ratio_add(a, (b.0.checked_neg()?, b.1)),
        ExprOp::Mul => ratio_mul(a, b),
        ExprOp::FloorDiv => Some((ratio_floor_div(a, b)?, 1)),
        ExprOp::CeilDiv => Some((ratio_floor_div((a.0.checked_neg()?, a.1), b)?.checked_neg()?, 1)),
        ExprOp::Mod => {
            let q = ratio_floor_div(a, b)?;
            ratio_add(a, ratio_mul(b, (q.checked_neg()?, 1))?)
        }
        // Denominators are positive: compare the cross products.
        ExprOp::Min => Some(if a.0.checked_mul(b.1)? <= b.0.checked_mul(a.1)? { a } else { b }),
        ExprOp::Max => Some(if a.0.checked_mul(b.1)? >= b.0.checked_mul(a.1)? { a } else { b }),
    }
}

impl Expr {
    /// The value at `sizes` (one per dim) as a fraction in lowest terms
    /// with a positive denominator, or None when it overflows, divides by
    /// zero or names a dim or step that does not exist.
    pub fn value(&self, sizes: &[i64]) -> Option<(i128, i128)> {
        if self.program.is_empty() {
            return polynomial(self.constant, &self.terms, sizes);
        }
        let mut done: Vec<Fraction> = Vec::with_capacity(self.program.len());
        for step in &self.program {
            let value = match step.op {
                ExprOp::Poly => polynomial(step.constant, &step.terms, sizes)?,
                op => apply(op, *done.get(step.a as usize)?, *done.get(step.b as usize)?)?,
            };
            done.push(value);
        }
        done.last().copied()
    }

    /// Describe what is wrong with the expression for a trace of `dims`
    /// dynamic sizes, if anything: a bad denominator or dim, a program too
    /// long, an operand that is not an earlier step, a division by a
    /// constant zero.
    pub fn check(&self, dims: usize) -> Result<(), String> {
        check_polynomial(self.constant, &self.terms, dims)?;
        if self.program.is_empty() {
            return Ok(());
        }
        if self.program.len() > MAX_EXPR_STEPS {
            return Err(format!("an expression has {} steps (at most {MAX_EXPR_STEPS})", self.program.len()));
        }
        if self.constant.0 != 0 || !self.terms.is_empty() {
            return Err("an expression has both a program and a polynomial".into());
        }
        // The value of each step that does not depend on the sizes.
        let mut constant: Vec<Option<Fraction>> = Vec::with_capacity(self.program.len());
        for (i, step) in self.program.iter().enumerate() {
            if step.op == ExprOp::Poly {
                check_polynomial(step.constant, &step.terms, dims).map_err(|p| format!("step {i}: {p}"))?;
                constant.push(if step.terms.is_empty() { polynomial(step.constant, &[], &[]) } else { None });
                continue;
            }
            if step.a as usize >= i || step.b as usize >= i {
                return Err(format!("step {i} uses steps {} and {}, not both before it", step.a, step.b));
            }
            let (a, b) = (constant[step.a as usize], constant[step.b as usize]);
            if step.op.divides() && b.is_some_and(|b| b.0 == 0) {
                return Err(format!("step {i} divides by zero"));
            }
            constant.push(match (a, b) {
                (Some(a), Some(b)) => Some(apply(step.op, a, b).ok_or_else(|| format!("step {i} overflows"))?),
                _ => None,
            });
        }
        Ok(())
    }

    /// Whether the expression is a program (format 3).
    pub fn is_program(&self) -> bool {
        !self.program.is_empty()
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

    /// Whether an expression of the trace is a program (format 3).
    pub fn has_programs(&self) -> bool {
        let mut exprs = Vec::new();
        for node in &self.nodes {
            node.args.iter().for_each(|a| a.exprs(&mut exprs));
            exprs.extend(node.output_exprs.iter().filter_map(|o| o.expr.as_ref()));
        }
        exprs.extend(self.constant_exprs.iter().map(|c| &c.expr));
        exprs.iter().any(|e| e.is_program())
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

impl Graph {
    /// The oldest format version that holds the graph: 3 when an expression
    /// is a program (a version-2 reader would read it as its empty
    /// polynomial), else 2 (what every version-2 reader reads).
    pub fn format_version(&self) -> u32 {
        if self.traces.iter().any(Trace::has_programs) {
            3
        } else {
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poly(constant: i64, coeff: i64) -> Step {
        let terms = if coeff == 0 { vec![] } else { vec![Term { coeff: (coeff, 1), dims: vec![0] }] };
        Step { op: ExprOp::Poly, constant: (constant, 1), terms, a: 0, b: 0 }
    }

    /// `op(d0 + shift, divisor)` as a program.
    fn binary(op: ExprOp, shift: i64, divisor: i64) -> Expr {
        let program = vec![poly(shift, 1), poly(divisor, 0), Step { op, a: 0, b: 1, ..poly(0, 0) }];
        Expr { program, ..Expr::default() }
    }

    #[test]
    fn programs_evaluate_as_python_does() {
        // Python: floor division, ceiling division and % with the divisor's sign.
        for n in -9i64..=9 {
            for d in [-4i64, -3, 2, 5] {
                let at = |op| binary(op, 0, d).value(&[n]).unwrap();
                // Rust's `/` truncates: step down when the signs differ and it does not divide.
                let floor = n / d - i64::from(n % d != 0 && (n < 0) != (d < 0));
                let ceil = n / d + i64::from(n % d != 0 && (n < 0) == (d < 0));
                assert_eq!(at(ExprOp::FloorDiv), (i128::from(floor), 1), "{n} // {d}");
                assert_eq!(at(ExprOp::CeilDiv), (i128::from(ceil), 1), "ceil({n} / {d})");
                let m = n - d * floor;
                assert_eq!(at(ExprOp::Mod), (i128::from(m), 1), "{n} % {d}");
                assert!(m == 0 || (m < 0) == (d < 0));
                assert_eq!(at(ExprOp::Min), (i128::from(n.min(d)), 1));
                assert_eq!(at(ExprOp::Max), (i128::from(n.max(d)), 1));
                assert_eq!(at(ExprOp::Sub), (i128::from(n - d), 1));
                assert_eq!(at(ExprOp::Mul), (i128::from(n * d), 1));
            }
        }
        // ((n + 255) // 256) * 256, and exact fractions: floor(n/2 / (3/4)).
        let mut round = binary(ExprOp::FloorDiv, 255, 256);
        round.program.push(Step { op: ExprOp::Mul, a: 2, b: 1, ..poly(0, 0) });
        assert_eq!([1, 256, 257, 600].map(|n| round.value(&[n]).unwrap().0), [256, 256, 512, 768]);
        let half = Step { op: ExprOp::Poly, terms: vec![Term { coeff: (1, 2), dims: vec![0] }], ..poly(0, 0) };
        let quarters = Step { op: ExprOp::Poly, constant: (3, 4), ..poly(0, 0) };
        let floor = Step { op: ExprOp::FloorDiv, a: 0, b: 1, ..poly(0, 0) };
        let frac = Expr { program: vec![half, quarters, floor], ..Expr::default() };
        assert_eq!(frac.value(&[7]), Some((4, 1))); // 3.5 / 0.75 = 4.67
        assert_eq!(binary(ExprOp::Min, 0, 3).check(1), Ok(()));
    }

    #[test]
    fn bad_programs_are_described() {
        let problem = |e: &Expr| e.check(1).unwrap_err();
        assert!(problem(&binary(ExprOp::FloorDiv, 0, 0)).contains("step 2 divides by zero"));
        assert!(problem(&binary(ExprOp::Mod, 0, 0)).contains("divides by zero"));
        // A divisor that is zero only at some sizes is refused at the call (no value).
        let by_size = Expr {
            program: vec![poly(0, 1), Step { op: ExprOp::FloorDiv, a: 0, b: 0, ..poly(0, 0) }],
            ..Expr::default()
        };
        assert_eq!(by_size.check(1), Ok(()));
        assert_eq!(by_size.value(&[0]), None);
        let mut forward = binary(ExprOp::Add, 0, 1);
        forward.program[2].b = 2;
        assert!(problem(&forward).contains("step 2 uses steps 0 and 2, not both before it"));
        let mut both = binary(ExprOp::Add, 0, 1);
        both.constant = (1, 1);
        assert!(problem(&both).contains("both a program and a polynomial"));
        let long = Expr { program: vec![poly(1, 0); MAX_EXPR_STEPS + 1], ..Expr::default() };
        assert!(problem(&long).contains("65 steps"));
        let mut dim = binary(ExprOp::Add, 0, 1);
        dim.program[0].terms[0].dims = vec![3];
        assert!(problem(&dim).contains("step 0: an expression uses dim 3"));
        let huge = Expr {
            program: vec![
                poly(i64::MAX, 0),
                Step { op: ExprOp::Mul, a: 0, b: 0, ..poly(0, 0) },
                Step { op: ExprOp::Mul, a: 1, b: 1, ..poly(0, 0) },
            ],
            ..Expr::default()
        };
        assert!(problem(&huge).contains("step 2 overflows"));
        assert_eq!(ExprOp::from_code(9), None);
        assert!(ExprOp::ALL.iter().all(|op| ExprOp::from_code(op.code()) == Some(*op)));
    }
}
