// mlxfn_c.h: the plain C calling API, a thin layer over the C++ API
// (mlxfn.h).  Every C++ exception becomes an MlxfnError with its message.
#include "mlxfn/mlxfn_c.h"

#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "convert.h"
#include "mlx/mlx.h"
#include "mlxfn/mlxfn.h"

namespace mx = mlx::core;

struct MlxfnFunction {
  mlxfn::ImportedFunction fn;
};

struct MlxfnTensors {
  std::vector<mx::array> arrays;  // evaluated, row-contiguous: they own the data
  std::vector<std::vector<int64_t>> shapes;
  std::vector<MlxfnTensor> views;
};

namespace {

// Store an error for the caller (or drop it when `err` is null).
void fail(MlxfnError** err, MlxfnErrorKind kind, const std::string& message) {
  MlxfnError* e = mlxfn_error_new(kind, message.c_str());
  if (err != nullptr) {
    *err = e;
  } else {
    mlxfn_error_free(e);
  }
}

// Run `body`, turning any exception into an error; `failed` on failure.
template <typename T, typename F>
T guarded(MlxfnError** err, T failed, F body) {
  if (err != nullptr) *err = nullptr;
  try {
    return body();
  } catch (const mlxfn::Error& e) {
    // The core's kinds; anything else (never thrown today) reads as Internal.
    bool known = e.kind() >= MlxfnErrorKind_NotFound && e.kind() <= MlxfnErrorKind_Internal;
    fail(err, known ? static_cast<MlxfnErrorKind>(e.kind()) : MlxfnErrorKind_Internal, e.what());
  } catch (const std::invalid_argument& e) {
    fail(err, MlxfnErrorKind_Usage, e.what());
  } catch (const std::exception& e) {
    fail(err, MlxfnErrorKind_Internal, e.what());
  } catch (...) {
    fail(err, MlxfnErrorKind_Internal, "unknown C++ exception in mlxfn");
  }
  return failed;
}

MlxfnDType code_of(mx::Dtype dtype) {
  for (int code = MlxfnDType_Bool; code <= MlxfnDType_Complex64; ++code) {
    if (mlxfn::detail::dtype_of(static_cast<MlxfnDType>(code)) == dtype) return static_cast<MlxfnDType>(code);
  }
  throw std::runtime_error("[mlxfn] an output has a dtype the C API cannot name");
}

mx::array to_array(const MlxfnTensor& t, const std::string& what) {
  if (t.ndim > 0 && t.shape == nullptr) throw std::invalid_argument("[mlxfn] " + what + ": shape is null");
  mx::Shape shape;
  size_t count = 1;
  for (size_t k = 0; k < t.ndim; ++k) {
    if (t.shape[k] < 0) throw std::invalid_argument("[mlxfn] " + what + ": negative size");
    shape.push_back(static_cast<mx::ShapeElem>(t.shape[k]));
    count *= static_cast<size_t>(t.shape[k]);
  }
  if (t.dtype > MlxfnDType_Complex64) {
    throw std::invalid_argument("[mlxfn] " + what + ": unknown dtype code " + std::to_string(int(t.dtype)));
  }
  mx::Dtype dtype = mlxfn::detail::dtype_of(t.dtype);
  if (count > 0 && t.data == nullptr) throw std::invalid_argument("[mlxfn] " + what + ": data is null");
  // A copy the array owns: the caller's buffer may go away after the call.
  size_t bytes = count * dtype.size();
  void* copy = std::malloc(bytes > 0 ? bytes : 1);
  if (copy == nullptr) throw std::bad_alloc();
  if (bytes > 0) std::memcpy(copy, t.data, bytes);
  return mx::array(copy, shape, dtype, [](void* p) { std::free(p); });
}

bool call(MlxfnFunction* fn, const MlxfnTensor* inputs, size_t n_inputs, const char* const* names,
          const MlxfnTensor* kwargs, size_t n_kwargs, MlxfnTensors** outputs, MlxfnError** err) {
  return guarded(err, false, [&] {
    if (fn == nullptr || outputs == nullptr) throw std::invalid_argument("[mlxfn] null function or outputs");
    if (n_inputs > 0 && inputs == nullptr) throw std::invalid_argument("[mlxfn] inputs is null");
    if (n_kwargs > 0 && (names == nullptr || kwargs == nullptr)) {
      throw std::invalid_argument("[mlxfn] keyword names or values are null");
    }
    *outputs = nullptr;
    mx::Args args;
    for (size_t i = 0; i < n_inputs; ++i) args.push_back(to_array(inputs[i], "input " + std::to_string(i)));
    mx::Kwargs kw;
    for (size_t i = 0; i < n_kwargs; ++i) {
      if (names[i] == nullptr) throw std::invalid_argument("[mlxfn] keyword name " + std::to_string(i) + " is null");
      kw.insert_or_assign(names[i], to_array(kwargs[i], std::string("keyword input ") + names[i]));
    }
    std::vector<mx::array> out = fn->fn(args, kw);
    auto result = std::make_unique<MlxfnTensors>();
    for (mx::array& a : out) {
      // Row-contiguous: copy when strided or broadcast (a no-op otherwise).
      result->arrays.push_back(mx::contiguous(a));
    }
    mx::eval(result->arrays);
    result->shapes.reserve(out.size());
    for (const mx::array& a : result->arrays) {
      result->shapes.emplace_back(a.shape().begin(), a.shape().end());
    }
    for (size_t i = 0; i < result->arrays.size(); ++i) {
      const mx::array& a = result->arrays[i];
      result->views.push_back({code_of(a.dtype()), result->shapes[i].data(), result->shapes[i].size(), a.data<void>()});
    }
    *outputs = result.release();
    return true;
  });
}

}  // namespace

extern "C" {

MlxfnFunction* mlxfn_function_open(const char* path, MlxfnError** err) {
  return guarded(err, static_cast<MlxfnFunction*>(nullptr), [&] {
    if (path == nullptr) throw std::invalid_argument("[mlxfn] path is null");
    return new MlxfnFunction{mlxfn::import_function(std::string(path))};
  });
}

MlxfnFunction* mlxfn_function_open_bytes(const uint8_t* data, size_t len, MlxfnError** err) {
  return guarded(err, static_cast<MlxfnFunction*>(nullptr), [&] {
    if (data == nullptr) throw std::invalid_argument("[mlxfn] data is null");
    return new MlxfnFunction{mlxfn::import_function(static_cast<const void*>(data), len)};
  });
}

bool mlxfn_function_call(MlxfnFunction* fn, const MlxfnTensor* inputs, size_t n_inputs, MlxfnTensors** outputs,
                         MlxfnError** err) {
  return call(fn, inputs, n_inputs, nullptr, nullptr, 0, outputs, err);
}

bool mlxfn_function_call_kwargs(MlxfnFunction* fn, const MlxfnTensor* inputs, size_t n_inputs,
                                const char* const* kwarg_names, const MlxfnTensor* kwargs, size_t n_kwargs,
                                MlxfnTensors** outputs, MlxfnError** err) {
  return call(fn, inputs, n_inputs, kwarg_names, kwargs, n_kwargs, outputs, err);
}

size_t mlxfn_tensors_len(const MlxfnTensors* tensors) { return tensors == nullptr ? 0 : tensors->views.size(); }

const MlxfnTensor* mlxfn_tensors_get(const MlxfnTensors* tensors, size_t i) {
  if (tensors == nullptr || i >= tensors->views.size()) return nullptr;
  return &tensors->views[i];
}

void mlxfn_tensors_free(MlxfnTensors* tensors) { delete tensors; }

void mlxfn_function_free(MlxfnFunction* fn) { delete fn; }

}  // extern "C"
