// Elementwise primitives: unary math, binary arithmetic, comparisons, select,
// casts (python/mlxfn/replay/elementwise.py).
#include <stdexcept>

#include "handlers.h"
#include "mlx/ops.h"

namespace mlxfn::detail {
namespace {

template <mx::array (*F)(const mx::array&, mx::StreamOrDevice)>
Arrays unary(const State&, const Arrays& xs) {
  return {F(xs.at(0), {})};
}

template <mx::array (*F)(const mx::array&, const mx::array&, mx::StreamOrDevice)>
Arrays binary(const State&, const Arrays& xs) {
  return {F(xs.at(0), xs.at(1), {})};
}

Arrays abs_(const State&, const Arrays& xs) {
  // MLX's Abs primitive keeps a complex input's dtype; mx::abs adds a cast
  // to float that the trace records as its own node.
  mx::array out = mx::abs(xs.at(0));
  if (xs[0].dtype() == mx::complex64) out = mx::astype(out, mx::complex64);
  return {out};
}

Arrays copy_(const State&, const Arrays& xs) { return {mx::copy(xs.at(0))}; }

Arrays divide(const State&, const Arrays& xs) {
  const mx::array &a = xs.at(0), &b = xs.at(1);
  if (mx::issubdtype(a.dtype(), mx::inexact)) return {mx::divide(a, b)};
  // MLX's Divide kernel on integers divides as C does (toward zero); the op
  // would promote them to float, so the primitive (stateless, taken from a
  // float division: libmlx does not export primitive constructors) is
  // applied to the integers directly.
  mx::Dtype t = mx::promote_types(a.dtype(), b.dtype());
  auto both = mx::broadcast_arrays({mx::astype(a, t), mx::astype(b, t)});
  auto prim = mx::divide(mx::array(1.0f), mx::array(2.0f)).primitive_ptr();
  return {mx::array(both[0].shape(), t, prim, both)};
}

Arrays divmod_(const State&, const Arrays& xs) { return mx::divmod(xs.at(0), xs.at(1)); }

Arrays equal(const State& n, const Arrays& xs) {
  const mx::array &a = xs.at(0), &b = xs.at(1);
  if (n.b(0) && mx::issubdtype(a.dtype(), mx::inexact)) {
    return {mx::logical_or(mx::equal(a, b), mx::logical_and(mx::isnan(a), mx::isnan(b)))};
  }
  return {mx::equal(a, b)};
}

Arrays log_(const State& n, const Arrays& xs) {
  switch (n.i(0)) {
    case 0:
      return {mx::log2(xs.at(0))};
    case 1:
      return {mx::log10(xs.at(0))};
    case 2:
      return {mx::log(xs.at(0))};
  }
  throw std::invalid_argument("[mlxfn] Log: unknown base " + std::to_string(n.i(0)));
}

Arrays sqrt_(const State& n, const Arrays& xs) {
  return {n.b(0) ? mx::rsqrt(xs.at(0)) : mx::sqrt(xs.at(0))};
}

Arrays bitwise(const State& n, const Arrays& xs) {
  const mx::array &a = xs.at(0), &b = xs.at(1);
  switch (n.i(0)) {
    case 0:
      return {mx::bitwise_and(a, b)};
    case 1:
      return {mx::bitwise_or(a, b)};
    case 2:
      return {mx::bitwise_xor(a, b)};
    case 3:
      return {mx::left_shift(a, b)};
    case 4:
      return {mx::right_shift(a, b)};
  }
  throw std::invalid_argument("[mlxfn] BitwiseBinary: unknown op " + std::to_string(n.i(0)));
}

Arrays select(const State&, const Arrays& xs) { return {mx::where(xs.at(0), xs.at(1), xs.at(2))}; }

Arrays astype(const State& n, const Arrays& xs) { return {mx::astype(xs.at(0), n.dtype(0))}; }

Arrays view(const State& n, const Arrays& xs) { return {mx::view(xs.at(0), n.dtype(0))}; }

Arrays hadamard(const State& n, const Arrays& xs) {
  return {mx::hadamard_transform(xs.at(0), static_cast<float>(n.f(0)))};
}

}  // namespace

void add_elementwise(std::unordered_map<std::string, Handler>& m) {
  m["Abs"] = abs_;
  m["ArcCos"] = unary<mx::arccos>;
  m["ArcCosh"] = unary<mx::arccosh>;
  m["ArcSin"] = unary<mx::arcsin>;
  m["ArcSinh"] = unary<mx::arcsinh>;
  m["ArcTan"] = unary<mx::arctan>;
  m["ArcTanh"] = unary<mx::arctanh>;
  m["Ceil"] = unary<mx::ceil>;
  m["Conjugate"] = unary<mx::conjugate>;
  m["Cos"] = unary<mx::cos>;
  m["Cosh"] = unary<mx::cosh>;
  m["Erf"] = unary<mx::erf>;
  m["ErfInv"] = unary<mx::erfinv>;
  m["Exp"] = unary<mx::exp>;
  m["Expm1"] = unary<mx::expm1>;
  m["Floor"] = unary<mx::floor>;
  m["Imag"] = unary<mx::imag>;
  m["Log1p"] = unary<mx::log1p>;
  m["LogicalNot"] = unary<mx::logical_not>;
  m["Negative"] = unary<mx::negative>;
  m["Real"] = unary<mx::real>;
  m["Round"] = [](const State&, const Arrays& xs) -> Arrays { return {mx::round(xs.at(0))}; };
  m["Sigmoid"] = unary<mx::sigmoid>;
  m["Sign"] = unary<mx::sign>;
  m["Sin"] = unary<mx::sin>;
  m["Sinh"] = unary<mx::sinh>;
  m["Square"] = unary<mx::square>;
  m["StopGradient"] = unary<mx::stop_gradient>;
  m["Tan"] = unary<mx::tan>;
  m["Tanh"] = unary<mx::tanh>;

  m["Add"] = binary<mx::add>;
  m["ArcTan2"] = binary<mx::arctan2>;
  m["Greater"] = binary<mx::greater>;
  m["GreaterEqual"] = binary<mx::greater_equal>;
  m["Less"] = binary<mx::less>;
  m["LessEqual"] = binary<mx::less_equal>;
  m["LogAddExp"] = binary<mx::logaddexp>;
  m["LogicalAnd"] = binary<mx::logical_and>;
  m["LogicalOr"] = binary<mx::logical_or>;
  m["Maximum"] = binary<mx::maximum>;
  m["Minimum"] = binary<mx::minimum>;
  m["Multiply"] = binary<mx::multiply>;
  m["NotEqual"] = binary<mx::not_equal>;
  m["Power"] = binary<mx::power>;
  m["Remainder"] = binary<mx::remainder>;
  m["Subtract"] = binary<mx::subtract>;
  m["FloorDivide"] = binary<mx::floor_divide>;

  m["Copy"] = copy_;
  m["Divide"] = divide;
  m["DivMod"] = divmod_;
  m["Equal"] = equal;
  m["NaNEqual"] = equal;
  m["Log"] = log_;
  m["Log2"] = log_;
  m["Log10"] = log_;
  m["Sqrt"] = sqrt_;
  m["Rsqrt"] = sqrt_;
  for (const char* name : {"BitwiseBinary", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "LeftShift",
                           "RightShift"}) {
    m[name] = bitwise;
  }
  m["Select"] = select;
  m["AsType"] = astype;
  m["View"] = view;
  m["Hadamard"] = hadamard;
}

}  // namespace mlxfn::detail
