"""Backends: the one place that knows how to put data on a device, run, synchronise and read memory.

A backend is an asv parameter value (``mlx-cpu``, ``torch-cuda``, ...).  Every timed call ends with
``backend.sync(out)``: ``mx.eval`` for MLX (plus ``mx.synchronize`` on a GPU), and
``torch.cuda/mps.synchronize`` for torch on a device, so no benchmark can time a lazy graph or an
asynchronous launch.  ``unavailable_reason`` says why a backend cannot run here; setup turns it into an
asv skip (``NotImplementedError``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.harness import frameworks, settings
from benchmarks.harness.facts import host_available_bytes
from benchmarks.harness.frameworks import mx, torch
from benchmarks.harness.settings import BACKEND_NAMES

FLOAT_DTYPES = ("float32", "float16", "bfloat16")
COMPILE_WARMUP_CALLS = 3


class BackendError(ValueError):
    """A backend name or setting that does not exist."""


def _threads() -> int:
    return int(settings.read("MTB_THREADS"))


# How the frameworks word an allocation failure: torch's CUDA/MPS allocators ("CUDA out of memory"),
# its CPU allocator ("DefaultCPUAllocator: can't allocate memory"), MLX's ("[malloc] Unable to allocate
# ... out of memory", Metal's "... greater than the maximum allowed buffer size") and the C++
# allocators behind both ("failed to allocate").
_OUT_OF_MEMORY_WORDS = (
    "out of memory",
    "failed to allocate",
    "can't allocate memory",
    "cannot allocate memory",
    "maximum allowed buffer size",
)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a framework's allocation failure (a run too large for the device)."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or any(words in text for words in _OUT_OF_MEMORY_WORDS)


class HostPeakMemory:
    """Peak resident memory of this process during a region, above its level at the start (torch on the
    CPU, which keeps no allocator statistics there).

    Linux resets the high-water mark through /proc/self/clear_refs; elsewhere ru_maxrss is used, which
    only rises, so a region that stays under an earlier peak reads as 0.  glibc would serve the region's
    allocations from free chunks that are still resident (left by the warm-up), hiding them from RSS: so
    the free memory is returned to the OS first (malloc_trim) and large blocks are mapped afresh (a pinned
    mmap threshold), only in the process that measures memory, never in a timing one.
    """

    def __init__(self) -> None:
        self._start = 0

    @staticmethod
    def _release_free_memory() -> None:
        libc_name = ctypes.util.find_library("c")
        if sys.platform.startswith("linux") and libc_name:
            libc = ctypes.CDLL(libc_name)
            m_mmap_threshold = -3
            libc.mallopt(m_mmap_threshold, 64 * 1024)
            libc.malloc_trim(0)

    @staticmethod
    def _status_bytes(field: str) -> int | None:
        try:
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith(field + ":"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    @staticmethod
    def _maxrss_bytes() -> int:
        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale

    def start(self) -> None:
        self._release_free_memory()
        try:
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")
            self._start = self._status_bytes("VmRSS") or 0
        except OSError:
            self._start = self._maxrss_bytes()

    def peak_bytes(self) -> int:
        high_water = self._status_bytes("VmHWM")
        if high_water is None:
            high_water = self._maxrss_bytes()
        return max(0, high_water - self._start)


@dataclass(frozen=True)
class Backend:
    name: str
    framework: str  # "mlx" or "torch"
    device: str  # "cpu", "gpu" (MLX), "cuda", "mps"
    compiled: bool = False

    # ----- availability and activation -------------------------------------------------------
    def unavailable_reason(self) -> str | None:
        raise NotImplementedError

    def activate(self, float32_matmul: str | None = None) -> None:
        """Make this backend the current one for the process (device, threads, and float32 matrix
        products in ``float32_matmul``: ieee or tf32, by default MTB_FLOAT32_MATMUL's)."""
        raise NotImplementedError

    def on_cuda(self) -> bool:
        """Whether this backend runs on an NVIDIA GPU (TF32 is a CUDA math mode)."""
        raise NotImplementedError

    # ----- data ------------------------------------------------------------------------------
    def asarray(self, array: np.ndarray, dtype: str) -> Any:
        raise NotImplementedError

    def to_numpy(self, value: Any) -> np.ndarray:
        raise NotImplementedError

    # ----- running -----------------------------------------------------------------------------
    def sync(self, out: Any) -> None:
        raise NotImplementedError

    def prepare(self, fn: Callable[..., Any], args: Sequence[Any]) -> Callable[..., Any]:
        """Return ``fn`` ready to time: compiled where the backend compiles, and warmed up."""
        ready = self._compile(fn) if self.compiled else fn
        for _ in range(COMPILE_WARMUP_CALLS if self.compiled else 1):
            self.sync(ready(*args))
        return ready

    def forget_compiled(self) -> None:
        """Drop what compiling the last prepared call left behind, so the next one in this process is
        compiled for itself."""

    def _compile(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        raise NotImplementedError

    # ----- memory ------------------------------------------------------------------------------
    def memory_probe(self) -> Any:
        """An object with ``start()`` and ``peak_bytes()`` for the peak extra memory of a region."""
        return HostPeakMemory()

    def available_bytes(self) -> int:
        return host_available_bytes()

    def settings(self) -> dict[str, Any]:
        """What decides the speed beyond the code: recorded beside the results."""
        return {
            "backend": self.name,
            "framework": self.framework,
            "framework_version": frameworks.framework_version(self.framework),
            "device": self.device,
            "compiled": self.compiled,
            "float32_matmul": frameworks.float32_matmul_precision(),
        }


# ---------------------------------------------------------------------------------------------
# MLX
# ---------------------------------------------------------------------------------------------
def _mlx_fn(name: str) -> Callable[..., Any]:
    """MLX memory functions moved from ``mx.metal`` to ``mx`` in 0.2x; take whichever exists."""
    fn = getattr(mx, name, None) or getattr(mx.metal, name, None)
    if fn is None:
        raise AttributeError(f"this MLX ({mx.__version__}) has no {name}")
    return fn


def _mlx_gpu_available() -> bool:
    if hasattr(mx, "is_available"):
        return bool(mx.is_available(mx.gpu))
    cuda = getattr(mx, "cuda", None)
    return bool(mx.metal.is_available() or (cuda is not None and cuda.is_available()))


class MlxPeakMemory:
    def __init__(self) -> None:
        self._base = 0

    def start(self) -> None:
        _mlx_fn("clear_cache")()
        _mlx_fn("reset_peak_memory")()
        self._base = _mlx_fn("get_active_memory")()

    def peak_bytes(self) -> int:
        return max(0, _mlx_fn("get_peak_memory")() - self._base)


class MlxBackend(Backend):
    def _mx_device(self) -> Any:
        return mx.gpu if self.device == "gpu" else mx.cpu

    def unavailable_reason(self) -> str | None:
        error = frameworks.mlx_import_error()
        if error:
            return f"{self.name}: {error}"
        if self.device == "gpu" and not _mlx_gpu_available():
            return f"{self.name}: this MLX ({mx.__version__}) has no GPU backend on this machine"
        return None

    def on_cuda(self) -> bool:
        cuda = getattr(mx, "cuda", None)
        return self.device == "gpu" and cuda is not None and bool(cuda.is_available())

    def activate(self, float32_matmul: str | None = None) -> None:
        mx.set_default_device(self._mx_device())
        frameworks.set_mlx_float32_matmul(float32_matmul or frameworks.float32_matmul_precision())

    def asarray(self, array: np.ndarray, dtype: str) -> Any:
        if array.dtype.kind in "iu":
            out = mx.array(array.astype(np.int32))
        elif array.dtype == np.bool_:
            out = mx.array(array)
        else:
            out = mx.array(array.astype(np.float32)).astype(getattr(mx, dtype))
        mx.eval(out)
        return out

    def to_numpy(self, value: Any) -> np.ndarray:
        if value.dtype in (mx.float16, mx.bfloat16):
            value = value.astype(mx.float32)
        return np.array(value)

    def sync(self, out: Any) -> None:
        mx.eval(out)
        if self.device == "gpu" and hasattr(mx, "synchronize"):
            mx.synchronize()

    def _compile(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return mx.compile(fn)

    def memory_probe(self) -> Any:
        # MLX's allocator counts every buffer on every device; process RSS would miss the buffers it
        # reuses from its cache.
        return MlxPeakMemory()

    def available_bytes(self) -> int:
        if self.device == "gpu":
            info = mx.device_info() if hasattr(mx, "device_info") else mx.metal.device_info()
            size = info.get("memory_size") or info.get("total_memory")
            if size:
                return int(size)
        return host_available_bytes()

    def settings(self) -> dict[str, Any]:
        info: dict[str, Any] = {}
        try:
            if hasattr(mx, "device_info"):
                info = dict(mx.device_info())
            elif self.device == "gpu":
                info = dict(mx.metal.device_info())
        except Exception as exc:  # device_info differs by release; record why it is missing
            info = {"device_info_error": str(exc)}
        gpu: dict[str, Any] = {}
        if self.device == "gpu" and getattr(mx, "cuda", None) is not None and mx.cuda.is_available():
            from benchmarks.harness import clocks

            gpu = clocks.versions()
        return {
            **super().settings(),
            **gpu,
            "device_info": {k: str(v) for k, v in info.items()},
            "threads": "MLX default (no thread-count API)",
            "mlx_enable_tf32": os.environ.get("MLX_ENABLE_TF32"),
        }


# ---------------------------------------------------------------------------------------------
# torch
# ---------------------------------------------------------------------------------------------
def _torch_accelerator() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class TorchPeakMemory:
    def __init__(self, device: str) -> None:
        self._device = device
        self._base = 0

    def start(self) -> None:
        if self._device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:  # MPS has no peak counter: the growth of the driver's allocation is the best there is
            torch.mps.synchronize()
            torch.mps.empty_cache()
            self._base = torch.mps.driver_allocated_memory()

    def peak_bytes(self) -> int:
        if self._device == "cuda":
            return max(0, torch.cuda.max_memory_allocated() - self._base)
        return max(0, torch.mps.driver_allocated_memory() - self._base)


class TorchBackend(Backend):
    def torch_device(self) -> str:
        return _torch_accelerator() if self.device == "auto" else self.device

    def unavailable_reason(self) -> str | None:
        if torch is None:
            return f"{self.name}: {frameworks.TORCH_IMPORT_ERROR}"
        device = self.torch_device()
        if device == "cuda" and not torch.cuda.is_available():
            return f"{self.name}: no CUDA device (torch {torch.__version__}, CUDA build {torch.version.cuda})"
        if device == "mps" and not torch.backends.mps.is_available():
            return f"{self.name}: no MPS device (Apple silicon with macOS 12.3+ is needed)"
        return None

    def on_cuda(self) -> bool:
        return self.torch_device() == "cuda"

    def activate(self, float32_matmul: str | None = None) -> None:
        torch.set_num_threads(_threads())
        tf32 = (float32_matmul or frameworks.float32_matmul_precision()) == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32  # torch's default here is True: equalise it with MLX
        torch.set_float32_matmul_precision("high" if tf32 else "highest")

    def asarray(self, array: np.ndarray, dtype: str) -> Any:
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if array.dtype.kind in "iu":
            tensor = tensor.to(torch.int64)
        elif array.dtype != np.bool_:
            tensor = tensor.to(torch.float32).to(getattr(torch, dtype))
        out = tensor.to(self.torch_device()).contiguous()
        self.sync(out)
        return out

    def to_numpy(self, value: Any) -> np.ndarray:
        value = value.detach()
        if value.is_floating_point():
            value = value.float()
        return value.cpu().numpy()

    def sync(self, out: Any) -> None:
        device = self.torch_device()
        if device == "cuda":
            torch.cuda.synchronize()
        elif device == "mps":
            torch.mps.synchronize()

    def _compile(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        if self.torch_device() == "cpu":
            from benchmarks.harness.inductor import settle_vec_isa

            settle_vec_isa()
        return torch.compile(fn, dynamic=False)

    def forget_compiled(self) -> None:
        # dynamo keeps compiled code per Python function: ops that share one (most do, across cases
        # and dtypes) would otherwise reach its recompile limit and quietly run eagerly
        if self.compiled:
            torch._dynamo.reset()

    def memory_probe(self) -> Any:
        device = self.torch_device()
        return HostPeakMemory() if device == "cpu" else TorchPeakMemory(device)

    def available_bytes(self) -> int:
        device = self.torch_device()
        if device == "cuda":
            return int(torch.cuda.mem_get_info()[0])
        if device == "mps":
            return int(torch.mps.recommended_max_memory())
        return host_available_bytes()

    def settings(self) -> dict[str, Any]:
        device = self.torch_device()
        facts: dict[str, Any] = {
            **super().settings(),
            "torch_device": device,
            "threads": torch.get_num_threads(),
            "blas": _torch_blas(),
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        }
        if self.compiled and "torch._inductor.cpu_vec_isa" in sys.modules:
            from benchmarks.harness.inductor import settled_vec_isa

            facts["inductor_vec_isa"] = settled_vec_isa()
        if device == "cuda":
            from benchmarks.harness import clocks

            facts["device_name"] = torch.cuda.get_device_name()
            facts["cuda_runtime"] = torch.version.cuda
            facts["cudnn"] = torch.backends.cudnn.version()
            facts["driver"] = _nvidia_driver()
            facts.update(clocks.versions())
        return facts


def _torch_blas() -> str:
    config = torch.__config__.show()
    for token in ("BLAS_INFO=", "LAPACK_INFO="):
        if token in config:
            return config.split(token, 1)[1].split(",", 1)[0].strip()
    return "unknown"


def _nvidia_driver() -> str:
    try:
        import subprocess

        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
    except Exception:
        return "unknown"


_BACKENDS: dict[str, Backend] = {
    "mlx-cpu": MlxBackend("mlx-cpu", "mlx", "cpu"),
    "mlx-gpu": MlxBackend("mlx-gpu", "mlx", "gpu"),
    "mlx-gpu-compiled": MlxBackend("mlx-gpu-compiled", "mlx", "gpu", compiled=True),
    "torch-cpu": TorchBackend("torch-cpu", "torch", "cpu"),
    "torch-cuda": TorchBackend("torch-cuda", "torch", "cuda"),
    "torch-mps": TorchBackend("torch-mps", "torch", "mps"),
    "torch-compile": TorchBackend("torch-compile", "torch", "auto", compiled=True),
}
assert tuple(_BACKENDS) == BACKEND_NAMES


def get_backend(name: str) -> Backend:
    try:
        return _BACKENDS[name]
    except KeyError:
        raise BackendError(f"unknown backend {name!r}; known backends: {', '.join(BACKEND_NAMES)}") from None


def selected_backend_names() -> list[str]:
    """Backends the suite is parameterised over: all, or the comma list in ``MTB_BACKENDS``.  An unknown
    name is a ``SettingError`` when the suite is imported, so asv stops before it runs anything."""
    return list(settings.read("MTB_BACKENDS"))


def require_backend(name: str, float32_matmul: str | None = None) -> Backend:
    """The backend, activated; ``NotImplementedError`` (an asv skip) with the reason if it cannot run."""
    try:
        backend = get_backend(name)
    except BackendError as exc:
        raise NotImplementedError(str(exc)) from None
    reason = backend.unavailable_reason()
    if reason:
        raise NotImplementedError(reason)
    backend.activate(float32_matmul)
    return backend
