"""The triage file: well-formed entries apply, every malformed or dangling one is named (file, entry
number, key) while the rest still applies."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools import triage

GOOD = """
[[change]]
series = "ops.a.Op.time_forward(8x8, mlx-cpu)"
point = "0.33"
status = "ignored"
reason = "a known slow release"

[[change]]
series = "ops.a.Op.time_forward(8x8, torch-cpu)"
point = "0.34"
machine = "vm"
status = "fixed"
fixed_in = "0.35"
link = "https://example.invalid/1"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "triage.toml"
    path.write_text(text)
    return path


def test_entries_are_read_and_looked_up_per_machine(tmp_path):
    entries, problems = triage.read(_write(tmp_path, GOOD))
    assert problems == [] and [e.number for e in entries] == [1, 2]
    assert (
        triage.lookup(entries, "ops.a.Op.time_forward(8x8, mlx-cpu)", "0.33", "any-machine").status
        == "ignored"
    )
    assert triage.lookup(entries, "ops.a.Op.time_forward(8x8, torch-cpu)", "0.34", "vm").fixed_in == "0.35"
    assert triage.lookup(entries, "ops.a.Op.time_forward(8x8, torch-cpu)", "0.34", "gpu-box") is None
    assert triage.read(tmp_path / "absent.toml") == ([], [])


def test_malformed_entries_are_named_and_the_rest_still_applies(tmp_path):
    text = GOOD + '\n[[change]]\nseries = "x"\npoint = "0.33"\nstatus = "wontfix"\n'
    text += '\n[[change]]\nseries = "y"\nstatus = "fixed"\npoint = "0.3"\n'
    text += '\n[[change]]\nseries = "z"\npoint = "0.3"\nstatus = "expected"\ncolour = "red"\n'
    path = _write(tmp_path, text)
    entries, problems = triage.read(path)
    assert len(entries) == 2
    assert problems == [
        f"{path}: [[change]] #3: status 'wontfix' is not one of acknowledged, expected, ignored, fixed",
        f"{path}: [[change]] #4: status 'fixed' needs fixed_in (the point that fixed it)",
        f"{path}: [[change]] #5: unknown key(s) colour (keys: series, point, machine, status, fixed_in, "
        "link, "
        "reason)",
    ]


def test_entries_naming_nothing_in_the_results_are_reported(tmp_path):
    path = _write(tmp_path, GOOD)
    entries, _ = triage.read(path)
    problems = triage.check(
        entries,
        path,
        series=["ops.a.Op.time_forward(8x8, mlx-cpu)"],
        points=["0.33", "0.34"],
        machines=["other"],
    )
    assert len(problems) == 3
    assert all(
        p.startswith(f"{path}: [[change]] #2 (ops.a.Op.time_forward(8x8, torch-cpu) at 0.34)")
        for p in problems
    )
    assert "no such series in the results" in problems[0]
    assert "fixed_in '0.35' is not a point of the timeline" in problems[1]
    assert "machine 'vm' has no results" in problems[2]


def test_a_file_that_is_not_toml_is_one_error_naming_it(tmp_path):
    path = _write(tmp_path, "[[change]\nseries = 1")
    with pytest.raises(triage.TriageError, match=r"triage\.toml: not valid TOML"):
        triage.read(path)
