"""LayerNorm (affine, eps 1e-5, over the last axis) and Softmax (last axis).

MLX's softmax runs with ``precise=True`` (float32 accumulation, as torch does for half types).  Its
default accumulates in the input dtype: in bfloat16 that measured a relative error of 17 on an 8x1e5
input here (the row sums stall), so it is not the same function as torch's softmax.
"""

from __future__ import annotations

import numpy as np

from benchmarks.harness.frameworks import mx, torch, torch_F
from benchmarks.harness.opspec import Case, Cost, OpSpec, case, numel
from benchmarks.harness.suite import op_benchmark

EPS = 1e-5


def _layer_norm_inputs(rng: np.random.Generator, c: Case) -> tuple[np.ndarray, ...]:
    (x,) = c.shapes
    return (
        rng.standard_normal(x) * 2.0 + 0.5,
        1.0 + 0.1 * rng.standard_normal(x[-1]),
        0.1 * rng.standard_normal(x[-1]),
    )


def _layer_norm_reference(c: Case, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * w + b


def _softmax_reference(c: Case, x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _rowwise_cost(c: Case, itemsize: int) -> Cost:
    n = numel(c.shapes[0])
    return Cost(bytes=2 * n * itemsize, flops=5 * n)


LAYER_NORM = OpSpec(
    name="LayerNorm",
    full=(case((64, 128, 1024)), case((128, 64, 1024))),
    quick=(case((16, 128, 256)), case((32, 64, 256))),
    make_inputs=_layer_norm_inputs,
    reference=_layer_norm_reference,
    mlx=lambda c: lambda x, w, b: mx.fast.layer_norm(x, w, b, EPS),
    torch=lambda c: lambda x, w, b: torch_F.layer_norm(x, (x.shape[-1],), w, b, EPS),
    cost=_rowwise_cost,
    low_precision=True,
)

SOFTMAX = OpSpec(
    name="Softmax",
    full=(
        case((64, 1_000_000)),
        case((1_000_000, 64)),
        case((64, 16, 32, 1024)),
        case((128, 16, 32, 1024)),
        case((1024, 16, 32, 128)),
        case((1024, 64, 32, 8)),
    ),
    quick=(
        case((8, 100_000)),
        case((10_000, 64)),
        case((4, 16, 32, 256)),
        case((8, 16, 32, 256)),
        case((64, 16, 32, 16)),
        case((64, 64, 32, 8)),
    ),
    reference=_softmax_reference,
    mlx=lambda c: lambda x: mx.softmax(x, axis=-1, precise=True),
    torch=lambda c: lambda x: torch.softmax(x, dim=-1),
    cost=_rowwise_cost,
    low_precision=True,
)

SPECS = (LAYER_NORM, SOFTMAX)

LayerNorm = op_benchmark(LAYER_NORM)
Softmax = op_benchmark(SOFTMAX)
