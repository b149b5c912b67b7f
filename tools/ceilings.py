"""Timing bugs found by arithmetic: an op whose recorded throughput beats its device's ceilings, both
measured in the same run (``Runtime.track_peak_*``, benchmarks/harness/peaks.py)."""

from __future__ import annotations

import importlib
import itertools
from pathlib import Path
from typing import Any

from benchmarks.harness import peaks
from benchmarks.harness.run import ITEMSIZE
from benchmarks.harness.settings import device_class_of_name
from tools import detect

RUNTIME_TRACKS = {
    "runtime.Runtime.track_peak_bandwidth": "bandwidth",
    "runtime.Runtime.track_peak_matmul": "matmul",
    "runtime.Runtime.track_cache_bytes": "cache",
}


def _values(data: dict[str, Any], name: str) -> list[tuple[tuple[str, ...], float]]:
    """(params, value) of every parameter set of ``name`` that has a number."""
    row = data["results"].get(name)
    if not row:
        return []
    columns = data["_columns"]
    result = row[columns.index("result")] or []
    params = row[columns.index("params")] if "params" in columns else []
    combos = list(itertools.product(*params)) if params else [()]
    out = []
    for combo, value in zip(combos, result, strict=False):
        if isinstance(value, (int, float)) and value == value:
            out.append((tuple(p.strip("'\"") for p in combo), float(value)))
    return out


def _op_bytes(benchmark: str, params: tuple[str, ...]) -> float | None:
    """The fewest bytes the op moves, from its declaration (None when the op is not found)."""
    module, cls, _ = benchmark.rsplit(".", 2)
    try:
        spec = getattr(importlib.import_module(f"benchmarks.{module}"), cls).spec
        from benchmarks.harness.profiles import PROFILES

        case, dtype = params[0], params[1]
        for profile in PROFILES:
            for c in spec.cases(profile):
                if c.label == case:
                    return spec.cost(c, ITEMSIZE.get(dtype, 4)).bytes
    except (ImportError, AttributeError, IndexError):
        return None
    return None


def findings(path: Path) -> list[peaks.OverPeak]:
    """Every op throughput in the results file ``path`` above its device class's measured ceiling."""
    data = detect.read_results(path)
    measured: dict[str, dict[str, float]] = {}
    for name, key in RUNTIME_TRACKS.items():
        for params, value in _values(data, name):
            measured.setdefault(params[0], {})[key] = value
    ceilings = peaks.ceilings_from(measured)
    found = []
    for name in sorted(data["results"]):
        if not (name.startswith("ops.") and name.endswith(".track_throughput")):
            continue
        for params, value in _values(data, name):
            kind = device_class_of_name(params[-1], set(measured))
            if kind not in ceilings:
                continue
            unit = "GFLOP/s" if _is_compute(name) else "GB/s"
            op_bytes = _op_bytes(name, params) or 0.0
            flag = peaks.over_peak(name, params, value, unit, op_bytes, ceilings[kind])
            if flag:
                found.append(flag)
    return found


def _is_compute(benchmark: str) -> bool:
    module, cls, _ = benchmark.rsplit(".", 2)
    try:
        spec = getattr(importlib.import_module(f"benchmarks.{module}"), cls).spec
    except (ImportError, AttributeError):
        return False
    return spec.bound == "compute"
