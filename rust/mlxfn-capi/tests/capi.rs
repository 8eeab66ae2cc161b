//! The C ABI as a C caller uses it: write files with the core's writer, open
//! them by path and from bytes, walk the C structs back into the core's model
//! (they must give the graph that was written), read the constants, and
//! check that bad input gives an error, never a crash.

#[path = "../../mlxfn-core/tests/fixtures/mod.rs"]
mod fixtures;

use std::ffi::{c_char, CStr, CString};
use std::path::Path;
use std::ptr;

use fixtures::{affine, consts, data, info, sample_graph};
use mlxfn_capi::dtype::*;
use mlxfn_capi::error::*;
use mlxfn_capi::file::*;
use mlxfn_capi::graph::*;
use mlxfn_core::dtype::ALL_DTYPES;
use mlxfn_core::{
    write_file, Arg, ConstantData, ConstantExpr, DType, Dim, Expr, ExprOp, Graph, Node, OutputExpr, Step, TensorInfo,
    Term, Trace, WriteOptions,
};

/// A slice from a C pointer and length (null with 0 is empty).
fn view<'a, T>(ptr: *const T, len: usize) -> &'a [T] {
    if len == 0 {
        return &[];
    }
    assert!(!ptr.is_null());
    unsafe { std::slice::from_raw_parts(ptr, len) }
}

fn string(s: MlxfnString) -> String {
    let bytes = view(s.ptr.cast::<u8>(), s.len);
    assert_eq!(unsafe { *s.ptr.add(s.len) }, 0, "NUL-terminated");
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn ratio(r: MlxfnRatio) -> (i64, i64) {
    (r.num, r.den)
}

fn terms(ptr: *const MlxfnTerm, len: usize) -> Vec<Term> {
    view(ptr, len).iter().map(|t| Term { coeff: ratio(t.coeff), dims: view(t.dims, t.dims_len).to_vec() }).collect()
}

fn expr(e: &MlxfnExpr) -> Expr {
    let program = view(e.program, e.program_len)
        .iter()
        .map(|s| Step { op: s.op, constant: ratio(s.constant), terms: terms(s.terms, s.terms_len), a: s.a, b: s.b })
        .collect();
    Expr { constant: ratio(e.constant), terms: terms(e.terms, e.terms_len), integer: e.integer, program }
}

fn arg(a: &MlxfnArg) -> Arg {
    match a.kind {
        MlxfnArgKind::None => Arg::None,
        MlxfnArgKind::Bool => Arg::Bool(a.int_value != 0),
        MlxfnArgKind::Int => Arg::Int(a.int_value),
        MlxfnArgKind::Float => Arg::Float(a.float_value),
        MlxfnArgKind::Str => Arg::Str(string(a.str_value)),
        MlxfnArgKind::Dtype => Arg::Dtype(DType::from_code(a.int_value as u8).unwrap()),
        MlxfnArgKind::Ints => Arg::Ints { values: view(a.ints, a.ints_len).to_vec(), tuple: a.is_tuple },
        MlxfnArgKind::List => {
            Arg::List { items: view(a.items, a.items_len).iter().map(arg).collect(), tuple: a.is_tuple }
        }
        MlxfnArgKind::Expr => Arg::Expr(expr(unsafe { &*a.expr })),
    }
}

fn tensor(t: &MlxfnTensorInfo) -> TensorInfo {
    TensorInfo { shape: view(t.shape, t.shape_len).to_vec(), dtype: t.dtype }
}

fn node(n: &MlxfnNode) -> Node {
    Node {
        op: string(n.op),
        args: view(n.args, n.args_len).iter().map(arg).collect(),
        inputs: view(n.inputs, n.inputs_len).to_vec(),
        outputs: view(n.outputs, n.outputs_len).iter().map(tensor).collect(),
        output_exprs: view(n.output_exprs, n.output_exprs_len)
            .iter()
            .map(|o| OutputExpr { output: o.output, axis: o.axis, expr: unsafe { o.expr.as_ref() }.map(expr) })
            .collect(),
    }
}

fn trace(t: &MlxfnTrace) -> Trace {
    Trace {
        keyword_names: view(t.keyword_names, t.keyword_names_len).iter().map(|s| string(*s)).collect(),
        inputs: view(t.inputs, t.inputs_len).iter().map(tensor).collect(),
        constants: view(t.constants, t.constants_len).to_vec(),
        nodes: view(t.nodes, t.nodes_len).iter().map(node).collect(),
        outputs: view(t.outputs, t.outputs_len).to_vec(),
        dims: view(t.dims, t.dims_len)
            .iter()
            .map(|d| Dim {
                axes: view(d.axes, d.axes_len).iter().map(|a| (a.input, a.axis)).collect(),
                min: d.min,
                max: d.max,
            })
            .collect(),
        constant_exprs: view(t.constant_exprs, t.constant_exprs_len)
            .iter()
            .map(|c| ConstantExpr { position: c.position, expr: expr(&c.expr) })
            .collect(),
    }
}

/// The C view of a graph, back in the core's model.
fn graph(g: &MlxfnGraph) -> Graph {
    Graph {
        mlx_version: string(g.mlx_version),
        metadata: string(g.metadata),
        shapeless: g.shapeless,
        traces: view(g.traces, g.traces_len).iter().map(trace).collect(),
    }
}

/// The fixtures' sample plus a dynamic trace with a constant that follows
/// the size, and a constant large enough for pages of its own.
fn big_graph() -> Graph {
    let mut g = sample_graph();
    g.traces.push(Trace {
        inputs: vec![info(&[4], DType::Int32)],
        constants: vec![3, 4],
        outputs: vec![1, 2],
        dims: vec![Dim { axes: vec![(0, 0)], min: 1, max: 8 }],
        constant_exprs: vec![ConstantExpr { position: 0, expr: affine(1, 2) }],
        ..Trace::default()
    });
    g
}

const SCALAR: [u8; 4] = 9i32.to_le_bytes();

fn pages_bytes() -> Vec<u8> {
    (0..(1 << 20) + 40).map(|i| (i % 253) as u8).collect()
}

fn write_big(path: &Path) -> Vec<Vec<u8>> {
    let c = consts();
    let pages = pages_bytes();
    let mut constants = data(&c);
    constants.push(ConstantData { shape: &[], dtype: DType::Int32, bytes: &SCALAR });
    let shape = [pages.len() as i64];
    constants.push(ConstantData { shape: &shape, dtype: DType::UInt8, bytes: &pages });
    write_file(path, &big_graph(), &constants, WriteOptions::default()).unwrap();
    vec![c.small.clone(), c.large.clone(), c.empty.clone(), SCALAR.to_vec(), pages.clone()]
}

fn message(err: *const MlxfnError) -> String {
    unsafe { CStr::from_ptr(mlxfn_error_message(err)) }.to_str().unwrap().to_owned()
}

/// Open `path`, expecting success.
fn open(path: &Path) -> *mut MlxfnFile {
    let c_path = CString::new(path.to_str().unwrap()).unwrap();
    let mut err = ptr::dangling_mut::<MlxfnError>();
    let file = unsafe { mlxfn_file_open(c_path.as_ptr(), &mut err) };
    assert!(!file.is_null() && err.is_null(), "{}", message(err));
    file
}

/// Open bytes, expecting failure: (kind, message).
fn refuse_bytes(bytes: &[u8], name: Option<&CStr>) -> (MlxfnErrorKind, String) {
    let mut err = ptr::null_mut();
    let name = name.map_or(ptr::null(), CStr::as_ptr);
    let file = unsafe { mlxfn_file_open_bytes(bytes.as_ptr(), bytes.len(), name, &mut err) };
    assert!(file.is_null() && !err.is_null());
    let out = (unsafe { mlxfn_error_kind(err) }, message(err));
    unsafe { mlxfn_error_free(err) };
    out
}

/// Every field of `file` against what was written.
fn check_file(file: *mut MlxfnFile, expected: &[Vec<u8>]) {
    let g = unsafe { &*mlxfn_file_graph(file) };
    assert_eq!(graph(g), big_graph());
    assert_eq!(g.format_version, 3, "the sample holds a program");
    assert_eq!(string(g.mlxfn_version), unsafe { &*file }.core().mlxfn_version());
    let constants = view(g.constants, g.constants_len);
    assert_eq!(constants.len(), expected.len());
    let core = unsafe { &*file }.core();
    for (i, (c, bytes)) in constants.iter().zip(expected).enumerate() {
        assert_eq!(view(c.data, c.length as usize), &bytes[..], "constant {i}");
        assert_eq!((c.dtype, view(c.shape, c.shape_len)), (core.constants()[i].dtype, &core.constants()[i].shape[..]));
        assert_eq!((c.offset, c.hash), (core.constant_offset(i), core.constants()[i].hash));
    }
    assert!(constants[2].data.is_null() && constants[2].length == 0);
    // The 1 MiB constant has whole pages of its own; small ones have none.
    let pages = &constants[4];
    assert!(!pages.pages.is_null() && pages.pages == pages.data);
    assert_eq!(pages.pages_len % (16 << 10), 0);
    assert!(pages.pages_len >= pages.length as usize && pages.offset % (16 << 10) == 0);
    assert!(constants[0].pages.is_null() && constants[0].pages_len == 0);
    let mut err = ptr::dangling_mut();
    assert!(unsafe { mlxfn_file_check_unchanged(file, &mut err) } && err.is_null());
    assert!(unsafe { mlxfn_file_verify(file, &mut err) } && err.is_null());
    // Copies: two constants at once, then a bad index.
    let (mut small, mut big) = (vec![0u8; expected[0].len()], vec![0u8; expected[4].len()]);
    let (indices, dsts) = ([4usize, 0], [big.as_mut_ptr(), small.as_mut_ptr()]);
    assert!(unsafe { mlxfn_file_copy_constants(file, indices.as_ptr(), dsts.as_ptr(), 2, &mut err) });
    assert_eq!((&small, &big), (&expected[0], &expected[4]));
    assert!(!unsafe { mlxfn_file_copy_constants(file, [9usize].as_ptr(), dsts.as_ptr(), 1, &mut err) });
    assert_eq!(unsafe { mlxfn_error_kind(err) }, MlxfnErrorKind::Usage);
    assert!(message(err).ends_with("constant 9 out of range: the file has 5"), "{}", message(err));
    unsafe { mlxfn_error_free(err) };
}

#[test]
fn a_file_opened_by_path_gives_back_its_graph_and_constants() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.mlxfn");
    let expected = write_big(&path);
    let file = open(&path);
    check_file(file, &expected);
    assert!(unsafe { mlxfn_file_fd(file) } >= 0);
    assert_eq!(string(unsafe { mlxfn_file_path(file) }), path.to_str().unwrap());
    assert_eq!(unsafe { mlxfn_file_size(file) }, std::fs::metadata(&path).unwrap().len());
    unsafe { mlxfn_file_free(file) };
}

#[test]
fn a_file_in_memory_is_validated_and_read_without_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.mlxfn");
    let expected = write_big(&path);
    let bytes = std::fs::read(&path).unwrap();
    let mut err = ptr::dangling_mut();
    let file = unsafe { mlxfn_file_open_bytes(bytes.as_ptr(), bytes.len(), c"bundled".as_ptr(), &mut err) };
    assert!(!file.is_null() && err.is_null());
    check_file(file, &expected);
    let g = unsafe { &*mlxfn_file_graph(file) };
    let data = view(g.constants, g.constants_len)[4].data;
    assert_eq!(data as usize - bytes.as_ptr() as usize, unsafe { &*file }.core().constant_offset(4) as usize);
    assert_eq!(unsafe { mlxfn_file_fd(file) }, -1);
    assert_eq!(string(unsafe { mlxfn_file_path(file) }), "bundled");
    unsafe { mlxfn_file_free(file) };
}

#[test]
fn bad_bytes_give_the_cores_errors_never_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.mlxfn");
    write_big(&path);
    let bytes = std::fs::read(&path).unwrap();
    let fb_end = 64 + u64::from_le_bytes(bytes[24..32].try_into().unwrap()) as usize;
    // Cut anywhere, or flip bytes of the header and graph: an error naming the buffer.
    for n in [0, 1, 8, 63, 64, 65, 100, 1000, bytes.len() / 2, bytes.len() - 1] {
        let (kind, text) = refuse_bytes(&bytes[..n], Some(c"cut"));
        assert_eq!(kind, MlxfnErrorKind::Format, "cut at {n}: {text}");
        assert!(text.starts_with("cut: "), "{text}");
    }
    for at in (0..fb_end.min(bytes.len())).step_by(7) {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x5a;
        let (kind, _) = refuse_bytes(&flipped, None);
        assert!(matches!(kind, MlxfnErrorKind::Format | MlxfnErrorKind::Version), "byte {at}: {kind:?}");
    }
    let (kind, text) = refuse_bytes(&[0x42; 300], None);
    assert_eq!((kind, text.as_str()), (MlxfnErrorKind::Format, "<memory>: not an mlxfn file (no mlxfn magic number)"));
    // The same messages as Python's exceptions: a truncated file says by how much.
    let (_, text) = refuse_bytes(&bytes[..bytes.len() - 1], Some(c"m"));
    assert_eq!(text, format!("m: truncated: the header says {} bytes, the file has {}", bytes.len(), bytes.len() - 1));
}

#[test]
fn bad_arguments_are_usage_errors() {
    let mut err = ptr::null_mut();
    assert!(unsafe { mlxfn_file_open(ptr::null(), &mut err) }.is_null());
    assert_eq!((unsafe { mlxfn_error_kind(err) }, message(err)), (MlxfnErrorKind::Usage, "path is null".into()));
    unsafe { mlxfn_error_free(err) };
    assert!(unsafe { mlxfn_file_open_bytes(ptr::null(), 10, ptr::null(), &mut err) }.is_null());
    assert_eq!(message(err), "<memory>: data is null but len is 10");
    unsafe { mlxfn_error_free(err) };
    assert!(unsafe { mlxfn_file_open_bytes(ptr::null(), 0, ptr::null(), &mut err) }.is_null());
    assert_eq!(message(err), "<memory>: not an mlxfn file (the file is empty)");
    unsafe { mlxfn_error_free(err) };
    // A missing file: NotFound with errno; no error pointer at all is fine too.
    let missing = c"/nonexistent/dir/x.mlxfn";
    assert!(unsafe { mlxfn_file_open(missing.as_ptr(), &mut err) }.is_null());
    assert_eq!(unsafe { (mlxfn_error_kind(err), mlxfn_error_os_code(err)) }, (MlxfnErrorKind::NotFound, 2));
    assert_eq!(message(err), "/nonexistent/dir/x.mlxfn: no such file");
    unsafe { mlxfn_error_free(err) };
    assert!(unsafe { mlxfn_file_open(missing.as_ptr(), ptr::null_mut()) }.is_null());
    assert!(!unsafe { mlxfn_file_verify(ptr::null(), ptr::null_mut()) });
    assert!(unsafe { mlxfn_file_graph(ptr::null()) }.is_null());
    assert_eq!(unsafe { mlxfn_file_fd(ptr::null()) }, -1);
    unsafe { mlxfn_file_free(ptr::null_mut()) };
    unsafe { mlxfn_error_free(ptr::null_mut()) };
}

#[test]
fn a_file_rewritten_in_place_is_refused_before_its_constants_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.mlxfn");
    write_big(&path);
    let file = open(&path);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len + 1).unwrap();
    let mut err = ptr::null_mut();
    assert!(!unsafe { mlxfn_file_check_unchanged(file, &mut err) });
    assert_eq!(unsafe { mlxfn_error_kind(err) }, MlxfnErrorKind::Format);
    assert!(message(err).contains("the file changed on disk after it was imported"), "{}", message(err));
    unsafe { mlxfn_error_free(err) };
    unsafe { mlxfn_file_free(file) };
}

/// The members of `enum NAME` in the schema, as (name, code).
fn schema_enum(name: &str) -> Vec<(String, u8)> {
    let schema = include_str!("../../mlxfn-core/schema/mlxfn.fbs");
    let start = schema.find(&format!("enum {name} : ubyte {{")).expect("enum in the schema");
    let body = &schema[start..][..schema[start..].find('}').unwrap()];
    body.lines()
        .skip(1)
        .filter_map(|line| {
            let (name, value) = line.split("//").next()?.trim().trim_end_matches(',').split_once(" = ")?;
            Some((name.to_owned(), value.parse().unwrap()))
        })
        .collect()
}

#[test]
fn the_headers_enums_are_the_schemas() {
    let dtypes: Vec<(String, u8)> = ALL_DTYPES.iter().map(|d| (format!("{d:?}"), d.code())).collect();
    assert_eq!(dtypes, schema_enum("DType"));
    let ops: Vec<(String, u8)> = ExprOp::ALL.iter().map(|op| (format!("{op:?}"), *op as u8)).collect();
    assert_eq!(ops, schema_enum("ExprOp"));
    let kinds = [
        MlxfnArgKind::None,
        MlxfnArgKind::Bool,
        MlxfnArgKind::Int,
        MlxfnArgKind::Float,
        MlxfnArgKind::Str,
        MlxfnArgKind::Dtype,
        MlxfnArgKind::Ints,
        MlxfnArgKind::List,
        MlxfnArgKind::Expr,
    ];
    let kinds: Vec<(String, u8)> = kinds.iter().map(|k| (format!("{k:?}"), *k as u8)).collect();
    assert_eq!(kinds, schema_enum("ArgKind"));
}

#[test]
fn dtype_names_are_mlxs() {
    let name = |code| {
        let p: *const c_char = mlxfn_dtype_name(code);
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_owned())
    };
    let names: Vec<String> = (0..mlxfn_dtype_count() as u8).map(|c| name(c).unwrap()).collect();
    assert_eq!(names[..3], ["bool", "uint8", "uint16"]);
    assert_eq!(names[12..], ["bfloat16", "complex64"]);
    assert_eq!(name(14), None);
    assert_eq!((mlxfn_dtype_size(DType::BFloat16.code()), mlxfn_dtype_size(13), mlxfn_dtype_size(200)), (2, 8, 0));
}
