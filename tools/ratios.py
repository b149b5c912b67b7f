"""MLX/torch ratio series: the two frameworks on the same machine, at the same point, on the same work.

For every op case and workload metric measured on both sides of a backend pair (``PAIRS``), the ratio
MLX time / torch time at each point.  Where both sides have their processes apart (the ops: asv's
rounds), round *i* of MLX is divided by round *i* of torch: asv runs round *i* of every parameter
combination of a benchmark back to back, so the two processes of a pair shared the machine's mood of that
minute and the ratio cancels it (the machine-speed drift between points does not reach a ratio).  Where a
side has one process per point (the workloads), the ratio's samples are MLX's samples over torch's median.

A ratio series is a ``detect.Series`` with unit "ratio", so the same detector finds where MLX fell
behind torch (the ratio rose) or caught up (it fell), and the standing summary reads the newest point.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from tools.detect import Series

# (MLX backend, torch backend): the plain variants of one device
PAIRS = (("mlx-cpu", "torch-cpu"), ("mlx-gpu", "torch-cuda"))
# parameter values that name a dtype: the standing keeps them apart
DTYPES = ("float32", "tf32", "float16", "bfloat16")  # tf32: float32 data, TF32 matrix math (GPU)


def pair_label(mlx: str, torch: str) -> str:
    return f"{mlx}/{torch}"


def _round_ratios(mlx: Series, torch: Series, point: int) -> list[float] | None:
    top, bottom = mlx.process_medians(point), torch.process_medians(point)
    if top and bottom and len(top) == len(bottom):
        return [a / b for a, b in zip(top, bottom, strict=True)]
    return None


def _sample_ratios(mlx: Series, torch: Series, point: int) -> list[float] | None:
    top, bottom = mlx.samples[point], torch.samples[point]
    if top and bottom:
        reference = float(np.median(bottom))
        return [a / reference for a in top]
    return None


def ratio_series(series: dict[str, Series]) -> dict[str, Series]:
    """Every MLX/torch ratio series that the timing series allow, keyed like them."""
    index = {(s.machine, s.env, s.benchmark, s.params): s for s in series.values()}
    out: dict[str, Series] = {}
    for entry in series.values():
        for mlx_name, torch_name in PAIRS:
            if mlx_name not in entry.params:
                continue
            position = entry.params.index(mlx_name)
            params = (*entry.params[:position], torch_name, *entry.params[position + 1 :])
            torch = index.get((entry.machine, entry.env, entry.benchmark, params))
            if torch is None:
                continue
            both = zip(entry.samples, torch.samples, strict=True)
            measured = [i for i, (a, b) in enumerate(both) if a and b]
            # rounds paired at every point, or samples over the median at every point: never a mix
            paired = bool(measured) and all(_round_ratios(entry, torch, i) for i in measured)
            ratio = _round_ratios if paired else _sample_ratios
            pair = pair_label(mlx_name, torch_name)
            labelled = (*entry.params[:position], pair, *entry.params[position + 1 :])
            result = Series(
                entry.machine, entry.env, entry.benchmark, labelled,
                [ratio(entry, torch, i) for i in range(len(entry.samples))],
                rounds=entry.rounds if paired else 1, unit="ratio",
            )  # fmt: skip
            if any(result.samples):
                out[f"{entry.machine}|{entry.env}|{result.key}"] = result
    return out


def family(benchmark: str) -> str:
    """``ops.conv.Conv2d.time_forward`` -> ``ops: conv``; ``workloads.bert.X.y`` -> ``workloads: bert``."""
    parts = benchmark.split(".")
    return f"{parts[0]}: {parts[1]}" if len(parts) > 2 else benchmark


@dataclass
class Standing:
    """Where MLX stands against torch in one family at one point: the geometric mean of its series'
    median ratios, their range, and how many series."""

    machine: str
    pair: str
    family: str
    dtype: str
    point: str
    geometric_mean: float
    lowest: float
    highest: float
    series: int

    def sentence(self) -> str:
        if self.geometric_mean >= 1:
            return f"MLX takes {self.geometric_mean:.2f}x torch's time"
        return f"MLX takes {self.geometric_mean:.2f}x torch's time ({1 / self.geometric_mean:.2f}x faster)"


def standing(ratios: Iterable[Series], labels: list[str]) -> list[Standing]:
    """Per machine, backend pair, family and dtype, at the newest point where the group has ratios."""
    groups: dict[tuple[str, str, str, str], list[Series]] = defaultdict(list)
    for entry in ratios:
        pair = next((p for p in entry.params if "/" in p), "?")
        dtype = next((p for p in entry.params if p in DTYPES), "")
        groups[(entry.machine, pair, family(entry.benchmark), dtype)].append(entry)
    rows = []
    for (machine, pair, name, dtype), members in sorted(groups.items()):
        newest = max(
            (i for s in members for i, v in enumerate(s.samples) if v),
            default=None,
        )
        if newest is None:
            continue
        medians = [float(np.median(s.samples[newest])) for s in members if s.samples[newest]]
        logs = [math.log(m) for m in medians if m > 0]
        rows.append(
            Standing(
                machine, pair, name, dtype, labels[newest], math.exp(sum(logs) / len(logs)), min(medians),
                max(medians), len(medians),
            )
        )  # fmt: skip
    return rows
