"""Changes along a series of release points, from the samples every timing keeps.

A series is one timing benchmark with one parameter combination, on one machine, in one asv
environment, along the points of a timeline (or along result files given in order).  Between
consecutive points that both have samples, a change is reported when

- the two sample sets differ by a Mann-Whitney U test (scipy.stats) at a false discovery rate of
  ``alpha`` over every comparison of the run (Benjamini-Hochberg, scipy.stats.false_discovery_control),
- and the bootstrap confidence interval of the ratio of medians (scipy.stats.bootstrap) lies wholly
  outside the series' noise band: at least ``min_effect``, and at least ``noise_factor`` times the
  series' own spread (the median over its points of the interquartile range relative to the median).

Samples of one point come from a few benchmark processes (asv's rounds), and on a shared machine a whole
process runs faster or slower than the next, so the test alone flags process luck; the band is what
keeps an A/A pair quiet, and its size is what the error-rate measurements decide.

Both directions are reported (regression: slower; improvement: faster), with the point that brought the
change, the first later point back inside the band (recovered), and for ops the other framework's median
at the same point on the same machine.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from tools.fidelity import is_timing

# the backend each framework's figure is compared with, on the same machine at the same point
COUNTERPART = {
    "mlx-cpu": "torch-cpu",
    "torch-cpu": "mlx-cpu",
    "mlx-gpu": "torch-cuda",
    "torch-cuda": "mlx-gpu",
}


class DetectError(ValueError):
    """Results that cannot be read as a series (the message names the file)."""


@dataclass(frozen=True)
class Settings:
    alpha: float = 0.01
    min_effect: float = 0.10
    noise_factor: float = 2.0
    confidence: float = 0.99
    resamples: int = 2000


@dataclass
class Series:
    machine: str
    env: str
    benchmark: str
    params: tuple[str, ...]
    samples: list[list[float] | None] = field(default_factory=list)  # per point; None: no figure

    @property
    def key(self) -> str:
        return f"{self.benchmark}({', '.join(self.params)})"

    def noise(self) -> float:
        """The median relative interquartile range of the points' samples."""
        spreads = []
        for s in self.samples:
            if s and len(s) >= 3:
                q25, q50, q75 = np.percentile(s, [25, 50, 75])
                if q50 > 0:
                    spreads.append((q75 - q25) / q50)
        return float(np.median(spreads)) if spreads else 0.0


@dataclass
class Change:
    series: str
    machine: str
    point: str
    previous: str
    kind: str  # "regression" (slower) or "improvement" (faster)
    ratio: float  # median after / median before
    ci_low: float
    ci_high: float
    p_value: float
    q_value: float
    band: float
    before: float
    after: float
    recovered_at: str | None = None
    other: dict[str, float] | None = None  # the other framework's median at this point, by backend

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def read_results(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        columns = data["result_columns"]
        data["results"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DetectError(f"{path}: not an asv results file ({type(exc).__name__}: {exc})") from None
    if data.get("version") != 2:
        raise DetectError(f"{path}: asv results format {data.get('version')!r}; this reads version 2")
    data["_columns"] = columns
    return data


def _combos(params: list[list[str]]) -> list[tuple[str, ...]]:
    return list(itertools.product(*params)) if params else [()]


def series_from(files: Sequence[Path | None]) -> dict[str, Series]:
    """Series of every timing with samples in any of ``files`` (one per point; None: the point has no
    results).  Files of different machines or environments never share a series."""
    series: dict[str, Series] = {}
    for index, path in enumerate(files):
        if path is None:
            continue
        data = read_results(path)
        machine = str(data.get("params", {}).get("machine", path.parent.name))
        env = str(data.get("env_name", ""))
        for name, row in data["results"].items():
            if not is_timing(name):
                continue
            row = dict(zip(data["_columns"], row, strict=False))
            combos = _combos(row.get("params") or [])
            samples = row.get("samples") or [None] * len(combos)
            for combo, values in zip(combos, samples, strict=False):
                clean = tuple(p.strip("'") for p in combo)
                key = json.dumps([machine, env, name, *clean])
                entry = series.setdefault(key, Series(machine, env, name, clean, [None] * len(files)))
                if values:
                    entry.samples[index] = [float(v) for v in values]
    return series


def _ratio_of_medians(after: np.ndarray, before: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(after, axis=axis) / np.median(before, axis=axis)


def ratio_interval(
    before: Sequence[float], after: Sequence[float], settings: Settings
) -> tuple[float, float]:
    """The bootstrap confidence interval of median(after) / median(before)."""
    ci = stats.bootstrap(
        (np.asarray(after, float), np.asarray(before, float)),
        _ratio_of_medians,
        vectorized=True,
        paired=False,
        confidence_level=settings.confidence,
        n_resamples=settings.resamples,
        method="percentile",
        random_state=np.random.default_rng(0),
    ).confidence_interval
    return float(ci.low), float(ci.high)


def _pairs(entry: Series) -> list[tuple[int, int]]:
    """Consecutive points of a series that both have enough samples to compare."""
    points = [i for i, s in enumerate(entry.samples) if s and len(s) >= 3]
    return list(itertools.pairwise(points))


def detect(series: dict[str, Series], labels: Sequence[str], settings: Settings) -> list[Change]:
    """Every change between consecutive points beyond the series' noise (module docstring).  The test's
    p-values are corrected over every comparison first; the bootstrap interval, the recovery and the
    other framework's figure are worked out only for the comparisons that pass it."""
    tests = [(entry, previous, point) for entry in series.values() for previous, point in _pairs(entry)]
    if not tests:
        return []
    p_values = [
        float(stats.mannwhitneyu(e.samples[i], e.samples[j], alternative="two-sided").pvalue)
        for e, i, j in tests
    ]
    q_values = stats.false_discovery_control(p_values, method="bh")
    counterparts = {(s.machine, s.env, s.benchmark, s.params): s for s in series.values()}
    flagged = []
    for (entry, previous, point), p, q in zip(tests, p_values, q_values, strict=True):
        if q >= settings.alpha:
            continue
        before, after = entry.samples[previous], entry.samples[point]
        assert before is not None and after is not None
        band = max(settings.min_effect, settings.noise_factor * entry.noise())
        low, high = ratio_interval(before, after, settings)
        if not (low > 1 + band or high < 1 / (1 + band)):
            continue
        baseline, now = float(np.median(before)), float(np.median(after))
        flagged.append(
            Change(
                series=entry.key, machine=entry.machine, point=labels[point], previous=labels[previous],
                kind="regression" if now > baseline else "improvement", ratio=now / baseline,
                ci_low=low, ci_high=high, p_value=p, q_value=float(q), band=band, before=baseline, after=now,
                recovered_at=_recovered(entry, point, baseline, band, labels),
                other=_other_framework(entry, point, counterparts),
            )
        )  # fmt: skip
    return sorted(flagged, key=lambda c: (labels.index(c.point), c.series), reverse=True)


def _recovered(entry: Series, point: int, baseline: float, band: float, labels: Sequence[str]) -> str | None:
    for later in range(point + 1, len(entry.samples)):
        s = entry.samples[later]
        if s and len(s) >= 3 and 1 / (1 + band) <= np.median(s) / baseline <= 1 + band:
            return labels[later]
    return None


def _other_framework(
    entry: Series, point: int, counterparts: dict[tuple[Any, ...], Series]
) -> dict[str, float] | None:
    """The other framework's median at the same point, same machine, environment and parameters."""
    others = {}
    for position, value in enumerate(entry.params):
        partner = COUNTERPART.get(value)
        if partner is None:
            continue
        params = (*entry.params[:position], partner, *entry.params[position + 1 :])
        other = counterparts.get((entry.machine, entry.env, entry.benchmark, params))
        samples = other.samples[point] if other else None
        if samples:
            others[partner] = float(np.median(samples))
    return others or None


def format_changes(changes: Sequence[Change], compared: int) -> str:
    lines = [f"{len(changes)} change(s) among {compared} comparisons of consecutive points"]
    for c in changes:
        back = f"; back inside the band at {c.recovered_at}" if c.recovered_at else ""
        other = "".join(f"; {k} {v * 1e3:.3g} ms" for k, v in (c.other or {}).items())
        lines.append(
            f"{c.kind:<11} {c.point:<14} x{c.ratio:.2f} [{c.ci_low:.2f}, {c.ci_high:.2f}] q={c.q_value:.1e} "
            f"{c.series} ({c.before * 1e3:.3g} -> {c.after * 1e3:.3g} ms, since {c.previous}{back}{other})"
        )
    return "\n".join(lines)


def comparisons(series: dict[str, Series]) -> int:
    return sum(len(_pairs(entry)) for entry in series.values())
