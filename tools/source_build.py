"""asv's build step in source mode: one commit of a framework's git repository made into a wheel, cached.

asv runs ``python -m tools.source_build ...`` (``build_command`` of the configuration tools/source.py
writes) in the environment's Python with the working directory at the checked-out commit, and gives it
``ASV_COMMIT`` and ``ASV_BUILD_CACHE_DIR``, the folder the install step takes the wheel from.  asv cleans
the checkout (``git clean -fdx``) between commits, so nothing of a build survives there: the wheels, the
build records and the compiler cache live in a cache folder of our own (``--cache``, from the validated
setting MTB_SOURCE_CACHE), one folder per repository:

    <cache>/<name>/<commit>/<wheel>   the wheel, under its own file name (pip reads the name)
    <cache>/<name>/<commit>.json      the build record: status, seconds, compiler, BLAS, the last lines
    <cache>/<name>/<commit>.log       the whole build log
    <cache>/ccache/                   the compiler cache, shared by every repository and commit
    <cache>/deps/<owner>+<repo>/<tag> dependency sources extracted from local mirrors (--deps-mirror)

A commit whose build failed stays failed (its record is printed again, nothing is rebuilt) unless
``--rebuild-failed``.  STANDARD LIBRARY ONLY: the environment's Python has only the pinned runtime
packages.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CACHE = Path.home() / ".cache" / "mlx-torch-bench" / "source"
# what a failure record keeps of the build log: enough for a compiler's error and its context
TAIL_LINES = 30
# GitHub addresses FetchContent fetches from: a git repository, a release asset, a source archive
_GITHUB = r"https://github\.com/(?P<owner>[\w.-]+)/(?P<repo>[\w.-]+?)"
_URL_FORMS = (
    re.compile(_GITHUB + r"/releases/download/(?P<tag>[^/\s\"]+)/"),
    re.compile(_GITHUB + r"/archive/(?:refs/tags/)?(?P<tag>[^/\s\"]+?)\.(?:tar\.gz|tar\.xz|zip)"),
)
_GIT_FORM = re.compile(_GITHUB + r"(?:\.git)?/?$")


@dataclass(frozen=True)
class Dependency:
    """One ``FetchContent_Declare`` that names a GitHub repository and a tag."""

    name: str  # as declared; CMake's FETCHCONTENT_SOURCE_DIR_<NAME> upper-cases it
    owner: str
    repo: str
    tag: str
    url: str

    @property
    def variable(self) -> str:
        return f"FETCHCONTENT_SOURCE_DIR_{self.name.upper()}"


def _keyword(body: str, key: str) -> str | None:
    match = re.search(rf"(?:^|\s){key}\s+\"?([^\s\")]+)", body)
    return match.group(1) if match else None


def fetchcontent_dependencies(text: str) -> list[Dependency]:
    """The GitHub dependencies a CMake file declares with ``FetchContent_Declare`` (others are left:
    a mirror can only stand in for a GitHub repository)."""
    text = re.sub(r"#[^\n]*", "", text)  # comments may name URLs that are not declared
    found = []
    for match in re.finditer(r"FetchContent_Declare\s*\(\s*([\w.-]+)([^)]*)\)", text, flags=re.I):
        name, body = match.group(1), match.group(2)
        repository, tag, url = (
            _keyword(body, "GIT_REPOSITORY"),
            _keyword(body, "GIT_TAG"),
            _keyword(body, "URL"),
        )
        if repository and tag and (git := _GIT_FORM.match(repository)):
            found.append(Dependency(name, git["owner"], git["repo"], tag, repository))
        elif url:
            for form in _URL_FORMS:
                if asset := form.match(url):
                    found.append(Dependency(name, asset["owner"], asset["repo"], asset["tag"], url))
                    break
    return found


def declared_dependencies(checkout: Path) -> list[Dependency]:
    """Every GitHub dependency the checkout's CMake files declare, once per name."""
    seen: dict[str, Dependency] = {}
    for path in sorted(checkout.rglob("CMakeLists.txt")):
        if ".git" in path.parts:
            continue
        with contextlib.suppress(OSError, UnicodeDecodeError):
            for dep in fetchcontent_dependencies(path.read_text()):
                seen.setdefault(dep.name.lower(), dep)
    return list(seen.values())


def mirror_of(mirrors: Path, dep: Dependency) -> Path | None:
    """The local full-history mirror of a dependency's repository, if there is one."""
    path = mirrors / f"{dep.owner}+{dep.repo}" / "repo"
    return path if path.is_dir() else None


def extract_tag(mirror: Path, tag: str, into: Path) -> None:
    """``git archive <tag>`` of a mirror, extracted once into ``into`` (made whole or not at all)."""
    if into.is_dir():
        return
    into.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{into.name}.", dir=into.parent))
    try:
        archive = subprocess.Popen(
            ["git", "-C", str(mirror), "archive", "--format=tar", tag],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert archive.stdout is not None
        with tarfile.open(fileobj=archive.stdout, mode="r|") as tar:
            tar.extractall(partial, filter="data")
        error = archive.stderr.read().decode(errors="replace") if archive.stderr else ""
        if archive.wait() != 0:
            raise OSError(f"git archive {tag} in {mirror} failed: {error.strip()}")
        os.replace(partial, into)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def offline_cmake_args(
    deps: list[Dependency], mirrors: Path, cache: Path
) -> tuple[list[str], list[Dependency]]:
    """CMake arguments that point each mirrored dependency at its extracted sources and forbid fetching,
    and the dependencies that have no mirror (a build that needs one of them fails: see ``explain``)."""
    args, missing = ["-DFETCHCONTENT_FULLY_DISCONNECTED=ON"], []
    for dep in deps:
        mirror = mirror_of(mirrors, dep)
        if mirror is None:
            missing.append(dep)
            continue
        folder = cache / "deps" / f"{dep.owner}+{dep.repo}" / dep.tag
        extract_tag(mirror, dep.tag, folder)
        args.append(f"-D{dep.variable}={folder}")
    return args, missing


def explain(log_lines: list[str], missing: list[Dependency], mirrors: Path | None) -> str | None:
    """One line naming a dependency the failed build needed but could not have (no mirror, no fetching)."""
    text = "\n".join(log_lines).lower()
    for dep in missing:
        if f"_deps/{dep.name.lower()}-" in text or dep.variable.lower() in text:
            return (
                f"dependency {dep.name} ({dep.url}) is neither mirrored nor reachable: put a mirror of "
                f"{dep.owner}/{dep.repo} at {mirrors}/{dep.owner}+{dep.repo}/repo, or build with network"
            )
    return None


# ---------------------------------------------------------------------------------------------------
# What a record says about the tools
# ---------------------------------------------------------------------------------------------------
def _first_line(command: list[str]) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines else None


def ccache_counts(env: dict[str, str]) -> dict[str, int] | None:
    """Hits and misses so far in the compiler cache (None without ccache)."""
    if shutil.which("ccache") is None:
        return None
    out = subprocess.run(["ccache", "--print-stats"], capture_output=True, text=True, env=env, check=False)
    stats = dict(re.findall(r"^(\w+)\t(\d+)$", out.stdout, flags=re.M))
    if not stats:
        return None
    hits = int(stats.get("direct_cache_hit", 0)) + int(stats.get("preprocessed_cache_hit", 0))
    return {"hits": hits, "misses": int(stats.get("cache_miss", 0))}


# the line that says why a build failed: a compiler's diagnostic, then CMake's, then any error line
# that is not pip's own closing boilerplate
_DIAGNOSTICS = (
    re.compile(r":\d+(?::\d+)?: (?:fatal )?error\b"),
    re.compile(r"CMake Error"),
    re.compile(r"\berror\b(?!: (?:subprocess-exited-with-error|metadata-generation-failed))", re.I),
)


def headline(lines: list[str]) -> str:
    """The one line of a failed build's last lines that best says why it failed."""
    for pattern in _DIAGNOSTICS:
        for line in lines:
            if pattern.search(line):
                return line.strip()
    kept = [line.strip() for line in lines if line.strip()]
    return kept[-1] if kept else "(no output)"


def blas_lines(log_lines: list[str]) -> list[str]:
    """What CMake said about BLAS and LAPACK (which library the build linked)."""
    pattern = re.compile(r"(blas|lapack)", re.I)
    found = [line.strip() for line in log_lines if line.lstrip().startswith("--") and pattern.search(line)]
    return list(dict.fromkeys(found))[:8]


# ---------------------------------------------------------------------------------------------------
# The build
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Options:
    name: str
    cache: Path
    cmake_args: tuple[str, ...] = ()
    deps_mirror: Path | None = None
    isolation: bool = True
    rebuild_failed: bool = False


def write_record(path: Path, record: dict) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(partial, path)


def read_record(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _subject(checkout: Path, commit: str) -> str:
    out = subprocess.run(
        ["git", "log", "-1", "--format=%s", commit], cwd=checkout, capture_output=True, text=True, check=False
    )
    return out.stdout.strip()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def build_environment(options: Options, checkout: Path, extra_cmake: list[str]) -> dict[str, str]:
    env = dict(os.environ)
    # the repository root asv put on PYTHONPATH for this step must not leak into the project's build
    env.pop("PYTHONPATH", None)
    env["CCACHE_DIR"] = str(options.cache / "ccache")
    env["CMAKE_BUILD_PARALLEL_LEVEL"] = str(os.cpu_count() or 1)
    cmake = [*shlex.split(env.get("CMAKE_ARGS", "")), *options.cmake_args, *extra_cmake]
    if (checkout / "CMakeLists.txt").exists() and shutil.which("ccache"):
        # asv's clean checkout leaves CMake nothing to reuse; the compiler cache makes a rebuild incremental
        cmake += ["-DCMAKE_C_COMPILER_LAUNCHER=ccache", "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"]
    if cmake:
        env["CMAKE_ARGS"] = shlex.join(cmake)
    return env


def build(options: Options, checkout: Path, commit: str, out_dir: Path) -> int:
    """Build (or take from the cache) the wheel of ``commit`` into ``out_dir``; 0 when there is one."""
    folder = options.cache / options.name
    folder.mkdir(parents=True, exist_ok=True)
    record_path, wheel_dir = folder / f"{commit}.json", folder / commit
    record = read_record(record_path) or {}
    cached = sorted(wheel_dir.glob("*.whl")) if wheel_dir.is_dir() else []
    if cached and record.get("status") == "built":
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(cached[0], out_dir / cached[0].name)
        record.setdefault("uses", []).append({"status": "cached", "at": _now()})
        write_record(record_path, record)
        print(f"[source] {commit[:12]}: cached wheel {cached[0].name} (built in {record.get('seconds')} s)")
        return 0
    if record.get("status") == "failed" and not options.rebuild_failed:
        print(f"[source] {commit[:12]}: its build failed before ({record_path}); not built again:")
        print("\n".join(record.get("last_lines", [])))
        print(f"[source] {commit[:12]}: {record.get('error')} (--rebuild-failed builds it again)")
        return 1
    return _build_fresh(options, checkout, commit, out_dir, record_path, wheel_dir)


def _build_fresh(
    options: Options, checkout: Path, commit: str, out_dir: Path, record_path: Path, wheel_dir: Path
) -> int:
    cmake_project = (checkout / "CMakeLists.txt").exists()
    record: dict = {
        "commit": commit,
        "subject": _subject(checkout, commit),
        "started": _now(),
        "python": sys.version.split()[0],
        "compiler": _first_line(["c++", "--version"]),
        "cmake": _first_line(["cmake", "--version"]) if cmake_project else None,
        "build_isolation": options.isolation,
    }
    log_path = record_path.with_suffix(".log")
    extra: list[str] = []
    missing: list[Dependency] = []
    problem = None
    if cmake_project and (shutil.which("cmake") is None or shutil.which("c++") is None):
        problem = (
            "this commit has a CMakeLists.txt but cmake or a C++ compiler (c++) is not on PATH: install them"
        )
    elif options.deps_mirror is not None:
        try:
            extra, missing = offline_cmake_args(
                declared_dependencies(checkout), options.deps_mirror, options.cache
            )
        except OSError as exc:
            problem = f"dependency sources could not be extracted from the mirror: {exc}"
    env = build_environment(options, checkout, extra)
    record["cmake_args"] = env.get("CMAKE_ARGS", "")
    record["ccache_dir"] = env["CCACHE_DIR"]
    before = ccache_counts(env)
    started = time.monotonic()
    lines: list[str] = []
    code = 1
    if problem is None:
        with tempfile.TemporaryDirectory(prefix="mtb-wheel-") as tmp:
            command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", tmp, "."]
            if not options.isolation:
                command.insert(-1, "--no-build-isolation")
            print(f"[source] {commit[:12]}: building ({shlex.join(command[2:])}); log {log_path}", flush=True)
            with log_path.open("w") as log:
                log.write(f"$ {shlex.join(command)}\nCMAKE_ARGS={record['cmake_args']}\n")
                log.flush()
                code = subprocess.run(
                    command, cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT
                ).returncode
            lines = log_path.read_text(errors="replace").splitlines()
            wheels = sorted(Path(tmp).glob("*.whl"))
            if code == 0 and wheels:
                shutil.rmtree(wheel_dir, ignore_errors=True)
                wheel_dir.mkdir(parents=True)
                shutil.copy2(wheels[0], wheel_dir / wheels[0].name)
                out_dir.mkdir(parents=True, exist_ok=True)
                shutil.copy2(wheels[0], out_dir / wheels[0].name)
                record["wheel"] = wheels[0].name
            elif code == 0:
                code, problem = 1, "pip wheel exited 0 but wrote no wheel"
    record["seconds"] = round(time.monotonic() - started, 1)
    after = ccache_counts(env)
    if cmake_project and before is not None and after is not None:
        delta = {k: after[k] - before[k] for k in before}
        record["ccache"] = {**delta, "incremental": delta["hits"] > 0}
    if cmake_project:
        record["blas"] = blas_lines(lines) or f"not reported by CMake; CMAKE_ARGS: {record['cmake_args']}"
    record["status"] = "built" if code == 0 else "failed"
    if code != 0:
        reason = problem or explain(lines, missing, options.deps_mirror)
        record["last_lines"] = ([reason] if reason else []) + lines[-TAIL_LINES:]
        record["error"] = reason or headline(lines[-TAIL_LINES:])
        print(f"[source] {commit[:12]}: build failed after {record['seconds']} s; its last lines:")
        print("\n".join(record["last_lines"]))
    else:
        print(f"[source] {commit[:12]}: built {record['wheel']} in {record['seconds']} s")
    record.setdefault("uses", []).append({"status": record["status"], "at": _now()})
    write_record(record_path, record)
    return 0 if code == 0 else 1


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m tools.source_build", description=__doc__)
    parser.add_argument("--name", required=True, help="the repository's folder in the cache, e.g. mlx")
    parser.add_argument(
        "--cache", type=Path, default=Path(os.environ.get("MTB_SOURCE_CACHE") or DEFAULT_CACHE).expanduser()
    )
    parser.add_argument("--cmake-args", default="", help="CMake arguments every build of this run gets")
    parser.add_argument("--deps-mirror", type=Path, help="folder of <owner>+<repo>/repo git mirrors")
    parser.add_argument("--no-isolation", action="store_true", help="pip wheel --no-build-isolation")
    parser.add_argument("--rebuild-failed", action="store_true", help="build commits whose build failed")
    args = parser.parse_args(argv)
    return Options(
        name=args.name,
        cache=args.cache,
        cmake_args=tuple(shlex.split(args.cmake_args)),
        deps_mirror=args.deps_mirror,
        isolation=not args.no_isolation,
        rebuild_failed=args.rebuild_failed,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    checkout = Path.cwd()
    commit = (
        os.environ.get("ASV_COMMIT")
        or subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    out_dir = os.environ.get("ASV_BUILD_CACHE_DIR")
    if not out_dir:
        print("[source] ASV_BUILD_CACHE_DIR is not set: this step is asv's build_command", file=sys.stderr)
        return 2
    return build(options, checkout, commit, Path(out_dir))


if __name__ == "__main__":
    sys.exit(main())
