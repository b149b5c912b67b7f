"""Source mode and the bisection to a commit, without MLX's sources: a tiny framework-like git repository
made here (an in-tree PEP 517 backend that writes the wheel itself, so nothing is downloaded to build),
run through the same configuration generator, build step, asv and bisection that `mtb source` and
`mtb bisect` use for MLX.  One commit makes ``work`` do 5x the work (the step the bisection must find);
one fails to build with compiler-like lines (recorded, stepped past).  Plus fast checks of bad input, of
the FetchContent parsing and mirrors, and of the classification arithmetic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools import mtb, source, source_build
from tools.source import Figure

ROOT = Path(__file__).resolve().parents[2]
PLANTED_FACTOR = 5  # work done by the planted commit, against 1 before it: far beyond this VM's noise

BACKEND = '''\
"""An in-tree PEP 517 backend: compiles the package (a syntax error fails the build, as a compiler
would) and writes the wheel zip itself."""
import base64, hashlib, pathlib, py_compile, sys, zipfile

NAME, VERSION = "tinyfw", "0.1.0"
DIST = f"{NAME}-{VERSION}.dist-info"


def _compile():
    for step, path in enumerate(sorted(pathlib.Path(NAME).glob("*.py"))):
        for line in range(20):  # a compiler's chatter before the error
            print(f"[{step * 20 + line:3d}%] Building CXX object {path}.o", flush=True)
        try:
            py_compile.compile(str(path), doraise=True)
        except py_compile.PyCompileError as exc:
            print(f"{path}:1: error: {exc.msg}", flush=True)
            print("compilation terminated.", flush=True)
            raise SystemExit(1)


def _entry(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _compile()
    files = {f"{NAME}/{p.name}": p.read_bytes() for p in sorted(pathlib.Path(NAME).glob("*.py"))}
    files[f"{DIST}/METADATA"] = f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\n".encode()
    wheel_file = "Wheel-Version: 1.0\\nGenerator: tinyfw\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    files[f"{DIST}/WHEEL"] = wheel_file.encode()
    record = [_entry(name, data) for name, data in files.items()] + [f"{DIST}/RECORD,,"]
    files[f"{DIST}/RECORD"] = ("\\n".join(record) + "\\n").encode()
    wheel = f"{NAME}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(pathlib.Path(wheel_directory) / wheel, "w") as out:
        for name, data in files.items():
            out.writestr(name, data)
    return wheel
'''

PYPROJECT = """\
[build-system]
requires = []
build-backend = "backend"
backend-path = ["."]

[project]
name = "tinyfw"
version = "0.1.0"
"""


def _work(factor: int) -> str:
    return f"FACTOR = {factor}\n\n\ndef work(n):\n    total = 0\n    for i in range(n * FACTOR):\n" + (
        "        total += i * i % 7\n    return total\n"
    )


BENCHMARK = """\
class Work:
    params = [[60000]]
    param_names = ["n"]
    rounds = 2
    repeat = 4
    number = 1
    warmup_time = 0.0

    def setup(self, n):
        import tinyfw  # the build under test, installed by asv: imported by the benchmark process only

        self.work = tinyfw.work

    def time_work(self, n):
        self.work(n)
"""

IDENTITY = ["-c", "user.email=ci@example.invalid", "-c", "user.name=ci", "-c", "commit.gpgsign=false"]


def _git(cwd: Path, *args: str) -> str:
    out = subprocess.run(["git", *IDENTITY, *args], cwd=cwd, check=True, capture_output=True, text=True)
    return out.stdout.strip()


def _commit(repo: Path, message: str, files: dict[str, str | None]) -> str:
    for name, text in files.items():
        if text is None:
            (repo / name).unlink()
        else:
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", message)
    return _git(repo, "rev-parse", "HEAD")


def make_framework(repo: Path) -> dict[str, str]:
    """The tiny framework's history: base, neutral, broken, fix, planted (5x the work), neutral."""
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    return {
        "base": _commit(
            repo,
            "base: work(n)",
            {"pyproject.toml": PYPROJECT, "backend.py": BACKEND, "tinyfw/__init__.py": _work(1)},
        ),
        "neutral": _commit(repo, "docs: a README", {"README": "tinyfw\n"}),
        "broken": _commit(repo, "add a helper (does not compile)", {"tinyfw/helper.py": "def helper(:\n"}),
        "fix": _commit(repo, "fix the helper", {"tinyfw/helper.py": "def helper():\n    return 1\n"}),
        "planted": _commit(repo, "work: a slower loop", {"tinyfw/__init__.py": _work(PLANTED_FACTOR)}),
        "after": _commit(repo, "docs: more README", {"README": "tinyfw, a tiny framework\n"}),
    }


# ---------------------------------------------------------------------------------------------------
# End to end: the generator, the build step, asv, the bisection
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def project(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("source-project")
    commits = make_framework(work / "tinyfw")
    bench = work / "benchmarks"
    bench.mkdir()
    (bench / "__init__.py").write_text("")
    (bench / "bench_work.py").write_text(BENCHMARK)
    build = source.Build("tinyfw", cache=work / "cache", isolation=False)
    conf = source.make_config(
        project="tinyfw-source",
        repo=str(work / "tinyfw"),
        package="tinyfw",
        build=build,
        benchmark_dir=str(bench),
        results_dir=str(work / "results"),
        env_dir=str(work / "env"),
        html_dir=str(work / "html"),
        pins={},
        python=f"{sys.version_info.major}.{sys.version_info.minor}",
        tools_root=str(ROOT),
    )
    config = source.write_config(conf, work / "asv.conf.json")
    (work / "home").mkdir()
    env = dict(os.environ, HOME=str(work / "home"))

    def runner(args: list[str]) -> int:
        return mtb._asv(args, env, ok_codes=range(256))

    source.ensure_machine(runner, config, "ci", work / "home")
    line = source.bisect_commits(work / "tinyfw", commits["base"], commits["after"])
    code = source.run_commits(runner, config, line, None, print, machine="ci")
    return {
        "work": work,
        "commits": commits,
        "config": config,
        "runner": runner,
        "build": build,
        "line": line,
        "code": code,
    }


GOAL = source.Target("bench_work.Work.time_work", ("60000",), "seconds")


@pytest.mark.slow
def test_the_run_records_every_commit_and_the_failed_build(project):
    commits, results = project["commits"], project["work"] / "results"
    assert project["code"] in (0, 1, 2)
    for name in ("base", "neutral", "fix", "planted", "after"):
        figure = source.read_figure(results, commits[name], GOAL, "ci")
        assert figure is not None and figure.samples >= 4, name
        record = json.loads((project["build"].records() / f"{commits[name]}.json").read_text())
        assert record["status"] == "built" and record["seconds"] >= 0 and record["wheel"].endswith(".whl")
        assert record["subject"] and record["python"] and "CMAKE_ARGS" not in record
    assert source.read_figure(results, commits["broken"], GOAL, "ci") is None, "no timing for a failed build"
    record = json.loads((project["build"].records() / f"{commits['broken']}.json").read_text())
    assert record["status"] == "failed"
    assert 5 <= len(record["last_lines"]) <= source_build.TAIL_LINES + 1
    assert any("helper.py:1: error:" in line for line in record["last_lines"])
    summary = source.build_summary(project["build"].records(), project["line"], {})
    assert "failed" in summary and "helper.py:1: error" in summary


@pytest.mark.slow
def test_the_bisection_names_the_planted_commit_and_steps_past_the_broken_one(project):
    commits = project["commits"]
    found = source.bisect(
        project["runner"],
        project["config"],
        project["work"] / "tinyfw",
        project["line"],
        GOAL,
        project["build"].records(),
        print,
        machine="ci",
    )
    assert found.first_bad == commits["planted"] and found.last_good == commits["fix"]
    assert found.isolated, "the closing run shows the planted step"
    ends = (found.line[0], found.line[-1])
    assert set(found.confirmed) == {*ends, found.last_good, found.first_bad}
    assert commits["broken"] in found.skipped and "build failed" in found.skipped[commits["broken"]]
    after, before = found.figures[found.first_bad], found.figures[found.last_good]
    assert after.median > 2 * before.median, "the planted step is what the bisection reports"
    text = source.format_bisection(found)
    assert f"changed at {commits['planted']} work: a slower loop" in text
    assert "stepped past" in text and "95% interval" in text
    # the failed commit's build was not attempted again: its record was read
    record = json.loads((project["build"].records() / f"{commits['broken']}.json").read_text())
    assert [use["status"] for use in record["uses"]] == ["failed"]


@pytest.mark.slow
def test_a_cached_wheel_is_reused_and_a_failure_is_not_rebuilt(project, tmp_path, capsys):
    commits, build = project["commits"], project["build"]
    checkout = project["work"] / "tinyfw"
    options = source_build.Options("tinyfw", cache=build.cache, isolation=False)
    assert source_build.build(options, checkout, commits["base"], tmp_path / "out") == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["tinyfw-0.1.0-py3-none-any.whl"]
    record = json.loads((build.records() / f"{commits['base']}.json").read_text())
    assert record["uses"][-1]["status"] == "cached"
    assert source_build.build(options, checkout, commits["broken"], tmp_path / "out2") == 1
    assert "not built again" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------
# Bad input: one line, the problem and the fix, before anything runs
# ---------------------------------------------------------------------------------------------------
def _mtb_error(argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        mtb.main(argv)
    message = str(exc.value.code)
    assert "\n" not in message and "fix:" in message, message
    return message


def test_a_path_that_is_not_a_git_repository(tmp_path):
    message = _mtb_error(["source", "--mlx-repo", str(tmp_path), "--range", "a..b"])
    assert message.startswith("mtb: error: --mlx-repo") and "is not a git repository" in message


def test_a_range_without_commits_and_a_bad_range(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _commit(repo, "one", {"a": "1"})
    _commit(repo, "two", {"a": "2"})
    assert "has no commits" in _mtb_error(["source", "--mlx-repo", str(repo), "--range", "HEAD..HEAD~1"])
    assert "not of the form A..B" in _mtb_error(["source", "--mlx-repo", str(repo), "--range", "HEAD"])
    assert "is not a commit" in _mtb_error(["source", "--mlx-repo", str(repo), "--range", "nope..HEAD"])
    assert len(source.commits_in_range(repo, "HEAD~1..HEAD")) == 1
    with pytest.raises(source.SourceError, match="not an ancestor"):
        source.bisect_commits(repo, "HEAD", "HEAD~1")


def test_cmake_and_a_compiler_are_needed_only_where_a_commit_has_a_cmakelists(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    plain = _commit(repo, "python only", {"setup.py": ""})
    cmake = _commit(repo, "C++", {"CMakeLists.txt": "project(x)\n"})
    monkeypatch.setattr(source.shutil, "which", lambda tool: None if tool == "cmake" else "/usr/bin/" + tool)
    source.check_toolchain(repo, [plain])
    with pytest.raises(source.SourceError, match=r"builds with CMake but cmake is not on PATH; fix: install"):
        source.check_toolchain(repo, [plain, cmake])


def test_a_missing_deps_mirror_and_an_unknown_benchmark(tmp_path):
    with pytest.raises(source.SourceError, match="is not a folder; fix:"):
        source.check_mirror(tmp_path / "none")
    declared = {
        "ops.reductions.Sum.time_forward": source.Declared([["'8x1e5'", "'1e6'"], ["'float32'"]], "seconds")
    }
    with pytest.raises(source.SourceError, match=r"did you mean ops\.reductions\.Sum\.time_forward"):
        source.target("ops.reductions.Sum.time_forwrd", "8x1e5,float32", declared)
    with pytest.raises(source.SourceError, match=r"takes 2 parameter\(s\), --params gave 1"):
        source.target("ops.reductions.Sum.time_forward", "8x1e5", declared)
    with pytest.raises(source.SourceError, match="'9x9' is not a value"):
        source.target("ops.reductions.Sum.time_forward", "9x9,float32", declared)
    goal = source.target("ops.reductions.Sum.time_forward", "1e6, float32", declared)
    assert goal.combo == ("'1e6'", "'float32'")
    assert goal.regex() == r"^ops\.reductions\.Sum\.time_forward\('1e6',\ 'float32'\)$"
    with pytest.raises(source.SourceError, match="matches no benchmark"):
        source.select("^nothing", declared)


def test_a_bad_source_cache_setting_is_reported_before_anything_runs(tmp_path, monkeypatch):
    afile = tmp_path / "file"
    afile.write_text("")
    monkeypatch.setenv("MTB_SOURCE_CACHE", str(afile))
    with pytest.raises(SystemExit, match=r"MTB_SOURCE_CACHE=.* is a file, not a folder"):
        mtb.main(["source", "--mlx-repo", str(tmp_path), "--range", "a..b"])


# ---------------------------------------------------------------------------------------------------
# FetchContent: parsing and the offline mirrors
# ---------------------------------------------------------------------------------------------------
CMAKELISTS = """\
FetchContent_Declare(metal_cpp URL ${METAL_CPP_URL})
# FetchContent_Declare(old GIT_REPOSITORY https://github.com/old/old.git GIT_TAG v1)
FetchContent_Declare(
  json
  URL https://github.com/nlohmann/json/releases/download/v3.11.3/json.tar.xz)
FetchContent_Declare(
  fmt
  GIT_REPOSITORY https://github.com/fmtlib/fmt.git
  GIT_TAG 10.2.1
  EXCLUDE_FROM_ALL)
FetchContent_Declare(
    gguflib
    GIT_REPOSITORY https://github.com/antirez/gguf-tools/
    GIT_TAG 8fa6eb65236618e28fd7710a0fba565f7faa1848)
FetchContent_Declare(elsewhere GIT_REPOSITORY https://gitlab.com/a/b.git GIT_TAG v2)
FetchContent_Declare(zipped URL "https://github.com/NVIDIA/cccl/archive/refs/tags/v2.8.1.tar.gz")
"""


def test_fetchcontent_declarations_that_name_github_are_found():
    found = {d.name: d for d in source_build.fetchcontent_dependencies(CMAKELISTS)}
    assert set(found) == {"json", "fmt", "gguflib", "zipped"}
    assert (found["json"].owner, found["json"].repo, found["json"].tag) == ("nlohmann", "json", "v3.11.3")
    assert (found["fmt"].owner, found["fmt"].repo, found["fmt"].tag) == ("fmtlib", "fmt", "10.2.1")
    assert (
        found["gguflib"].repo == "gguf-tools"
        and found["gguflib"].variable == "FETCHCONTENT_SOURCE_DIR_GGUFLIB"
    )
    assert (found["zipped"].repo, found["zipped"].tag) == ("cccl", "v2.8.1")


def test_mirrored_dependencies_are_extracted_once_and_the_others_explained(tmp_path):
    mirror = tmp_path / "mirrors" / "fmtlib+fmt" / "repo"
    mirror.mkdir(parents=True)
    _git(mirror, "init", "-q", "-b", "main")
    _commit(mirror, "fmt", {"include/fmt/core.h": "// fmt\n"})
    _git(mirror, "tag", "10.2.1")
    checkout = tmp_path / "checkout"
    (checkout / "sub").mkdir(parents=True)
    (checkout / "sub" / "CMakeLists.txt").write_text(CMAKELISTS)
    deps = source_build.declared_dependencies(checkout)
    args, missing = source_build.offline_cmake_args(deps, tmp_path / "mirrors", tmp_path / "cache")
    folder = tmp_path / "cache" / "deps" / "fmtlib+fmt" / "10.2.1"
    assert args == ["-DFETCHCONTENT_FULLY_DISCONNECTED=ON", f"-DFETCHCONTENT_SOURCE_DIR_FMT={folder}"]
    assert (folder / "include" / "fmt" / "core.h").read_text() == "// fmt\n"
    assert {d.name for d in missing} == {"json", "gguflib", "zipped"}
    assert source_build.offline_cmake_args(deps, tmp_path / "mirrors", tmp_path / "cache")[0] == args
    log = [
        "CMake Error: add_subdirectory given source",
        "  /b/_deps/json-src which is not an existing directory",
    ]
    line = source_build.explain(log, missing, tmp_path / "mirrors")
    assert line and "dependency json" in line and "nlohmann+json/repo" in line
    assert source_build.explain(["error: something else"], missing, tmp_path / "mirrors") is None


# ---------------------------------------------------------------------------------------------------
# Classification arithmetic, on crafted figures
# ---------------------------------------------------------------------------------------------------
def _fig(median: float, low: float, high: float) -> Figure:
    return Figure(median, low, high, 8, True)


def test_a_probe_goes_to_the_side_its_median_resembles_on_a_log_scale():
    good, bad = _fig(1.0, 0.9, 1.1), _fig(4.0, 3.8, 4.3)
    assert source.midpoint(good, bad) == pytest.approx(2.0)
    assert source.side_of(_fig(1.9, 1.8, 1.95), good, bad) == "good"
    assert source.side_of(_fig(2.1, 2.05, 2.2), good, bad) == "bad"
    # a speed-up: the bad end is the faster one
    assert source.side_of(_fig(3.0, 2.9, 3.1), bad, good) == "good"
    assert source.side_of(_fig(1.2, 1.1, 1.3), bad, good) == "bad"
    assert source.straddles(_fig(1.9, 1.5, 2.5), good, bad)
    assert not source.straddles(_fig(1.9, 1.5, 1.99), good, bad)
    assert source.ends_differ(good, bad) and not source.ends_differ(good, _fig(1.2, 1.05, 1.3))


def test_a_step_is_isolated_only_when_apart_and_carrying_the_change():
    good, bad = _fig(1.0, 0.95, 1.05), _fig(1.5, 1.45, 1.55)
    assert source.step_isolated(_fig(1.0, 0.97, 1.03), _fig(1.45, 1.4, 1.5), good, bad)
    # intervals that touch: no step
    assert not source.step_isolated(_fig(1.2, 1.1, 1.35), _fig(1.3, 1.25, 1.4), good, bad)
    # apart, but a fifth of the change: the rest happened elsewhere
    assert not source.step_isolated(_fig(1.0, 0.99, 1.01), _fig(1.08, 1.07, 1.09), good, bad)
    # a step the wrong way
    assert not source.step_isolated(_fig(1.45, 1.4, 1.5), _fig(1.0, 0.97, 1.03), good, bad)
    # a speed-up between the ends: a step down is the change
    assert source.step_isolated(_fig(1.5, 1.45, 1.55), _fig(1.0, 0.97, 1.03), bad, good)


def test_a_pair_the_closing_run_does_not_confirm_is_reported_as_no_commit():
    line = ["a" * 40, "b" * 40, "c" * 40]
    good, bad = _fig(1.0, 0.95, 1.05), _fig(1.5, 1.45, 1.55)
    found = source.Bisection(
        source.Target("ops.X.time_forward", ("1",), "seconds"),
        line,
        {c: f"subject {c[0]}" for c in line},
        good,
        bad,
        last_good=line[1],
        first_bad=line[2],
        figures={line[0]: good, line[1]: _fig(1.4, 1.3, 1.5), line[2]: bad},
        confirmed={line[0]: good, line[1]: _fig(1.4, 1.3, 1.5), line[2]: _fig(1.45, 1.4, 1.55)},
        isolated=False,
    )
    text = source.format_bisection(found)
    assert text.startswith("no single commit isolated") and "changed at" not in text
    assert "quiet" in text and "bad end  cccccccccccc subject c" in text
    found.isolated = True
    assert "changed at " + line[2] + " subject c" in source.format_bisection(found)


def test_a_figure_is_the_median_with_an_order_statistic_interval():
    many = source.figure_of([1.0, 1.2, 0.9, 1.1, 1.05, 0.95, 1.15, 1.0, 0.98, 1.02])
    assert many.exact and many.low <= many.median <= many.high and many.median == pytest.approx(1.01)
    few = source.figure_of([3.0, 1.0, 2.0])
    assert not few.exact and (few.low, few.median, few.high) == (1.0, 2.0, 3.0)
    assert "too few samples" in few.describe("seconds")


def test_the_next_probe_is_the_middle_or_the_untested_commit_nearest_it():
    assert source._next_probe(0, 6, set()) == 3
    assert source._next_probe(0, 6, {3}) == 2
    assert source._next_probe(0, 6, {2, 3}) == 4
    assert source._next_probe(0, 3, {1, 2}) is None


# ---------------------------------------------------------------------------------------------------
# One source of truth for the configuration
# ---------------------------------------------------------------------------------------------------
def test_the_template_is_the_generators_output_and_asv_loads_it():
    from asv.config import Config

    assert (ROOT / "asv.source.conf.json").read_text() == source.template_text(), (
        "asv.source.conf.json is made by tools/source.py: "
        "python3 -c 'from tools import source; source.write_template()'"
    )
    conf = Config.load(str(ROOT / "asv.source.conf.json"))
    (command,) = conf.build_command
    assert command.startswith("ASV_PYTHONPATH={conf_dir} python -m tools.source_build --name mlx")
    assert "-DBLA_VENDOR=Generic" in command
    assert conf.install_command == [
        "in-dir={env_dir} python -m pip install --no-deps --force-reinstall {wheel_file}"
    ]
    assert conf.matrix["req"]["torch"] == [mtb.tl.Companions().torch]


def test_the_build_step_imports_only_the_standard_library():
    code = (
        "import sys; before = set(sys.modules); import tools.source_build;"
        "extra = {m.split('.')[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names);"
        "print(sorted(extra - {'tools'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_runs_added_samples_are_told_apart_from_earlier_ones():
    assert source.added_samples([1.0, 2.0], [1.0, 2.0, 3.0, 4.0]) == [3.0, 4.0]
    assert source.added_samples([], [5.0]) == [5.0]
    # asv started afresh (a failed round, or the benchmark's code changed): all it holds is this run's
    assert source.added_samples([1.0, 2.0, 3.0], [7.0, 8.0]) == [7.0, 8.0]
    assert source.added_samples([1.0, 2.0], [9.0, 2.0, 3.0]) == [9.0, 2.0, 3.0]


def test_a_bisection_stopped_midway_keeps_its_steps(tmp_path, monkeypatch):
    """The ends overlap twice while probing the second commit: the error carries the first step."""
    line = [c * 40 for c in "abcde"]
    # the figures of each asv run, by commit: the ends, a probe like the good end, then two busy runs
    runs = iter([
        {"a": 1.0, "e": 2.0},
        {"a": 1.0, "c": 1.0, "e": 2.0},
        {"a": 1.5, "d": 1.5, "e": 1.5},
        {"a": 1.5, "d": 1.5, "e": 1.5},
    ])  # fmt: skip
    stored: dict[str, list[float]] = {}

    def fake_run(runner, config, commits, bench, log, machine=None, again=False):
        figures = next(runs)
        for commit in commits:
            stored.setdefault(commit, []).extend(figures[commit[0]] * (1 + 0.001 * i) for i in range(10))
        return 0

    monkeypatch.setattr(source, "run_commits", fake_run)
    monkeypatch.setattr(
        source, "read_samples", lambda _dir, commit, goal, machine=None: list(stored.get(commit, []))
    )
    monkeypatch.setattr(source, "subject", lambda repo, commit: f"subject {commit[0]}")
    config = tmp_path / "asv.conf.json"
    config.write_text(json.dumps({"results_dir": "results"}))
    goal = source.Target("ops.X.time_forward", ("1",), "seconds")
    with pytest.raises(source.BisectionStopped, match="too busy") as stopped:
        source.bisect(lambda args: 0, config, tmp_path, line, goal, tmp_path, lambda _msg: None)
    found = stopped.value.found
    assert (found.last_good, found.first_bad) == (line[2], line[4]) and len(found.steps) == 1
    assert found.steps[0].startswith("cccccccccccc like good")
    text = source.format_stopped(found)
    assert "stopped after 1 step(s)" in text and "(1 commit(s) between)" in text
