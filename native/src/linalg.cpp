// Matrix products, convolution, quantized matmuls, the CPU-only linear
// algebra primitives and FFT (python/mlxfn/replay/linalg.py,
// linalg_cpu.py, fft.py).
#include <optional>
#include <stdexcept>

#include "handlers.h"
#include "mlx/fft.h"
#include "mlx/linalg.h"
#include "mlx/ops.h"

namespace mlxfn::detail {
namespace {

Arrays matmul(const State&, const Arrays& xs) { return {mx::matmul(xs.at(0), xs.at(1))}; }

Arrays addmm(const State& n, const Arrays& xs) {
  return {mx::addmm(xs.at(2), xs.at(0), xs.at(1), float(n.f(0)), float(n.f(1)))};
}

Arrays convolution(const State& n, const Arrays& xs) {
  return {mx::conv_general(xs.at(0), xs.at(1), n.ints(0), n.ints(1), n.ints(2), n.ints(3),
                           n.ints(4), int(n.i(5)), n.b(6))};
}

Arrays quantized_matmul(const State& n, const Arrays& xs) {
  std::optional<mx::array> biases;
  if (xs.size() > 3) biases = xs[3];
  return {mx::quantized_matmul(xs.at(0), xs.at(1), xs.at(2), biases, n.b(3), int(n.i(0)),
                               int(n.i(1)), quantization_mode(n.i(2)))};
}

// Inputs: a, b, then the output mask (3 or 5 inputs), then the two operand
// masks (4 or 5 inputs), already broadcast and cast by MLX.
Arrays block_masked_mm(const State& n, const Arrays& xs) {
  Arrays masks(xs.begin() + 2, xs.end());
  std::optional<mx::array> out_mask, lhs, rhs;
  size_t k = 0;
  if (masks.size() == 1 || masks.size() == 3) out_mask = masks[k++];
  if (masks.size() - k == 2) {
    lhs = masks[k];
    rhs = masks[k + 1];
  }
  return {mx::block_masked_mm(xs.at(0), xs.at(1), int(n.i(0)), out_mask, lhs, rhs)};
}

// A sorted flag is recorded only when the other index array was MLX's
// default: leaving that one out reproduces both the flag and the default.
Arrays gather_mm(const State& n, const Arrays& xs) {
  bool left_sorted = n.b(0), right_sorted = n.b(1);
  std::optional<mx::array> lhs, rhs;
  if (!right_sorted) lhs = xs.at(2);
  if (!left_sorted) rhs = xs.at(3);
  return {mx::gather_mm(xs.at(0), xs.at(1), lhs, rhs, left_sorted || right_sorted)};
}

Arrays gather_qmm(const State& n, const Arrays& xs) {
  std::string mode = quantization_mode(n.i(2));
  bool left_sorted = n.b(4), right_sorted = n.b(5);
  std::optional<mx::array> biases, lhs, rhs;
  if (mode == "affine") biases = xs.at(3);
  if (!right_sorted) lhs = xs.at(xs.size() - 2);
  if (!left_sorted) rhs = xs.at(xs.size() - 1);
  return {mx::gather_qmm(xs.at(0), xs.at(1), xs.at(2), biases, lhs, rhs, n.b(3), int(n.i(0)),
                         int(n.i(1)), mode, std::nullopt, left_sorted || right_sorted)};
}

// The CPU-only linear algebra primitives run on the CPU stream, as MLX requires.
Arrays qrf(const State&, const Arrays& xs) {
  auto [q, r] = mx::linalg::qr(xs.at(0), mx::Device::cpu);
  return {q, r};
}

Arrays svd(const State& n, const Arrays& xs) {
  return mx::linalg::svd(xs.at(0), n.b(0), mx::Device::cpu);
}

Arrays inverse(const State& n, const Arrays& xs) {
  if (n.b(0)) return {mx::linalg::tri_inv(xs.at(0), n.b(1), mx::Device::cpu)};
  return {mx::linalg::inv(xs.at(0), mx::Device::cpu)};
}

Arrays cholesky(const State& n, const Arrays& xs) {
  return {mx::linalg::cholesky(xs.at(0), n.b(0), mx::Device::cpu)};
}

Arrays eig(const State& n, const Arrays& xs) {
  if (n.b(0)) {
    auto [w, v] = mx::linalg::eig(xs.at(0), mx::Device::cpu);
    return {w, v};
  }
  return {mx::linalg::eigvals(xs.at(0), mx::Device::cpu)};
}

Arrays eigh(const State& n, const Arrays& xs) {
  if (n.b(1)) {
    auto [w, v] = mx::linalg::eigh(xs.at(0), n.str(0), mx::Device::cpu);
    return {w, v};
  }
  return {mx::linalg::eigvalsh(xs.at(0), n.str(0), mx::Device::cpu)};
}

// State: axes, inverse, real, odd_out.  A real inverse transform's last
// length is 2 * (n - 1) + odd_out.
Arrays fft(const State& n, const Arrays& xs) {
  std::vector<int> axes = n.ints(0);
  bool inverse = n.b(1), real = n.b(2), odd = n.b(3);
  const mx::array& x = xs.at(0);
  if (!real) return {inverse ? mx::fft::ifftn(x, axes) : mx::fft::fftn(x, axes)};
  if (!inverse) return {mx::fft::rfftn(x, axes)};
  mx::Shape sizes;
  for (int ax : axes) sizes.push_back(x.shape(ax));
  sizes.back() = 2 * (sizes.back() - 1) + (odd ? 1 : 0);
  return {mx::fft::irfftn(x, sizes, axes)};
}

}  // namespace

void add_linalg(std::unordered_map<std::string, Handler>& m) {
  m["Matmul"] = matmul;
  m["AddMM"] = addmm;
  m["Convolution"] = convolution;
  m["QuantizedMatmul"] = quantized_matmul;
  m["BlockMaskedMM"] = block_masked_mm;
  m["GatherMM"] = gather_mm;
  m["GatherQMM"] = gather_qmm;
  m["QRF"] = qrf;
  m["SVD"] = svd;
  m["Inverse"] = inverse;
  m["Cholesky"] = cholesky;
  m["Eig"] = eig;
  m["Eigh"] = eigh;
  m["FFT"] = fft;
}

}  // namespace mlxfn::detail
