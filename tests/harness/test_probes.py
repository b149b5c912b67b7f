"""The op classes' track_ figures: measured once per combination and asv run, from one prepared run,
read by the other track_ processes; skips and failures reach every method that needs them."""

from __future__ import annotations

import pytest

from benchmarks.harness import probes
from benchmarks.harness.run import OpRun
from benchmarks.harness.suite import release_prepared
from tests.conftest import ABSENT_TORCH_BACKEND
from tests.ops.asv_way import run_the_asv_way

KEY = ("Op", "4x4", "float32", "torch-cpu", "quick")


class FakeRun:
    def __init__(self, fail: str | None = None) -> None:
        self.fail = fail
        self.order: list[str] = []

    def _probe(self, name: str, value: float) -> float:
        self.order.append(name)
        if name == self.fail:
            raise ValueError(f"{name} broke")
        return value

    def peak_memory_bytes(self) -> int:
        return int(self._probe("peak_memory", 4096))

    def parity_error(self) -> float:
        return self._probe("parity_error", 1e-7)

    def throughput(self) -> float:
        return self._probe("throughput", 12.5)


def test_the_first_reader_measures_every_probe_the_others_read(tmp_path):
    prepared: list[FakeRun] = []

    def prepare() -> FakeRun:
        prepared.append(FakeRun())
        return prepared[-1]

    for _ in range(3):
        probes.load(str(tmp_path), KEY, prepare)
    assert len(prepared) == 1
    # peak memory first, as in a process that has made no call yet
    assert prepared[0].order == ["peak_memory", "parity_error", "throughput"]
    assert probes.figure(str(tmp_path), KEY, "peak_memory") == 4096
    assert probes.figure(str(tmp_path), KEY, "throughput") == 12.5
    # another combination, or another run's folder, is measured afresh
    probes.load(str(tmp_path), (*KEY[:3], "mlx-cpu", "quick"), prepare)
    (tmp_path / "other-run").mkdir()
    probes.load(str(tmp_path / "other-run"), KEY, prepare)
    assert len(prepared) == 3


def test_a_skip_is_kept_and_raised_for_every_method(tmp_path):
    calls = []

    def prepare() -> OpRun:
        calls.append(1)
        raise NotImplementedError("mlx-cpu does not run bfloat16 here")

    for _ in range(2):
        with pytest.raises(NotImplementedError, match="does not run bfloat16"):
            probes.load(str(tmp_path), KEY, prepare)
    assert len(calls) == 1


def test_a_failing_probe_fails_alone(tmp_path):
    probes.load(str(tmp_path), KEY, lambda: FakeRun(fail="parity_error"))
    with pytest.raises(RuntimeError, match="parity_error: ValueError: parity_error broke"):
        probes.figure(str(tmp_path), KEY, "parity_error")
    assert probes.figure(str(tmp_path), KEY, "throughput") == 12.5


def test_each_probe_says_how_long_it_took_even_when_it_fails(monkeypatch):
    clock = {"now": 0.0}
    monkeypatch.setattr(probes.time, "perf_counter", lambda: clock["now"])
    cost = {"peak_memory": 1.0, "parity_error": 4.0, "throughput": 0.5}

    class Costly(FakeRun):
        def _probe(self, name: str, value: float) -> float:
            clock["now"] += cost[name]
            return super()._probe(name, value)

    found = probes.measure(Costly(fail="parity_error"))
    assert found["seconds"] == cost  # each its own, the failing one included
    assert "parity_error" in found["errors"]
    recorded = []
    monkeypatch.setattr(probes.clocks, "record", lambda *args: recorded.append(args))
    found = probes.measure_recorded(KEY, Costly())
    assert recorded[0][2] == "after probes" and recorded[0][4] == {"probe_s": cost}


def _counting_prepares(monkeypatch) -> list[tuple]:
    """Every ``OpRun.prepare`` from now on, recorded (a process that prepares pays a device context)."""
    prepares: list[tuple] = []
    real = OpRun.prepare.__func__

    def counting(cls, *args, **kwargs):
        prepares.append(args[:4])
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(OpRun, "prepare", classmethod(counting))
    return prepares


def test_the_three_track_methods_of_an_op_prepare_it_once(tmp_path, monkeypatch):
    from benchmarks.ops.activations import ReLU

    prepares = _counting_prepares(monkeypatch)
    params = (ReLU.params[0][0], "float32", "torch-cpu")
    figures = {}
    for method in ("track_parity_error", "track_peak_memory", "track_throughput"):
        release_prepared()  # as in a fresh benchmark process
        figures[method] = run_the_asv_way(ReLU(), method, params, str(tmp_path))
    assert len(prepares) == 1
    assert figures["track_throughput"] > 0 and figures["track_peak_memory"] >= 0
    assert figures["track_parity_error"] <= 1e-4
    # a backend absent here is skipped by every track method (the tests declare every backend)
    absent = (ReLU.params[0][0], "float32", ABSENT_TORCH_BACKEND)
    for method in ("track_parity_error", "track_throughput"):
        assert run_the_asv_way(ReLU(), method, absent, str(tmp_path)) is None
    release_prepared()


def test_the_first_timing_process_measures_the_probes_its_track_processes_read(tmp_path, monkeypatch):
    from benchmarks.ops.activations import ReLU

    prepares = _counting_prepares(monkeypatch)
    params = (ReLU.params[0][0], "float32", "torch-cpu")
    release_prepared()
    assert min(run_the_asv_way(ReLU(), "time_forward", params, str(tmp_path))["samples"]) > 0
    assert len(prepares) == 1 and len(list(tmp_path.glob("probes-*.json"))) == 1
    for method in ("track_parity_error", "track_peak_memory", "track_throughput"):
        release_prepared()  # a fresh track_ process: reads, never prepares
        assert run_the_asv_way(ReLU(), method, params, str(tmp_path)) is not None
    assert len(prepares) == 1
    # a later round's timing process finds them and measures nothing again
    release_prepared()
    before = probes.probe_file(str(tmp_path), (ReLU.__name__, *params, "quick")).read_text()
    run_the_asv_way(ReLU(), "time_forward", params, str(tmp_path))
    assert probes.probe_file(str(tmp_path), (ReLU.__name__, *params, "quick")).read_text() == before
    release_prepared()
