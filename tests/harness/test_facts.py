from __future__ import annotations

import math

from benchmarks.harness import facts
from benchmarks.harness.backends import require_backend
from benchmarks.runtime import Runtime


def test_facts_name_versions_blas_and_device(tmp_path, monkeypatch):
    monkeypatch.setenv("ASV_COMMIT", "0123456789abcdef")
    monkeypatch.setenv("ASV_ENV_NAME", "virtualenv-py3.11-test")
    path = facts.facts_path(tmp_path)
    assert path is not None and path.name == "01234567-virtualenv-py3.11-test.jsonl"
    for backend in ("torch-cpu", "mlx-cpu"):
        facts.record(facts.collect(require_backend(backend)), path)
    facts.record(facts.collect(require_backend("torch-cpu")), path)
    lines = facts.read(path)
    assert len(lines) == 3, "appending never rewrites earlier lines"
    torch_facts, mlx_facts = lines[0], lines[1]
    assert torch_facts["backend"] == "torch-cpu" and torch_facts["blas"]
    assert torch_facts["threads"] >= 1 and torch_facts["float32_matmul"] == "ieee"
    assert mlx_facts["framework"] == "mlx" and mlx_facts["framework_version"][0].isdigit()
    assert "device_name" in mlx_facts["device_info"] or "device_info_error" in mlx_facts["device_info"]


def test_facts_are_not_written_outside_asv(monkeypatch):
    monkeypatch.delenv("ASV_CONF_DIR", raising=False)
    assert facts.facts_path() is None


def test_runtime_benchmark_tracks_the_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("ASV_CONF_DIR", str(tmp_path))
    bench = Runtime()
    bench.setup("torch-cpu")
    assert bench.track_facts_recorded("torch-cpu") > 10
    assert bench.track_threads("torch-cpu") >= 1
    assert bench.track_float32_matmul_tf32("torch-cpu") == 0.0
    bench.setup("mlx-cpu")
    assert math.isnan(bench.track_threads("mlx-cpu"))
    assert bench.track_float32_matmul_tf32("mlx-cpu") == 0.0
    assert len(list((tmp_path / "facts").rglob("*.jsonl"))) == 1
