// mlxfn_run: import an mlxfn file with the C++ runtime, call it on inputs
// read from a .safetensors file, and write its outputs to another.
//
//   mlxfn_run FILE INPUTS.safetensors OUTPUTS.safetensors [options]
//
// Inputs named "arg0", "arg1", ... are positional (in that order); any other
// name is a keyword input.  Outputs are written as "out0", "out1", ...
// Options:
//   --bytes        import from the file's bytes in memory, not from its path
//   --copy         Load::Copy (constants copied, not mapped)
//   --calls N      call N times (outputs of the last call are written)
//   --threads N    then call N times more on each of N threads at once: every
//                  thread's outputs must equal the first ones (status 3 if not)
// Exit status: 0 ok; 2 the call was refused (std::invalid_argument: the
// message, MLX's for a call that matches no trace, goes to stderr); 3 any
// other error.
//
//   mlxfn_run --primitives
//
// lists every primitive the runtime rebuilds.
//
//   mlxfn_run --batch LIST
//
// runs every line "FILE INPUTS OUTPUTS [options]" of LIST in this one
// process; a failing line writes "<status>\n<message>" to OUTPUTS.err.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "mlx/io.h"
#include "mlx/ops.h"
#include "mlx/transforms.h"
#include "mlxfn/mlxfn.h"

namespace mx = mlx::core;

namespace {

struct Options {
  bool from_bytes = false;
  mlxfn::Load load = mlxfn::Load::Auto;
  int calls = 1;
  int threads = 0;
};

// Call `fn` `calls` times on each of `threads` threads at once; the
// problem if any thread failed or got other outputs than `want`.
std::string run_threads(const mlxfn::ImportedFunction& fn, const mx::Args& args,
                        const mx::Kwargs& kwargs, const std::vector<mx::array>& want,
                        int threads, int calls) {
  std::vector<std::string> problems(static_cast<size_t>(threads));
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      try {
        for (int c = 0; c < calls; ++c) {
          std::vector<mx::array> outs = fn(args, kwargs);
          mx::eval(outs);
          for (size_t i = 0; i < want.size(); ++i) {
            if (!mx::array_equal(outs.at(i), want[i], true).item<bool>()) {
              problems[size_t(t)] = "thread " + std::to_string(t) + ": output " +
                                    std::to_string(i) + " differs";
            }
          }
        }
      } catch (const std::exception& e) {
        problems[size_t(t)] = "thread " + std::to_string(t) + ": " + e.what();
      }
    });
  }
  for (std::thread& th : pool) th.join();
  for (const std::string& p : problems) {
    if (!p.empty()) return p;
  }
  return "";
}

// Run one file on one inputs file; the exit status, the message in `error`.
int run(const std::string& file, const std::string& inputs, const std::string& outputs,
        const Options& opt, std::string& error) {
  std::shared_ptr<void> bytes;  // page-aligned, alive until the end
  try {
    std::optional<mlxfn::ImportedFunction> fn;
    if (opt.from_bytes) {
      std::ifstream in(file, std::ios::binary | std::ios::ate);
      if (!in) throw std::runtime_error("cannot read " + file);
      size_t size = size_t(in.tellg());
      bytes.reset(std::aligned_alloc(16384, (size + 16383) / 16384 * 16384), std::free);
      in.seekg(0);
      in.read(static_cast<char*>(bytes.get()), std::streamsize(size));
      fn.emplace(mlxfn::import_function(bytes.get(), size, opt.load));
    } else {
      fn.emplace(mlxfn::import_function(file, opt.load));
    }
    auto [loaded, _] = mx::load_safetensors(inputs);
    std::map<size_t, mx::array> positional;
    mx::Kwargs kwargs;
    for (auto& [name, arr] : loaded) {
      if (name.rfind("arg", 0) == 0 && name.size() > 3 &&
          name.find_first_not_of("0123456789", 3) == std::string::npos) {
        positional.emplace(std::stoul(name.substr(3)), arr);
      } else {
        kwargs.emplace(name, arr);
      }
    }
    mx::Args args;
    for (auto& [_, arr] : positional) args.push_back(arr);
    std::vector<mx::array> outs;
    for (int c = 0; c < opt.calls; ++c) {
      outs = kwargs.empty() ? (*fn)(args) : args.empty() ? (*fn)(kwargs) : (*fn)(args, kwargs);
      mx::eval(outs);
    }
    if (opt.threads > 0) {
      std::string problem = run_threads(*fn, args, kwargs, outs, opt.threads, opt.calls);
      if (!problem.empty()) throw std::runtime_error(problem);
    }
    std::unordered_map<std::string, mx::array> named;
    for (size_t i = 0; i < outs.size(); ++i) {
      named.emplace("out" + std::to_string(i), mx::contiguous(outs[i]));
    }
    mx::save_safetensors(outputs, named, {{"load_mode", fn->load_mode()}});
  } catch (const std::invalid_argument& e) {
    error = e.what();
    return 2;
  } catch (const std::exception& e) {
    error = e.what();
    return 3;
  }
  return 0;
}

bool parse(const std::vector<std::string>& words, size_t from, Options& opt) {
  for (size_t i = from; i < words.size(); ++i) {
    if (words[i] == "--bytes") {
      opt.from_bytes = true;
    } else if (words[i] == "--copy") {
      opt.load = mlxfn::Load::Copy;
    } else if (words[i] == "--calls" && i + 1 < words.size()) {
      opt.calls = std::stoi(words[++i]);
    } else if (words[i] == "--threads" && i + 1 < words.size()) {
      opt.threads = std::stoi(words[++i]);
    } else {
      std::cerr << "mlxfn_run: unknown option " << words[i] << "\n";
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> words(argv + 1, argv + argc);
  if (words.size() == 1 && words[0] == "--primitives") {
    for (const std::string& name : mlxfn::supported_primitives()) std::cout << name << "\n";
    return 0;
  }
  if (words.size() == 2 && words[0] == "--batch") {
    std::ifstream list(words[1]);
    std::string line;
    int worst = 0;
    while (std::getline(list, line)) {
      std::istringstream in(line);
      std::vector<std::string> w;
      for (std::string x; in >> x;) w.push_back(x);
      if (w.size() < 3) continue;
      Options opt;
      if (!parse(w, 3, opt)) return 64;
      std::string error;
      int status = run(w[0], w[1], w[2], opt, error);
      if (status != 0) {
        std::ofstream(w[2] + ".err") << status << "\n" << error;
        worst = std::max(worst, status);
      }
    }
    return 0;
  }
  Options opt;
  if (words.size() < 3 || !parse(words, 3, opt)) {
    std::cerr << "usage: mlxfn_run FILE INPUTS.safetensors OUTPUTS.safetensors [--bytes] "
                 "[--copy] [--calls N] [--threads N]\n       mlxfn_run --batch LIST\n";
    return 64;
  }
  std::string error;
  int status = run(words[0], words[1], words[2], opt, error);
  if (status != 0) std::cerr << error << "\n";
  return status;
}
