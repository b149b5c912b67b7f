"""Binary cross-entropy, on probabilities and on logits (two ops: different kernels, different maths)."""

from __future__ import annotations

import numpy as np

from benchmarks.harness.frameworks import mlx_nn, torch_F
from benchmarks.harness.opspec import Case, Cost, OpSpec, case, numel
from benchmarks.harness.suite import op_benchmark

# A float32 mean over 1e5..1e7 terms: MLX's CPU mean measured 1.1e-4 relative error on 1.28e6 terms here
# (sequential accumulation, ~sqrt(n) * eps), which is float32 arithmetic, not a different function.
LONG_MEAN_TOLERANCE = 10.0

FULL = (case((1_000_000,)), case((100_000, 32)), case((100_000, 64, 2)), case((128, 100_000)))
QUICK = (case((100_000,)), case((10_000, 32)), case((10_000, 64, 2)), case((32, 10_000)))


def _probabilities(rng: np.random.Generator, c: Case) -> tuple[np.ndarray, ...]:
    # Kept inside (0.01, 0.99) so neither side's log clamp (torch clamps at -100) decides the value.
    logits = rng.uniform(-4.5, 4.5, c.shapes[0])
    return 1.0 / (1.0 + np.exp(-logits)), rng.uniform(0.0, 1.0, c.shapes[0])


def _logits(rng: np.random.Generator, c: Case) -> tuple[np.ndarray, ...]:
    return rng.standard_normal(c.shapes[0]) * 3.0, rng.uniform(0.0, 1.0, c.shapes[0])


def _loss_cost(c: Case, itemsize: int) -> Cost:
    n = numel(c.shapes[0])
    return Cost(bytes=(2 * n + 1) * itemsize, flops=6 * n)


def _bce(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.asarray(-np.mean(t * np.log(p) + (1.0 - t) * np.log1p(-p)))


def _bce_logits(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.asarray(np.mean(np.maximum(x, 0.0) - x * t + np.log1p(np.exp(-np.abs(x)))))


BCE_PROBABILITIES = OpSpec(
    name="BCE",
    full=FULL,
    quick=QUICK,
    make_inputs=_probabilities,
    reference=lambda c, p, t: _bce(p, t),
    mlx=lambda c: lambda p, t: mlx_nn.losses.binary_cross_entropy(p, t, with_logits=False, reduction="mean"),
    torch=lambda c: lambda p, t: torch_F.binary_cross_entropy(p, t, reduction="mean"),
    cost=_loss_cost,
    tolerance_factor=LONG_MEAN_TOLERANCE,
    note="Mean binary cross-entropy of probabilities against soft targets.",
)

BCE_WITH_LOGITS = OpSpec(
    name="BCEWithLogits",
    full=FULL,
    quick=QUICK,
    make_inputs=_logits,
    reference=lambda c, x, t: _bce_logits(x, t),
    mlx=lambda c: lambda x, t: mlx_nn.losses.binary_cross_entropy(x, t, with_logits=True, reduction="mean"),
    torch=lambda c: lambda x, t: torch_F.binary_cross_entropy_with_logits(x, t, reduction="mean"),
    cost=_loss_cost,
    tolerance_factor=LONG_MEAN_TOLERANCE,
    note="Mean binary cross-entropy of logits against soft targets (the numerically stable form).",
)

SPECS = (BCE_PROBABILITIES, BCE_WITH_LOGITS)

BCE = op_benchmark(BCE_PROBABILITIES)
BCEWithLogits = op_benchmark(BCE_WITH_LOGITS)
