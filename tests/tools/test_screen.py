"""The release screen: steps are named from crafted figures by the rule it states, versions are checked
before anything runs, and a lockstep run over two installed MLX folders records every case on both."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools import screen

ROOT = Path(__file__).resolve().parents[2]
LABELS = ["0.1.0", "0.2.0", "0.3.0"]


def _times(**by_case: list[list[float | None]]) -> dict[str, dict[str, list[float | None]]]:
    """case -> figures per version in LABELS order, each a list of rounds."""
    return {
        case.replace("_", "|"): dict(zip(LABELS, rounds, strict=True)) for case, rounds in by_case.items()
    }


def test_a_step_shown_the_same_way_in_every_round_is_named_and_noise_is_not():
    times = _times(
        Slow_a=[[10.0, 11.0, 9.0], [13.0, 14.5, 11.6], [13.1, 14.4, 11.5]],  # x1.3 at 0.2.0, every round
        Fast_b=[[2.0, 2.2, 2.1], [2.0, 2.1, 2.2], [1.0, 1.2, 1.1]],  # x0.5 at 0.3.0
        Mixed_c=[[1.0, 1.0, 1.0], [1.5, 1.5, 0.9], [1.5, 1.5, 0.9]],  # one round the other way
        Small_d=[[1.0, 1.0, 1.0], [1.1, 1.12, 1.08], [1.1, 1.1, 1.1]],  # under the threshold
        Failed_e=[[1.0, None, None], [2.0, 2.0, None], [2.0, 2.0, 2.0]],  # 0.1->0.2: one usable round
        Flip_g=[[1.0, 1.0, 1.0], [1.5, 1.5, 1.5], [1.0, 1.0, 1.0]],  # a step undone at the next version
    )
    found = screen.steps(times, LABELS, 0.15)
    assert [(s.case, s.before, s.after) for s in found] == [
        ("Fast|b", "0.2.0", "0.3.0"),
        ("Flip|g", "0.2.0", "0.3.0"),
        ("Slow|a", "0.1.0", "0.2.0"),
        ("Flip|g", "0.1.0", "0.2.0"),  # lasting ones first: this one is not
    ]
    assert found[0].median == pytest.approx(0.5, rel=0.05) and "faster" in found[0].describe()
    assert found[0].holds is None and "holds" not in found[0].describe()
    assert "x1.30 slower" in found[2].describe() and "holds at 0.3.0" in found[2].describe()
    assert found[3].holds is False and "not held at 0.3.0" in found[3].describe()
    # one noisy round does not hide a step whose median is beyond the threshold
    noisy = _times(Step_f=[[10.0, 10.0, 10.0], [10.9, 13.0, 13.5], [10.9, 13.0, 13.5]])
    assert [s.case for s in screen.steps(noisy, LABELS, 0.15)] == ["Step|f"]
    text = screen.format_screen(found, 6, LABELS, 0.15)
    assert "6 case(s) on 3 versions" in text and "Fast|b: 0.2.0 -> 0.3.0" in text
    assert screen.format_screen([], 5, LABELS, 0.15).endswith("none")


@pytest.mark.parametrize("count", [2, 3, 4, 12])
def test_every_version_takes_its_turn_first_and_each_pair_both_orders(count):
    labels = [f"v{i}" for i in range(count)]
    for case in range(count):
        orders = [screen.visiting_order(labels, case, r) for r in range(2)]
        assert all(sorted(o) == sorted(labels) for o in orders)
        for a, b in itertools.pairwise(labels):  # consecutive versions, compared by the screen
            assert {o.index(a) < o.index(b) for o in orders} == {True, False}, (case, a, b)
    firsts = {screen.visiting_order(labels, case, 0)[0] for case in range(count)}
    assert firsts == set(labels)


def test_a_step_whose_next_version_failed_is_neither_held_nor_undone():
    times = _times(Step_h=[[1.0, 1.0, 1.0], [1.5, 1.5, 1.5], [None, None, None]])
    (step,) = screen.steps(times, LABELS, 0.15)
    assert step.holds is None and "no figure to tell at 0.3.0" in step.describe()


def test_a_worker_that_died_is_named():
    dead = subprocess.Popen(
        [sys.executable, "-c", "pass"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    dead.wait()
    with pytest.raises(screen.ScreenError, match=r"the worker for 0\.29\.2 stopped \(exit status 0\)"):
        screen._ask(dead, "0.29.2", "ReLU|8x8")
    screen._stop([dead])


def test_an_interrupted_install_is_not_reused(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    stale = screen.release_folder("0.29.2", cache).with_name("mlx-0.29.2.partial")
    (stale / "mlx").mkdir(parents=True)
    (stale / "mlx" / "stale.txt").write_text("from an interrupted run")

    def fake_pip(args, **_kwargs):
        target = Path(args[args.index("--target") + 1])
        assert not target.exists(), "the stale folder must be gone before pip runs"
        (target / "mlx").mkdir(parents=True)
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(screen.subprocess, "run", fake_pip)
    folder = screen.install_release("0.29.2", cache, lambda _m: None)
    assert (folder / "mlx").is_dir() and not (folder / "mlx" / "stale.txt").exists()
    assert not stale.exists()


def test_a_folder_whose_mlx_does_not_import_is_refused(tmp_path):
    """mlx is a namespace package: an empty mlx/ would let the worker import this environment's MLX."""
    hollow, real = tmp_path / "hollow", _mlx_folder(tmp_path / "real")
    (hollow / "mlx").mkdir(parents=True)
    versions = screen.resolve_versions([str(hollow), str(real)], tmp_path / "cache", lambda _m: None)
    with pytest.raises(screen.ScreenError, match=r"not from .*hollow"):
        screen.measure(versions, ["ReLU|32x16x1024"], 2, "quick", lambda _m: None)


def test_bad_versions_are_named_before_anything_is_installed_or_run(tmp_path, monkeypatch):
    def no_install(*_args):
        raise AssertionError("nothing may be installed for bad input")

    monkeypatch.setattr(screen, "install_release", no_install)
    empty = tmp_path / "empty"
    empty.mkdir()
    twin_a, twin_b = tmp_path / "a" / "mlx-build", tmp_path / "b" / "mlx-build"
    for twin in (twin_a, twin_b):
        (twin / "mlx").mkdir(parents=True)
    cases = [
        (["0.29.2"], "fewer than two"),
        (["0.29.2", "0.29.2"], "names a version twice"),
        ([str(empty), "latest"], "holds no installed mlx package"),
        (["0.29.2", "no/such/folder"], "neither a release number"),
        ([str(twin_a), str(twin_b)], "would share a name"),
    ]
    for specs, message in cases:
        with pytest.raises(screen.ScreenError, match=message) as err:
            screen.resolve_versions(specs, tmp_path / "cache", lambda _m: None)
        assert "; fix: " in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(screen.ScreenError, match="matches no op"):
        screen.screen_cases("^NoSuchOp$", "quick")
    with pytest.raises(screen.ScreenError, match="not a regular expression"):
        screen.screen_cases("(", "quick")


def _mlx_folder(target: Path) -> Path:
    """A folder holding this environment's MLX (links to its files), as a source build's target."""
    import mlx

    site = Path(next(iter(mlx.__path__))).parent
    target.mkdir()
    for entry in site.iterdir():
        if entry.name.startswith("mlx"):
            (target / entry.name).symlink_to(entry)
    return target


def test_a_lockstep_run_records_every_case_on_every_version(tmp_path):
    first, second = _mlx_folder(tmp_path / "first"), _mlx_folder(tmp_path / "second")
    out = tmp_path / "screen.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTB_")}
    run = subprocess.run(
        [sys.executable, "-m", "tools.mtb", "screen", "--mlx", f"{first},{second}", "--ops", "^ReLU$",
         "--rounds", "2", "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "on 2 versions (first, second)" in run.stdout
    data = json.loads(out.read_text())
    assert data["versions"] == ["first", "second"] and set(data["times"]) == set(
        screen.screen_cases("^ReLU$", "quick")
    )
    for by_version in data["times"].values():
        assert all(
            len(rounds) == 2 and all(t is not None and t > 0 for t in rounds)
            for rounds in by_version.values()
        )


def test_the_command_refuses_one_round():
    run = subprocess.run(
        [sys.executable, "-m", "tools.mtb", "screen", "--mlx", "0.29.2,0.29.3", "--rounds", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode != 0 and "--rounds must be 2 or more" in run.stderr


def test_a_worker_keeps_the_first_cases_that_fit_and_prepares_the_others_for_each_use():
    released: list[str] = []
    prepared: list[str] = []

    class Run:
        def __init__(self, name: str) -> None:
            self.name = name
            prepared.append(name)

        def release(self) -> None:
            released.append(self.name)

    def broken() -> Run:
        prepared.append("broken")
        raise MemoryError("no room")

    cases = screen.PreparedCases(budget=100)
    for _ in range(3):  # every round asks in the same order
        for name, need in (("a", 40), ("b", 40), ("c", 40), ("d", 20)):
            with cases.using(name, lambda name=name: Run(name), need) as run:
                assert run.name == name
        with pytest.raises(MemoryError), cases.using("x", broken, 10):
            pass
    # a and b fit and are kept; c would pass the budget, so it is prepared for each use and released
    # after it; d fits beside a and b; the broken case is tried once
    assert prepared == ["a", "b", "c", "d", "broken", "c", "c"]
    assert released == ["c", "c", "c"]
    assert "a" in cases and "d" in cases and "c" not in cases and "x" not in cases
