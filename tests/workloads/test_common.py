"""Weights moved from torch to MLX: torch tensors and NumPy arrays load alike, transforms included."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.harness.frameworks import torch
from benchmarks.workloads.common import conv_torch_to_mlx, load_mlx, mlx_weights

pytest.importorskip("mlx.core", reason="MLX is not installed")
pytestmark = pytest.mark.skipif(torch is None, reason="torch is not installed")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_torch_tensors_load_as_their_numpy_arrays_do(dtype):
    import mlx.nn as nn

    generator = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(4, 3, 5, generator=generator), torch.randn(4, generator=generator)
    from_torch, from_numpy = nn.Conv1d(3, 4, kernel_size=5), nn.Conv1d(3, 4, kernel_size=5)
    transforms = {"weight": conv_torch_to_mlx}
    load_mlx(from_torch, {"weight": weight, "bias": bias}, dtype, transforms=transforms)
    load_mlx(from_numpy, {"weight": weight.numpy(), "bias": bias.numpy()}, dtype, transforms=transforms)
    assert from_torch.weight.shape == (4, 5, 3) and str(from_torch.weight.dtype) == f"mlx.core.{dtype}"
    got, expected = mlx_weights(from_torch), mlx_weights(from_numpy)
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_torch_rounds_as_mlx_does_over_every_kind_of_float32(dtype):
    import mlx.core as mx

    from benchmarks.workloads.common import mlx_from_torch

    bits = np.random.default_rng(1).integers(0, 2**32, size=1 << 20, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    ties = (np.arange(1 << 16, dtype=np.uint32) << 16 | 0x8000).view(np.float32)  # halfway in bfloat16
    special = np.array([np.inf, -np.inf, 0.0, -0.0, 65504.0, 65520.0, 1e-45, 6e-8, 3e38], np.float32)
    values = np.concatenate([values[~np.isnan(values)], ties[~np.isnan(ties)], special])
    got = np.array(mlx_from_torch(torch.from_numpy(values), dtype).astype(mx.float32))
    expected = np.array(mx.array(values).astype(getattr(mx, dtype)).astype(mx.float32))
    np.testing.assert_array_equal(got, expected)


def test_only_torch_on_the_cpu_in_float32_runs_the_built_model_itself():
    from benchmarks.harness.backends import get_backend
    from benchmarks.workloads.common import runs_as_built

    assert runs_as_built(get_backend("torch-cpu"))
    assert not runs_as_built(get_backend("torch-cpu"), "bfloat16")
    assert not runs_as_built(get_backend("mlx-cpu"))
    assert not runs_as_built(get_backend("torch-cuda"))
