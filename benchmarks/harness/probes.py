"""An op's ``track_`` figures (peak memory, parity error, fastest-call throughput), measured together
from one prepared run and shared by the three ``track_`` processes of an asv run.

asv runs every method and parameter set in a process of its own, and each of those processes used to
prepare the op again (inputs, transfer, and 2.5-3.6 s of compilation for torch.compile here) to measure
one figure. Here the first process of a combination that has the op prepared measures all of them (the
first ``time_forward`` process, before its samples; a ``track_`` process when timing was skipped) and
leaves them in the run's scratch folder; the others read them. The scratch folder is what the op
classes' ``setup_cache`` returns: the folder asv makes for the cache, one per asv run (all op classes
share it: asv keys a cache by the source line of ``setup_cache``), which asv deletes when the op
benchmarks are done, so a figure never outlives the run that measured it.

Peak memory is measured first, right after preparing, as in a process of its own: calls made before it
would already have raised the process's high-water mark.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness import clocks
from benchmarks.harness.run import OpRun


def scratch_folder() -> str:
    """The op classes' ``setup_cache``: asv runs it with the cache folder it made as the working
    directory; the probes of the run are kept there."""
    return os.getcwd()


def probe_file(scratch: str, key: tuple[str, ...]) -> Path:
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:20]
    return Path(scratch) / f"probes-{digest}.json"


def measure(run: OpRun) -> dict[str, Any]:
    """Every probe of one prepared run: ``{"figures": {probe: value}, "errors": {probe: text},
    "seconds": {probe: time it took}}`` (a probe that fails is reported for itself alone)."""
    probes: dict[str, Callable[[], float]] = {
        "peak_memory": run.peak_memory_bytes,
        "parity_error": run.parity_error,
        "throughput": run.throughput,
    }
    out: dict[str, Any] = {"figures": {}, "errors": {}, "seconds": {}}
    for name, probe in probes.items():
        started = time.perf_counter()
        try:
            out["figures"][name] = float(probe())
        except Exception as exc:
            out["errors"][name] = f"{type(exc).__name__}: {exc}"
        out["seconds"][name] = round(time.perf_counter() - started, 4)
    return out


def measure_recorded(key: tuple[str, ...], run: OpRun) -> dict[str, Any]:
    """``measure``, then the GPU's state after it, with the seconds each probe took."""
    found = measure(run)
    backend = getattr(run, "backend", None)
    clocks.record(key[0], key[1:4], "after probes", backend, {"probe_s": found["seconds"]})
    return found


def load(scratch: str, key: tuple[str, ...], prepare: Callable[[], OpRun]) -> dict[str, Any]:
    """The probes of ``key`` (op, case, dtype, backend, profile) in this run: read from the scratch folder,
    or measured now and written there.  A combination that cannot run here (``prepare`` raises
    ``NotImplementedError``) is recorded as ``{"skip": reason}`` and raises again, so every ``track_``
    process of it is skipped with the reason, as asv skips."""
    path = probe_file(scratch, key)
    if path.exists():
        found = json.loads(path.read_text())
    else:
        try:
            found = measure_recorded(key, prepare())
        except NotImplementedError as exc:
            found = {"skip": str(exc)}
        store(path, found)
    return raise_unmeasured(found)


def store(path: Path, found: dict[str, Any]) -> None:
    partial = path.with_suffix(f".{os.getpid()}.partial")
    partial.write_text(json.dumps(found))
    partial.replace(path)  # a reader never sees half a file


def raise_unmeasured(found: dict[str, Any]) -> dict[str, Any]:
    """``found`` if the combination was measured; asv's skip with the reason if it could not run here, a
    failure with the error if measuring it failed (a grouped run's measuring process, harness/groups.py)."""
    if "skip" in found:
        raise NotImplementedError(found["skip"])
    if "error" in found:
        raise RuntimeError(found["error"])
    return found


def figure(scratch: str, key: tuple[str, ...], probe: str) -> float:
    """One probe's figure, after ``load`` (the method's setup) put it there; a probe that failed fails
    its own ``track_`` method with the reason."""
    found = json.loads(probe_file(scratch, key).read_text())
    if probe in found.get("errors", {}):
        raise RuntimeError(f"{probe}: {found['errors'][probe]}")
    return float(found["figures"][probe])
