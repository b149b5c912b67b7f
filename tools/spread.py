"""Run-to-run spread: how far apart two runs of the same suite put each timing.

For every timing (an op's ``time_`` method, a workload job's ``track_<what>_seconds``) and parameter
combination measured in both result files, the relative
difference is |a - b| / min(a, b).  The report gives its median for ops at or over a threshold (1 ms by
default: where a few percent is the goal) and under it, the share within 5%, and the least repeatable.
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from asv.results import Results

from tools.fidelity import is_timing


@dataclass
class SpreadReport:
    large: list[tuple[str, float, float, float]] = field(default_factory=list)  # name, a, b, rel diff
    small: list[tuple[str, float, float, float]] = field(default_factory=list)
    min_seconds: float = 1e-3

    @staticmethod
    def _median(rows: list[tuple[str, float, float, float]]) -> float:
        return statistics.median(r[3] for r in rows) if rows else float("nan")

    @property
    def median_large(self) -> float:
        return self._median(self.large)

    @property
    def median_small(self) -> float:
        return self._median(self.small)


class SpreadError(ValueError):
    """A results file that cannot be compared."""


def timings(path: Path) -> dict[str, float]:
    """``benchmark[params]`` -> seconds, for every timing with a value; ``SpreadError`` (one line) for a
    file that is missing or is no asv results file."""
    try:
        results = Results.load(str(path))
    except Exception as exc:  # asv raises its own UserError, or ValueError / OSError underneath
        raise SpreadError(
            f"{path} cannot be read as asv results ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            "give a file from results/<machine>/"
        ) from None
    out: dict[str, float] = {}
    for key in results.get_all_result_keys():
        if not is_timing(key):
            continue
        params = results.get_result_params(key)
        values = results.get_result_value(key, params)
        combos = list(itertools.product(*params)) if params else [()]
        for combo, value in zip(combos, values, strict=True):
            if value is not None and value == value:  # NaN marks skipped or failed
                out[f"{key}[{', '.join(combo)}]"] = float(value)
    return out


def compare(first: dict[str, float], second: dict[str, float], min_seconds: float = 1e-3) -> SpreadReport:
    report = SpreadReport(min_seconds=min_seconds)
    for name in sorted(first.keys() & second.keys()):
        a, b = first[name], second[name]
        row = (name, a, b, abs(a - b) / min(a, b))
        (report.large if max(a, b) >= min_seconds else report.small).append(row)
    if not report.large and not report.small:
        raise ValueError("the two result files share no timing: are they from the same suite?")
    return report


def compare_files(first: Path, second: Path, min_seconds: float = 1e-3) -> SpreadReport:
    for path in (first, second):
        if not path.is_file():
            raise SystemExit(f"spread: no result file at {path} (asv writes them under results/<machine>/)")
    return compare(timings(first), timings(second), min_seconds)


def format_report(report: SpreadReport, worst: int = 10) -> str:
    threshold_ms = report.min_seconds * 1e3
    lines = [
        f"time_ results in both runs: {len(report.large) + len(report.small)}",
        f"ops >= {threshold_ms:g} ms: {len(report.large)}, median |difference| "
        f"{100 * report.median_large:.1f}%, within 5%: "
        f"{sum(r[3] <= 0.05 for r in report.large)}/{len(report.large)}",
        f"ops <  {threshold_ms:g} ms: {len(report.small)}, median |difference| "
        f"{100 * report.median_small:.1f}%",
        f"least repeatable (>= {threshold_ms:g} ms):",
    ]
    for name, a, b, rel in sorted(report.large, key=lambda r: -r[3])[:worst]:
        lines.append(f"  {100 * rel:6.1f}%  {a * 1e3:9.3f} ms  {b * 1e3:9.3f} ms  {name}")
    return "\n".join(lines)
