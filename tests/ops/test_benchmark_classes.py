"""Every asv class of the op matrix, found the way asv finds it, runs setup, the timed method and every
track_ metric once per parameter combination on the CPU backends (quick profile)."""

from __future__ import annotations

import inspect
import itertools
import math
import os

import pytest

from benchmarks.harness import parity
from benchmarks.harness.profiles import get_profile
from benchmarks.harness.run import ITEMSIZE
from benchmarks.harness.suite import release_prepared
from benchmarks.ops import MODULES
from tests.conftest import COMPILED_BACKENDS, TEST_BACKENDS
from tests.ops.asv_way import run_the_asv_way


def _classes():
    import importlib

    for module_name in MODULES:
        module = importlib.import_module(f"benchmarks.ops.{module_name}")
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and hasattr(obj, "time_forward") and not name.startswith("_"):
                yield f"{module_name}.{name}", obj


CLASSES = dict(_classes())
QUICK = get_profile("quick")


def _combinations(cls):
    cases, dtypes, backends = cls.params
    compiled = list(COMPILED_BACKENDS) if cls.spec.name in QUICK.compiled_subset else []
    for case, dtype, backend in itertools.product(cases, dtypes, [*TEST_BACKENDS, *compiled]):
        assert backend in backends
        if backend in COMPILED_BACKENDS and (case != cases[0] or dtype != "float32"):
            continue
        yield case, dtype, backend


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_benchmark_class_runs_every_method(name, tmp_path):
    cls = CLASSES[name]
    assert cls.__name__ == name.split(".")[1]
    assert cls.param_names == ["case", "dtype", "backend"]
    spec = cls.spec
    scratch = cls.setup_cache()  # asv runs it in the folder it made for the run
    assert scratch == os.getcwd()
    scratch = str(tmp_path)
    ran = 0
    for params in _combinations(cls):
        case, dtype, backend = params
        timing = run_the_asv_way(cls(), "time_forward", params, scratch)
        if timing is None:  # skipped, with the reason, in setup
            assert dtype != "float32", f"{name} {case} float32 must run on {backend}"
            assert run_the_asv_way(cls(), "track_throughput", params, scratch) is None
            continue
        assert len(timing["samples"]) == cls.repeat and min(timing["samples"]) > 0
        throughput = run_the_asv_way(cls(), "track_throughput", params, scratch)
        assert math.isfinite(throughput) and throughput > 0, (name, case, backend, throughput)
        peak = run_the_asv_way(cls(), "track_peak_memory", params, scratch)
        # The call must at least hold its output: a probe that misses reused or cached buffers reads 0.
        bench = cls()
        bench.setup(scratch, *params)
        output_bytes = bench.run.result().size * (4 if spec.exact else ITEMSIZE[dtype])
        if output_bytes >= 2**20:
            assert peak >= 0.9 * output_bytes, (name, case, backend, peak, output_bytes)
        error = run_the_asv_way(cls(), "track_parity_error", params, scratch)
        assert error <= parity.tolerance(dtype, spec.tolerance_factor, spec.exact), (
            name,
            case,
            backend,
            error,
        )
        ran += 1
    release_prepared()
    assert ran >= len(cls.params[0]) * len(TEST_BACKENDS)


def test_every_spec_has_a_class():
    from benchmarks.ops import all_specs

    assert sorted(spec.name for spec in all_specs()) == sorted(cls.spec.name for cls in CLASSES.values())


def test_track_units_follow_the_cost_model():
    for cls in CLASSES.values():
        expected = "GFLOP/s" if cls.spec.bound == "compute" else "GB/s"
        assert cls.track_throughput.unit == expected
        assert cls.track_peak_memory.unit == "bytes"


def test_a_gather_counts_each_table_row_read_once():
    """A row picked many times is read from memory once (then from the cache): the fewest bytes of a
    large gather are its output, its index and the table, not one table read per pick."""
    from benchmarks.ops.indexing import GATHER, INDEX_ITEMSIZE

    big = next(c for c in GATHER.cases("full") if c.shapes == ((64, 256), (1_000_000,)))
    # 1 GB written, the 64 KiB table read once, the 4 MB index
    assert GATHER.cost(big, 4).bytes == 1_000_000 * 256 * 4 + 64 * 256 * 4 + 1_000_000 * INDEX_ITEMSIZE
    small = next(c for c in GATHER.cases("full") if c.shapes == ((1024, 32), (10,)))
    # ten picks read at most ten rows
    assert GATHER.cost(small, 4).bytes == 10 * 32 * 4 * 2 + 10 * INDEX_ITEMSIZE
