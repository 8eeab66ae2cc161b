// Static islands of a dynamic trace: connected parts whose shapes and states
// follow only some of the trace's sizes (a decode step's projections, norms,
// MLP and rotary follow the batch, not the cache length).  At the same
// values of those sizes an island is the same shaped function of its
// inputs, so the runtime can compile it with MLX's fusion once and call it
// at every other size (runtime.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "node.h"

namespace mlxfn::detail {

struct Island {
  std::vector<size_t> nodes;      // in trace order (a valid order within the island)
  std::vector<uint32_t> inputs;   // value ids it reads from outside
  std::vector<bool> held;         // by input: fixed for the import's life (a constant that
                                  // follows no size, a fixed node's output)
  std::vector<uint32_t> outputs;  // value ids read outside it (or the trace's outputs)
  std::vector<uint32_t> dims;     // the dims its shapes and states follow
};

// One step of a call: a node, or a whole island.
struct Unit {
  size_t node = 0;
  int64_t island = -1;  // >= 0: islands[island]
};

struct Islands {
  std::vector<Island> islands;
  std::vector<uint32_t> first;  // each node's first output id
  std::vector<Unit> schedule;   // every node that runs, islands as one unit, in a valid order
};

// By node, the set of dims (bit d: trace.dims[d]) its state and its
// inputs' shapes follow: at two sets of sizes equal on those dims the node
// is the same function (the same state, outputs of the same shapes).  Bit
// 63 set throughout where that cannot be told (over 63 dims, format-1
// shapeless nodes, output sizes no expression captures).
std::vector<uint64_t> node_dims(const Trace& trace);

// The set of dims a state's expressions follow.
uint64_t state_dims(const ArgList& args);

// The islands of `trace` with at least `min_elementwise` elementwise nodes
// (`fixed` nodes, built from constants once, stay outside them), or none
// for a shaped trace.
Islands find_islands(const Trace& trace, const std::vector<bool>& fixed, size_t min_elementwise);

}  // namespace mlxfn::detail
