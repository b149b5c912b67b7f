"""Workload jobs: an expensive thing (a model, its data) declared once, built once per parameter set in a
process of its own, and every metric of it measured from that one warm build.

asv runs every benchmark method in a fresh process; a workload with three timings and three tracks
used to build its model six times per parameter set and round (LLM builds take 15-50 s on a GPU host).
Here a workload is a ``JobSpec``: its parameters, a ``build`` that makes the job, the unit calls its
timings time and the tracks it reports.  ``job_benchmark`` turns it into an asv class whose
``setup_cache`` (run by asv once per class and environment) starts one measuring process per parameter
set (one framework per process); that process builds the job once and measures everything.  The asv
methods read the figures: a timing returns its samples in asv's own timing format
(``{"samples": [...], "number": 1}``), so asv stores the samples and computes the median, quartiles and
confidence interval exactly as for a ``time_`` benchmark; its unit is seconds.

A timing's samples follow harness/timing.py: a calibration stream (which warms the call up), then samples
taken back to back, each a batch of calls lasting about the profile's batch length (one call for steps
longer than that), so every sample is one call in a steady stream.  A job whose build ran every timed
call once (``warmed_at_build``) counts a calibration stream of one long call (ten batches or more) as its
first sample: a generate call of seconds is not run once more only to be counted.

asv keys a ``setup_cache`` by its source line, so each workload class defines its own two-line
``setup_cache`` that calls ``measure_all``; everything else comes from the spec.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import clocks
from benchmarks.harness.backends import is_out_of_memory
from benchmarks.harness.facts import noting_skips
from benchmarks.harness.frameworks import fork_is_safe
from benchmarks.harness.profiles import active_profile
from benchmarks.harness.timing import MEASUREMENT_VERSION, TimedCall

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Track:
    """A figure the job measures itself (a throughput of another call, a peak memory, a loss)."""

    unit: str
    measure: Callable[[Any], float]


@dataclass(frozen=True)
class FromTimings:
    """A figure computed from the timings' samples (a rate at the fastest sample), so the job does not
    run the same call again to get it."""

    unit: str
    compute: Callable[[Any, Mapping[str, list[float]]], float]  # (job, samples by timing) -> value


@dataclass(frozen=True)
class JobSpec:
    name: str  # the asv class name
    module: str  # the module that declares it (the measuring process imports it)
    doc: str
    params: Sequence[Sequence[Any]]
    param_names: Sequence[str]
    build: Callable[..., Any]  # (*params) -> the job; NotImplementedError skips with its reason
    timings: Mapping[str, Callable[[Any], Callable[[], Any]]]  # metric -> the job's unit call
    tracks: Mapping[str, Track | FromTimings] = field(default_factory=dict)
    # samples per timing: at least the first, at most the second, stopping after the seconds
    samples: tuple[int, int, float] = (3, 10, 0.5)
    timeout: float = 3600.0  # seconds per parameter set
    # every timed call ran at least once while the job was built (its first call's one-time costs paid),
    # so a timing's calibration stream of one long call is already a steady call and counts as a sample
    warmed_at_build: bool = False
    # imported once before the measuring processes are forked, so none pays for it.  Name the model
    # modules, not only the package: transformers loads them lazily, and a forked BERT process took
    # 2.6 s with `transformers` imported before the fork, 0.7 s with its modeling module.
    preimport: tuple[str, ...] = ()
    # What the job's figures mean: raise it when the workload changes what it measures (its model, sizes
    # or procedure), so asv starts a new series there instead of comparing across the change.  asv's own
    # version, a hash of the benchmark's source, would see only this module's generic methods: it missed
    # every change to a workload, and an edit here orphaned every job's history.
    version: int = 1

    def combos(self) -> list[tuple[Any, ...]]:
        return list(itertools.product(*self.params))

    def declared(self, params: Sequence[Any]) -> tuple[Any, ...] | None:
        """The declared parameter set that ``params`` names (as text, the way asv and the command line
        give them), with its declared types; None if there is none."""
        return {combo_key(c): c for c in self.combos()}.get(combo_key(params))


def combo_key(params: Sequence[Any]) -> str:
    return json.dumps([str(p) for p in params])


# ---------------------------------------------------------------------------------------------------
# In the measuring process
# ---------------------------------------------------------------------------------------------------
def build_job(describe: str, build: Callable[[], Any]) -> Any:
    """``build()``; running out of memory while building (warm-up included) is a skip with the
    framework's message, not a failure."""
    try:
        return build()
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        raise NotImplementedError(
            f"{describe} ran out of memory while being prepared (warm-up included): {exc}; "
            "use MTB_PROFILE=quick or a machine with more memory"
        ) from None


# What a job's timing sample is (harness/timing.py's stream, taken by ``timing_samples`` below): raise it
# when that changes, and every job starts a new series.
JOB_SAMPLES_VERSION = 1


def timing_samples(
    call: Callable[[], Any], samples: tuple[int, int, float], warmed: bool = False
) -> list[float]:
    """Per-call seconds of back-to-back batches; where the call was ``warmed`` (run while the job was
    built), the calibration stream is the first of them if it was one long call (harness/timing.py)."""
    timed = TimedCall(call, active_profile().sample)
    least, most, seconds = samples
    first = timed.calibration_sample() if warmed else None
    out: list[float] = [] if first is None else [first]
    deadline = time.perf_counter() + seconds
    while len(out) < most and (len(out) < least or time.perf_counter() < deadline):
        out.append(timed.sample())
    return out


def measure_job(spec: JobSpec, params: Sequence[Any]) -> dict[str, Any]:
    """Build the job once and measure every metric: ``{"timings": {metric: samples}, "tracks":
    {metric: value}}``, or ``{"skip": reason}``, or ``{"error": text}`` (one metric failing is reported
    for that metric alone)."""
    describe = f"{spec.name} {' '.join(str(p) for p in params)}"
    started = time.perf_counter()
    try:
        job = build_job(describe, lambda: spec.build(*params))
    except NotImplementedError as exc:
        return {"skip": str(exc)}
    out: dict[str, Any] = {"timings": {}, "tracks": {}, "errors": {}}
    backend = getattr(job, "backend", None)
    if backend is not None:
        built: dict[str, Any] = {"build_s": round(time.perf_counter() - started, 3)}
        phases = getattr(job, "build_phases", None)  # a job may say where its build's time went
        if phases:
            built["build_phases"] = {name: round(float(s), 3) for name, s in phases.items()}
        clocks.record(spec.name, params, "before", backend, built)
    for metric, unit_call in spec.timings.items():
        try:
            out["timings"][metric] = timing_samples(unit_call(job), spec.samples, spec.warmed_at_build)
        except Exception as exc:
            out["errors"][metric] = f"{type(exc).__name__}: {exc}"
    for metric, track in spec.tracks.items():
        try:
            if isinstance(track, FromTimings):
                out["tracks"][metric] = float(track.compute(job, out["timings"]))
            else:
                out["tracks"][metric] = float(track.measure(job))
        except Exception as exc:
            out["errors"][metric] = f"{type(exc).__name__}: {exc}"
    if backend is not None:
        clocks.record(spec.name, params, "after", backend)
    return out


def _spec_from(module: str, name: str) -> JobSpec:
    import importlib

    cls = getattr(importlib.import_module(module), name)
    return cls.spec


def _measuring_process_main(argv: Sequence[str]) -> None:
    module, name, params_json = argv
    spec = _spec_from(module, name)
    params = spec.declared(json.loads(params_json))
    if params is None:
        raise SystemExit(f"{name} has no parameter set {params_json}")
    try:
        result = measure_job(spec, params)
    except Exception as exc:
        import traceback

        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
    print("\n" + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------------
# In asv's setup_cache process
# ---------------------------------------------------------------------------------------------------
def _result_of(out: str, status: str) -> dict[str, Any]:
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                break
    tail = "\n".join(out.strip().splitlines()[-15:])
    return {"error": f"the measuring process {status}:\n{tail}"}


def measure_in_process(spec: JobSpec, params: Sequence[Any]) -> dict[str, Any]:
    """One measuring process for one parameter set, a fresh interpreter (used where forking is not safe:
    a device already initialised here); its last output line is the JSON result."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    command = [
        sys.executable, "-m", "benchmarks.harness.jobs", spec.module, spec.name,
        json.dumps([str(p) for p in params]),
    ]  # fmt: skip
    try:
        out = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=spec.timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {spec.timeout:.0f} s"}
    return _result_of(out.stdout + "\n" + out.stderr, f"exited with status {out.returncode}")


def measure_in_fork(spec: JobSpec, params: Sequence[Any]) -> dict[str, Any]:
    """One measuring process for one parameter set, forked from this one (its imports already done,
    as asv's forkserver does); the result comes back through a pipe."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the measuring process
        os.close(read_end)
        code = 0
        try:
            result = measure_job(spec, params)
        except BaseException as exc:
            import traceback

            result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
            code = 1
        with os.fdopen(write_end, "w") as pipe:
            pipe.write(json.dumps(result))
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        # the child writes once, at its end (or the pipe closes when it dies): wait for that, bounded
        if not select.select([pipe], [], [], spec.timeout)[0]:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return {"error": f"timed out after {spec.timeout:.0f} s"}
        text = pipe.read()
    _, status = os.waitpid(pid, 0)
    if text:
        return json.loads(text)
    return {"error": f"the measuring process ended without a result (wait status {status})"}


def measure_all(spec: JobSpec) -> dict[str, Any]:
    """Every parameter set of ``spec``, each in its own measuring process (asv's ``setup_cache``): forked
    from this process after ``spec.preimport`` where that leaves no device state behind, else a fresh
    interpreter."""
    import importlib

    for module in spec.preimport:
        with contextlib.suppress(ImportError):  # the job's own build says why it cannot run
            importlib.import_module(module)
    measure = measure_in_fork if fork_is_safe() else measure_in_process
    return {combo_key(params): measure(spec, params) for params in spec.combos()}


# ---------------------------------------------------------------------------------------------------
# The asv class
# ---------------------------------------------------------------------------------------------------
def figures_for(figures: Mapping[str, Any], params: Sequence[Any]) -> dict[str, Any]:
    """The figures of one parameter set; a skip becomes asv's skip, a failure this set's failure."""
    found = figures.get(combo_key(params))
    if found is None:
        raise NotImplementedError(f"no measurement for {list(params)} (not a declared parameter set)")
    if "skip" in found:
        raise NotImplementedError(found["skip"])
    if "error" in found:
        raise RuntimeError(found["error"] + ("\n" + found["traceback"] if "traceback" in found else ""))
    return found


def job_version(spec: JobSpec) -> str:
    """asv's version of every method of a job's class: the timing procedure, the jobs' samples and the
    job's own meaning."""
    return f"{MEASUREMENT_VERSION}+samples-{JOB_SAMPLES_VERSION}+job-{spec.version}"


def job_benchmark(spec: JobSpec) -> type:
    """The asv class of a job (subclass it with a ``setup_cache`` that returns ``measure_all(spec)``)."""

    def setup(self: Any, figures: Mapping[str, Any], *params: Any) -> None:
        with noting_skips(spec.name, params):
            self.figures = figures_for(figures, params)

    namespace: dict[str, Any] = {
        "spec": spec,
        "__doc__": spec.doc,
        "params": [list(p) for p in spec.params],
        "param_names": list(spec.param_names),
        # setup_cache measures every parameter set of the class
        "timeout": spec.timeout * max(1, len(spec.combos())),
        "version": job_version(spec),
        "setup": setup,
    }
    for metric in spec.timings:
        namespace[f"track_{metric}"] = _timing_method(metric)
    for metric, track in spec.tracks.items():
        namespace[f"track_{metric}"] = _track_method(metric, track.unit)
    return type(spec.name, (), namespace)


def _metric(figures: Mapping[str, Any], group: str, metric: str) -> Any:
    if metric in figures.get("errors", {}):
        raise RuntimeError(f"{metric}: {figures['errors'][metric]}")
    return figures[group][metric]


def _timing_method(metric: str) -> Callable[..., Any]:
    def method(self: Any, figures: Mapping[str, Any], *params: Any) -> dict[str, Any]:
        return {"samples": _metric(self.figures, "timings", metric), "number": 1}

    method.__name__ = f"track_{metric}"
    method.unit = "seconds"  # type: ignore[attr-defined]
    return method


def _track_method(metric: str, unit: str) -> Callable[..., Any]:
    def method(self: Any, figures: Mapping[str, Any], *params: Any) -> float:
        return _metric(self.figures, "tracks", metric)

    method.__name__ = f"track_{metric}"
    method.unit = unit  # type: ignore[attr-defined]
    return method


if __name__ == "__main__":
    # run through the imported module: the job specs' classes (FromTimings, Track) are that module's, not
    # this __main__'s copies, and the isinstance checks in measure_job must see the same ones
    from benchmarks.harness import jobs as imported

    imported._measuring_process_main(sys.argv[1:])
