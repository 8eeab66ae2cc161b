// mlxfn_time: how long an imported function takes from C++, mlxfn's runtime
// or MLX's own import (the same function exported in MLX's format).
//
//   mlxfn_time FILE INPUTS.safetensors [--mlx] [--steady N]
//
// Inputs as mlxfn_run reads them ("arg0", "arg1", ... positional).  Prints
// one line of key=value: import (s), first (import + first call + eval: the
// time to the first output), first3 (the first three calls), steady (a call
// after N warm calls, median of N), rss_anon (kB of anonymous memory after
// the first call: what the process itself allocated, not file pages).
#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "mlx/export.h"
#include "mlx/io.h"
#include "mlx/transforms.h"
#include "mlxfn/mlxfn.h"

namespace mx = mlx::core;
using Clock = std::chrono::steady_clock;

namespace {

double since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

long rss_anon_kb() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("RssAnon:", 0) == 0) return std::stol(line.substr(8));
  }
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: mlxfn_time FILE INPUTS.safetensors [--mlx] [--steady N]\n";
    return 64;
  }
  bool mlx = false;
  int steady = 50;
  for (int i = 3; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--mlx") {
      mlx = true;
    } else if (a == "--steady" && i + 1 < argc) {
      steady = std::stoi(argv[++i]);
    }
  }
  auto [loaded, _] = mx::load_safetensors(argv[2]);
  std::map<size_t, mx::array> positional;
  for (auto& [name, arr] : loaded) positional.emplace(std::stoul(name.substr(3)), arr);
  mx::Args args;
  for (auto& [_, arr] : positional) args.push_back(arr);
  mx::eval(args);
  try {
    auto start = Clock::now();
    std::function<std::vector<mx::array>(const mx::Args&)> fn;
    if (mlx) {
      fn = [f = mx::import_function(argv[1])](const mx::Args& a) { return f(a); };
    } else {
      fn = [f = mlxfn::import_function(std::string(argv[1]))](const mx::Args& a) { return f(a); };
    }
    double import_s = since(start);
    mx::eval(fn(args));
    double first_s = since(start);
    long rss = rss_anon_kb();
    mx::eval(fn(args));
    mx::eval(fn(args));
    double first3_s = since(start) - import_s;
    for (int i = 0; i < steady; ++i) mx::eval(fn(args));  // warm (a shaped trace fuses here)
    std::vector<double> times;
    for (int i = 0; i < steady; ++i) {
      auto t = Clock::now();
      mx::eval(fn(args));
      times.push_back(since(t));
    }
    std::sort(times.begin(), times.end());
    std::cout << "import=" << import_s << " first=" << first_s << " first3=" << first3_s
              << " steady=" << (times.empty() ? 0.0 : times[times.size() / 2])
              << " rss_anon=" << rss << "\n";
  } catch (const std::exception& e) {
    std::cerr << "mlxfn_time: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
