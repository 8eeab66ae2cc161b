// Shared by the examples: print arrays in a form that is easy to parse.
#pragma once

#include <mlx/mlx.h>

#include <iomanip>
#include <iostream>
#include <string>

namespace mlxfn_example {

namespace mx = mlx::core;

// "<dtype> [d0,d1,...] v0 v1 ...": values in row-major order, printed as
// doubles with 17 significant digits (exact for every float32, float16,
// bfloat16 and for integers up to 2^53); booleans as 0 and 1.
inline void print_array(std::ostream& os, const mx::array& a) {
  if (a.dtype() == mx::complex64) {
    throw std::invalid_argument("complex outputs are not printed by this example");
  }
  auto flat = mx::contiguous(mx::reshape(mx::astype(a, mx::float64), {-1}));
  mx::eval(flat);
  os << a.dtype() << " [";
  for (size_t i = 0; i < a.shape().size(); ++i) {
    os << (i ? "," : "") << a.shape()[i];
  }
  os << "]";
  const double* values = flat.data<double>();
  os << std::setprecision(17);
  for (size_t i = 0; i < flat.size(); ++i) {
    os << " " << values[i];
  }
}

// The text with backslashes and newlines escaped, so it stays on one line.
inline std::string one_line(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

} // namespace mlxfn_example
