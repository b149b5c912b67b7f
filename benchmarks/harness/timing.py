"""What one recorded time means, defined once for every benchmark and backend.

**A recorded time is the mean time of one call in a steady stream of back-to-back calls**, each call
ending in its backend's synchronisation.  asv takes the samples; each sample is

1. a warm-up burst (``warm_up``), run from the benchmark's ``setup``, which asv re-runs right before
   every sample: calls for at least ``warmup_seconds`` (at least one call), so that the framework's
   worker threads are awake and spinning when the clock starts.  Without it, torch's OpenMP workers
   sleep between samples and a sample times their wake-up: on a 2-core machine shared with two other
   CPU-bound jobs, torch-cpu LayerNorm read 2.1 ms a call through asv where the call takes 0.2 ms;
2. a batch of ``calls`` back-to-back calls (``batch``), the timed region, with ``calls`` calibrated once
   per process so that a batch lasts about ``batch_seconds``: long enough to average over the
   scheduler's time slices on a shared machine, and to make the clock's resolution irrelevant.

asv divides a sample by its ``number`` (1 here: asv_runner re-runs ``setup`` around every timed call, so
it never batches calls itself when a benchmark has a setup).  The batch is therefore divided by
``calls`` through the clock asv reads: benchmark classes set ``timer = per_call_clock``, a clock that
runs ``calls`` times slower than ``time.perf_counter`` while a batch is prepared.  A sample is thus the
per-call time, and asv's statistics (median, quartiles, confidence interval) and ``--record-samples``
apply to per-call times.

In a grouped run (harness/groups.py) the samples are taken the same way, one after the other, by the
process that measures every parameter set of an op on a backend; asv's process for a parameter set then
reads them through ``replay_clock``, which advances by exactly the armed sample between asv's two
readings around the (empty) timed call.

``tools/fidelity.py`` checks the result against an independent bare loop of the same call.
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

# What a recorded time (and an op's probes) means, as asv's benchmark version: a change to the definition
# above bumps it, and asv then keeps the figures made under the old one apart.
MEASUREMENT_VERSION = "steady-stream-1"

_calls_per_sample = 1
# a call at least this many batches long is its own unbiased calibration stream (TimedCall.calibration_sample)
LONG_CALL_BATCHES = 10


def per_call_clock() -> float:
    """``time.perf_counter`` divided by the calls in the batch being timed (see the module's doc)."""
    return time.perf_counter() / _calls_per_sample


@dataclass(frozen=True)
class SamplePlan:
    """How long a warm-up burst and a timed batch last, and the bounds on the calls in a batch."""

    warmup_seconds: float
    batch_seconds: float
    max_calls: int = 10_000


class TimedCall:
    """One prepared call (which must end in its backend's sync), timed the way the module describes."""

    def __init__(self, call: Callable[[], Any], plan: SamplePlan) -> None:
        self.call = call
        self.plan = plan
        # the calibration stream, as (calls, seconds): it is itself a batch when it ran ``calls`` calls
        self.calibration: tuple[int, float] = (0, 0.0)
        self.calls = self._calibrate()
        self.warmups = 0  # warm-up bursts run so far (the tests count them)
        self.batches = 0

    def _calibrate(self) -> int:
        """Calls that fit in one batch, counted in a stream as long as a batch (the call was warmed up
        when it was prepared): a count over a stream, unlike the median of a few single calls, is not
        thrown off by one call that waited for a core."""
        with _no_collection():
            calls, start = 0, time.perf_counter()
            while True:
                self.call()
                calls += 1
                elapsed = time.perf_counter() - start
                if elapsed >= self.plan.batch_seconds or calls >= self.plan.max_calls:
                    self.calibration = (calls, elapsed)
                    return calls_for(elapsed / calls, self.plan)

    def calibration_sample(self) -> float | None:
        """The calibration stream's one call, where the call lasted ``LONG_CALL_BATCHES`` batches or more
        (then a batch is that one call), else None.  A stream of shorter calls ends on whichever call
        crosses the batch length, more often a slow one, so only a long call's is an unbiased sample.
        A workload step of seconds (warmed up beforehand) is then not run once more only to be counted."""
        counted, elapsed = self.calibration
        if counted == self.calls == 1 and elapsed >= LONG_CALL_BATCHES * self.plan.batch_seconds:
            return elapsed
        return None

    def warm_up(self) -> None:
        """The burst before a sample; also arms ``per_call_clock`` for this call's batch."""
        global _calls_per_sample
        deadline = time.perf_counter() + self.plan.warmup_seconds
        self.call()
        while time.perf_counter() < deadline:
            self.call()
        self.warmups += 1
        _calls_per_sample = self.calls

    def batch(self) -> None:
        """The timed region: ``calls`` back-to-back calls."""
        call = self.call
        for _ in range(self.calls):
            call()
        self.batches += 1

    def sample(self) -> float:
        """One sample timed here rather than by asv (workload jobs take theirs back to back, so the
        stream stays steady without a warm-up burst between samples): seconds per call of a batch."""
        with _no_collection():
            start = time.perf_counter()
            self.batch()
            return (time.perf_counter() - start) / self.calls


@contextlib.contextmanager
def _no_collection() -> Iterator[None]:
    """As asv's timer does around a timed call: no garbage collection inside a timed stream."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def calls_for(per_call_seconds: float, plan: SamplePlan) -> int:
    """Calls in a batch of about ``plan.batch_seconds``: at least one, at most ``plan.max_calls``."""
    if per_call_seconds <= 0:
        return plan.max_calls
    return max(1, min(plan.max_calls, math.ceil(plan.batch_seconds / per_call_seconds)))


class _Replay:
    reading = 0.0
    armed: float | None = None


def arm_replay(sample: float) -> None:
    """The sample asv's next reading pair of ``replay_clock`` spans (set by the setup before it)."""
    _Replay.armed = sample


def replay_clock() -> float:
    """The clock of a grouped run: its first reading after ``arm_replay`` is where it stands, the next
    one that plus the armed sample.  Unarmed, it stands still (a sample of zero is an error upstream)."""
    now = _Replay.reading
    if _Replay.armed is not None:
        _Replay.reading += _Replay.armed
        _Replay.armed = None
    return now


def reset_clock() -> None:
    """Back to one call per sample (a benchmark process measures one thing; the tests reuse theirs)."""
    global _calls_per_sample
    _calls_per_sample = 1
    _Replay.armed = None
