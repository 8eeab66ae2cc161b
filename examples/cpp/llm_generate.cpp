// Greedy generation from a one-file LLM (examples/llm_one_file.py exports
// one): the file's step function serves the prefill (the prompt, no cache)
// and the decode step (one token and the KV cache of every layer), at every
// prompt and cache length, from mlxfn's C++ runtime.
//
//   llm_generate MODEL.mlxfn COUNT TOKEN [TOKEN ...]
//
// Prints the COUNT generated token ids on one line, and the time per decoded
// token on stderr.
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <vector>

#include "mlx/mlx.h"
#include "mlxfn/mlxfn.h"

namespace mx = mlx::core;

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: llm_generate MODEL.mlxfn COUNT TOKEN [TOKEN ...]\n";
    return 64;
  }
  try {
    mlxfn::ImportedFunction step = mlxfn::import_function(argv[1]);
    int count = std::atoi(argv[2]);
    std::vector<int32_t> prompt;
    for (int i = 3; i < argc; ++i) prompt.push_back(std::atoi(argv[i]));

    mx::array tokens(prompt.begin(), {1, int(prompt.size())}, mx::int32);
    std::vector<mx::array> out = step({tokens});  // logits of the last position, then the cache
    std::vector<int32_t> generated;
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < count; ++i) {
      mx::array token = mx::astype(mx::argmax(out[0], -1), mx::int32);
      mx::eval(token);
      generated.push_back(token.item<int32_t>());
      if (i == 0) start = std::chrono::steady_clock::now();  // decode steps only
      if (i + 1 == count) break;
      out[0] = mx::reshape(token, {1, 1});
      out = step(out);  // the token and the cache in, new logits and cache out
    }
    auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (size_t i = 0; i < generated.size(); ++i) std::cout << (i ? " " : "") << generated[i];
    std::cout << "\n";
    if (count > 1) std::cerr << "decode: " << 1e3 * seconds / (count - 1) << " ms/token\n";
  } catch (const std::exception& e) {
    std::cerr << "llm_generate: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
