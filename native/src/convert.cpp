#include "convert.h"

#include <stdexcept>

namespace mlxfn::detail {
namespace {

std::string str(const MlxfnString& s) { return std::string(s.ptr, s.len); }

Ratio ratio(const MlxfnRatio& r) { return {r.num, r.den}; }

std::vector<Term> terms(const MlxfnTerm* t, size_t n) {
  std::vector<Term> out(n);
  for (size_t k = 0; k < n; ++k) {
    out[k].coeff = ratio(t[k].coeff);
    out[k].dims.assign(t[k].dims, t[k].dims + t[k].dims_len);
  }
  return out;
}

Expr expr(const MlxfnExpr& e) {
  Expr out;
  out.constant = ratio(e.constant);
  out.terms = terms(e.terms, e.terms_len);
  out.integer = e.integer;
  out.program.resize(e.program_len);
  for (size_t k = 0; k < e.program_len; ++k) {
    const MlxfnExprStep& s = e.program[k];
    Step& step = out.program[k];
    step.op = static_cast<ExprOp>(s.op);
    step.constant = ratio(s.constant);
    step.terms = terms(s.terms, s.terms_len);
    step.a = s.a;
    step.b = s.b;
  }
  return out;
}

Arg arg(const MlxfnArg& a) {
  Arg out;
  switch (a.kind) {
    case MlxfnArgKind_None:
      out.kind = Arg::Kind::None;
      break;
    case MlxfnArgKind_Bool:
      out.kind = Arg::Kind::Bool;
      out.b = a.int_value != 0;
      break;
    case MlxfnArgKind_Int:
      out.kind = Arg::Kind::Int;
      out.i = a.int_value;
      break;
    case MlxfnArgKind_Float:
      out.kind = Arg::Kind::Float;
      out.f = a.float_value;
      break;
    case MlxfnArgKind_Str:
      out.kind = Arg::Kind::Str;
      out.s = str(a.str_value);
      break;
    case MlxfnArgKind_Dtype:
      out.kind = Arg::Kind::Dtype;
      out.dtype = dtype_of(static_cast<MlxfnDType>(a.int_value));
      break;
    case MlxfnArgKind_Ints:
      out.kind = Arg::Kind::Ints;
      out.ints.assign(a.ints, a.ints + a.ints_len);
      break;
    case MlxfnArgKind_List:
      out.kind = Arg::Kind::List;
      out.items.reserve(a.items_len);
      for (size_t k = 0; k < a.items_len; ++k) out.items.push_back(arg(a.items[k]));
      break;
    case MlxfnArgKind_Expr:
      out.kind = Arg::Kind::Expr;
      out.expr = std::make_shared<const Expr>(expr(*a.expr));
      break;
    default:
      throw std::invalid_argument("[mlxfn] unknown argument kind " + std::to_string(int(a.kind)));
  }
  return out;
}

TensorInfo tensor(const MlxfnTensorInfo& t) {
  TensorInfo out;
  for (size_t k = 0; k < t.shape_len; ++k) out.shape.push_back(static_cast<int>(t.shape[k]));
  out.dtype = dtype_of(t.dtype);
  return out;
}

bool has_expr(const Arg& a) {
  if (a.kind == Arg::Kind::Expr) return true;
  for (const Arg& item : a.items) {
    if (has_expr(item)) return true;
  }
  return false;
}

}  // namespace

mx::Dtype dtype_of(MlxfnDType code) {
  switch (code) {
    case MlxfnDType_Bool:
      return mx::bool_;
    case MlxfnDType_UInt8:
      return mx::uint8;
    case MlxfnDType_UInt16:
      return mx::uint16;
    case MlxfnDType_UInt32:
      return mx::uint32;
    case MlxfnDType_UInt64:
      return mx::uint64;
    case MlxfnDType_Int8:
      return mx::int8;
    case MlxfnDType_Int16:
      return mx::int16;
    case MlxfnDType_Int32:
      return mx::int32;
    case MlxfnDType_Int64:
      return mx::int64;
    case MlxfnDType_Float16:
      return mx::float16;
    case MlxfnDType_Float32:
      return mx::float32;
    case MlxfnDType_Float64:
      return mx::float64;
    case MlxfnDType_BFloat16:
      return mx::bfloat16;
    case MlxfnDType_Complex64:
      return mx::complex64;
  }
  throw std::invalid_argument("[mlxfn] unknown dtype code " + std::to_string(int(code)));
}

std::vector<Trace> convert_traces(const MlxfnGraph& graph, bool legacy_shapeless) {
  std::vector<Trace> traces(graph.traces_len);
  for (size_t t = 0; t < graph.traces_len; ++t) {
    const MlxfnTrace& in = graph.traces[t];
    Trace& out = traces[t];
    for (size_t k = 0; k < in.keyword_names_len; ++k) {
      out.keyword_names.push_back(str(in.keyword_names[k]));
    }
    for (size_t k = 0; k < in.inputs_len; ++k) out.inputs.push_back(tensor(in.inputs[k]));
    out.constants.assign(in.constants, in.constants + in.constants_len);
    out.outputs.assign(in.outputs, in.outputs + in.outputs_len);
    out.nodes.resize(in.nodes_len);
    for (size_t n = 0; n < in.nodes_len; ++n) {
      const MlxfnNode& src = in.nodes[n];
      Node& node = out.nodes[n];
      node.op = str(src.op);
      node.shapeless = legacy_shapeless;
      node.args.reserve(src.args_len);
      bool follows = false;
      for (size_t k = 0; k < src.args_len; ++k) {
        node.args.push_back(arg(src.args[k]));
        follows = follows || has_expr(node.args.back());
      }
      node.inputs.assign(src.inputs, src.inputs + src.inputs_len);
      for (size_t k = 0; k < src.outputs_len; ++k) node.outputs.push_back(tensor(src.outputs[k]));
      for (size_t k = 0; k < src.output_exprs_len; ++k) {
        const MlxfnOutputExpr& oe = src.output_exprs[k];
        OutputExpr e{oe.output, oe.axis, std::nullopt};
        if (oe.expr != nullptr) e.expr = expr(*oe.expr);
        node.output_exprs.push_back(std::move(e));
      }
      if (follows) out.following.push_back(n);
    }
    for (size_t k = 0; k < in.dims_len; ++k) {
      const MlxfnDim& d = in.dims[k];
      Dim dim;
      for (size_t a = 0; a < d.axes_len; ++a) dim.axes.emplace_back(d.axes[a].input, d.axes[a].axis);
      dim.min = d.min;
      dim.max = d.max;
      out.dims.push_back(std::move(dim));
    }
    for (size_t k = 0; k < in.constant_exprs_len; ++k) {
      out.constant_exprs.push_back({in.constant_exprs[k].position, expr(in.constant_exprs[k].expr)});
    }
  }
  return traces;
}

}  // namespace mlxfn::detail
