"""asv end to end over a real timeline of MLX releases: one environment reused across points, results
for each release, a release that cannot install recorded as failed while the others run, and asv find
naming a release."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from asv import util as asv_util
from asv.results import Results

from tools import timeline as tl

ROOT = Path(__file__).resolve().parents[2]
RELEASES = ["0.31.2", "0.32.4", "9.9.9"]  # 9.9.9 does not exist: its point must fail alone
BENCH = "ops.reductions.SumAll.time_forward"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("timeline-project")
    points = tl.mlx_timeline(RELEASES, tl.Companions(linux=sys.platform.startswith("linux")), {})
    tl.build_repo(points, work / "timeline", progress=print)
    conf = asv_util.load_json(str(ROOT / "asv.conf.json"), js_comments=True)
    conf.update(
        repo=str(work / "timeline"),
        benchmark_dir=str(ROOT / "benchmarks"),
        env_dir=str(work / "env"),
        results_dir=str(work / "results"),
        html_dir=str(work / "html"),
        pythons=[f"{sys.version_info.major}.{sys.version_info.minor}"],
    )
    (work / "asv.conf.json").write_text(json.dumps(conf))
    (work / "home").mkdir()
    _asv(work, "machine", "--yes", "--machine", "ci")
    return work


def _asv(work: Path, *args: str) -> subprocess.CompletedProcess:
    env = tl.installer_env(
        dict(os.environ, HOME=str(work / "home"), MTB_PROFILE="quick", MTB_BACKENDS="mlx-cpu,torch-cpu")
    )
    return subprocess.run(
        [sys.executable, "-m", "asv", *args], cwd=work, env=env, capture_output=True, text=True, timeout=1200
    )


def test_asv_runs_every_release_point_in_one_environment(project):
    out = _asv(project, "run", "main", "--bench", BENCH, "--show-stderr")
    text = out.stdout + out.stderr
    assert "<mlx-0.31.2>" in text and "<mlx-0.32.4>" in text
    assert "mlx==9.9.9" in text or "9.9.9" in text, "the failing point's installer message is shown"
    assert len(list((project / "env").iterdir())) == 1, "one environment for every point"
    values = {}
    for path in (project / "results" / "ci").glob("*.json"):
        if path.name == "machine.json":
            continue
        results = Results.load(str(path))
        tag = subprocess.run(
            ["git", "describe", "--tags", results.commit_hash],
            cwd=project / "timeline",
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if BENCH in results.get_all_result_keys():
            params = results.get_result_params(BENCH)
            values[tag] = [v for v in results.get_result_value(BENCH, params) if v is not None and v == v]
    assert set(values) >= {"mlx-0.31.2", "mlx-0.32.4"}
    assert all(len(v) == 8 for tag, v in values.items() if tag != "mlx-9.9.9"), values
    assert not values.get("mlx-9.9.9"), "a point that failed to install has no timings"


def test_asv_find_names_a_release(project):
    # asv find stops at a point that cannot install, so it bisects the releases before it (main~1).
    out = _asv(project, "find", "main~1", BENCH)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "<mlx-" in out.stdout
