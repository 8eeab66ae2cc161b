// The runtime's own model of a trace, as the handlers see it.
//
// The Rust core (through its C ABI, mlxfn_core.h) validates a file and hands
// over its graph; convert.cpp copies that into these types once per import.
// A dynamic trace's numbers that follow its sizes are `Expr`s here; before a
// handler sees a node they are evaluated at the call's sizes (`concrete`),
// as Python's Trace.concrete does, so handlers only meet ints and floats.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "mlx/array.h"

namespace mlxfn::detail {

namespace mx = mlx::core;

// A fraction num / den (den > 0).
struct Ratio {
  int64_t num = 0;
  int64_t den = 1;
};

// One term: coeff times the product of the sizes of `dims`.
struct Term {
  Ratio coeff;
  std::vector<uint32_t> dims;
};

// The codes of expression program steps (FORMAT.md, model.rs ExprOp).
enum class ExprOp : uint8_t { Poly, Add, Sub, Mul, FloorDiv, CeilDiv, Mod, Min, Max };

struct Step {
  ExprOp op = ExprOp::Poly;
  Ratio constant;
  std::vector<Term> terms;
  uint32_t a = 0;
  uint32_t b = 0;
};

// A number that follows a dynamic trace's sizes: a polynomial, or the value
// of the last step of a program.
struct Expr {
  Ratio constant;
  std::vector<Term> terms;
  bool integer = true;
  std::vector<Step> program;
};

// The exact value of `e` at `sizes` as num/den (den > 0); throws
// std::invalid_argument on a zero divisor or overflow.
std::pair<__int128, __int128> expr_value(const Expr& e, const std::vector<int64_t>& sizes);

// One field of a primitive's state, as MLX's export callback reports it.
struct Arg;
using ArgList = std::vector<Arg>;
struct Arg {
  enum class Kind { None, Bool, Int, Float, Str, Dtype, Ints, List, Expr };
  Kind kind = Kind::None;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;
  mx::Dtype dtype = mx::float32;
  std::vector<int64_t> ints;
  ArgList items;
  std::shared_ptr<const Expr> expr;
};

struct TensorInfo {
  mx::Shape shape;  // -1 on an axis no expression captures (at other sizes)
  mx::Dtype dtype = mx::float32;
};

struct OutputExpr {
  uint32_t output = 0;
  uint32_t axis = 0;
  std::optional<Expr> expr;
};

// One primitive application; its outputs get the next value ids.
struct Node {
  std::string op;
  ArgList args;
  std::vector<uint32_t> inputs;
  std::vector<TensorInfo> outputs;
  std::vector<OutputExpr> output_exprs;
  bool shapeless = false;  // a format-1 shapeless file: shapes follow the inputs

};

// What a handler sees of a node: its primitive, its state (evaluated at the
// call's sizes for a dynamic trace) and its recorded outputs.
struct State {
  const std::string& op;
  const ArgList& args;
  const std::vector<TensorInfo>& outputs;

  State(const Node& node, const ArgList& state)
      : op(node.op), args(state), outputs(node.outputs) {}

  // Typed access to args[k] (std::invalid_argument naming the primitive
  // when the state does not hold what the handler expects).
  int64_t i(size_t k) const;
  double f(size_t k) const;
  bool b(size_t k) const;
  mx::Dtype dtype(size_t k) const;
  const std::string& str(size_t k) const;
  std::vector<int> ints(size_t k) const;
  std::vector<int64_t> int64s(size_t k) const;
  mx::Shape shape(size_t k) const;
  size_t nargs() const { return args.size(); }
};

// A dynamic size: the (input, axis) pairs that share it and its range.
struct Dim {
  std::vector<std::pair<uint32_t, uint32_t>> axes;
  int64_t min = 0;
  int64_t max = 0;
};

struct ConstantExpr {
  uint32_t position = 0;
  Expr expr;
};

// One traced signature. Value ids: inputs (positional, then keyword inputs
// sorted by name), constants, then every node's outputs.
struct Trace {
  std::vector<std::string> keyword_names;
  std::vector<TensorInfo> inputs;
  std::vector<uint32_t> constants;  // indices into the file's constant table
  std::vector<Node> nodes;
  std::vector<uint32_t> outputs;
  std::vector<Dim> dims;
  std::vector<ConstantExpr> constant_exprs;
  std::vector<size_t> following;  // nodes whose state holds an expression (found once)
  std::vector<bool> repeated;     // nodes that repeat an earlier one (see dedupe)

  size_t positional() const { return inputs.size() - keyword_names.size(); }
  std::vector<int64_t> base_sizes() const;
};

// The node's state with every expression evaluated at `sizes`.
ArgList concrete(const Node& node, const std::vector<int64_t>& sizes);

// The node's output shapes at `sizes` (-1 on an axis no expression captures).
std::vector<TensorInfo> output_shapes(const Node& node, const std::vector<int64_t>& sizes);

// Common subexpressions: a node that applies the same primitive with the
// same state to the same values as an earlier node (the rotary positions
// every layer recomputes, a constant broadcast once per use) reads the
// earlier node's outputs instead.  Rewrites the trace's input and output
// ids to the first of each set of equal values and marks the repeats.
void dedupe(Trace& trace);

}  // namespace mlxfn::detail
