"""Bad input around one prepared benchmark: each is an asv skip naming the problem and the fix."""

from __future__ import annotations

import pytest

from benchmarks.harness.backends import get_backend
from benchmarks.harness.profiles import get_profile
from benchmarks.harness.run import OpRun
from benchmarks.ops.linalg import SQUARE_MATMUL
from benchmarks.ops.normalization import SOFTMAX

QUICK = get_profile("quick")


def test_a_shape_too_large_for_the_device_is_skipped_with_sizes(monkeypatch):
    backend = type(get_backend("torch-cpu"))
    monkeypatch.setattr(backend, "available_bytes", lambda self: 1024)
    with pytest.raises(NotImplementedError, match=r"SquareMatMul 256x256 .* needs about .* GiB.*MTB_PROFILE"):
        OpRun.prepare(SQUARE_MATMUL, SQUARE_MATMUL.quick[1].label, "float32", "torch-cpu", QUICK)


def _prepare_raises(monkeypatch, exc: Exception) -> None:
    def failing(self, fn, args):
        raise exc

    monkeypatch.setattr(type(get_backend("mlx-cpu")), "prepare", failing)


def test_running_out_of_memory_while_preparing_is_a_skip(monkeypatch):
    _prepare_raises(monkeypatch, RuntimeError("[malloc] Unable to allocate 4294967296 bytes: out of memory"))
    with pytest.raises(NotImplementedError, match="ran out of memory"):
        OpRun.prepare(SOFTMAX, SOFTMAX.quick[0].label, "float32", "mlx-cpu", QUICK)


def test_a_float32_failure_is_an_error_but_a_half_precision_one_a_skip(monkeypatch):
    _prepare_raises(monkeypatch, ValueError("shape mismatch"))
    with pytest.raises(ValueError, match="shape mismatch"):
        OpRun.prepare(SOFTMAX, SOFTMAX.quick[0].label, "float32", "mlx-cpu", QUICK)
    with pytest.raises(NotImplementedError, match="does not run Softmax in bfloat16"):
        OpRun.prepare(SOFTMAX, SOFTMAX.quick[0].label, "bfloat16", "mlx-cpu", QUICK)


def test_unknown_case_and_dtype_are_skips_naming_the_choices():
    with pytest.raises(NotImplementedError, match="Softmax has no quick case '1x1'; its cases: 8x1e5"):
        OpRun.prepare(SOFTMAX, "1x1", "float32", "torch-cpu", QUICK)
    with pytest.raises(NotImplementedError, match="unknown dtype 'float8'"):
        OpRun.prepare(SOFTMAX, SOFTMAX.quick[0].label, "float8", "torch-cpu", QUICK)
