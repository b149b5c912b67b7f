"""What a recorded time means (harness/timing.py), checked through asv_runner's own timing loop with a
fake clock: every sample is a warm-up burst, then a batch of back-to-back calls divided by its size."""

from __future__ import annotations

import sys
import types

import pytest
from asv_runner.benchmarks.time import TimeBenchmark

from benchmarks.harness import timing
from benchmarks.harness.timing import SamplePlan, TimedCall, calls_for


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def perf_counter(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=fake.perf_counter))
    yield fake
    timing.reset_clock()


def _asv_time(instance, method: str) -> dict:
    """Run ``instance.<method>`` through asv_runner's TimeBenchmark, as a benchmark process does."""
    func = getattr(instance, method)
    bench = TimeBenchmark(
        f"fake.{type(instance).__name__}.{method}", func, [func, instance, sys.modules[__name__]]
    )
    assert not bench.do_setup()
    try:
        return bench.run()
    finally:
        bench.do_teardown()


def test_each_sample_is_a_warm_up_then_a_batch_and_reads_per_call(clock):
    log: list[str] = []

    def call() -> None:
        clock.now += 0.001  # every call takes 1 ms of the fake clock
        log.append("call")

    timed = TimedCall(call, SamplePlan(warmup_seconds=0.0025, batch_seconds=0.01))
    assert timed.calls == 10
    log.clear()
    events: list[str] = []

    class Bench:
        timer = staticmethod(timing.per_call_clock)
        warmup_time = 0.0
        repeat = (4, 4, 60.0)

        def setup(self) -> None:
            events.append("warm-up")
            timed.warm_up()

        def time_it(self) -> None:
            events.append("batch")
            timed.batch()

    result = _asv_time(Bench(), "time_it")
    # asv divides by its number (1); the clock divided by the batch's ten calls
    assert result["number"] == 1
    assert result["samples"] == pytest.approx([0.001] * 4, rel=1e-9)
    assert events == ["warm-up", "batch"] * 4
    # a warm-up burst is at least one call and lasts at least warmup_seconds (3 calls of 1 ms)
    assert log == (["call"] * 3 + ["call"] * 10) * 4
    assert timed.warmups == timed.batches == 4


def test_calibration_counts_a_stream_as_long_as_a_batch(clock):
    plan = SamplePlan(warmup_seconds=0.0, batch_seconds=0.02)
    step = {"seconds": 0.001}

    def call() -> None:
        clock.now += step["seconds"]

    assert TimedCall(call, plan).calls == 20
    step["seconds"] = 0.5  # a call longer than a batch is timed alone, after one calibration call
    assert TimedCall(call, plan).calls == 1


def test_only_a_long_calls_calibration_stream_is_a_sample(clock):
    plan = SamplePlan(warmup_seconds=0.0, batch_seconds=0.02)
    durations: list[float] = []

    def call() -> None:
        clock.now += durations.pop(0) if durations else 0.5

    long_call = TimedCall(call, plan)  # 0.5 s: 25 batches
    assert long_call.calls == 1 and long_call.calibration_sample() == pytest.approx(0.5)
    durations[:] = [0.03]  # one call, but under ten batches: the call that crossed the batch length
    assert TimedCall(call, plan).calibration_sample() is None
    durations[:] = [0.003] * 7  # a stream of short calls ends on whichever crosses the batch length
    steady = TimedCall(call, plan)
    assert steady.calls == 7 and steady.calibration == (7, pytest.approx(0.021))
    assert steady.calibration_sample() is None


def test_no_garbage_is_collected_while_calibrating():
    import gc

    seen: list[bool] = []
    TimedCall(lambda: seen.append(gc.isenabled()), SamplePlan(warmup_seconds=0.0, batch_seconds=0.001))
    assert seen and not any(seen)
    assert gc.isenabled()


def test_calls_per_batch_are_bounded():
    plan = SamplePlan(warmup_seconds=0.0, batch_seconds=0.01, max_calls=500)
    assert calls_for(0.5, plan) == 1  # a call longer than a batch is timed alone
    assert calls_for(1e-9, plan) == 500
    assert calls_for(0.0, plan) == 500
    assert calls_for(0.001, plan) == 10


def test_the_op_classes_warm_up_before_every_sample_through_asv(tmp_path):
    from benchmarks.harness.suite import release_prepared
    from benchmarks.ops.activations import ReLU
    from tests.ops.asv_way import asv_benchmark

    bench = ReLU()
    params = (ReLU.params[0][0], "float32", "torch-cpu")
    asv = asv_benchmark(bench, "time_forward", params, str(tmp_path))
    assert not asv.do_setup()
    try:
        result = asv.run(*asv._build_params())
        timed = bench.run.timed
        samples = len(result["samples"])
        assert samples == ReLU.repeat  # a fixed count per round: the detector splits rounds by it
        assert timed.warmups == samples and timed.batches == samples
        assert timed.calls >= 1 and all(s > 0 for s in result["samples"])
    finally:
        asv.do_teardown()
        release_prepared()


def test_a_sample_taken_here_runs_without_garbage_collection_as_asvs_do():
    import gc

    seen: list[bool] = []
    timed = TimedCall(lambda: seen.append(gc.isenabled()), SamplePlan(warmup_seconds=0.0, batch_seconds=1e-4))
    seen.clear()
    assert gc.isenabled()
    assert timed.sample() > 0
    assert seen and not any(seen), "a collection could have run inside the timed batch"
    assert gc.isenabled()
