"""A grouped run (harness/groups.py): one measuring process per op and backend, whose samples and probes
asv's processes hand on unchanged; a crash or a hang fails only the parameter set it hit."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from benchmarks.harness import groups, probes
from benchmarks.harness.profiles import ProfileError, get_profile
from benchmarks.harness.suite import op_benchmark
from benchmarks.harness.timing import arm_replay, replay_clock, reset_clock
from benchmarks.ops import all_specs
from tests.ops.asv_way import run_the_asv_way

ROOT = Path(__file__).resolve().parents[2]
GROUPED = dataclasses.replace(get_profile("quick"), rounds=1, repeat=3, grouped=True)


@pytest.fixture(autouse=True)
def _measured_here(monkeypatch):
    """Tests in this process measure groups here: a fork after torch ran on the CPU (earlier tests) can
    hang in the child on GNU OpenMP's thread pool.  asv's processes never run an op before forking, and
    the forked path is tested below in fresh interpreters."""
    monkeypatch.setattr(groups, "fork_is_safe", lambda: False)


def _spec(name: str):
    return next(s for s in all_specs() if s.name == name)


def test_replay_clock_spans_exactly_the_armed_sample():
    reset_clock()
    arm_replay(0.25)
    start = replay_clock()
    assert replay_clock() - start == 0.25
    # unarmed, the clock stands still: asv's next pair reads zero unless a sample is armed again
    assert replay_clock() - replay_clock() == 0.0
    arm_replay(1e-6)
    start = replay_clock()
    assert replay_clock() - start == pytest.approx(1e-6)


def test_a_grouped_profile_takes_one_round():
    with pytest.raises(ProfileError, match="one round, not 4"):
        dataclasses.replace(get_profile("quick"), grouped=True)


def test_the_accelerator_plan_is_grouped_and_the_cpu_plan_is_not():
    full = get_profile("full")
    assert not full.grouped
    assert full.planned_for(["mlx-gpu", "torch-cuda"]).grouped
    assert not full.planned_for(["mlx-cpu", "torch-cuda"]).grouped


def test_group_members_keep_the_float32_matmul_modes_apart():
    members = groups.group_members(["a", "b"], ["float32", "tf32", "bfloat16"], "mlx-gpu", "bfloat16")
    assert members == [
        ("a", "float32", "mlx-gpu"),
        ("a", "bfloat16", "mlx-gpu"),
        ("b", "float32", "mlx-gpu"),
        ("b", "bfloat16", "mlx-gpu"),
    ]
    tf32 = groups.group_members(["a"], ["float32", "tf32"], "torch-cuda", "tf32")
    assert tf32 == [("a", "tf32", "torch-cuda")]


def test_asv_records_the_samples_the_group_measured(tmp_path):
    cls = op_benchmark(_spec("GELU"), GROUPED)
    assert cls.timer is replay_clock
    cases, dtypes, _ = cls.params
    scratch = str(tmp_path)
    first = (cases[0], "float32", "torch-cpu")
    timing = run_the_asv_way(cls(), "time_forward", first, scratch)
    group = groups.Group(scratch, cls.spec, GROUPED)
    # the first process measured its whole group: every case and dtype on the backend
    members = groups.group_members(cases, dtypes, "torch-cpu", "float32")
    assert len(members) == len(cases) * len(dtypes) > 1
    assert group.unmeasured(members) == []
    for params in members:
        found = json.loads(group.file(params).read_text())
        timing = timing if params == first else run_the_asv_way(cls(), "time_forward", params, scratch)
        assert timing["number"] == 1
        assert timing["samples"] == pytest.approx(found["samples"], rel=1e-9, abs=1e-15)
        assert len(found["samples"]) == GROUPED.repeat and min(found["samples"]) > 0
        throughput = run_the_asv_way(cls(), "track_throughput", params, scratch)
        assert throughput == found["figures"]["throughput"] > 0
        parity = run_the_asv_way(cls(), "track_parity_error", params, scratch)
        assert parity == found["figures"]["parity_error"]
    # another backend's group was not measured by that
    assert group.unmeasured([(cases[0], "float32", "mlx-cpu")]) == [(cases[0], "float32", "mlx-cpu")]


def test_a_skipped_parameter_set_is_skipped_in_every_process(tmp_path):
    cls = op_benchmark(_spec("GELU"), GROUPED)
    cases, _, _ = cls.params
    params = (cases[1], "float32", "torch-compile")  # the quick profile compiles only the first case
    assert run_the_asv_way(cls(), "time_forward", params, str(tmp_path)) is None
    assert run_the_asv_way(cls(), "track_throughput", params, str(tmp_path)) is None
    found = json.loads(groups.Group(str(tmp_path), cls.spec, GROUPED).file(params).read_text())
    assert "compiles only the first float32 case" in found["skip"]


def _run_group_in_fresh_python(tmp_path: Path, fault: str, stall_seconds: float = 60.0) -> dict:
    """A group measured through forked measuring processes (a fresh interpreter: no device in use yet),
    with ``fault`` done in place of measuring the second parameter set."""
    script = textwrap.dedent(
        f"""
        import dataclasses, json, os, sys, time
        from benchmarks.harness import groups
        from benchmarks.harness.profiles import get_profile
        from benchmarks.ops import all_specs

        profile = dataclasses.replace(get_profile("quick"), rounds=1, repeat=2, grouped=True)
        spec = next(s for s in all_specs() if s.name == "ReLU")
        cases = [c.label for c in spec.cases("quick")]
        members = [(cases[0], "float32", "torch-cpu"), (cases[0], "bfloat16", "torch-cpu"),
                   (cases[-1], "float32", "torch-cpu")]
        measure = groups.measure_one
        poisoned = []

        def faulty(spec, params, profile):
            if poisoned:  # as a CUDA context after an illegal memory access
                return {{"error": "every later set fails in this process"}}
            if params == members[1]:
                print("about to fail", flush=True)
                {fault}
            return measure(spec, params, profile)

        groups.measure_one = faulty
        assert groups.fork_is_safe()
        group = groups.Group({str(tmp_path)!r}, spec, profile)
        groups.measure_group(group, members, stall_seconds={stall_seconds})
        print(json.dumps([json.loads(group.file(p).read_text()) for p in members]))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_crash_fails_only_the_parameter_set_it_hit(tmp_path):
    first, crashed, last = _run_group_in_fresh_python(tmp_path, "os.abort()")
    assert len(first["samples"]) == 2 and len(last["samples"]) == 2
    assert "killed by signal 6 while measuring this parameter set" in crashed["error"]
    assert "about to fail" in crashed["error"]  # the measuring process's last words
    assert list(tmp_path.glob("group-*.log")) == []


def test_a_set_that_fails_ends_its_measuring_process(tmp_path):
    fault = 'poisoned.append(1); return {"error": "RuntimeError: an illegal memory access"}'
    first, failed, last = _run_group_in_fresh_python(tmp_path, fault)
    assert failed == {"error": "RuntimeError: an illegal memory access"}
    # the next set was measured by a fresh process, not the one left unusable
    assert len(first["samples"]) == 2 and len(last["samples"]) == 2


def test_a_hang_is_stopped_and_fails_only_the_parameter_set_it_hit(tmp_path):
    first, hung, last = _run_group_in_fresh_python(tmp_path, "time.sleep(600)", stall_seconds=2.0)
    assert "stopped after 2 s without finishing it" in hung["error"]
    assert len(first["samples"]) == 2 and len(last["samples"]) == 2


def test_an_error_fails_its_parameter_set_in_asv(tmp_path):
    cls = op_benchmark(_spec("GELU"), GROUPED)
    cases, _, _ = cls.params
    params = (cases[0], "float32", "torch-cpu")
    group = groups.Group(str(tmp_path), cls.spec, GROUPED)
    probes.store(group.file(params), {"error": "the measuring process exited with status 1"})
    with pytest.raises(RuntimeError, match="exited with status 1"):
        run_the_asv_way(cls(), "time_forward", params, str(tmp_path))
    with pytest.raises(RuntimeError, match="exited with status 1"):
        run_the_asv_way(cls(), "track_peak_memory", params, str(tmp_path))


def test_compiled_calls_of_one_function_each_compile_after_forgetting(monkeypatch):
    torch = pytest.importorskip("torch")
    from benchmarks.harness.backends import get_backend

    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 1)
    backend = get_backend("torch-compile")
    backend.activate()

    def double(x):
        return x * 2

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    for n in (3, 5, 7):
        backend.prepare(double, [torch.ones(n)])
        backend.forget_compiled()
    # one graph per shape: without forgetting, the second shape would hit the recompile limit of 1 and
    # run eagerly
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 3


def test_grouped_and_per_process_classes_share_asv_version(tmp_path):
    from benchmarks.harness.timing import MEASUREMENT_VERSION
    from tests.ops.asv_way import asv_benchmark

    spec = _spec("GELU")
    per_process = op_benchmark(spec, get_profile("quick"))
    grouped = op_benchmark(spec, GROUPED)
    params = (per_process.params[0][0], "float32", "torch-cpu")
    for method in ("time_forward", "track_throughput", "track_parity_error"):
        benches = [asv_benchmark(cls(), method, params, str(tmp_path)) for cls in (per_process, grouped)]
        assert {b.version for b in benches} == {MEASUREMENT_VERSION}, method


def test_a_sets_samples_are_given_to_asv_once_per_run(tmp_path):
    spec = _spec("GELU")
    params = (op_benchmark(spec, GROUPED).params[0][0], "float32", "torch-cpu")
    assert run_the_asv_way(op_benchmark(spec, GROUPED)(), "time_forward", params, str(tmp_path))
    # a second round is another process (another class object here): the same samples again would
    # count twice in asv's statistics
    with pytest.raises(RuntimeError, match="given once in this run"):
        run_the_asv_way(op_benchmark(spec, GROUPED)(), "time_forward", params, str(tmp_path))


def test_a_timing_that_fails_keeps_the_probes_figures(tmp_path, monkeypatch):
    from benchmarks.harness.timing import TimedCall

    def broken(self):
        raise RuntimeError("the stream broke")

    monkeypatch.setattr(TimedCall, "sample", broken)
    cls = op_benchmark(_spec("GELU"), GROUPED)
    params = (cls.params[0][0], "float32", "torch-cpu")
    with pytest.raises(RuntimeError, match="the stream broke"):
        run_the_asv_way(cls(), "time_forward", params, str(tmp_path))
    assert run_the_asv_way(cls(), "track_throughput", params, str(tmp_path)) > 0


def test_the_measuring_process_ends_with_the_asv_process(tmp_path):
    marker = tmp_path / "child.pid"
    script = textwrap.dedent(
        f"""
        import dataclasses, os, time
        from benchmarks.harness import groups
        from benchmarks.harness.profiles import get_profile
        from benchmarks.ops import all_specs

        profile = dataclasses.replace(get_profile("quick"), rounds=1, repeat=2, grouped=True)
        spec = next(s for s in all_specs() if s.name == "ReLU")
        case = spec.cases("quick")[0].label

        def hang(spec, params, profile):
            open({str(marker)!r}, "w").write(str(os.getpid()))
            time.sleep(600)

        groups.measure_one = hang
        groups.measure_group(groups.Group({str(tmp_path)!r}, spec, profile), [(case, "float32", "torch-cpu")])
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() or not marker.read_text():
            assert time.monotonic() < deadline and parent.poll() is None
            time.sleep(0.05)
        child = int(marker.read_text())
    finally:
        parent.kill()  # as asv stops a benchmark process at its timeout
        parent.wait()
    deadline = time.monotonic() + 10
    while _alive(child):
        assert time.monotonic() < deadline, "the measuring process outlived asv's"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has ended, waiting for its reaper


def test_a_gpu_groups_inputs_drawn_ahead_are_noted_in_its_clocks_file(tmp_path, monkeypatch):
    monkeypatch.setenv("ASV_CONF_DIR", str(tmp_path))
    monkeypatch.setattr(groups, "draw_ahead", lambda spec, profile, cases: len(set(cases)))
    spec = _spec("GELU")
    cases = [c.label for c in spec.cases("quick")]
    for backend in ("torch-cpu", "mlx-gpu"):  # mlx-gpu is absent here: its sets are skips
        members = groups.group_members(cases, ["float32"], backend, "float32")
        groups.measure_group(groups.Group(str(tmp_path), spec, GROUPED), members)
    files = list(tmp_path.glob("facts/*/*.clocks.jsonl"))
    rows = [json.loads(line) for path in files for line in path.read_text().splitlines()]
    noted = [(r["benchmark"], r["phase"], r["cases"]) for r in rows]
    assert noted == [("GELU", "inputs drawn ahead", len(cases))]
