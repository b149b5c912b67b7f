"""Workload jobs: one build per parameter set, every metric from it, skips and failures kept apart."""

from __future__ import annotations

import os

import pytest

from benchmarks.harness import jobs
from benchmarks.harness.backends import get_backend, is_out_of_memory
from benchmarks.harness.frameworks import torch
from benchmarks.harness.jobs import JobSpec
from tests.harness import fake_jobs
from tests.harness.fake_jobs import COUNTER_JOB, Counter, CounterJob


def test_every_metric_of_a_parameter_set_comes_from_one_build():
    before = Counter.builds
    figures = jobs.measure_job(COUNTER_JOB, (2,))
    assert Counter.builds == before + 1
    assert figures["tracks"]["build_number"] == before + 1
    samples = figures["timings"]["step_seconds"]
    assert len(samples) == 3 and min(samples) > 0
    # the calibration stream and the three samples all called the same job
    assert figures["tracks"]["calls"] >= 3 + 2
    # one failing metric is reported for itself; the others are kept
    assert "ArithmeticError" in figures["errors"]["broken"]


def test_a_step_longer_than_a_batch_is_not_run_again_only_to_be_counted(monkeypatch):
    from benchmarks.harness import timing

    clock = {"now": 0.0}
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock["now"])
    monkeypatch.setattr(jobs.time, "perf_counter", lambda: clock["now"])
    steps: list[float] = []

    def step() -> None:
        clock["now"] += 2.0  # a generate call of seconds
        steps.append(clock["now"])

    samples = jobs.timing_samples(lambda: step(), (3, 10, 0.5), warmed=True)
    assert samples == [2.0, 2.0, 2.0]
    assert len(steps) == 3  # the calibration call is the first sample
    # a call the build did not run once is warmed up by its calibration call, which is not a sample
    steps.clear()
    assert jobs.timing_samples(lambda: step(), (3, 10, 0.5)) == [2.0, 2.0, 2.0]
    assert len(steps) == 4


def test_skips_and_build_failures_are_reported_not_raised():
    assert jobs.measure_job(COUNTER_JOB, (-1,)) == {"skip": "size -1: negative sizes are not run"}
    with pytest.raises(ValueError, match="size 13"):
        jobs.measure_job(COUNTER_JOB, (13,))


def test_the_asv_class_hands_out_samples_in_asvs_timing_format_and_units():
    figures = {jobs.combo_key((1,)): jobs.measure_job(COUNTER_JOB, (1,))}
    bench = CounterJob()
    bench.setup(figures, 1)
    timing = bench.track_step_seconds(figures, 1)
    assert set(timing) == {"samples", "number"} and timing["number"] == 1 and len(timing["samples"]) == 3
    assert CounterJob.track_step_seconds.unit == "seconds"
    assert CounterJob.track_calls.unit == "calls"
    assert bench.track_pid(figures, 1) == os.getpid()
    with pytest.raises(RuntimeError, match="broken: ArithmeticError"):
        bench.track_broken(figures, 1)
    assert CounterJob.params == [[1, 2, -1, 13]] and CounterJob.param_names == ["size"]


def test_setup_turns_a_skip_into_asvs_skip_and_an_error_into_this_sets_failure():
    figures = {
        jobs.combo_key((-1,)): {"skip": "size -1: negative sizes are not run"},
        jobs.combo_key((13,)): {"error": "ValueError: size 13 breaks the build"},
    }
    with pytest.raises(NotImplementedError, match="negative sizes"):
        CounterJob().setup(figures, -1)
    with pytest.raises(RuntimeError, match="size 13"):
        CounterJob().setup(figures, 13)
    with pytest.raises(NotImplementedError, match="no measurement"):
        CounterJob().setup(figures, 2)


def test_measure_all_runs_one_process_per_parameter_set_and_keeps_the_others_going():
    figures = jobs.measure_all(COUNTER_JOB)
    assert set(figures) == {jobs.combo_key((s,)) for s in (1, 2, -1, 13)}
    one, two = figures[jobs.combo_key((1,))], figures[jobs.combo_key((2,))]
    # each set was built once, in a process of its own (not this one): a fresh interpreter counts from
    # zero, a fork from this process's count
    assert one["tracks"]["build_number"] == two["tracks"]["build_number"] in (1, Counter.builds + 1)
    assert one["tracks"]["pid"] != two["tracks"]["pid"] != os.getpid()
    assert figures[jobs.combo_key((-1,))] == {"skip": "size -1: negative sizes are not run"}
    assert "ValueError: size 13 breaks the build" in figures[jobs.combo_key((13,))]["error"]


def test_an_absent_backend_is_skipped_with_its_reason():
    names = ("torch-cuda", "torch-mps")  # never both present
    figures = jobs.measure_all(fake_jobs.ABSENT_JOB)
    absent = [n for n in names if get_backend(n).unavailable_reason()]
    assert absent
    for name in absent:
        assert figures[jobs.combo_key((name,))] == {"skip": get_backend(name).unavailable_reason()}


def test_a_fresh_interpreter_measures_as_a_fork_does():
    figures = jobs.measure_in_process(COUNTER_JOB, (2,))
    assert figures["tracks"]["build_number"] == 1 and figures["tracks"]["pid"] != os.getpid()
    assert len(figures["timings"]["step_seconds"]) == 3
    assert jobs.measure_in_process(COUNTER_JOB, (-1,)) == {"skip": "size -1: negative sizes are not run"}
    assert "size 13 breaks the build" in jobs.measure_in_process(COUNTER_JOB, (13,))["error"]


def test_a_real_allocation_failure_is_recognised_and_an_ordinary_error_is_not():
    with pytest.raises(RuntimeError) as failure:
        torch.empty(2**50, dtype=torch.uint8)
    assert is_out_of_memory(failure.value)
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_out_of_memory(ValueError("shapes (2, 3) and (4, 5) cannot be multiplied"))


def test_running_out_of_memory_while_building_is_a_skip_naming_the_job():
    def build():
        torch.empty(2**50, dtype=torch.uint8)  # the warm-up step of a job too large for the machine

    with pytest.raises(NotImplementedError) as skip:
        jobs.build_job("BertClassificationTraining torch-cpu bert-large-cased 256 512", build)
    message = str(skip.value)
    assert "bert-large-cased 256 512 ran out of memory" in message
    assert "can't allocate memory" in message and "MTB_PROFILE=quick" in message


def test_any_other_failure_while_building_stays_an_error():
    def build():
        raise ValueError("wrong shapes in the model")

    with pytest.raises(ValueError, match="wrong shapes"):
        jobs.build_job("job", build)


def test_a_forked_measuring_process_reports_through_its_pipe():
    figures = jobs.measure_in_fork(COUNTER_JOB, (2,))
    assert figures["tracks"]["build_number"] == Counter.builds + 1  # built in the child, not here
    assert figures["tracks"]["pid"] != os.getpid()
    assert jobs.measure_in_fork(COUNTER_JOB, (-1,)) == {"skip": "size -1: negative sizes are not run"}
    failed = jobs.measure_in_fork(COUNTER_JOB, (13,))
    assert "ValueError: size 13 breaks the build" in failed["error"] and "Traceback" in failed["traceback"]


def test_a_jobs_build_time_and_its_phases_go_to_the_clock_reading(monkeypatch):
    from types import SimpleNamespace

    from benchmarks.harness import clocks

    readings = []
    monkeypatch.setattr(clocks, "record", lambda *args: readings.append(args))
    job = SimpleNamespace(backend=get_backend("torch-cpu"), build_phases={"model": 0.25, "warm-up": 0.5})
    spec = JobSpec(
        name="Phased", module=__name__, doc="", params=[[1]], param_names=["n"],
        build=lambda n: job, timings={}, tracks={},
    )  # fmt: skip
    jobs.measure_job(spec, (1,))
    (name, params, phase, _, extra), after = readings[0], readings[1]
    assert (name, params, phase, after[2]) == ("Phased", (1,), "before", "after")
    assert extra["build_s"] >= 0 and extra["build_phases"] == {"model": 0.25, "warm-up": 0.5}


def test_a_jobs_asv_version_is_its_declared_meaning_not_the_harnesss_source():
    import dataclasses
    import sys

    from asv_runner.benchmarks.track import TrackBenchmark

    from benchmarks.harness.timing import MEASUREMENT_VERSION

    def versions(spec: JobSpec) -> set[str]:
        """asv's version of each method of the job's class (all ``track_``), as asv_runner resolves it."""
        cls = jobs.job_benchmark(spec)
        methods = [getattr(cls(), name) for name in dir(cls) if name.startswith("track_")]
        module = sys.modules[__name__]
        return {TrackBenchmark(f"m.{spec.name}.x", f, [f, cls, module]).version for f in methods}

    # timings and tracks alike: the timing procedure, the jobs' samples and the job's meaning; the
    # results recorded under it were relabelled to exactly this string
    assert versions(COUNTER_JOB) == {f"{MEASUREMENT_VERSION}+samples-1+job-1"}
    # a raised version starts a new series
    raised = versions(dataclasses.replace(COUNTER_JOB, version=2))
    assert raised == {f"{MEASUREMENT_VERSION}+samples-1+job-2"}
