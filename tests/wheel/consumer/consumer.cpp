// consumer FILE INPUTS.safetensors OUTPUTS.safetensors [--bytes]
//
// Imports FILE with mlxfn's C++ runtime (from its path, or with --bytes
// from a copy of it in memory), calls it on INPUTS ("arg0", "arg1", ... are
// positional, any other name a keyword) and saves its outputs as "out0",
// "out1", ...  Also checks the C ABI header: dtype codes name MLX's dtypes.
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "mlx/io.h"
#include "mlxfn/mlxfn.h"
#include "mlxfn/mlxfn_core.h"

namespace mx = mlx::core;

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: consumer FILE INPUTS.safetensors OUTPUTS.safetensors [--bytes]\n";
    return 2;
  }
  if (std::strcmp(mlxfn_dtype_name(MlxfnDType_BFloat16), "bfloat16") != 0) {
    std::cerr << "consumer: the dtype codes of mlxfn_core.h are not MLX's\n";
    return 1;
  }
  try {
    std::vector<char> bytes;
    bool from_bytes = argc > 4 && std::string(argv[4]) == "--bytes";
    if (from_bytes) {
      std::ifstream in(argv[1], std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    auto fn = from_bytes ? mlxfn::import_function(bytes.data(), bytes.size())
                         : mlxfn::import_function(std::string(argv[1]));
    auto [named, meta] = mx::load_safetensors(argv[2]);
    mx::Args args;
    mx::Kwargs kwargs;
    for (size_t i = 0; named.count("arg" + std::to_string(i)); ++i) {
      args.push_back(named.at("arg" + std::to_string(i)));
    }
    for (auto& [name, value] : named) {
      if (name.rfind("arg", 0) != 0) {
        kwargs.insert_or_assign(name, value);
      }
    }
    auto outputs = fn(args, kwargs);
    std::unordered_map<std::string, mx::array> saved;
    for (size_t i = 0; i < outputs.size(); ++i) {
      saved.insert_or_assign("out" + std::to_string(i), outputs[i]);
    }
    mx::save_safetensors(argv[3], saved);
    std::cout << fn.load_mode() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "consumer: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
