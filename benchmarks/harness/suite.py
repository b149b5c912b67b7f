"""Turns an ``OpSpec`` into an asv benchmark class: params (case, dtype, backend), setup/teardown, the
timed method and the ``track_`` metrics.  The classes stay declarative: ``Softmax = op_benchmark(SOFTMAX)``.
"""

from __future__ import annotations

from benchmarks.harness.backends import selected_backend_names
from benchmarks.harness.opspec import OpSpec
from benchmarks.harness.profiles import Profile, active_profile
from benchmarks.harness.run import OpRun
from benchmarks.harness.timing import TimedCall, per_call_clock

PARAM_NAMES = ["case", "dtype", "backend"]

# asv_runner >= 0.3 re-runs setup and teardown around every timed call (asv#966).  Preparing a run
# (inputs, transfer, compile, warm-up) once per process and reusing it keeps those re-runs free and keeps
# compilation out of every sample.  asv gives each parameter combination its own process, so this holds
# one entry in a benchmark process; in-process callers (the tests) keep at most one alive too.
_prepared: dict[tuple[str, ...], OpRun] = {}


def prepared_run(spec: OpSpec, case: str, dtype: str, backend: str, profile: Profile) -> OpRun:
    key = (spec.name, case, dtype, backend, profile.name)
    run = _prepared.get(key)
    if run is None:
        release_prepared()
        run = OpRun.prepare(spec, case, dtype, backend, profile)
        _prepared[key] = run
    return run


def warm_up_prepared(*params: str) -> None:
    """The warm-up burst before a sample of the run this process prepared (harness/timing.py)."""
    for run in _prepared.values():
        run.timed.warm_up()


def release_prepared() -> None:
    for run in _prepared.values():
        run.release()
    _prepared.clear()


def op_dtypes(spec: OpSpec) -> list[str]:
    profile = active_profile()
    return ["float32", *(profile.low_precision_dtypes if spec.low_precision else ())]


def op_benchmark(spec: OpSpec) -> type:
    profile = active_profile()

    class OpBenchmark:
        params = [
            [c.label for c in spec.cases(profile.name)],
            op_dtypes(spec),
            selected_backend_names(),
        ]
        param_names = PARAM_NAMES
        rounds = profile.rounds
        repeat = profile.repeat
        # setup warms up before every sample (asv re-runs it), so asv's own warm-up phase is not needed
        warmup_time = 0.0
        timer = staticmethod(per_call_clock)
        timeout = 600

        def setup(self, case: str, dtype: str, backend: str) -> None:
            self.run = prepared_run(spec, case, dtype, backend, profile)

        def time_forward(self, case: str, dtype: str, backend: str) -> None:
            self.run.timed.batch()

        # asv runs a benchmark function's own ``setup`` after the class's, right before every sample
        # (it re-runs both around each timed call): the warm-up burst belongs to the timing alone, so
        # the track_ processes neither calibrate nor warm up
        time_forward.setup = warm_up_prepared

        def timed_call(self, method: str) -> TimedCall:
            """What a ``time_`` method times, for the fidelity check (tools/fidelity.py)."""
            if method != "time_forward":
                raise KeyError(f"{spec.name} has no timed method {method!r}")
            return self.run.timed

        def track_throughput(self, case: str, dtype: str, backend: str) -> float:
            return self.run.throughput()

        track_throughput.unit = spec.throughput_unit

        def track_peak_memory(self, case: str, dtype: str, backend: str) -> int:
            return self.run.peak_memory_bytes()

        track_peak_memory.unit = "bytes"

        def track_parity_error(self, case: str, dtype: str, backend: str) -> float:
            return self.run.parity_error()

        track_parity_error.unit = "mismatch fraction" if spec.exact else "relative error vs float64"

    OpBenchmark.__name__ = spec.name
    OpBenchmark.__qualname__ = spec.name
    OpBenchmark.__doc__ = spec.note or f"{spec.name}: MLX and torch on the same inputs."
    OpBenchmark.spec = spec
    return OpBenchmark
