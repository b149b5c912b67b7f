"""Every op pair computes the op's function: each CPU backend against the float64 NumPy reference, and
MLX against torch, on fresh random inputs."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.harness import parity
from benchmarks.harness.profiles import get_profile
from benchmarks.harness.run import TF32, OpRun, stable_seed
from benchmarks.harness.suite import op_dtypes
from benchmarks.ops import all_specs
from tests.conftest import PARITY_SEED, TEST_BACKENDS

QUICK = get_profile("quick")
# TF32 is a GPU math mode: checked where a GPU backend is under test.  MLX fixes its mode at a
# process's first matrix product, so in one test process MLX's tf32 cases run in the mode of the first
# product (IEEE after the float32 cases); asv gives every case a process of its own.
ON_GPU = "torch-cuda" in TEST_BACKENDS
CASES = [
    pytest.param(spec, c.label, dtype, id=f"{spec.name}[{c.label}]-{dtype}")
    for spec in all_specs()
    for c in spec.quick
    for dtype in op_dtypes(spec)
    if dtype != TF32 or ON_GPU
]


def _run(spec, label, dtype, backend) -> OpRun | None:
    try:
        return OpRun.prepare(spec, label, dtype, backend, QUICK, seed=stable_seed(str(PARITY_SEED), label))
    except NotImplementedError as exc:
        if dtype == "float32":
            raise  # every op must run in float32 on every backend under test
        print(f"skipped (backend limitation): {exc}")
        return None


@pytest.mark.parametrize(("spec", "label", "dtype"), CASES)
def test_op_matches_float64_reference_and_other_framework(spec, label, dtype):
    runs = {backend: _run(spec, label, dtype, backend) for backend in TEST_BACKENDS}
    results = {}
    for backend, run in runs.items():
        if run is None:
            continue
        assert not all(np.all(a == 0) for a in run.inputs if a.dtype.kind == "f"), "inputs must not be zeros"
        results[backend] = run.result()
        parity.check(
            run.describe(), results[backend], run.expected(), dtype, spec.tolerance_factor, spec.exact
        )
        run.release()
    mlx_side = next((b for b in results if b.startswith("mlx")), None)
    torch_side = next((b for b in results if b.startswith("torch")), None)
    if mlx_side and torch_side:
        mlx_out, torch_out = results[mlx_side], results[torch_side]
        # Both sides are within tolerance of the reference, so they are within twice of each other.
        parity.check(
            f"{spec.name} [{label}] {dtype}: {mlx_side} against {torch_side}",
            mlx_out,
            torch_out.astype(np.float64) if not spec.exact else torch_out,
            dtype,
            2 * spec.tolerance_factor,
            spec.exact,
        )
    if not results and dtype != "float32":
        pytest.skip(f"no backend under test runs {spec.name} in {dtype} (reasons printed above)")
    assert results, f"{spec.name} [{label}] {dtype} ran on no backend"
