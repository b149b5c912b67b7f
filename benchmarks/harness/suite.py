"""Turns an ``OpSpec`` into an asv benchmark class: params (case, dtype, backend), setup/teardown, the
timed method and the ``track_`` metrics.  The classes stay declarative: ``Softmax = op_benchmark(SOFTMAX)``.
"""

from __future__ import annotations

from typing import Any

from benchmarks.harness import clocks, groups, probes
from benchmarks.harness.backends import selected_backend_names
from benchmarks.harness.facts import noting_skips
from benchmarks.harness.opspec import OpSpec
from benchmarks.harness.profiles import Profile, active_profile
from benchmarks.harness.run import TF32, OpRun, prepare_recorded
from benchmarks.harness.timing import MEASUREMENT_VERSION, TimedCall, arm_replay, per_call_clock, replay_clock

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
        run = _prepared[key] = prepare_recorded(spec, case, dtype, backend, profile)
    return run


def release_prepared() -> None:
    for run in _prepared.values():
        run.release()
    _prepared.clear()


def op_dtypes(spec: OpSpec, profile: Profile | None = None) -> list[str]:
    """float32; float16/bfloat16 where the op declares them; and, for matrix-product-bound ops in a run
    that includes ``torch-cuda`` (an NVIDIA machine), ``tf32`` (float32 data, TF32 tensor-core math),
    labelled beside IEEE float32.  Parameters are fixed before any device is touched, so the run's
    backend list decides; a tf32 case on a backend off CUDA is skipped with the reason."""
    profile = profile or active_profile()
    tf32 = [TF32] if spec.bound == "compute" and "torch-cuda" in selected_backend_names() else []
    first, *rest = profile.stored_dtypes(spec.low_precision)
    return [first, *tf32, *rest]


def op_benchmark(spec: OpSpec, profile: Profile | None = None) -> type:
    profile = profile or active_profile()
    cases = [c.label for c in spec.cases(profile.name)]
    dtypes = op_dtypes(spec, profile)
    replay = groups.Replay()

    def group_figures(scratch: str, case: str, dtype: str, backend: str) -> dict[str, Any]:
        """A grouped run's figures of this parameter set, its group measured first if it was not yet."""
        key = (spec.name, case, dtype, backend, profile.name)
        path = probes.probe_file(scratch, key)
        if not path.exists():
            members = groups.group_members(cases, dtypes, backend, dtype)
            groups.measure_group(groups.Group(scratch, spec, profile), members)
        return probes.raise_unmeasured(replay.figures(path))

    def before_sample(scratch: str, case: str, dtype: str, backend: str) -> None:
        """Before every sample of ``time_forward``.  In a grouped run: arm asv's clock with the next
        sample the group's measuring process took for this parameter set.  Otherwise: prepare once, then
        the warm-up burst; the first process of a combination also measures its probes, right after
        preparing, as a ``track_`` process would: the ``track_`` processes (asv runs them after
        ``time_forward``) then only read them instead of each preparing the op again (a device context,
        the inputs and, for torch.compile, seconds of compilation per process)."""
        with noting_skips(spec.name, (case, dtype, backend)):
            key = (spec.name, case, dtype, backend, profile.name)
            if profile.grouped:
                found = group_figures(scratch, case, dtype, backend)
                arm_replay(replay.next_sample(found, probes.probe_file(scratch, key), key))
                return
            run = prepared_run(spec, case, dtype, backend, profile)
            if run._timed is None:  # before this process's first sample
                probes.load(scratch, key, lambda: run)
            run.timed.warm_up()

    def after_sample(scratch: str, case: str, dtype: str, backend: str) -> None:
        """After every sample of ``time_forward``: the GPU's state (a grouped run's measuring process
        records its own)."""
        # asv runs teardown after a skipped setup too: nothing prepared, nothing to read
        run = _prepared.get((spec.name, case, dtype, backend, profile.name))
        if run is not None:
            done = run.timed.batches
            clocks.record_sample(spec.name, (case, dtype, backend), done, profile.repeat, run.backend)

    def load_probes(scratch: str, case: str, dtype: str, backend: str) -> None:
        """Before a ``track_`` method: this run's probes of the combination, measured by the first."""
        with noting_skips(spec.name, (case, dtype, backend)):
            if profile.grouped:
                group_figures(scratch, case, dtype, backend)
                return
            probes.load(
                scratch,
                (spec.name, case, dtype, backend, profile.name),
                lambda: prepared_run(spec, case, dtype, backend, profile),
            )

    def track(probe: str, unit: str) -> Any:
        def method(self: Any, scratch: str, case: str, dtype: str, backend: str) -> float:
            return probes.figure(scratch, (spec.name, case, dtype, backend, profile.name), probe)

        method.__name__ = f"track_{probe}"
        method.unit = unit  # type: ignore[attr-defined]
        # asv runs a method's own ``setup`` after the class's: a skip is raised there, before the method
        method.setup = load_probes  # type: ignore[attr-defined]
        return method

    class OpBenchmark:
        params = [cases, dtypes, selected_backend_names()]
        param_names = PARAM_NAMES
        rounds = profile.rounds
        repeat = profile.repeat
        # time_forward's own setup warms up before every sample (asv re-runs it), so asv's warm-up phase
        # is not needed
        warmup_time = 0.0
        timer = staticmethod(replay_clock if profile.grouped else per_call_clock)
        # a grouped run's first process of a group measures the whole group
        timeout = (groups.STALL_SECONDS + 60) * len(cases) * len(dtypes) if profile.grouped else 600
        # asv's default version hashes the methods' source: the harness's generic code, the same for
        # every op and different in a grouped run, which measures the same thing.  What a figure means
        # is versioned instead (harness/timing.py), so the two kinds of run share a history.
        version = MEASUREMENT_VERSION

        # One scratch folder per asv run for the probes of every op class (harness/probes.py).
        setup_cache = staticmethod(probes.scratch_folder)

        def setup(self, scratch: str, case: str, dtype: str, backend: str) -> None:
            # Nothing is prepared here: the track_ processes of a combination after the first only read
            # its probes.  Each method's own setup prepares what it needs.
            self.params_set = (case, dtype, backend)

        @property
        def run(self) -> OpRun:
            """The combination prepared in this process (once; asv re-runs setup around every sample)."""
            return prepared_run(spec, *self.params_set, profile)

        def time_forward(self, scratch: str, case: str, dtype: str, backend: str) -> None:
            if not profile.grouped:  # a grouped run's samples were timed by its measuring process
                self.run.timed.batch()

        time_forward.setup = before_sample
        time_forward.teardown = after_sample

        def timed_call(self, method: str) -> TimedCall:
            """What a ``time_`` method times, for the fidelity check (tools/fidelity.py)."""
            if method != "time_forward":
                raise KeyError(f"{spec.name} has no timed method {method!r}")
            return self.run.timed

        track_throughput = track("throughput", spec.throughput_unit)
        track_peak_memory = track("peak_memory", "bytes")
        track_parity_error = track(
            "parity_error", "mismatch fraction" if spec.exact else "relative error vs float64"
        )

    OpBenchmark.__name__ = spec.name
    OpBenchmark.__qualname__ = spec.name
    OpBenchmark.__doc__ = spec.note or f"{spec.name}: MLX and torch on the same inputs."
    OpBenchmark.spec = spec
    return OpBenchmark
