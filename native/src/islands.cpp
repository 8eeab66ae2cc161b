// Finding a dynamic trace's static islands (islands.h).
//
// Each value gets the set of dims its shape follows: an input's dynamic
// axes, a node output's recorded size expressions (the file's output
// expressions, checked at every plan's first call).  A node's set is what
// its function follows: its inputs' shapes' and its state's expressions'
// dims (a matmul over the cache gives an output of fixed shape: what reads
// it follows the batch only).  Nodes with the same set are grouped by
// level, which grows by one on every edge that changes the set: a path that
// leaves a group and comes back would cross two such edges, so each group
// is convex and can run as one unit.  A compiled island is keyed by its
// set's values and retraces if its inputs' shapes differ, so it is always
// the nodes' handlers at their states.
#include "islands.h"

#include <algorithm>
#include <functional>
#include <map>
#include <queue>
#include <string>
#include <unordered_set>

namespace mlxfn::detail {

namespace {

using Mask = uint64_t;

Mask terms_mask(const std::vector<Term>& terms) {
  Mask m = 0;
  for (const Term& t : terms) {
    for (uint32_t d : t.dims) m |= Mask(1) << std::min<uint32_t>(d, 63);  // 63: unknown
  }
  return m;
}

Mask expr_mask(const Expr& e) {
  Mask m = terms_mask(e.terms);
  for (const Step& s : e.program) m |= terms_mask(s.terms);
  return m;
}

Mask args_mask(const ArgList& args) {
  Mask m = 0;
  for (const Arg& a : args) {
    if (a.kind == Arg::Kind::Expr && a.expr) m |= expr_mask(*a.expr);
    if (a.kind == Arg::Kind::List) m |= args_mask(a.items);
  }
  return m;
}

// Primitives with effects beyond their outputs, or that want their own
// stream: never inside a compiled island.
bool compilable(const std::string& op) {
  static const std::unordered_set<std::string> no = {
      "AllReduce", "AllGather", "ReduceScatter", "Send", "Recv", "CustomKernel",
      "QRF",       "SVD",       "Inverse",       "Cholesky", "Eig", "Eigh"};
  return !no.count(op);
}

// The primitives MLX's compile fuses: what an island must hold enough of.
bool elementwise(const std::string& op) {
  static const std::unordered_set<std::string> ops = {
      "Abs",      "Add",       "AsType",   "Ceil",       "Cos",        "Cosh",     "Divide",
      "Equal",    "Erf",       "ErfInv",   "Exp",        "Expm1",      "Floor",    "Greater",
      "GreaterEqual", "Less",  "LessEqual", "Log",       "Log1p",      "LogAddExp", "LogicalAnd",
      "LogicalNot", "LogicalOr", "Maximum", "Minimum",   "Multiply",   "Negative", "NotEqual",
      "Power",    "Remainder", "Round",    "Rsqrt",      "Select",     "Sigmoid",  "Sign",
      "Sin",      "Sinh",      "Sqrt",     "Square",     "Subtract",   "Tan",      "Tanh"};
  return ops.count(op) != 0;
}

}  // namespace

Mask state_dims(const ArgList& args) { return args_mask(args); }

std::vector<Mask> node_dims(const Trace& trace) {
  size_t n_in = trace.inputs.size();
  constexpr Mask unknown = ~Mask(0);
  if (trace.dims.size() > 63) return std::vector<Mask>(trace.nodes.size(), unknown);
  std::vector<Mask> mask(n_in + trace.constants.size(), 0);  // by value id: its shape's
  for (size_t d = 0; d < trace.dims.size(); ++d) {
    for (auto [i, a] : trace.dims[d].axes) mask[i] |= Mask(1) << d;
  }
  std::vector<Mask> out;
  out.reserve(trace.nodes.size());
  for (const Node& node : trace.nodes) {
    Mask m = node.shapeless ? unknown : args_mask(node.args);
    for (uint32_t id : node.inputs) m |= mask[id];
    size_t first = mask.size();
    mask.resize(first + node.outputs.size(), node.shapeless ? unknown : 0);
    for (const OutputExpr& oe : node.output_exprs) {
      Mask shape = oe.expr ? expr_mask(*oe.expr) : unknown;
      if (oe.output < node.outputs.size()) mask[first + oe.output] |= shape;
      m |= shape;
    }
    out.push_back(m);
  }
  return out;
}

Islands find_islands(const Trace& trace, const std::vector<bool>& fixed, size_t min_elementwise) {
  Islands out;
  size_t n_nodes = trace.nodes.size();
  size_t ids = trace.inputs.size() + trace.constants.size();
  for (const Node& node : trace.nodes) {
    out.first.push_back(uint32_t(ids));
    ids += node.outputs.size();
  }
  if (trace.dims.empty() || trace.dims.size() > 63) return out;
  std::vector<Mask> node_mask = node_dims(trace);
  std::vector<int64_t> producer(ids, -1);  // by value id: the node, or -1
  for (size_t i = 0; i < n_nodes; ++i) {
    for (size_t o = 0; o < trace.nodes[i].outputs.size(); ++o) producer[out.first[i] + o] = int64_t(i);
  }

  // Which nodes may join an island, their levels.
  std::vector<bool> eligible(n_nodes, false);
  std::vector<size_t> level(n_nodes, 0);
  for (size_t i = 0; i < n_nodes; ++i) {
    const Node& node = trace.nodes[i];
    Mask m = node_mask[i];
    eligible[i] = !trace.repeated[i] && !fixed[i] && compilable(node.op);
    if (!eligible[i]) continue;
    for (uint32_t id : node.inputs) {
      int64_t j = producer[id];
      if (j < 0 || !eligible[size_t(j)]) continue;
      size_t l = level[size_t(j)] + (node_mask[size_t(j)] == m ? 0 : 1);
      level[i] = std::max(level[i], l);
    }
  }

  // Group by (set, level); keep the groups with enough elementwise work.
  std::map<std::pair<Mask, size_t>, std::vector<size_t>> groups;
  for (size_t i = 0; i < n_nodes; ++i) {
    if (eligible[i]) groups[{node_mask[i], level[i]}].push_back(i);
  }
  std::vector<int64_t> island_of(n_nodes, -1);
  for (auto& [key, nodes] : groups) {
    size_t work = 0;
    for (size_t i : nodes) work += elementwise(trace.nodes[i].op) ? 1 : 0;
    if (work < min_elementwise || (key.first & (Mask(1) << 63))) continue;  // 63: sizes unknown
    for (size_t i : nodes) island_of[i] = int64_t(out.islands.size());
    Island island;
    island.nodes = std::move(nodes);
    for (uint32_t d = 0; d < trace.dims.size(); ++d) {
      if (key.first & (Mask(1) << d)) island.dims.push_back(d);
    }
    out.islands.push_back(std::move(island));
  }
  if (out.islands.empty()) return out;

  // Each island's inputs and outputs.
  std::vector<bool> read_outside(ids, false);
  for (uint32_t id : trace.outputs) read_outside[id] = true;
  for (size_t i = 0; i < n_nodes; ++i) {
    if (trace.repeated[i]) continue;
    for (uint32_t id : trace.nodes[i].inputs) {
      int64_t j = producer[id];
      if (j >= 0 && island_of[size_t(j)] >= 0 && island_of[size_t(j)] != island_of[i]) {
        read_outside[id] = true;
      }
    }
  }
  size_t n_in = trace.inputs.size();
  std::vector<bool> sized(trace.constants.size(), false);
  for (const ConstantExpr& ce : trace.constant_exprs) sized[ce.position] = true;
  for (size_t k = 0; k < out.islands.size(); ++k) {
    Island& island = out.islands[k];
    std::unordered_set<uint32_t> seen;
    for (size_t i : island.nodes) {
      for (uint32_t id : trace.nodes[i].inputs) {
        int64_t j = producer[id];
        bool inside = j >= 0 && island_of[size_t(j)] == int64_t(k);
        if (inside || !seen.insert(id).second) continue;
        island.inputs.push_back(id);
        bool constant = id >= n_in && id < n_in + sized.size() && !sized[id - n_in];
        island.held.push_back(constant || (j >= 0 && fixed[size_t(j)]));
      }
      for (size_t o = 0; o < trace.nodes[i].outputs.size(); ++o) {
        if (read_outside[out.first[i] + o]) island.outputs.push_back(uint32_t(out.first[i] + o));
      }
    }
  }

  // The schedule: units (single nodes, whole islands) in a topological
  // order, the earliest first node first (Kahn's algorithm).
  size_t n_units = 0;
  std::vector<size_t> unit_of(n_nodes, SIZE_MAX);
  std::vector<Unit> units;
  for (size_t i = 0; i < n_nodes; ++i) {
    if (trace.repeated[i]) continue;
    if (island_of[i] >= 0) {
      const Island& island = out.islands[size_t(island_of[i])];
      if (island.nodes.front() != i) {
        unit_of[i] = unit_of[island.nodes.front()];
        continue;
      }
    }
    unit_of[i] = n_units++;
    units.push_back(Unit{i, island_of[i]});
  }
  std::vector<std::vector<size_t>> next(n_units);
  std::vector<size_t> waiting(n_units, 0);
  for (size_t i = 0; i < n_nodes; ++i) {
    if (trace.repeated[i]) continue;
    std::unordered_set<size_t> before;
    for (uint32_t id : trace.nodes[i].inputs) {
      int64_t j = producer[id];
      if (j >= 0 && unit_of[size_t(j)] != unit_of[i]) before.insert(unit_of[size_t(j)]);
    }
    for (size_t u : before) {
      next[u].push_back(unit_of[i]);
      ++waiting[unit_of[i]];
    }
  }
  std::priority_queue<size_t, std::vector<size_t>, std::greater<>> ready;  // by unit = trace order
  for (size_t u = 0; u < n_units; ++u) {
    if (waiting[u] == 0) ready.push(u);
  }
  while (!ready.empty()) {
    size_t u = ready.top();
    ready.pop();
    out.schedule.push_back(units[u]);
    for (size_t v : next[u]) {
      if (--waiting[v] == 0) ready.push(v);
    }
  }
  if (out.schedule.size() != n_units) return Islands{{}, out.first, {}};  // not convex: none
  return out;
}

}  // namespace mlxfn::detail
