"""CPU/GPU switch: a chain of matmul + normalise steps alternating between the CPU and the GPU, each step
consuming the last result (reference: 10000x10000 float32, 50 steps).

It measures how each framework moves data between execution units: MLX keeps one unified-memory array
and only changes the stream an op runs on (``stream=mx.cpu`` / ``mx.gpu``); torch moves the tensor with
``.to(device)``.  Every step is materialised before the next (``mx.eval``; torch's CPU ops are synchronous
and its copy back from the GPU waits for the GPU).  Without a GPU the ``cpu-gpu`` route is skipped with
the reason and the ``cpu`` route (the same chain on the CPU alone) still runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.harness.backends import get_backend, selected_backend_names
from benchmarks.harness.frameworks import mx, torch
from benchmarks.harness.jobs import JobSpec, job_benchmark, measure_all
from benchmarks.harness.profiles import active_profile

ROUTES = ("cpu", "cpu-gpu")
FRAMEWORKS = ("mlx", "torch")


@dataclass(frozen=True)
class ChainConfig:
    n: int
    steps: int


CONFIGS = {"quick": ChainConfig(n=256, steps=10), "full": ChainConfig(n=10_000, steps=50)}


def chain_inputs(config: ChainConfig, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((config.n, config.n)).astype(np.float32)
    w = (rng.standard_normal((config.n, config.n)) / math.sqrt(config.n)).astype(np.float32)
    return x, w


def reference_chain(x: np.ndarray, w: np.ndarray, steps: int) -> np.ndarray:
    y = x.astype(np.float64)
    w64 = w.astype(np.float64)
    for _ in range(steps):
        y = y @ w64
        y = y / np.sqrt(np.mean(y * y))
    return y


def _devices(framework: str, route: str) -> list[str]:
    """The backend of each step, in order: all on the CPU, or alternating CPU and GPU."""
    cpu = f"{framework}-cpu"
    if route == "cpu":
        return [cpu]
    gpus = ["mlx-gpu"] if framework == "mlx" else ["torch-cuda", "torch-mps"]
    present = [g for g in gpus if get_backend(g).unavailable_reason() is None]
    if not present:
        reasons = "; ".join(get_backend(g).unavailable_reason() or "" for g in gpus)
        raise NotImplementedError(f"{framework} cpu-gpu route needs a GPU: {reasons}")
    return [cpu, present[0]]


class SwitchChain:
    def __init__(self, framework: str, route: str, config: ChainConfig) -> None:
        if framework not in FRAMEWORKS or route not in ROUTES:
            raise NotImplementedError(f"unknown framework/route {framework}/{route}: {FRAMEWORKS} x {ROUTES}")
        names = _devices(framework, route)
        # A GPU run (`mtb gpu`) selects only GPU backends: there the CPU's part of the chain would be
        # timed by a CPU library on the host (50 products of 10000x10000 float32; with MLX's reference
        # BLAS on Linux, hours), which is the CPU machine's benchmark, not the GPU's.
        left_out = [n for n in names if n not in selected_backend_names()]
        if left_out:
            raise NotImplementedError(
                f"the {route} route runs on {', '.join(names)}; this run's backends (MTB_BACKENDS) leave "
                f"out {', '.join(left_out)}: add them to time it"
            )
        for name in names:
            reason = get_backend(name).unavailable_reason()
            if reason:
                raise NotImplementedError(reason)
        self.framework, self.config = framework, config
        self.backends = [get_backend(n) for n in names]
        self.backends[0].activate()
        x, w = chain_inputs(config)
        self.x_host, self.w_host = x, w
        first = self.backends[0]
        self.x = first.asarray(x, "float32")
        # torch needs the weight on every device it visits; MLX shares one array between streams.
        self.weights = [b.asarray(w, "float32") for b in self.backends] if framework == "torch" else None
        self.w = first.asarray(w, "float32") if framework == "mlx" else None
        self.run()  # warm-up: kernels, allocator, streams

    def run(self) -> Any:
        y = self.x
        for step in range(self.config.steps):
            index = step % len(self.backends)
            y = self._mlx_step(y, index) if self.framework == "mlx" else self._torch_step(y, index)
        return y

    def _mlx_step(self, y: Any, index: int) -> Any:
        stream = mx.gpu if self.backends[index].device == "gpu" else mx.cpu
        y = mx.matmul(y, self.w, stream=stream)
        y = mx.divide(y, mx.sqrt(mx.mean(y * y, stream=stream), stream=stream), stream=stream)
        mx.eval(y)
        return y

    def _torch_step(self, y: Any, index: int) -> Any:
        backend = self.backends[index]
        y = y.to(backend.torch_device())
        y = y @ self.weights[index]
        y = y / torch.sqrt(torch.mean(y * y))
        backend.sync(y)
        return y

    def result(self) -> np.ndarray:
        return self.backends[0].to_numpy(self.run())


SWITCH_JOB = JobSpec(
    name="DeviceSwitch",
    module=__name__,
    doc="The whole chain of steps, on the CPU alone or alternating CPU and GPU.",
    params=[list(ROUTES), list(FRAMEWORKS)],
    param_names=["route", "framework"],
    build=lambda route, framework: SwitchChain(framework, route, CONFIGS[active_profile().name]),
    timings={"chain_seconds": lambda chain: chain.run},
    timeout=1800,
)


class DeviceSwitch(job_benchmark(SWITCH_JOB)):
    def setup_cache(self) -> dict:
        return measure_all(SWITCH_JOB)
