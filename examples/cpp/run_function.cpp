// Run a function exported in MLX's format (e.g. converted from an mlxfn file
// with `mlxfn convert model.mlxfn model.mlx --to mlx`).
//
//   run_function FUNCTION_FILE [INPUTS.safetensors]
//
// Inputs come from a safetensors file: arrays named "0", "1", ... are the
// positional inputs, in that order; every other name is a keyword input.
// Output, one item per line:
//   metadata <the file's metadata, \ and newlines escaped>
//   output <i> <dtype> [<shape>] <values...>
#include <mlx/mlx.h>

#include <cctype>
#include <iostream>
#include <map>
#include <string>

#include "print_arrays.h"

namespace mx = mlx::core;

static bool is_index(const std::string& name) {
  if (name.empty() || name.size() > 9) {
    return false;
  }
  for (char c : name) {
    if (!std::isdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return true;
}

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::cerr << "usage: " << argv[0] << " FUNCTION_FILE [INPUTS.safetensors]\n";
    return 2;
  }
  try {
    auto fn = mx::import_function(argv[1]);

    mx::Args args;
    mx::Kwargs kwargs;
    if (argc == 3) {
      auto [arrays, _] = mx::load_safetensors(argv[2]);
      std::map<int, mx::array> positional;
      for (auto& [name, arr] : arrays) {
        if (is_index(name)) {
          positional.emplace(std::stoi(name), arr);
        } else {
          kwargs.emplace(name, arr);
        }
      }
      for (int i = 0; i < static_cast<int>(positional.size()); ++i) {
        auto it = positional.find(i);
        if (it == positional.end()) {
          throw std::invalid_argument(
              "positional inputs must be named 0, 1, ... without gaps; " +
              std::to_string(i) + " is missing");
        }
        args.push_back(it->second);
      }
    }

    auto outputs = fn(args, kwargs);
    mx::eval(outputs);
    std::cout << "metadata " << mlxfn_example::one_line(fn.metadata()) << "\n";
    for (size_t i = 0; i < outputs.size(); ++i) {
      std::cout << "output " << i << " ";
      mlxfn_example::print_array(std::cout, outputs[i]);
      std::cout << "\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "run_function: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
