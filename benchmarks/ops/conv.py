"""Convolutions, valid padding, stride 1.  Shapes follow MLX's channels-last layout (input N,L,C or
N,H,W,C; weight O,K,C or O,KH,KW,C); torch gets the same data transposed to channels-first outside the
timed region, and its output is transposed back before the parity check.
"""

from __future__ import annotations

import numpy as np

from benchmarks.harness.frameworks import mx, torch_F
from benchmarks.harness.opspec import Arrays, Case, Cost, OpSpec, case, numel
from benchmarks.harness.suite import op_benchmark


def _conv1d_reference(c: Case, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    windows = np.lib.stride_tricks.sliding_window_view(x, w.shape[1], axis=1)  # N, L', C, K
    return np.einsum("nlck,okc->nlo", windows, w, optimize=True)


def _conv2d_reference(c: Case, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    windows = np.lib.stride_tricks.sliding_window_view(x, w.shape[1:3], axis=(1, 2))  # N, H', W', C, KH, KW
    return np.einsum("nhwcij,oijc->nhwo", windows, w, optimize=True)


def _conv_cost(c: Case, itemsize: int) -> Cost:
    x, w = c.shapes
    spatial = [xs - ks + 1 for xs, ks in zip(x[1:-1], w[1:-1], strict=True)]
    out = x[0] * int(np.prod(spatial)) * w[0]
    return Cost(bytes=(numel(x) + numel(w) + out) * itemsize, flops=2.0 * out * numel(w[1:]))


def _channels_first(c: Case, arrays: Arrays) -> Arrays:
    return tuple(np.ascontiguousarray(np.moveaxis(a, -1, 1)) for a in arrays)


def _channels_last(c: Case, array: np.ndarray) -> np.ndarray:
    return np.moveaxis(array, 1, -1)


CONV1D = OpSpec(
    name="Conv1d",
    full=(
        case((100, 256, 3), (8, 3, 3)),
        case((100, 256, 256), (8, 3, 256)),
        case((16, 1000, 80), (128, 11, 80)),
        case((16, 1000, 3), (128, 11, 3)),
    ),
    quick=(
        case((10, 256, 3), (8, 3, 3)),
        case((10, 256, 64), (8, 3, 64)),
        case((4, 250, 80), (32, 11, 80)),
        case((4, 250, 3), (32, 11, 3)),
    ),
    reference=_conv1d_reference,
    mlx=lambda c: lambda x, w: mx.conv1d(x, w),
    torch=lambda c: lambda x, w: torch_F.conv1d(x, w),
    torch_inputs=_channels_first,
    torch_output=_channels_last,
    cost=_conv_cost,
    bound="compute",
)

CONV2D = OpSpec(
    name="Conv2d",
    full=tuple(
        case(x, (8, 3, 3, x[-1]))
        for x in (
            (100, 256, 256, 3),
            (10, 256, 256, 12),
            (1, 256, 256, 128),
            (100, 28, 28, 3),
            (1000, 28, 28, 3),
        )
    ),
    quick=tuple(
        case(x, (8, 3, 3, x[-1]))
        for x in ((4, 64, 64, 3), (2, 64, 64, 12), (1, 64, 64, 32), (16, 28, 28, 3), (64, 28, 28, 3))
    ),
    reference=_conv2d_reference,
    mlx=lambda c: lambda x, w: mx.conv2d(x, w),
    torch=lambda c: lambda x, w: torch_F.conv2d(x, w),
    torch_inputs=_channels_first,
    torch_output=_channels_last,
    cost=_conv_cost,
    bound="compute",
    low_precision=True,
)

SPECS = (CONV1D, CONV2D)

Conv1d = op_benchmark(CONV1D)
Conv2d = op_benchmark(CONV2D)
