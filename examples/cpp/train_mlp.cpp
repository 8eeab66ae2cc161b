// Train an MLP from C++ with a training step exported from Python
// (see export_mlp.py, which writes both files this program reads).
//
//   train_mlp STEP_FILE STATE.safetensors STEPS
//
// The step takes the training state (parameters and optimizer state) as
// positional inputs and the batch as keyword inputs X and y, and returns the
// new state followed by the loss: state' ..., loss = step(*state, X=X, y=y).
// STATE.safetensors holds the initial state as "state.0", "state.1", ... and
// the batch as "X" and "y".  Prints one line per step: "step <i> loss <value>".
#include <mlx/mlx.h>

#include <iomanip>
#include <iostream>
#include <string>

#include "print_arrays.h"

namespace mx = mlx::core;

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: " << argv[0] << " STEP_FILE STATE.safetensors STEPS\n";
    return 2;
  }
  try {
    auto step = mx::import_function(argv[1]);
    auto [arrays, _] = mx::load_safetensors(argv[2]);
    int steps = std::stoi(argv[3]);

    std::vector<mx::array> state;
    for (int i = 0; arrays.count("state." + std::to_string(i)); ++i) {
      state.push_back(arrays.at("state." + std::to_string(i)));
    }
    mx::Kwargs batch = {{"X", arrays.at("X")}, {"y", arrays.at("y")}};

    std::cout << std::setprecision(9);
    for (int it = 0; it < steps; ++it) {
      auto outputs = step(state, batch);
      mx::eval(outputs);
      auto loss = outputs.back();
      outputs.pop_back();
      state = std::move(outputs);
      std::cout << "step " << it << " loss " << loss.item<float>() << "\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "train_mlp: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
