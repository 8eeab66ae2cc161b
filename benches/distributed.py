"""Time to first token of a tensor-parallel model on 2 ranks: mlxfn files
against mlx-lm's sharded loading of the same weights from safetensors.

    python benches/distributed.py [--hidden 1024] [--layers 8] [--vocab 32000] [--prompt 8] [--rounds 3]

Writes a random mlx-lm Llama (``config.json`` + ``model.safetensors``,
float32) and exports it once per rank (``model.shard`` over 2 ranks,
``examples/distributed/llm_per_rank.py``).  Then, in fresh 2-rank launches
(``mlx.launch --backend ring -n 2``, this machine), rounds alternating:

- ``mlx-lm``: how users start today: each rank loads its shard as
  ``mlx_lm.utils.sharded_load`` does (``load_model(lazy=True)``,
  ``model.shard``, ``mx.eval``) and runs the prompt to its first token;
- ``mlxfn``: each rank imports its own file and runs the same prompt
  (the prefill trace of its step function) to its first token; its
  constants are the file's mapped pages (``load="auto"``: map here);
- ``mlxfn-copy``: the same with ``load="copy"`` (read into memory).

Each rank times, after ``mx.distributed.init()``: importing what it needs
(``mlx_lm`` and the model's module; ``mlxfn``), loading (mlxfn: opening the
file; the constants are mapped or read at the first call), and the first
token.  Each figure is the slower rank's.  The first round of each side
is untimed (page cache, first-touch costs); figures are medians of the
rest, ratios against ``mlx-lm``.  Every side must give the same token.  The
prefill's compute is the same on every side: on a busy CPU it dominates.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ranks import RANKS, launch

HERE = Path(__file__).resolve()
EXAMPLE = HERE.parent.parent / "examples" / "distributed" / "llm_per_rank.py"
SIDES = ("mlx-lm", "mlxfn", "mlxfn-copy")
FIGURES = ("import_s", "load_s", "after_import_s", "first_token_s")


def rank_side(side: str, model_dir: Path, files: Path, prompt: int, out: Path) -> None:
    """One rank of one side (run under ``mlx.launch``): its times and token."""
    import mlx.core as mx

    group = mx.distributed.init()
    tokens = mx.array([[(7 * i + 3) % 97 + 1 for i in range(prompt)]], dtype=mx.int32)
    start = time.perf_counter()
    if side == "mlx-lm":
        import mlx_lm.models.llama  # noqa: F401  (what load_model imports for this model)
        from mlx_lm.utils import load_model

        imported = time.perf_counter()
        model, _ = load_model(model_dir, lazy=True, strict=False)
        model.shard(group)
        mx.eval(model.parameters())
        loaded = time.perf_counter()
        logits = model(tokens)[:, -1, :]
    else:
        import mlxfn

        imported = time.perf_counter()
        load = "copy" if side == "mlxfn-copy" else "auto"
        step = mlxfn.import_function(files / f"model-rank{group.rank()}-of-{group.size()}.mlxfn", load=load)
        loaded = time.perf_counter()
        logits = step(tokens)[0]
    token = int(mx.argmax(logits, axis=-1).item())
    first = time.perf_counter()
    result = {
        "import_s": imported - start,
        "load_s": loaded - imported,
        "after_import_s": first - imported,
        "first_token_s": first - start,
        "token": token,
    }
    (out / f"{side}-rank{group.rank()}.json").write_text(json.dumps(result))


def prepare(scratch: Path, hidden: int, layers: int, vocab: int) -> tuple[Path, Path, float]:
    """The model directory and the rank files (and the export's seconds)."""
    model_dir, files = scratch / "model", scratch / "files"
    heads = max(hidden // 64, 2)
    sizes = {"hidden_size": hidden, "intermediate_size": hidden * 11 // 4, "vocab_size": vocab}
    sizes |= {"num_attention_heads": heads, "num_key_value_heads": heads // 2 if heads % 4 == 0 else heads}
    subprocess.run(
        [sys.executable, "-c", _MAKE_MODEL, str(EXAMPLE), str(model_dir), str(layers), json.dumps(sizes)], check=True
    )
    start = time.perf_counter()
    launch(EXAMPLE, "export", "--model", str(model_dir), "--out", str(files), timeout=600)
    return model_dir, files, time.perf_counter() - start


_MAKE_MODEL = """
import importlib.util, json, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("llm_per_rank", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.make_model(Path(sys.argv[2]), "llama", int(sys.argv[3]), **json.loads(sys.argv[4]))
"""


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.iterdir()) / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--prompt", type=int, default=8, help="prompt length in tokens")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per side (after one untimed)")
    parser.add_argument("--rank-side", choices=SIDES, help=argparse.SUPPRESS)  # a rank, under mlx.launch
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--files", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rank_side:
        rank_side(args.rank_side, args.model_dir, args.files, args.prompt, args.out)
        return 0

    from harness import median, table

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        model_dir, files, export_s = prepare(scratch, args.hidden, args.layers, args.vocab)
        print(
            f"Llama {args.layers} layers, hidden {args.hidden}, vocab {args.vocab}, float32: safetensors "
            f"{_size_mb(model_dir):.0f} MB; mlxfn files {_size_mb(files):.0f} MB for {RANKS} ranks "
            f"(export {export_s:.1f} s, once); prompt {args.prompt} tokens",
            flush=True,
        )
        runs: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
        tokens: set[int] = set()
        for round_ in range(args.rounds + 1):
            for side in SIDES[round_ % len(SIDES) :] + SIDES[: round_ % len(SIDES)]:  # each side first in turn
                out = scratch / f"round{round_}"
                out.mkdir(exist_ok=True)
                common = ["--model-dir", str(model_dir), "--files", str(files), "--out", str(out)]
                launch(HERE, "--rank-side", side, "--prompt", str(args.prompt), *common, timeout=600)
                ranks = [json.loads((out / f"{side}-rank{r}.json").read_text()) for r in range(RANKS)]
                tokens.update(r["token"] for r in ranks)
                if round_ > 0:  # the first round is untimed
                    runs[side].append({k: max(r[k] for r in ranks) for k in FIGURES})
        if len(tokens) != 1:
            print(f"the sides disagree: first tokens {sorted(tokens)}", file=sys.stderr)
            return 1
        rows: list[Any] = [
            (label, {side: median([r[key] for r in runs[side]]) for side in SIDES}, "s")
            for label, key in (
                ("import (after mx.distributed.init)", "import_s"),
                ("load this rank's weights", "load_s"),
                ("load + first token (no import)", "after_import_s"),
                ("time to first token (all of it)", "first_token_s"),
            )
        ]
        print(table(rows, SIDES, baseline="mlx-lm"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
