"""CustomKernel: a user kernel from ``mx.fast.metal_kernel`` / ``cuda_kernel``.

The recorded state holds the *generated* kernel source (user header, a
signature MLX wrote from the input/output names and dtypes, the user body and,
on Metal, a template instantiation), not the arguments of ``metal_kernel``.
The handler splits that source back into header, names, template arguments
and body, and calls the public factory again, which regenerates the same
source.  A precompiled CUDA kernel goes back through
``mx.fast.precompiled_cuda_kernel``.  Without the kernel's backend, calling the
imported function raises a RuntimeError naming the kernel, as MLX does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx

from ..ir import Node
from .registry import register

# MLX's get_type_string (Metal) for each dtype a template argument may name.
_METAL_TYPES = {
    "bool": mx.bool_,
    "uint8_t": mx.uint8,
    "uint16_t": mx.uint16,
    "uint32_t": mx.uint32,
    "uint64_t": mx.uint64,
    "int8_t": mx.int8,
    "int16_t": mx.int16,
    "int32_t": mx.int32,
    "int64_t": mx.int64,
    "half": mx.float16,
    "float": mx.float32,
    "bfloat16_t": mx.bfloat16,
    "complex64_t": mx.complex64,
}

_CUDA_NAMESPACE = "namespace mlx::core::cu {\n\nnamespace cg = cooperative_groups;\n\n"
_CUDA_TAIL = "\n}\n\n} // namespace mlx::core::cu\n"
_CUDA_DEFAULT_HEADER = '\n#include "mlx/backend/cuda/device/utils.cuh"\n\n#include <cooperative_groups.h>\n\n'


@dataclass
class KernelSource:
    """What ``metal_kernel`` / ``cuda_kernel`` was given, recovered from the source."""

    header: str
    input_names: list[str]
    output_names: list[str]
    body: str
    template: list[tuple[str, Any]] = field(default_factory=list)
    atomic_outputs: bool = False


def _buffer_name(line: str) -> str:
    """The argument name of a ``device T* name [[buffer(i)]]`` line."""
    found = re.search(r"(\w+) \[\[buffer", line)
    if found is None:
        raise ValueError(f"not a buffer argument: {line.strip()!r}")
    return found.group(1)


def parse_metal_source(
    name: str, source: str, ndims: Sequence[int], shape_infos: Sequence[Sequence[bool]]
) -> KernelSource:
    """Split a source written by MLX's ``metal_kernel`` (see its write_signature)."""
    start = source.index(f"[[kernel]] void {name}(\n")
    header = source[:start]
    template: list[tuple[str, Any]] = []
    if header.endswith(">\n") and "template <" in header:
        cut = header.rindex("template <")
        params = header[cut + len("template <") : -2].split(", ")
        header = header[:cut]
        inst = re.search(r"decltype\(" + re.escape(name) + r"<(.*)>\) ", source)
        if inst is None:
            raise ValueError("no template instantiation")
        for param, value in zip(params, inst.group(1).split(", ")):
            kind, pname = param.split(" ")
            if kind == "int":
                template.append((pname, int(value)))
            elif kind == "bool":
                template.append((pname, value in ("1", "true")))
            else:
                template.append((pname, _METAL_TYPES[value]))
    sig_start = start + len(f"[[kernel]] void {name}(\n")
    sig_end = source.index(") {\n", sig_start)
    lines = source[sig_start:sig_end].split("\n")
    body_end = source.rindex("\n}\n\ntemplate [[host_name") if template else len(source) - 3
    body = source[sig_end + len(") {\n") : body_end]
    device_lines = [ln for ln in lines if "[[buffer(" in ln]
    n_in = len(ndims) + sum(sum(map(bool, i)) for d, i in zip(ndims, shape_infos) if d > 0)
    outputs = [_buffer_name(ln) for ln in device_lines[n_in:]]
    inputs = []
    it = iter(device_lines[:n_in])
    for ndim, info in zip(ndims, shape_infos):
        inputs.append(_buffer_name(next(it)))
        for _ in range(sum(map(bool, info)) if ndim > 0 else 0):
            next(it)
    atomic = any("atomic<" in ln for ln in device_lines[n_in:])
    return KernelSource(header, inputs, outputs, body, template, atomic)


def parse_cuda_source(
    name: str, source: str, ndims: Sequence[int], shape_infos: Sequence[Sequence[bool]]
) -> KernelSource:
    """Split a source written by MLX's ``cuda_kernel`` (see its build_kernel).

    Template arguments were written as ``constexpr`` / ``using`` lines at the
    top of the body; they are kept there, which regenerates the same code.
    """
    ns = source.index(_CUDA_NAMESPACE)
    header = source[:ns]
    if header.startswith(_CUDA_DEFAULT_HEADER):
        header = header[len(_CUDA_DEFAULT_HEADER) :]
    sig_start = source.index(f"__global__ void {name}(\n", ns) + len(f"__global__ void {name}(\n")
    sig_end = source.index(") {\n", sig_start)
    lines = source[sig_start:sig_end].split(",\n")
    n_in = len(ndims) + sum(sum(map(bool, i)) for d, i in zip(ndims, shape_infos) if d > 0)
    names = [ln.split()[-1] for ln in lines]
    inputs, it = [], iter(names[:n_in])
    for ndim, info in zip(ndims, shape_infos):
        inputs.append(next(it))
        for _ in range(sum(map(bool, info)) if ndim > 0 else 0):
            next(it)
    body = source[sig_end + len(") {\n") : source.rindex(_CUDA_TAIL)]
    return KernelSource(header, inputs, names[n_in:], body)


def _unavailable(kernel: str) -> RuntimeError:
    return RuntimeError(
        f"[import_function] CustomKernel {kernel!r} needs a Metal or CUDA GPU: "
        "custom kernels only run on the GPU backend they were written for."
    )


@register("CustomKernel")
def custom_kernel(node: Node, xs: list[mx.array]) -> list[mx.array]:
    (
        name,
        source,
        gx,
        gy,
        gz,
        tx,
        ty,
        tz,
        shape_infos,
        ensure_row_contiguous,
        init_value,
        scalars,
        is_precompiled,
        shared_memory,
        _compile_options,
    ) = node.args
    grid, threadgroup = (gx, gy, gz), (tx, ty, tz)
    shapes = [tuple(s) for s, _ in node.outputs]
    dtypes = [d for _, d in node.outputs]
    ndims = [x.ndim for x in xs]
    cuda = mx.cuda.is_available()
    if is_precompiled:
        if not cuda:
            raise _unavailable(name)
        return list(
            mx.fast.precompiled_cuda_kernel(
                name=name,
                compiled_source=source.encode(),
                inputs=xs,
                output_shapes=shapes,
                output_dtypes=dtypes,
                scalars=list(scalars),
                grid=grid,
                threadgroup=threadgroup,
                shared_memory=shared_memory,
                init_value=init_value,
                ensure_row_contiguous=ensure_row_contiguous,
            )
        )
    if mx.metal.is_available() and f"[[kernel]] void {name}(" in source:
        parsed = parse_metal_source(name, source, ndims, shape_infos)
        kernel: Any = mx.fast.metal_kernel(
            name=name.removeprefix("custom_kernel_"),
            input_names=parsed.input_names,
            output_names=parsed.output_names,
            source=parsed.body,
            header=parsed.header,
            ensure_row_contiguous=ensure_row_contiguous,
            atomic_outputs=parsed.atomic_outputs,
        )
    elif cuda and f"__global__ void {name}(" in source:
        parsed = parse_cuda_source(name, source, ndims, shape_infos)
        kernel = mx.fast.cuda_kernel(
            name=name.removeprefix("custom_kernel_"),
            input_names=parsed.input_names,
            output_names=parsed.output_names,
            source=parsed.body,
            header=parsed.header,
            ensure_row_contiguous=ensure_row_contiguous,
            shared_memory=shared_memory,
        )
    else:
        raise _unavailable(name)
    return list(
        kernel(
            inputs=xs,
            template=parsed.template or None,
            grid=grid,
            threadgroup=threadgroup,
            output_shapes=shapes,
            output_dtypes=dtypes,
            init_value=init_value,
        )
    )
