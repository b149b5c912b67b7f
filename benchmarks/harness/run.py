"""One op, one case, one dtype, one backend, ready to time: inputs made and placed, the call compiled and
warmed up, plus the probes behind the ``track_`` metrics (fastest-call throughput, peak memory, parity).
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import clocks, parity, settings
from benchmarks.harness import inputs as op_inputs
from benchmarks.harness.backends import (
    Backend,
    get_backend,
    host_available_bytes,
    is_out_of_memory,
    require_backend,
)
from benchmarks.harness.inputs import Arrays
from benchmarks.harness.opspec import Case, OpSpec
from benchmarks.harness.profiles import Profile, compiled_skip_reason
from benchmarks.harness.settings import BACKEND_NAMES
from benchmarks.harness.timing import TimedCall

ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "tf32": 4}
# ``tf32``: float32 data, matrix products in TF32 on the GPU's tensor cores (both frameworks' switch), a
# labelled variant beside ``float32``, which is IEEE float32 unless MTB_FLOAT32_MATMUL says otherwise.
TF32 = "tf32"


def memory_need(spec: OpSpec, case: Case, dtype: str) -> int:
    """Bytes a prepared run of ``case`` in ``dtype`` may hold: its inputs and outputs with headroom."""
    return int(spec.cost(case, ITEMSIZE[dtype]).bytes * MEMORY_HEADROOM)


def storage_dtype(dtype: str) -> str:
    return "float32" if dtype == TF32 else dtype


# Host copies of the inputs (float64 for the reference) plus device inputs, outputs and workspace.
MEMORY_HEADROOM = 3.0


def stable_seed(*parts: str) -> int:
    """The same seed for the same op and case in every process, run and machine."""
    return zlib.crc32("|".join(parts).encode())


def _maker(spec: OpSpec, case: Case) -> Callable[[np.random.Generator], Arrays]:
    return lambda rng: spec.make_inputs(rng, case)


def _described(case: Case) -> str:
    return f"{case.label}|{case.shapes}|{sorted(case.options.items())}"


def _inputs_file(spec: OpSpec, case: Case, storage: str) -> Path | None:
    stable = stable_seed(spec.name, case.label)
    return op_inputs.inputs_path(spec.name, _described(case), storage, stable, spec.make_inputs)


def suite_inputs(spec: OpSpec, case: Case, storage: str, profile: Profile) -> tuple[Arrays, Path | None]:
    """The suite's inputs of one case rounded to ``storage``, the same in every process (seeded by the
    op and case), read from the input cache or drawn and kept there with the op's other stored dtypes;
    and where they are kept (None with the cache off)."""
    inputs = op_inputs.cached(
        spec.name, _described(case), storage, stable_seed(spec.name, case.label),
        _maker(spec, case), spec.make_inputs, profile.stored_dtypes(spec.low_precision),
    )  # fmt: skip
    return inputs, _inputs_file(spec, case, storage)


def usable_cores() -> int:
    """Cores this process may run on (its affinity where the system says, else all of them)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def draw_ahead(spec: OpSpec, profile: Profile, case_labels: Sequence[str]) -> int:
    """Draw and keep the inputs of the cases not yet in the input cache, several at once, before a
    class's first backend runs (which would otherwise draw them one by one while the GPU waits).  NumPy's
    generators and ufuncs release the GIL, so threads use the cores.  As many draws run at once as the
    usable cores allow and as fit in half the free memory, each counted at its op's float64 bytes (inputs
    and output) once per stored dtype plus once (the draw and its rounded copies are held together); and
    only where the cache makes room for all of them first.  Best effort: a case whose draw fails is left
    to its own measuring process, where the failure is that set's.  Returns the cases drawn."""
    folder = settings.read("MTB_INPUT_CACHE")
    if folder is None:
        return 0
    dtypes = profile.stored_dtypes(spec.low_precision)
    missing: list[tuple[Case, str]] = []  # a case and the first of its dtypes not kept
    for label in dict.fromkeys(case_labels):
        try:
            case = spec.find_case(profile.name, label)[1]
        except KeyError:
            continue
        absent = [d for d in dtypes if not _inputs_file(spec, case, d).exists()]  # type: ignore[union-attr]
        if absent:
            missing.append((case, absent[0]))
    if len(missing) < 2:
        return 0
    held = [spec.cost(case, 8).bytes * (1 + len(dtypes)) for case, _ in missing]
    workers = min(usable_cores(), len(missing), int(host_available_bytes() / 2 // max(held)))
    stored = sum(spec.cost(case, 4).bytes for case, _ in missing) * len(dtypes)
    if workers < 2:
        return 0
    with contextlib.suppress(OSError):
        Path(folder).mkdir(parents=True, exist_ok=True)
    if not op_inputs.make_room(Path(folder), int(stored), keep=spec.name):
        return 0

    def draw(entry: tuple[Case, str]) -> bool:
        try:
            suite_inputs(spec, *entry, profile)
        except Exception:
            return False
        return True

    with ThreadPoolExecutor(workers) as pool:
        return sum(pool.map(draw, missing))  # the arrays are dropped as each draw ends


@dataclass
class OpRun:
    spec: OpSpec
    case: Case
    dtype: str
    backend: Backend
    profile: Profile
    inputs: tuple[np.ndarray, ...]  # inputs rounded to ``dtype``, stored as float32 (or integer)
    args: tuple[Any, ...]  # the same inputs on the backend, in its layout
    fn: Any
    _timed: TimedCall | None = None
    # where the suite's inputs are kept (None for a test's fresh draw or with the cache off): the float64
    # reference is kept beside them
    inputs_file: Path | None = None

    @classmethod
    def prepare(
        cls,
        spec: OpSpec,
        case_label: str,
        dtype: str,
        backend_name: str,
        profile: Profile,
        seed: int | None = None,
    ) -> OpRun:
        """Everything outside the timed region.  Raises ``NotImplementedError`` (an asv skip) with the
        reason when the combination cannot run here."""
        if dtype not in ITEMSIZE:
            raise NotImplementedError(f"unknown dtype {dtype!r}; known: {', '.join(ITEMSIZE)}")
        if dtype == TF32:  # checked before the backend is activated in TF32
            candidate = get_backend(backend_name) if backend_name in BACKEND_NAMES else None
            if candidate is not None and not candidate.unavailable_reason() and not candidate.on_cuda():
                raise NotImplementedError(f"{backend_name}: TF32 is a math mode of NVIDIA GPUs (CUDA) only")
        backend = require_backend(backend_name, "tf32" if dtype == TF32 else None)
        try:
            index, case = spec.find_case(profile.name, case_label)
        except KeyError as exc:
            raise NotImplementedError(str(exc)) from None
        skip = compiled_skip_reason(profile, spec.name, index, dtype) if backend.compiled else None
        if skip:
            raise NotImplementedError(f"{backend.name}: {skip}")
        need = memory_need(spec, case, dtype)
        have = backend.available_bytes()
        if need > have:
            raise NotImplementedError(
                f"{spec.name} {case.label} {dtype} on {backend.name} needs about {need / 2**30:.1f} GiB, "
                f"{have / 2**30:.1f} GiB is available: use a smaller profile (MTB_PROFILE=quick) or a "
                f"larger machine"
            )

        storage = storage_dtype(dtype)
        if seed is None:  # the suite's inputs: the same in every process, so made once and kept
            inputs, inputs_file = suite_inputs(spec, case, storage, profile)
        else:  # a test's fresh draw: used once
            inputs = op_inputs.make(seed, _maker(spec, case), storage)
            inputs_file = None
        try:
            placed = spec.torch_inputs(case, inputs) if backend.framework == "torch" else inputs
            args = tuple(backend.asarray(a, storage) for a in placed)
            make = spec.mlx if backend.framework == "mlx" else spec.torch
            fn = backend.prepare(make(case), args)
        except NotImplementedError:
            raise
        except Exception as exc:
            if is_out_of_memory(exc):
                raise NotImplementedError(
                    f"{spec.name} {case.label} {dtype} on {backend.name} ran out of memory: {exc}"
                ) from None
            if dtype != "float32":
                raise NotImplementedError(
                    f"{backend.name} does not run {spec.name} in {dtype}: {type(exc).__name__}: {exc}"
                ) from None
            raise
        return cls(spec, case, dtype, backend, profile, inputs, args, fn, inputs_file=inputs_file)

    def call(self) -> None:
        """One call: the op and the synchronisation that forces it to finish."""
        self.backend.sync(self.fn(*self.args))

    @property
    def timed(self) -> TimedCall:
        """``call`` with its warm-up and calibrated batch (harness/timing.py), made on first use: the
        processes of the ``track_`` metrics never calibrate."""
        if self._timed is None:
            self._timed = TimedCall(self.call, self.profile.sample)
        return self._timed

    def fastest_call_seconds(self) -> float:
        """Fastest of repeated calls within the profile's budget: the stable statistic on a noisy host."""
        best = float("inf")
        calls = 0
        deadline = time.perf_counter() + self.profile.throughput_seconds
        while calls < self.profile.throughput_min_calls or time.perf_counter() < deadline:
            start = time.perf_counter()
            self.backend.sync(self.fn(*self.args))
            best = min(best, time.perf_counter() - start)
            calls += 1
        return best

    def throughput(self) -> float:
        return self.spec.throughput(self.case, ITEMSIZE[self.dtype], self.fastest_call_seconds())

    def peak_memory_bytes(self) -> int:
        probe = self.backend.memory_probe()
        probe.start()
        out = self.fn(*self.args)
        self.backend.sync(out)
        peak = probe.peak_bytes()
        del out
        return int(peak)

    def result(self) -> np.ndarray:
        """The op's output as NumPy, in the reference layout."""
        out = self.fn(*self.args)
        self.backend.sync(out)
        array = self.backend.to_numpy(out)
        if self.backend.framework == "torch":
            array = self.spec.torch_output(self.case, array)
        return array

    def expected(self) -> np.ndarray:
        return op_inputs.cached_reference(
            self.inputs_file,
            self.spec.reference,
            lambda: self.spec.reference(self.case, *op_inputs.as_float64(self.inputs)),
        )

    def parity_error(self) -> float:
        return parity.relative_error(self.result(), self.expected(), self.spec.exact)

    def describe(self) -> str:
        return f"{self.spec.name} [{self.case.label}] {self.dtype} on {self.backend.name}"

    def release(self, full_collect: bool = True) -> None:
        """Free the inputs and the prepared call.  ``full_collect=False`` (the next set of a grouped run
        follows at once) collects only the young generations: a full collection took 0.12 s with both
        frameworks loaded, and the run's own references are dropped here, not left in cycles."""
        self.args = ()
        self.fn = None
        self._timed = None
        self.backend.forget_compiled()
        gc.collect(2 if full_collect else 1)


def prepare_recorded(spec: OpSpec, case: str, dtype: str, backend: str, profile: Profile) -> OpRun:
    """``OpRun.prepare``, with the GPU's state and the seconds it took recorded beside the run."""
    started = time.perf_counter()
    run = OpRun.prepare(spec, case, dtype, backend, profile)
    prepare_s = round(time.perf_counter() - started, 3)
    clocks.record(spec.name, (case, dtype, backend), "before", run.backend, {"prepare_s": prepare_s})
    return run
