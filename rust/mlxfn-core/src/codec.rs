//! Graph <-> FlatBuffers. Decoding validates every value it reads, so a
//! decoded graph only holds known dtypes and arg kinds.

use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, Vector, VerifierOptions, WIPOffset};

use crate::dtype::DType;
use crate::generated as fb;
use crate::model::{
    Arg, ConstantExpr, Dim, Expr, ExprOp, Graph, Node, OutputExpr, Step, TensorInfo, Term, Trace, MAX_EXPR_STEPS,
};

/// Where one constant's bytes live, as stored in the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct ConstantEntry {
    /// Dimensions.
    pub shape: Vec<i64>,
    /// Element type.
    pub dtype: DType,
    /// Index of the segment holding the bytes.
    pub segment: u32,
    /// Offset of the bytes within the segment.
    pub offset: u64,
    /// Number of bytes.
    pub length: u64,
    /// xxh3-64 of the bytes.
    pub hash: u64,
}

/// A region of the segment area, relative to the area's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentEntry {
    /// Offset from the start of the segment area.
    pub offset: u64,
    /// Length in bytes.
    pub size: u64,
}

/// The decoded contents of a graph flatbuffer.
#[derive(Debug)]
pub struct Decoded {
    /// The format version recorded in the graph.
    pub format_version: u32,
    /// The mlxfn version that wrote the file.
    pub mlxfn_version: String,
    /// The graph proper.
    pub graph: Graph,
    /// Constant table.
    pub constants: Vec<ConstantEntry>,
    /// Segment table.
    pub segments: Vec<SegmentEntry>,
}

type Fbb<'a> = FlatBufferBuilder<'a>;

fn tensor<'a>(fbb: &mut Fbb<'a>, t: &TensorInfo) -> WIPOffset<fb::TensorInfo<'a>> {
    let shape = fbb.create_vector(&t.shape);
    fb::TensorInfo::create(fbb, &fb::TensorInfoArgs { shape: Some(shape), dtype: fb::DType(t.dtype.code()) })
}

fn tensors<'a>(fbb: &mut Fbb<'a>, ts: &[TensorInfo]) -> WIPOffset<Vector<'a, ForwardsUOffset<fb::TensorInfo<'a>>>> {
    let items: Vec<_> = ts.iter().map(|t| tensor(fbb, t)).collect();
    fbb.create_vector(&items)
}

fn terms<'a>(fbb: &mut Fbb<'a>, terms: &[Term]) -> WIPOffset<Vector<'a, ForwardsUOffset<fb::Term<'a>>>> {
    let terms: Vec<_> = terms
        .iter()
        .map(|t| {
            let dims = fbb.create_vector(&t.dims);
            fb::Term::create(fbb, &fb::TermArgs { coeff_num: t.coeff.0, coeff_den: t.coeff.1, dims: Some(dims) })
        })
        .collect();
    fbb.create_vector(&terms)
}

fn expr<'a>(fbb: &mut Fbb<'a>, e: &Expr) -> WIPOffset<fb::Expr<'a>> {
    let steps: Vec<_> = e
        .program
        .iter()
        .map(|step| {
            let terms = (!step.terms.is_empty()).then(|| terms(fbb, &step.terms));
            fb::ExprStep::create(
                fbb,
                &fb::ExprStepArgs {
                    op: fb::ExprOp(step.op.code()),
                    constant_num: step.constant.0,
                    constant_den: step.constant.1,
                    terms,
                    a: step.a,
                    b: step.b,
                },
            )
        })
        .collect();
    // Absent in a polynomial: the bytes of a format-2 expression are unchanged.
    let program = (!steps.is_empty()).then(|| fbb.create_vector(&steps));
    let terms = terms(fbb, &e.terms);
    fb::Expr::create(
        fbb,
        &fb::ExprArgs {
            constant_num: e.constant.0,
            constant_den: e.constant.1,
            terms: Some(terms),
            integer: e.integer,
            program,
        },
    )
}

fn arg<'a>(fbb: &mut Fbb<'a>, a: &Arg) -> WIPOffset<fb::Arg<'a>> {
    let mut args = fb::ArgArgs::default();
    match a {
        Arg::None => args.kind = fb::ArgKind::None,
        Arg::Bool(b) => (args.kind, args.int_value) = (fb::ArgKind::Bool, i64::from(*b)),
        Arg::Int(i) => (args.kind, args.int_value) = (fb::ArgKind::Int, *i),
        Arg::Float(f) => (args.kind, args.float_value) = (fb::ArgKind::Float, *f),
        Arg::Str(s) => (args.kind, args.str_value) = (fb::ArgKind::Str, Some(fbb.create_string(s))),
        Arg::Dtype(d) => (args.kind, args.int_value) = (fb::ArgKind::Dtype, i64::from(d.code())),
        Arg::Ints { values, tuple } => {
            (args.kind, args.is_tuple) = (fb::ArgKind::Ints, *tuple);
            args.ints = Some(fbb.create_vector(values));
        }
        Arg::List { items, tuple } => {
            let offsets: Vec<_> = items.iter().map(|i| arg(fbb, i)).collect();
            (args.kind, args.is_tuple) = (fb::ArgKind::List, *tuple);
            args.items = Some(fbb.create_vector(&offsets));
        }
        Arg::Expr(e) => (args.kind, args.expr) = (fb::ArgKind::Expr, Some(expr(fbb, e))),
    }
    fb::Arg::create(fbb, &args)
}

fn trace<'a>(fbb: &mut Fbb<'a>, t: &Trace) -> WIPOffset<fb::Trace<'a>> {
    let names: Vec<_> = t.keyword_names.iter().map(|n| fbb.create_string(n)).collect();
    let keyword_names = fbb.create_vector(&names);
    let inputs = tensors(fbb, &t.inputs);
    let constants = fbb.create_vector(&t.constants);
    let nodes: Vec<_> = t
        .nodes
        .iter()
        .map(|n| {
            let op = fbb.create_string(&n.op);
            let arg_offsets: Vec<_> = n.args.iter().map(|a| arg(fbb, a)).collect();
            let args = fbb.create_vector(&arg_offsets);
            let inputs = fbb.create_vector(&n.inputs);
            let outputs = tensors(fbb, &n.outputs);
            let output_exprs: Vec<_> = n
                .output_exprs
                .iter()
                .map(|o| {
                    let e = o.expr.as_ref().map(|e| expr(fbb, e));
                    fb::OutputExpr::create(fbb, &fb::OutputExprArgs { output: o.output, axis: o.axis, expr: e })
                })
                .collect();
            let output_exprs = (!output_exprs.is_empty()).then(|| fbb.create_vector(&output_exprs));
            fb::Node::create(
                fbb,
                &fb::NodeArgs {
                    op: Some(op),
                    args: Some(args),
                    inputs: Some(inputs),
                    outputs: Some(outputs),
                    output_exprs,
                },
            )
        })
        .collect();
    let nodes = fbb.create_vector(&nodes);
    let outputs = fbb.create_vector(&t.outputs);
    let dims: Vec<_> = t
        .dims
        .iter()
        .map(|d| {
            let axes: Vec<_> = d
                .axes
                .iter()
                .map(|&(input, axis)| fb::InputAxis::create(fbb, &fb::InputAxisArgs { input, axis }))
                .collect();
            let axes = fbb.create_vector(&axes);
            fb::Dim::create(fbb, &fb::DimArgs { axes: Some(axes), min: d.min, max: d.max })
        })
        .collect();
    let dims = (!dims.is_empty()).then(|| fbb.create_vector(&dims));
    let constant_exprs: Vec<_> = t
        .constant_exprs
        .iter()
        .map(|c| {
            let e = expr(fbb, &c.expr);
            fb::ConstantExpr::create(fbb, &fb::ConstantExprArgs { position: c.position, expr: Some(e) })
        })
        .collect();
    let constant_exprs = (!constant_exprs.is_empty()).then(|| fbb.create_vector(&constant_exprs));
    fb::Trace::create(
        fbb,
        &fb::TraceArgs {
            keyword_names: Some(keyword_names),
            inputs: Some(inputs),
            constants: Some(constants),
            nodes: Some(nodes),
            outputs: Some(outputs),
            dims,
            constant_exprs,
        },
    )
}

/// Serialize a graph with its constant and segment tables.
pub fn encode(
    graph: &Graph,
    format_version: u32,
    mlxfn_version: &str,
    constants: &[ConstantEntry],
    segments: &[SegmentEntry],
) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::with_capacity(1 << 16);
    let traces: Vec<_> = graph.traces.iter().map(|t| trace(&mut fbb, t)).collect();
    let traces = fbb.create_vector(&traces);
    let consts: Vec<_> = constants
        .iter()
        .map(|c| {
            let shape = fbb.create_vector(&c.shape);
            fb::Constant::create(
                &mut fbb,
                &fb::ConstantArgs {
                    shape: Some(shape),
                    dtype: fb::DType(c.dtype.code()),
                    segment: c.segment,
                    offset: c.offset,
                    length: c.length,
                    hash: c.hash,
                },
            )
        })
        .collect();
    let consts = fbb.create_vector(&consts);
    let segs: Vec<_> = segments
        .iter()
        .map(|s| fb::Segment::create(&mut fbb, &fb::SegmentArgs { offset: s.offset, size: s.size }))
        .collect();
    let segs = fbb.create_vector(&segs);
    let root = fb::GraphArgs {
        format_version,
        mlxfn_version: Some(fbb.create_string(mlxfn_version)),
        mlx_version: Some(fbb.create_string(&graph.mlx_version)),
        metadata: Some(fbb.create_string(&graph.metadata)),
        shapeless: graph.shapeless,
        traces: Some(traces),
        constants: Some(consts),
        segments: Some(segs),
    };
    let root = fb::Graph::create(&mut fbb, &root);
    fb::finish_graph_buffer(&mut fbb, root);
    fbb.finished_data().to_vec()
}

fn dtype(code: fb::DType, what: impl Fn() -> String) -> Result<DType, String> {
    DType::from_code(code.0).ok_or_else(|| format!("{}: unknown dtype code {}", what(), code.0))
}

fn decode_tensors(
    v: Option<Vector<'_, ForwardsUOffset<fb::TensorInfo<'_>>>>,
    what: &dyn Fn() -> String,
) -> Result<Vec<TensorInfo>, String> {
    v.iter()
        .flatten()
        .enumerate()
        .map(|(i, t)| {
            let shape: Vec<i64> = t.shape().map(|s| s.iter().collect()).unwrap_or_default();
            let dtype = dtype(t.dtype(), || format!("{} {i}", what()))?;
            if let Some(d) = shape.iter().find(|&&d| d < 0) {
                return Err(format!("{} {i}: negative dimension {d}", what()));
            }
            Ok(TensorInfo { shape, dtype })
        })
        .collect()
}

fn decode_terms(terms: Option<Vector<'_, ForwardsUOffset<fb::Term<'_>>>>) -> Vec<Term> {
    terms
        .iter()
        .flatten()
        .map(|t| Term {
            coeff: (t.coeff_num(), t.coeff_den()),
            dims: t.dims().map(|d| d.iter().collect()).unwrap_or_default(),
        })
        .collect()
}

fn decode_expr(e: Option<fb::Expr<'_>>, what: &dyn Fn() -> String) -> Result<Expr, String> {
    let e = e.ok_or_else(|| format!("{}: an expression is missing", what()))?;
    let steps = e.program().map_or(0, |p| p.len());
    if steps > MAX_EXPR_STEPS {
        return Err(format!("{}: an expression has {steps} steps (at most {MAX_EXPR_STEPS})", what()));
    }
    let program = e
        .program()
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, step)| {
            let op = ExprOp::from_code(step.op().0)
                .ok_or_else(|| format!("{}: expression step {i} has an unknown op {}", what(), step.op().0))?;
            Ok(Step {
                op,
                constant: (step.constant_num(), step.constant_den()),
                terms: decode_terms(step.terms()),
                a: step.a(),
                b: step.b(),
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(Expr {
        constant: (e.constant_num(), e.constant_den()),
        terms: decode_terms(e.terms()),
        integer: e.integer(),
        program,
    })
}

fn decode_arg(a: fb::Arg<'_>, what: &dyn Fn() -> String) -> Result<Arg, String> {
    Ok(match a.kind() {
        fb::ArgKind::None => Arg::None,
        fb::ArgKind::Bool => Arg::Bool(a.int_value() != 0),
        fb::ArgKind::Int => Arg::Int(a.int_value()),
        fb::ArgKind::Float => Arg::Float(a.float_value()),
        fb::ArgKind::Str => Arg::Str(a.str_value().unwrap_or_default().to_owned()),
        fb::ArgKind::Dtype => {
            let code = u8::try_from(a.int_value()).map_err(|_| format!("{}: bad dtype {}", what(), a.int_value()))?;
            Arg::Dtype(dtype(fb::DType(code), what)?)
        }
        fb::ArgKind::Ints => {
            Arg::Ints { values: a.ints().map(|v| v.iter().collect()).unwrap_or_default(), tuple: a.is_tuple() }
        }
        fb::ArgKind::List => Arg::List {
            items: a.items().iter().flatten().map(|i| decode_arg(i, what)).collect::<Result<_, _>>()?,
            tuple: a.is_tuple(),
        },
        fb::ArgKind::Expr => Arg::Expr(decode_expr(a.expr(), what)?),
        other => return Err(format!("{}: unknown arg kind {}", what(), other.0)),
    })
}

fn decode_trace(t: fb::Trace<'_>, ti: usize) -> Result<Trace, String> {
    let keyword_names = t.keyword_names().iter().flatten().map(str::to_owned).collect();
    let inputs = decode_tensors(t.inputs(), &|| format!("trace {ti} input"))?;
    let constants = t.constants().map(|v| v.iter().collect()).unwrap_or_default();
    let mut nodes = Vec::new();
    for (ni, n) in t.nodes().iter().flatten().enumerate() {
        let what = || format!("trace {ti} node {ni}");
        let args = n
            .args()
            .iter()
            .flatten()
            .enumerate()
            .map(|(ai, a)| decode_arg(a, &|| format!("{} arg {ai}", what())))
            .collect::<Result<_, _>>()?;
        let output_exprs = n
            .output_exprs()
            .iter()
            .flatten()
            .map(|o| {
                let expr = o.expr().map(|e| decode_expr(Some(e), &what)).transpose()?;
                Ok(OutputExpr { output: o.output(), axis: o.axis(), expr })
            })
            .collect::<Result<_, String>>()?;
        nodes.push(Node {
            op: n.op().unwrap_or_default().to_owned(),
            args,
            inputs: n.inputs().map(|v| v.iter().collect()).unwrap_or_default(),
            outputs: decode_tensors(n.outputs(), &|| format!("{} output", what()))?,
            output_exprs,
        });
    }
    let outputs = t.outputs().map(|v| v.iter().collect()).unwrap_or_default();
    let dims = t
        .dims()
        .iter()
        .flatten()
        .map(|d| Dim {
            axes: d.axes().iter().flatten().map(|a| (a.input(), a.axis())).collect(),
            min: d.min(),
            max: d.max(),
        })
        .collect();
    let what = || format!("trace {ti} constant expression");
    let constant_exprs = t
        .constant_exprs()
        .iter()
        .flatten()
        .map(|c| Ok(ConstantExpr { position: c.position(), expr: decode_expr(c.expr(), &what)? }))
        .collect::<Result<_, String>>()?;
    Ok(Trace { keyword_names, inputs, constants, nodes, outputs, dims, constant_exprs })
}

/// Verify and decode a graph flatbuffer. Errors are plain descriptions; the
/// reader adds the path.
pub fn decode(bytes: &[u8]) -> Result<Decoded, String> {
    if bytes.len() < 8 || !fb::graph_buffer_has_identifier(bytes) {
        return Err("missing the MLXF identifier".into());
    }
    let opts = VerifierOptions {
        max_depth: 64,
        max_tables: bytes.len() / 4 + 64,
        max_apparent_size: bytes.len().saturating_mul(4).max(1 << 20),
        ignore_missing_null_terminator: false,
    };
    let root = fb::root_as_graph_with_opts(&opts, bytes).map_err(|e| e.to_string())?;
    let graph = Graph {
        mlx_version: root.mlx_version().unwrap_or_default().to_owned(),
        metadata: root.metadata().unwrap_or_default().to_owned(),
        shapeless: root.shapeless(),
        traces: root
            .traces()
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, t)| decode_trace(t, i))
            .collect::<Result<_, _>>()?,
    };
    let constants = root
        .constants()
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| {
            Ok(ConstantEntry {
                shape: c.shape().map(|v| v.iter().collect()).unwrap_or_default(),
                dtype: dtype(c.dtype(), || format!("constant {i}"))?,
                segment: c.segment(),
                offset: c.offset(),
                length: c.length(),
                hash: c.hash(),
            })
        })
        .collect::<Result<_, String>>()?;
    let segments =
        root.segments().iter().flatten().map(|s| SegmentEntry { offset: s.offset(), size: s.size() }).collect();
    Ok(Decoded {
        format_version: root.format_version(),
        mlxfn_version: root.mlxfn_version().unwrap_or_default().to_owned(),
        graph,
        constants,
        segments,
    })
}
