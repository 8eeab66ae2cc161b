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
    /// Shapes and dtypes of the outputs.
    pub outputs: Vec<TensorInfo>,
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
}

impl Trace {
    /// How many value ids the trace defines.
    pub fn value_count(&self) -> usize {
        self.inputs.len()
            + self.constants.len()
            + self.nodes.iter().map(|n| n.outputs.len()).sum::<usize>()
    }

    /// Check that every id refers to a value defined before its use and every
    /// constant index is below `constant_count`; the first problem found is
    /// described in words.
    pub fn check_ids(&self, constant_count: usize) -> Result<(), String> {
        if self.keyword_names.len() > self.inputs.len() {
            return Err(format!(
                "{} keyword names for {} inputs",
                self.keyword_names.len(),
                self.inputs.len()
            ));
        }
        if let Some(c) = self.constants.iter().find(|&&c| c as usize >= constant_count) {
            return Err(format!("constant index {c} but the file has {constant_count} constants"));
        }
        let mut defined = self.inputs.len() + self.constants.len();
        for (n, node) in self.nodes.iter().enumerate() {
            if let Some(i) = node.inputs.iter().find(|&&i| i as usize >= defined) {
                return Err(format!(
                    "node {n} ({}) uses value {i} but only {defined} are defined before it",
                    node.op
                ));
            }
            defined += node.outputs.len();
        }
        if let Some(o) = self.outputs.iter().find(|&&o| o as usize >= defined) {
            return Err(format!("output refers to value {o} but only {defined} are defined"));
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
