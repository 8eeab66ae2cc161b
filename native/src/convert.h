// The Rust core's decoded graph (mlxfn_core.h's C structs) as the runtime's
// own types (node.h), copied once per import.
#pragma once

#include <vector>

#include "mlxfn/mlxfn_core.h"
#include "node.h"

namespace mlxfn::detail {

// The MLX dtype of a file's dtype code (the order is the core's MlxfnDType).
mx::Dtype dtype_of(MlxfnDType code);

// Every trace of the graph; `legacy_shapeless` marks a format-1 shapeless
// file's nodes (their shapes follow the inputs, as MLX's shapeless import).
std::vector<Trace> convert_traces(const MlxfnGraph& graph, bool legacy_shapeless);

}  // namespace mlxfn::detail
