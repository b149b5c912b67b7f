"""Shared test settings: the quick profile, CPU backends, fresh (per-session) random seeds."""

from __future__ import annotations

import os
import random

import pytest

os.environ.setdefault("MTB_PROFILE", "quick")
os.environ.pop("MTB_BACKENDS", None)

# The backends the op tests run on: the CPU pair here and in CI; on a GPU machine, e.g.
# MTB_TEST_BACKENDS=mlx-gpu,torch-cuda checks the accelerator backends the same way.
TEST_BACKENDS = tuple(
    name.strip()
    for name in os.environ.get("MTB_TEST_BACKENDS", "mlx-cpu,torch-cpu").split(",")
    if name.strip()
)
# The workload tests compare one backend of each framework: the first of each in TEST_BACKENDS.
MLX_TEST_BACKEND = next((b for b in TEST_BACKENDS if b.startswith("mlx-")), "mlx-cpu")
TORCH_TEST_BACKEND = next((b for b in TEST_BACKENDS if b.startswith("torch-")), "torch-cpu")
# A torch accelerator backend that is absent on every machine (CUDA and MPS never coexist): the tests
# of skip reasons use it.
ABSENT_TORCH_BACKEND = "torch-mps" if "torch-cuda" in TEST_BACKENDS else "torch-cuda"
ABSENT_REASON = "no (CUDA|MPS) device"
COMPILED_BACKENDS = ("torch-compile", *(["mlx-gpu-compiled"] if "mlx-gpu" in TEST_BACKENDS else []))
# Parity runs on inputs no benchmark has seen: a new seed each session, printed so a failure reproduces
# with MTB_PARITY_SEED=<seed>.
PARITY_SEED = int(os.environ.get("MTB_PARITY_SEED", random.SystemRandom().randrange(2**31)))


def pytest_report_header(config: pytest.Config) -> str:
    return (
        f"mlx-torch-bench: profile quick, backends {', '.join(TEST_BACKENDS)}, "
        f"parity seed {PARITY_SEED} (set MTB_PARITY_SEED to repeat)"
    )
