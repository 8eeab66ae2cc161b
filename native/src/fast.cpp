// MLX's fused "fast" primitives and Quantize (python/mlxfn/replay/fast.py).
// Each calls the mlx::core::fast op that emits the primitive where the fused
// kernel exists and its decomposed fallback elsewhere; the backward
// primitives are the vjp of the forward op, as MLX itself creates them.
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>

#include "handlers.h"
#include "mlx/fast.h"
#include "mlx/ops.h"
#include "mlx/transforms.h"

namespace mlxfn::detail {
namespace {

// MLX passes a missing weight or bias as a 0-d placeholder.
std::optional<mx::array> optional(const Arrays& xs, size_t k) {
  if (k >= xs.size() || xs[k].ndim() == 0) return std::nullopt;
  return xs[k];
}

Arrays quantize(const State& n, const Arrays& xs) {
  int group_size = int(n.i(0)), bits = int(n.i(1));
  std::string mode = quantization_mode(n.i(2));
  if (n.b(3)) {
    std::optional<mx::array> biases;
    if (xs.size() > 2) biases = xs[2];
    return {mx::dequantize(xs.at(0), xs.at(1), biases, group_size, bits, mode)};
  }
  return mx::quantize(xs.at(0), group_size, bits, mode);
}

Arrays rms_norm(const State& n, const Arrays& xs) {
  return {mx::fast::rms_norm(xs.at(0), optional(xs, 1), float(n.f(0)))};
}

Arrays rms_norm_vjp(const State& n, const Arrays& xs) {
  float eps = float(n.f(0));
  const mx::array &x = xs.at(0), &w = xs.at(1), &g = xs.at(2);
  if (w.ndim() == 0) {
    auto fwd = [eps](const Arrays& p) -> Arrays {
      return {mx::fast::rms_norm(p[0], std::nullopt, eps)};
    };
    return {mx::vjp(fwd, {x}, {g}).second[0], mx::zeros_like(w)};
  }
  auto fwd = [eps](const Arrays& p) -> Arrays { return {mx::fast::rms_norm(p[0], p[1], eps)}; };
  return mx::vjp(fwd, {x, w}, {g}).second;
}

Arrays layer_norm(const State& n, const Arrays& xs) {
  return {mx::fast::layer_norm(xs.at(0), optional(xs, 1), optional(xs, 2), float(n.f(0)))};
}

Arrays layer_norm_vjp(const State& n, const Arrays& xs) {
  float eps = float(n.f(0));
  const mx::array &x = xs.at(0), &w = xs.at(1), &b = xs.at(2), &g = xs.at(3);
  bool has_w = w.ndim() > 0, has_b = b.ndim() > 0;
  Arrays primals{x};
  if (has_w) primals.push_back(w);
  if (has_b) primals.push_back(b);
  auto fwd = [eps, has_w, has_b](const Arrays& p) -> Arrays {
    size_t k = 1;
    std::optional<mx::array> w_, b_;
    if (has_w) w_ = p[k++];
    if (has_b) b_ = p[k++];
    return {mx::fast::layer_norm(p[0], w_, b_, eps)};
  };
  Arrays grads = mx::vjp(fwd, primals, {g}).second;
  size_t k = 1;
  mx::array dw = has_w ? grads[k++] : mx::zeros_like(w);
  mx::array db = has_b ? grads[k++] : mx::zeros_like(b);
  return {grads[0], dw, db};
}

// Inputs x, offset, [freqs]; forward=false is RoPE's own vjp.
Arrays rope(const State& n, const Arrays& xs) {
  int dims = int(n.i(0));
  bool traditional = n.b(1), forward = n.b(4);
  float base = float(n.f(2)), scale = float(n.f(3));
  mx::array offset = xs.at(1);
  std::optional<mx::array> freqs;
  if (xs.size() > 2) freqs = xs[2];
  auto fwd = [=](const Arrays& p) -> Arrays {
    std::optional<float> b;
    if (!freqs) b = base;
    return {mx::fast::rope(p[0], dims, traditional, b, scale, offset, freqs)};
  };
  if (forward) return fwd({xs.at(0)});
  return {mx::vjp(fwd, {xs.at(0)}, {xs.at(0)}).second[0]};
}

// log-sum-exp of the scaled, masked scores per query (float32, keepdims).
mx::array attention_logsumexp(const mx::array& q, mx::array k, float scale, bool causal,
                              std::optional<mx::array> mask,
                              const std::optional<mx::array>& sinks) {
  int n_rep = q.shape(1) / k.shape(1);
  if (n_rep > 1) k = mx::repeat(k, n_rep, 1);
  mx::array scores = mx::matmul(mx::multiply(mx::astype(q, mx::float32), mx::array(scale)),
                                mx::swapaxes(mx::astype(k, mx::float32), -1, -2));
  int ql = scores.shape(-2), kl = scores.shape(-1);
  if (causal) {
    mx::array rows = mx::expand_dims(mx::arange(kl - ql, kl), 1);
    mask = mx::greater_equal(rows, mx::expand_dims(mx::arange(kl), 0));
  }
  if (mask) {
    if (mask->dtype() == mx::bool_) {
      float inf = std::numeric_limits<float>::infinity();
      scores = mx::where(*mask, scores, mx::array(-inf));
    } else {
      scores = mx::add(scores, mx::astype(*mask, mx::float32));
    }
  }
  if (sinks) {
    mx::Shape shape = scores.shape();
    shape.back() = 1;
    mx::array s = mx::reshape(mx::astype(*sinks, mx::float32), {-1, 1, 1});
    scores = mx::concatenate({mx::broadcast_to(s, shape), scores}, -1);
  }
  return mx::logsumexp(scores, std::vector<int>{-1}, true);
}

// Inputs q, k, v, [mask], [sinks].
Arrays sdpa(const State& n, const Arrays& xs) {
  float scale = float(n.f(0));
  bool causal = n.b(1), has_sinks = n.b(2), output_lse = n.b(3);
  Arrays rest(xs.begin() + 3, xs.end());
  std::optional<mx::array> sinks, mask;
  if (has_sinks) {
    sinks = rest.back();
    rest.pop_back();
  }
  if (!rest.empty()) mask = rest[0];
  const mx::array &q = xs.at(0), &k = xs.at(1), &v = xs.at(2);
  mx::array out = mx::fast::scaled_dot_product_attention(
      q, k, v, scale, causal ? "causal" : (mask ? "array" : ""), causal ? std::nullopt : mask,
      sinks);
  if (!output_lse) return {out};
  return {out, attention_logsumexp(q, k, scale, causal, mask, sinks)};
}

}  // namespace

void add_fast(std::unordered_map<std::string, Handler>& m) {
  m["Quantize"] = quantize;
  m["RMSNorm"] = rms_norm;
  m["RMSNormVJP"] = rms_norm_vjp;
  m["LayerNorm"] = layer_norm;
  m["LayerNormVJP"] = layer_norm_vjp;
  m["RoPE"] = rope;
  m["ScaledDotProductAttention"] = sdpa;
}

}  // namespace mlxfn::detail
