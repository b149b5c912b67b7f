"""The change detector's error rates, measured on this machine with a slowdown planted for real.

An error-rate timeline has three points with the same framework releases: ``aa-1`` and ``aa-2`` (an A/A
pair: every flag between them is false) and ``planted``, whose pins add a small local package
(``tools/planted/mtb_planted_slowdown.py``) that slows a few MLX functions by known factors.  Between
``aa-2`` and ``planted`` the slowed series should be flagged and nothing else.  Every point installs the
package (an idle build at the A points), so the shared environment never keeps a slowdown from an
earlier point.  The timeline, its asv configuration, environment and results live under
``.asv/error-rates/``: never in the default timeline, ``results/`` or the published site.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tools import detect
from tools import timeline as tl

PACKAGE = "mtb-planted-slowdown"
MODULE = "mtb_planted_slowdown"
SOURCE = Path(__file__).resolve().parent / "planted" / f"{MODULE}.py"
# MLX function -> (factor, the op benchmark that calls it): the goal's 1.25x, and larger steps that show
# where detection starts at this machine's noise
DEFAULT_PLAN = {
    "softmax": (1.25, "ops.normalization.Softmax.time_forward"),
    "sort": (1.5, "ops.shaping.Sort.time_forward"),
    "argmax": (2.0, "ops.reductions.Argmax.time_forward"),
}
# the backend whose calls go through the slowed functions (the compiled and torch ones do not)
PLANTED_BACKEND = "mlx-cpu"
IDLE_VERSION, PLANTED_VERSION = "1.0", "2.0"
TAGS = ("aa-1", "aa-2", "planted")


def plant_wheel(version: str, plan: dict[str, float], folder: Path) -> Path:
    """A pure-Python wheel of the planted package with ``plan`` written into it (empty: idle)."""
    source = SOURCE.read_text()
    line = "PLAN: dict[str, float] = {}"
    filled = line.replace("{}", repr(plan))
    source, count = re.subn(f"^{re.escape(line)}$", filled, source, count=1, flags=re.M)
    if count != 1:
        raise RuntimeError(f"{SOURCE}: no `{line}` line to fill")
    info = f"{MODULE}-{version}.dist-info"
    files = {
        f"{MODULE}.py": source,
        f"{MODULE}.pth": f"import {MODULE}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {version}\n",
        f"{info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: mlx-torch-bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{MODULE}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), text)
    return wheel


def default_pins(companions: tl.Companions) -> dict[str, str]:
    """What every point of the default timeline's newest point pins: the frameworks and workloads."""
    mlx_pins, _ = companions.mlx_pins(companions.mlx)
    return {**mlx_pins, **companions.shared_pins(companions.torch)}


def points(pins: dict[str, str], idle: Path, planted: Path) -> list[tl.Point]:
    """aa-1, aa-2 (the idle package) and planted (the slowing one), each with ``pins`` beside it."""
    wheels = (idle, idle, planted)
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    return [
        tl.Point(tag, {**pins, PACKAGE: wheel.resolve().as_uri()}, start + index * tl.DAY)
        for index, (tag, wheel) in enumerate(zip(TAGS, wheels, strict=True))
    ]


def write_config(default_config: dict, folder: Path, root: Path) -> Path:
    """The default asv configuration pointed at the error-rate timeline, with its own environment,
    results and site folders (absolute paths: the file lives outside the project root)."""
    conf = {
        **default_config,
        "repo": str(folder / "timeline"),
        "benchmark_dir": str(root / "benchmarks"),
        "env_dir": str(folder / "env"),
        "results_dir": str(folder / "results"),
        "html_dir": str(folder / "html"),
    }
    path = folder / "asv.conf.json"
    path.write_text(json.dumps(conf, indent=1) + "\n")
    return path


@dataclass
class PlantedFinding:
    function: str
    factor: float
    benchmark: str
    series: int  # parameter combinations slowed
    found: int  # of them flagged at the planted point as regressions
    ratios: list[float] = field(default_factory=list)  # the flagged ratios


@dataclass
class ErrorRates:
    comparisons: int
    aa_comparisons: int
    false_flags: list[dict]
    planted: list[PlantedFinding]

    def as_json(self) -> dict:
        return asdict(self)


def _planted_benchmark(series: detect.Series, plan: dict[str, tuple[float, str]]) -> str | None:
    """The planted function a series goes through: its own timings, or its MLX/torch ratio."""
    slowed = any(p == PLANTED_BACKEND or p.startswith(f"{PLANTED_BACKEND}/") for p in series.params)
    for function, (_, benchmark) in plan.items():
        if series.benchmark == benchmark and slowed:
            return function
    return None


def evaluate(
    series: dict[str, detect.Series],
    changes: Sequence[detect.Change],
    plan: dict[str, tuple[float, str]] = DEFAULT_PLAN,
) -> ErrorRates:
    """Sort the detector's flags on an error-rate timeline into false flags and planted finds."""
    by_key = {s.key + "@" + s.machine: s for s in series.values()}
    findings = {
        function: PlantedFinding(function, factor, benchmark, 0, 0)
        for function, (factor, benchmark) in plan.items()
    }
    for entry in series.values():
        function = _planted_benchmark(entry, plan)
        if function and entry.samples[-1] and entry.samples[-2]:
            findings[function].series += 1
    false_flags = []
    for change in changes:
        entry = by_key[change.series + "@" + change.machine]
        function = _planted_benchmark(entry, plan)
        if function and change.point == TAGS[-1] and change.kind == "regression":
            findings[function].found += 1
            findings[function].ratios.append(round(change.ratio, 3))
        else:
            false_flags.append(change.as_json())
    aa = sum(1 for s in series.values() for i, j in detect.pairs(s) if (i, j) == (0, 1))
    return ErrorRates(detect.comparisons(series), aa, false_flags, list(findings.values()))


def format_rates(rates: ErrorRates, what: str = "timings") -> str:
    lines = [
        f"{what}: false flags: {len(rates.false_flags)} among {rates.comparisons} comparisons "
        f"({rates.aa_comparisons} of them A/A, aa-1 -> aa-2; the rest aa-2 -> planted, unplanted series)"
    ]
    for flag in rates.false_flags:
        lines.append(f"  false: {flag['point']:<8} x{flag['ratio']:.2f} {flag['series']}")
    for finding in rates.planted:
        lines.append(
            f"planted x{finding.factor:.2f} {finding.function:<8} ({finding.benchmark}, {PLANTED_BACKEND}): "
            f"flagged {finding.found} of {finding.series} series at 'planted'"
            + (f", ratios {', '.join(f'{r:.2f}' for r in finding.ratios)}" if finding.ratios else "")
        )
    return "\n".join(lines)
