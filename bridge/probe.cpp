// read_probe(fun, args, kwargs): one probe of mlxfn's shapeless export
// (python/mlxfn/dynamic.py) read straight from MLX's export callback in C++.
//
// A shapeless export traces the function at tens of other sizes and needs
// of each trace only its structure and its numbers.  Through Python, each
// trace makes MLX build a dict per primitive (thousands for an LLM) that
// Python then reads and frees: more than half of a probe's cost.  Here the
// callback is C++ and hands Python only what dynamic.py's Shot keeps, as its
// Python reader does (read_records in python/mlxfn/shapeless/probe.py), the
// same objects: for every node its primitive, input value ids, outputs'
// (dtype, number of axes) and the skeleton of its state (every number
// blanked); the numbers themselves (the state's ints and finite floats in
// order, then the outputs' sizes); and the constants, with MLX's ids of their
// arrays (equal ids, the same array), which only this reader knows.

#include "probe.h"

#include <nanobind/stl/string.h>
#include <nanobind/stl/unordered_map.h>
#include <nanobind/stl/vector.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <variant>
#include <vector>

#include "mlx/array.h"
#include "mlx/export.h"

namespace nb = nanobind;
namespace mx = mlx::core;

namespace {

using Described = std::vector<std::tuple<std::string, mx::Shape, mx::Dtype>>;

class ProbeReader {
 public:
  void operator()(const mx::ExportCallbackInput& record) {
    const auto& type = std::get<std::string>(record.at("type"));
    if (type == "primitive") {
      primitive(record);
      return;
    }
    if (type == "inputs") {
      for (const auto& [name, shape, dtype] : std::get<Described>(record.at("inputs"))) {
        ids_.emplace(name, int(ids_.size()));
      }
    } else if (type == "constants") {
      using Constants = std::vector<std::pair<std::string, mx::array>>;
      for (const auto& [name, value] : std::get<Constants>(record.at("constants"))) {
        ids_.emplace(name, int(ids_.size()));
        constants_.push_back(value);
      }
    } else if (type == "outputs") {
      for (const auto& [name, shape, dtype] : std::get<Described>(record.at("outputs"))) {
        output_names_.push_back(name);
      }
    }
    count_ = int(ids_.size());
  }

  // (nodes, layout, numbers, float positions, constants, output ids,
  //  value ids, computed ids, the constants' array ids): shapeless/probe.py's Parts.
  nb::tuple result() {
    nb::list nodes;
    std::unordered_map<std::string, nb::object> names, skeletons, outs;
    for (const Node& node : nodes_) {
      nb::tuple inputs = nb::steal<nb::tuple>(PyTuple_New(Py_ssize_t(node.inputs.size())));
      for (size_t k = 0; k < node.inputs.size(); ++k) {
        PyTuple_SET_ITEM(inputs.ptr(), Py_ssize_t(k), PyLong_FromLong(node.inputs[k]));
      }
      nb::object primitive = interned(names, node.name, [&] { return nb::object(nb::str(node.name.c_str())); });
      nb::object kind = interned(skeletons, node.skeleton, [&] {
        nb::list items;
        for (const auto& item : first_state_.at(node.skeleton)) items.append(item_skeleton(item));
        return tagged(false, items);
      });
      nb::object out_key = interned(outs, node.outputs, [&] {
        nb::list items;
        for (const auto& [dtype, ndim] : first_outputs_.at(node.outputs)) {
          items.append(nb::make_tuple(nb::str(nb::cast(dtype)), ndim));
        }
        return nb::object(nb::tuple(items));
      });
      nodes.append(nb::make_tuple(primitive, inputs, out_key, kind));
    }
    nb::list constants, constant_ids;
    for (const mx::array& c : constants_) {
      constants.append(nb::cast(c));
      constant_ids.append(c.id());
    }
    nb::list outputs;
    for (const auto& name : output_names_) outputs.append(ids_.at(name));
    nb::list values = nb::steal<nb::list>(PyList_New(Py_ssize_t(values_.size())));
    for (size_t k = 0; k < values_.size(); ++k) {
      const Number& v = values_[k];
      PyObject* item = v.kind == Number::Int    ? PyLong_FromLongLong(v.i)
                       : v.kind == Number::Size ? PyLong_FromUnsignedLongLong(v.u)
                                                : PyFloat_FromDouble(v.f);
      if (item == nullptr) throw nb::python_error();
      PyList_SET_ITEM(values.ptr(), Py_ssize_t(k), item);
    }
    nb::list layout = nb::steal<nb::list>(PyList_New(Py_ssize_t(layout_.size())));
    for (size_t k = 0; k < layout_.size(); ++k) {
      const auto& [first, out, id] = layout_[k];
      PyList_SET_ITEM(layout.ptr(), Py_ssize_t(k), nb::make_tuple(first, out, id).release().ptr());
    }
    return nb::make_tuple(nodes, layout, values, nb::cast(floats_), constants, nb::tuple(outputs),
                          int(ids_.size()), computed_, nb::tuple(constant_ids));
  }

 private:
  struct Number {
    enum Kind { Int, Size, Float } kind;
    union {
      long long i;
      unsigned long long u;
      double f;
    };
  };

  template <typename Int>
  void integer(Int v) {
    if constexpr (std::is_unsigned_v<Int>) {
      values_.push_back(Number{Number::Size, {.u = (unsigned long long)(v)}});
    } else {
      values_.push_back(Number{Number::Int, {.i = (long long)(v)}});
    }
  }

  static void append_number(std::string& text, long long v) {
    char digits[24];
    auto end = std::to_chars(digits, digits + sizeof digits, v).ptr;
    text.append(digits, end);
  }

  void real(double v, std::string& skeleton) {
    if (!std::isfinite(v)) {  // inf and nan: state, not a number that may follow the sizes
      char text[40];
      std::snprintf(text, sizeof text, "F%a;", v);
      skeleton += text;
      return;
    }
    floats_.push_back(values_.size());
    values_.push_back(Number{Number::Float, {.f = v}});
    skeleton += 'f';
  }

  template <typename Ints>
  void integers(const Ints& items, char tag, std::string& skeleton) {
    skeleton += tag;
    append_number(skeleton, (long long)(items.size()));
    skeleton += ';';
    for (auto v : items) integer(v);
  }

  // One item of a primitive's state: its numbers to values_, the rest to
  // the skeleton (a tag per kind of item, so that different states differ).
  void state(const mx::StateT& item, std::string& skeleton) {
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, bool>) {
            skeleton += v ? 'T' : 'F';
          } else if constexpr (std::is_same_v<T, int> || std::is_same_v<T, size_t>) {
            skeleton += 'i';
            integer(v);
          } else if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
            real(double(v), skeleton);
          } else if constexpr (std::is_same_v<T, mx::Dtype>) {
            skeleton += 'd';
            append_number(skeleton, int(v.val()));
            skeleton += ';';
          } else if constexpr (std::is_same_v<T, mx::Shape>) {
            integers(v, 'S', skeleton);
          } else if constexpr (std::is_same_v<T, mx::Strides>) {
            integers(v, 'R', skeleton);
          } else if constexpr (std::is_same_v<T, std::vector<int>>) {
            integers(v, 'I', skeleton);
          } else if constexpr (std::is_same_v<T, std::vector<size_t>>) {
            integers(v, 'Z', skeleton);
          } else if constexpr (std::is_same_v<T, std::vector<std::tuple<bool, bool, bool>>>) {
            skeleton += 'B';
            for (const auto& [a, b, c] : v) skeleton += char('0' + (a ? 4 : 0) + (b ? 2 : 0) + (c ? 1 : 0));
            skeleton += ';';
          } else if constexpr (std::is_same_v<T, std::vector<std::variant<bool, int, float>>>) {
            skeleton += 'V';
            append_number(skeleton, (long long)(v.size()));
            skeleton += ';';
            for (const auto& leaf : v) {
              if (const bool* b = std::get_if<bool>(&leaf)) {
                skeleton += *b ? 'T' : 'F';
              } else if (const int* i = std::get_if<int>(&leaf)) {
                skeleton += 'i';
                integer(*i);
              } else {
                real(double(std::get<float>(leaf)), skeleton);
              }
            }
          } else if constexpr (std::is_same_v<T, std::optional<float>>) {
            if (v) {
              skeleton += 'o';
              real(double(*v), skeleton);
            } else {
              skeleton += 'N';
            }
          } else if constexpr (std::is_same_v<T, std::string>) {
            skeleton += 's';
            append_number(skeleton, (long long)(v.size()));
            skeleton += ':';
            skeleton += v;
          } else {
            static_assert(sizeof(T) == 0, "a kind of primitive state this reader does not know");
          }
        },
        item);
  }

  // The skeleton Python's reader makes of the same state (shapeless/probe.py:
  // _split, on the objects MLX's binding gives: a SmallVector is a tuple, a
  // std::vector a list): made once per distinct state text, so that both
  // readers give one export the same Parts.
  static nb::object tagged(bool is_tuple, const nb::list& items) { return nb::make_tuple(is_tuple, nb::tuple(items)); }

  static nb::object real_skeleton(double v) {
    if (std::isfinite(v)) return nb::str("#float");
    return nb::make_tuple("float", nb::repr(nb::float_(v)));
  }

  template <typename Ints>
  static nb::object ints_skeleton(const Ints& items, bool is_tuple) {
    nb::list leaves;
    for (size_t k = 0; k < items.size(); ++k) leaves.append(nb::str("#int"));
    return tagged(is_tuple, leaves);
  }

  static nb::object item_skeleton(const mx::StateT& item) {
    return std::visit(
        [](const auto& v) -> nb::object {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, bool>) {
            return nb::make_tuple("bool", nb::bool_(v));
          } else if constexpr (std::is_same_v<T, int> || std::is_same_v<T, size_t>) {
            return nb::str("#int");
          } else if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
            return real_skeleton(double(v));
          } else if constexpr (std::is_same_v<T, mx::Dtype>) {
            return nb::make_tuple("dtype", nb::str(nb::cast(v)));
          } else if constexpr (std::is_same_v<T, mx::Shape> || std::is_same_v<T, mx::Strides>) {
            return ints_skeleton(v, true);
          } else if constexpr (std::is_same_v<T, std::vector<int>> || std::is_same_v<T, std::vector<size_t>>) {
            return ints_skeleton(v, false);
          } else if constexpr (std::is_same_v<T, std::vector<std::tuple<bool, bool, bool>>>) {
            nb::list items;
            for (const auto& [a, b, c] : v) {
              nb::list flags;
              for (bool flag : {a, b, c}) flags.append(nb::make_tuple("bool", nb::bool_(flag)));
              items.append(tagged(true, flags));
            }
            return tagged(false, items);
          } else if constexpr (std::is_same_v<T, std::vector<std::variant<bool, int, float>>>) {
            nb::list items;
            for (const auto& leaf : v) {
              if (const bool* b = std::get_if<bool>(&leaf)) {
                items.append(nb::make_tuple("bool", nb::bool_(*b)));
              } else if (std::holds_alternative<int>(leaf)) {
                items.append(nb::str("#int"));
              } else {
                items.append(real_skeleton(double(std::get<float>(leaf))));
              }
            }
            return tagged(false, items);
          } else if constexpr (std::is_same_v<T, std::optional<float>>) {
            return v ? real_skeleton(double(*v)) : nb::object(nb::make_tuple("NoneType", nb::none()));
          } else if constexpr (std::is_same_v<T, std::string>) {
            return nb::make_tuple("str", nb::str(v.data(), v.size()));
          } else {
            static_assert(sizeof(T) == 0, "a kind of primitive state this reader does not know");
          }
        },
        item);
  }

  // One Python object per distinct text (primitive names, skeletons,
  // outputs): comparing two probes' keys then mostly meets the same objects.
  template <typename Make>
  static nb::object interned(std::unordered_map<std::string, nb::object>& table, const std::string& text,
                             const Make& make) {
    auto found = table.find(text);
    if (found != table.end()) return found->second;
    nb::object made = make();
    table.emplace(text, made);
    return made;
  }

  void primitive(const mx::ExportCallbackInput& record) {
    const auto& ins = std::get<Described>(record.at("inputs"));
    const auto& outs = std::get<Described>(record.at("outputs"));
    const auto& args = std::get<std::vector<mx::StateT>>(record.at("arguments"));
    Node node;
    node.name = std::get<std::string>(record.at("name"));
    for (const auto& in : ins) node.inputs.push_back(ids_.at(std::get<0>(in)));
    long first = long(values_.size());
    for (const auto& item : args) {
      state(item, node.skeleton);
      node.skeleton += ',';
    }
    if (!first_state_.count(node.skeleton)) first_state_.emplace(node.skeleton, args);
    layout_.push_back({first, long(values_.size()), count_});
    std::vector<std::pair<mx::Dtype, int>> described;
    for (const auto& [out_name, shape, dtype] : outs) {
      ids_[out_name] = int(count_++);
      for (auto size : shape) integer(size);
      append_number(node.outputs, int(dtype.val()));
      node.outputs += ':';
      append_number(node.outputs, (long long)(shape.size()));
      node.outputs += ';';
      described.emplace_back(dtype, int(shape.size()));
    }
    if (!first_outputs_.count(node.outputs)) first_outputs_.emplace(node.outputs, std::move(described));
    computed_ += int(outs.size());
    nodes_.push_back(std::move(node));
  }

  // A node as read (no Python objects: MLX calls back without the GIL).
  struct Node {
    std::string name;
    std::vector<int> inputs;
    std::string skeleton;  // the state's text, numbers blanked
    std::string outputs;   // each output's dtype and number of axes
  };

  std::unordered_map<std::string, int> ids_;  // MLX's names of values -> value ids
  std::vector<Node> nodes_;
  std::unordered_map<std::string, std::vector<mx::StateT>> first_state_;  // a state of each text
  std::unordered_map<std::string, std::vector<std::pair<mx::Dtype, int>>> first_outputs_;
  std::vector<std::string> output_names_;
  std::vector<mx::array> constants_;
  std::vector<Number> values_;  // every number, in order
  std::vector<size_t> floats_;  // the positions of the floats among them
  std::vector<std::tuple<long, long, long>> layout_;
  long count_ = 0;  // value ids given so far
  int computed_ = 0;
};

// One traced function runs at a time in the process: probes read on several
// threads (dynamic.py reads ahead) overlap only in MLX's own work, never in
// the user's Python, which need not be thread-safe.
std::mutex python_calls;

// fun(*args, **kwargs) as MLX's Python export calls it (one array, or a
// tuple or list of arrays), with the GIL taken for it: MLX traces without
// it.  A Python exception leaves as a C++ one, while the GIL is held.
std::vector<mx::array> call_python(const nb::callable& fun, const mx::Args& args, const mx::Kwargs& kwargs) {
  std::lock_guard<std::mutex> one_at_a_time(python_calls);  // before the GIL: never the other way round
  nb::gil_scoped_acquire gil;
  try {
    nb::dict keywords;
    for (const auto& [key, value] : kwargs) keywords[key.c_str()] = nb::cast(value);
    nb::object outputs = fun(*nb::tuple(nb::cast(args)), **keywords);
    std::vector<mx::array> out;
    if (nb::isinstance<mx::array>(outputs)) {
      out.push_back(nb::cast<mx::array>(outputs));
    } else if (!nb::try_cast(outputs, out)) {
      throw std::invalid_argument(
          "[export_function] Outputs can be either a single array, a tuple, or a list of arrays.");
    }
    return out;
  } catch (const nb::python_error& err) {
    throw std::runtime_error(err.what());
  }
}

// MLX traces and reads back without the GIL, so that another thread's probe
// (or Python) runs meanwhile; the parts are made with it.
nb::tuple read_probe(const nb::callable& fun, const mx::Args& args, const mx::Kwargs& kwargs) {
  ProbeReader reader;
  {
    nb::gil_scoped_release release;
    mx::export_function([&reader](const mx::ExportCallbackInput& record) { reader(record); },
                        [&fun](const mx::Args& a, const mx::Kwargs& k) { return call_python(fun, a, k); }, args,
                        kwargs, /* shapeless */ true);
  }
  return reader.result();
}

}  // namespace

void add_probe_reader(nb::module_& m) {
  m.def("read_probe", &read_probe, nb::arg("fun"), nb::arg("args"), nb::arg("kwargs"),
        "One shapeless trace of fun(*args, **kwargs) as mlxfn's shapeless export reads it "
        "(python/mlxfn/dynamic.py: Parts).");
}
