"""Recorded results are never replaced by worse ones or lost, and a stopped run keeps what finished.

The merge is checked on crafted results; the rest end to end, through `mtb asv` on a tiny asv suite of
its own (fast to run, and with benchmarks that fail, skip or sleep on demand)."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools import results as store

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = ["result", "params", "version", "started_at", "duration", "stats_ci_99_a", "stats_ci_99_b",
           "stats_q_25", "stats_q_75", "stats_number", "stats_repeat", "samples", "profile"]  # fmt: skip
NAN = float("nan")


def _file(rows: dict[str, list]) -> dict:
    return {"commit_hash": "c0ffee", "result_columns": COLUMNS, "results": rows, "durations": {}}


def _row(values, backends, version="v1", samples=None):
    return [values, [["'x'"], backends], version, 1, 2.0, None, None, None, None, None, None, samples]


def _values(data: dict, name: str) -> dict[str, object]:
    row = dict(zip(COLUMNS, data["results"][name], strict=False))
    combos = [c for c in row["params"][1]]
    return dict(zip(combos, row["result"], strict=True))


def test_a_failure_or_skip_never_replaces_a_value_and_new_values_win():
    old = _file({"b": _row([1.0, 2.0, 3.0], ["'m'", "'t'", "'c'"], samples=[[1.0], [2.0], [3.0]])})
    new = _file({"b": _row([1.5, None, NAN], ["'m'", "'t'", "'c'"], samples=[[1.5], None, None])})
    merged = store.merge_data(old, new)
    assert _values(merged, "b") == {"'m'": 1.5, "'t'": 2.0, "'c'": 3.0}
    row = dict(zip(COLUMNS, merged["results"]["b"], strict=False))
    assert row["samples"] == [[1.5], [2.0], [3.0]], "the samples travel with their value"


def test_a_narrower_run_keeps_the_columns_it_did_not_run_and_other_benchmarks():
    old = _file({"b": _row([1.0, 2.0, 3.0], ["'m'", "'t'", "'c'"]), "other": _row([9.0], ["'m'"])})
    new = _file({"b": _row([1.1, 2.2], ["'m'", "'t'"])})
    merged = store.merge_data(old, new)
    assert _values(merged, "b") == {"'m'": 1.1, "'t'": 2.2, "'c'": 3.0}
    assert _values(merged, "other") == {"'m'": 9.0}


def test_changed_benchmark_code_keeps_only_new_values_unless_it_has_none():
    old = _file({"b": _row([1.0, 2.0], ["'m'", "'t'"], version="v1")})
    changed = _file({"b": _row([5.0, None], ["'m'", "'t'"], version="v2")})
    assert _values(store.merge_data(old, changed), "b") == {"'m'": 5.0, "'t'": None}
    broken = _file({"b": _row([NAN, None], ["'m'", "'t'"], version="v2")})
    assert _values(store.merge_data(old, broken), "b") == {"'m'": 1.0, "'t'": 2.0}


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_run_made_elsewhere_is_adopted_without_losing_values_or_repeating_facts(tmp_path):
    home, there = tmp_path / "home", tmp_path / "device"
    name = "results/gpu/c0ffee-existing.json"
    kept = _file({"b": _row([1.0, 2.0], ["'m'", "'t'"]), "old": _row([9.0], ["'m'"])})
    _write(home / name, json.dumps(kept))
    _write(home / "facts/gpu/c0ffee.clocks.jsonl", '{"n": 1}\n')
    _write(there / name, json.dumps(_file({"b": _row([1.5, None], ["'m'", "'t'"])})))
    _write(there / "results/gpu/machine.json", '{"machine": "gpu"}')
    _write(there / "facts/gpu/c0ffee.clocks.jsonl", '{"n": 1}\n{"n": 2}\n')
    _write(there / "facts/gpu/c0ffee.skips.jsonl", '{"reason": "x"}\n')
    lines: list[str] = []
    assert store.adopt(there, home, lines.append) == 3
    merged = json.loads((home / name).read_text())
    assert _values(merged, "b") == {"'m'": 1.5, "'t'": 2.0}  # the failure kept the value it would replace
    assert _values(merged, "old") == {"'m'": 9.0}
    assert (home / "facts/gpu/c0ffee.clocks.jsonl").read_text() == '{"n": 1}\n{"n": 2}\n'
    assert (home / "facts/gpu/c0ffee.skips.jsonl").read_text() == '{"reason": "x"}\n'
    assert json.loads((home / "results/gpu/machine.json").read_text()) == {"machine": "gpu"}
    assert store.adopt(there, home, lines.append) == 0, "adopting again changes nothing"


def test_adopting_a_folder_without_a_run_or_with_a_broken_file_changes_nothing(tmp_path):
    with pytest.raises(store.AdoptError, match=r"holds no results/<machine>/\*\.json.*give the folder"):
        store.adopt(tmp_path, tmp_path / "home", print)
    _write(tmp_path / "results/gpu/c0ffee.json", "{not json")
    _write(tmp_path / "facts/gpu/c0ffee.jsonl", '{"n": 1}\n')
    with pytest.raises(store.AdoptError, match=r"not valid JSON.*carry it again"):
        store.adopt(tmp_path, tmp_path / "home", print)
    assert not (tmp_path / "home").exists()


def test_adopting_an_older_copy_keeps_the_newer_code_versions_values(tmp_path):
    home, there = tmp_path / "home", tmp_path / "device"
    name = "results/gpu/c0ffee-existing.json"
    newer, older = _row([1.0, 2.0], ["'m'", "'t'"], version="v2"), _row([1.5], ["'t'"], version="v1")
    newer[3], older[3] = 2000, 1000  # started_at
    _write(home / name, json.dumps(_file({"b": newer})))
    _write(there / name, json.dumps(_file({"b": older})))
    _write(home / "facts/gpu/c0ffee.jsonl", '{"n": 1}\n{"cut sh')
    _write(there / "facts/gpu/c0ffee.jsonl", '{"n": 2}\n')
    _write(
        home / "results/benchmarks.json",
        json.dumps({"b": {"params": [["'x'"], ["'m'"]], "param_names": ["a", "b"]}}),
    )
    _write(
        there / "results/benchmarks.json",
        json.dumps({"b": {"params": [["'x'"], ["'t'"]], "param_names": ["a", "b"]}}),
    )
    assert store.adopt(there, home, print) >= 2  # the facts line and the benchmark list at least
    assert _values(json.loads((home / name).read_text()), "b") == {"'m'": 1.0, "'t'": 2.0}
    assert (home / "facts/gpu/c0ffee.jsonl").read_text().splitlines() == ['{"n": 1}', '{"cut sh', '{"n": 2}']
    listed = json.loads((home / "results/benchmarks.json").read_text())
    assert listed["b"]["params"] == [["'x'"], ["'t'", "'m'"]]


def test_a_broken_results_file_here_stops_adopting_before_anything_is_written(tmp_path):
    home, there = tmp_path / "home", tmp_path / "device"
    _write(there / "results/gpu/a.json", json.dumps(_file({"b": _row([1.0], ["'m'"])})))
    _write(there / "results/gpu/b.json", json.dumps(_file({"b": _row([1.0], ["'m'"])})))
    _write(home / "results/gpu/b.json", "{broken")
    with pytest.raises(store.AdoptError, match=r"b\.json is not valid JSON.*move it aside"):
        store.adopt(there, home, print)
    assert not (home / "results/gpu/a.json").exists()


def test_copies_left_by_a_killed_run_are_merged_back_at_the_next_start(tmp_path):
    results, state = tmp_path / "results", tmp_path / "state"
    (results / "vm").mkdir(parents=True)
    path = results / "vm" / "c0ffee-env.json"
    good = _file({"b": _row([1.0, 2.0], ["'m'", "'t'"])})
    path.write_text(json.dumps(good))
    messages: list[str] = []
    with pytest.raises(KeyboardInterrupt), store.guarded(results, state, messages.append):
        path.write_text(json.dumps(_file({"b": _row([NAN, NAN], ["'m'", "'t'"])})))
        raise KeyboardInterrupt
    assert _values(json.loads(path.read_text()), "b") == {"'m'": 1.0, "'t'": 2.0}
    # as if the process had been killed before its merge: the copy waits on disk
    (state / "results-before-run" / "vm").mkdir(parents=True)
    (state / "results-before-run" / "vm" / path.name).write_text(json.dumps(good))
    path.write_text(json.dumps(_file({"b": _row([None, 3.0], ["'m'", "'t'"])})))
    assert store.restore_pending(results, state, messages.append) == 1
    assert _values(json.loads(path.read_text()), "b") == {"'m'": 1.0, "'t'": 3.0}
    assert not (state / "results-before-run").exists()


# ---------------------------------------------------------------------------------------------------
# End to end: `mtb asv` on a tiny suite
# ---------------------------------------------------------------------------------------------------
TINY_SUITE = """
import os
import time


class Grid:
    params = [os.environ.get("TINY_PARAMS", "a,b,c").split(",")]
    param_names = ["which"]

    def setup(self, which):
        if which in os.environ.get("TINY_FAIL", "").split(","):
            raise RuntimeError("failing on purpose: " + which)
        if which in os.environ.get("TINY_SKIP", "").split(","):
            raise NotImplementedError("skipped on purpose: " + which)

    def track_value(self, which):
        return {"a": 1.0, "b": 2.0, "c": 3.0}[which] * float(os.environ.get("TINY_SCALE", "1"))


def track_a_first():
    return 1.0


def track_z_slow():
    time.sleep(float(os.environ.get("TINY_SLEEP", "0")))
    return 2.0
"""


def _git(cwd: Path, *args: str) -> str:
    identity = ["-c", "user.email=ci@example.invalid", "-c", "user.name=ci"]
    done = subprocess.run(["git", *identity, *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


@pytest.fixture()
def tiny(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "tiny_bench").mkdir()
    (tmp_path / "tiny_bench" / "__init__.py").write_text("")
    (tmp_path / "tiny_bench" / "tiny.py").write_text(TINY_SUITE)
    conf = {
        "version": 1, "project": "tiny", "repo": ".", "branches": ["main"],
        "environment_type": "existing", "pythons": [sys.executable], "launch_method": "forkserver",
        "benchmark_dir": "tiny_bench", "results_dir": "results", "html_dir": "html",
    }  # fmt: skip
    (tmp_path / "asv.conf.json").write_text(json.dumps(conf))
    _git(tmp_path, "init", "-q", "-b", "main")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "tiny")
    (tmp_path / "home").mkdir()
    # short: asv's forkserver puts a unix socket under it (at most 107 bytes of path)
    scratch = Path(tempfile.mkdtemp(prefix="mtbt-", dir="/tmp"))
    (tmp_path / "tmp").symlink_to(scratch)
    done = _mtb(tmp_path, ["machine", "--yes", "--machine", "ci"])
    assert done.returncode == 0, done.stdout + done.stderr
    yield tmp_path
    shutil.rmtree(scratch, ignore_errors=True)


def _env(project: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MTB_", "TINY_"))}
    scratch = (project / "tmp").resolve()
    env.update(HOME=str(project / "home"), TMPDIR=str(scratch), PYTHONPATH=str(ROOT), **extra)
    return env


def _run_args(project: Path) -> list[str]:
    commit = _git(project, "rev-parse", "HEAD")
    return ["run", "-E", f"existing:{sys.executable}", "--set-commit-hash", commit, "--show-stderr"]


def _mtb(project: Path, asv_args: list[str], **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tools.mtb", "asv", *asv_args],
        cwd=project, env=_env(project, **extra), capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _results(project: Path) -> Path:
    (path,) = [p for p in (project / "results" / "ci").glob("*.json") if p.name != "machine.json"]
    return path


def _grid(project: Path) -> dict[str, float]:
    data = json.loads(_results(project).read_text())
    row = dict(zip(data["result_columns"], data["results"]["tiny.Grid.track_value"], strict=False))
    return {c.strip("'"): v for c, v in zip(row["params"][0], row["result"], strict=True)}


def test_a_rerun_that_fails_skips_or_narrows_keeps_every_recorded_value(tiny):
    first = _mtb(tiny, _run_args(tiny))
    assert first.returncode == 0, first.stdout + first.stderr
    assert _grid(tiny) == {"a": 1.0, "b": 2.0, "c": 3.0}
    again = _mtb(tiny, _run_args(tiny), TINY_FAIL="b", TINY_SKIP="c", TINY_SCALE="10")
    assert again.returncode == 2, "asv's own status: a benchmark failed"
    assert "failing on purpose: b" in again.stdout + again.stderr
    assert _grid(tiny) == {"a": 10.0, "b": 2.0, "c": 3.0}, "new values win, failures and skips do not"
    narrow = _mtb(tiny, _run_args(tiny), TINY_PARAMS="a", TINY_SCALE="100")
    assert narrow.returncode == 0
    assert _grid(tiny) == {"a": 100.0, "b": 2.0, "c": 3.0}, "the columns a narrower run did not cover"


def test_a_corrupt_results_file_is_moved_aside_and_measured_again(tiny):
    assert _mtb(tiny, _run_args(tiny)).returncode == 0
    path = _results(tiny)
    path.write_text(path.read_text()[:100])
    out = _mtb(tiny, _run_args(tiny))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{path} is not valid JSON" in out.stdout and "measured again" in out.stdout
    assert _grid(tiny) == {"a": 1.0, "b": 2.0, "c": 3.0}
    (moved,) = path.parent.glob(path.name + ".corrupt-*")
    assert len(moved.read_text()) == 100


def _survivors(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc to find leftovers")
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_everything_keeps_what_finished_and_leaves_nothing(tiny, signum, code):
    marker = f"TINY_MARK={uuid.uuid4().hex}"
    env = _env(tiny, TINY_SLEEP="300", TINY_MARK=marker.split("=", 1)[1])
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.mtb", "asv", *_run_args(tiny)],
        cwd=tiny, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # until the first benchmarks are saved, the slow one running
        files = [p for p in (tiny / "results" / "ci").glob("*.json") if p.name != "machine.json"]
        if files and "tiny.track_a_first" in files[0].read_text():
            break
        assert process.poll() is None, process.communicate()
        time.sleep(0.2)
    else:
        pytest.fail("no result was saved while the run went on")
    process.send_signal(signum)
    out, err = process.communicate(timeout=90)
    assert process.returncode == code, out + err
    assert f"stopped by {signal.Signals(signum).name}" in err
    assert "Traceback" not in err
    data = json.loads(_results(tiny).read_text())
    assert data["results"]["tiny.track_a_first"][0] == [1.0]
    assert _grid(tiny) == {"a": 1.0, "b": 2.0, "c": 3.0}
    assert not math.isnan(_grid(tiny)["a"])
    assert _survivors(marker) == [], "a process of the run survived"
    assert list((tiny / "tmp").iterdir()) == [], "a temporary folder was left"


def test_a_run_that_changes_nothing_leaves_the_files_byte_identical(tiny):
    assert _mtb(tiny, _run_args(tiny)).returncode == 0
    path = _results(tiny)
    before = path.read_bytes()
    out = _mtb(tiny, ["run", "--skip-existing-successful", *_run_args(tiny)[1:]])
    assert out.returncode == 0, out.stdout + out.stderr
    assert path.read_bytes() == before
    assert "kept recorded values" not in out.stdout


def test_benchmark_list_keeps_other_machines_parameters():
    from tools.results import merge_benchmark_lists

    cpu = {
        "version": 2,
        "ops.X.time_forward": {
            "params": [["'a'"], ["'float32'"], ["'mlx-cpu'", "'torch-cpu'"]],
            "param_names": ["case", "dtype", "backend"],
        },
        "workloads.Gone.track_x": {"params": [], "param_names": []},
    }
    gpu = {
        "version": 2,
        "ops.X.time_forward": {
            "params": [["'a'"], ["'float32'", "'tf32'"], ["'mlx-gpu'", "'torch-cuda'"]],
            "param_names": ["case", "dtype", "backend"],
        },
    }
    merged = merge_benchmark_lists(cpu, gpu)
    assert merged["ops.X.time_forward"]["params"] == [
        ["'a'"],
        ["'float32'", "'tf32'"],
        ["'mlx-gpu'", "'torch-cuda'", "'mlx-cpu'", "'torch-cpu'"],
    ]
    assert merged["workloads.Gone.track_x"] == cpu["workloads.Gone.track_x"]
    # a benchmark whose parameters were redeclared takes the new declaration alone
    redeclared = {"ops.X.time_forward": {"params": [["'a'"]], "param_names": ["case"]}}
    assert merge_benchmark_lists(cpu, redeclared)["ops.X.time_forward"] == redeclared["ops.X.time_forward"]
