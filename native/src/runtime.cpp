// mlxfn::import_function and ImportedFunction: match a call to a trace,
// make the trace's constants into arrays once, evaluate a dynamic trace's
// expressions at the call's sizes once per set of sizes (a Plan), and build
// the call's graph from the handlers (handlers.h).  A shaped trace called
// often is compiled with MLX's fusion whole; a dynamic one in its static
// islands (islands.h), which serve every value of the sizes they ignore.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <functional>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "constants.h"
#include "convert.h"
#include "handlers.h"
#include "islands.h"
#include "mlx/compile_impl.h"
#include "mlx/ops.h"
#include "mlx/transforms.h"
#include "mlx/utils.h"
#include "mlxfn/mlxfn.h"
#include "mlxfn/mlxfn_core.h"

namespace mlxfn {

using namespace detail;

namespace {

constexpr const char* kCall = "[import_function::call]";
constexpr size_t kPlansPerTrace = 16;  // a decode step's sizes change every call
// Calls of a shaped trace before it is compiled with fusion: a long-running
// process pays the kernel builds once (seconds on a cold CPU kernel cache),
// a short one never (python/mlxfn/_runner.py makes the same choice).
constexpr size_t kFuseAfterCalls = 64;
// Calls of a dynamic trace's island at one set of its sizes before it is
// compiled (islands.h): fewer than a shaped trace's, as a decode step's
// islands serve every cache length, but never the first.  The trace costs
// about 3 decode steps' savings (tiny32); kernels built once per machine
// (MLX keeps them on disk).
constexpr size_t kIslandAfterCalls = 8;
// The elementwise nodes an island needs to be worth a compile.
constexpr size_t kIslandMinElementwise = 2;

[[noreturn]] void raise(MlxfnError* err) {
  int kind = int(mlxfn_error_kind(err));
  std::string message = mlxfn_error_message(err);
  mlxfn_error_free(err);
  throw Error(kind, message);
}

// A trace at one set of dynamic sizes: its nodes with every expression
// evaluated, its constants with those whose value follows the sizes.
struct Plan {
  std::vector<std::shared_ptr<const ArgList>> owned;  // the states that follow the sizes, concrete
  std::vector<bool> recheck;        // by node: output shapes to check (empty: all)
  std::vector<const ArgList*> args;  // every node's state, in order
  Arrays constants;
  bool other_sizes = false;         // not the sizes the trace was traced at
  std::atomic<bool> checked{false};  // output shapes checked once
  std::atomic<size_t> calls{0};      // calls so far (shaped traces only)
  std::mutex compiling;              // guards `compiled`
  std::function<Arrays(const Arrays&)> compiled;  // fused, after kFuseAfterCalls
  std::uintptr_t compile_id = 0;
  // The thread that compiled keeps the traced tape (and the constants it
  // holds) in its compile cache: dropped with the plan when that thread
  // drops it (other threads' entries go when those threads end).
  // A cache belongs to its thread: only that thread erases from it.
  mx::detail::CompileCacheWeakPtr compile_cache;
  std::thread::id compile_thread;

  ~Plan() {
    if (compile_id != 0 && std::this_thread::get_id() == compile_thread) {
      mx::detail::compile_erase(compile_cache, compile_id);
    }
  }
};

// Nodes computed from constants alone, whatever the sizes (a weight's
// transpose, rotary frequencies): built at a trace's first call, then
// reused by every call, so each call's graph only holds what its inputs
// change.  Only views of constants, or small results, are kept (a cast
// of a whole weight would double the memory that mapping saves).
struct Hoisted {
  std::vector<bool> node;     // which nodes
  std::vector<size_t> first;  // each node's first output id
  std::mutex mutex;
  std::atomic<bool> ready{false};
  std::vector<Arrays> arrays;  // by node, once ready
};

constexpr size_t kHoistBytes = size_t(1) << 20;

bool is_view(const std::string& op) {
  return op == "Transpose" || op == "Broadcast" || op == "BroadcastAxes" || op == "ExpandDims" ||
         op == "Squeeze" || op == "Slice";
}

std::shared_ptr<Hoisted> find_hoisted(const Trace& trace) {
  auto h = std::make_shared<Hoisted>();
  size_t n_in = trace.inputs.size();
  std::vector<bool> fixed(n_in + trace.constants.size(), false);  // by value id
  for (size_t p = 0; p < trace.constants.size(); ++p) fixed[n_in + p] = true;
  for (const ConstantExpr& ce : trace.constant_exprs) fixed[n_in + ce.position] = false;
  size_t k = 0;
  h->node.assign(trace.nodes.size(), false);
  for (size_t i = 0; i < trace.nodes.size(); ++i) {
    const Node& node = trace.nodes[i];
    bool follows = k < trace.following.size() && trace.following[k] == i;
    if (follows) ++k;
    bool ok = !trace.repeated[i] && !follows && node.output_exprs.empty() && !node.shapeless;
    for (uint32_t id : node.inputs) ok = ok && fixed[id];
    size_t bytes = 0;
    for (const TensorInfo& t : node.outputs) {
      size_t n = t.dtype.size();
      for (int d : t.shape) n *= size_t(d);
      bytes += n;
    }
    ok = ok && (is_view(node.op) || bytes <= kHoistBytes);
    h->node[i] = ok;
    h->first.push_back(fixed.size());
    for (size_t o = 0; o < node.outputs.size(); ++o) fixed.push_back(ok);
  }
  h->arrays.resize(trace.nodes.size());
  return h;
}

// An island compiled with fusion at one set of its sizes; it leaves its
// thread's compile cache as a Plan's tape does.
struct CompiledIsland {
  std::function<Arrays(const Arrays&)> fn;
  std::uintptr_t id = 0;
  mx::detail::CompileCacheWeakPtr cache;
  std::thread::id thread;

  ~CompiledIsland() {
    if (id != 0 && std::this_thread::get_id() == thread) mx::detail::compile_erase(cache, id);
  }
};

// An island's calls by the values of its sizes (most recent first).
struct IslandCalls {
  std::mutex mutex;
  std::list<std::pair<std::vector<int64_t>, size_t>> counts;
  std::list<std::pair<std::vector<int64_t>, std::shared_ptr<CompiledIsland>>> compiled;
};

std::uintptr_t fresh_compile_id() {
  // A fresh id per compiled function: MLX's compile caches are per thread
  // and keyed by it, so an id is never reused for another function.
  static std::atomic<std::uintptr_t> next_id{1};
  return next_id.fetch_add(1) + (std::uintptr_t(1) << 62);
}

bool islands_enabled() {
  const char* v = std::getenv("MLXFN_ISLANDS");  // "0": off (benches compare)
  return v == nullptr || std::string(v) != "0";
}

struct Entry {
  Trace trace;
  std::vector<Handler> handlers;
  std::list<std::pair<std::vector<int64_t>, std::shared_ptr<Plan>>> plans;  // most recent first
  std::shared_ptr<Hoisted> hoisted;
  Islands islands;
  std::vector<std::unique_ptr<IslandCalls>> island_calls;
  std::vector<uint64_t> node_dims;   // by node: the dims it follows (islands.h)
  std::vector<uint64_t> state_dims;  // by following node: the dims its state follows
};

// Whether sizes a and b are equal on every dim of `dims` (bit 63: unknown).
bool same_on(uint64_t dims, const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  if (dims >> 63) return false;
  for (size_t d = 0; d < a.size(); ++d) {
    if ((dims >> d & 1) && a[d] != b[d]) return false;
  }
  return true;
}

std::string describe_shape(const mx::Shape& shape, const std::map<int, const Dim*>& dims) {
  std::ostringstream os;
  os << "(";
  for (size_t a = 0; a < shape.size(); ++a) {
    auto it = dims.find(int(a));
    if (it != dims.end()) {
      os << it->second->min << ".." << it->second->max;
    } else {
      os << shape[a];
    }
    if (a + 1 < shape.size()) os << ",";
  }
  os << ")";
  return os.str();
}

}  // namespace

struct ImportedFunction::Impl {
  std::shared_ptr<MlxfnFile> file;
  const MlxfnGraph* graph = nullptr;
  std::string path;
  std::string metadata;
  bool legacy_shapeless = false;
  std::vector<Entry> entries;
  std::string mode = "map";
  std::string reason;
  std::optional<Mapping> mapping;
  std::mutex mutex;
  std::unordered_map<uint32_t, mx::array> constants;

  void init(MlxfnFile* opened, Load load) {
    file = std::shared_ptr<MlxfnFile>(opened, mlxfn_file_free);
    graph = mlxfn_file_graph(opened);
    MlxfnString p = mlxfn_file_path(opened);
    path.assign(p.ptr, p.len);
    metadata.assign(graph->metadata.ptr, graph->metadata.len);
    legacy_shapeless = graph->shapeless && graph->format_version == 1;
    std::vector<Trace> traces = convert_traces(*graph, legacy_shapeless);
    for (size_t t = 0; t < traces.size(); ++t) {
      Entry entry;
      entry.trace = std::move(traces[t]);
      dedupe(entry.trace);
      for (size_t n = 0; n < entry.trace.nodes.size(); ++n) {
        const std::string& op = entry.trace.nodes[n].op;
        Handler h = handler_for(op);
        if (h == nullptr) {
          throw Error(MlxfnErrorKind_Format,
                      path + ": trace " + std::to_string(t) + ": node " + std::to_string(n) +
                          " has primitive '" + op +
                          "', which this mlxfn cannot rebuild (a damaged file, or one written "
                          "by a newer mlxfn)");
        }
        entry.handlers.push_back(h);
      }
      entry.hoisted = find_hoisted(entry.trace);
      if (!legacy_shapeless && !entry.trace.dims.empty()) {
        entry.node_dims = node_dims(entry.trace);
        for (size_t n : entry.trace.following) {
          entry.state_dims.push_back(state_dims(entry.trace.nodes[n].args));
        }
      }
      if (!legacy_shapeless && islands_enabled()) {
        entry.islands = find_islands(entry.trace, entry.hoisted->node, kIslandMinElementwise);
        for (size_t k = 0; k < entry.islands.islands.size(); ++k) {
          entry.island_calls.push_back(std::make_unique<IslandCalls>());
        }
      }
      entries.push_back(std::move(entry));
    }
    if (load == Load::Copy) {
      mode = "copy";
      reason = "Load::Copy was requested";
    } else if (!mapping_problem().empty()) {
      if (load == Load::Map) {
        throw Error(MlxfnErrorKind_Usage,
                    "[import_function] Load::Map is not possible here: " + mapping_problem());
      }
      mode = "copy";
      reason = mapping_problem();
    }
  }

  // Constant `index` of the file mapped, or nullopt where it cannot be.
  std::optional<mx::array> map_one(uint32_t index) {
    const MlxfnConstant& c = graph->constants[index];
    mx::Shape shape(c.shape, c.shape + c.shape_len);
    mx::Dtype dtype = dtype_of(c.dtype);
    try {
      int fd = mlxfn_file_fd(file.get());
      if (fd >= 0) {
        if (!mapping) mapping.emplace(fd, size_t(mlxfn_file_size(file.get())));
        return mapping->wrap(size_t(c.offset), shape, dtype);
      }
      return wrap_bytes(c.data, shape, dtype, file);
    } catch (const std::invalid_argument&) {
      return std::nullopt;  // no length prefix (format 1), or unaligned bytes: copied
    }
  }

  // The file's constants `indices` as arrays, made once and shared by every trace.
  Arrays materialize(const std::vector<uint32_t>& indices) {
    std::vector<uint32_t> wanted;
    std::unordered_set<uint32_t> seen;
    for (uint32_t i : indices) {
      if (!constants.count(i) && seen.insert(i).second) wanted.push_back(i);
    }
    if (!wanted.empty()) {
      MlxfnError* err = nullptr;
      if (!mlxfn_file_check_unchanged(file.get(), &err)) raise(err);
      std::vector<size_t> copy;
      std::vector<uint8_t*> destinations;
      for (uint32_t i : wanted) {
        const MlxfnConstant& c = graph->constants[i];
        mx::Shape shape(c.shape, c.shape + c.shape_len);
        mx::Dtype dtype = dtype_of(c.dtype);
        if (c.length == 0) {
          constants.emplace(i, mx::zeros(shape, dtype));
          continue;
        }
        if (mode == "map") {
          if (auto mapped = map_one(i)) {
            constants.emplace(i, *mapped);
            continue;
          }
        }
        uint8_t* data = nullptr;
        constants.emplace(i, allocate(shape, dtype, &data));
        copy.push_back(i);
        destinations.push_back(data);
      }
      if (!copy.empty() &&
          !mlxfn_file_copy_constants(file.get(), copy.data(), destinations.data(), copy.size(),
                                     &err)) {
        for (size_t i : copy) constants.erase(uint32_t(i));
        raise(err);
      }
    }
    Arrays out;
    out.reserve(indices.size());
    for (uint32_t i : indices) out.push_back(constants.at(i));
    return out;
  }

  std::shared_ptr<Plan> plan(Entry& entry, const std::vector<int64_t>& sizes) {
    std::lock_guard<std::mutex> lock(mutex);
    for (auto it = entry.plans.begin(); it != entry.plans.end(); ++it) {
      if (it->first == sizes) {
        entry.plans.splice(entry.plans.begin(), entry.plans, it);
        return it->second;
      }
    }
    const Trace& trace = entry.trace;
    auto plan = std::make_shared<Plan>();
    plan->constants = materialize(trace.constants);
    for (const ConstantExpr& ce : trace.constant_exprs) {
      auto [num, den] = expr_value(ce.expr, sizes);
      mx::array& c = plan->constants.at(ce.position);
      mx::array value = ce.expr.integer && den == 1
                            ? mx::array(static_cast<int64_t>(num), c.dtype())
                            : mx::array(double(num) / double(den), c.dtype());
      c = mx::reshape(value, c.shape());
    }
    plan->other_sizes = !trace.dims.empty() && sizes != trace.base_sizes();
    // The last plan's states and checks serve the nodes that follow none of
    // the sizes that changed (a decode step's new cache length leaves the
    // batch's nodes as they were).
    const auto* last = entry.plans.empty() || entry.node_dims.empty() ? nullptr
                                                                       : &entry.plans.front();
    plan->owned.reserve(trace.following.size());
    for (size_t k = 0; k < trace.following.size(); ++k) {
      if (last && same_on(entry.state_dims[k], last->first, sizes)) {
        plan->owned.push_back(last->second->owned[k]);
      } else {
        plan->owned.push_back(
            std::make_shared<const ArgList>(concrete(trace.nodes[trace.following[k]], sizes)));
      }
    }
    if (last && last->second->checked) {  // every node valid there: checked, or as before
      plan->recheck.resize(trace.nodes.size());
      for (size_t n = 0; n < trace.nodes.size(); ++n) {
        plan->recheck[n] = !same_on(entry.node_dims[n], last->first, sizes);
      }
    }
    plan->args.reserve(trace.nodes.size());
    size_t k = 0;
    for (size_t n = 0; n < trace.nodes.size(); ++n) {
      bool follows = k < trace.following.size() && trace.following[k] == n;
      plan->args.push_back(follows ? plan->owned[k++].get() : &trace.nodes[n].args);
    }
    entry.plans.emplace_front(sizes, plan);
    if (entry.plans.size() > kPlansPerTrace) entry.plans.pop_back();
    return plan;
  }

  std::string where(size_t t, const std::vector<int64_t>& sizes) const {
    std::string w = path + ": trace " + std::to_string(t);
    if (!sizes.empty()) {
      w += " at sizes ";
      for (size_t d = 0; d < sizes.size(); ++d) {
        w += (d ? ", d" : "d") + std::to_string(d) + "=" + std::to_string(sizes[d]);
      }
    }
    return w;
  }

  // A call: the plan's compiled function once it has one, else the graph
  // built from the handlers.  A shaped trace called often enough is
  // compiled with MLX's fusion (compile mode permitting): CPU kernels are
  // built then, never on a first call.
  Arrays run(size_t t, const std::vector<int64_t>& sizes, Arrays inputs) {
    Entry& entry = entries[t];
    std::shared_ptr<Plan> p = plan(entry, sizes);
    bool shaped = entry.trace.dims.empty() && !legacy_shapeless;
    if (shaped && p->checked && ++p->calls >= kFuseAfterCalls) {
      std::function<Arrays(const Arrays&)> compiled;
      {
        std::lock_guard<std::mutex> lock(p->compiling);
        compiled = p->compiled;
      }
      if (compiled) return compiled(inputs);
      std::weak_ptr<Plan> weak = p;
      auto fun = [this, t, weak](const Arrays& in) {
        std::shared_ptr<Plan> plan = weak.lock();
        if (!plan) throw std::runtime_error("[mlxfn] a compiled trace outlived its import");
        return interpret(t, {}, plan, in);
      };
      std::uintptr_t id = fresh_compile_id();
      compiled = mx::detail::compile(fun, id);
      {
        std::lock_guard<std::mutex> lock(p->compiling);
        if (!p->compiled) {
          p->compiled = compiled;
          p->compile_id = id;
          p->compile_cache = mx::detail::compile_cache();
          p->compile_thread = std::this_thread::get_id();
        }
      }
      return compiled(inputs);
    }
    return interpret(t, sizes, p, std::move(inputs));
  }

  // Node i of trace t applied to `args` (its inputs), its outputs checked
  // against the file on a plan's first call.
  Arrays run_node(size_t t, const std::vector<int64_t>& sizes, Plan& p, size_t i,
                  const ArgList& state, const Arrays& args, bool check) {
    Entry& entry = entries[t];
    const Node& node = entry.trace.nodes[i];
    Arrays outs;
    try {
      outs = entry.handlers[i](State(node, state), args);
    } catch (const std::invalid_argument& e) {
      std::string at = where(t, sizes) + ": node " + std::to_string(i) + " (" + node.op + ")";
      if (p.other_sizes) {
        throw std::invalid_argument(
            at + " refuses these inputs, as the original function would: " + e.what());
      }
      throw ReplayError(at + " does not replay: " + e.what());
    } catch (const std::exception& e) {
      throw ReplayError(where(t, sizes) + ": node " + std::to_string(i) + " (" + node.op +
                        ") does not replay: " + e.what());
    }
    if (outs.size() != node.outputs.size()) {
      throw ReplayError(where(t, sizes) + ": node " + std::to_string(i) + " (" + node.op +
                        ") produced " + std::to_string(outs.size()) +
                        " outputs, the file records " + std::to_string(node.outputs.size()));
    }
    if (check && (p.recheck.empty() || p.recheck[i])) check_outputs(t, sizes, i, node, outs);
    return outs;
  }

  Arrays interpret(size_t t, const std::vector<int64_t>& sizes, const std::shared_ptr<Plan>& p,
                   Arrays inputs) {
    Entry& entry = entries[t];
    const Trace& trace = entry.trace;
    // This thread's buffers, kept between calls (a call allocates little).
    thread_local Arrays env, args;
    struct Clear {
      ~Clear() {
        env.clear();
        args.clear();
      }
    } clear;
    env.clear();
    env.insert(env.end(), std::make_move_iterator(inputs.begin()),
               std::make_move_iterator(inputs.end()));
    env.insert(env.end(), p->constants.begin(), p->constants.end());
    bool check = !p->checked && !legacy_shapeless;
    Hoisted& hoisted = *entry.hoisted;
    bool reuse = hoisted.ready.load(std::memory_order_acquire);
    bool tracing = inputs_are_tracers(env, trace.inputs.size());
    if (!entry.islands.schedule.empty() && !tracing) {
      run_units(t, sizes, *p, env, args, check, reuse);
    } else {
      for (size_t i = 0; i < trace.nodes.size(); ++i) {
        const Node& node = trace.nodes[i];
        if (trace.repeated[i]) {  // nothing reads its ids (dedupe): placeholders
          mx::array placeholder = env.back();
          for (size_t k = 0; k < node.outputs.size(); ++k) env.push_back(placeholder);
          continue;
        }
        if (reuse && hoisted.node[i]) {
          env.insert(env.end(), hoisted.arrays[i].begin(), hoisted.arrays[i].end());
          continue;
        }
        args.clear();
        for (uint32_t id : node.inputs) args.push_back(env[id]);
        Arrays outs = run_node(t, sizes, *p, i, *p->args[i], args, check);
        for (mx::array& o : outs) env.push_back(std::move(o));
      }
    }
    p->checked = true;
    if (!reuse && !tracing) {
      std::lock_guard<std::mutex> lock(hoisted.mutex);
      if (!hoisted.ready.load()) {
        Arrays all;
        for (size_t i = 0; i < trace.nodes.size(); ++i) {
          if (!hoisted.node[i]) continue;
          auto begin = env.begin() + std::ptrdiff_t(hoisted.first[i]);
          hoisted.arrays[i].assign(begin, begin + std::ptrdiff_t(trace.nodes[i].outputs.size()));
          all.insert(all.end(), hoisted.arrays[i].begin(), hoisted.arrays[i].end());
        }
        // Evaluated before other calls share them: no two threads ever
        // evaluate one lazy array at once.  Views and small results only.
        mx::eval(all);
        hoisted.ready.store(true, std::memory_order_release);
      }
    }
    Arrays result;
    result.reserve(trace.outputs.size());
    for (uint32_t id : trace.outputs) result.push_back(env[id]);
    return result;
  }

  // A dynamic trace's call unit by unit (islands.h): a node, or an island,
  // compiled once called often enough at the values of its sizes.  `env`
  // holds the inputs and constants and is filled to every value id.
  void run_units(size_t t, const std::vector<int64_t>& sizes, Plan& p, Arrays& env,
                 Arrays& args, bool check, bool reuse) {
    Entry& entry = entries[t];
    const Trace& trace = entry.trace;
    const Islands& islands = entry.islands;
    Hoisted& hoisted = *entry.hoisted;
    size_t total = islands.first.empty() ? env.size()
                                         : islands.first.back() + trace.nodes.back().outputs.size();
    mx::array placeholder = env.back();
    env.resize(total, placeholder);
    auto run_one = [&](size_t i) {
      const Node& node = trace.nodes[i];
      uint32_t first = islands.first[i];
      if (reuse && hoisted.node[i]) {
        std::copy(hoisted.arrays[i].begin(), hoisted.arrays[i].end(), env.begin() + first);
        return;
      }
      args.clear();
      for (uint32_t id : node.inputs) args.push_back(env[id]);
      Arrays outs = run_node(t, sizes, p, i, *p.args[i], args, check);
      for (size_t o = 0; o < outs.size(); ++o) env[first + o] = std::move(outs[o]);
    };
    for (const Unit& unit : islands.schedule) {
      if (unit.island < 0) {
        run_one(unit.node);
        continue;
      }
      const Island& island = islands.islands[size_t(unit.island)];
      std::shared_ptr<CompiledIsland> compiled =
          reuse ? island_for(t, size_t(unit.island), sizes, p, env) : nullptr;
      if (!compiled) {
        for (size_t i : island.nodes) run_one(i);
        continue;
      }
      Arrays in;
      in.reserve(island.inputs.size());
      for (size_t k = 0; k < island.inputs.size(); ++k) {
        if (!island.held[k]) in.push_back(env[island.inputs[k]]);
      }
      Arrays outs;
      try {
        outs = compiled->fn(in);
      } catch (const std::exception& e) {
        throw ReplayError(where(t, sizes) + ": the island of nodes " +
                          std::to_string(island.nodes.front()) + ".." +
                          std::to_string(island.nodes.back()) + " does not replay: " + e.what());
      }
      // Its nodes' outputs were checked at the calls before it was compiled,
      // at these same values of its sizes.
      for (size_t k = 0; k < outs.size(); ++k) env[island.outputs[k]] = std::move(outs[k]);
    }
  }

  // Island k of trace t compiled at the values of its sizes, once called
  // kIslandAfterCalls times at them; else nullptr (run node by node).
  std::shared_ptr<CompiledIsland> island_for(size_t t, size_t k, const std::vector<int64_t>& sizes,
                                             const Plan& p, const Arrays& env) {
    Entry& entry = entries[t];
    const Island& island = entry.islands.islands[k];
    IslandCalls& calls = *entry.island_calls[k];
    std::vector<int64_t> key;
    key.reserve(island.dims.size());
    for (uint32_t d : island.dims) key.push_back(sizes[d]);
    {
      std::lock_guard<std::mutex> lock(calls.mutex);
      for (auto& [at, compiled] : calls.compiled) {
        if (at == key) return compiled;
      }
      auto it = calls.counts.begin();
      while (it != calls.counts.end() && it->first != key) ++it;
      if (it == calls.counts.end()) {
        calls.counts.emplace_front(key, 0);
        if (calls.counts.size() > kPlansPerTrace) calls.counts.pop_back();
        it = calls.counts.begin();
      } else {
        calls.counts.splice(calls.counts.begin(), calls.counts, it);
      }
      if (++it->second < kIslandAfterCalls) return nullptr;
    }
    // The island's nodes as a function of its inputs, with their states at
    // these sizes (every plan with these values of its dims has the same).
    auto states = std::make_shared<std::vector<ArgList>>();
    for (size_t i : island.nodes) states->push_back(*p.args[i]);
    // The inputs fixed for the import's life are held by the compiled
    // function (constants of its tape), not passed at each call.
    auto held = std::make_shared<std::unordered_map<uint32_t, mx::array>>();
    for (size_t j = 0; j < island.inputs.size(); ++j) {
      if (island.held[j]) held->emplace(island.inputs[j], env[island.inputs[j]]);
    }
    auto fun = [this, t, k, states, held](const Arrays& in) {
      const Entry& e = entries[t];
      const Island& is = e.islands.islands[k];
      std::unordered_map<uint32_t, mx::array> values = *held;
      Arrays folded;
      size_t next = 0;
      for (size_t j = 0; j < is.inputs.size(); ++j) {
        if (!is.held[j]) values.emplace(is.inputs[j], in.at(next++));
      }
      for (size_t j = 0; j < is.nodes.size(); ++j) {
        const Node& node = e.trace.nodes[is.nodes[j]];
        Arrays a;
        for (uint32_t id : node.inputs) a.push_back(values.at(id));
        Arrays outs = e.handlers[is.nodes[j]](State(node, (*states)[j]), a);
        fold(node, outs, folded);
        uint32_t first = e.islands.first[is.nodes[j]];
        for (size_t o = 0; o < outs.size(); ++o) values.emplace(first + o, std::move(outs[o]));
      }
      mx::eval(folded);
      Arrays out;
      for (uint32_t id : is.outputs) out.push_back(values.at(id));
      return out;
    };
    auto compiled = std::make_shared<CompiledIsland>();
    compiled->id = fresh_compile_id();
    compiled->fn = mx::detail::compile(fun, compiled->id);
    compiled->cache = mx::detail::compile_cache();
    compiled->thread = std::this_thread::get_id();
    std::lock_guard<std::mutex> lock(calls.mutex);
    for (auto& [at, other] : calls.compiled) {
      if (at == key) return other;  // another thread was first
    }
    calls.compiled.emplace_front(key, compiled);
    if (calls.compiled.size() > kPlansPerTrace) calls.compiled.pop_back();
    return compiled;
  }

  // Outputs that, while an island is traced, follow its held inputs alone
  // (a weight broadcast to the batch): evaluated before the trace ends
  // (`folded`, at once), so the compiled function holds them as constants
  // instead of rebuilding them at every call.  Views and small results
  // only, as hoisting.
  static void fold(const Node& node, const Arrays& outs, Arrays& folded) {
    size_t bytes = 0;
    for (const mx::array& o : outs) {
      if (o.is_tracer() || !o.has_primitive()) return;
      bytes += o.nbytes();
    }
    if (is_view(node.op) || bytes <= kHoistBytes) folded.insert(folded.end(), outs.begin(), outs.end());
  }

  // Whether this is a trace by mx::compile (its placeholders are tracers):
  // what it builds belongs to that trace, not to later calls.
  static bool inputs_are_tracers(const Arrays& env, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      if (env[i].is_tracer()) return true;
    }
    return false;
  }

  void check_outputs(size_t t, const std::vector<int64_t>& sizes, size_t i, const Node& node,
                     const Arrays& outs) const {
    std::vector<TensorInfo> shapes =
        node.output_exprs.empty() ? std::vector<TensorInfo>{} : output_shapes(node, sizes);
    for (size_t k = 0; k < outs.size(); ++k) {
      const TensorInfo& want = shapes.empty() ? node.outputs[k] : shapes[k];
      const mx::Shape& got = outs[k].shape();
      bool same = got.size() == want.shape.size() && outs[k].dtype() == want.dtype;
      for (size_t a = 0; same && a < got.size(); ++a) {
        same = want.shape[a] == -1 || want.shape[a] == got[a];
      }
      if (!same) {
        std::ostringstream msg;
        msg << where(t, sizes) << ": node " << i << " (" << node.op << ") output " << k << " is "
            << got << " " << outs[k].dtype() << ", the file records " << want.shape << " "
            << want.dtype;
        throw ReplayError(msg.str());
      }
    }
  }

  // The dynamic sizes at which trace `t` serves these inputs, or nullopt.
  std::optional<std::vector<int64_t>> sizes_for(const Trace& trace, const Arrays& flat,
                                                const std::vector<std::string>& names) const {
    if (flat.size() != trace.inputs.size() || names != trace.keyword_names) return std::nullopt;
    for (size_t i = 0; i < flat.size(); ++i) {
      if (flat[i].dtype() != trace.inputs[i].dtype ||
          flat[i].ndim() != trace.inputs[i].shape.size()) {
        return std::nullopt;
      }
    }
    if (legacy_shapeless) return std::vector<int64_t>{};
    std::vector<std::vector<bool>> dynamic(flat.size());
    for (size_t i = 0; i < flat.size(); ++i) dynamic[i].assign(flat[i].ndim(), false);
    for (const Dim& d : trace.dims) {
      for (auto [i, a] : d.axes) dynamic[i][a] = true;
    }
    for (size_t i = 0; i < flat.size(); ++i) {
      for (size_t a = 0; a < flat[i].ndim(); ++a) {
        if (!dynamic[i][a] && flat[i].shape(int(a)) != trace.inputs[i].shape[a]) {
          return std::nullopt;
        }
      }
    }
    std::vector<int64_t> sizes;
    sizes.reserve(trace.dims.size());
    for (const Dim& d : trace.dims) {
      int64_t value = flat[d.axes[0].first].shape(int(d.axes[0].second));
      for (auto [i, a] : d.axes) {
        if (flat[i].shape(int(a)) != value) return std::nullopt;
      }
      if (value < d.min || value > d.max) return std::nullopt;
      sizes.push_back(value);
    }
    return sizes;
  }

  [[noreturn]] void no_match(const mx::Args& args,
                             const std::map<std::string, mx::array>& kwargs) const {
    std::ostringstream msg;
    msg << kCall << " No imported function found which matches "
        << "the given positional and keyword arguments. Possible functions include:\n";
    int n = 1;
    for (const Entry& e : entries) {
      const Trace& tr = e.trace;
      size_t npos = tr.positional();
      msg << " " << n++ << ". Function with " << npos << " positional inputs and "
          << tr.keyword_names.size() << " keyword inputs:\n";
      for (size_t j = 0; j < tr.inputs.size(); ++j) {
        std::map<int, const Dim*> dims;
        for (const Dim& d : tr.dims) {
          for (auto [i, a] : d.axes) {
            if (i == j) dims[int(a)] = &d;
          }
        }
        if (j < npos) {
          msg << "   " << j + 1 << ": ";
        } else {
          msg << "   \"" << tr.keyword_names[j - npos] << "\": ";
        }
        msg << describe_shape(tr.inputs[j].shape, dims) << " " << tr.inputs[j].dtype << "\n";
      }
    }
    msg << "\nCalled with " << args.size() << " positional inputs and " << kwargs.size()
        << " keyword inputs:\n";
    for (size_t i = 0; i < args.size(); ++i) {
      msg << "  " << i + 1 << ": " << args[i].shape() << " " << args[i].dtype() << "\n";
    }
    for (auto& [k, in] : kwargs) {
      msg << "  \"" << k << "\": " << in.shape() << " " << in.dtype() << "\n";
    }
    throw std::invalid_argument(msg.str());
  }

  Arrays call(const mx::Args& args, const mx::Kwargs& kwargs) {
    std::map<std::string, mx::array> sorted(kwargs.begin(), kwargs.end());
    Arrays flat = args;
    std::vector<std::string> names;
    for (auto& [k, v] : sorted) {
      flat.push_back(v);
      names.push_back(k);
    }
    for (size_t t = 0; t < entries.size(); ++t) {
      auto sizes = sizes_for(entries[t].trace, flat, names);
      if (sizes) return run(t, *sizes, std::move(flat));
    }
    no_match(args, sorted);
  }
};

std::vector<mx::array> ImportedFunction::operator()(const mx::Args& args) const {
  return impl_->call(args, {});
}

std::vector<mx::array> ImportedFunction::operator()(const mx::Kwargs& kwargs) const {
  return impl_->call({}, kwargs);
}

std::vector<mx::array> ImportedFunction::operator()(const mx::Args& args,
                                                    const mx::Kwargs& kwargs) const {
  return impl_->call(args, kwargs);
}

const std::string& ImportedFunction::metadata() const { return impl_->metadata; }

std::string ImportedFunction::load_mode() const {
  return impl_->mode == "map" ? "map" : "copy (" + impl_->reason + ")";
}

std::size_t ImportedFunction::trace_count() const { return impl_->entries.size(); }

std::vector<std::string> ImportedFunction::primitives() const {
  std::vector<std::string> names;
  for (const auto& entry : impl_->entries) {
    for (const auto& node : entry.trace.nodes) names.push_back(node.op);
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

std::vector<std::string> supported_primitives() {
  std::vector<std::string> names;
  for (const auto& [name, _] : handlers()) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

ImportedFunction import_function(const std::string& path, Load load) {
  MlxfnError* err = nullptr;
  MlxfnFile* file = mlxfn_file_open(path.c_str(), &err);
  if (file == nullptr) raise(err);
  auto impl = std::make_shared<ImportedFunction::Impl>();
  impl->init(file, load);
  return ImportedFunction(impl);
}

ImportedFunction import_function(const void* data, std::size_t size, Load load) {
  MlxfnError* err = nullptr;
  MlxfnFile* file =
      mlxfn_file_open_bytes(static_cast<const uint8_t*>(data), size, "<memory>", &err);
  if (file == nullptr) raise(err);
  auto impl = std::make_shared<ImportedFunction::Impl>();
  impl->init(file, load);
  return ImportedFunction(impl);
}

}  // namespace mlxfn
