"""MLP regressor with a probabilistic head, trained with Gaussian NLL (after an impedance-spectroscopy
model): 5 ReLU layers of 512 units (~1.2M parameters) predicting a mean and a variance per target,
AdamW with bias correction on both sides, gradient clipping by global norm, batch 512.

Both frameworks get the same weights (initialised once, in NumPy, with torch's default Linear scheme, and
loaded into each), the same data and the same loss written out once per framework from one formula;
tests/workloads/test_mlp_regressor.py proves equal forward outputs and equal losses over training steps.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.harness.backends import Backend, require_backend, selected_backend_names
from benchmarks.harness.frameworks import mlx_nn, mx, torch
from benchmarks.harness.jobs import JobSpec, Track, job_benchmark, measure_all
from benchmarks.harness.profiles import active_profile

VARIANCE_FLOOR = 1e-6


@dataclass(frozen=True)
class MLPConfig:
    features: int = 256
    hidden: int = 512
    layers: int = 5  # ReLU layers before the head
    targets: int = 4
    batch: int = 512
    samples: int = 65_536  # one epoch
    lr: float = 1e-3
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    adam_eps: float = 1e-8

    def shapes(self) -> dict[str, tuple[int, ...]]:
        widths = [self.features] + [self.hidden] * self.layers
        shapes: dict[str, tuple[int, ...]] = {}
        for i in range(self.layers):
            shapes[f"layers.{i}.weight"] = (widths[i + 1], widths[i])
            shapes[f"layers.{i}.bias"] = (widths[i + 1],)
        shapes["head.weight"] = (2 * self.targets, self.hidden)
        shapes["head.bias"] = (2 * self.targets,)
        return shapes

    def parameter_count(self) -> int:
        return sum(math.prod(s) for s in self.shapes().values())


# quick: the same architecture narrowed to fit the 2-core VM (mlx-cpu's reference BLAS is slow).
CONFIGS = {"quick": MLPConfig(hidden=256, samples=2048), "full": MLPConfig()}


def init_weights(config: MLPConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """torch.nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in config.shapes().items():
        fan_in = config.shapes()[name.replace(".bias", ".weight")][1]
        bound = 1.0 / math.sqrt(fan_in)
        weights[name] = rng.uniform(-bound, bound, shape).astype(np.float32)
    return weights


def make_data(config: MLPConfig, samples: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Features and targets with input-dependent noise (what the variance head is for)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((samples, config.features)).astype(np.float32)
    mix = rng.standard_normal((config.features, config.targets)) / math.sqrt(config.features)
    clean = np.tanh(x @ mix) + 0.5 * np.sin(2 * x[:, : config.targets])
    noise = rng.standard_normal(clean.shape) * (0.05 + 0.2 * np.abs(x[:, -config.targets :]))
    return x, (clean + noise).astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# The two implementations.  Built on first use (MLX is imported lazily; see harness/frameworks.py).
# ---------------------------------------------------------------------------------------------------
class TorchSide:
    def __init__(self, config: MLPConfig, weights: dict[str, np.ndarray], backend: Backend) -> None:
        nn = torch.nn
        device = backend.torch_device()

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                widths = [config.features] + [config.hidden] * config.layers
                self.layers = nn.ModuleList(nn.Linear(widths[i], widths[i + 1]) for i in range(config.layers))
                self.head = nn.Linear(config.hidden, 2 * config.targets)

            def forward(self, x: Any) -> tuple[Any, Any]:
                for layer in self.layers:
                    x = torch.relu(layer(x))
                mean, raw = self.head(x).chunk(2, dim=-1)
                return mean, torch.nn.functional.softplus(raw) + VARIANCE_FLOOR

        self.config, self.backend = config, backend
        self.model = Net().to(device)
        self.model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=config.lr,
            betas=(0.9, 0.999),
            eps=config.adam_eps,
            weight_decay=config.weight_decay,
        )

    @staticmethod
    def nll(mean: Any, var: Any, y: Any) -> Any:
        return (0.5 * (torch.log(var) + (y - mean) ** 2 / var)).mean()

    def step(self, x: Any, y: Any) -> Any:
        self.optimizer.zero_grad(set_to_none=True)
        mean, var = self.model(x)
        loss = self.nll(mean, var, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        return loss.detach()

    def predict(self, x: Any) -> Any:
        with torch.no_grad():
            return self.model(x)

    def parameters(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() for k, v in self.model.state_dict().items()}


class MlxSide:
    def __init__(self, config: MLPConfig, weights: dict[str, np.ndarray], backend: Backend) -> None:
        import mlx.optimizers as optim
        from mlx.utils import tree_flatten, tree_unflatten

        nn = mlx_nn

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                widths = [config.features] + [config.hidden] * config.layers
                self.layers = [nn.Linear(widths[i], widths[i + 1]) for i in range(config.layers)]
                self.head = nn.Linear(config.hidden, 2 * config.targets)

            def __call__(self, x: Any) -> tuple[Any, Any]:
                for layer in self.layers:
                    x = nn.relu(layer(x))
                mean, raw = mx.split(self.head(x), 2, axis=-1)
                return mean, nn.softplus(raw) + VARIANCE_FLOOR

        self.config, self.backend = config, backend
        self.model = Net()
        self.model.update(tree_unflatten([(k, mx.array(v)) for k, v in weights.items()]))
        self.optimizer = optim.AdamW(
            learning_rate=config.lr,
            betas=[0.9, 0.999],
            eps=config.adam_eps,
            weight_decay=config.weight_decay,
            bias_correction=True,  # as torch does; MLX's default leaves the first steps uncorrected
        )
        self._clip = optim.clip_grad_norm
        self._flatten = tree_flatten
        self._loss_and_grad = nn.value_and_grad(self.model, self._loss)
        mx.eval(self.model.parameters())

    def _loss(self, x: Any, y: Any) -> Any:
        mean, var = self.model(x)
        return self.nll(mean, var, y)

    @staticmethod
    def nll(mean: Any, var: Any, y: Any) -> Any:
        return (0.5 * (mx.log(var) + (y - mean) ** 2 / var)).mean()

    def step(self, x: Any, y: Any) -> Any:
        loss, grads = self._loss_and_grad(x, y)
        grads, _ = self._clip(grads, self.config.max_grad_norm)
        self.optimizer.update(self.model, grads)
        mx.eval(loss, self.model.parameters(), self.optimizer.state)
        return loss

    def predict(self, x: Any) -> Any:
        return self.model(x)

    def parameters(self) -> dict[str, np.ndarray]:
        return {k: np.array(v) for k, v in self._flatten(self.model.parameters())}


# ---------------------------------------------------------------------------------------------------
# One prepared job per benchmark process
# ---------------------------------------------------------------------------------------------------
class MLPJob:
    def __init__(self, backend_name: str, config: MLPConfig) -> None:
        self.backend = require_backend(backend_name)
        if self.backend.compiled:
            raise NotImplementedError(
                f"{backend_name}: the MLP workload runs eagerly; "
                "compiled variants are timed op by op in benchmarks/ops"
            )
        self.config = config
        side = MlxSide if self.backend.framework == "mlx" else TorchSide
        self.side = side(config, init_weights(config), self.backend)
        x, y = make_data(config, config.samples)
        place = self._place
        self.batches = [
            (place(x[i : i + config.batch]), place(y[i : i + config.batch]))
            for i in range(0, config.samples, config.batch)
        ]
        self.one = place(x[:1])
        self.batch256 = place(x[:256])
        self.backend.sync(self.side.step(*self.batches[0]))  # warm-up, outside every timed region
        self.backend.sync(self.side.predict(self.batch256))

    def _place(self, array: np.ndarray) -> Any:
        return self.backend.asarray(array, "float32")

    def epoch(self) -> None:
        for xb, yb in self.batches:
            loss = self.side.step(xb, yb)
        self.backend.sync(loss)

    def predict_one(self) -> None:
        self.backend.sync(self.side.predict(self.one))

    def fastest(self, fn, seconds: float = 0.3, calls: int = 5) -> float:
        best, done, deadline = float("inf"), 0, time.perf_counter() + seconds
        while done < calls or time.perf_counter() < deadline:
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
            done += 1
        return best

    def batch256_samples_per_s(self) -> float:
        return 256 / self.fastest(lambda: self.backend.sync(self.side.predict(self.batch256)))

    def train_step_peak_bytes(self) -> int:
        probe = self.backend.memory_probe()
        probe.start()
        self.backend.sync(self.side.step(*self.batches[0]))
        return int(probe.peak_bytes())


MLP_JOB = JobSpec(
    name="MLPRegressor",
    module=__name__,
    doc="Training epochs, single-sample latency and batch-256 inference throughput of the MLP regressor.",
    params=[selected_backend_names()],
    param_names=["backend"],
    build=lambda backend: MLPJob(backend, CONFIGS[active_profile().name]),
    timings={
        "epoch_seconds": lambda job: job.epoch,
        "single_sample_latency_seconds": lambda job: job.predict_one,
    },
    tracks={
        "batch256_samples_per_s": Track("samples/s", MLPJob.batch256_samples_per_s),
        "train_step_peak_memory": Track("bytes", MLPJob.train_step_peak_bytes),
    },
    timeout=1800,
)


class MLPRegressor(job_benchmark(MLP_JOB)):
    def setup_cache(self) -> dict:
        return measure_all(MLP_JOB)
