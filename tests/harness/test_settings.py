"""Every MTB_* setting is checked in one place, with one line that names the value and the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.harness import settings
from benchmarks.harness.settings import SettingError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MTB_PROFILE", "medium", r"MTB_PROFILE='medium' is not one of quick, full"),
        ("MTB_BACKENDS", "bogus-gpu", r"MTB_BACKENDS='bogus-gpu' names unknown backend\(s\) bogus-gpu"),
        ("MTB_BACKENDS", ",", r"MTB_BACKENDS=',' names unknown backend\(s\) \(none\)"),
        ("MTB_THREADS", "abc", r"MTB_THREADS='abc' must be a whole number of CPU threads, 1 or more"),
        ("MTB_THREADS", "0", r"MTB_THREADS='0'"),
        ("MTB_FLOAT32_MATMUL", "fp8", r"MTB_FLOAT32_MATMUL='fp8' is not one of ieee, tf32"),
        ("MTB_PARITY_SEED", "x1", r"MTB_PARITY_SEED='x1' must be a whole number"),
        ("MTB_CHECKPOINT_TINYLLAMA", "/nowhere", r"MTB_CHECKPOINT_TINYLLAMA: checkpoint directory /nowhere"),
    ],
)
def test_a_bad_value_is_one_line_naming_it(name, value, message):
    env = {name: value}
    with pytest.raises(SettingError, match=message) as info:
        settings.read(name, env)
    assert "\n" not in str(info.value)
    assert settings.problems(env) == [str(info.value)]


def test_defaults_and_good_values():
    assert settings.read("MTB_PROFILE", {}) == "quick"
    assert settings.read("MTB_PROFILE", {"MTB_PROFILE": " FULL "}) == "full"
    assert settings.read("MTB_BACKENDS", {}) == list(settings.BACKEND_NAMES)
    assert settings.read("MTB_BACKENDS", {"MTB_BACKENDS": "torch-cpu, mlx-cpu,torch-cpu"}) == [
        "torch-cpu",
        "mlx-cpu",
    ]
    assert settings.read("MTB_THREADS", {"MTB_THREADS": "3"}) == 3
    assert settings.read("MTB_THREADS", {}) >= 1
    assert settings.read("MTB_CHECKPOINT_PHI_2", {}) is None
    assert settings.problems({"MTB_PROFILE": "full", "PATH": "/bin"}) == []


def test_an_unknown_mtb_variable_is_reported_as_a_typo():
    (problem,) = settings.problems({"MTB_BACKEND": "mlx-cpu"})
    assert problem.startswith("MTB_BACKEND is not a setting of this suite (a typo?)")
    assert "MTB_BACKENDS" in problem


def test_every_variable_the_code_reads_is_declared():
    """No MTB_* variable is read outside the settings module's declarations."""
    import re

    used = set()
    for folder in ("benchmarks", "tools"):
        for path in (ROOT / folder).rglob("*.py"):
            used.update(re.findall(r"\"(MTB_[A-Z0-9_]+)\"", path.read_text()))
    undeclared = {n for n in used if n not in settings.SETTINGS and not n.endswith("_")}
    assert not undeclared


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        (
            "MTB_BACKENDS",
            "bogus-gpu",
            "MTB_BACKENDS='bogus-gpu' names unknown backend(s) bogus-gpu; use a comma",
        ),
        ("MTB_THREADS", "abc", "MTB_THREADS='abc' must be a whole number of CPU threads, 1 or more; e.g."),
    ],
)
def test_asv_importing_the_suite_with_a_bad_setting_stops_with_the_line(name, value, line):
    """What asv's discovery does: import the benchmark modules.  A bad value fails the import with the
    settings' own line, so asv stops before it runs or records anything."""
    env = {**os.environ, name: value, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", "import benchmarks.ops.activations"],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("benchmarks.harness.settings.SettingError: " + line)
