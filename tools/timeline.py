"""Version timelines: git repositories whose commits are framework release points, for asv to run over.

asv graphs history along a repository's commits.  Here each commit of a timeline repository is one release
point: it pins the packages to install (``timeline-pins.txt``) and is tagged with the release it brings
(``mlx-0.31.0``).  asv checks out each point and the configuration's install step installs its pins into
one reused environment, so a graph's x-axis is framework releases and ``asv find`` names the release that
changed a benchmark.

Commits are deterministic (fixed author, the release date from the registry, or a date kept in version
order when the registry gives none), so rebuilding a timeline with more releases keeps the hashes, and
the results recorded against them, of the points it already had.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

PINS_FILE = "timeline-pins.txt"
POINT_FILE = "timeline-point.json"
AUTHOR = "mlx-torch-bench timeline <timeline@mlx-torch-bench.invalid>"
# mlx-cpu, the Linux CPU build of MLX, exists from this release on.
OLDEST_LINUX_MLX = Version("0.26.5")
# Oldest mlx-lm whose declared MLX minimum matters here (older ones predate mlx-cpu).
OLDEST_MLX_LM = Version("0.26.0")
EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


class TimelineError(ValueError):
    pass


@dataclass(frozen=True)
class Point:
    """One release point: the tag that names it, the pins to install, when it happened."""

    tag: str
    pins: dict[str, str]
    date: dt.datetime
    notes: tuple[str, ...] = field(default_factory=tuple)

    def requirements(self) -> str:
        """One line per pin: ``name==version``, or ``name @ file:///...`` for a local wheel."""
        return "".join(
            f"{name} @ {version}\n" if version.startswith("file:") else f"{name}=={version}\n"
            for name, version in self.pins.items()
        )


# ---------------------------------------------------------------------------------------------------
# The registry: pip's own index, for the versions and their upload dates
# ---------------------------------------------------------------------------------------------------
def registry_versions(package: str) -> list[str]:
    """Every version pip can see for ``package``, oldest first."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", package],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Available versions:\s*(.+)", out.stdout)
    if out.returncode != 0 or not match:
        raise TimelineError(f"pip found no versions of {package}: {out.stderr.strip() or out.stdout.strip()}")
    return sort_versions(v.strip() for v in match.group(1).split(","))


def pip_index_url() -> str:
    """The index pip itself installs from: its configured ``index-url`` (environment first, then the
    install and global sections), else pip's own default."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    )
    found = dict(re.findall(r"^(:env:|install|global|user|site)\.index-url='([^']*)'$", out.stdout, re.M))
    for scope in (":env:", "install", "global", "user", "site"):
        if found.get(scope):
            return found[scope].rstrip("/")
    from pip._internal.models.index import PyPI  # pip's default index, as pip defines it

    return str(PyPI.simple_url).rstrip("/")


def _version_of(filename: str) -> str | None:
    from packaging.utils import (
        InvalidSdistFilename,
        InvalidWheelFilename,
        parse_sdist_filename,
        parse_wheel_filename,
    )

    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[1])
        return str(parse_sdist_filename(filename)[1])
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None


def release_dates(package: str, timeout: float = 20.0, index: str | None = None) -> dict[str, dt.datetime]:
    """Upload date of each release's first file, from pip's index through the JSON simple API (PEP 691
    and 700); an index that does not give dates (or no network) leaves the points in version order,
    said in one line."""
    index = index or pip_index_url()
    request = urllib.request.Request(
        f"{index}/{package}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            files = json.load(response)["files"]
    except Exception as exc:
        print(
            f"[timeline] no release dates for {package} from {index} ({type(exc).__name__}): "
            "points are dated in version order",
            file=sys.stderr,
        )
        return {}
    dates: dict[str, dt.datetime] = {}
    for entry in files:
        version, stamp = _version_of(entry.get("filename", "")), entry.get("upload-time")
        if version and stamp:
            when = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            dates[version] = min(when, dates.get(version, when))
    return dates


def sort_versions(versions: Iterable[str]) -> list[str]:
    parsed = []
    for v in versions:
        try:
            parsed.append((Version(v), v))
        except InvalidVersion:
            continue
    return [v for _, v in sorted(set(parsed))]


# ---------------------------------------------------------------------------------------------------
# Choosing versions
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Selection:
    """Which releases of a framework: a range (PEP 440 specifier), the last N, or an explicit list."""

    range: str | None = None
    last: int | None = None
    only: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [f"range {self.range!r}"] if self.range else []
        parts += [f"last {self.last}"] if self.last else []
        parts += [f"versions {', '.join(self.only)}"] if self.only else []
        return " and ".join(parts) or "no filter"

    def apply(self, package: str, available: Sequence[str]) -> list[str]:
        chosen = sort_versions(available)
        if self.last is not None and self.last < 1:
            raise TimelineError(f"--{package}-last {self.last}: give 1 or more releases")
        if self.only:
            missing = [v for v in self.only if v not in chosen]
            if missing:
                # before anything is written: an existing timeline stays as it is
                raise TimelineError(
                    f"{package} {', '.join(missing)} is not a release in the registry; "
                    f"the newest are {', '.join(chosen[-8:])}"
                )
            chosen = sort_versions(self.only)
        if self.range:
            try:
                spec = SpecifierSet(self.range)
            except InvalidSpecifier as exc:
                raise TimelineError(
                    f"{package} range {self.range!r} is not a version specifier: {exc}"
                ) from None
            chosen = [v for v in chosen if Version(v) in spec]
        if self.last:
            chosen = chosen[-self.last :]
        if not chosen:
            raise TimelineError(
                f"no {package} release is left after the filter ({self.describe()}); "
                f"available: {', '.join(sort_versions(available)[-12:])}"
            )
        return chosen


def mlx_lm_for(mlx_version: str, minimums: dict[str, str]) -> str | None:
    """The newest mlx-lm whose declared minimum MLX is at most ``mlx_version``.

    mlx-lm declares ``mlx>=X`` (on macOS only, from 0.28.4 on; on Linux it declares nothing, yet needs
    it all the same): 0.26.4 wants >= 0.26.0 and the 0.32 series >= 0.32.2, so an MLX release gets the
    newest mlx-lm written for it.
    """
    fitting = [lm for lm, least in minimums.items() if Version(least) <= Version(mlx_version)]
    return sort_versions(fitting)[-1] if fitting else None


def mlx_lm_minimums(versions: Sequence[str], cache: Path | None = None) -> dict[str, str]:
    """``mlx-lm version -> minimum MLX`` read from each wheel's metadata (cached on disk)."""
    cache = cache or Path.home() / ".cache" / "mlx-torch-bench" / "mlx-lm-minimums.json"
    known: dict[str, str] = json.loads(cache.read_text()) if cache.exists() else {}
    for version in versions:
        if version in known or Version(version) < OLDEST_MLX_LM:
            continue
        minimum = _declared_mlx_minimum(version)
        if minimum:
            known[version] = minimum
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(known, indent=1, sort_keys=True))
    return {v: m for v, m in known.items() if v in versions}


def _declared_mlx_minimum(version: str) -> str | None:
    import tempfile
    import zipfile

    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"mlx-lm=={version}", "-d", tmp],
            capture_output=True,
            text=True,
            check=False,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if out.returncode != 0 or not wheels:
            return None
        with zipfile.ZipFile(wheels[0]) as wheel:
            name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
            metadata = wheel.read(name).decode()
    match = re.search(r"^Requires-Dist: mlx\s*>=\s*([0-9.]+)", metadata, flags=re.M)
    return match.group(1) if match else None


# ---------------------------------------------------------------------------------------------------
# Points
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Companions:
    """What every point pins beside the framework under study."""

    torch: str = "2.13.0"
    mlx: str = "0.32.4"
    numpy: str = "2.4.6"
    linux: bool = sys.platform.startswith("linux")
    mlx_lm_minimums: dict[str, str] = field(default_factory=dict)
    # What the workloads build their models with; pinned so that every point installs the same code
    # around the framework under study (mlx-lm is chosen per MLX release, above).
    workload_pins: dict[str, str] = field(
        default_factory=lambda: {"transformers": "5.23.0", "mlx-whisper": "0.4.3"}
    )

    def shared_pins(self, torch_version: str) -> dict[str, str]:
        return {"torch": torch_version, "numpy": self.numpy, **self.workload_pins}

    def mlx_pins(self, mlx_version: str) -> tuple[dict[str, str], tuple[str, ...]]:
        pins = {"mlx": mlx_version}
        if self.linux:
            pins["mlx-cpu"] = mlx_version  # asv and pip drop extras: mlx[cpu] is two packages
        notes: tuple[str, ...] = ()
        if self.mlx_lm_minimums:
            lm = mlx_lm_for(mlx_version, self.mlx_lm_minimums)
            if lm:
                pins["mlx-lm"] = lm
            else:
                notes = (f"no mlx-lm release declares support for mlx {mlx_version}",)
        return pins, notes


def _dated(versions: Sequence[str], dates: dict[str, dt.datetime], step: dt.timedelta) -> list[dt.datetime]:
    """Registry dates where known; otherwise one ``step`` after the previous point (version order)."""
    out: list[dt.datetime] = []
    for version in versions:
        when = dates.get(version)
        if when is None or (out and when <= out[-1]):
            when = (out[-1] if out else EPOCH) + step
        out.append(when)
    return out


def mlx_timeline(
    versions: Sequence[str], companions: Companions, dates: dict[str, dt.datetime]
) -> list[Point]:
    points = []
    for version, when in zip(versions, _dated(versions, dates, DAY), strict=True):
        pins, notes = companions.mlx_pins(version)
        pins |= companions.shared_pins(companions.torch)
        points.append(Point(f"mlx-{version}", pins, when, notes))
    return points


def torch_timeline(
    versions: Sequence[str], companions: Companions, dates: dict[str, dt.datetime]
) -> list[Point]:
    mlx_pins, notes = companions.mlx_pins(companions.mlx)
    return [
        Point(f"torch-{version}", {**mlx_pins, **companions.shared_pins(version)}, when, notes)
        for version, when in zip(versions, _dated(versions, dates, DAY), strict=True)
    ]


def combined_timeline(
    mlx_versions: Sequence[str],
    torch_versions: Sequence[str],
    companions: Companions,
    mlx_dates: dict[str, dt.datetime],
    torch_dates: dict[str, dt.datetime],
) -> list[Point]:
    """Both frameworks' releases in release order; each point changes one framework."""

    def events(framework: str, versions: Sequence[str], dates: dict[str, dt.datetime]) -> list:
        return [(when, framework, v) for v, when in zip(versions, _dated(versions, dates, DAY), strict=True)]

    ordered = sorted(events("mlx", mlx_versions, mlx_dates) + events("torch", torch_versions, torch_dates))
    current = {"mlx": mlx_versions[0], "torch": torch_versions[0]}
    points: list[Point] = []
    for when, framework, version in ordered:
        current[framework] = version
        mlx_pins, notes = companions.mlx_pins(current["mlx"])
        pins = {**mlx_pins, **companions.shared_pins(current["torch"])}
        if points and when <= points[-1].date:
            when = points[-1].date + dt.timedelta(minutes=1)
        points.append(Point(f"{framework}-{version}", pins, when, notes))
    return points


# ---------------------------------------------------------------------------------------------------
# The repository
# ---------------------------------------------------------------------------------------------------
def _git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise TimelineError(f"git {' '.join(args)} failed in {repo}: {out.stderr.strip()}")
    return out.stdout.strip()


def build_repo(points: Sequence[Point], path: Path, progress: Callable[[str], None] = print) -> list[str]:
    """Write ``points`` as a fresh git repository at ``path`` (branch ``main``); return the commit hashes.

    The commits depend only on the points, so the same points give the same hashes: rebuilding never
    orphans results recorded against an earlier build of the same timeline.
    """
    if not points:
        raise TimelineError("a timeline needs at least one release point")
    tags = [p.tag for p in points]
    if len(set(tags)) != len(tags):
        raise TimelineError(f"release points repeat a tag: {tags}")
    if path.exists():
        if not (path / ".git").exists() or not (path / POINT_FILE).exists():
            raise TimelineError(f"{path} exists and is not a timeline: choose another --out")
        import shutil

        shutil.rmtree(path)
    path.mkdir(parents=True)
    _git(path, "init", "-q", "-b", "main")
    name, email = AUTHOR[: AUTHOR.index(" <")], AUTHOR[AUTHOR.index("<") + 1 : -1]
    hashes = []
    started = time.monotonic()
    for index, point in enumerate(points, 1):
        (path / PINS_FILE).write_text(point.requirements())
        record = {**dataclasses.asdict(point), "date": point.date.isoformat()}
        (path / POINT_FILE).write_text(json.dumps(record, indent=1) + "\n")
        stamp = point.date.strftime("%Y-%m-%dT%H:%M:%S%z")
        env = dict(
            os.environ,
            GIT_AUTHOR_NAME=name,
            GIT_AUTHOR_EMAIL=email,
            GIT_COMMITTER_NAME=name,
            GIT_COMMITTER_EMAIL=email,
            GIT_AUTHOR_DATE=stamp,
            GIT_COMMITTER_DATE=stamp,
        )
        _git(path, "add", PINS_FILE, POINT_FILE, env=env)
        message = f"{point.tag}\n\n" + point.requirements() + "".join(f"\nnote: {n}" for n in point.notes)
        _git(path, "-c", "commit.gpgsign=false", "commit", "-q", "-m", message, env=env)
        _git(path, "tag", point.tag, env=env)
        hashes.append(_git(path, "rev-parse", "HEAD"))
        progress(
            f"[timeline] point {index}/{len(points)} {point.tag} ({len(points) - index} left, "
            f"{time.monotonic() - started:.1f} s)"
        )
    return hashes


def installer_env(environ: dict[str, str]) -> dict[str, str]:
    """``environ`` plus UV_FIND_LINKS from pip's find-links (where pip finds the local torch wheel), for
    the install step's uv, which reads no pip configuration."""
    env = dict(environ)
    if "UV_FIND_LINKS" not in env:
        links = (
            env.get("PIP_FIND_LINKS")
            or subprocess.run(
                [sys.executable, "-m", "pip", "config", "get", "global.find-links"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
        )
        if links:
            env["UV_FIND_LINKS"] = ",".join(links.split())
    return env


def read_points(path: Path) -> list[dict]:
    """The points of a timeline repository, oldest first (for checks and reports)."""
    hashes = _git(path, "rev-list", "--reverse", "main").split()
    return [json.loads(_git(path, "show", f"{h}:{POINT_FILE}")) | {"commit": h} for h in hashes]
