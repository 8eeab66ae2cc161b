// Gather, scatter and random-bits primitives (python/mlxfn/replay/indexing.py,
// scatter.py, random.py).  mlx::core's gather and scatter ops take exactly
// the primitives' state, so they are rebuilt one to one.  MaskedScatter and
// RandomBits, whose public ops reshape or check their inputs first, are the
// primitives themselves applied to the recorded inputs: libmlx does not
// export primitive constructors, so each primitive is taken from its op
// called on placeholders (a lazy graph, never evaluated) with the same state.
#include <stdexcept>

#include "handlers.h"
#include "mlx/ops.h"
#include "mlx/random.h"

namespace mlxfn::detail {
namespace {

Arrays gather(const State& n, const Arrays& xs) {
  std::vector<int> axes = n.ints(0);
  mx::Shape slice_sizes = n.shape(1);
  Arrays indices(xs.begin() + 1, xs.end());
  if (indices.empty()) {
    mx::Shape start(slice_sizes.size(), 0);
    return {mx::slice(xs.at(0), start, slice_sizes)};
  }
  return {mx::gather(xs.at(0), indices, axes, slice_sizes)};
}

Arrays gather_axis(const State& n, const Arrays& xs) {
  return {mx::take_along_axis(xs.at(0), xs.at(1), int(n.i(0)))};
}

Arrays search_sorted(const State& n, const Arrays& xs) {
  return {mx::searchsorted(xs.at(0), xs.at(1), n.b(0) ? "right" : "left")};
}

// MLX's Scatter::ReduceType: Max, Min, Sum, Prod, None.
Arrays scatter(const State& n, const Arrays& xs) {
  std::vector<int> axes = n.ints(1);
  const mx::array& a = xs.at(0);
  Arrays indices(xs.begin() + 1, xs.end() - 1);
  const mx::array& updates = xs.back();
  switch (n.i(0)) {
    case 0:
      return {mx::scatter_max(a, indices, updates, axes)};
    case 1:
      return {mx::scatter_min(a, indices, updates, axes)};
    case 2:
      return {mx::scatter_add(a, indices, updates, axes)};
    case 3:
      return {mx::scatter_prod(a, indices, updates, axes)};
    default:
      return {mx::scatter(a, indices, updates, axes)};
  }
}

// MLX's ScatterAxis::ReduceType: Sum, None.
Arrays scatter_axis(const State& n, const Arrays& xs) {
  int axis = int(n.i(1));
  if (n.i(0) == 1) return {mx::put_along_axis(xs.at(0), xs.at(1), xs.at(2), axis)};
  return {mx::scatter_add_axis(xs.at(0), xs.at(1), xs.at(2), axis)};
}

Arrays masked_scatter(const State&, const Arrays& xs) {
  const mx::array& a = xs.at(0);
  // masked_scatter returns Squeeze(MaskedScatter(...)).
  mx::array probe = mx::masked_scatter(mx::zeros({1}), mx::array({true}), mx::zeros({1}));
  auto prim = probe.inputs().at(0).primitive_ptr();
  return {mx::array(a.shape(), a.dtype(), prim, {a, xs.at(1), xs.at(2)})};
}

Arrays random_bits(const State& n, const Arrays& xs) {
  mx::Shape shape = n.shape(0);
  int width = int(n.i(1));
  mx::Dtype dtype = width == 1 ? mx::uint8 : width == 2 ? mx::uint16 : mx::uint32;
  if (width != 1 && width != 2 && width != 4) {
    throw std::invalid_argument("[mlxfn] RandomBits: width " + std::to_string(width));
  }
  auto prim = mx::random::bits(shape, width, mx::zeros({2}, mx::uint32)).primitive_ptr();
  return {mx::array(shape, dtype, prim, {xs.at(0)})};
}

}  // namespace

void add_indexing(std::unordered_map<std::string, Handler>& m) {
  m["Gather"] = gather;
  m["GatherAxis"] = gather_axis;
  m["SearchSorted"] = search_sorted;
  m["Scatter"] = scatter;
  m["ScatterAxis"] = scatter_axis;
  m["MaskedScatter"] = masked_scatter;
  m["RandomBits"] = random_bits;
}

}  // namespace mlxfn::detail
