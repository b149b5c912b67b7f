"""The device's ceilings, measured in the run, and the check that no benchmark claims to beat them.

Two ceilings, each measured through the backend's own framework: memory bandwidth (a large copy, bytes
read plus bytes written per second) and matrix-product rate (a square product in bfloat16 on a GPU,
float32 on a CPU).  An op's throughput (its fewest bytes or its flops over the recorded time) above a
ceiling is impossible, so it says the timing is wrong (a missing synchronisation, a cached result),
not that the op is fast.  Bandwidth is only a ceiling for data that does not fit in the last-level
cache: a memory-bound op counts only when its bytes are several times that cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness.backends import Backend
from benchmarks.harness.frameworks import mx, torch
from benchmarks.harness.settings import device_class_of_name

# a figure this far above a ceiling is flagged (the ceilings are medians of a few calls, not maxima)
TOLERANCE = 0.10
# a memory-bound op's bytes must exceed this many last-level caches before bandwidth bounds it
CACHE_MULTIPLE = 4
COPY_BYTES = {"gpu": 2 * 2**30, "cpu": 256 * 2**20}
MATMUL_SIZE = {"gpu": 8192, "cpu": 512}  # MLX on Linux multiplies with reference BLAS: keep it short


def device_class(backend: Backend) -> str:
    """``cpu`` or ``gpu`` (torch-compile runs on whichever device torch finds)."""
    device = backend.torch_device() if backend.framework == "torch" else backend.device  # type: ignore[attr-defined]
    return "cpu" if device == "cpu" else "gpu"


def _median_seconds(call: Callable[[], Any], calls: int = 7) -> float:
    call()  # warm-up: allocation, kernel selection
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def copy_bandwidth(backend: Backend) -> float:
    """Bytes per second of a large copy (read plus write), through the backend's framework."""
    nbytes = COPY_BYTES[device_class(backend)]
    if backend.framework == "torch":
        source = torch.ones(nbytes // 4, dtype=torch.float32, device=backend.torch_device())
        target = torch.empty_like(source)
        seconds = _median_seconds(lambda: backend.sync(target.copy_(source)))
    else:
        source = mx.ones((nbytes // 4,), dtype=mx.float32)
        # MLX has no copy op that runs a kernel: an elementwise add reads and writes the same bytes
        seconds = _median_seconds(lambda: backend.sync(source + 1))
    return 2 * nbytes / seconds


def matmul_rate(backend: Backend) -> float:
    """Flops per second of a square matrix product on random data (zeros run faster than real data)."""
    kind = device_class(backend)
    n = MATMUL_SIZE[kind]
    if backend.framework == "torch":
        dtype = torch.bfloat16 if kind == "gpu" else torch.float32
        generator = torch.Generator(device=backend.torch_device()).manual_seed(0)
        a = torch.randn(n, n, generator=generator, device=backend.torch_device()).to(dtype)
        b = torch.randn(n, n, generator=generator, device=backend.torch_device()).to(dtype)
        seconds = _median_seconds(lambda: backend.sync(a @ b))
    else:
        dtype = mx.bfloat16 if kind == "gpu" else mx.float32
        key = mx.random.key(0)
        a = mx.random.normal((n, n), key=key).astype(dtype)
        b = mx.random.normal((n, n), key=mx.random.split(key)[0]).astype(dtype)
        seconds = _median_seconds(lambda: backend.sync(a @ b))
    return 2 * n**3 / seconds


def last_level_cache_bytes(backend: Backend) -> int:
    """The GPU's L2, or the largest CPU cache the kernel reports (0 when unknown)."""
    if device_class(backend) == "gpu":
        if torch is not None and torch.cuda.is_available():
            return int(getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 0))
        return 0
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip().upper()
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * scale)
    return max(sizes, default=0)


# ---------------------------------------------------------------------------------------------------
# The check, on recorded figures
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ceilings:
    """One device class's ceilings at one point: the highest any backend measured."""

    bandwidth_gb_s: float | None
    matmul_gflop_s: float | None
    cache_bytes: int


@dataclass(frozen=True)
class OverPeak:
    benchmark: str
    params: tuple[str, ...]
    figure: float
    unit: str
    ceiling: float

    def describe(self) -> str:
        return (
            f"{self.benchmark}[{', '.join(self.params)}]: {self.figure:.4g} {self.unit} is "
            f"{self.figure / self.ceiling:.2f}x the measured ceiling {self.ceiling:.4g} {self.unit}: "
            "a timing bug (missing synchronisation or a cached result), not a fast op"
        )


def over_peak(
    benchmark: str,
    params: tuple[str, ...],
    figure: float,
    unit: str,
    op_bytes: float,
    ceilings: Ceilings,
) -> OverPeak | None:
    """The finding when ``figure`` (an op's throughput in GB/s or GFLOP/s) beats its ceiling."""
    if unit == "GFLOP/s":
        ceiling = ceilings.matmul_gflop_s
    elif unit == "GB/s":
        in_cache = ceilings.cache_bytes and op_bytes <= CACHE_MULTIPLE * ceilings.cache_bytes
        ceiling = None if in_cache or not ceilings.cache_bytes else ceilings.bandwidth_gb_s
    else:
        return None
    if not ceiling or figure != figure or figure <= ceiling * (1 + TOLERANCE):
        return None
    return OverPeak(benchmark, params, figure, unit, ceiling)


def ceilings_from(figures: Mapping[str, Mapping[str, float]]) -> dict[str, Ceilings]:
    """Device class -> ceilings, from ``{backend: {"bandwidth": GB/s, "matmul": GFLOP/s, "cache": bytes}}``
    (the Runtime benchmark's tracks): the highest of the backends of each class.  A CPU's matrix-product
    ceiling is left out: it is measured on one small float32 product, which larger or bfloat16 products
    (AMX, AVX-512 BF16) can beat without a timing bug."""
    grouped: dict[str, list[Mapping[str, float]]] = {}
    for name, values in figures.items():
        kind = device_class_of_name(name, set(figures))
        if kind is not None:
            grouped.setdefault(kind, []).append(values)

    def top(rows: list[Mapping[str, float]], key: str) -> float | None:
        found = [r[key] for r in rows if r.get(key) == r.get(key) and r.get(key)]
        return max(found) if found else None

    return {
        kind: Ceilings(
            top(rows, "bandwidth"),
            top(rows, "matmul") if kind == "gpu" else None,
            int(top(rows, "cache") or 0),
        )
        for kind, rows in grouped.items()
    }
