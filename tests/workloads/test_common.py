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
