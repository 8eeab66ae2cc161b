"""Functions and sharded models exported per rank, imported and run on two ranks.

The two-rank tests launch a rank script (``tests/distributed/``) with
``mlx.launch --backend ring -n 2``: two processes on this machine talking
over localhost.  Each rank exports to its own file, imports it, runs the
imported function and the original on the same group, and writes what it
saw to a JSON report that the tests here check.  One launch serves every
test of a kind (module-scoped fixtures).

Custom functions and the refusals that need no second process run here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlx.core as mx
import pytest

import mlxfn
from mlxfn import cli
from mlxfn.distributed import COLLECTIVES
from ranks import RANKS
from ranks import launch as launch_on_ranks

from conftest import HANDLERS_RUN, assert_same

HERE = Path(__file__).parent


def launch(script: str, out: Path, *args: str, timeout: float = 240) -> list[dict[str, Any]]:
    """Run ``tests/distributed/<script>`` on two local ranks; their reports.

    The launcher and its ranks run in a process group of their own, killed
    whole if they outlive ``timeout``."""
    try:
        launch_on_ranks(HERE / "distributed" / script, str(out), *args, timeout=timeout)
    except RuntimeError as err:
        pytest.fail(str(err))
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in range(RANKS)]
    for report in reports:
        HANDLERS_RUN.update(report["handlers"])  # handlers the ranks ran count as tested
    return reports


# ----------------------------------------------------------------------------
# Collectives


@pytest.fixture(scope="module")
def collectives(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("collectives")
    return out, launch("collectives_rank.py", out)


def test_every_collective_imported_per_rank_gives_the_original_outputs(
    collectives: tuple[Path, list[dict[str, Any]]],
) -> None:
    _, reports = collectives
    for rank, report in enumerate(reports):
        assert report["rank"] == rank and report["size"] == RANKS
        for name, case in report["cases"].items():
            assert case["got"] == case["want"], f"rank {rank}, {name}"
            assert case["nodes"], f"rank {rank}, {name}: no collective in the file"
            for op, args in case["nodes"]:
                assert op in COLLECTIVES
                assert args[-2:] == [RANKS, rank], f"rank {rank}, {name}: {op} records {args}"


def test_each_collective_is_recorded_with_its_parameters(collectives: tuple[Path, list[dict[str, Any]]]) -> None:
    _, reports = collectives
    for rank, report in enumerate(reports):
        cases = report["cases"]
        other = 1 - rank
        assert cases["all_sum"]["nodes"] == [["AllReduce", ["sum", 2, rank]]]
        assert cases["all_max"]["nodes"] == [["AllReduce", ["max", 2, rank]]]
        assert cases["all_min"]["nodes"] == [["AllReduce", ["min", 2, rank]]]
        assert cases["all_gather"]["nodes"] == [["AllGather", [2, rank]]]
        assert sorted(map(str, cases["send_recv"]["nodes"])) == sorted(
            map(str, [["Send", [other, 2, rank]], ["Recv", [other, 2, rank]]])
        )
        assert report["sum_scatter"]["nodes"] == [["ReduceScatter", ["sum", 2, rank]]]


def test_shapeless_collectives_serve_other_sizes(collectives: tuple[Path, list[dict[str, Any]]]) -> None:
    _, reports = collectives
    for report in reports:
        for name in ("all_sum_shapeless", "all_gather_shapeless"):
            got = report["cases"][name]["got"]
            assert len(got) == 2  # the traced size and another
            assert len(got[1][0][1]) == 2 * len(got[0][0][1])


def test_sum_scatter_fails_as_the_original_where_the_backend_lacks_it(
    collectives: tuple[Path, list[dict[str, Any]]],
) -> None:
    # MLX's ring backend has no reduce-scatter ("[ring] sum_scatter not supported.").
    _, reports = collectives
    for report in reports:
        scatter = report["sum_scatter"]
        assert scatter["imported"] == scatter["original"]


def test_explicit_group_is_used(collectives: tuple[Path, list[dict[str, Any]]]) -> None:
    _, reports = collectives
    for report in reports:
        assert report["explicit_group"] == report["cases"]["all_sum"]["got"][0][0][1]


def test_another_ranks_file_is_refused_naming_both(collectives: tuple[Path, list[dict[str, Any]]]) -> None:
    _, reports = collectives
    for rank, report in enumerate(reports):
        message = report["other_rank"]
        assert message is not None, f"rank {rank} imported the other rank's file"
        assert f"exported on rank {1 - rank} of a group of 2 processes" in message
        assert f"this process is rank {rank} of a group of 2 processes" in message


def test_a_rank_file_is_refused_under_another_group_size(collectives: tuple[Path, list[dict[str, Any]]]) -> None:
    out, _ = collectives
    path = out / "all_sum-rank1.mlxfn"
    with pytest.raises(ValueError, match=r"exported on rank 1 of a group of 2 processes.*rank 0 of a group of 1"):
        mlxfn.import_function(path)  # this process: mx.distributed.init() is a group of one
    with pytest.raises(ValueError, match=r"the group given"):
        mlxfn.import_function(path, group=mx.distributed.init())


def test_inspect_shows_rank_and_group_size(
    collectives: tuple[Path, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = collectives
    path = str(out / "send_recv-rank1.mlxfn")
    info = cli.summarize(path)
    assert info["distributed"] == {"rank": 1, "group_size": 2, "collectives": {"Recv": 1, "Send": 1}}
    assert cli.main(["inspect", path]) == 0
    assert "distributed: rank 1 of a group of 2 processes; collectives: Recv 1, Send 1" in capsys.readouterr().out


# ----------------------------------------------------------------------------
# mlx-lm models sharded over two ranks, one file per rank


@pytest.fixture(scope="module")
def llms(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return launch("llm_rank.py", tmp_path_factory.mktemp("llms"))


@pytest.mark.parametrize("case", ["llama_tp", "qwen2_tp", "qwen3_moe_tp", "qwen2_pp", "qwen2_pp_example"])
def test_sharded_llm_imported_per_rank_decodes_as_the_unsharded_model(llms: list[dict[str, Any]], case: str) -> None:
    """Tensor parallel (``model.shard``: Llama, Qwen2, Qwen3-MoE) and
    pipeline parallel (``model.model.pipeline``: Qwen2, also through
    ``examples/distributed/llm_per_rank.py``): the greedy tokens of each
    rank's imported step function, for prompts of two lengths, are the
    unsharded model's and the sharded model's."""
    for rank, report in enumerate(llms):
        result = report[case]
        assert result["imported"] == result["unsharded"], f"rank {rank}"
        assert result["sharded"] == result["unsharded"], f"rank {rank}"


# ----------------------------------------------------------------------------
# Custom functions: exported through their forward


def _custom() -> Callable[[mx.array], mx.array]:
    @mx.custom_function
    def scaled(x: mx.array) -> mx.array:
        return mx.sin(x) * 3

    @scaled.vjp
    def scaled_vjp(primals: mx.array, cotangent: mx.array, output: mx.array) -> mx.array:
        return cotangent * 100  # deliberately not the forward's derivative

    return scaled


def test_custom_function_is_exported_through_its_forward(tmp_path: Path) -> None:
    scaled = _custom()

    def fun(x: mx.array) -> mx.array:
        return scaled(x + 1) * 2

    x = mx.array([0.5, -1.0, 2.0])
    with pytest.raises(ValueError, match="primitive CustomTransforms"):
        mx.export_function(str(tmp_path / "mlx.mlxfn"), fun, x)  # MLX's own export cannot
    mlxfn.export_function(tmp_path / "f.mlxfn", fun, x)
    imported = mlxfn.import_function(tmp_path / "f.mlxfn")
    assert_same(imported(x), (fun(x),))
    assert_same(imported(x * 3), (fun(x * 3),))


def test_grad_of_an_imported_custom_function_is_its_forwards(tmp_path: Path) -> None:
    """The custom vjp is not kept: ``mx.grad`` of the imported function
    differentiates the forward's ops."""
    scaled = _custom()
    x = mx.array([0.5, -1.0, 2.0])
    mlxfn.export_function(tmp_path / "f.mlxfn", scaled, x)
    imported = mlxfn.import_function(tmp_path / "f.mlxfn")

    def through_import(v: mx.array) -> mx.array:
        return imported(v)[0].sum()

    got = mx.grad(through_import)(x)
    assert mx.allclose(got, 3 * mx.cos(x)).item()  # the forward's derivative
    assert mx.allclose(mx.grad(lambda v: scaled(v).sum())(x), mx.full(x.shape, 100.0)).item()  # the original's


def test_contiguous_is_exported_as_its_input(tmp_path: Path) -> None:
    """``mx.contiguous`` (MLX cannot export it) is a layout, not a value: the
    file holds the strided view, and every output equals the original's,
    shaped and shapeless, as mlx-lm's Qwen3-Next keeps a convolution state."""

    def fun(x: mx.array) -> tuple[mx.array, mx.array]:
        state = mx.contiguous(x.T[:, -3:])
        return state * 2, mx.contiguous(x, allow_col_major=True) + 1

    x = mx.random.normal((6, 5), key=mx.random.key(3))
    with pytest.raises(ValueError, match="primitive Contiguous"):
        mx.export_function(str(tmp_path / "mlx.mlxfn"), fun, x)  # MLX's own export cannot
    mlxfn.export_function(tmp_path / "f.mlxfn", fun, x)
    assert_same(mlxfn.import_function(tmp_path / "f.mlxfn")(x), fun(x))
    mlxfn.export_function(tmp_path / "any.mlxfn", fun, x, shapeless=True)
    other = mx.random.normal((9, 4), key=mx.random.key(4))
    assert_same(mlxfn.import_function(tmp_path / "any.mlxfn")(other), fun(other))


_COMPILED_ACTIVATION = """
import sys
import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.activations import XieLU
import mlxfn
from mlxfn._runner import compile_enabled

folder = sys.argv[1]
act, linear = XieLU(), nn.Linear(4, 4)
mx.eval(act.parameters(), linear.parameters())

def fun(x):
    return act(linear(x)) + 1

x = mx.random.normal((3, 4), key=mx.random.key(5))
try:  # as mlxfn traced before: MLX's export callback, shapeless
    mx.export_function(lambda record: None, fun, x, shapeless=True)
    print("MLX traced it")
except ValueError as err:
    print("MLX:", err)
other = mx.random.normal((7, 4), key=mx.random.key(6))
for shapeless in (False, True):
    mlxfn.export_function(folder + "/f.mlxfn", fun, x, shapeless=shapeless)
    assert compile_enabled()
    assert mx.array_equal(mlxfn.import_function(folder + "/f.mlxfn")(x)[0], fun(x)).item()
assert mx.allclose(mlxfn.import_function(folder + "/f.mlxfn")(other)[0], fun(other)).item()
mx.disable_compile()
mlxfn.export_function(folder + "/g.mlxfn", fun, x)
assert not compile_enabled()
print("mlxfn: same outputs")
"""


def test_a_compiled_activation_is_exported_through_its_ops(tmp_path: Path) -> None:
    """mlx-lm's ``xielu`` (``mx.compile(shapeless=True)``, its parameters
    among the inputs) becomes a ``Compiled`` primitive MLX cannot export
    (MLX's callback, shapeless, in a fresh process: what MLX does depends
    on what the process compiled and exported before);
    traced with compilation off, the file holds its ops.  Compilation is
    back as it was afterwards, on or off."""
    done = subprocess.run(
        [sys.executable, "-c", _COMPILED_ACTIVATION, str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "MLX: [export_function] Unable to get state for primitive Compiled" in done.stdout
    assert "mlxfn: same outputs" in done.stdout


def test_tracing_leaves_mlx_as_it_was(tmp_path: Path) -> None:
    """The stand-ins exist only while mlxfn traces, also after a failed trace."""
    call, contiguous = mx.custom_function.__call__, mx.contiguous
    ops = {name: getattr(mx.distributed, name) for name in ("all_sum", "send", "recv_like")}
    scaled = _custom()

    def broken(x: mx.array) -> mx.array:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        mlxfn.export_function(tmp_path / "broken.mlxfn", broken, mx.array(1.0))
    mlxfn.export_function(tmp_path / "f.mlxfn", scaled, mx.array(1.0))
    assert mx.custom_function.__call__ is call and mx.contiguous is contiguous
    assert all(getattr(mx.distributed, name) is op for name, op in ops.items())
    # And the custom function keeps its own vjp.
    assert mx.grad(lambda v: scaled(v))(mx.array(1.0)).item() == 100.0


def test_collectives_of_a_group_of_one_are_not_recorded(tmp_path: Path) -> None:
    """On a group of one MLX's collectives are the identity: nothing to record,
    and the file imports anywhere."""

    def fun(x: mx.array) -> mx.array:
        return mx.distributed.all_sum(x * 2) + mx.distributed.all_gather(x)

    x = mx.array([1.0, 2.0])
    mlxfn.export_function(tmp_path / "f.mlxfn", fun, x)
    assert cli.summarize(str(tmp_path / "f.mlxfn"))["distributed"] is None
    assert_same(mlxfn.import_function(tmp_path / "f.mlxfn")(x), (fun(x),))


def test_weights_sharded_but_not_evaluated_get_a_hint(tmp_path: Path) -> None:
    """mlx-lm's ``model.shard()`` leaves ``mx.contiguous`` shards unevaluated:
    MLX's tracer cannot describe them, and the error says to evaluate first."""
    weight = mx.contiguous(mx.ones((4, 4)).T)  # lazy, as a fresh shard is

    def fun(x: mx.array) -> mx.array:
        return x @ weight

    with pytest.raises(mlxfn.UnsupportedPrimitiveError, match=r"mx\.eval\(model\.parameters\(\)\) before exporting"):
        mlxfn.export_function(tmp_path / "f.mlxfn", fun, mx.ones((2, 4)))
    mx.eval(weight)
    mlxfn.export_function(tmp_path / "f.mlxfn", fun, mx.ones((2, 4)))
    assert_same(mlxfn.import_function(tmp_path / "f.mlxfn")(mx.ones((2, 4))), (fun(mx.ones((2, 4))),))
