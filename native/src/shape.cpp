// Primitives that move, reshape, broadcast, slice or create arrays
// (python/mlxfn/replay/shape.py).  Shapes come from the inputs at hand: the
// runtime builds a call's graph with concrete shapes, so the same code
// serves shaped, dynamic and format-1 shapeless traces.
#include <stdexcept>

#include "handlers.h"
#include "mlx/ops.h"
#include "mlx/utils.h"

namespace mlxfn::detail {
namespace {

Arrays broadcast(const State& n, const Arrays& xs) {
  if (xs.size() > 1) return {mx::broadcast_arrays(xs)[0]};  // shapeless export
  return {mx::broadcast_to(xs.at(0), n.shape(0))};
}

Arrays broadcast_axes(const State& n, const Arrays& xs) {
  std::vector<int> ignore = n.ints(0);
  const mx::array& x = xs.at(0);
  auto ignored = [&](int i, int ndim) {
    for (int ax : ignore) {
      if (i - ndim == ax) return true;
    }
    return false;
  };
  mx::Shape shape;
  for (const mx::array& a : xs) {
    mx::Shape kept;
    for (int i = 0; i < int(a.ndim()); ++i) {
      if (!ignored(i, int(a.ndim()))) kept.push_back(a.shape(i));
    }
    shape = mx::broadcast_shapes(shape, kept);
  }
  mx::Shape full(shape.begin(), shape.end());
  int dims = static_cast<int>(ignore.size() + full.size());
  for (int ax : ignore) {
    full.insert(full.begin() + (dims + ax), x.shape(ax));
  }
  return {mx::broadcast_to(x, full)};
}

Arrays reshape(const State& n, const Arrays& xs) { return {mx::reshape(xs.at(0), n.shape(0))}; }

Arrays transpose(const State& n, const Arrays& xs) {
  return {mx::transpose(xs.at(0), n.ints(0))};
}

Arrays squeeze(const State& n, const Arrays& xs) { return {mx::squeeze(xs.at(0), n.ints(0))}; }

Arrays expand_dims(const State& n, const Arrays& xs) {
  return {mx::expand_dims(xs.at(0), n.ints(0))};
}

Arrays flatten(const State& n, const Arrays& xs) {
  return {mx::flatten(xs.at(0), int(n.i(0)), int(n.i(1)))};
}

Arrays unflatten(const State& n, const Arrays& xs) {
  return {mx::unflatten(xs.at(0), int(n.i(0)), n.shape(1))};
}

Arrays concatenate(const State& n, const Arrays& xs) {
  return {mx::concatenate(xs, int(n.i(0)))};
}

Arrays split(const State& n, const Arrays& xs) {
  return mx::split(xs.at(0), n.shape(0), int(n.i(1)));
}

Arrays slice(const State& n, const Arrays& xs) {
  return {mx::slice(xs.at(0), n.shape(0), n.shape(1), n.shape(2))};
}

Arrays slice_update(const State& n, const Arrays& xs) {
  const mx::array &src = xs.at(0), &upd = xs.at(1);
  mx::Shape start = n.shape(1), stop = n.shape(2), step = n.shape(3);
  switch (n.i(0)) {
    case 0:
      return {mx::slice_update_max(src, upd, start, stop, step)};
    case 1:
      return {mx::slice_update_min(src, upd, start, stop, step)};
    case 2:
      return {mx::slice_update_add(src, upd, start, stop, step)};
    case 3:
      return {mx::slice_update_prod(src, upd, start, stop, step)};
    default:
      return {mx::slice_update(src, upd, start, stop, step)};
  }
}

Arrays pad(const State& n, const Arrays& xs) {
  return {mx::pad(xs.at(0), n.ints(0), n.shape(1), n.shape(2), xs.at(1))};
}

Arrays as_strided(const State& n, const Arrays& xs) {
  std::vector<int64_t> s = n.int64s(1);
  mx::Strides strides(s.begin(), s.end());
  return {mx::as_strided(xs.at(0), n.shape(0), strides, static_cast<size_t>(n.i(2)))};
}

Arrays full(const State&, const Arrays& xs) { return {mx::full(xs.at(0).shape(), xs.at(0))}; }

Arrays arange(const State& n, const Arrays&) {
  return {mx::arange(n.f(0), n.f(1), n.f(2), n.outputs.at(0).dtype)};
}

Arrays number_of_elements(const State& n, const Arrays& xs) {
  return {mx::number_of_elements(xs.at(0), n.ints(0), n.b(1), n.dtype(2))};
}

Arrays dynamic_slice(const State& n, const Arrays& xs) {
  return {mx::slice(xs.at(0), xs.at(1), n.ints(0), n.shape(1))};
}

Arrays dynamic_slice_update(const State& n, const Arrays& xs) {
  return {mx::slice_update(xs.at(0), xs.at(1), xs.at(2), n.ints(0))};
}

Arrays depends(const State& n, const Arrays& xs) {
  size_t k = n.outputs.size();
  Arrays first(xs.begin(), xs.begin() + k), rest(xs.begin() + k, xs.end());
  return mx::depends(first, rest);
}

}  // namespace

void add_shape(std::unordered_map<std::string, Handler>& m) {
  m["Broadcast"] = broadcast;
  m["BroadcastAxes"] = broadcast_axes;
  m["Reshape"] = reshape;
  m["Transpose"] = transpose;
  m["Squeeze"] = squeeze;
  m["ExpandDims"] = expand_dims;
  m["Flatten"] = flatten;
  m["Unflatten"] = unflatten;
  m["Concatenate"] = concatenate;
  m["Split"] = split;
  m["Slice"] = slice;
  m["SliceUpdate"] = slice_update;
  m["Pad"] = pad;
  m["AsStrided"] = as_strided;
  m["Full"] = full;
  m["Arange"] = arange;
  m["NumberOfElements"] = number_of_elements;
  m["DynamicSlice"] = dynamic_slice;
  m["DynamicSliceUpdate"] = dynamic_slice_update;
  m["Depends"] = depends;
}

}  // namespace mlxfn::detail
