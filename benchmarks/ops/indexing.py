"""Gather and the three scatters, with duplicate indices.  Each scatter returns a new table (the input is
never modified) and its result is evaluated, so the work is really done and really timed.

Plain scatter with duplicate indices has no defined winner in either framework, so every update aimed at
one row carries that row's value: any order of writes gives the same, checkable table.
"""

from __future__ import annotations

import numpy as np

from benchmarks.harness.frameworks import mx, torch
from benchmarks.harness.opspec import Case, Cost, OpSpec, case
from benchmarks.harness.suite import op_benchmark

INDEX_ITEMSIZE = 4


def _gather_cases(counts: tuple[int, ...]) -> tuple[Case, ...]:
    return tuple(case((rows, cols), (n,)) for rows, cols in ((64, 256), (1024, 32)) for n in counts)


def _scatter_cases(counts: tuple[int, ...]) -> tuple[Case, ...]:
    return tuple(case((rows, cols), (n,)) for rows, cols in ((64, 16), (1024, 32)) for n in counts)


def _gather_inputs(rng: np.random.Generator, c: Case) -> tuple[np.ndarray, ...]:
    (rows, cols), (n,) = c.shapes
    return rng.standard_normal((rows, cols)), rng.integers(0, rows, n)


def _scatter_inputs(rng: np.random.Generator, c: Case, uniform: bool = False) -> tuple[np.ndarray, ...]:
    (rows, cols), (n,) = c.shapes
    table = rng.standard_normal((rows, cols))
    index = rng.integers(0, min(rows, max(1, n // 2)), n)  # duplicates at every size
    updates = rng.uniform(0.0, 1.0, (n, cols)) if uniform else rng.standard_normal((n, cols))
    return table, index, updates


def _set_inputs(rng: np.random.Generator, c: Case) -> tuple[np.ndarray, ...]:
    table, index, _ = _scatter_inputs(rng, c)
    row_values = rng.standard_normal(table.shape)
    return table, index, row_values[index]


def _add_inputs(rng: np.random.Generator, c: Case) -> tuple[np.ndarray, ...]:
    # Positive updates: thousands of additions into one row must not cancel to noise.
    return _scatter_inputs(rng, c, uniform=True)


def _gather_cost(c: Case, itemsize: int) -> Cost:
    """The output written, the index read and each distinct table row read once: a row picked again
    comes from the cache, as it does for the tables here (64 and 128 KiB; a table far larger than the
    cache would be read more).  A 64 KiB table gathered into a 1 GB output on an H200 wrote that output
    at 89% of the copy ceiling in its fastest call, so counting every pick as a memory read flagged it
    as faster than the memory."""
    (rows, cols), (n,) = c.shapes
    return Cost(bytes=(n + min(rows, n)) * cols * itemsize + n * INDEX_ITEMSIZE, flops=0)


def _scatter_cost(c: Case, itemsize: int) -> Cost:
    (rows, cols), (n,) = c.shapes
    return Cost(bytes=(2 * rows * cols + n * cols) * itemsize + n * INDEX_ITEMSIZE, flops=n * cols)


def _np_scatter_set(table: np.ndarray, index: np.ndarray, updates: np.ndarray) -> np.ndarray:
    out = table.copy()
    out[index] = updates
    return out


def _np_scatter_add(table: np.ndarray, index: np.ndarray, updates: np.ndarray) -> np.ndarray:
    out = table.copy()
    np.add.at(out, index, updates)
    return out


def _np_scatter_max(table: np.ndarray, index: np.ndarray, updates: np.ndarray) -> np.ndarray:
    out = table.copy()
    np.maximum.at(out, index, updates)
    return out


def _mlx_scatter_set(table, index, updates):
    out = mx.array(table)  # a new array: the input keeps its values
    out[index] = updates
    return out


GATHER = OpSpec(
    name="Gather",
    full=_gather_cases((10, 1000, 1_000_000)),
    quick=_gather_cases((10, 1000, 10_000)),
    make_inputs=_gather_inputs,
    reference=lambda c, table, index: table[index],
    mlx=lambda c: lambda table, index: mx.take(table, index, axis=0),
    torch=lambda c: lambda table, index: torch.index_select(table, 0, index),
    cost=_gather_cost,
    note="Rows of a table picked by an index vector (embedding lookup).",
)

SCATTER = OpSpec(
    name="Scatter",
    full=_scatter_cases((10, 1000, 1_000_000)),
    quick=_scatter_cases((10, 1000, 100_000)),
    make_inputs=_set_inputs,
    reference=lambda c, *a: _np_scatter_set(*a),
    mlx=lambda c: _mlx_scatter_set,
    torch=lambda c: lambda table, index, updates: torch.index_put(table, (index,), updates),
    cost=_scatter_cost,
    note="Rows written into a copy of a table; duplicate indices carry equal rows.",
)

SCATTER_ADD = OpSpec(
    name="ScatterAdd",
    full=_scatter_cases((10, 1000, 1_000_000)),
    quick=_scatter_cases((10, 1000, 100_000)),
    make_inputs=_add_inputs,
    reference=lambda c, *a: _np_scatter_add(*a),
    mlx=lambda c: lambda table, index, updates: table.at[index].add(updates),
    torch=lambda c: lambda table, index, updates: table.index_add(0, index, updates),
    cost=_scatter_cost,
    tolerance_factor=3.0,
    note="Rows accumulated into a copy of a table (duplicates add up).",
)

SCATTER_MAX = OpSpec(
    name="ScatterMax",
    full=_scatter_cases((10, 1000, 1_000_000)),
    quick=_scatter_cases((10, 1000, 100_000)),
    make_inputs=_scatter_inputs,
    reference=lambda c, *a: _np_scatter_max(*a),
    mlx=lambda c: lambda table, index, updates: table.at[index].maximum(updates),
    torch=lambda c: lambda table, index, updates: table.index_reduce(0, index, updates, "amax"),
    cost=_scatter_cost,
    note="Elementwise maximum of a copy of a table and the rows aimed at it.",
)

SPECS = (GATHER, SCATTER, SCATTER_ADD, SCATTER_MAX)

Gather = op_benchmark(GATHER)
Scatter = op_benchmark(SCATTER)
ScatterAdd = op_benchmark(SCATTER_ADD)
ScatterMax = op_benchmark(SCATTER_MAX)
