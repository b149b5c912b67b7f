from __future__ import annotations

import numpy as np
import pytest

from benchmarks.harness import parity
from benchmarks.harness.frameworks import torch


def test_bfloat16_rounding_matches_torch():
    data = np.random.default_rng(1).standard_normal(10_000) * 1e3
    ours = parity.quantize(data, "bfloat16")
    theirs = torch.from_numpy(data.astype(np.float32)).to(torch.bfloat16).double().numpy()
    assert np.array_equal(ours, theirs)


def test_bfloat16_rounding_matches_torch_over_the_whole_float32_range():
    bits = np.random.default_rng(4).integers(0, 2**32, size=200_000, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    values = np.concatenate([values[np.isfinite(values)], np.float32([np.inf, -np.inf, 0.0, -0.0])])
    # ties at the rounding point: halfway between two bfloat16 values, to even
    ties = (np.arange(1, 2000, dtype=np.uint32) << 16 | 0x8000).view(np.float32)
    values = np.concatenate([values, ties, -ties])
    ours = parity.quantize(values.astype(np.float64), "bfloat16")
    theirs = torch.from_numpy(values).to(torch.bfloat16).double().numpy()
    assert np.array_equal(ours, theirs)


def test_float16_rounding_matches_numpy():
    data = np.random.default_rng(2).standard_normal(1000)
    assert np.array_equal(parity.quantize(data, "float16"), data.astype(np.float16).astype(np.float64))


def test_relative_error_rejects_nan_and_shape_mismatch():
    ref = np.ones(4)
    assert parity.relative_error(np.array([1, 1, np.nan, 1]), ref) == float("inf")
    assert parity.relative_error(np.ones(5), ref) == float("inf")
    assert parity.relative_error(np.array([1, 2, 3]), np.array([1, 2, 4]), exact=True) == pytest.approx(1 / 3)


def test_check_names_the_op_and_the_error():
    with pytest.raises(parity.ParityError, match=r"Softmax \[8x16\] float32 on mlx-cpu: relative error 0\.1"):
        parity.check("Softmax [8x16] float32 on mlx-cpu", np.full(4, 1.1), np.ones(4), "float32")
    assert parity.check("ok", np.ones(4), np.ones(4), "float32") == 0.0


def test_a_wrong_function_fails_parity():
    """The check has teeth: a softmax over the wrong axis is caught."""
    from benchmarks.harness.profiles import get_profile
    from benchmarks.harness.run import OpRun
    from benchmarks.ops.normalization import SOFTMAX

    run = OpRun.prepare(SOFTMAX, SOFTMAX.quick[2].label, "float32", "torch-cpu", get_profile("quick"))
    wrong = torch.softmax(run.args[0], dim=0).numpy()
    with pytest.raises(parity.ParityError):
        parity.check(run.describe(), wrong, run.expected(), "float32")


def test_relative_error_in_blocks_equals_the_whole_array_norm(monkeypatch):
    monkeypatch.setattr(parity, "PARITY_BLOCK", 7)  # blocks that split the rows unevenly
    rng = np.random.default_rng(3)
    expected = rng.standard_normal((5, 9))
    actual = (expected + 1e-3 * rng.standard_normal((5, 9))).astype(np.float32)
    whole = np.linalg.norm(actual.astype(np.float64) - expected) / np.linalg.norm(expected)
    assert parity.relative_error(actual, expected) == pytest.approx(whole, rel=1e-12)
    actual[4, 8] = np.inf  # in the last block only
    assert parity.relative_error(actual, expected) == float("inf")
