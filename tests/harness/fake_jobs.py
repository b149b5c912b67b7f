"""Job classes for the tests of harness/jobs.py: cheap, framework-free, importable by a measuring
process (the tests count what each one builds and measures)."""

from __future__ import annotations

import os

from benchmarks.harness.backends import require_backend
from benchmarks.harness.jobs import JobSpec, Track, job_benchmark, measure_all


class Counter:
    """A job: counts its own builds (per process) and calls."""

    builds = 0

    def __init__(self, size: int) -> None:
        if size < 0:
            raise NotImplementedError(f"size {size}: negative sizes are not run")
        if size == 13:
            raise ValueError("size 13 breaks the build")
        type(self).builds += 1
        self.size = size
        self.calls = 0
        self.build_number = type(self).builds

    def step(self) -> None:
        self.calls += sum(range(self.size)) * 0 + 1

    def broken(self) -> float:
        raise ArithmeticError("this track always fails")


COUNTER_JOB = JobSpec(
    name="CounterJob",
    module=__name__,
    doc="A counting job.",
    params=[[1, 2, -1, 13]],
    param_names=["size"],
    build=Counter,
    timings={"step_seconds": lambda job: job.step},
    tracks={
        "calls": Track("calls", lambda job: job.calls),
        "build_number": Track("builds", lambda job: job.build_number),
        "pid": Track("pid", lambda job: os.getpid()),
        "broken": Track("unit", Counter.broken),
    },
    samples=(3, 3, 0.0),
    timeout=120,
)


class CounterJob(job_benchmark(COUNTER_JOB)):
    def setup_cache(self) -> dict:
        return measure_all(COUNTER_JOB)


ABSENT_JOB = JobSpec(
    name="AbsentJob",
    module=__name__,
    doc="A job on the accelerator backends, never both present.",
    params=[["torch-cuda", "torch-mps"]],
    param_names=["backend"],
    build=require_backend,
    timings={},
)


class AbsentJob(job_benchmark(ABSENT_JOB)):
    def setup_cache(self) -> dict:
        return measure_all(ABSENT_JOB)
