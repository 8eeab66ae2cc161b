"""One rank of test_distributed.py's collectives test (``mlx.launch -n 2``).

Each rank exports functions with every collective to its own file, imports
it, and reports the imported outputs beside the original's (run on the same
group), the file's collective nodes, and the errors it met.

    mlx.launch --backend ring -n 2 --python PY collectives_rank.py OUT_DIR
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlx.core as mx
from common import record_handlers, report

import mlxfn

group = mx.distributed.init()
rank, size = group.rank(), group.size()
other = 1 - rank


def functions() -> dict[str, tuple[Callable[..., Any], tuple[mx.array, ...], bool]]:
    """name -> (function, example inputs, shapeless)."""
    x = mx.arange(6, dtype=mx.float32).reshape(2, 3) + 10 * rank
    ints = mx.array([[3, -1], [rank, 7]], dtype=mx.int32)

    def pipeline(a: mx.array) -> mx.array:
        if rank == 0:  # send to rank 1, then receive its answer
            sent = mx.distributed.send(a * 2, 1)
            back = mx.distributed.recv_like(a, 1)
            return mx.depends(back, sent) + 1
        got = mx.distributed.recv(a.shape, a.dtype, 0)
        return mx.distributed.send(got.sum(axis=0, keepdims=True) + got, 0)

    return {
        "all_sum": (lambda a: mx.distributed.all_sum(a * 2) + 1, (x,), False),
        "all_sum_shapeless": (lambda a: mx.distributed.all_sum(mx.exp(a / 10)), (x,), True),
        "all_max": (lambda a: mx.distributed.all_max(a), (ints,), False),
        "all_min": (lambda a: mx.distributed.all_min(a, group=group), (ints,), False),
        "all_gather": (lambda a: mx.distributed.all_gather(a.T), (x,), False),
        "all_gather_scalar": (lambda a: mx.distributed.all_gather(a.sum()), (x,), False),
        "all_gather_shapeless": (lambda a: mx.distributed.all_gather(a) * 2, (x,), True),
        "send_recv": (pipeline, (x,), False),
        "two_reductions": (
            lambda a, b: (mx.distributed.all_sum(a), mx.distributed.all_max(b), mx.distributed.all_sum(a + 1)),
            (x, ints),
            False,
        ),
    }


def collectives(path: Path) -> list[list[Any]]:
    """Every collective node of the file: op and arguments."""
    from mlxfn import _mlxfn
    from mlxfn.distributed import COLLECTIVES

    handle = _mlxfn.File.open(str(path))
    return [[n[0], list(n[1])] for t in handle.traces() for n in t["nodes"] if n[0] in COLLECTIVES]


def main(out_dir: str) -> None:
    out = Path(out_dir)
    ran: set[str] = set()
    record_handlers(ran)
    results: dict[str, Any] = {"rank": rank, "size": size, "cases": {}}
    for name, (fun, args, shapeless) in functions().items():
        path = out / f"{name}-rank{rank}.mlxfn"
        mlxfn.export_function(path, fun, *args, shapeless=shapeless)
        imported = mlxfn.import_function(path)
        calls = [args]
        if shapeless:  # another size than the traced one
            calls.append(tuple(mx.concatenate([a, a + 1]) for a in args))
        case: dict[str, Any] = {"nodes": collectives(path), "got": [], "want": []}
        for call in calls:
            got = imported(*call)
            want = fun(*call)
            want = want if isinstance(want, tuple) else (want,)
            case["got"].append([[str(a.dtype), a.tolist()] for a in got])
            case["want"].append([[str(a.dtype), a.tolist()] for a in want])
        results["cases"][name] = case

    # The group given explicitly is the same as mx.distributed.init()'s.
    explicit = mlxfn.import_function(out / f"all_sum-rank{rank}.mlxfn", group=group)
    results["explicit_group"] = explicit(functions()["all_sum"][1][0])[0].tolist()

    # The other rank's file is refused (nothing runs: both ranks refuse).
    try:
        mlxfn.import_function(out / f"all_sum-rank{other}.mlxfn")
        results["other_rank"] = None
    except ValueError as err:
        results["other_rank"] = str(err)

    # sum_scatter: MLX's ring backend has no reduce-scatter; the imported
    # function fails as the original does, at evaluation.
    x = mx.arange(8, dtype=mx.float32).reshape(4, 2) + rank

    def scatter(a: mx.array) -> mx.array:
        return mx.distributed.sum_scatter(a * 3)

    path = out / f"sum_scatter-rank{rank}.mlxfn"
    mlxfn.export_function(path, scatter, x)
    errors = []
    for fn in (mlxfn.import_function(path), scatter):
        try:
            result = fn(x)
            mx.eval(result)
            errors.append(["ok", (result[0] if isinstance(result, tuple) else result).tolist()])
        except RuntimeError as err:
            errors.append(["error", str(err)])
    results["sum_scatter"] = {"nodes": collectives(path), "imported": errors[0], "original": errors[1]}
    results["handlers"] = sorted(ran)
    report(out_dir, rank, results)


if __name__ == "__main__":
    main(sys.argv[1])
