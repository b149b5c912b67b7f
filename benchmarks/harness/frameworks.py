"""The two frameworks, and what may be imported before asv's forkserver forks.

asv's forkserver imports the suite once and forks a child per benchmark.  Nothing may touch a device or
create an array at import: a framework thread or a CUDA context made before the fork does not work in
the child (it hangs or fails with "initialization error").  Measured on an H100 with torch 2.11+cu130
and mlx-cuda-13 0.32.4: ``import torch`` and ``import torch._dynamo`` leave CUDA alone, so torch (1.8 s
to import) is imported here, once; but ``import mlx.core`` of MLX's CUDA build, and
``import torch._inductor.compile_fx``, initialise CUDA.  MLX (0.04 s to import) is therefore imported
lazily, in the child, on first use.

torch.compile's compiler is loaded here all the same: inductor initialises CUDA at import only by asking
``torch.cuda.is_available()``, which calls the CUDA driver unless ``PYTORCH_NVML_BASED_CUDA_CHECK=1``
makes it ask NVML instead.  With that set, inductor is imported once, here, and its source hashes are
computed once; every torch-compile child starts with them.  Measured on an H200 (torch 2.11+cu130, warm
inductor caches): a forked child's first compile took 3.8-4.6 s without this and 1.15-1.45 s with it;
without the NVML check the children fail with "Cannot re-initialize CUDA in forked subprocess".

The float32 matmul precision is fixed here, before either framework's first operation, because MLX reads
``MLX_ENABLE_TF32`` once.  Both sides default to IEEE float32 (MLX on CUDA would otherwise use TF32 while
torch does not); ``MTB_FLOAT32_MATMUL=tf32`` switches both to TF32 so the comparison stays like for like.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from types import ModuleType

from benchmarks.harness import settings


def float32_matmul_precision() -> str:
    return str(settings.read("MTB_FLOAT32_MATMUL"))


# A bad setting stops the import: asv then stops before it runs or records anything.
settings.require_valid()

# Forced, not defaulted: MLX's own default is TF32 on (MLX_ENABLE_TF32 unset reads as 1 since 0.26 at
# least), and an inherited value would make MLX use TF32 where torch does not.
os.environ["MLX_ENABLE_TF32"] = "1" if float32_matmul_precision() == "tf32" else "0"


def set_mlx_float32_matmul(mode: str) -> None:
    """MLX reads MLX_ENABLE_TF32 once, at its first matrix product in a process: a benchmark process
    (one parameter set) sets it before that."""
    os.environ["MLX_ENABLE_TF32"] = "1" if mode == "tf32" else "0"


def _optional_import(name: str) -> tuple[ModuleType | None, str | None]:
    try:
        return __import__(name, fromlist=["_"]), None
    except Exception as exc:  # an absent or broken install is a skip reason, not a crash
        return None, f"{name} cannot be imported: {type(exc).__name__}: {exc}"


class _LazyModule:
    """A module imported on first attribute access (in the benchmark process, never at suite import)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> object:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)


def mlx_import_error() -> str | None:
    """None if MLX imports here, else why not (imports it: call from a benchmark process only)."""
    return _optional_import("mlx.core")[1]


def _mlx_kernel_cache() -> None:
    """MLX keeps compiled CUDA kernels in ``$TMPDIR/mlx/<version>/ptx``, and asv's runs get a temporary
    folder each, removed after the run: kept instead per MLX version (a source build's version names
    its commit), since the files are named by kernel only.  A user's own folder is kept."""
    from importlib import metadata
    from pathlib import Path

    with contextlib.suppress(metadata.PackageNotFoundError):
        version = metadata.version("mlx")
        root = Path.home() / ".cache" / "mlx-torch-bench" / "mlx-ptx"
        os.environ.setdefault("MLX_PTX_CACHE_DIR", str(root / version))


_mlx_kernel_cache()
mx = _LazyModule("mlx.core")
mlx_nn = _LazyModule("mlx.nn")
# Read by torch at each torch.cuda.is_available(); set before torch is imported.  A user's own value
# is kept (and then the compiler is not loaded before the fork).
os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
# A benchmark process compiles one op or one model.  Left to itself, inductor starts a pool of compile
# workers (one per core, up to 32, each a Python that imports torch) at every process's first
# torch.compile, whether or not its kernels are cached, and those processes load the host while the
# benchmark is timed.  Read when inductor's config is imported; a user's own value is kept.
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

torch, TORCH_IMPORT_ERROR = _optional_import("torch")

# What torch.compile imports on its first call, beyond torch._dynamo; the rest follows from these.
TORCH_COMPILER_MODULES = (
    "torch._inductor.compile_fx",
    "torch._inductor.codecache",
    "torch._inductor.lowering",
    "torch._inductor.select_algorithm",
    "torch._functorch._aot_autograd.autograd_cache",
)


def preload_torch_compiler() -> bool:
    """Load inductor and its source hashes in this process, if that leaves CUDA untouched (see the
    module's notes).  True if loaded.  A failure is left for torch-compile's own setup to report."""
    if torch is None or os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") != "1":
        return False
    try:
        # without a working NVML, torch counts devices through the CUDA driver after all
        if torch.version.cuda is not None and torch.cuda._device_count_nvml() < 0:
            return False
        for name in TORCH_COMPILER_MODULES:
            importlib.import_module(name)
        from torch._inductor.codecache import torch_key, triton_key

        torch_key()
        triton_key()
    except Exception:
        return False
    return True


TORCH_COMPILER_PRELOADED = False
if torch is not None:
    import torch.nn.functional as torch_F

    # 2 s to import and fork-safe.  A torch without a working compiler fails torch-compile in that
    # benchmark's own setup.
    with contextlib.suppress(Exception):
        import torch._dynamo
    if "torch-compile" in settings.read("MTB_BACKENDS"):
        TORCH_COMPILER_PRELOADED = preload_torch_compiler()
else:  # pragma: no cover
    torch_F = None


def framework_version(name: str) -> str:
    if name == "mlx":
        return "absent" if mlx_import_error() else str(mx.__version__)
    return "absent" if torch is None else str(torch.__version__)


def fork_is_safe() -> bool:
    """No device state that a forked child could not use: CUDA not initialised by torch, MLX not
    imported (MLX's CUDA build initialises CUDA when imported)."""
    cuda_ready = torch is not None and torch.cuda.is_initialized()
    return hasattr(os, "fork") and not cuda_ready and "mlx.core" not in sys.modules
