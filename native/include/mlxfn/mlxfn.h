// mlxfn's C++ runtime: functions exported by mlxfn (Python), imported and
// called from C++ exactly as MLX's own `mx::import_function` result is.
//
//   #include <mlxfn/mlxfn.h>
//   namespace mx = mlx::core;
//   auto fn = mlxfn::import_function("model.mlxfn");
//   std::vector<mx::array> out = fn({x}, {{"mask", m}});
//
// The file is validated by mlxfn's Rust core (mlxfn_core.h) and its
// constants are mapped, not copied, where MLX can compute on the mapped
// pages (Linux CPU after a self-check; see `load_mode()`).  Every trace of
// the file is served, dynamic ones (exported with shapeless=True) at every
// size in their ranges.  A call that matches no trace throws MLX's
// std::invalid_argument "[import_function::call] No imported function
// found ...".  A bad file throws mlxfn::Error.  An ImportedFunction is cheap
// to copy (copies share the import) and may be called from several threads
// at once.
#pragma once

#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "mlx/array.h"
#include "mlx/export.h"

namespace mlxfn {

// A file that cannot be imported: missing, unreadable, not an mlxfn file,
// damaged, or written by a newer mlxfn.  `kind()` is the core's
// MlxfnErrorKind code (0 not found, 1 I/O, 2 format, 3 version, ...).
class Error : public std::runtime_error {
 public:
  Error(int kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  int kind() const { return kind_; }

 private:
  int kind_;
};

// A file whose graph does not replay at a call: a node refuses the inputs
// the file gives it, or computes other shapes than the file records (a
// damaged or hand-made file; mlxfn never writes one).  Python's ReplayError.
class ReplayError : public Error {
 public:
  explicit ReplayError(const std::string& message) : Error(2, message) {}
};

// How constants become arrays at a trace's first call.
enum class Load {
  Auto,  // mapped where MLX can run on the mapped file, else copied
  Map,   // mapped, or mlxfn::Error where that is impossible here
  Copy,  // copied into MLX memory (for files that may be rewritten in place)
};

class ImportedFunction {
 public:
  std::vector<mlx::core::array> operator()(const mlx::core::Args& args) const;
  std::vector<mlx::core::array> operator()(const mlx::core::Kwargs& kwargs) const;
  std::vector<mlx::core::array> operator()(const mlx::core::Args& args,
                                           const mlx::core::Kwargs& kwargs) const;

  // The `metadata=` string given at export.
  const std::string& metadata() const;
  // "map" or "copy", and why for a copy.
  std::string load_mode() const;
  // How many traces the file holds.
  std::size_t trace_count() const;
  // Every primitive the file's traces use, by name (sorted, once each).
  std::vector<std::string> primitives() const;

  struct Impl;

 private:
  explicit ImportedFunction(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
  friend ImportedFunction import_function(const std::string&, Load);
  friend ImportedFunction import_function(const void*, std::size_t, Load);
};

// Import the function in the mlxfn file at `path`.
ImportedFunction import_function(const std::string& path, Load load = Load::Auto);

// Import from an mlxfn file held in memory (an app's bundled asset).  The
// bytes are not copied: the caller keeps them alive and unchanged for as
// long as the function and any array it returned live.  Mapped constants
// need the buffer 8-byte aligned (a page-aligned buffer is best).
ImportedFunction import_function(const void* data, std::size_t size, Load load = Load::Auto);

// Every MLX primitive this runtime rebuilds, by name (sorted).
std::vector<std::string> supported_primitives();

}  // namespace mlxfn
