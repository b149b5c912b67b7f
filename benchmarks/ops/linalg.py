"""Matrix products: the batched MatMul table, square MatMul in three dtypes, and Linear (x @ W + b).

Linear takes W as (in, out) on the MLX side and as torch's (out, in) ``weight`` layout on the torch side
(transposed once, outside the timed region), so each framework runs its own fused linear kernel.
"""

from __future__ import annotations

import math

import numpy as np

from benchmarks.harness.frameworks import mx, torch, torch_F
from benchmarks.harness.opspec import Arrays, Case, Cost, OpSpec, case, numel
from benchmarks.harness.suite import op_benchmark


def _matmul_cost(c: Case, itemsize: int) -> Cost:
    a, b = c.shapes
    m, k, n = a[-2], a[-1], b[-1]
    batch = math.prod(np.broadcast_shapes(a[:-2], b[:-2]))
    return Cost(bytes=(numel(a) + numel(b) + batch * m * n) * itemsize, flops=2.0 * batch * m * k * n)


def _linear_cost(c: Case, itemsize: int) -> Cost:
    x, w, b = c.shapes
    rows = numel(x[:-1])
    return Cost(
        bytes=(numel(x) + numel(w) + numel(b) + rows * w[1]) * itemsize, flops=2.0 * rows * x[-1] * w[1]
    )


def _linear_case(x: tuple[int, ...], out: int) -> Case:
    c = case(x, (x[-1], out), (out,))
    return Case(c.shapes, label=c.label.rsplit(" @ ", 1)[0] + f" + {out}")


def _linear_torch_inputs(c: Case, arrays: Arrays) -> Arrays:
    x, w, b = arrays
    return x, np.ascontiguousarray(w.T), b


MATMUL = OpSpec(
    name="MatMul",
    full=(
        case((32, 1, 1000), (32, 1000, 128)),
        case((1000, 64, 256), (256, 32)),
        case((1000, 64, 1024), (1000, 1024, 32)),
        case((1000, 1024, 64), (1000, 64, 256)),
        case((64, 1_000_000), (1_000_000, 32)),
        case((1_000_000, 64), (64, 1024)),
    ),
    quick=(
        case((32, 1, 1000), (32, 1000, 128)),
        case((50, 64, 256), (256, 32)),
        case((10, 64, 1024), (10, 1024, 32)),
        case((4, 256, 64), (4, 64, 256)),
        case((64, 10_000), (10_000, 32)),
        case((1000, 64), (64, 256)),
    ),
    reference=lambda c, a, b: a @ b,
    mlx=lambda c: lambda a, b: mx.matmul(a, b),
    torch=lambda c: lambda a, b: torch.matmul(a, b),
    cost=_matmul_cost,
    bound="compute",
    tolerance_factor=8.0,  # K up to 1e6 in float32
)

SQUARE_MATMUL = OpSpec(
    name="SquareMatMul",
    full=tuple(case((n, n), (n, n)) for n in (1024, 2048, 4096, 8192)),
    quick=tuple(case((n, n), (n, n)) for n in (128, 256)),
    reference=lambda c, a, b: a @ b,
    mlx=lambda c: lambda a, b: mx.matmul(a, b),
    torch=lambda c: lambda a, b: torch.matmul(a, b),
    cost=_matmul_cost,
    bound="compute",
    low_precision=True,
    tolerance_factor=2.0,
)

LINEAR = OpSpec(
    name="Linear",
    full=(
        *(_linear_case((100, 1024, k), 1024) for k in (32, 64, 256, 512)),
        _linear_case((100, 1, 51200), 1),
    ),
    quick=(*(_linear_case((8, 256, k), 256) for k in (32, 64, 128)), _linear_case((8, 1, 51200), 1)),
    reference=lambda c, x, w, b: x @ w + b,
    mlx=lambda c: lambda x, w, b: mx.addmm(b, x, w),
    torch=lambda c: lambda x, w, b: torch_F.linear(x, w, b),
    torch_inputs=_linear_torch_inputs,
    cost=_linear_cost,
    bound="compute",
    low_precision=True,
    tolerance_factor=2.0,
)

SPECS = (MATMUL, SQUARE_MATMUL, LINEAR)

MatMul = op_benchmark(MATMUL)
SquareMatMul = op_benchmark(SQUARE_MATMUL)
Linear = op_benchmark(LINEAR)
