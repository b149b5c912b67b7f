"""Run one method of an op class the way an asv benchmark process does: asv_runner's own benchmark
object, the class's setup_cache value (the run's scratch folder) first, then the class's and the
method's setups, the method, the teardowns."""

from __future__ import annotations

import sys
from typing import Any

from asv_runner.benchmarks.time import TimeBenchmark
from asv_runner.benchmarks.track import TrackBenchmark


def asv_benchmark(instance: Any, method: str, params: tuple[str, ...], scratch: str) -> Any:
    func = getattr(instance, method)
    kind = TimeBenchmark if method.startswith("time_") else TrackBenchmark
    name = f"{type(instance).__module__}.{type(instance).__name__}.{method}"
    bench = kind(name, func, [func, instance, sys.modules[type(instance).__module__]])
    bench.set_param_idx(_index(type(instance).params, params))
    assert bench._current_params == params
    bench.set_cache(scratch)
    return bench


def _index(declared: list[list[str]], params: tuple[str, ...]) -> int:
    """asv numbers parameter sets with the last parameter varying fastest."""
    index = 0
    for values, value in zip(declared, params, strict=True):
        index = index * len(values) + values.index(value)
    return index


def run_the_asv_way(instance: Any, method: str, params: tuple[str, ...], scratch: str) -> Any:
    """The method's result, or ``None`` where asv would record a skip (a setup raised
    NotImplementedError)."""
    bench = asv_benchmark(instance, method, params, scratch)
    if bench.do_setup():
        return None
    try:
        return bench.run(*bench._build_params())
    finally:
        bench.do_teardown()
