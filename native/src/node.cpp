// Size expressions evaluated exactly, and typed access to a node's state.
#include "node.h"

#include <numeric>
#include <stdexcept>
#include <unordered_map>

namespace mlxfn::detail {

namespace {

using I = __int128;
using Fraction = std::pair<I, I>;

[[noreturn]] void overflow() {
  throw std::invalid_argument("[mlxfn] a size expression overflows at these sizes");
}

I checked_mul(I a, I b) {
  I r;
  if (__builtin_mul_overflow(a, b, &r)) overflow();
  return r;
}

I checked_add(I a, I b) {
  I r;
  if (__builtin_add_overflow(a, b, &r)) overflow();
  return r;
}

I gcd(I a, I b) {
  if (a < 0) a = -a;
  if (b < 0) b = -b;
  while (b != 0) {
    I t = a % b;
    a = b;
    b = t;
  }
  return a;
}

Fraction reduce(I num, I den) {
  if (den == 0) {
    throw std::invalid_argument("[mlxfn] a size expression divides by zero at these sizes");
  }
  I g = gcd(num, den);
  if (g == 0) g = 1;
  num /= g;
  den /= g;
  if (den < 0) {
    num = -num;
    den = -den;
  }
  return {num, den};
}

Fraction add(Fraction a, Fraction b) {
  return reduce(checked_add(checked_mul(a.first, b.second), checked_mul(b.first, a.second)),
                checked_mul(a.second, b.second));
}

Fraction mul(Fraction a, Fraction b) {
  return reduce(checked_mul(a.first, b.first), checked_mul(a.second, b.second));
}

// floor(a / b)
I floor_div(Fraction a, Fraction b) {
  auto [num, den] = reduce(checked_mul(a.first, b.second), checked_mul(a.second, b.first));
  I q = num / den;
  if ((num % den != 0) && (num < 0)) q -= 1;  // den > 0
  return q;
}

// A term's numerator times its sizes (checked for overflow).
I numerator_times_sizes(const Term& t, const std::vector<int64_t>& sizes) {
  I product = t.coeff.num;
  for (uint32_t d : t.dims) {
    if (d >= sizes.size()) {
      throw std::invalid_argument("[mlxfn] a size expression names a dim the trace lacks");
    }
    product = checked_mul(product, sizes[d]);
  }
  return product;
}

Fraction polynomial(Ratio constant, const std::vector<Term>& terms,
                    const std::vector<int64_t>& sizes) {
  // Nearly every expression has whole coefficients: integers, no gcd.
  bool whole = constant.den == 1;
  for (const Term& t : terms) whole = whole && t.coeff.den == 1;
  if (whole) {
    I total = constant.num;
    for (const Term& t : terms) total = checked_add(total, numerator_times_sizes(t, sizes));
    return {total, 1};
  }
  Fraction total = reduce(constant.num, constant.den);
  for (const Term& t : terms) total = add(total, reduce(numerator_times_sizes(t, sizes), t.coeff.den));
  return total;
}

Fraction apply(ExprOp op, Fraction a, Fraction b) {
  switch (op) {
    case ExprOp::Add:
      return add(a, b);
    case ExprOp::Sub:
      return add(a, {-b.first, b.second});
    case ExprOp::Mul:
      return mul(a, b);
    case ExprOp::FloorDiv:
      return {floor_div(a, b), 1};
    case ExprOp::CeilDiv:
      return {-floor_div({-a.first, a.second}, b), 1};
    case ExprOp::Mod: {
      I q = floor_div(a, b);
      return add(a, mul(b, {-q, 1}));
    }
    case ExprOp::Min:
      return checked_mul(a.first, b.second) <= checked_mul(b.first, a.second) ? a : b;
    case ExprOp::Max:
      return checked_mul(a.first, b.second) >= checked_mul(b.first, a.second) ? a : b;
    case ExprOp::Poly:
      break;
  }
  throw std::invalid_argument("[mlxfn] unknown size expression op");
}

std::string where(const State& n, size_t k) {
  return "[mlxfn] primitive " + n.op + ": state field " + std::to_string(k);
}

const Arg& at(const State& n, size_t k) {
  if (k >= n.args.size()) {
    throw std::invalid_argument(where(n, k) + " is missing (the node has " +
                                std::to_string(n.args.size()) + ")");
  }
  return n.args[k];
}

}  // namespace

std::pair<__int128, __int128> expr_value(const Expr& e, const std::vector<int64_t>& sizes) {
  if (e.program.empty()) {
    return polynomial(e.constant, e.terms, sizes);
  }
  std::vector<Fraction> done;
  done.reserve(e.program.size());
  for (const Step& s : e.program) {
    if (s.op == ExprOp::Poly) {
      done.push_back(polynomial(s.constant, s.terms, sizes));
    } else {
      if (s.a >= done.size() || s.b >= done.size()) {
        throw std::invalid_argument("[mlxfn] a size expression step uses a later step");
      }
      done.push_back(apply(s.op, done[s.a], done[s.b]));
    }
  }
  return done.back();
}

int64_t State::i(size_t k) const {
  const Arg& a = at(*this, k);
  if (a.kind == Arg::Kind::Int) return a.i;
  if (a.kind == Arg::Kind::Bool) return a.b ? 1 : 0;
  throw std::invalid_argument(where(*this, k) + " is not an integer");
}

double State::f(size_t k) const {
  const Arg& a = at(*this, k);
  if (a.kind == Arg::Kind::Float) return a.f;
  if (a.kind == Arg::Kind::Int) return double(a.i);
  if (a.kind == Arg::Kind::Bool) return a.b ? 1.0 : 0.0;
  throw std::invalid_argument(where(*this, k) + " is not a number");
}

bool State::b(size_t k) const {
  const Arg& a = at(*this, k);
  if (a.kind == Arg::Kind::Bool) return a.b;
  if (a.kind == Arg::Kind::Int) return a.i != 0;
  throw std::invalid_argument(where(*this, k) + " is not a boolean");
}

mx::Dtype State::dtype(size_t k) const {
  const Arg& a = at(*this, k);
  if (a.kind != Arg::Kind::Dtype) {
    throw std::invalid_argument(where(*this, k) + " is not a dtype");
  }
  return a.dtype;
}

const std::string& State::str(size_t k) const {
  const Arg& a = at(*this, k);
  if (a.kind != Arg::Kind::Str) {
    throw std::invalid_argument(where(*this, k) + " is not a string");
  }
  return a.s;
}

std::vector<int> State::ints(size_t k) const {
  std::vector<int64_t> wide = int64s(k);
  return std::vector<int>(wide.begin(), wide.end());
}

std::vector<int64_t> State::int64s(size_t k) const {
  const Arg& a = at(*this, k);
  std::vector<int64_t> out;
  if (a.kind == Arg::Kind::Ints) return a.ints;
  if (a.kind == Arg::Kind::List) {
    for (const Arg& item : a.items) {
      if (item.kind == Arg::Kind::Int) {
        out.push_back(item.i);
      } else if (item.kind == Arg::Kind::Bool) {
        out.push_back(item.b ? 1 : 0);
      } else {
        throw std::invalid_argument(where(*this, k) + " is not a list of integers");
      }
    }
    return out;
  }
  if (a.kind == Arg::Kind::Int) return {a.i};
  throw std::invalid_argument(where(*this, k) + " is not a list of integers");
}

mx::Shape State::shape(size_t k) const {
  std::vector<int> v = ints(k);
  return mx::Shape(v.begin(), v.end());
}

std::vector<int64_t> Trace::base_sizes() const {
  std::vector<int64_t> out;
  out.reserve(dims.size());
  for (const Dim& d : dims) {
    out.push_back(inputs[d.axes[0].first].shape[d.axes[0].second]);
  }
  return out;
}

namespace {

Arg evaluate(const Arg& a, const std::vector<int64_t>& sizes) {
  if (a.kind == Arg::Kind::Expr) {
    auto [num, den] = expr_value(*a.expr, sizes);
    Arg out;
    if (a.expr->integer) {
      if (den != 1) {
        throw std::invalid_argument(
            "[mlxfn] a size expression is not a whole number at these sizes");
      }
      out.kind = Arg::Kind::Int;
      out.i = static_cast<int64_t>(num);
    } else {
      out.kind = Arg::Kind::Float;
      out.f = double(num) / double(den);
    }
    return out;
  }
  if (a.kind == Arg::Kind::List) {
    Arg out;
    out.kind = Arg::Kind::List;
    out.items.reserve(a.items.size());
    for (const Arg& item : a.items) out.items.push_back(evaluate(item, sizes));
    return out;
  }
  return a;
}

}  // namespace

ArgList concrete(const Node& node, const std::vector<int64_t>& sizes) {
  ArgList out;
  out.reserve(node.args.size());
  for (const Arg& a : node.args) out.push_back(evaluate(a, sizes));
  return out;
}

std::vector<TensorInfo> output_shapes(const Node& node, const std::vector<int64_t>& sizes) {
  std::vector<TensorInfo> out = node.outputs;
  for (const OutputExpr& oe : node.output_exprs) {
    int size = -1;
    if (oe.expr) {
      auto [num, den] = expr_value(*oe.expr, sizes);
      size = den == 1 ? static_cast<int>(num) : -1;
    }
    out[oe.output].shape[oe.axis] = size;
  }
  return out;
}

namespace {

void put(std::string& key, const void* data, size_t n) {
  key.append(static_cast<const char*>(data), n);
}

template <typename T>
void put(std::string& key, T value) {
  put(key, &value, sizeof(T));
}

void key_of(const std::vector<Term>& terms, std::string& key) {
  put(key, terms.size());
  for (const Term& t : terms) {
    put(key, t.coeff.num);
    put(key, t.coeff.den);
    put(key, t.dims.size());
    put(key, t.dims.data(), t.dims.size() * sizeof(uint32_t));
  }
}

void key_of(const Arg& a, std::string& key) {
  put(key, static_cast<uint8_t>(a.kind));
  switch (a.kind) {
    case Arg::Kind::None:
      break;
    case Arg::Kind::Bool:
      put(key, a.b);
      break;
    case Arg::Kind::Int:
      put(key, a.i);
      break;
    case Arg::Kind::Float:
      put(key, a.f);
      break;
    case Arg::Kind::Str:
      put(key, a.s.size());
      key += a.s;
      break;
    case Arg::Kind::Dtype:
      put(key, static_cast<uint8_t>(a.dtype.val()));
      break;
    case Arg::Kind::Ints:
      put(key, a.ints.size());
      put(key, a.ints.data(), a.ints.size() * sizeof(int64_t));
      break;
    case Arg::Kind::List:
      put(key, a.items.size());
      for (const Arg& item : a.items) key_of(item, key);
      break;
    case Arg::Kind::Expr: {
      const Expr& e = *a.expr;
      put(key, e.constant.num);
      put(key, e.constant.den);
      put(key, e.integer);
      key_of(e.terms, key);
      put(key, e.program.size());
      for (const Step& s : e.program) {
        put(key, static_cast<uint8_t>(s.op));
        put(key, s.constant.num);
        put(key, s.constant.den);
        key_of(s.terms, key);
        put(key, s.a);
        put(key, s.b);
      }
      break;
    }
  }
}

}  // namespace

void dedupe(Trace& trace) {
  size_t first = trace.inputs.size();
  std::vector<uint32_t> canon(first + trace.constants.size());
  for (size_t i = 0; i < canon.size(); ++i) canon[i] = uint32_t(i);
  // Positions of one file constant are one array, unless a position's value
  // follows the sizes.
  std::vector<bool> sized(trace.constants.size(), false);
  for (const ConstantExpr& ce : trace.constant_exprs) sized[ce.position] = true;
  std::unordered_map<uint32_t, uint32_t> by_index;
  for (size_t p = 0; p < trace.constants.size(); ++p) {
    if (sized[p]) continue;
    auto [it, fresh] = by_index.emplace(trace.constants[p], uint32_t(first + p));
    if (!fresh) canon[first + p] = it->second;
  }
  std::unordered_map<std::string, uint32_t> seen;  // key -> first output id
  trace.repeated.assign(trace.nodes.size(), false);
  std::string key;
  for (size_t n = 0; n < trace.nodes.size(); ++n) {
    Node& node = trace.nodes[n];
    for (uint32_t& id : node.inputs) id = canon[id];
    uint32_t out = uint32_t(canon.size());
    key.clear();
    key += node.op;
    put(key, node.inputs.size());
    put(key, node.inputs.data(), node.inputs.size() * sizeof(uint32_t));
    put(key, node.args.size());
    for (const Arg& a : node.args) key_of(a, key);
    for (const TensorInfo& t : node.outputs) put(key, static_cast<uint8_t>(t.dtype.val()));
    auto [it, fresh] = seen.emplace(key, out);
    trace.repeated[n] = !fresh;
    for (size_t k = 0; k < node.outputs.size(); ++k) {
      canon.push_back(fresh ? uint32_t(out + k) : uint32_t(it->second + k));
    }
  }
  for (uint32_t& id : trace.outputs) id = canon[id];
}

}  // namespace mlxfn::detail
