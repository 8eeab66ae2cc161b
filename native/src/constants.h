// Constants as MLX arrays: the file's pages themselves where MLX can run on
// them, fresh copies elsewhere.
//
// Mapping relies on two internals of MLX's CPU allocator (0.32.4) (the
// Python package's bridge, bridge/mlxfn_bridge.cpp, maps through this code
// too, for the Python replay): a buffer's data starts 8 bytes after its
// pointer, which holds the byte size (the mlxfn writer puts each constant's
// length there), and a Data built with a deleter is not owned, so MLX never
// donates (writes into) it.  self_check() tests both, and more, once per
// process; when anything fails the runtime copies.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "mlx/array.h"

namespace mlxfn::detail {

namespace mx = mlx::core;

// Why mapped arrays are unsafe in this process, or "" (computed once).
const std::string& mapping_problem();

// A private, copy-on-write mapping of a whole file: no write reaches the
// file, an unexpected write by MLX costs a page copy, not a crash.
class Mapping {
 public:
  Mapping(int fd, size_t length);
  // The constant at `offset` (its 8 prefix bytes must hold its byte
  // length), no copy; throws std::invalid_argument when it does not fit.
  mx::array wrap(size_t offset, const mx::Shape& shape, mx::Dtype dtype) const;
  // The mapped length in bytes.
  size_t length() const;
  // How many arrays made by wrap() are alive (the mapping outlives them).
  size_t live_arrays() const;

 private:
  struct Region;
  std::shared_ptr<Region> region_;
};

// An array over `data` (its 8 prefix bytes must hold its byte length; the
// bytes are the caller's, kept alive by `keep` until MLX drops the array).
mx::array wrap_bytes(const uint8_t* data, const mx::Shape& shape, mx::Dtype dtype,
                     std::shared_ptr<const void> keep);

// Fresh MLX memory of `nbytes` for a constant, to be filled by the caller.
mx::array allocate(const mx::Shape& shape, mx::Dtype dtype, uint8_t** data);

}  // namespace mlxfn::detail
