// mlxfn._bridge: the few things Python cannot ask of MLX, compiled against
// the installed mlx wheel (its include/ and lib/libmlx.so) with nanobind in
// MLX's domain, so that the arrays it returns are ordinary mx.array objects.
//
//   Mapping(fd, length)   a private, copy-on-write mapping of an mlxfn file;
//   Mapping.wrap(...)     an mx.array whose data *is* the mapped constant;
//   read_constants(...)   arrays read from the file into fresh MLX memory
//                         as compute needs them (copies that overlap);
//   trace_without_fusion  call a function with MLX's compile mode set to
//                         no_fuse (tracing without JIT-built kernels);
//   read_probe(...)       one trace of a shapeless export's probing, read
//                         in C++ from MLX's export callback (probe.cpp);
//   version_problem()     whether the loaded MLX is the one built against;
//   self_check()          the checks that make wrap() safe in this process;
//   NativeFunction        a function imported by mlxfn's C++ runtime
//                         (libmlxfn.so, native/include/mlxfn/mlxfn.h),
//                         called with a list and a dict of arrays.
//
// wrap() relies on two internals of MLX's CPU allocator (0.32.4): a buffer's
// data starts 8 bytes after its pointer, which holds the byte size, and a
// Data built with a deleter is not owned, so it is never donated (written
// into).  self_check() tests both, and more, before Python uses wrap();
// Python copies instead when anything fails (python/mlxfn/_native.py).

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unordered_map.h>
#include <nanobind/stl/vector.h>

#include "mlx/allocator.h"
#include "mlx/array.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/compile.h"
#include "mlx/device.h"
#include "mlx/ops.h"
#include "mlx/primitives.h"
#include "mlx/stream.h"
#include "mlx/transforms.h"
#include "mlx/version.h"
#include "mlxfn/mlxfn.h"
#include "mlxfn/mlxfn_core.h"
#include "constants.h"  // native/src: the runtime's mapping and self-check
#include "probe.h"

namespace nb = nanobind;
namespace mx = mlx::core;

namespace {

std::string header_version() {
  std::ostringstream s;
  s << MLX_VERSION_MAJOR << "." << MLX_VERSION_MINOR << "." << MLX_VERSION_PATCH;
  return s.str();
}

// Dtype codes of the mlxfn format (mlxfn.fbs), which follow mx::Dtype::Val.
mx::Dtype dtype_of(int code) {
  static const mx::Dtype table[] = {
      mx::bool_,   mx::uint8,   mx::uint16,  mx::uint32,   mx::uint64,
      mx::int8,    mx::int16,   mx::int32,   mx::int64,    mx::float16,
      mx::float32, mx::float64, mx::bfloat16, mx::complex64};
  if (code < 0 || code >= int(std::size(table))) {
    throw nb::value_error(("unknown dtype code " + std::to_string(code)).c_str());
  }
  return table[code];
}

mx::Shape shape_of(const std::vector<int64_t>& dims, size_t* elements) {
  mx::Shape shape;
  size_t count = 1;
  for (int64_t d : dims) {
    if (d < 0 || d > INT32_MAX) {
      throw nb::value_error(("bad dimension " + std::to_string(d)).c_str());
    }
    shape.push_back(static_cast<mx::ShapeElem>(d));
    count *= static_cast<size_t>(d);
  }
  *elements = count;
  return shape;
}

// The mapping of a file, for the Python replay: the runtime's own
// (native/src/constants.h), so mapped arrays are made and checked in one
// place for C++ and Python.  Unmapped when the last Mapping or array holding
// it dies (array deleters run on MLX's threads, without the GIL: they touch
// no Python).
class Mapping {
 public:
  Mapping(int fd, size_t length) : mapping_(fd, length) {}

  // The constant at `offset` (the 8 bytes before it must hold its byte
  // length, as the mlxfn writer puts there) as an mx.array, no copy.
  mx::array wrap(size_t offset, const std::vector<int64_t>& dims, int dtype_code) const {
    size_t elements = 0;
    mx::Shape shape = shape_of(dims, &elements);
    return mapping_.wrap(offset, shape, dtype_of(dtype_code));
  }

  size_t length() const { return mapping_.length(); }
  size_t live_arrays() const { return mapping_.live_arrays(); }

 private:
  mlxfn::detail::Mapping mapping_;
};

// ---- Copies that overlap compute --------------------------------------------
//
// read_constants() returns arrays whose evaluation reads each constant from
// the file into fresh MLX memory, as MLX's own Load primitive does for its
// import: a few threads pread 32 MiB pieces, and compute waits for a
// constant only where it first uses it.  The arrays are scheduled at once
// on a stream of their own (one per thread, as MLX's streams are), each
// with its own event, so the reads of later layers overlap the compute of
// earlier ones; once scheduled they are plain arrays (no primitive), which
// mx.compile treats as constants.

constexpr size_t kReadPiece = size_t(32) << 20;  // MLX's loader reads 32 MiB at a time

// A few threads that run read tasks in order.  Never destroyed: a process
// that exits while reads are queued must not wait for them.
class ReadPool {
 public:
  static ReadPool& get() {
    // Two readers a core (up to 8), as the eager copy: page faults of the fresh
    // memory, not the disk, bound a read from the page cache.
    static ReadPool* pool = new ReadPool(std::clamp(2 * std::thread::hardware_concurrency(), 2u, 8u));
    return *pool;
  }

  void submit(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      tasks_.push_back(std::move(task));
    }
    ready_.notify_one();
  }

 private:
  explicit ReadPool(unsigned threads) {
    for (unsigned i = 0; i < threads; ++i) {
      std::thread([this] { work(); }).detach();
    }
  }

  void work() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [this] { return !tasks_.empty(); });
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> tasks_;
};

// The file being read: its own descriptor (a dup of the validated one).
struct Source {
  Source(int fd_, std::string path_) : fd(fd_), path(std::move(path_)) {}
  Source(const Source&) = delete;
  Source& operator=(const Source&) = delete;
  ~Source() { close(fd); }
  int fd;
  std::string path;
};

// One constant's read in progress: its pieces count down, the last one
// fulfils `done` (with the first error, if any).
struct PendingRead {
  std::shared_ptr<Source> source;
  std::shared_ptr<mx::array::Data> keep;  // the destination buffer, alive until read
  std::atomic<size_t> pieces_left{0};
  std::mutex error_mutex;
  std::string error;
  std::promise<void> promise;
  std::shared_future<void> done = promise.get_future().share();

  void piece_done() {
    if (pieces_left.fetch_sub(1) == 1) {
      if (error.empty()) {
        promise.set_value();
      } else {
        promise.set_exception(std::make_exception_ptr(std::runtime_error(error)));
      }
    }
  }
};

void read_piece(PendingRead& pending, char* dst, size_t n, size_t offset) {
  while (n > 0) {
    ssize_t got = pread(pending.source->fd, dst, n, static_cast<off_t>(offset));
    if (got <= 0) {
      if (got < 0 && errno == EINTR) {
        continue;
      }
      std::lock_guard<std::mutex> lock(pending.error_mutex);
      if (pending.error.empty()) {
        pending.error = "[mlxfn] reading " + pending.source->path + " at offset " +
                        std::to_string(offset) + ": " +
                        (got == 0 ? std::string("the file ends there (was it cut short?)")
                                  : std::system_category().message(errno));
      }
      return;
    }
    dst += got;
    n -= size_t(got);
    offset += size_t(got);
  }
}

class ReadConstant : public mx::UnaryPrimitive {
 public:
  ReadConstant(mx::Stream stream, std::shared_ptr<Source> source, size_t offset)
      : mx::UnaryPrimitive(stream), source_(std::move(source)), offset_(offset) {}

  void eval_cpu(const std::vector<mx::array>&, mx::array& out) override {
    out.set_data(mx::allocator::malloc(out.nbytes()));
    auto pending = std::make_shared<PendingRead>();
    pending->source = source_;
    pending->keep = out.data_shared_ptr();
    char* dst = out.data<char>();
    size_t nbytes = out.nbytes();
    size_t pieces = (nbytes + kReadPiece - 1) / kReadPiece;
    pending->pieces_left = pieces;
    for (size_t i = 0; i < pieces; ++i) {
      size_t at = i * kReadPiece;
      size_t n = std::min(kReadPiece, nbytes - at);
      ReadPool::get().submit([pending, dst, at, n, offset = offset_] {
        read_piece(*pending, dst + at, n, offset + at);
        pending->piece_done();
      });
    }
    auto& encoder = mx::cpu::get_command_encoder(stream());
    encoder.set_output_array(out);
    encoder.dispatch([done = pending->done]() { done.get(); });
  }

  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[mlxfn] ReadConstant runs on the CPU only");
  }

  const char* name() const override { return "MlxfnReadConstant"; }

 private:
  std::shared_ptr<Source> source_;
  size_t offset_;
};

// This thread's stream for reads (MLX's streams belong to the thread that made them).
mx::Stream read_stream() {
  thread_local mx::Stream stream = mx::new_stream(mx::Device::cpu);
  return stream;
}

// Each (offset, shape, dtype code) of the open file `fd` as an array being
// read into fresh MLX memory (see above); `path` names the file in errors.
std::vector<mx::array> read_constants(int fd, const std::string& path,
                                      const std::vector<size_t>& offsets,
                                      const std::vector<std::vector<int64_t>>& shapes,
                                      const std::vector<int>& dtype_codes) {
  if (offsets.size() != shapes.size() || offsets.size() != dtype_codes.size()) {
    throw nb::value_error("offsets, shapes and dtype codes differ in length");
  }
  int own = dup(fd);
  if (own < 0) {
    throw std::system_error(errno, std::generic_category(), "dup");
  }
  auto source = std::make_shared<Source>(own, path);
  mx::Stream stream = read_stream();
  std::vector<mx::array> arrays;
  arrays.reserve(offsets.size());
  for (size_t i = 0; i < offsets.size(); ++i) {
    size_t elements = 0;
    mx::Shape shape = shape_of(shapes[i], &elements);
    mx::array arr(std::move(shape), dtype_of(dtype_codes[i]),
                  std::make_shared<ReadConstant>(stream, source, offsets[i]), {});
    // One eval per constant: one event each, so compute waits for each
    // constant alone, not for all of them.
    mx::async_eval({arr});
    arrays.push_back(std::move(arr));
  }
  return arrays;
}

// Why this module cannot be used with the MLX loaded in this process, or "":
// it is compiled against one MLX release's headers and internals.
std::string version_problem() {
  std::string runtime = mx::version();
  if (runtime != header_version()) {
    return "the bridge was built against MLX " + header_version() + " but MLX " + runtime +
           " is loaded";
  }
  return "";
}

// Why wrap() is unsafe in this process, or "" when every check passes.
//
// Every check runs on buffers made here, never on what the allocator hands
// out, so the answer does not depend on what MLX did before (a program that
// has freed arrays gets recycled buffers from MLX's cache): the same answer
// in a fresh process, after any allocations, from any thread.
// The runtime's self-check (native/src/constants.cpp: buffers laid out
// there, never what the allocator hands out), after the version check.
std::string self_check() {
  std::string problem = version_problem();
  return problem.empty() ? mlxfn::detail::mapping_problem() : problem;
}

// Call fn(*args) with compile mode no_fuse: a compiled function traced during
// the call replays MLX's primitives without building fused kernels.  The mode
// is global; it is set back to `enabled` afterwards (the caller checked that
// compilation was enabled), also when fn raises.
nb::object trace_without_fusion(nb::callable fn, nb::args args) {
  struct Restore {
    ~Restore() { mx::set_compile_mode(mx::CompileMode::enabled); }
  } restore;
  mx::set_compile_mode(mx::CompileMode::no_fuse);
  return fn(*args);
}

mlxfn::Load load_of(const std::string& load) {
  if (load == "auto") return mlxfn::Load::Auto;
  if (load == "map") return mlxfn::Load::Map;
  if (load == "copy") return mlxfn::Load::Copy;
  throw nb::value_error(("load must be 'auto', 'map' or 'copy', not '" + load + "'").c_str());
}

// The core's error as mlxfn::Error (what the runtime throws for a bad file).
[[noreturn]] void raise_core(MlxfnError* err) {
  mlxfn::Error error(int(mlxfn_error_kind(err)), mlxfn_error_message(err));
  mlxfn_error_free(err);
  throw error;
}

// Every constant of the file in `data` checked against its stored hash by
// the core (mlxfn_file_verify), as File.verify() checks a file on disk.
void verify_bytes(const void* data, size_t size) {
  MlxfnError* err = nullptr;
  MlxfnFile* file =
      mlxfn_file_open_bytes(static_cast<const uint8_t*>(data), size, "<memory>", &err);
  if (file == nullptr) raise_core(err);
  bool ok = mlxfn_file_verify(file, &err);
  mlxfn_file_free(file);
  if (!ok) raise_core(err);
}

// A function imported by the C++ runtime.  Calls release the GIL: the
// runtime runs no Python, and threads then call it at once (MLX's streams
// are per thread, as under Python).  An import from bytes keeps the bytes
// object for as long as the function lives; its constants are copied (an
// array it returns may outlive the function, so it must not point into the
// bytes).
class NativeFunction {
 public:
  NativeFunction(const std::string& path, const std::string& load)
      : fn_(import_path(path, load_of(load))) {}

  static NativeFunction* from_bytes(nb::bytes data, const std::string& load, bool verify) {
    if (load == "map") {
      throw nb::value_error(
          "load='map' is not possible for bytes: an array over them could outlive the bytes "
          "(import the file by its path to map it)");
    }
    load_of(load);  // the same refusal of other values as a path's import
    const void* bytes = data.c_str();
    size_t size = data.size();
    mlxfn::ImportedFunction fn = [&] {
      nb::gil_scoped_release release;
      if (verify) verify_bytes(bytes, size);
      return mlxfn::import_function(bytes, size, mlxfn::Load::Copy);
    }();
    return new NativeFunction(std::move(fn), std::move(data));
  }

  std::vector<mx::array> call(const std::vector<mx::array>& args,
                              const std::unordered_map<std::string, mx::array>& kwargs) const {
    nb::gil_scoped_release release;
    return fn_(args, kwargs);
  }

  const std::string& metadata() const { return fn_.metadata(); }
  std::string load_mode() const { return fn_.load_mode(); }
  size_t trace_count() const { return fn_.trace_count(); }
  std::vector<std::string> primitives() const { return fn_.primitives(); }

 private:
  NativeFunction(mlxfn::ImportedFunction fn, nb::bytes keep)
      : fn_(std::move(fn)), keep_(std::move(keep)) {}

  static mlxfn::ImportedFunction import_path(const std::string& path, mlxfn::Load load) {
    nb::gil_scoped_release release;
    return mlxfn::import_function(path, load);
  }

  mlxfn::ImportedFunction fn_;
  nb::object keep_;  // the bytes of an import from memory (None for a path)
};

}  // namespace

NB_MODULE(_bridge, m) {
  m.doc() = "mlxfn's C++ bridge to MLX internals (see bridge/mlxfn_bridge.cpp).";
  m.attr("MLX_VERSION") = header_version();
  m.def("version_problem", &version_problem,
        "Why this module cannot be used with the loaded MLX, or '' when it can.");
  m.def("self_check", &self_check,
        "Why mapped arrays are unsafe in this process, or '' when every check passes.");
  m.def("read_constants", &read_constants, nb::arg("fd"), nb::arg("path"), nb::arg("offsets"),
        nb::arg("shapes"), nb::arg("dtype_codes"),
        "Arrays being read from the file into fresh MLX memory, overlapping later compute.");
  m.def("trace_without_fusion", &trace_without_fusion,
        "trace_without_fusion(fn, *args): call fn(*args) with MLX's compile mode set to no_fuse.");
  add_probe_reader(m);
  nb::class_<Mapping>(m, "Mapping")
      .def(nb::init<int, size_t>(), nb::arg("fd"), nb::arg("length"))
      .def("wrap", &Mapping::wrap, nb::arg("offset"), nb::arg("shape"), nb::arg("dtype_code"),
           "The constant at offset as an mx.array over the mapping (no copy).")
      .def_prop_ro("length", &Mapping::length)
      .def_prop_ro("live_arrays", &Mapping::live_arrays);

  // mlxfn::Error as NativeError(kind, message): _native.py raises the
  // exception mlxfn raises for that kind (mlxfn.errors, FileNotFoundError);
  // a graph that does not replay at a call is mlxfn.errors.ReplayError.
  // The module's attribute keeps the type alive.
  nb::exception<mlxfn::Error> native_error(m, "NativeError", PyExc_RuntimeError);
  nb::register_exception_translator(
      [](const std::exception_ptr& p, void* type) {
        try {
          std::rethrow_exception(p);
        } catch (const mlxfn::ReplayError& e) {
          nb::object replay = nb::module_::import_("mlxfn.errors").attr("ReplayError");
          PyErr_SetString(replay.ptr(), e.what());
        } catch (const mlxfn::Error& e) {
          nb::object args = nb::make_tuple(e.kind(), e.what());
          PyErr_SetObject(static_cast<PyObject*>(type), args.ptr());
        }
      },
      native_error.ptr());
  nb::class_<NativeFunction>(m, "NativeFunction")
      .def(nb::init<const std::string&, const std::string&>(), nb::arg("path"),
           nb::arg("load") = "auto", "Import the mlxfn file at path with mlxfn's C++ runtime.")
      .def_static("from_bytes", &NativeFunction::from_bytes, nb::arg("data"),
                  nb::arg("load") = "auto", nb::arg("verify") = false,
                  "Import an mlxfn file held in bytes (its constants are copied); verify=True "
                  "checks every constant against its stored hash first.")
      .def("__call__", &NativeFunction::call, nb::arg("args"), nb::arg("kwargs"),
           "The outputs of the trace that matches the inputs (MLX's ValueError if none).")
      .def_prop_ro("metadata", &NativeFunction::metadata)
      .def_prop_ro("load_mode", &NativeFunction::load_mode)
      .def_prop_ro("trace_count", &NativeFunction::trace_count)
      .def_prop_ro("primitives", &NativeFunction::primitives);
  m.def("supported_primitives", &mlxfn::supported_primitives,
        "Every MLX primitive the C++ runtime rebuilds, by name.");
}
