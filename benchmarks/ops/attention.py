"""Scaled dot-product attention, fused kernels on both sides (mx.fast / F.scaled_dot_product_attention).

The causal case passes one explicit boolean mask (True = attend) to both frameworks, aligned to the
bottom right as in decoding (query i of Lq sees keys up to Lk - Lq + i).  torch's ``is_causal`` aligns
top-left when Lq != Lk, so the flag would compute a different function from MLX's causal mask.
"""

from __future__ import annotations

import math

import numpy as np

from benchmarks.harness.frameworks import mx, torch_F
from benchmarks.harness.opspec import Case, Cost, OpSpec, case
from benchmarks.harness.suite import op_benchmark


def _cases(
    batch: int, heads: tuple[int, ...], lks: tuple[int, ...], dims: tuple[int, ...]
) -> tuple[Case, ...]:
    return tuple(
        case((batch, h, 16, d), (batch, h, lk, d), mask=mask)
        for h in heads
        for lk in lks
        for d in dims
        for mask in ("none", "causal")
    )


def causal_mask(lq: int, lk: int) -> np.ndarray:
    return np.tril(np.ones((lq, lk), dtype=bool), k=lk - lq)


def _inputs(rng: np.random.Generator, c: Case) -> tuple[np.ndarray, ...]:
    q_shape, kv_shape = c.shapes
    qkv = (rng.standard_normal(q_shape), rng.standard_normal(kv_shape), rng.standard_normal(kv_shape))
    if c.opt("mask") == "causal":
        return (*qkv, causal_mask(q_shape[2], kv_shape[2]))
    return qkv


def _scale(c: Case) -> float:
    return 1.0 / math.sqrt(c.shapes[0][-1])


def _reference(
    c: Case, q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    scores = q @ np.swapaxes(k, -1, -2) * _scale(c)
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return (weights / weights.sum(axis=-1, keepdims=True)) @ v


def _mlx(c: Case):
    scale = _scale(c)
    return lambda q, k, v, mask=None: mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)


def _torch(c: Case):
    scale = _scale(c)
    return lambda q, k, v, mask=None: torch_F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, scale=scale
    )


def _cost(c: Case, itemsize: int) -> Cost:
    (b, h, lq, d), (_, _, lk, _) = c.shapes
    return Cost(bytes=(2 * b * h * lq * d + 2 * b * h * lk * d) * itemsize, flops=4.0 * b * h * lq * lk * d)


ATTENTION = OpSpec(
    name="SDPA",
    full=_cases(64, (8, 16), (16, 64), (64, 256, 1024)),
    quick=_cases(4, (8,), (16, 64), (64, 256)),
    make_inputs=_inputs,
    reference=_reference,
    mlx=_mlx,
    torch=_torch,
    cost=_cost,
    bound="compute",
    low_precision=True,
    note="softmax(q k^T / sqrt(d) [+ causal mask]) v for batch x heads x 16 queries.",
)

SPECS = (ATTENTION,)

SDPA = op_benchmark(ATTENTION)
