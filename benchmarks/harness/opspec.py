"""Ops declared once, as data: shapes per profile, inputs, a float64 NumPy reference, the MLX and torch
calls and a cost model.  The asv classes (``suite.op_benchmark``) and the parity tests are both made from
these declarations, so an op cannot be timed without also being checked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Shape = tuple[int, ...]
Arrays = tuple[np.ndarray, ...]


@dataclass(frozen=True)
class Case:
    """One shape configuration of an op; ``label`` is the asv parameter value."""

    shapes: tuple[Shape, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            dims = " @ ".join("x".join(_fmt_dim(d) for d in shape) for shape in self.shapes)
            opts = " ".join(f"{key}={value}" for key, value in self.options.items())
            object.__setattr__(self, "label", f"{dims} {opts}".strip())

    def opt(self, name: str) -> Any:
        return self.options[name]


def _fmt_dim(dim: int) -> str:
    if dim >= 100_000 and dim % 100_000 == 0 and math.log10(dim).is_integer():
        return f"1e{int(math.log10(dim))}"
    return str(dim)


def case(*shapes: Shape, **options: Any) -> Case:
    return Case(tuple(tuple(s) for s in shapes), dict(options))


@dataclass(frozen=True)
class Cost:
    """Fewest bytes an op must move (each input read once, each output written once) and its flops."""

    bytes: float
    flops: float


def numel(shape: Shape) -> int:
    return math.prod(shape)


def normal_inputs(rng: np.random.Generator, c: Case) -> Arrays:
    return tuple(rng.standard_normal(shape) for shape in c.shapes)


def identity_inputs(c: Case, arrays: Arrays) -> Arrays:
    return arrays


def identity_output(c: Case, array: np.ndarray) -> np.ndarray:
    return array


@dataclass(frozen=True)
class OpSpec:
    name: str
    quick: tuple[Case, ...]
    full: tuple[Case, ...]
    reference: Callable[..., np.ndarray]  # (case, *float64 inputs) -> float64 result
    mlx: Callable[[Case], Callable[..., Any]]  # case -> fn(*mlx arrays)
    torch: Callable[[Case], Callable[..., Any]]  # case -> fn(*torch tensors)
    cost: Callable[[Case, int], Cost]  # (case, float itemsize) -> Cost
    bound: Literal["memory", "compute"] = "memory"
    make_inputs: Callable[[np.random.Generator, Case], Arrays] = normal_inputs
    low_precision: bool = False  # also timed in float16 / bfloat16
    exact: bool = False  # integer output: compared element for element
    tolerance_factor: float = 1.0  # on top of the per-dtype tolerance, for long float32 accumulations
    # torch takes some inputs in another layout (convs: channels-first); converted outside the timed region
    torch_inputs: Callable[[Case, Arrays], Arrays] = identity_inputs
    torch_output: Callable[[Case, np.ndarray], np.ndarray] = identity_output
    note: str = ""

    def cases(self, profile_name: str) -> tuple[Case, ...]:
        return {"quick": self.quick, "full": self.full}[profile_name]

    def find_case(self, profile_name: str, label: str) -> tuple[int, Case]:
        for index, c in enumerate(self.cases(profile_name)):
            if c.label == label:
                return index, c
        known = ", ".join(c.label for c in self.cases(profile_name))
        raise KeyError(f"{self.name} has no {profile_name} case {label!r}; its cases: {known}")

    @property
    def throughput_unit(self) -> str:
        return "GFLOP/s" if self.bound == "compute" else "GB/s"

    def throughput(self, c: Case, itemsize: int, seconds: float) -> float:
        cost = self.cost(c, itemsize)
        work = cost.flops if self.bound == "compute" else cost.bytes
        return work / seconds / 1e9


def elementwise_cost(c: Case, itemsize: int) -> Cost:
    """Unary elementwise op on the first input: read it, write as much."""
    n = numel(c.shapes[0])
    return Cost(bytes=2 * n * itemsize, flops=n)
