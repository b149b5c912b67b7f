"""Reductions: Argmax, Sum over one axis, SumAll."""

from __future__ import annotations

import numpy as np

from benchmarks.harness.frameworks import mx, torch
from benchmarks.harness.opspec import Case, Cost, OpSpec, case, numel
from benchmarks.harness.suite import op_benchmark


def _positive_inputs(rng: np.random.Generator, c: Case) -> tuple[np.ndarray, ...]:
    # Sums of zero-mean data cancel, which makes any float32 sum look wrong against float64; real
    # reductions (losses, norms, counts) are of same-signed data.
    return (rng.uniform(0.0, 1.0, c.shapes[0]),)


def _reduce_cost(c: Case, itemsize: int) -> Cost:
    n = numel(c.shapes[0])
    axis = c.options.get("axis")
    out = 1 if axis is None else n // c.shapes[0][axis]
    return Cost(bytes=(n + out) * itemsize, flops=n)


ARGMAX = OpSpec(
    name="Argmax",
    full=(*tuple(case((64, 1024, 128), axis=a) for a in (0, 1, 2)), case((64, 128, 1024), axis=2)),
    quick=(*tuple(case((16, 256, 128), axis=a) for a in (0, 1, 2)), case((16, 128, 256), axis=2)),
    reference=lambda c, x: np.argmax(x, axis=c.opt("axis")),
    mlx=lambda c: lambda x: mx.argmax(x, axis=c.opt("axis")),
    torch=lambda c: lambda x: torch.argmax(x, dim=c.opt("axis")),
    cost=_reduce_cost,
    exact=True,
)

SUM = OpSpec(
    name="Sum",
    full=tuple(case((64, 128, 128, 128), axis=a) for a in range(4)),
    quick=tuple(case((8, 32, 64, 64), axis=a) for a in range(4)),
    make_inputs=_positive_inputs,
    reference=lambda c, x: x.sum(axis=c.opt("axis")),
    mlx=lambda c: lambda x: mx.sum(x, axis=c.opt("axis")),
    torch=lambda c: lambda x: torch.sum(x, dim=c.opt("axis")),
    cost=_reduce_cost,
)

SUM_ALL = OpSpec(
    name="SumAll",
    full=(case((64, 128, 128, 128)), case((1_000_000,)), case((1_000_000, 128)), case((128, 1_000_000))),
    quick=(case((8, 32, 64, 64)), case((100_000,)), case((10_000, 128)), case((128, 10_000))),
    make_inputs=_positive_inputs,
    reference=lambda c, x: np.asarray(x.sum()),
    mlx=lambda c: lambda x: mx.sum(x),
    torch=lambda c: lambda x: torch.sum(x),
    cost=_reduce_cost,
)

SPECS = (ARGMAX, SUM, SUM_ALL)

Argmax = op_benchmark(ARGMAX)
Sum = op_benchmark(SUM)
SumAll = op_benchmark(SUM_ALL)
