"""The two frameworks, imported once and never used at import time.

asv's forkserver imports the suite once and forks a child per benchmark, so the frameworks are imported
here (the fork then shares them) but nothing may touch a device or create an array at import: a
framework thread started before the fork does not exist in the child, and the child hangs.

The float32 matmul precision is fixed here, before either framework's first operation, because MLX reads
``MLX_ENABLE_TF32`` once.  Both sides default to IEEE float32 (MLX on CUDA would otherwise use TF32 while
torch does not); ``MTB_FLOAT32_MATMUL=tf32`` switches both to TF32 so the comparison stays like for like.
"""

from __future__ import annotations

import os
from types import ModuleType

FLOAT32_MATMUL_CHOICES = ("ieee", "tf32")


def float32_matmul_precision() -> str:
    value = os.environ.get("MTB_FLOAT32_MATMUL", "ieee").strip().lower()
    if value not in FLOAT32_MATMUL_CHOICES:
        raise ValueError(
            f"MTB_FLOAT32_MATMUL={value!r} is not a float32 matmul precision; "
            f"use one of {', '.join(FLOAT32_MATMUL_CHOICES)}"
        )
    return value


os.environ.setdefault("MLX_ENABLE_TF32", "1" if float32_matmul_precision() == "tf32" else "0")


def _optional_import(name: str) -> tuple[ModuleType | None, str | None]:
    try:
        return __import__(name, fromlist=["_"]), None
    except Exception as exc:  # an absent or broken install is a skip reason, not a crash
        return None, f"{name} cannot be imported: {type(exc).__name__}: {exc}"


mx, MLX_IMPORT_ERROR = _optional_import("mlx.core")
torch, TORCH_IMPORT_ERROR = _optional_import("torch")

if mx is not None:
    import mlx.nn as mlx_nn
else:  # pragma: no cover - exercised only in environments without MLX
    mlx_nn = None

if torch is not None:
    import torch.nn.functional as torch_F

    # torch.compile's machinery takes ~3 s to import; importing it here, once, lets every forked
    # torch-compile benchmark start with it loaded.  Importing runs no tensor work and starts no thread.
    try:
        import torch._dynamo
        import torch._inductor.compile_fx
    except Exception:  # a torch without a working compiler: torch-compile then fails in its own setup
        pass
else:  # pragma: no cover
    torch_F = None


def framework_version(name: str) -> str:
    module = {"mlx": mx, "torch": torch}[name]
    return "absent" if module is None else str(module.__version__)
