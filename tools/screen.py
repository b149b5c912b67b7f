"""A release screen: which op cases changed between consecutive MLX versions, measured in lockstep.

On a shared machine a whole process runs faster or slower than the next, and a slow spell can last
minutes, so timing one release after another mixes the machine's moods into the releases' differences.
Here every version has a worker process of its own (its MLX first on the path), all started at once; each
case is timed on every version within seconds of each other (the order rotated and reversed from case to
case and round to round), so a spell reaches all versions alike.  A step between two versions is named
when the median of its rounds' ratios is beyond the threshold and every round points the same way: the
candidates for ``mtb bisect``, which confirms them.

Each timing is the median per-call time of three back-to-back batches of the suite's prepared call
(``OpRun``: the same inputs, placement and synchronisation as the asv benchmark).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness.facts import host_available_bytes

ROOT = Path(__file__).resolve().parents[1]
BACKEND = "mlx-cpu"
DTYPE = "float32"
BATCHES = 3
BATCH_SECONDS = 0.05
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")

Log = Callable[[str], None]


class ScreenError(ValueError):
    """Bad input: ``str()`` is one line, the problem and its fix."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}; fix: {fix}")


# ---------------------------------------------------------------------------------------------------
# The versions
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Version:
    label: str  # what the report calls it: the release number or the folder's name
    path: Path  # a folder holding the ``mlx`` package, put first on the worker's path
    release: bool = False  # installed here from the package index (its folder is ours to remake)


def release_folder(version: str, cache: Path) -> Path:
    return cache / f"mlx-{version}"


def install_release(version: str, cache: Path, log: Log) -> Path:
    """MLX ``version`` for the CPU (``mlx`` and ``mlx-cpu``, as ``mlx[cpu]``), installed once into a
    folder of the cache with pip."""
    folder = release_folder(version, cache)
    if (folder / "mlx").is_dir():
        return folder
    log(f"installing MLX {version} (mlx, mlx-cpu) into {folder}")
    partial = folder.with_name(folder.name + ".partial")
    # what an interrupted install left: pip --target would keep it beside the new files
    shutil.rmtree(partial, ignore_errors=True)
    out = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(partial),
         f"mlx=={version}", f"mlx-cpu=={version}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        last = (out.stderr.strip() or out.stdout.strip()).splitlines()[-1:] or ["(no output)"]
        raise ScreenError(
            f"pip could not install MLX {version} for the CPU: {last[0]}",
            "give a release that has mlx and mlx-cpu wheels for this Python (0.26.5 or later), or a folder",
        )
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder


def resolve_versions(specs: Sequence[str], cache: Path, log: Log) -> list[Version]:
    """Each of ``specs`` a release number (installed from the package index) or a folder holding an
    installed ``mlx`` (a source build's ``pip install --target``).  Checked before anything runs."""
    if len(specs) < 2:
        raise ScreenError("a screen compares versions: fewer than two given", "give --mlx V1,V2[,...]")
    if len(set(specs)) != len(specs):
        raise ScreenError(f"--mlx names a version twice ({', '.join(specs)})", "give each version once")
    folders: dict[str, Path] = {}
    for spec in specs:  # every spec checked before anything is installed
        folder = Path(spec).expanduser()
        if folder.is_dir():
            if not (folder / "mlx").is_dir():
                raise ScreenError(
                    f"{folder} holds no installed mlx package", "give a folder made by pip install --target"
                )
            folders[spec] = folder.resolve()
        elif not VERSION_RE.match(spec):
            raise ScreenError(
                f"{spec!r} is neither a release number (such as 0.29.2) nor a folder",
                "give a release or a folder",
            )
    labels = [folders[spec].name if spec in folders else spec for spec in specs]
    if len(set(labels)) != len(labels):
        raise ScreenError(
            f"two versions would share a name ({', '.join(labels)})", "give folders with distinct names"
        )
    return [
        Version(label, folders[spec])
        if spec in folders
        else Version(spec, install_release(spec, cache, log), release=True)
        for spec, label in zip(specs, labels, strict=True)
    ]


# ---------------------------------------------------------------------------------------------------
# The cases
# ---------------------------------------------------------------------------------------------------
def screen_cases(ops: str | None, profile: str) -> list[str]:
    """``Op|case`` of every op whose name ``ops`` matches (a regular expression; None: every op)."""
    from benchmarks.ops import all_specs

    try:
        pattern = re.compile(ops or "")
    except re.error as exc:
        raise ScreenError(
            f"--ops {ops!r} is not a regular expression ({exc})", "give one, e.g. 'Sigmoid|GELU'"
        ) from None
    cases = [f"{s.name}|{c.label}" for s in all_specs() if pattern.search(s.name) for c in s.cases(profile)]
    if not cases:
        raise ScreenError(f"--ops {ops!r} matches no op", "python3 -m asv check lists the op classes")
    return cases


# ---------------------------------------------------------------------------------------------------
# Lockstep timing
# ---------------------------------------------------------------------------------------------------
def worker_env(version: Version) -> dict[str, str]:
    path = os.pathsep.join([str(version.path), str(ROOT)])
    return {**os.environ, "PYTHONPATH": path, "MTB_BACKENDS": BACKEND}


def _start(version: Version, profile: str, budget: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tools.screen", "--worker", profile, str(budget)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=worker_env(version),
    )  # fmt: skip


def _ask(worker: subprocess.Popen, label: str, line: str) -> dict:
    assert worker.stdin is not None and worker.stdout is not None
    try:
        worker.stdin.write(line + "\n")
        worker.stdin.flush()
        answer = worker.stdout.readline()
    except OSError:
        answer = ""
    if not answer:
        code = worker.poll()
        raise ScreenError(
            f"the worker for {label} stopped (exit status {code}) while asked {line!r}",
            "its error is printed above; leave that version out, or that op with --ops",
        )
    return json.loads(answer)


def _stop(workers: Sequence[subprocess.Popen]) -> None:
    for w in workers:
        with contextlib.suppress(OSError):
            if w.stdin:
                w.stdin.close()
    for w in workers:
        try:
            w.wait(timeout=60)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


def visiting_order(labels: Sequence[str], case_index: int, round_index: int) -> list[str]:
    """The versions in the order they time one case: rotated by one per case (and every other round),
    reversed every other round, so each version is first in turn and each of two versions times a case
    before the other in one round and after it in the next."""
    k = (case_index + round_index // 2) % len(labels)
    order = list(labels[k:]) + list(labels[:k])
    return order[::-1] if round_index % 2 else order


def measure(
    versions: Sequence[Version], cases: Sequence[str], rounds: int, profile: str, log: Log
) -> dict[str, dict[str, list[float | None]]]:
    """case -> version label -> its time per call in each round (None: it failed on that version)."""
    # every version's worker keeps prepared cases within the same share of half the free memory
    budget = host_available_bytes() // (2 * len(versions))
    workers = {v.label: _start(v, profile, budget) for v in versions}
    try:
        for v in versions:
            found = _ask(workers[v.label], v.label, "version")
            # mlx is a namespace package: a folder without a working mlx.core falls through to another.
            # The worker's path holds v.path as given, so its modules' files start with it.
            if not Path(os.path.abspath(found["file"])).is_relative_to(v.path):
                raise ScreenError(
                    f"the worker for {v.label} imported MLX {found['version']} from {found['file']}, "
                    f"not from {v.path}",
                    "give a folder whose mlx imports with this Python (pip install --target it again)",
                )
            if v.release and found["version"] != v.label:
                raise ScreenError(
                    f"the worker for {v.label} imported MLX {found['version']}",
                    f"remove {v.path} (mtb screen installed it) and run again",
                )
            log(f"{v.label}: MLX {found['version']} from {v.path}")
        times: dict[str, dict[str, list[float | None]]] = {c: {v.label: [] for v in versions} for c in cases}
        started = time.monotonic()
        for r in range(rounds):
            for i, case in enumerate(cases):
                for label in visiting_order([v.label for v in versions], i, r):
                    answer = _ask(workers[label], label, case)
                    if answer.get("error") and r == 0:
                        log(f"{case} on {label}: {answer['error']}")
                    times[case][label].append(answer.get("t"))
            log(f"round {r + 1}/{rounds} done at {time.monotonic() - started:.0f} s")
        return times
    finally:
        _stop(list(workers.values()))


class PreparedCases:
    """The cases a worker keeps prepared from one round to the next, within ``budget`` bytes (each
    counted as ``OpRun.prepare`` counts its need).  Every round asks for the cases in the same order, so
    the first ones that fit are kept for the whole screen and any other is prepared for each use and
    released after it (releasing the least recently used instead would miss on every ask of such a
    scan).  A case that failed to prepare is not tried again."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._held: dict[str, Any] = {}
        self._held_bytes = 0
        self._failed: dict[str, Exception] = {}

    @contextlib.contextmanager
    def using(self, item: str, prepare: Callable[[], Any], need: int) -> Iterator[Any]:
        if item in self._failed:
            raise self._failed[item]
        run = self._held.get(item)
        if run is None:
            try:
                run = prepare()
            except Exception as exc:
                self._failed[item] = exc
                raise
            if self._held_bytes + need <= self.budget:
                self._held[item] = run
                self._held_bytes += need
        if item in self._held:
            yield run
            return
        try:
            yield run
        finally:
            run.release()

    def __contains__(self, item: str) -> bool:
        return item in self._held


def worker(profile_name: str, budget: int) -> None:
    """One version: answers ``version`` with MLX's version, and ``Op|case`` with the time per call,
    keeping prepared cases within ``budget`` bytes."""
    from benchmarks.harness.frameworks import mx
    from benchmarks.harness.profiles import get_profile
    from benchmarks.harness.run import OpRun, memory_need
    from benchmarks.ops import all_specs
    from tools.fidelity import stream_per_call

    # replies go to the parent on a handle of their own: anything a library prints goes to stderr
    replies = sys.stdout
    sys.stdout = sys.stderr

    def reply(answer: dict) -> None:
        replies.write(json.dumps(answer) + "\n")
        replies.flush()

    specs = {s.name: s for s in all_specs()}
    profile = get_profile(profile_name)
    prepared = PreparedCases(budget)
    for line in sys.stdin:
        item = line.strip()
        if item == "version":
            reply({"version": mx.__version__, "file": mx.__file__})
            continue
        try:
            name, label = item.split("|", 1)
            spec = specs[name]
            need = memory_need(spec, spec.find_case(profile.name, label)[1], DTYPE)
            prepare = functools.partial(OpRun.prepare, spec, label, DTYPE, BACKEND, profile)
            with prepared.using(item, prepare, need) as run:
                run.call()
                per_call = [stream_per_call(run.call, BATCH_SECONDS) for _ in range(BATCHES)]
                del run
            reply({"t": statistics.median(per_call)})
        except Exception as exc:  # a case this version cannot run is reported, not fatal
            reply({"t": None, "error": f"{type(exc).__name__}: {exc}"[:300]})


# ---------------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    case: str
    before: str
    after: str
    ratios: tuple[float, ...]  # after / before in each round, both timed within seconds
    # the version after ``after``, and whether it stays on ``after``'s side (None: ``after`` is the last)
    next_version: str | None = None
    holds: bool | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)

    def describe(self) -> str:
        kind = "slower" if self.median > 1 else "faster"
        low, high = min(self.ratios), max(self.ratios)
        then = ""
        if self.next_version is not None:
            said = {True: "holds at", False: "not held at", None: "no figure to tell at"}[self.holds]
            then = f"; {said} {self.next_version}"
        return (
            f"{self.case}: {self.before} -> {self.after} x{self.median:.2f} {kind} "
            f"(rounds x{low:.2f}-x{high:.2f}{then})"
        )


def _round_ratios(by_version: dict[str, list[float | None]], before: str, after: str) -> list[float]:
    return [
        b / a for a, b in zip(by_version[before], by_version[after], strict=True)
        if a is not None and b is not None and a > 0
    ]  # fmt: skip


def _beyond(ratios: Sequence[float], limit: float) -> int:
    """+1 or -1 when the median ratio is beyond ``limit`` (a log) with every ratio the same way, else 0."""
    if len(ratios) < 2:
        return 0
    logs = [math.log(r) for r in ratios]
    same_way = all(x > 0 for x in logs) or all(x < 0 for x in logs)
    middle = statistics.median(logs)
    return int(math.copysign(1, middle)) if same_way and abs(middle) >= limit else 0


def steps(
    times: dict[str, dict[str, list[float | None]]], labels: Sequence[str], threshold: float
) -> list[Step]:
    """Steps between consecutive versions whose median ratio over the rounds is beyond ``threshold``
    (0.15: 15%) with every round pointing the same way; lasting ones (the next version, against the
    version before the step, beyond the threshold the same way) first, each group largest first.  A
    round where either side failed does not count, nor does a case with fewer than two such rounds."""
    found = []
    limit = math.log1p(threshold)
    for case, by_version in times.items():
        for i, (before, after) in enumerate(itertools.pairwise(labels)):
            ratios = _round_ratios(by_version, before, after)
            way = _beyond(ratios, limit)
            if not way:
                continue
            following = labels[i + 2] if i + 2 < len(labels) else None
            holds = None
            if following is not None:
                later = _round_ratios(by_version, before, following)
                # the version after failed the case: whether the step holds is unknown
                holds = _beyond(later, limit) == way if len(later) >= 2 else None
            found.append(Step(case, before, after, tuple(ratios), following, holds))
    return sorted(found, key=lambda s: (s.holds is False, -abs(math.log(s.median))))


def format_screen(found: Sequence[Step], cases: int, labels: Sequence[str], threshold: float) -> str:
    head = (
        f"{cases} case(s) on {len(labels)} versions ({', '.join(labels)}); steps of {threshold:.0%} or more "
        "(median of the rounds, every round the same way; a 15% speed-up is a ratio of 1/1.15), those "
        "undone at the next version last:"
    )
    if not found:
        return head + "\n  none"
    return "\n".join([head, *(f"  {s.describe()}" for s in found)])


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    worker(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else host_available_bytes() // 2)
