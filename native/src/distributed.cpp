// Collectives on the process's group (python/mlxfn/replay/distributed.py):
// the last two arguments are the group size and the rank that wrote the
// file, checked against the group the call runs on (mx::distributed::init()).
#include <stdexcept>

#include "handlers.h"
#include "mlx/distributed/distributed.h"
#include "mlx/distributed/ops.h"

namespace mlxfn::detail {
namespace {

namespace dist = mx::distributed;

dist::Group group_of(const State& n) {
  int64_t size = n.i(n.nargs() - 2), rank = n.i(n.nargs() - 1);
  dist::Group group = dist::init();
  if (group.size() != size || group.rank() != rank) {
    throw std::runtime_error("[mlxfn] " + n.op + " was traced on rank " + std::to_string(rank) +
                             " of a group of " + std::to_string(size) + ", but runs on rank " +
                             std::to_string(group.rank()) + " of a group of " +
                             std::to_string(group.size()));
  }
  return group;
}

Arrays all_reduce(const State& n, const Arrays& xs) {
  const std::string& op = n.str(0);
  dist::Group group = group_of(n);
  if (op == "sum") return {dist::all_sum(xs.at(0), group)};
  if (op == "max") return {dist::all_max(xs.at(0), group)};
  if (op == "min") return {dist::all_min(xs.at(0), group)};
  throw std::invalid_argument("[mlxfn] AllReduce: no all-reduce " + op);
}

Arrays all_gather(const State& n, const Arrays& xs) {
  return {dist::all_gather(xs.at(0), group_of(n))};
}

Arrays reduce_scatter(const State& n, const Arrays& xs) {
  if (n.str(0) != "sum") throw std::invalid_argument("[mlxfn] no reduce-scatter " + n.str(0));
  return {dist::sum_scatter(xs.at(0), group_of(n))};
}

Arrays send(const State& n, const Arrays& xs) {
  return {dist::send(xs.at(0), int(n.i(0)), group_of(n))};
}

// recv_like of its input (only its shape and dtype), else recv of the
// recorded output's shape and dtype.
Arrays recv(const State& n, const Arrays& xs) {
  dist::Group group = group_of(n);
  if (!xs.empty()) return {dist::recv_like(xs[0], int(n.i(0)), group)};
  const TensorInfo& out = n.outputs.at(0);
  for (int d : out.shape) {
    if (d < 0) {
      throw std::runtime_error(
          "[mlxfn] Recv: the size of the array it receives is not known at these sizes");
    }
  }
  return {dist::recv(out.shape, out.dtype, int(n.i(0)), group)};
}

}  // namespace

void add_distributed(std::unordered_map<std::string, Handler>& m) {
  m["AllReduce"] = all_reduce;
  m["AllGather"] = all_gather;
  m["ReduceScatter"] = reduce_scatter;
  m["Send"] = send;
  m["Recv"] = recv;
}

}  // namespace mlxfn::detail
