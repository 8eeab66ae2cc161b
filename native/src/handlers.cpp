#include "handlers.h"

#include <stdexcept>

namespace mlxfn::detail {

const std::unordered_map<std::string, Handler>& handlers() {
  static const auto* map = [] {
    auto* m = new std::unordered_map<std::string, Handler>();
    add_elementwise(*m);
    add_shape(*m);
    add_reduction(*m);
    add_linalg(*m);
    add_indexing(*m);
    add_fast(*m);
    add_distributed(*m);
    add_custom_kernel(*m);
    return m;
  }();
  return *map;
}

Handler handler_for(const std::string& op) {
  const auto& map = handlers();
  auto it = map.find(op);
  return it == map.end() ? nullptr : it->second;
}

const char* quantization_mode(int64_t code) {
  static const char* names[] = {"affine", "mxfp4", "mxfp8", "nvfp4"};
  if (code < 0 || code >= 4) {
    throw std::invalid_argument("[mlxfn] unknown quantization mode " + std::to_string(code));
  }
  return names[code];
}

}  // namespace mlxfn::detail
