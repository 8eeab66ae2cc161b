// Reductions, scans, sorts and softmax-like primitives
// (python/mlxfn/replay/reduction.py).
#include <stdexcept>

#include "handlers.h"
#include "mlx/ops.h"

namespace mlxfn::detail {
namespace {

// MLX's Reduce::ReduceType: And, Or, Sum, Prod, Min, Max (keepdims: the
// primitive keeps reduced axes; a Reshape/Squeeze follows in the trace).
Arrays reduce(const State& n, const Arrays& xs) {
  const mx::array& x = xs.at(0);
  std::vector<int> axes = n.ints(1);
  switch (n.i(0)) {
    case 0:
      return {mx::all(x, axes, true)};
    case 1:
      return {mx::any(x, axes, true)};
    case 2:
      return {mx::sum(x, axes, true)};
    case 3:
      return {mx::prod(x, axes, true)};
    case 4:
      return {mx::min(x, axes, true)};
    case 5:
      return {mx::max(x, axes, true)};
  }
  throw std::invalid_argument("[mlxfn] Reduce: unknown reduce type " + std::to_string(n.i(0)));
}

Arrays arg_reduce(const State& n, const Arrays& xs) {
  int axis = int(n.i(1));
  return {n.i(0) == 1 ? mx::argmax(xs.at(0), axis, true) : mx::argmin(xs.at(0), axis, true)};
}

// MLX's Scan::ReduceType: Max, Min, Sum, Prod, LogAddExp.
Arrays scan(const State& n, const Arrays& xs) {
  const mx::array& x = xs.at(0);
  int axis = int(n.i(1));
  bool reverse = n.b(2), inclusive = n.b(3);
  switch (n.i(0)) {
    case 0:
      return {mx::cummax(x, axis, reverse, inclusive)};
    case 1:
      return {mx::cummin(x, axis, reverse, inclusive)};
    case 2:
      return {mx::cumsum(x, axis, reverse, inclusive)};
    case 3:
      return {mx::cumprod(x, axis, reverse, inclusive)};
    case 4:
      return {mx::logcumsumexp(x, axis, reverse, inclusive)};
  }
  throw std::invalid_argument("[mlxfn] Scan: unknown reduce type " + std::to_string(n.i(0)));
}

Arrays softmax(const State& n, const Arrays& xs) {
  return {mx::softmax(xs.at(0), std::vector<int>{-1}, n.b(0))};
}

Arrays logsumexp(const State&, const Arrays& xs) {
  return {mx::logsumexp(xs.at(0), std::vector<int>{-1}, true)};
}

Arrays sort(const State& n, const Arrays& xs) { return {mx::sort(xs.at(0), int(n.i(0)))}; }

Arrays argsort(const State& n, const Arrays& xs) { return {mx::argsort(xs.at(0), int(n.i(0)))}; }

Arrays partition(const State& n, const Arrays& xs) {
  return {mx::partition(xs.at(0), int(n.i(0)), int(n.i(1)))};
}

Arrays argpartition(const State& n, const Arrays& xs) {
  return {mx::argpartition(xs.at(0), int(n.i(0)), int(n.i(1)))};
}

}  // namespace

void add_reduction(std::unordered_map<std::string, Handler>& m) {
  for (const char* name : {"Reduce", "And", "Or", "Sum", "Prod", "Min", "Max"}) m[name] = reduce;
  m["ArgReduce"] = arg_reduce;
  for (const char* name : {"Scan", "CumSum", "CumProd", "CumMin", "CumMax", "CumLogaddexp"}) {
    m[name] = scan;
  }
  m["Softmax"] = softmax;
  m["LogSumExp"] = logsumexp;
  m["Sort"] = sort;
  m["ArgSort"] = argsort;
  m["Partition"] = partition;
  m["ArgPartition"] = argpartition;
}

}  // namespace mlxfn::detail
