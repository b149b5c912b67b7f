"""The op matrix: one module per area, each op declared once as an ``OpSpec`` and turned into an asv
class by ``op_benchmark``.  ``all_specs()`` lists every declaration; the parity tests walk it."""

from __future__ import annotations

import importlib

from benchmarks.harness.opspec import OpSpec

MODULES = (
    "activations",
    "attention",
    "conv",
    "indexing",
    "linalg",
    "losses",
    "normalization",
    "reductions",
    "shaping",
)


def all_specs() -> tuple[OpSpec, ...]:
    specs: list[OpSpec] = []
    for name in MODULES:
        specs.extend(importlib.import_module(f"{__name__}.{name}").SPECS)
    return tuple(specs)
