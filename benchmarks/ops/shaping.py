"""Data movement: Concat and Sort.  torch.sort also returns indices (it has no values-only sort); MLX
returns values only.  That difference is the frameworks' API, so it is timed as each user would call it."""

from __future__ import annotations

import numpy as np

from benchmarks.harness.frameworks import mx, torch
from benchmarks.harness.opspec import Case, Cost, OpSpec, case, numel
from benchmarks.harness.suite import op_benchmark


def _concat_cost(c: Case, itemsize: int) -> Cost:
    n = sum(numel(s) for s in c.shapes)
    return Cost(bytes=2 * n * itemsize, flops=0)


def _sort_cost(c: Case, itemsize: int) -> Cost:
    n = numel(c.shapes[0])
    length = c.shapes[0][c.opt("axis")]
    return Cost(bytes=2 * n * itemsize, flops=n * max(1.0, np.log2(length)))


CONCAT = OpSpec(
    name="Concat",
    full=(
        case((1_000_000, 64), (1_000_000, 32), axis=1),
        case((1_000_000, 64), (1_000_000, 128), axis=1),
        case((1_000_000, 64), (1_000_000, 64), axis=0),
        case((64, 1_000_000), (64, 1_000_000), axis=0),
    ),
    quick=(
        case((10_000, 64), (10_000, 32), axis=1),
        case((10_000, 64), (10_000, 128), axis=1),
        case((10_000, 64), (10_000, 64), axis=0),
        case((64, 10_000), (64, 10_000), axis=0),
    ),
    reference=lambda c, a, b: np.concatenate([a, b], axis=c.opt("axis")),
    mlx=lambda c: lambda a, b: mx.concatenate([a, b], axis=c.opt("axis")),
    torch=lambda c: lambda a, b: torch.cat([a, b], dim=c.opt("axis")),
    cost=_concat_cost,
)

SORT = OpSpec(
    name="Sort",
    full=tuple(case((64, 128, 1024), axis=a) for a in (0, 1, 2)),
    quick=tuple(case((16, 64, 256), axis=a) for a in (0, 1, 2)),
    reference=lambda c, x: np.sort(x, axis=c.opt("axis")),
    mlx=lambda c: lambda x: mx.sort(x, axis=c.opt("axis")),
    torch=lambda c: lambda x: torch.sort(x, dim=c.opt("axis")).values,
    cost=_sort_cost,
)

SPECS = (CONCAT, SORT)

Concat = op_benchmark(CONCAT)
Sort = op_benchmark(SORT)
