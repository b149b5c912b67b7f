"""What every workload shares: the fastest-call throughput probe, the peak memory of a region, the memory
guard that skips a job too large for the machine, and weight transfer from one framework to the other.
How a job is built once and measured is harness/jobs.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from benchmarks.harness import settings
from benchmarks.harness.backends import Backend, require_backend
from benchmarks.harness.frameworks import mx, torch
from benchmarks.harness.inputs import store_atomically, touch

Job = TypeVar("Job")
GIB = 1024**3
# Fraction of the available memory a job may plan to use: the framework, the allocator's cache and the
# other process of an asv run need the rest.
MEMORY_HEADROOM = 0.8


def eager_backend(name: str, workload: str) -> Backend:
    """The activated backend; compiled backends are skipped with the reason (workloads run eagerly)."""
    backend = require_backend(name)
    if backend.compiled:
        raise NotImplementedError(
            f"{name}: the {workload} workload runs eagerly; compiled variants are timed op by op in "
            "benchmarks/ops"
        )
    return backend


def require_module(module: str, workload: str) -> None:
    """Skip (``NotImplementedError``) when a package a workload builds its model with cannot be imported
    (for instance an MLX release that no mlx-lm release supports: the timeline then pins none)."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise NotImplementedError(
            f"the {workload} workload needs {module}, which cannot be imported here ({exc}); install it "
            "(pyproject's cpu extra) or use a timeline point that pins it"
        ) from None


def require_memory(backend: Backend, needed_bytes: float, what: str) -> None:
    """Skip (``NotImplementedError``) when ``what`` needs more memory than ``backend`` has to spare."""
    available = backend.available_bytes()
    if needed_bytes > MEMORY_HEADROOM * available:
        raise NotImplementedError(
            f"{what} needs about {needed_bytes / GIB:.1f} GiB but {backend.name} has "
            f"{available / GIB:.1f} GiB available (jobs plan for {MEMORY_HEADROOM:.0%} of it): use "
            "MTB_PROFILE=quick or a machine with more memory"
        )


def fastest(fn: Callable[[], Any], seconds: float = 0.3, calls: int = 3) -> float:
    """Seconds of the fastest of at least ``calls`` calls of ``fn`` (which must synchronise)."""
    best, done, deadline = float("inf"), 0, time.perf_counter() + seconds
    while done < calls or time.perf_counter() < deadline:
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
        done += 1
    return best


def peak_bytes(backend: Backend, fn: Callable[[], Any]) -> int:
    """Peak extra memory while ``fn`` (which must synchronise) runs, by the backend's own counters."""
    probe = backend.memory_probe()
    probe.start()
    fn()
    return int(probe.peak_bytes())


# ---------------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------------
def _skipped_initialisation() -> Any:
    """transformers' context that builds a model without drawing its weights (init functions and
    ``init_weights`` made no-ops; buffers computed in ``__init__``, such as rotary frequencies, are
    kept); None where this transformers has none."""
    for module in ("transformers.initialization", "transformers.modeling_utils"):
        with contextlib.suppress(ImportError, AttributeError):
            return __import__(module, fromlist=["no_init_weights"]).no_init_weights
    return None


def weights_file(cls: type, config: Any, seed: int) -> Path | None:
    """Where the seeded weights of ``cls(config)`` are kept (``MTB_INPUT_CACHE``; None when off), keyed
    by everything that decides them: the class, the config, the seed and the torch and transformers
    versions that drew them."""
    folder = settings.read("MTB_INPUT_CACHE")
    if folder is None:
        return None
    import transformers

    text = "\n".join(
        (cls.__module__, cls.__qualname__, config.to_json_string(), str(seed), str(torch.__version__),
         transformers.__version__)
    )  # fmt: skip
    return Path(folder) / f"weights-{cls.__name__}-{hashlib.sha256(text.encode()).hexdigest()[:24]}.pt"


def runs_as_built(backend: Backend, dtype: str = "float32") -> bool:
    """Whether a workload's float32 torch model is itself what ``backend`` runs (torch on the CPU in
    float32), rather than a copy of its weights on a GPU, in another dtype or in MLX: only then must
    the model hold its weights in its own memory (``seeded_model``'s ``mapped``)."""
    return backend.framework == "torch" and backend.torch_device() == "cpu" and dtype == "float32"


def seeded_model(cls: type, config: Any, seed: int, mapped: bool = False) -> Any:
    """``cls(config)`` (a transformers model) in eval mode with random weights drawn from ``seed``, the
    same in every process.  Drawing them is the slow part of a build (TinyLlama's 1.1B parameters: 19 s
    on the 2-core VM), and every parameter set of a job builds the model again in a process of its
    own, so the first keeps the weights on disk and later ones build without drawing and load them.
    ``mapped``: the caller copies the weights elsewhere and never uses this model as it is (see below)."""
    path = weights_file(cls, config, seed)
    skip_init = _skipped_initialisation()
    if path is not None and skip_init is not None and path.exists():
        try:
            state = torch.load(path, mmap=True, weights_only=True)
            with skip_init():
                model = cls(config)
            # ``mapped``: the caller only copies the weights elsewhere (a GPU, another dtype, MLX), so the
            # file's tensors become the parameters (mapped copy-on-write: nothing ever writes the file)
            # instead of being copied into the ones just allocated, never touched then.  TinyLlama's 4.4
            # GB took 5.1-5.8 s to read back on an H200 host by copying.  A model used as it is keeps
            # its own memory (the kernel may drop mapped pages under pressure and read them back
            # while a benchmark runs).
            try:
                model.load_state_dict(state, strict=True, assign=mapped)
            except TypeError:  # torch before 2.1 has no ``assign``
                model.load_state_dict(state, strict=True)
            # transformers ties embeddings inside the ``init_weights`` that the context skipped
            model.tie_weights()
            touch(path)
            return model.eval()
        except (OSError, RuntimeError, ValueError):  # a damaged or foreign file: drawn and kept again
            pass
    torch.manual_seed(seed)
    model = cls(config).eval()
    if path is not None:
        state = dict(model.state_dict())
        size = sum(t.numel() * t.element_size() for t in state.values())
        store_atomically(path, lambda handle: torch.save(state, handle), size)
    return model


def torch_weights(module: Any) -> dict[str, np.ndarray]:
    """A torch module's parameters and buffers as float32 NumPy copies, under every ``state_dict`` name
    (a tied weight under each of its names); copies, so that later training cannot change them."""
    return {name: t.detach().float().cpu().numpy().copy() for name, t in module.state_dict().items()}


def mlx_from_torch(tensor: Any, dtype: str) -> Any:
    """A torch tensor as an MLX array of ``dtype``, rounded by torch (the same round-to-nearest-even as
    MLX's ``astype``, on all cores: TinyLlama's weights took 13.5 s to convert through float32 NumPy
    arrays and MLX's ``astype`` on the 2-core VM).  NumPy has no bfloat16, so its bits pass as int16."""
    rounded = tensor.detach().to(device="cpu", dtype=torch_dtype(dtype)).contiguous()
    if dtype == "bfloat16":  # int16: torch has uint16 only from 2.3
        return mx.array(rounded.view(torch.int16).numpy()).view(mx.bfloat16)
    return mx.array(rounded.numpy())


def mlx_weights(module: Any) -> dict[str, np.ndarray]:
    from mlx.utils import tree_flatten

    return {name: np.array(a.astype(mx.float32)) for name, a in tree_flatten(module.parameters())}


def load_mlx(
    module: Any,
    weights: Mapping[str, Any],
    dtype: str = "float32",
    rename: Callable[[str], str | None] = lambda name: name,
    transforms: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
) -> None:
    """Load ``weights`` (NumPy arrays, or torch tensors: converted by ``mlx_from_torch`` unless a
    transform applies) into an MLX module, strictly: every MLX parameter must be given, with its shape.

    ``rename`` maps a source name to the MLX name (``None`` drops it: buffers MLX computes itself);
    ``transforms`` maps an MLX name suffix to an array transform (conv weights: torch's (out, in, k) to
    MLX's (out, k, in)).
    """
    converted: list[tuple[str, Any]] = []
    for name, value in weights.items():
        target = rename(name)
        if target is None:
            continue
        for suffix, transform in (transforms or {}).items():
            if target.endswith(suffix):  # NumPy's transforms: a tensor goes through float32 (exact)
                value = transform(
                    value if isinstance(value, np.ndarray) else value.detach().float().cpu().numpy()
                )
        if isinstance(value, np.ndarray):
            converted.append((target, mx.array(np.ascontiguousarray(value)).astype(getattr(mx, dtype))))
        else:
            converted.append((target, mlx_from_torch(value, dtype)))
    module.load_weights(converted, strict=True)
    mx.eval(module.parameters())


def conv_torch_to_mlx(weight: np.ndarray) -> np.ndarray:
    """torch conv weights (out, in, *kernel) to MLX's channels-last (out, *kernel, in)."""
    return np.moveaxis(weight, 1, -1)


def torch_dtype(name: str) -> Any:
    return getattr(torch, name)


def same_names(expected: Iterable[str], given: Iterable[str], what: str) -> None:
    """Raise naming the missing and unexpected parameter names of a weight transfer."""
    expected_set, given_set = set(expected), set(given)
    missing, unexpected = sorted(expected_set - given_set), sorted(given_set - expected_set)
    if missing or unexpected:
        raise ValueError(
            f"{what}: weights do not match the model: missing {missing[:8]}"
            f"{'...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}"
            f"{'...' if len(unexpected) > 8 else ''}"
        )
