"""Export an MLP training step with mlxfn and convert it for MLX's C++ API.

    python examples/cpp/export_mlp.py OUT_DIR

writes, in OUT_DIR:
  train_step.mlxfn          the step, exported by mlxfn
  train_step.mlx            the same step in MLX's format (mlxfn convert --to mlx)
  train_state.safetensors   the initial state "state.0", "state.1", ... and a batch "X", "y"

then `train_mlp OUT_DIR/train_step.mlx OUT_DIR/train_state.safetensors 10` runs
ten steps from C++.  The step is ``state', loss = step(*state, X=X, y=y)``:
the loss, its gradients and the SGD-with-momentum update, with the parameters
and the optimizer's state as inputs and outputs.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_unflatten

import mlxfn
from mlxfn.convert import to_mlx

BATCH, INPUT_DIM, HIDDEN_DIM, OUTPUT_DIM = 8, 32, 64, 10


class MLP(nn.Module):
    def __init__(self, num_layers: int, input_dim: int, hidden_dim: int, output_dim: int) -> None:
        super().__init__()
        sizes = [input_dim] + [hidden_dim] * num_layers + [output_dim]
        self.layers = [nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:])]

    def __call__(self, x: mx.array) -> mx.array:
        for layer in self.layers[:-1]:
            x = nn.relu(layer(x))
        return self.layers[-1](x)


def build() -> tuple[Any, list[mx.array], dict[str, mx.array]]:
    """The step function, the initial state and a batch (all seeded)."""
    mx.random.seed(0)
    model = MLP(2, INPUT_DIM, HIDDEN_DIM, OUTPUT_DIM)
    optimizer = optim.SGD(learning_rate=0.1, momentum=0.9)
    optimizer.init(model.parameters())
    names, state = zip(*tree_flatten([model.parameters(), optimizer.state]))
    mx.eval(state)

    def loss_fn(params: Any, X: mx.array, y: mx.array) -> mx.array:
        model.update(params)
        return nn.losses.cross_entropy(model(X), y, reduction="mean")

    def step(*state: mx.array, X: mx.array, y: mx.array) -> tuple[mx.array, ...]:
        params, optimizer.state = tree_unflatten(list(zip(names, state)))
        loss, grads = mx.value_and_grad(loss_fn)(params, X, y)
        params = optimizer.apply_gradients(grads, params)
        _, new_state = zip(*tree_flatten([params, optimizer.state]))
        return (*new_state, loss)

    mx.random.seed(42)
    batch = {
        "X": mx.random.normal((BATCH, INPUT_DIM)),
        "y": mx.random.randint(0, OUTPUT_DIM, (BATCH,)),
    }
    return step, list(state), batch


def main(out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    step, state, batch = build()
    mlxfn_path = os.path.join(out_dir, "train_step.mlxfn")
    mlxfn.export_function(mlxfn_path, step, *state, **batch, metadata="MLP training step")
    to_mlx(mlxfn_path, os.path.join(out_dir, "train_step.mlx"))
    arrays = {f"state.{i}": a for i, a in enumerate(state)}
    mx.save_safetensors(os.path.join(out_dir, "train_state.safetensors"), {**arrays, **batch})

    # The same steps in Python, with mlxfn's import of the step.
    imported = mlxfn.import_function(mlxfn_path)
    for i in range(3):
        *state, loss = imported(*state, **batch)
        print(f"step {i} loss {loss.item():.9g}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUT_DIR")
    main(sys.argv[1])
