"""Elementwise activations.  Both sides use the exact (erf) GELU and torch's default slopes."""

from __future__ import annotations

import math

import numpy as np

from benchmarks.harness.frameworks import mlx_nn, mx, torch, torch_F
from benchmarks.harness.opspec import Case, OpSpec, case, elementwise_cost
from benchmarks.harness.suite import op_benchmark

FULL = (case((128, 16, 1024)), case((64, 128, 1024)))
QUICK = (case((32, 16, 1024)), case((16, 64, 1024)))
LEAKY_SLOPE = 0.01
PRELU_ALPHA = 0.25
SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805
_erf = np.frompyfunc(math.erf, 1, 1)


def _with_prelu_weight(rng: np.random.Generator, c: Case) -> tuple[np.ndarray, ...]:
    return (rng.standard_normal(c.shapes[0]), np.full((1,), PRELU_ALPHA))


def _activation(name: str, reference, mlx_fn, torch_fn, **extra) -> OpSpec:
    return OpSpec(
        name=name,
        full=FULL,
        quick=QUICK,
        reference=lambda c, *xs: reference(*xs),
        mlx=lambda c: mlx_fn,
        torch=lambda c: torch_fn,
        cost=elementwise_cost,
        **extra,
    )


RELU = _activation("ReLU", lambda x: np.maximum(x, 0.0), lambda x: mlx_nn.relu(x), lambda x: torch.relu(x))
LEAKY_RELU = _activation(
    "LeakyReLU",
    lambda x: np.where(x > 0, x, LEAKY_SLOPE * x),
    lambda x: mlx_nn.leaky_relu(x, negative_slope=LEAKY_SLOPE),
    lambda x: torch_F.leaky_relu(x, negative_slope=LEAKY_SLOPE),
)
PRELU = _activation(
    "PReLU",
    lambda x, a: np.where(x > 0, x, a * x),
    lambda x, a: mlx_nn.prelu(x, a),
    lambda x, a: torch_F.prelu(x, a),
    make_inputs=_with_prelu_weight,
)
SELU = _activation(
    "SeLU",
    lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(x)),
    lambda x: mlx_nn.selu(x),
    lambda x: torch_F.selu(x),
)
GELU_ERF = _activation(
    "GELU",
    lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64)),
    lambda x: mlx_nn.gelu(x),
    lambda x: torch_F.gelu(x),
    low_precision=True,
)
SIGMOID = _activation(
    "Sigmoid", lambda x: 1.0 / (1.0 + np.exp(-x)), lambda x: mx.sigmoid(x), lambda x: torch.sigmoid(x)
)
SOFTPLUS = _activation(
    "Softplus", lambda x: np.logaddexp(0.0, x), lambda x: mlx_nn.softplus(x), lambda x: torch_F.softplus(x)
)

SPECS = (RELU, LEAKY_RELU, PRELU, SELU, GELU_ERF, SIGMOID, SOFTPLUS)

ReLU = op_benchmark(RELU)
LeakyReLU = op_benchmark(LEAKY_RELU)
PReLU = op_benchmark(PRELU)
SeLU = op_benchmark(SELU)
GELU = op_benchmark(GELU_ERF)
Sigmoid = op_benchmark(SIGMOID)
Softplus = op_benchmark(SOFTPLUS)
