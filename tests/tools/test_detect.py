"""The change detector: known steps on synthetic series are found (both directions, with recovery and
the other framework's figure) and nothing else; machines are never mixed; bad files are named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from tools import detect, ratios

COLUMNS = ["result", "params", "version", "started_at", "duration", "stats_ci_99_a", "stats_ci_99_b",
           "stats_q_25", "stats_q_75", "stats_number", "stats_repeat", "samples"]  # fmt: skip
SETTINGS = detect.Settings()


ROUNDS, PER_ROUND = 4, 5


def _samples(
    rng: np.random.Generator, median: float, process_sd: float, sample_sd: float = 0.01, rounds: int = ROUNDS
) -> list[float]:
    """A point's samples as asv records them: ``rounds`` processes of PER_ROUND samples, one after the
    other; each process runs at its own speed (``process_sd``, the shared machine's process luck)."""
    out: list[float] = []
    for _ in range(rounds):
        speed = median * np.exp(rng.normal(0.0, process_sd))
        out += list(speed * np.exp(rng.normal(0.0, sample_sd, PER_ROUND)))
    return out


def _write(path: Path, machine: str, series: dict[str, dict[str, list[float]]]) -> Path:
    """A results file: benchmark -> {backend: samples}; benchmarks.json beside the machine folders."""
    results = {}
    for name, by_backend in series.items():
        backends = list(by_backend)
        samples = [by_backend[b] for b in backends]
        params = [["'8x8'"], [f"'{b}'" for b in backends]]
        medians = [float(np.median(s)) for s in samples]
        results[name] = [medians, params, "v", 0, 1.0, None, None, None, None, None, None, samples]
    data = {"version": 2, "commit_hash": path.stem, "env_name": "env", "params": {"machine": machine},
            "result_columns": COLUMNS, "results": results}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    listing = {n: {"type": "time", "rounds": ROUNDS, "repeat": PER_ROUND} for n in series if ".time_" in n}
    (path.parent.parent / "benchmarks.json").write_text(json.dumps({**listing, "version": 2}))
    return path


def _timeline(
    tmp_path: Path, machine: str, medians: list[float], process_sd: float, seed: int = 0
) -> list[Path]:
    rng = np.random.default_rng(seed)
    files = []
    for i, m in enumerate(medians):
        series = {
            "ops.a.Op.time_forward": {
                "mlx-cpu": _samples(rng, m, process_sd),
                "torch-cpu": _samples(rng, 1e-4, process_sd),
            },
            "ops.a.Steady.time_forward": {"mlx-cpu": _samples(rng, 2e-3, process_sd)},
        }
        files.append(_write(tmp_path / machine / f"p{i}.json", machine, series))
    return files


LABELS = ["0.30", "0.31", "0.32", "0.33", "0.34", "0.35"]


def test_known_steps_are_found_in_both_directions_and_nothing_else(tmp_path):
    medians = [1e-3, 1e-3, 1e-3, 1.3e-3, 1.3e-3, 0.95e-3]
    series = detect.series_from(_timeline(tmp_path, "vm", medians, process_sd=0.02))
    changes = detect.detect(series, LABELS, SETTINGS)
    assert [(c.point, c.kind, c.series) for c in changes] == [
        ("0.35", "improvement", "ops.a.Op.time_forward(8x8, mlx-cpu)"),
        ("0.33", "regression", "ops.a.Op.time_forward(8x8, mlx-cpu)"),
    ]
    regression = changes[1]
    assert regression.previous == "0.32" and 1.2 < regression.ratio < 1.4
    assert regression.ci_low > 1.1 and regression.p_value < 0.01
    assert regression.evidence == "processes" and regression.confirmed
    assert regression.recovered_at == "0.35", "0.95 ms is back inside the band around 1 ms"
    assert regression.other and regression.other["torch-cpu"] == pytest.approx(1e-4, rel=0.1)


def test_process_luck_alone_is_never_flagged_though_every_sample_differs(tmp_path):
    """Processes 8% apart (the shared VM's luck): the samples of two points differ by Mann-Whitney,
    and yet nothing is flagged, since the process medians are what is compared."""
    flags, sample_tests_passed = 0, 0
    for seed in range(5):
        files = _timeline(tmp_path / str(seed), "vm", [1e-3] * 6, process_sd=0.08, seed=seed)
        series = detect.series_from(files)
        flags += len(detect.detect(series, LABELS, SETTINGS))
        for entry in series.values():
            for i, j in detect.pairs(entry):
                p = stats.mannwhitneyu(entry.samples[i], entry.samples[j]).pvalue
                sample_tests_passed += p < 0.01
    assert flags == 0
    assert sample_tests_passed > 10, "the per-sample test would have flagged process luck"


def test_a_series_that_jumps_between_two_speeds_is_not_flagged(tmp_path):
    """Bimodal processes (torch-cpu's OpenMP workers: 1x or 1.8x per process) make a wide band."""
    rng = np.random.default_rng(3)
    files = []
    for i in range(6):
        samples = []
        for _ in range(ROUNDS):
            speed = 1e-3 * (1.8 if rng.random() < 0.4 else 1.0)
            samples += list(speed * np.exp(rng.normal(0, 0.01, PER_ROUND)))
        files.append(
            _write(tmp_path / "vm" / f"p{i}.json", "vm", {"ops.a.Op.time_forward": {"torch-cpu": samples}})
        )
    series = detect.series_from(files)
    assert detect.detect(series, LABELS, SETTINGS) == []


def test_one_process_per_point_is_confirmed_only_by_the_next_point(tmp_path):
    """Workload metrics come from one process per point: a step counts once the next point holds it."""
    rng = np.random.default_rng(1)
    medians = [1.0, 1.0, 1.5, 1.0, 1.5, 1.5]
    files = [
        _write(
            tmp_path / "vm" / f"p{i}.json", "vm",
            {"workloads.w.Job.track_step_seconds": {"mlx-cpu": _samples(rng, m, 0.0, rounds=2)}},
        )
        for i, m in enumerate(medians)
    ]  # fmt: skip
    changes = detect.detect(detect.series_from(files), LABELS, SETTINGS)
    found = {(c.point, c.kind): c for c in changes}
    assert set(found) == {("0.32", "regression"), ("0.33", "improvement"), ("0.34", "regression")}
    assert all(c.evidence == "samples" for c in changes)
    assert not found[("0.32", "regression")].confirmed, "0.33 went back"
    assert found[("0.34", "regression")].confirmed, "0.35 holds it"
    assert found[("0.32", "regression")].recovered_at == "0.33"


def test_a_machine_phase_moves_timings_but_not_the_mlx_torch_ratio(tmp_path):
    """At 0.32 the whole machine runs 1.4x slower (both frameworks, every process) and at 0.34 MLX alone
    slows 1.5x: the ratio series flags only the second."""
    rng = np.random.default_rng(2)
    files = []
    for i in range(6):
        phase = 1.4 if i == 2 else 1.0
        mlx = 1.5e-3 if i >= 4 else 1e-3
        files.append(
            _write(tmp_path / "vm" / f"p{i}.json", "vm", {"ops.a.Op.time_forward": {
                "mlx-cpu": _samples(rng, mlx * phase, 0.02),
                "torch-cpu": _samples(rng, 1e-4 * phase, 0.02),
            }})
        )  # fmt: skip
    timings = detect.series_from(files)
    pairs = ratios.ratio_series(timings)
    assert list(pairs) == ["vm|env|ops.a.Op.time_forward(8x8, mlx-cpu/torch-cpu)"]
    ratio = pairs[next(iter(pairs))]
    assert ratio.unit == "ratio" and ratio.rounds == ROUNDS and len(ratio.samples[0]) == ROUNDS
    assert {(c.point, c.series) for c in detect.detect(timings, LABELS, SETTINGS)} >= {
        ("0.32", "ops.a.Op.time_forward(8x8, torch-cpu)")
    }, "the phase shows in the plain timings"
    changes = detect.detect(pairs, LABELS, SETTINGS)
    assert [(c.point, c.kind, c.unit) for c in changes] == [("0.34", "regression", "ratio")]
    assert changes[0].ratio == pytest.approx(1.5, rel=0.1)
    standing = ratios.standing(pairs.values(), LABELS)
    assert len(standing) == 1 and standing[0].point == "0.35"
    assert standing[0].geometric_mean == pytest.approx(15, rel=0.1)


def test_machines_are_never_one_series(tmp_path):
    files_a = _timeline(tmp_path / "a", "host-a", [1e-3] * 3, 0.02)
    files_b = _timeline(tmp_path / "b", "host-b", [2e-3] * 3, 0.02)
    series = detect.series_from([files_a[0], files_b[1], files_a[2]])
    machines = {s.machine for s in series.values()}
    assert machines == {"host-a", "host-b"}
    for s in series.values():
        present = [i for i, x in enumerate(s.samples) if x]
        assert present == ([0, 2] if s.machine == "host-a" else [1])
    assert detect.detect(series, LABELS[:3], SETTINGS) == [], "a 2x machine difference is no change"


def test_bad_files_are_named(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"results": ')
    with pytest.raises(detect.DetectError, match=r"broken\.json: not an asv results file"):
        detect.series_from([broken])
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"version": 1, "result_columns": [], "results": {}}))
    with pytest.raises(detect.DetectError, match=r"old\.json: asv results format 1; this reads version 2"):
        detect.series_from([old])
    good = _timeline(tmp_path / "c", "vm", [1e-3], 0.02)[0]
    (good.parent.parent / "benchmarks.json").write_text("{")
    with pytest.raises(detect.DetectError, match=r"benchmarks\.json: not asv's benchmark list"):
        detect.series_from([good])


def test_a_point_measured_with_another_plan_is_not_split_into_processes(tmp_path):
    """The benchmark list holds one machine's plan (4 processes of 5 samples here); a GPU machine's
    point of one process of 8 samples (the quick profile's accelerator plan) must not be cut into 4
    made-up processes of 2."""
    rng = np.random.default_rng(3)
    name = "ops.a.Op.time_forward"
    cpu = _write(tmp_path / "vm" / "p0.json", "vm", {name: {"mlx-cpu": _samples(rng, 1.0, 0.05)}})
    gpu = _write(tmp_path / "gpu" / "p0.json", "gpu", {name: {"mlx-gpu": list(rng.normal(1.0, 0.01, 8))}})
    by_machine = {s.machine: s for s in detect.series_from([cpu, gpu]).values()}
    assert len(by_machine["vm"].process_medians(0)) == ROUNDS
    assert by_machine["gpu"].process_medians(1) is None
    # a full-profile point (4 processes of 10) in a folder whose list was written by a quick run (4 of 5)
    full = by_machine["vm"]
    full.samples[0] = [1.0] * 10 + [2.0] * 10 + [3.0] * 10 + [4.0] * 10
    assert full.process_medians(0) == [1.0, 2.0, 3.0, 4.0]
