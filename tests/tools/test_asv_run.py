"""asv end to end, through its forkserver, on a few benchmarks: results are recorded for the backends
that run, an absent one is skipped with its reason (kept in facts/), an unknown one stops asv before it
runs anything, and nothing else is lost."""

from __future__ import annotations

import ast
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from asv.results import Results

from tools.spread import compare, format_report, timings

ROOT = Path(__file__).resolve().parents[2]


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def asv_project(tmp_path_factory) -> Path:
    """A throwaway copy of the project (asv wants a git repository and writes results beside it)."""
    project = tmp_path_factory.mktemp("project")
    shutil.copytree(ROOT / "benchmarks", project / "benchmarks", ignore=shutil.ignore_patterns("__pycache__"))
    conf = {
        "version": 1,
        "project": "mlx-torch-bench-test",
        "repo": ".",
        "branches": ["main"],
        "environment_type": "existing",
        "pythons": [sys.executable],
        "build_command": [],
        "install_command": [],
        "uninstall_command": [],
        "launch_method": "forkserver",
        "benchmark_dir": "benchmarks",
        "results_dir": "results",
        "html_dir": "html",
    }
    (project / "asv.conf.json").write_text(json.dumps(conf))
    identity = ["-c", "user.email=ci@example.invalid", "-c", "user.name=ci"]
    _git(project, "init", "-q", "-b", "main")
    _git(project, *identity, "add", ".")
    _git(project, *identity, "commit", "-qm", "snapshot")
    (project / "home").mkdir()
    machine = [sys.executable, "-m", "asv", "machine", "--yes", "--machine", "ci"]
    subprocess.run(machine, cwd=project, env=_env(project, BACKENDS), check=True, capture_output=True)
    return project


def _env(project: Path, backends: str) -> dict[str, str]:
    return dict(
        os.environ,
        HOME=str(project / "home"),
        MTB_PROFILE="quick",
        MTB_BACKENDS=backends,
        PYTHONPATH=str(ROOT),
    )


# An absent backend (torch-cuda here) beside the two that run.
BACKENDS = "mlx-cpu,torch-cpu,torch-cuda"


def _run(
    project: Path, bench: str, *extra: str, backends: str = BACKENDS, through_mtb: bool = False
) -> subprocess.CompletedProcess:
    commit = _git(project, "rev-parse", "HEAD")
    existing = f"existing:{sys.executable}"
    asv = ["tools.mtb", "asv"] if through_mtb else ["asv"]
    command = [sys.executable, "-m", *asv, "run", "-E", existing, "--set-commit-hash", commit]
    return subprocess.run(
        [*command, "--bench", bench, "--show-stderr", *extra],
        cwd=project,
        env=_env(project, backends),
        capture_output=True,
        text=True,
        timeout=900,
    )


def _result_file(project: Path) -> Path:
    files = [p for p in (project / "results" / "ci").glob("*.json") if p.name != "machine.json"]
    assert len(files) == 1, files
    return files[0]


def test_asv_records_present_backends_and_skips_the_rest(asv_project):
    out = _run(asv_project, r"ops\.reductions\.SumAll", through_mtb=True)
    assert out.returncode in (0, 2), out.stdout + out.stderr
    text = out.stdout + out.stderr
    assert "torch-cuda: no CUDA device" in text
    results = Results.load(str(_result_file(asv_project)))
    key = "ops.reductions.SumAll.time_forward"
    params = results.get_result_params(key)
    backends = [ast.literal_eval(combo[2]) for combo in itertools.product(*params)]  # asv keeps reprs
    values = dict(zip(backends, results.get_result_value(key, params), strict=True))
    assert values["mlx-cpu"] > 0 and values["torch-cpu"] > 0
    assert values["torch-cuda"] is None or values["torch-cuda"] != values["torch-cuda"]
    parity = results.get_result_value("ops.reductions.SumAll.track_parity_error", params)
    assert all(v < 1e-4 for v in parity if v is not None and v == v)
    # asv keeps a skip's reason only in its console output; the suite records it beside the results
    # (in an existing environment asv says where only to mtb's runs)
    (skips,) = (asv_project / "facts").glob("*/*.skips.jsonl")
    reasons = {json.loads(line)["reason"] for line in skips.read_text().splitlines()}
    assert any("torch-cuda: no CUDA device" in r for r in reasons)


def test_an_unknown_backend_stops_asv_before_it_runs_or_records_anything(asv_project):
    before = _result_file(asv_project).read_bytes()
    out = _run(asv_project, r"ops\.reductions\.SumAll", backends="mlx-cpu,bogus-gpu")
    assert out.returncode != 0
    assert "MTB_BACKENDS='mlx-cpu,bogus-gpu' names unknown backend(s) bogus-gpu" in out.stdout + out.stderr
    assert _result_file(asv_project).read_bytes() == before, "recorded results untouched"


def test_a_second_run_keeps_earlier_results_and_spread_reads_them(asv_project, tmp_path):
    first = tmp_path / "first.json"
    shutil.copy(_result_file(asv_project), first)
    out = _run(asv_project, r"ops\.reductions\.SumAll", "--skip-existing-successful")
    assert out.returncode in (0, 2), out.stdout + out.stderr
    again = timings(_result_file(asv_project))
    assert again == timings(first), "--skip-existing-successful must not re-measure or drop results"
    report = compare(timings(first), again)
    assert report.median_small == 0.0 or report.median_large == 0.0
    assert "median |difference|" in format_report(report)


def test_timings_keep_their_samples_ops_and_workload_jobs_alike(asv_project):
    out = _run(
        asv_project, r"ops\.reductions\.Sum\.time_forward|workloads\.device_switch", "--record-samples"
    )
    assert out.returncode in (0, 2), out.stdout + out.stderr
    results = Results.load(str(_result_file(asv_project)))
    for key, params_wanted in (
        ("ops.reductions.Sum.time_forward", "'mlx-cpu'"),
        ("workloads.device_switch.DeviceSwitch.track_chain_seconds", "'torch'"),
    ):
        params = results.get_result_params(key)
        combos = list(itertools.product(*params))
        samples = results.get_result_samples(key, params)
        stats = results.get_result_stats(key, params)
        index = next(
            i for i, combo in enumerate(combos) if params_wanted in combo and "'cpu-gpu'" not in combo
        )
        assert samples[index] and len(samples[index]) >= 3 and min(samples[index]) > 0, key
        assert stats[index]["q_25"] <= results.get_result_value(key, params)[index] <= stats[index]["q_75"]
    # the job's route that needs a GPU is skipped here, its CPU route measured
    values = results.get_result_value("workloads.device_switch.DeviceSwitch.track_chain_seconds", params)
    assert sum(v is not None and v == v for v in values) >= 2
