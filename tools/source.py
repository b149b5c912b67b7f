"""Source mode: asv over the commits of a framework's own git repository, each built into a wheel by our
build step (tools/source_build.py), and the bisection that names the commit that changed a figure.

``make_config`` writes the asv configuration of a source run; ``asv.source.conf.json`` is its output for
MLX with paths relative to the project (``write_template``; tests/tools/test_source.py checks that the
file and the code agree).  ``run_commits`` runs asv over a list of commits with the recorded results
guarded (tools/results.py), and ``bisect`` measures both ends of a range, then binary-searches the
first-parent commits between them: each probed commit is put on the side whose figure it resembles
(above or below the log-midpoint of the two ends' medians), a commit that does not build is stepped
past, and the search stops at an adjacent pair (the last commit like the good end, the first like the
bad one).

Every check of what a user gave raises ``SourceError``: one line naming the problem and the fix.
"""

from __future__ import annotations

import ast
import difflib
import itertools
import json
import math
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tools import results as results_store
from tools import source_build

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "asv.source.conf.json"
MLX_URL = "https://github.com/ml-explore/mlx.git"
# CMake arguments of every MLX build.  BLAS: Debian's netlib reference libblas/liblapack, which is what
# the release mlx-cpu wheels bundle (reference BLAS/LAPACK 3.10.0), so every commit built here links the
# same BLAS family as the releases the timeline installs: a figure that moves between commits is MLX's
# code, not a different BLAS.  Tests and examples are not what is measured.
MLX_CMAKE_ARGS = ("-DBLA_VENDOR=Generic", "-DMLX_BUILD_TESTS=OFF", "-DMLX_BUILD_EXAMPLES=OFF")
# the 95% interval of a median shown beside it (distribution-free: from the order statistics)
CONFIDENCE = 0.95
BUILD_TIMEOUT_SECONDS = 4 * 3600

Runner = Callable[[list[str]], int]
Log = Callable[[str], None]


class SourceError(ValueError):
    """A problem with what the user gave: ``str()`` is one line, the problem and its fix."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}; fix: {fix}")


class BisectionStopped(SourceError):
    """A bisection that could not go on: ``found`` holds its steps so far (the figures stay recorded)."""

    def __init__(self, stopped: SourceError, found: Bisection) -> None:
        ValueError.__init__(self, str(stopped))
        self.found = found


# ---------------------------------------------------------------------------------------------------
# The configuration
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Build:
    """How the build step builds every commit of one run (recorded in the configuration's command)."""

    name: str  # the repository's folder in the source cache
    cache: Path | None = None  # None: the build step reads MTB_SOURCE_CACHE itself
    cmake_args: tuple[str, ...] = ()
    deps_mirror: Path | None = None
    isolation: bool = True
    rebuild_failed: bool = False

    def command(self, tools_root: str) -> str:
        # asv runs build commands in the environment's Python with PYTHONPATH taken from ASV_PYTHONPATH
        args = ["--name", self.name]
        if self.cache is not None:
            args += ["--cache", str(self.cache)]
        if self.cmake_args:
            args += ["--cmake-args", shlex.join(self.cmake_args)]
        if self.deps_mirror is not None:
            args += ["--deps-mirror", str(self.deps_mirror)]
        args += [] if self.isolation else ["--no-isolation"]
        args += ["--rebuild-failed"] if self.rebuild_failed else []
        return f"ASV_PYTHONPATH={tools_root} python -m tools.source_build {shlex.join(args)}"

    def records(self) -> Path:
        return (self.cache or source_build.DEFAULT_CACHE) / self.name


def make_config(
    *,
    project: str,
    repo: str,
    package: str,
    build: Build,
    benchmark_dir: str,
    results_dir: str,
    env_dir: str,
    html_dir: str,
    pins: dict[str, str],
    python: str,
    tools_root: str,
    branch: str = "main",
) -> dict:
    """The asv configuration of a source run: each commit built by our step (cached per commit), its wheel
    installed without dependencies beside the pinned packages (asv's matrix, installed once per
    environment)."""
    return {
        "version": 1,
        "project": project,
        "project_url": repo,
        "repo": repo,
        "branches": [branch],
        "dvcs": "git",
        "environment_type": "virtualenv",
        "pythons": [python],
        "matrix": {"req": {name: [version] for name, version in pins.items()}},
        "build_command": [build.command(tools_root)],
        "install_command": [
            "in-dir={env_dir} python -m pip install --no-deps --force-reinstall {wheel_file}"
        ],
        "uninstall_command": [f"return-code=any in-dir={{env_dir}} python -m pip uninstall -y {package}"],
        # forkserver: the suite is imported once per benchmark run, not once per benchmark (asv.conf.json)
        "launch_method": "forkserver",
        "benchmark_dir": benchmark_dir,
        "env_dir": env_dir,
        "results_dir": results_dir,
        "html_dir": html_dir,
        # our own cache keeps every wheel (source_build); asv's only needs the commits of one run
        "build_cache_size": 2,
        # asv kills a build command after 600 s by default; MLX's CPU backend takes 10-12 minutes from
        # an empty compiler cache on 2 cores
        "install_timeout": BUILD_TIMEOUT_SECONDS,
    }


def mlx_pins() -> dict[str, str]:
    """What every MLX commit is measured beside: the torch and numpy of the default timeline."""
    from tools import timeline as tl

    companions = tl.Companions()
    return {"torch": companions.torch, "numpy": companions.numpy}


def mlx_config(repo: str, build: Build, base: Path | None) -> dict:
    """MLX's source run.  ``base`` None: paths relative to the project, as the template has them."""

    def where(relative: str) -> str:
        return relative if base is None else str(base / relative)

    return make_config(
        project="mlx-torch-bench-mlx-source",
        repo=repo,
        package="mlx",
        build=build,
        benchmark_dir=where("benchmarks"),
        results_dir=where("results-source"),
        env_dir=where(".asv/env-source"),
        html_dir=where(".asv/html-source"),
        pins=mlx_pins(),
        python="3.11",
        tools_root="{conf_dir}" if base is None else str(base),
    )


TEMPLATE_HEADER = """\
// Source mode: MLX *git commits*, each built from source into a wheel by tools/source_build.py (cached per
// commit under MTB_SOURCE_CACHE, with a compiler cache and a build record), installed beside the default
// timeline's torch and numpy.  `python3 -m tools.mtb source --mlx-repo PATH-or-URL --range A..B` writes
// this same configuration with absolute paths (.asv/source/mlx/asv.conf.json) and runs it; by hand:
// python3 -m asv run --config asv.source.conf.json A..B.  Made by tools/source.py (write_template):
// edit the code, not this file.
"""


def template_text() -> str:
    return (
        TEMPLATE_HEADER
        + json.dumps(mlx_config(MLX_URL, Build("mlx", cmake_args=MLX_CMAKE_ARGS), None), indent=4)
        + "\n"
    )


def write_template(path: Path = TEMPLATE) -> None:
    path.write_text(template_text())


def write_config(conf: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(conf, indent=1) + "\n")
    return path


# ---------------------------------------------------------------------------------------------------
# Checks of what the user gave
# ---------------------------------------------------------------------------------------------------
def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)


def _is_url(spec: str) -> bool:
    return "://" in spec or spec.startswith("git@")


def resolve_repo(spec: str, cache: Path, name: str, flag: str) -> Path:
    """A local git repository: the path given, or a mirror of the URL given (cloned once, then fetched)."""
    if shutil.which("git") is None:
        raise SourceError("git is not on PATH", "install git")
    if _is_url(spec):
        mirror = cache / name / "mirror.git"
        if mirror.is_dir():
            out = _git(mirror, "remote", "update", "--prune")
        else:
            mirror.parent.mkdir(parents=True, exist_ok=True)
            out = subprocess.run(
                ["git", "clone", "--mirror", spec, str(mirror)], capture_output=True, text=True, check=False
            )
        if out.returncode != 0:
            last = (out.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise SourceError(
                f"{flag} {spec}: git could not fetch it ({last})", "check the URL and the network"
            )
        return mirror
    path = Path(spec).expanduser().resolve()
    if not path.is_dir() or _git(path, "rev-parse", "--git-dir").returncode != 0:
        raise SourceError(
            f"{flag} {spec} is not a git repository",
            "give the path of a clone (git clone https://github.com/ml-explore/mlx.git) or its URL",
        )
    return path


def subject(repo: Path, commit: str) -> str:
    return _git(repo, "log", "-1", "--format=%s", commit).stdout.strip()


def _commit(repo: Path, rev: str, what: str) -> str:
    out = _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if out.returncode != 0:
        raise SourceError(
            f"{what} {rev!r} is not a commit of {repo}",
            "give a commit hash, tag or branch the repository has",
        )
    return out.stdout.strip()


def commits_in_range(repo: Path, spec: str) -> list[str]:
    """The first-parent commits of git's range ``A..B`` (after A, up to and including B), oldest first."""
    if spec.count("..") != 1 or "..." in spec or not all(spec.split("..")):
        raise SourceError(
            f"--range {spec!r} is not of the form A..B", "give two commits, e.g. v0.27.0..v0.27.1"
        )
    start, end = (_commit(repo, rev, "--range end") for rev in spec.split(".."))
    out = _git(repo, "rev-list", "--first-parent", "--reverse", f"{start}..{end}")
    commits = out.stdout.split()
    if out.returncode != 0 or not commits:
        raise SourceError(
            f"--range {spec} has no commits (none after {spec.split('..')[0]} on the way to the other end)",
            "give the older commit first, A..B, where A is an ancestor of B",
        )
    return commits


def bisect_commits(repo: Path, good: str, bad: str) -> list[str]:
    """``good``, then the first-parent commits after it up to ``bad``: the line the bisection walks."""
    good_hash, bad_hash = _commit(repo, good, "--good"), _commit(repo, bad, "--bad")
    line = _git(repo, "rev-list", "--first-parent", "--reverse", f"{good_hash}..{bad_hash}").stdout.split()
    parent = _git(repo, "rev-parse", f"{line[0]}^").stdout.strip() if line else ""
    if not line or parent != good_hash:
        raise SourceError(
            f"--good {good} is not an ancestor of --bad {bad} on its first-parent line",
            "give the older commit as --good and the newer one (after the change) as --bad",
        )
    return [good_hash, *line]


def check_toolchain(repo: Path, commits: Sequence[str]) -> None:
    """cmake and a C++ compiler, where a commit of the range builds with CMake."""
    missing = [tool for tool in ("cmake", "c++") if shutil.which(tool) is None]
    if not missing:
        return
    for commit in commits:
        if _git(repo, "cat-file", "-e", f"{commit}:CMakeLists.txt").returncode == 0:
            raise SourceError(
                f"commit {commit[:12]} builds with CMake but {' and '.join(missing)} is not on PATH",
                "install them (e.g. apt-get install cmake g++) or choose commits that need neither",
            )


def check_mirror(path: Path | None) -> Path | None:
    if path is not None and not path.expanduser().is_dir():
        raise SourceError(
            f"--deps-mirror {path} is not a folder",
            "give the folder that holds <owner>+<repo>/repo git mirrors (e.g. /work/.mirror)",
        )
    return None if path is None else path.expanduser().resolve()


@dataclass(frozen=True)
class Declared:
    params: list[list[str]]  # asv's reprs, e.g. ["'8x1e5'"]
    unit: str


def discover(benchmark_dir: Path, env: dict[str, str]) -> dict[str, Declared]:
    """The benchmarks of a folder and their parameters, found as asv finds them, in a child process of
    this Python (a suite may import frameworks; none of them should load in mtb's process)."""
    code = (
        "import json, sys; from asv_runner.discovery import disc_benchmarks;"
        "print(json.dumps({b.name: [b.params, b.unit] for b in disc_benchmarks(sys.argv[1])}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, benchmark_dir.name],
        cwd=benchmark_dir.parent,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise SourceError(
            f"the benchmarks in {benchmark_dir} cannot be imported: {last}", "fix the import error"
        )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    return {name: Declared(params, unit) for name, (params, unit) in found.items()}


def select(bench: str | None, declared: dict[str, Declared]) -> list[str]:
    names = [n for n in declared if bench is None or re.search(bench, n)]
    if not names:
        raise SourceError(f"--bench {bench!r} matches no benchmark", "python3 -m asv check lists them")
    return names


def _plain(value: str) -> str:
    """A parameter as a user writes it: asv keeps reprs ('8x1e5' with its quotes)."""
    try:
        return str(ast.literal_eval(value))
    except (ValueError, SyntaxError):
        return value


@dataclass(frozen=True)
class Target:
    """One benchmark at one parameter combination: what a bisection follows."""

    benchmark: str
    combo: tuple[str, ...]  # asv's reprs
    unit: str

    def regex(self) -> str:
        """asv --bench matches parameterised benchmarks as ``name(p1, p2)``: this combination alone."""
        if not self.combo:
            return f"^{re.escape(self.benchmark)}$"
        return f"^{re.escape(self.benchmark)}\\({re.escape(', '.join(self.combo))}\\)$"

    def describe(self) -> str:
        return (
            f"{self.benchmark}({', '.join(_plain(c) for c in self.combo)})" if self.combo else self.benchmark
        )


def target(benchmark: str, params: str | None, declared: dict[str, Declared]) -> Target:
    """The benchmark named exactly and the combination ``params`` (comma-separated, in order)."""
    if benchmark not in declared:
        close = difflib.get_close_matches(benchmark, list(declared), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "python3 -m asv check lists them"
        raise SourceError(f"--bench {benchmark!r} is not a benchmark", f"give a full name; {hint}")
    entry = declared[benchmark]
    given = [p.strip() for p in params.split(",")] if params else []
    choices = "; ".join(", ".join(_plain(v) for v in values) for values in entry.params)
    if len(given) != len(entry.params):
        raise SourceError(
            f"{benchmark} takes {len(entry.params)} parameter(s), --params gave {len(given)}",
            f"give --params 'v1,v2,...', a value of each in order: {choices or '(none: leave --params out)'}",
        )
    combo = []
    for value, values in zip(given, entry.params, strict=True):
        match = [v for v in values if _plain(v) == value or v == value]
        if not match:
            raise SourceError(
                f"{value!r} is not a value of {benchmark}'s parameter ({', '.join(map(_plain, values))})",
                "give one of those values",
            )
        combo.append(match[0])
    return Target(benchmark, tuple(combo), entry.unit)


# ---------------------------------------------------------------------------------------------------
# Running asv over commits
# ---------------------------------------------------------------------------------------------------
def ensure_machine(runner: Runner, config: Path, machine: str | None, home: Path) -> None:
    """asv's machine description: the one named, or this host's (made once)."""
    if machine is not None:
        runner(["machine", "--yes", "--machine", machine, "--config", str(config)])
    elif not (home / ".asv-machine.json").exists():
        runner(["machine", "--yes", "--config", str(config)])


def run_commits(
    runner: Runner,
    config: Path,
    commits: Sequence[str],
    bench: str | None,
    log: Log,
    machine: str | None = None,
    again: bool = False,
) -> int:
    """asv run over exactly these commits (asv builds each with our step), results guarded.  What
    succeeded before is not measured again, unless ``again``: then the commit's samples grow, and
    the commits' rounds alternate, so a disturbance of the machine reaches all of them alike."""
    conf = json.loads(config.read_text())
    results_dir = config.resolve().parent / conf["results_dir"]
    flags = ["--record-samples", "--show-stderr"]
    flags += ["--append-samples", "--interleave-rounds"] if again else ["--skip-existing-successful"]
    flags += ["--bench", bench] if bench else []
    flags += ["--machine", machine] if machine else []
    from tools.mtb import guard_folder  # the very guard `mtb asv` and `mtb main` use

    with tempfile.TemporaryDirectory(prefix="mtb-source-") as tmp:
        hashfile = Path(tmp) / "commits.txt"
        hashfile.write_text("".join(f"{c}\n" for c in commits))
        with results_store.guarded(results_dir, guard_folder(config), log):
            return runner(["run", "--config", str(config), *flags, f"HASHFILE:{hashfile}"])


# ---------------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Figure:
    """A recorded figure: the median of its samples and a 95% interval of that median."""

    median: float
    low: float
    high: float
    samples: int
    exact: bool  # False: too few samples for a 95% interval, (low, high) is their range

    def describe(self, unit: str) -> str:
        from asv.util import human_value

        kind = "95% interval" if self.exact else "range (too few samples for a 95% interval)"
        return (
            f"median {human_value(self.median, unit)}, {kind} {human_value(self.low, unit)} .. "
            f"{human_value(self.high, unit)} ({self.samples} samples)"
        )


def figure_of(samples: Sequence[float]) -> Figure:
    import numpy as np
    from scipy import stats

    values = np.asarray(samples, dtype=float)
    median = float(np.median(values))
    if len(values) > 1:
        interval = stats.quantile_test(values, q=median, p=0.5).confidence_interval(CONFIDENCE)
        low, high = float(interval.low), float(interval.high)
        if math.isfinite(low) and math.isfinite(high):
            return Figure(median, low, high, len(values), True)
    return Figure(median, float(values.min()), float(values.max()), len(values), False)


def read_samples(results_dir: Path, commit: str, goal: Target, machine: str | None = None) -> list[float]:
    """Every sample asv recorded for ``goal`` at ``commit``, oldest run first (empty: not measured,
    failed or skipped)."""
    from asv.results import Results

    path = results_store.point_file(results_dir, commit, machine)
    if path is None:
        return []
    results = Results.load(str(path))
    if goal.benchmark not in results.get_all_result_keys():
        return []
    params = results.get_result_params(goal.benchmark)
    combos = list(itertools.product(*params))
    if goal.combo not in combos:
        return []
    index = combos.index(goal.combo)
    value = results.get_result_value(goal.benchmark, params)[index]
    if not results_store.is_value(value):
        return []
    samples = results.get_result_samples(goal.benchmark, params)[index]
    return list(samples) if samples else [value]


def added_samples(before: Sequence[float], after: Sequence[float]) -> list[float]:
    """The samples one asv run added, from a commit's samples before and after it.  asv appends them
    with --append-samples, but starts afresh where a round failed or the benchmark's code changed:
    then everything stored is this run's."""
    if list(after[: len(before)]) == list(before):
        return list(after[len(before) :])
    return list(after)


def read_figure(results_dir: Path, commit: str, goal: Target, machine: str | None = None) -> Figure | None:
    """The figure of every sample asv recorded for ``goal`` at ``commit`` (None: no sample)."""
    samples = read_samples(results_dir, commit, goal, machine)
    return figure_of(samples) if samples else None


def midpoint(good: Figure, bad: Figure) -> float:
    """Halfway between the two ends on a log scale: a figure 3x slower and one 3x faster are alike far."""
    return math.sqrt(good.median * bad.median)


def side_of(probe: Figure, good: Figure, bad: Figure) -> str:
    """ "good" or "bad": the end whose figure the probe's median resembles."""
    above = probe.median > midpoint(good, bad)
    return "bad" if above == (bad.median > good.median) else "good"


def straddles(probe: Figure, good: Figure, bad: Figure) -> bool:
    """The probe's interval holds the midpoint: one measurement cannot say which end it resembles."""
    return probe.low <= midpoint(good, bad) <= probe.high


def ends_differ(good: Figure, bad: Figure) -> bool:
    return good.high < bad.low or bad.high < good.low


# a step smaller than this share of the whole change (on a log scale) is not "the" commit: the change
# is then spread over several commits, or the measurements were disturbed
STEP_SHARE = 0.5


def step_isolated(before: Figure, after: Figure, good: Figure, bad: Figure) -> bool:
    """``before`` -> ``after`` is a step in the direction of good -> bad, its intervals apart, carrying
    at least STEP_SHARE of the change between the ends (all four measured in one run)."""
    whole = math.log(bad.median / good.median)
    step = math.log(after.median / before.median)
    return ends_differ(before, after) and whole != 0 and step / whole >= STEP_SHARE


# ---------------------------------------------------------------------------------------------------
# The bisection
# ---------------------------------------------------------------------------------------------------
@dataclass
class Bisection:
    target: Target
    line: list[str]  # good, the first-parent commits after it, bad
    subjects: dict[str, str]
    good: Figure
    bad: Figure
    last_good: str = ""
    first_bad: str = ""
    figures: dict[str, Figure] = field(default_factory=dict)  # each commit's figure in its step's run
    skipped: dict[str, str] = field(default_factory=dict)  # commit -> why it has no figure
    measured_again: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    confirmed: dict[str, Figure] = field(default_factory=dict)  # the closing run: ends and the pair
    isolated: bool = False  # the closing run shows the pair's step, apart and carrying the change

    def unresolved(self) -> list[str]:
        """Commits between the adjacent pair the search could not decide (every one failed)."""
        i, j = self.line.index(self.last_good), self.line.index(self.first_bad)
        return self.line[i + 1 : j]


def _why_no_figure(records: Path, commit: str) -> str:
    record = source_build.read_record(records / f"{commit}.json") or {}
    if record.get("status") == "failed":
        return f"its build failed ({record.get('error')}; record {records / commit}.json)"
    return "no figure: the benchmark failed or was skipped at this commit (asv's output above says why)"


def _next_probe(lo: int, hi: int, skipped: set[int]) -> int | None:
    """The untested index nearest the middle of (lo, hi), or None when every one between failed."""
    middle = (lo + hi) / 2
    candidates = [i for i in range(lo + 1, hi) if i not in skipped]
    return min(candidates, key=lambda i: (abs(i - middle), i)) if candidates else None


QUIET_AGAIN = "run the same command again when the machine is quiet (built commits come from the cache)"


def bisect(
    runner: Runner,
    config: Path,
    repo: Path,
    line: list[str],
    goal: Target,
    records: Path,
    log: Log,
    machine: str | None = None,
) -> Bisection:
    """Binary-search ``line`` for the first commit like its bad end.  Every probe is measured in one
    asv run with both ends, rounds interleaved, and judged against the ends of that run only: a busy
    spell of the machine then moves the probe and the ends together instead of moving the midpoint.
    A closing run measures the ends and the pair found; the pair must show the step there."""
    conf = json.loads(config.read_text())
    results_dir = config.resolve().parent / conf["results_dir"]
    subjects = {c: subject(repo, c) for c in line}
    good_end, bad_end = line[0], line[-1]

    def together(commits: list[str]) -> dict[str, Figure | None]:
        """One run over ``commits``; each figure from the samples this run added."""
        unique = list(dict.fromkeys(commits))
        before = {c: read_samples(results_dir, c, goal, machine) for c in unique}
        run_commits(runner, config, unique, goal.regex(), log, machine=machine, again=True)
        added = {c: added_samples(before[c], read_samples(results_dir, c, goal, machine)) for c in unique}
        return {c: figure_of(new) if new else None for c, new in added.items()}

    def ends_of(run: dict[str, Figure | None], what: str) -> tuple[Figure, Figure]:
        good, bad = run[good_end], run[bad_end]
        for flag, commit, found in (("--good", good_end, good), ("--bad", bad_end, bad)):
            if found is None:
                raise SourceError(
                    f"{flag} {commit[:12]} has no figure for {goal.describe()}{what}: "
                    + _why_no_figure(records, commit),
                    f"give a {flag} commit that builds and runs the benchmark",
                )
        assert good is not None and bad is not None
        return good, bad

    good, bad = ends_of(together([good_end, bad_end]), "")
    if not ends_differ(good, bad):
        log("the ends' intervals overlap: measuring both once more")
        good, bad = ends_of(together([good_end, bad_end]), "")
        if not ends_differ(good, bad):
            raise SourceError(
                f"{goal.describe()} did not change between the ends: {good.describe(goal.unit)} at "
                f"{good_end[:12]}, {bad.describe(goal.unit)} at {bad_end[:12]}",
                "give ends whose figures differ (or measure with the full profile for more samples)",
            )
    found = Bisection(goal, line, subjects, good, bad, figures={good_end: good, bad_end: bad})
    log(f"good {good.median:.6g} at {good_end[:12]}, bad {bad.median:.6g} at {bad_end[:12]}")
    try:
        return _search(found, together, ends_of, records, log)
    except SourceError as exc:
        raise BisectionStopped(exc, found) from None


def _search(
    found: Bisection,
    together: Callable[[list[str]], dict[str, Figure | None]],
    ends_of: Callable[[dict[str, Figure | None], str], tuple[Figure, Figure]],
    records: Path,
    log: Log,
) -> Bisection:
    """The binary search of ``bisect`` and its closing run; ``found`` records each step as it goes."""
    line, goal = found.line, found.target
    good_end, bad_end = line[0], line[-1]
    lo, hi, failed = 0, len(line) - 1, set()
    found.last_good, found.first_bad = line[lo], line[hi]
    while hi - lo > 1:
        index = _next_probe(lo, hi, failed)
        if index is None:
            break
        commit = line[index]
        log(f"probing {commit[:12]} ({hi - lo - 1} commit(s) between {line[lo][:12]} and {line[hi][:12]})")
        run = together([good_end, commit, bad_end])
        probe = run[commit]
        if probe is None:
            failed.add(index)
            found.skipped[commit] = _why_no_figure(records, commit)
            found.steps.append(f"{commit[:12]} skipped: {found.skipped[commit]}")
            log(f"stepping past {commit[:12]}: {found.skipped[commit]}")
            continue
        good, bad = ends_of(run, f" in the run probing {commit[:12]}")
        if not ends_differ(good, bad) or straddles(probe, good, bad):
            log(f"{commit[:12]}: the ends overlap or its interval holds their midpoint; measuring again")
            run = together([good_end, commit, bad_end])
            probe = run[commit] or probe
            good, bad = ends_of(run, f" in the run probing {commit[:12]} again")
            found.measured_again.append(commit)
            if not ends_differ(good, bad):
                raise SourceError(
                    f"the ends' figures overlapped in two runs in a row while probing {commit[:12]} "
                    f"(good {good.describe(goal.unit)}, bad {bad.describe(goal.unit)}): the machine is "
                    "too busy to tell them apart",
                    QUIET_AGAIN,
                )
        side = side_of(probe, good, bad)
        found.figures[commit] = probe
        found.steps.append(
            f"{commit[:12]} like {side}: {probe.describe(goal.unit)}; ends in that run "
            f"{good.median:.6g} / {bad.median:.6g}"
        )
        lo, hi = (index, hi) if side == "good" else (lo, index)
        found.last_good, found.first_bad = line[lo], line[hi]
    closing = together([good_end, found.last_good, found.first_bad, bad_end])
    found.confirmed = {c: f for c, f in closing.items() if f is not None}
    pair = [closing[found.last_good], closing[found.first_bad]]
    ends = [closing[good_end], closing[bad_end]]
    found.isolated = all(f is not None for f in [*pair, *ends]) and step_isolated(*pair, *ends)  # type: ignore[arg-type]
    return found


def _figure_text(found: Bisection, commit: str) -> str:
    figure = found.confirmed.get(commit) or found.figures.get(commit)
    return figure.describe(found.target.unit) if figure else "no figure"


def format_stopped(found: Bisection) -> str:
    """What a bisection that stopped midway had found (its figures stay in the results)."""
    between = found.line.index(found.first_bad) - found.line.index(found.last_good) - 1
    lines = [
        f"stopped after {len(found.steps)} step(s): the change in {found.target.describe()} lies after "
        f"{found.last_good[:12]} and at or before {found.first_bad[:12]} ({between} commit(s) between)",
        *(f"  {step}" for step in found.steps),
    ]
    return "\n".join(lines)


def format_bisection(found: Bisection) -> str:
    goal = found.target
    first, last = found.line[0], found.line[-1]
    before = found.confirmed.get(found.last_good) or found.figures[found.last_good]
    after = found.confirmed.get(found.first_bad) or found.figures[found.first_bad]
    ratio = after.median / before.median if before.median else float("nan")
    lines = []
    if not found.isolated:
        lines.append(
            f"no single commit isolated for {goal.describe()}: the search ended at {found.last_good[:12]} "
            f"-> {found.first_bad[:12]}, but the closing run does not show a step there that is apart "
            f"and carries at least {STEP_SHARE:.0%} of the change between the ends.  The change may be "
            f"spread over several commits, or the runs were disturbed: {QUIET_AGAIN}"
        )
    elif found.unresolved():
        lines.append(
            f"{goal.describe()} changed between {found.last_good[:12]} and {found.first_bad[:12]}; the "
            f"{len(found.unresolved())} commit(s) between them did not build, so the change is in one of "
            f"{', '.join(c[:12] for c in [*found.unresolved(), found.first_bad])}"
        )
    else:
        lines.append(f"{goal.describe()} changed at {found.first_bad} {found.subjects[found.first_bad]}")
    lines += [
        "  the closing run (the ends and the pair, rounds interleaved):",
        *(
            f"    {role:<8} {commit[:12]} {found.subjects[commit]}: {_figure_text(found, commit)}"
            for role, commit in (
                ("good end", first),
                ("before", found.last_good),
                ("after", found.first_bad),
                ("bad end", last),
            )
        ),
        f"  after / before = {ratio:.3g}",
    ]
    for commit, why in found.skipped.items():
        lines.append(f"  stepped past {commit[:12]} {found.subjects[commit]}: {why}")
    for commit in found.measured_again:
        lines.append(f"  measured {commit[:12]} twice: the ends overlapped or it held their midpoint")
    lines.append("  steps: " + "; ".join(found.steps) if found.steps else "  steps: none (adjacent ends)")
    return "\n".join(lines)


def build_summary(records: Path, commits: Sequence[str], subjects: dict[str, str]) -> str:
    """One line per commit: how its build went (built, cached, failed, with seconds and ccache)."""
    rows = []
    for commit in commits:
        record = source_build.read_record(records / f"{commit}.json") or {}
        status = record.get("status", "not built")
        uses = [u["status"] for u in record.get("uses", [])]
        cache = record.get("ccache") or {}
        detail = f"{record.get('seconds', '-')} s" + (
            f", ccache {cache['hits']} hits / {cache['misses']} misses" if cache else ""
        )
        if uses and uses[-1] == "cached":
            detail += ", this run from the cache"
        line = f"{commit[:12]} {status:<9} {detail:<44} {subjects.get(commit, '')}"
        if status == "failed":
            line += f"\n{'':13}{record.get('error')}"
        rows.append(line)
    return "\n".join(rows)
