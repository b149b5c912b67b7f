"""The README's commands are what CI runs; asv accepts the configuration and the suite."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from asv import util as asv_util

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```(?:bash|sh)\n(.+?)\n```", text, flags=re.S)[:2]


def test_readme_opens_with_the_two_commands():
    main, tests = readme_commands()
    assert "tools.mtb main" in main
    assert "pytest" in tests
    assert "\n" not in main and "\n" not in tests, "each is one command"


def test_ci_runs_the_readme_test_command_unchanged():
    _, tests = readme_commands()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert tests in ci_lines


def test_asv_config_runs_over_the_timeline_in_one_environment():
    conf = asv_util.load_json(str(ROOT / "asv.conf.json"), js_comments=True)
    assert conf["benchmark_dir"] == "benchmarks"
    assert conf["html_dir"] == "html"
    assert conf["results_dir"] == "results"
    assert conf["launch_method"] == "forkserver"
    assert conf["repo"] == ".timeline/default" and conf["branches"] == ["main"]
    assert conf["build_command"] == [] and conf["uninstall_command"] == []
    (install,) = conf["install_command"]
    assert install.startswith("in-dir={env_dir} python -c") and "[uv, 'pip', 'install'" in install
    assert "'-m', 'pip', 'install'" in install, "pip where uv is absent"
    assert install.endswith("{build_dir}/timeline-pins.txt")
    # The frameworks come from each point's pins, never from the environment matrix.
    assert not {"mlx", "mlx-cpu", "torch", "numpy"} & set(conf["matrix"]["req"])


def test_source_mode_config_is_well_formed():
    from asv.config import Config

    conf = Config.load(str(ROOT / "asv.source.conf.json"))
    assert conf.repo.endswith("ml-explore/mlx.git") and conf.branches == ["main"]
    (build,) = conf.build_command
    assert "python -m tools.source_build" in build, "each commit built by our step (tools/source_build.py)"
    assert any("{wheel_file}" in c and "--no-deps" in c for c in conf.install_command)
    assert conf.launch_method == "forkserver" and conf.benchmark_dir.endswith("benchmarks")


def test_asv_check_accepts_the_suite():
    out = subprocess.run(
        [sys.executable, "-m", "asv", "check", "-E", f"existing:{sys.executable}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ops.linalg.MatMul.time_forward" in out.stdout + out.stderr or out.returncode == 0


def test_cli_rejects_bad_profile_and_backend():
    from tools import mtb

    with pytest.raises(SystemExit, match="unknown size profile 'huge'"):
        mtb.main(["main", "--profile", "huge"])
    with pytest.raises(SystemExit, match=r"unknown backend\(s\) mlx-tpu"):
        mtb.resolve_backends("mlx-cpu,mlx-tpu")


def test_probe_reports_cpu_backends_available():
    from tools import mtb

    status = mtb.probe_backends()
    assert status["mlx-cpu"] is None and status["torch-cpu"] is None
    assert set(status) >= {"mlx-gpu", "torch-cuda", "torch-mps", "torch-compile"}
    json.dumps(status)
