"""A sharded LLM as one mlxfn file per rank, served with ``mlx.launch``.

Each rank of a group loads its part of an mlx-lm model from safetensors (as
mlx-lm's ``sharded_load`` does), exports its step function (the prefill and
the decode step, every prompt and cache length: ``examples/llm_one_file.py``)
to its own file, and later serves from that file alone: it maps only its
own weights, and the file's collectives run on the group of
``mx.distributed.init()``.

    # an mlx-lm model directory (config.json + *.safetensors); here a small random one
    python examples/distributed/llm_per_rank.py make-model models/tiny

    # export: one file per rank, on a group of the size that will serve it
    mlx.launch --backend ring -n 2 examples/distributed/llm_per_rank.py \\
        export --model models/tiny --out models/tiny-tp2            # tensor parallel
    mlx.launch --backend ring -n 2 examples/distributed/llm_per_rank.py \\
        export --model models/tiny --out models/tiny-pp2 --split pipeline

    # serve: each rank imports its own file (--check: and compares with mlx-lm)
    mlx.launch --backend ring -n 2 examples/distributed/llm_per_rank.py \\
        serve --dir models/tiny-tp2 --prompt 1,2,3,4 --check models/tiny

On several machines, give ``mlx.launch`` a hostfile (``hostfile.json`` beside
this script: the hosts to ssh into and the addresses the ring connects) and
the same paths on every host: ``mlx.launch --hostfile hostfile.json ...``.
Each host needs only its own rank's file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_map

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # examples/: llm_one_file
import mlxfn  # noqa: E402

import llm_one_file  # noqa: E402

SPLITS = ("tensor", "pipeline")


def rank_file(directory: Path, group: mx.distributed.Group) -> Path:
    """Where rank ``r`` of a group of ``n`` keeps its file."""
    return directory / f"model-rank{group.rank()}-of-{group.size()}.mlxfn"


def make_model(directory: Path, arch: str = "llama", layers: int = 2, **sizes: int) -> None:
    """Write a seeded random mlx-lm model (``config.json`` and
    ``model.safetensors``): ``llm_one_file.TINY``'s sizes, or ``sizes``."""
    import importlib

    module_name, extra = llm_one_file.ARCHS[arch]
    config = {**llm_one_file.TINY, **extra, "num_hidden_layers": layers, **sizes}
    mx.random.seed(0)
    model = importlib.import_module(module_name).Model(
        importlib.import_module(module_name).ModelArgs(model_type=arch, **config)
    )
    # Matrices scaled so that attention is sharp (a wrong position shows in the tokens).
    model.update(
        tree_map(
            lambda p: mx.random.normal(p.shape) * (1.5 / p.shape[-1] ** 0.5) if p.ndim >= 2 else p, model.parameters()
        )
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps({**config, "model_type": arch}, indent=2))
    mx.save_safetensors(str(directory / "model.safetensors"), dict(tree_flatten(model.parameters())))


def load_sharded(model_dir: Path, group: mx.distributed.Group, split: str = "tensor") -> nn.Module:
    """This rank's part of the model, loaded the way mlx-lm's ``sharded_load``
    does (lazily from safetensors, sharded, then evaluated)."""
    from mlx_lm.utils import load_model

    model, _ = load_model(model_dir, lazy=True, strict=False)
    if split == "tensor":
        model.shard(group)
    else:
        model.model.pipeline(group)
    mx.eval(model.parameters())  # the shards, not the sharding ops, become the file's constants
    return model


def export(model_dir: Path, out: Path, split: str) -> Path:
    group = mx.distributed.init()
    model = load_sharded(model_dir, group, split)
    out.mkdir(parents=True, exist_ok=True)
    path = rank_file(out, group)
    # As llm_one_file.export, with what serving needs to know in the metadata.
    step = llm_one_file.step_function(model)
    example_cache = step(mx.zeros((1, 5), mx.int32))[1:]
    metadata = json.dumps({"split": split, "rank": group.rank(), "size": group.size()})
    with mlxfn.exporter(path, step, shapeless=True, metadata=metadata) as exporter:
        exporter(mx.zeros((1, 8), mx.int32))
        exporter(mx.zeros((1, 1), mx.int32), *example_cache)
    return path


def first_token(step: Any, prompt: list[int]) -> int:
    """The prefill and its greedy token: the time to first token."""
    logits = step(mx.array([prompt], dtype=mx.int32))[0]
    return int(mx.argmax(logits, axis=-1).item())


def serve(directory: Path, prompt: list[int], tokens: int, check: Path | None) -> list[int]:
    group = mx.distributed.init()
    start = time.perf_counter()
    step = mlxfn.import_function(rank_file(directory, group))
    generated = llm_one_file.generate(step, prompt, tokens)
    seconds = time.perf_counter() - start
    if check is not None:
        split = json.loads(step.metadata or "{}").get("split", "tensor")
        model = load_sharded(check, group, split)
        expected = llm_one_file.generate(llm_one_file.step_function(model), prompt, tokens)
        if generated != expected:
            raise SystemExit(f"rank {group.rank()}: {generated} from the file, {expected} from mlx-lm")
    print(f"rank {group.rank()} of {group.size()}: {generated} ({seconds:.2f} s with the import)", flush=True)
    return generated


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("make-model", help="write a small random mlx-lm model directory")
    p.add_argument("dir", type=Path)
    p.add_argument("--arch", choices=sorted(llm_one_file.ARCHS), default="llama")
    p.add_argument("--layers", type=int, default=2)
    p = sub.add_parser("export", help="each rank: load its shard from safetensors, export it (under mlx.launch)")
    p.add_argument("--model", type=Path, required=True, help="an mlx-lm model directory")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--split", choices=SPLITS, default="tensor")
    p = sub.add_parser("serve", help="each rank: import its file and decode greedily (under mlx.launch)")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--prompt", default="1,2,3,4", help="token ids, comma-separated")
    p.add_argument("--tokens", type=int, default=8)
    p.add_argument("--check", type=Path, help="the model directory: compare with mlx-lm's sharded model")
    args = parser.parse_args()
    if args.command == "make-model":
        make_model(args.dir, args.arch, args.layers)
        print(f"{args.dir}: a random {args.arch} with {args.layers} layers")
    elif args.command == "export":
        path = export(args.model, args.out, args.split)
        print(f"wrote {path}", flush=True)
    else:
        serve(args.dir, [int(t) for t in args.prompt.split(",")], args.tokens, args.check)
    return 0


if __name__ == "__main__":
    sys.exit(main())
