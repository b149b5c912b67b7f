"""The change detector: known steps on synthetic series are found (both directions, with recovery and
the other framework's figure) and nothing else; machines are never mixed; bad files are named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tools import detect

COLUMNS = ["result", "params", "version", "started_at", "duration", "stats_ci_99_a", "stats_ci_99_b",
           "stats_q_25", "stats_q_75", "stats_number", "stats_repeat", "samples"]  # fmt: skip
SETTINGS = detect.Settings()


def _samples(rng: np.random.Generator, median: float, spread: float, n: int = 18) -> list[float]:
    return list(median * np.exp(rng.normal(0.0, spread, n)))


def _write(path: Path, machine: str, series: dict[str, dict[str, list[float]]]) -> Path:
    """A results file: benchmark -> {backend: samples}."""
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
    return path


def _timeline(tmp_path: Path, machine: str, medians: list[float], spread: float, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    files = []
    for i, m in enumerate(medians):
        series = {
            "ops.a.Op.time_forward": {
                "mlx-cpu": _samples(rng, m, spread),
                "torch-cpu": _samples(rng, 1e-4, spread),
            },
            "ops.a.Steady.time_forward": {"mlx-cpu": _samples(rng, 2e-3, spread)},
        }
        files.append(_write(tmp_path / machine / f"p{i}.json", machine, series))
    return files


LABELS = ["0.30", "0.31", "0.32", "0.33", "0.34", "0.35"]


def test_known_steps_are_found_in_both_directions_and_nothing_else(tmp_path):
    medians = [1e-3, 1e-3, 1e-3, 1.3e-3, 1.3e-3, 0.95e-3]
    series = detect.series_from(_timeline(tmp_path, "vm", medians, spread=0.03))
    changes = detect.detect(series, LABELS, SETTINGS)
    assert [(c.point, c.kind, c.series) for c in changes] == [
        ("0.35", "improvement", "ops.a.Op.time_forward(8x8, mlx-cpu)"),
        ("0.33", "regression", "ops.a.Op.time_forward(8x8, mlx-cpu)"),
    ]
    regression = changes[1]
    assert regression.previous == "0.32" and 1.2 < regression.ratio < 1.4
    assert regression.ci_low > 1.1 and regression.q_value < SETTINGS.alpha
    assert regression.recovered_at == "0.35", "0.95 ms is back inside the band around 1 ms"
    assert regression.other and regression.other["torch-cpu"] == pytest.approx(1e-4, rel=0.1)


def test_noise_alone_is_never_flagged(tmp_path):
    flags = 0
    for seed in range(5):
        files = _timeline(tmp_path / str(seed), "vm", [1e-3] * 6, spread=0.08, seed=seed)
        flags += len(detect.detect(detect.series_from(files), LABELS, SETTINGS))
    assert flags == 0


def test_a_step_inside_the_series_own_spread_is_not_flagged(tmp_path):
    # relative IQR of lognormal(0.25) is ~0.34: the band is ~0.67, a 1.3x step stays inside
    series = detect.series_from(_timeline(tmp_path, "vm", [1e-3, 1e-3, 1.3e-3, 1.3e-3, 1.3e-3, 1.3e-3], 0.25))
    assert detect.detect(series, LABELS, SETTINGS) == []
    assert series[next(iter(series))].noise() > 0.2


def test_machines_are_never_one_series(tmp_path):
    files_a = _timeline(tmp_path / "a", "host-a", [1e-3] * 3, 0.03)
    files_b = _timeline(tmp_path / "b", "host-b", [2e-3] * 3, 0.03)
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
