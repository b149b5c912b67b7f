"""The README's commands work as written: every `mtb` line parses with today's command line, every asv
command it names exists, the extras it installs exist, and the cheap ones run for real (the main job and
the full test run are what CI and the closing notes run)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tools import mtb
from tools import timeline as tl

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():  # continued lines are one command
            command: list[str] = []
            for token in [*shlex.split(line, comments=True), "&&"]:
                if token != "&&":
                    command.append(token)
                elif command:
                    commands.append(command)
                    command = []
    return commands


COMMANDS = readme_commands()


def test_the_readme_has_commands():
    assert ["python3", "-m", "tools.mtb", "main"] in COMMANDS
    assert ["python3", "-m", "pytest"] in COMMANDS


@pytest.mark.parametrize(
    "argv", [c[3:] for c in COMMANDS if c[:3] == ["python3", "-m", "tools.mtb"]], ids=" ".join
)
def test_every_mtb_line_parses(argv):
    args = mtb.build_parser().parse_args(argv)
    if getattr(args, "bench", None):
        re.compile(args.bench)


def test_every_asv_command_and_extra_exists():
    asv_commands = {c[3] for c in COMMANDS if c[:3] == ["python3", "-m", "asv"]}
    asv_commands |= {c[4] for c in COMMANDS if c[:4] == ["python3", "-m", "tools.mtb", "asv"]}
    for name in sorted(asv_commands):
        done = subprocess.run([sys.executable, "-m", "asv", name, "--help"], capture_output=True, text=True)
        assert done.returncode == 0, f"asv {name}: {done.stderr}"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for command in COMMANDS:
        for arg in command:
            if arg.startswith(".["):
                assert arg[2:-1] in extras, f"{arg} names no extra of pyproject.toml"


def test_probe_runs_as_written():
    done = subprocess.run(
        [sys.executable, "-m", "tools.mtb", "probe"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"^mlx-cpu\s+available$", done.stdout, re.M)
    assert re.search(r"^torch-cuda\s+(available|torch-cuda: no CUDA device)", done.stdout, re.M)


def test_the_explicit_timeline_line_runs_against_the_registry(tmp_path):
    """`mtb timeline --mlx-versions 0.30.0 0.31.2 0.32.4 --no-mlx-lm`, written to a folder of the test."""
    (line,) = [c for c in COMMANDS if "--mlx-versions" in c and c[3] == "timeline"]
    out = tmp_path / "timeline"
    done = subprocess.run(
        [sys.executable, *line[1:], "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert [p["tag"] for p in tl.read_points(out)] == ["mlx-0.30.0", "mlx-0.31.2", "mlx-0.32.4"]
