// The registry of primitive handlers: one small function per MLX primitive.
//
// A handler rebuilds one primitive with mlx::core ops from its stored state
// (node.args, exactly what MLX's export callback reports; the layouts are
// python/mlxfn/replay/*.py's) and its input arrays, and returns the node's
// outputs.  Handlers derive shapes from their inputs, never from the
// recorded output shapes, so one handler serves shaped and dynamic traces.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "mlx/array.h"
#include "node.h"

namespace mlxfn::detail {

using Arrays = std::vector<mx::array>;
using Handler = Arrays (*)(const State&, const Arrays&);

// Every handler by primitive name (built once, on first use).
const std::unordered_map<std::string, Handler>& handlers();

// The handler for `op`, or nullptr.
Handler handler_for(const std::string& op);

// Each translation unit adds its handlers to the map.
void add_elementwise(std::unordered_map<std::string, Handler>& map);
void add_shape(std::unordered_map<std::string, Handler>& map);
void add_reduction(std::unordered_map<std::string, Handler>& map);
void add_linalg(std::unordered_map<std::string, Handler>& map);
void add_indexing(std::unordered_map<std::string, Handler>& map);
void add_fast(std::unordered_map<std::string, Handler>& map);
void add_distributed(std::unordered_map<std::string, Handler>& map);
void add_custom_kernel(std::unordered_map<std::string, Handler>& map);

// MLX's QuantizationMode enum as the export callback reports it.
const char* quantization_mode(int64_t code);

}  // namespace mlxfn::detail
