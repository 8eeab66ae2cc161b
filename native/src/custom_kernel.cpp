// CustomKernel: a user kernel from mx.fast.metal_kernel / cuda_kernel
// (python/mlxfn/replay/custom_kernel.py).  The recorded state holds the
// generated source (user header, a signature MLX wrote from the inputs' and
// outputs' names and dtypes, the user body and, on Metal, a template
// instantiation); the handler splits it back into header, names, template
// arguments and body and calls the kernel factory again, which regenerates
// the same source.  A precompiled CUDA kernel goes back through
// precompiled_cuda_kernel.  Without the kernel's backend the call throws
// std::runtime_error naming the kernel, as MLX does.
#include <optional>
#include <regex>
#include <stdexcept>
#include <tuple>

#include "handlers.h"
#include "mlx/backend/cuda/cuda.h"
#include "mlx/backend/metal/metal.h"
#include "mlx/fast.h"

namespace mlxfn::detail {
namespace {

namespace fast = mx::fast;

struct KernelSource {
  std::string header;
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
  std::string body;
  std::vector<std::pair<std::string, fast::TemplateArg>> templates;
  bool atomic = false;
};

const std::string kCudaNamespace =
    "namespace mlx::core::cu {\n\nnamespace cg = cooperative_groups;\n\n";
const std::string kCudaTail = "\n}\n\n} // namespace mlx::core::cu\n";
const std::string kCudaDefaultHeader =
    "\n#include \"mlx/backend/cuda/device/utils.cuh\"\n\n#include <cooperative_groups.h>\n\n";

std::vector<std::string> split(const std::string& s, const std::string& by) {
  std::vector<std::string> out;
  size_t at = 0;
  for (size_t next; (next = s.find(by, at)) != std::string::npos; at = next + by.size()) {
    out.push_back(s.substr(at, next - at));
  }
  out.push_back(s.substr(at));
  return out;
}

size_t find(const std::string& s, const std::string& what, size_t from = 0) {
  size_t at = s.find(what, from);
  if (at == std::string::npos) {
    throw std::invalid_argument("[mlxfn] CustomKernel: the source has no '" + what + "'");
  }
  return at;
}

mx::Dtype metal_type(const std::string& name) {
  static const std::vector<std::pair<std::string, mx::Dtype>> types = {
      {"bool", mx::bool_},     {"uint8_t", mx::uint8},   {"uint16_t", mx::uint16},
      {"uint32_t", mx::uint32}, {"uint64_t", mx::uint64}, {"int8_t", mx::int8},
      {"int16_t", mx::int16},  {"int32_t", mx::int32},   {"int64_t", mx::int64},
      {"half", mx::float16},   {"float", mx::float32},   {"bfloat16_t", mx::bfloat16},
      {"complex64_t", mx::complex64}};
  for (const auto& [n, t] : types) {
    if (n == name) return t;
  }
  throw std::invalid_argument("[mlxfn] CustomKernel: unknown template type " + name);
}

// How many signature arguments input k takes: the buffer, then its shape,
// strides and ndim where MLX passed them (shape_infos) for a non-scalar.
size_t inputs_arguments(const std::vector<int>& ndims, const std::vector<std::vector<bool>>& infos,
                        std::vector<size_t>* firsts) {
  size_t n = 0;
  for (size_t k = 0; k < ndims.size(); ++k) {
    firsts->push_back(n);
    n += 1;
    if (ndims[k] > 0 && k < infos.size()) {
      for (bool b : infos[k]) n += b ? 1 : 0;
    }
  }
  return n;
}

std::string buffer_name(const std::string& line) {
  std::smatch m;
  if (!std::regex_search(line, m, std::regex(R"((\w+) \[\[buffer)"))) {
    throw std::invalid_argument("[mlxfn] CustomKernel: not a buffer argument: " + line);
  }
  return m[1];
}

KernelSource parse_metal(const std::string& name, const std::string& source,
                         const std::vector<int>& ndims,
                         const std::vector<std::vector<bool>>& infos) {
  KernelSource k;
  std::string opening = "[[kernel]] void " + name + "(\n";
  size_t start = find(source, opening);
  k.header = source.substr(0, start);
  std::vector<std::string> params;
  if (k.header.size() >= 2 && k.header.compare(k.header.size() - 2, 2, ">\n") == 0 &&
      k.header.find("template <") != std::string::npos) {
    size_t cut = k.header.rfind("template <");
    size_t from = cut + std::string("template <").size();
    params = split(k.header.substr(from, k.header.size() - 2 - from), ", ");
    k.header = k.header.substr(0, cut);
    size_t inst = find(source, "decltype(" + name + "<");
    size_t vfrom = inst + std::string("decltype(" + name + "<").size();
    size_t vend = find(source, ">) ", vfrom);
    std::vector<std::string> values = split(source.substr(vfrom, vend - vfrom), ", ");
    for (size_t i = 0; i < params.size() && i < values.size(); ++i) {
      std::vector<std::string> kn = split(params[i], " ");
      if (kn.size() != 2) throw std::invalid_argument("[mlxfn] CustomKernel: template " + params[i]);
      if (kn[0] == "int") {
        k.templates.emplace_back(kn[1], std::stoi(values[i]));
      } else if (kn[0] == "bool") {
        k.templates.emplace_back(kn[1], values[i] == "1" || values[i] == "true");
      } else {
        k.templates.emplace_back(kn[1], metal_type(values[i]));
      }
    }
  }
  size_t sig_start = start + opening.size();
  size_t sig_end = find(source, ") {\n", sig_start);
  std::vector<std::string> lines = split(source.substr(sig_start, sig_end - sig_start), "\n");
  size_t body_start = sig_end + std::string(") {\n").size();
  size_t body_end = k.templates.empty() && params.empty()
                        ? source.size() - 3
                        : source.rfind("\n}\n\ntemplate [[host_name");
  if (body_end == std::string::npos || body_end < body_start) {
    throw std::invalid_argument("[mlxfn] CustomKernel: no end of the kernel body");
  }
  k.body = source.substr(body_start, body_end - body_start);
  std::vector<std::string> device;
  for (const std::string& line : lines) {
    if (line.find("[[buffer(") != std::string::npos) device.push_back(line);
  }
  std::vector<size_t> firsts;
  size_t n_in = inputs_arguments(ndims, infos, &firsts);
  if (n_in > device.size()) throw std::invalid_argument("[mlxfn] CustomKernel: short signature");
  for (size_t f : firsts) k.inputs.push_back(buffer_name(device[f]));
  for (size_t i = n_in; i < device.size(); ++i) {
    k.outputs.push_back(buffer_name(device[i]));
    k.atomic = k.atomic || device[i].find("atomic<") != std::string::npos;
  }
  return k;
}

KernelSource parse_cuda(const std::string& name, const std::string& source,
                        const std::vector<int>& ndims,
                        const std::vector<std::vector<bool>>& infos) {
  KernelSource k;
  size_t ns = find(source, kCudaNamespace);
  k.header = source.substr(0, ns);
  if (k.header.rfind(kCudaDefaultHeader, 0) == 0) k.header = k.header.substr(kCudaDefaultHeader.size());
  std::string opening = "__global__ void " + name + "(\n";
  size_t sig_start = find(source, opening, ns) + opening.size();
  size_t sig_end = find(source, ") {\n", sig_start);
  std::vector<std::string> names;
  for (const std::string& line : split(source.substr(sig_start, sig_end - sig_start), ",\n")) {
    size_t last = line.find_last_of(" \t\n");
    names.push_back(last == std::string::npos ? line : line.substr(last + 1));
  }
  std::vector<size_t> firsts;
  size_t n_in = inputs_arguments(ndims, infos, &firsts);
  if (n_in > names.size()) throw std::invalid_argument("[mlxfn] CustomKernel: short signature");
  for (size_t f : firsts) k.inputs.push_back(names[f]);
  k.outputs.assign(names.begin() + std::ptrdiff_t(n_in), names.end());
  size_t body_start = sig_end + std::string(") {\n").size();
  size_t body_end = source.rfind(kCudaTail);
  if (body_end == std::string::npos || body_end < body_start) {
    throw std::invalid_argument("[mlxfn] CustomKernel: no end of the kernel body");
  }
  k.body = source.substr(body_start, body_end - body_start);
  return k;
}

[[noreturn]] void unavailable(const std::string& kernel) {
  throw std::runtime_error("[import_function] CustomKernel '" + kernel +
                           "' needs a Metal or CUDA GPU: custom kernels only run on the GPU "
                           "backend they were written for.");
}

std::string strip_prefix(const std::string& name) {
  const std::string prefix = "custom_kernel_";
  return name.rfind(prefix, 0) == 0 ? name.substr(prefix.size()) : name;
}

// State: name, source, grid (3), threadgroup (3), shape_infos,
// ensure_row_contiguous, init_value, scalars, is_precompiled, shared_memory,
// compile options.
Arrays custom_kernel(const State& n, const Arrays& xs) {
  const std::string& name = n.str(0);
  const std::string& source = n.str(1);
  auto grid = std::make_tuple(int(n.i(2)), int(n.i(3)), int(n.i(4)));
  auto group = std::make_tuple(int(n.i(5)), int(n.i(6)), int(n.i(7)));
  std::vector<std::vector<bool>> infos;
  for (const Arg& info : n.args.at(8).items) {
    std::vector<bool> flags;
    for (const Arg& f : info.items) flags.push_back(f.kind == Arg::Kind::Bool ? f.b : f.i != 0);
    for (int64_t f : info.ints) flags.push_back(f != 0);
    infos.push_back(flags);
  }
  bool contiguous = n.b(9);
  std::optional<float> init;
  if (n.args.at(10).kind != Arg::Kind::None) init = float(n.f(10));
  bool precompiled = n.b(12);
  int shared_memory = int(n.i(13));
  std::vector<mx::Shape> shapes;
  std::vector<mx::Dtype> dtypes;
  for (const TensorInfo& t : n.outputs) {
    shapes.push_back(t.shape);
    dtypes.push_back(t.dtype);
  }
  std::vector<int> ndims;
  for (const mx::array& x : xs) ndims.push_back(int(x.ndim()));
  bool cuda = mx::cu::is_available();
  if (precompiled) {
    if (!cuda) unavailable(name);
    std::vector<fast::ScalarArg> scalars;
    for (const Arg& s : n.args.at(11).items) {
      if (s.kind == Arg::Kind::Bool) {
        scalars.emplace_back(s.b);
      } else if (s.kind == Arg::Kind::Int) {
        scalars.emplace_back(int(s.i));
      } else {
        scalars.emplace_back(float(s.f));
      }
    }
    return fast::precompiled_cuda_kernel(name, source, xs, shapes, dtypes, scalars, grid, group,
                                         shared_memory, init, contiguous);
  }
  KernelSource k;
  fast::CustomKernelFunction kernel;
  if (mx::metal::is_available() && source.find("[[kernel]] void " + name + "(") != std::string::npos) {
    k = parse_metal(name, source, ndims, infos);
    kernel = fast::metal_kernel(strip_prefix(name), k.inputs, k.outputs, k.body, k.header,
                                contiguous, k.atomic);
  } else if (cuda && source.find("__global__ void " + name + "(") != std::string::npos) {
    k = parse_cuda(name, source, ndims, infos);
    kernel = fast::cuda_kernel(strip_prefix(name), k.inputs, k.outputs, k.body, k.header,
                               contiguous, shared_memory);
  } else {
    unavailable(name);
  }
  return kernel(xs, shapes, dtypes, grid, group, k.templates, init, false, {});
}

}  // namespace

void add_custom_kernel(std::unordered_map<std::string, Handler>& m) {
  m["CustomKernel"] = custom_kernel;
}

}  // namespace mlxfn::detail
