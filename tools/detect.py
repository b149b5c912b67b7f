"""Changes along a series of release points, from the samples every timing keeps.

A series is one timing benchmark with one parameter combination, on one machine, in one asv
environment, along the points of a timeline (or along result files given in order).  Series of
different machines or environments are never mixed.

On a shared machine a whole benchmark process runs faster or slower than the next, so the unit of
replication is the process (asv's round), not the sample: samples of one process agree with each other
far better than with the next process's.  A point's samples are split back into its processes (the
profiles take a fixed number of samples per round and asv appends rounds in order), and two points are
compared by a Welch t-test on the logarithms of the process medians (scipy.stats.ttest_ind), whose
confidence interval, turned back into a ratio, is the interval of the change.  A change is reported when
that interval lies wholly outside the series' noise band: at least ``min_effect``, and at least
``noise_factor`` times the series' own spread (the median over its points of the interquartile range
relative to the median), which keeps series that jump between two speeds from process to process quiet.

A series with one process per point (the workloads: one job per point) cannot show its process spread;
it is compared on its samples (Mann-Whitney U, and a bootstrap interval of the ratio of medians), and a
change it shows counts as confirmed only when the next point stays beyond the band too (PyTorch's HUD
asks the same of its nightlies).  How often all this flags a change that is not there, and which planted
steps it finds, is measured by ``mtb error-rates`` (tools/error_rates.py).

Both directions are reported (regression: slower; improvement: faster), with the point that brought the
change, the first later point back inside the band (recovered), and for ops the other framework's median
at the same point on the same machine.
"""

from __future__ import annotations

import functools
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
    min_effect: float = 0.10
    noise_factor: float = 2.0
    confidence: float = 0.99
    resamples: int = 2000
    # a held backend whose median series moved more than this between two points says the machine did
    machine_tolerance: float = 0.20
    machine_min_series: int = 10


@functools.cache
def _plan_repeats() -> dict[int, set[int]]:
    """Rounds -> the samples per process of each profile's plan with that many rounds."""
    from benchmarks.harness.profiles import PROFILES

    plans: dict[int, set[int]] = {}
    for profile in PROFILES.values():
        plans.setdefault(profile.rounds, set()).add(profile.repeat)
    return plans


@dataclass
class Series:
    machine: str
    env: str
    benchmark: str
    params: tuple[str, ...]
    samples: list[list[float] | None] = field(default_factory=list)  # per point; None: no figure
    rounds: int = 1  # benchmark processes per point (asv's rounds)
    # samples per process (asv's repeat) where the benchmark list gives it, else 0.  The list is the
    # last discovery's, made with one profile's plan on one machine: a point is split into processes
    # only where its sample count is rounds x the repeat of that plan or of a profile with as many
    # rounds (quick and full points share a machine's folder), never by another machine's plan (a
    # GPU's one process of 8 or 10 samples).
    repeat: int = 0
    unit: str = "seconds"  # or "ratio" (tools/ratios.py)

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

    def process_medians(self, point: int) -> list[float] | None:
        """The median of each process's samples at ``point``, or None when they cannot be told apart."""
        samples = self.samples[point]
        if not samples or self.rounds < 2 or len(samples) % self.rounds:
            return None
        size = len(samples) // self.rounds
        if self.repeat and size != self.repeat and size not in _plan_repeats().get(self.rounds, ()):
            return None
        return [float(np.median(samples[i : i + size])) for i in range(0, len(samples), size)]


@dataclass
class Change:
    series: str
    machine: str
    env: str
    benchmark: str
    params: list[str]
    point: str
    previous: str
    kind: str  # "regression" (slower) or "improvement" (faster)
    ratio: float  # after / before (of the process medians' geometric means, or of the sample medians)
    ci_low: float
    ci_high: float
    p_value: float
    band: float
    before: float
    after: float
    evidence: str  # "processes" (process medians compared) or "samples" (one process per point)
    confirmed: bool  # processes compared, or the next point stays beyond the band
    unit: str = "seconds"
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


def rounds_of(results_dir: Path) -> dict[str, tuple[int, int]]:
    """Benchmark name -> (processes, samples per process) of a point, from asv's benchmarks.json beside
    the machine folders (0 samples where it does not say)."""
    path = results_dir / "benchmarks.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise DetectError(f"{path}: not asv's benchmark list ({type(exc).__name__}: {exc})") from None
    return {
        # asv's repeat may also be a (min, max, seconds) range: then the count per process varies
        name: (int(entry.get("rounds") or 1), entry["repeat"] if isinstance(entry.get("repeat"), int) else 0)
        for name, entry in data.items()
        if isinstance(entry, dict) and entry.get("type") == "time"
    }


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
        rounds = rounds_of(path.parent.parent)
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
                entry = series.setdefault(
                    key, Series(machine, env, name, clean, [None] * len(files), *rounds.get(name, (1, 0)))
                )
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


@dataclass(frozen=True)
class Comparison:
    ratio: float
    low: float
    high: float
    p_value: float
    evidence: str


def compare(entry: Series, previous: int, point: int, settings: Settings) -> Comparison:
    """Point ``point`` against ``previous``: by process medians where both points have 3 or more
    processes, else by samples (module docstring)."""
    before, after = entry.process_medians(previous), entry.process_medians(point)
    if before and after and len(before) >= 3 and len(after) >= 3:
        log_before, log_after = np.log(before), np.log(after)
        test = stats.ttest_ind(log_after, log_before, equal_var=False)
        ci = test.confidence_interval(settings.confidence)
        difference = float(np.mean(log_after) - np.mean(log_before))
        return Comparison(
            float(np.exp(difference)), float(np.exp(ci.low)), float(np.exp(ci.high)), float(test.pvalue),
            "processes",
        )  # fmt: skip
    first, second = entry.samples[previous], entry.samples[point]
    assert first is not None and second is not None
    low, high = ratio_interval(first, second, settings)
    p = float(stats.mannwhitneyu(second, first, alternative="two-sided").pvalue)
    return Comparison(float(np.median(second) / np.median(first)), low, high, p, "samples")


def pairs(entry: Series) -> list[tuple[int, int]]:
    """Consecutive points of a series that both have enough samples to compare."""
    points = [i for i, s in enumerate(entry.samples) if s and len(s) >= 3]
    return list(itertools.pairwise(points))


def _beyond(ratio: float, band: float) -> bool:
    return not 1 / (1 + band) <= ratio <= 1 + band


def detect(series: dict[str, Series], labels: Sequence[str], settings: Settings) -> list[Change]:
    """Every change between consecutive points whose interval clears the series' band, newest first."""
    counterparts = {(s.machine, s.env, s.benchmark, s.params): s for s in series.values()}
    flagged = []
    for entry in series.values():
        band = max(settings.min_effect, settings.noise_factor * entry.noise())
        for previous, point in pairs(entry):
            found = compare(entry, previous, point, settings)
            if not (found.low > 1 + band or found.high < 1 / (1 + band)):
                continue
            before, after = entry.samples[previous], entry.samples[point]
            assert before is not None and after is not None
            baseline = float(np.median(before))
            flagged.append(
                Change(
                    series=entry.key, machine=entry.machine, env=entry.env, benchmark=entry.benchmark,
                    params=list(entry.params), point=labels[point], previous=labels[previous],
                    kind="regression" if found.ratio > 1 else "improvement", ratio=found.ratio,
                    ci_low=found.low, ci_high=found.high, p_value=found.p_value, band=band,
                    before=baseline, after=float(np.median(after)), evidence=found.evidence,
                    confirmed=found.evidence == "processes"
                    or _persists(entry, point, baseline, band, found.ratio),
                    unit=entry.unit, recovered_at=_recovered(entry, point, baseline, band, labels),
                    other=_other_framework(entry, point, counterparts),
                )
            )  # fmt: skip
    return sorted(flagged, key=lambda c: (labels.index(c.point), c.series), reverse=True)


def _persists(entry: Series, point: int, baseline: float, band: float, ratio: float) -> bool:
    """The next point with samples is beyond the band on the same side as ``point``."""
    for later in range(point + 1, len(entry.samples)):
        s = entry.samples[later]
        if s and len(s) >= 3:
            now = float(np.median(s)) / baseline
            return _beyond(now, band) and (now > 1) == (ratio > 1)
    return False


def _recovered(entry: Series, point: int, baseline: float, band: float, labels: Sequence[str]) -> str | None:
    for later in range(point + 1, len(entry.samples)):
        s = entry.samples[later]
        if s and len(s) >= 3 and not _beyond(float(np.median(s)) / baseline, band):
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


def figure(value: float, unit: str) -> str:
    """A time in ms (in s from one second on), or a ratio."""
    if unit != "seconds":
        return f"{value:.3g}"
    return f"{value:.3g} s" if value >= 1 else f"{value * 1e3:.3g} ms"


def format_changes(changes: Sequence[Change], compared: int) -> str:
    lines = [f"{len(changes)} change(s) among {compared} comparisons of consecutive points"]
    for c in changes:
        back = f"; back inside the band at {c.recovered_at}" if c.recovered_at else ""
        other = "".join(f"; {k} {figure(v, c.unit)}" for k, v in (c.other or {}).items())
        pending = "" if c.confirmed else " (one process per point: not confirmed by the next point)"
        lines.append(
            f"{c.kind:<11} {c.point:<14} x{c.ratio:.2f} [{c.ci_low:.2f}, {c.ci_high:.2f}] p={c.p_value:.1e} "
            f"{c.series} ({figure(c.before, c.unit)} -> {figure(c.after, c.unit)}, since {c.previous}"
            f"{back}{other}){pending}"
        )
    return "\n".join(lines)


def backend_of(entry: Series) -> str | None:
    return next((p for p in entry.params if p.startswith(("mlx-", "torch-"))), None)


def machine_drift(series: dict[str, Series], previous: int, point: int) -> dict[str, tuple[float, int]]:
    """Backend -> (median over its timing series of median(point) / median(previous), series counted).
    For a backend whose framework did not change between the two points this is the machine's own
    change: a busy or slow stretch of the machine moves every series of it together."""
    ratios: dict[str, list[float]] = {}
    for entry in series.values():
        backend = backend_of(entry)
        before, after = entry.samples[previous], entry.samples[point]
        if backend and entry.unit == "seconds" and before and after:
            ratios.setdefault(backend, []).append(float(np.median(after) / np.median(before)))
    return {backend: (float(np.median(values)), len(values)) for backend, values in ratios.items()}


def comparisons(series: dict[str, Series]) -> int:
    return sum(len(pairs(entry)) for entry in series.values())
