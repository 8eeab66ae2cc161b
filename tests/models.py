"""Small seeded models used by the tests; the Llama-style decoder is the
benchmarks' (benches/zoo.py)."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from zoo import Llama, LlamaConfig, seeded  # noqa: F401  (re-exported)


class MLP(nn.Module):
    def __init__(self, dims: int = 16, hidden: int = 32, out: int = 8) -> None:
        super().__init__()
        self.l1 = nn.Linear(dims, hidden)
        self.l2 = nn.Linear(hidden, hidden)
        self.l3 = nn.Linear(hidden, out)

    def __call__(self, x: mx.array) -> mx.array:
        x = nn.relu(self.l1(x))
        x = nn.gelu(self.l2(x))
        return nn.log_softmax(self.l3(nn.silu(x)), axis=-1)


class CNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm(8)
        self.gn = nn.GroupNorm(2, 8)
        self.ln = nn.LayerNorm(8)
        self.mp = nn.MaxPool2d(2)
        self.ap = nn.AvgPool2d(2)
        self.mp1 = nn.MaxPool1d(2)
        self.head = nn.Linear(16, 4)

    def __call__(self, img: mx.array, seq: mx.array) -> mx.array:
        y = self.c2(img)  # (B, H/2, W/2, 8)
        y = nn.relu(self.bn(y))
        y = self.gn(y)
        a = self.mp(y).mean(axis=(1, 2))
        b = self.ap(y).max(axis=(1, 2))
        s = self.ln(self.mp1(self.c1(seq))).mean(axis=1)
        return self.head(mx.concatenate([a + s, b], axis=-1))
