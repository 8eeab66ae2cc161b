//! Python values <-> the core's graph model. Dtypes travel through the table
//! of Python objects the package registered (code i <-> table[i]), so this
//! crate never imports MLX.

use mlxfn_core::dtype::ALL_DTYPES;
use mlxfn_core::{Arg, ConstantExpr, DType, Dim, Expr, ExprOp, Graph, Node, OutputExpr, Step, TensorInfo, Term, Trace};
use pyo3::conversion::FromPyObjectOwned;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

/// A dynamic size as Python sees it: `([(input, axis)], min, max)`.
type DimRecord = (Vec<(u32, u32)>, i64, i64);

/// The caller's dtype objects, indexed by code.
pub struct DtypeTable<'py>(Vec<Bound<'py, PyAny>>);

impl<'py> DtypeTable<'py> {
    /// The table of registered objects, one per dtype code.
    pub fn from_objects(objects: Vec<Bound<'py, PyAny>>) -> Self {
        debug_assert_eq!(objects.len(), ALL_DTYPES.len());
        DtypeTable(objects)
    }

    /// The code of a dtype object, by identity first, then equality.
    pub fn code_of(&self, obj: &Bound<'py, PyAny>) -> PyResult<Option<DType>> {
        if let Some(i) = self.0.iter().position(|t| t.is(obj)) {
            return Ok(Some(ALL_DTYPES[i]));
        }
        for (i, t) in self.0.iter().enumerate() {
            if t.get_type().is(obj.get_type()) && t.eq(obj)? {
                return Ok(Some(ALL_DTYPES[i]));
            }
        }
        Ok(None)
    }

    /// The dtype object of a code.
    pub fn object(&self, dtype: DType) -> &Bound<'py, PyAny> {
        &self.0[usize::from(dtype.code())]
    }

    fn dtype(&self, obj: &Bound<'py, PyAny>, what: &str) -> PyResult<DType> {
        self.code_of(obj)?.ok_or_else(|| {
            PyTypeError::new_err(format!(
                "{what}: {} is not a known dtype",
                obj.repr().map_or("?".into(), |r| r.to_string())
            ))
        })
    }
}

/// A program step as Python sees it: `(op code, (num, den), terms, a, b)`.
type StepRecord = (u8, (i64, i64), Vec<((i64, i64), Vec<u32>)>, u32, u32);

/// An expression from its record: `{"constant": (num, den), "terms":
/// [((num, den), [dim, ...]), ...], "integer": bool}` (mlxfn.ir.Expr), and
/// for a program (mlxfn.ir.Op) a `"program"` of step records.
fn expr_from_py(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Expr> {
    let dict =
        obj.cast::<PyDict>().map_err(|_| PyTypeError::new_err(format!("{what}: an expression must be a dict")))?;
    let terms: Vec<((i64, i64), Vec<u32>)> = item(dict, "terms")?;
    let to_terms = |terms: Vec<((i64, i64), Vec<u32>)>| terms.into_iter().map(|(coeff, dims)| Term { coeff, dims });
    let steps: Vec<StepRecord> = if dict.contains("program")? { item(dict, "program")? } else { Vec::new() };
    let program = steps
        .into_iter()
        .map(|(op, constant, terms, a, b)| {
            let op = ExprOp::from_code(op)
                .ok_or_else(|| PyValueError::new_err(format!("{what}: unknown expression op {op}")))?;
            Ok(Step { op, constant, terms: to_terms(terms).collect(), a, b })
        })
        .collect::<PyResult<_>>()?;
    Ok(Expr {
        constant: item(dict, "constant")?,
        terms: to_terms(terms).collect(),
        integer: item(dict, "integer")?,
        program,
    })
}

fn expr_to_py<'py>(py: Python<'py>, e: &Expr) -> PyResult<Bound<'py, PyAny>> {
    let dict = PyDict::new(py);
    dict.set_item("constant", e.constant)?;
    let to_terms =
        |terms: &[Term]| -> Vec<((i64, i64), Vec<u32>)> { terms.iter().map(|t| (t.coeff, t.dims.clone())).collect() };
    dict.set_item("terms", to_terms(&e.terms))?;
    dict.set_item("integer", e.integer)?;
    if !e.program.is_empty() {
        let steps: Vec<StepRecord> =
            e.program.iter().map(|s| (s.op.code(), s.constant, to_terms(&s.terms), s.a, s.b)).collect();
        dict.set_item("program", steps)?;
    }
    Ok(dict.into_any())
}

fn arg_from_py(obj: &Bound<'_, PyAny>, table: &DtypeTable<'_>, what: &str) -> PyResult<Arg> {
    if obj.is_none() {
        return Ok(Arg::None);
    }
    if obj.is_instance_of::<PyDict>() {
        return Ok(Arg::Expr(expr_from_py(obj, what)?));
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Arg::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        return Ok(Arg::Int(
            obj.extract::<i64>()
                .map_err(|_| PyValueError::new_err(format!("{what}: integer {obj} does not fit in 64 bits")))?,
        ));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(Arg::Float(f.value()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Arg::Str(s.to_str()?.to_owned()));
    }
    let tuple = obj.is_instance_of::<PyTuple>();
    if tuple || obj.is_instance_of::<PyList>() {
        let items: Vec<Bound<'_, PyAny>> = obj.try_iter()?.collect::<PyResult<_>>()?;
        let all_ints = items.iter().all(|i| i.is_instance_of::<PyInt>() && !i.is_instance_of::<PyBool>());
        if all_ints && !items.is_empty() {
            let values = items.iter().map(|i| i.extract::<i64>()).collect::<PyResult<_>>()?;
            return Ok(Arg::Ints { values, tuple });
        }
        let items = items.iter().map(|i| arg_from_py(i, table, what)).collect::<PyResult<_>>()?;
        return Ok(Arg::List { items, tuple });
    }
    if let Some(dtype) = table.code_of(obj)? {
        return Ok(Arg::Dtype(dtype));
    }
    Err(PyTypeError::new_err(format!(
        "{what}: cannot store an argument of type {}",
        obj.get_type().name().map_or("?".into(), |n| n.to_string())
    )))
}

fn arg_to_py<'py>(py: Python<'py>, arg: &Arg, table: &DtypeTable<'py>) -> PyResult<Bound<'py, PyAny>> {
    Ok(match arg {
        Arg::None => py.None().into_bound(py),
        Arg::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Arg::Int(i) => i.into_pyobject(py)?.into_any(),
        Arg::Float(f) => f.into_pyobject(py)?.into_any(),
        Arg::Str(s) => PyString::new(py, s).into_any(),
        Arg::Dtype(d) => table.object(*d).clone(),
        Arg::Ints { values, tuple: true } => PyTuple::new(py, values)?.into_any(),
        Arg::Ints { values, tuple: false } => PyList::new(py, values)?.into_any(),
        Arg::List { items, tuple } => {
            let items = items.iter().map(|a| arg_to_py(py, a, table)).collect::<PyResult<Vec<_>>>()?;
            if *tuple {
                PyTuple::new(py, items)?.into_any()
            } else {
                PyList::new(py, items)?.into_any()
            }
        }
        Arg::Expr(e) => expr_to_py(py, e)?,
    })
}

fn tensor_from_py(obj: &Bound<'_, PyAny>, table: &DtypeTable<'_>, what: &str) -> PyResult<TensorInfo> {
    let (shape, dtype): (Vec<i64>, Bound<'_, PyAny>) = obj.extract()?;
    Ok(TensorInfo { shape, dtype: table.dtype(&dtype, what)? })
}

/// `(shape tuple, dtype object)`.
pub fn tensor_to_py<'py>(py: Python<'py>, t: &TensorInfo, table: &DtypeTable<'py>) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(py, [PyTuple::new(py, &t.shape)?.into_any(), table.object(t.dtype).clone()])
}

fn tensors_to_py<'py>(py: Python<'py>, ts: &[TensorInfo], table: &DtypeTable<'py>) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, ts.iter().map(|t| tensor_to_py(py, t, table)).collect::<PyResult<Vec<_>>>()?)
}

fn item<'py, T: FromPyObjectOwned<'py>>(dict: &Bound<'py, PyDict>, key: &str) -> PyResult<T> {
    match dict.get_item(key)? {
        Some(v) => v.extract::<T>().map_err(|e| {
            let e: PyErr = e.into();
            PyTypeError::new_err(format!("graph field {key:?}: {e}"))
        }),
        None => Err(PyValueError::new_err(format!("graph is missing the field {key:?}"))),
    }
}

fn trace_from_py(t: &Bound<'_, PyDict>, table: &DtypeTable<'_>, ti: usize) -> PyResult<Trace> {
    let inputs: Vec<Bound<'_, PyAny>> = item(t, "inputs")?;
    let raw_nodes: Vec<Bound<'_, PyAny>> = item(t, "nodes")?;
    let mut nodes = Vec::with_capacity(raw_nodes.len());
    for (ni, n) in raw_nodes.iter().enumerate() {
        type NodeRecord<'a> =
            (String, Vec<Bound<'a, PyAny>>, Vec<u32>, Vec<Bound<'a, PyAny>>, Vec<(u32, u32, Bound<'a, PyAny>)>);
        let (op, args, ins, outs, exprs): NodeRecord<'_> = n.extract()?;
        let what = format!("trace {ti} node {ni} ({op})");
        nodes.push(Node {
            args: args.iter().map(|a| arg_from_py(a, table, &what)).collect::<PyResult<_>>()?,
            inputs: ins,
            outputs: outs.iter().map(|o| tensor_from_py(o, table, &what)).collect::<PyResult<_>>()?,
            output_exprs: exprs
                .iter()
                .map(|(output, axis, e)| {
                    let expr = if e.is_none() { None } else { Some(expr_from_py(e, &what)?) };
                    Ok(OutputExpr { output: *output, axis: *axis, expr })
                })
                .collect::<PyResult<_>>()?,
            op,
        });
    }
    let dims: Vec<DimRecord> = item(t, "dims")?;
    let constant_exprs: Vec<(u32, Bound<'_, PyAny>)> = item(t, "constant_exprs")?;
    let what = format!("trace {ti} constant expression");
    Ok(Trace {
        keyword_names: item(t, "keyword_names")?,
        inputs: inputs
            .iter()
            .map(|i| tensor_from_py(i, table, &format!("trace {ti} input")))
            .collect::<PyResult<_>>()?,
        constants: item(t, "constants")?,
        nodes,
        outputs: item(t, "outputs")?,
        dims: dims.into_iter().map(|(axes, min, max)| Dim { axes, min, max }).collect(),
        constant_exprs: constant_exprs
            .iter()
            .map(|(position, e)| Ok(ConstantExpr { position: *position, expr: expr_from_py(e, &what)? }))
            .collect::<PyResult<_>>()?,
    })
}

/// Read the graph dict documented in `_mlxfn.pyi`.
pub fn graph_from_py(graph: &Bound<'_, PyDict>, table: &DtypeTable<'_>) -> PyResult<Graph> {
    let traces: Vec<Bound<'_, PyDict>> = item(graph, "traces")?;
    Ok(Graph {
        mlx_version: item(graph, "mlx_version")?,
        metadata: item(graph, "metadata")?,
        shapeless: item(graph, "shapeless")?,
        traces: traces.iter().enumerate().map(|(i, t)| trace_from_py(t, table, i)).collect::<PyResult<_>>()?,
    })
}

/// One trace as the dict `write_file` takes.
pub fn trace_to_py<'py>(py: Python<'py>, t: &Trace, table: &DtypeTable<'py>) -> PyResult<Bound<'py, PyDict>> {
    let nodes = t
        .nodes
        .iter()
        .map(|n| {
            let args = n.args.iter().map(|a| arg_to_py(py, a, table)).collect::<PyResult<Vec<_>>>()?;
            let exprs = n
                .output_exprs
                .iter()
                .map(|o| {
                    PyTuple::new(
                        py,
                        [
                            o.output.into_pyobject(py)?.into_any(),
                            o.axis.into_pyobject(py)?.into_any(),
                            match &o.expr {
                                Some(e) => expr_to_py(py, e)?,
                                None => py.None().into_bound(py),
                            },
                        ],
                    )
                })
                .collect::<PyResult<Vec<_>>>()?;
            PyTuple::new(
                py,
                [
                    PyString::new(py, &n.op).into_any(),
                    PyList::new(py, args)?.into_any(),
                    PyList::new(py, &n.inputs)?.into_any(),
                    tensors_to_py(py, &n.outputs, table)?.into_any(),
                    PyList::new(py, exprs)?.into_any(),
                ],
            )
        })
        .collect::<PyResult<Vec<_>>>()?;
    let dict = PyDict::new(py);
    dict.set_item("keyword_names", PyList::new(py, &t.keyword_names)?)?;
    dict.set_item("inputs", tensors_to_py(py, &t.inputs, table)?)?;
    dict.set_item("constants", PyList::new(py, &t.constants)?)?;
    dict.set_item("nodes", PyList::new(py, nodes)?)?;
    dict.set_item("outputs", PyList::new(py, &t.outputs)?)?;
    let dims: Vec<DimRecord> = t.dims.iter().map(|d| (d.axes.clone(), d.min, d.max)).collect();
    dict.set_item("dims", dims)?;
    let constant_exprs = t
        .constant_exprs
        .iter()
        .map(|c| PyTuple::new(py, [c.position.into_pyobject(py)?.into_any(), expr_to_py(py, &c.expr)?]))
        .collect::<PyResult<Vec<_>>>()?;
    dict.set_item("constant_exprs", PyList::new(py, constant_exprs)?)?;
    Ok(dict)
}
