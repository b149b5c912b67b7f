"""The report: what changed along the timeline, where MLX stands against torch, what was decided.

Read from an asv configuration (its timeline and results) and the triage file; written as JSON (for
scripts and CI), Markdown (for a CI comment or a terminal) and pages of the published site
(``html/mtb/``) with a small plot of every change's series.  Each machine's results are read, detected
and drawn on their own: two machines never share a series, a line or a ratio.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html as html_text
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness.facts import is_run_facts
from tools import detect, ratios, triage
from tools import results as results_store
from tools import timeline as tl

SITE_FOLDER = "mtb"


@dataclass
class MachineCheck:
    """How far a backend whose framework was held between two points moved there: the machine's own
    change.  Beyond the tolerance the pair was measured in different conditions (a busy machine, a slow
    stretch), and the changes at ``point`` are not trusted."""

    previous: str
    point: str
    backend: str
    drift: float
    series: int
    disturbed: bool

    def sentence(self) -> str:
        return (
            f"{self.backend} (its framework held) moved x{self.drift:.2f} from {self.previous} to "
            f"{self.point}, median of {self.series} series"
        )


FRAMEWORKS = ("mlx", "torch")


def held_frameworks(before: dict[str, str], after: dict[str, str]) -> set[str]:
    """The frameworks none of whose pins (mlx, mlx-cpu, mlx-lm; torch) changed between two points; none
    when something else changed (a package that could move either side)."""
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    if any(not k.startswith(FRAMEWORKS) for k in changed):
        return set()
    return {f for f in FRAMEWORKS if not any(k.startswith(f) for k in changed)}


def machine_checks(
    series: dict[str, detect.Series], points: Sequence[dict[str, Any]], settings: detect.Settings
) -> list[MachineCheck]:
    """Each consecutive pair of points, each backend whose framework's pin did not change there."""
    checks = []
    for index in range(1, len(points)):
        before, after = points[index - 1], points[index]
        held = held_frameworks(before["pins"], after["pins"])
        for backend, (drift, count) in sorted(detect.machine_drift(series, index - 1, index).items()):
            if backend.split("-")[0] not in held or count < settings.machine_min_series:
                continue
            tolerance = 1 + settings.machine_tolerance
            disturbed = not 1 / tolerance <= drift <= tolerance
            checks.append(MachineCheck(before["tag"], after["tag"], backend, drift, count, disturbed))
    return checks


@dataclass
class MachineReport:
    machine: str
    points: list[str]
    compared: int  # comparisons of consecutive points, timings and ratios
    changes: list[dict[str, Any]]  # detect.Change as JSON, with "triage" and "plot"
    standing: list[ratios.Standing]
    checks: list[MachineCheck]
    series: dict[str, detect.Series] = field(repr=False, default_factory=dict)  # timings and ratios
    # throughputs above the device's ceilings measured in the same run, at each point (tools/ceilings.py)
    timing_bugs: list[str] = field(default_factory=list)


@dataclass
class Report:
    generated: str
    machines: list[MachineReport]
    problems: list[str]  # results files that could not be read, triage entries that name nothing

    def headline(self) -> list[dict[str, Any]]:
        """Confirmed changes not marked ignored, newest point first, every machine."""
        return [c for m in self.machines for c in m.changes if c["headline"]]

    def untriaged_regressions(self) -> list[dict[str, Any]]:
        return [c for c in self.headline() if c["kind"] == "regression" and not c.get("triage")]

    def as_json(self) -> dict[str, Any]:
        return {
            "generated": self.generated,
            "problems": self.problems,
            "machines": [
                {
                    "machine": m.machine,
                    "points": m.points,
                    "compared": m.compared,
                    "changes": m.changes,
                    "standing": [asdict(s) for s in m.standing],
                    "machine_checks": [asdict(c) for c in m.checks],
                    "timing_bugs": m.timing_bugs,
                }
                for m in self.machines
            ],
        }


def build(config: Path, triage_file: Path, settings: detect.Settings) -> Report:
    """Detect, pair and triage every machine's results of the timeline that ``config`` names."""
    from asv import util as asv_util

    conf = asv_util.load_json(str(config), js_comments=True)
    base = config.resolve().parent
    repo, results_dir = base / conf["repo"], base / conf.get("results_dir", "results")
    if not (repo / tl.POINT_FILE).exists():
        raise detect.DetectError(f"{repo}: no timeline; build one with `python3 -m tools.mtb timeline`")
    points = tl.read_points(repo)
    labels = [p["tag"] for p in points]
    entries, problems = triage.read(triage_file)
    machines = sorted(p.name for p in results_dir.iterdir() if p.is_dir()) if results_dir.is_dir() else []
    unreadable = set()
    for path in results_store.results_files(results_dir) if results_dir.is_dir() else []:
        try:
            detect.read_results(path)
        except detect.DetectError as exc:
            unreadable.add(path)
            problems.append(f"{exc}; left out of the report")
    reports = []
    for machine in machines:
        files = [results_store.point_file(results_dir, p["commit"], machine) for p in points]
        files = [None if f in unreadable else f for f in files]
        timings = detect.series_from(files)
        pairs = ratios.ratio_series(timings)
        every = {**timings, **{f"ratio|{k}": v for k, v in pairs.items()}}
        checks = machine_checks(timings, points, settings)
        disturbed = {c.point: c.sentence() for c in checks if c.disturbed}
        changes = []
        for change in detect.detect(every, labels, settings):
            record = change.as_json()
            entry = triage.lookup(entries, change.series, change.point, machine)
            record["triage"] = asdict(entry) if entry else None
            record["machine_changed"] = disturbed.get(change.point)
            trusted = change.confirmed and record["machine_changed"] is None
            record["headline"] = trusted and (entry is None or entry.status != "ignored")
            changes.append(record)
        from tools import ceilings  # imports the frameworks: only when there are results to check

        bugs = []
        for label, path in zip(labels, files, strict=True):
            try:
                bugs += [f"{label}: {flag.describe()}" for flag in ceilings.findings(path)] if path else []
            except (detect.DetectError, ValueError, KeyError, TypeError, IndexError) as exc:
                problems.append(f"{path}: its throughputs could not be checked against the ceilings ({exc})")
        reports.append(
            MachineReport(
                machine, labels, detect.comparisons(every), changes,
                ratios.standing(pairs.values(), labels), checks, every, bugs,
            )
        )  # fmt: skip
    known = {s.key for m in reports for s in m.series.values()}
    problems += triage.check(entries, triage_file, known, labels, machines)
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return Report(stamp, reports, problems)


# ---------------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------------
NOT_IN_HEADLINE = "Ignored, not confirmed, or measured while the machine changed"
EVIDENCE = {
    "processes": "compared by process medians",
    "samples": "one process per point: compared by samples",
}


def _notes(c: dict[str, Any]) -> list[str]:
    """What a reader needs beside the figures: evidence, recovery, the other framework, triage."""
    notes = [EVIDENCE[c["evidence"]]]
    if c["recovered_at"]:
        notes.append(f"back inside the band at {c['recovered_at']}")
    for backend, value in (c.get("other") or {}).items():
        notes.append(f"{backend} {detect.figure(value, c['unit'])} at this point")
    if not c["confirmed"]:
        notes.append("not confirmed by the next point")
    if c.get("machine_changed"):
        notes.append(f"not trusted: the machine changed ({c['machine_changed']})")
    status = c.get("triage") or {}
    if status:
        reason = f", {status['reason']}" if status.get("reason") else ""
        notes.append(f"triage: {status['status']}{reason}")
    return notes


def _change_line(c: dict[str, Any], plots: str | None = None) -> str:
    what = "MLX/torch ratio" if c["unit"] == "ratio" else "time"
    verb = {"regression": "rose", "improvement": "fell"}[c["kind"]]
    before, after = detect.figure(c["before"], c["unit"]), detect.figure(c["after"], c["unit"])
    notes = [f"since {c['previous']}", *_notes(c)]
    plot = f" ![plot]({plots}/{c['plot']})" if plots and c.get("plot") else ""
    return (
        f"- **{c['point']}** {c['kind']}: {what} {verb} x{c['ratio']:.2f} "
        f"(99% interval {c['ci_low']:.2f}-{c['ci_high']:.2f}, p={c['p_value']:.1g}; {before} -> {after}) "
        f"`{c['series']}` on {c['machine']} ({'; '.join(notes)}){plot}"
    )


def to_markdown(report: Report, plots: str | None = None) -> str:
    lines = [f"# MLX and torch: changes and standing ({report.generated})", ""]
    headline = report.headline()
    untriaged = report.untriaged_regressions()
    lines.append(
        f"{len(headline)} change(s) in the headline, {len(untriaged)} of them untriaged regressions; "
        f"{sum(m.compared for m in report.machines)} comparisons of consecutive points on "
        f"{len(report.machines)} machine(s)."
    )
    for problem in report.problems:
        lines.append(f"\n> problem: {problem}")
    for m in report.machines:
        lines += ["", f"## Machine {m.machine}", "", "### Where MLX stands (newest point)", ""]
        lines += [
            "| pair | family | dtype | point | MLX time / torch time (geometric mean) | range | series |"
        ]
        lines += ["|---|---|---|---|---|---|---|"]
        for s in m.standing:
            lines.append(
                f"| {s.pair} | {s.family} | {s.dtype} | {s.point} | {s.geometric_mean:.2f} | "
                f"{s.lowest:.2f}-{s.highest:.2f} | {s.series} |"
            )
        shown = [c for c in m.changes if c["headline"]]
        rest = [c for c in m.changes if not c["headline"]]
        lines += ["", "### Machine checks", ""]
        lines += [f"- {'**changed**' if c.disturbed else 'steady'}: {c.sentence()}" for c in m.checks] or [
            "No backend was held between two points: nothing to check the machine against."
        ]
        lines += [f"- **timing bug**: {bug}" for bug in m.timing_bugs]
        lines += ["", f"### Changes, newest first ({len(shown)})", ""]
        lines += [_change_line(c, plots) for c in shown] or ["None beyond the noise of their series."]
        if rest:
            lines += [
                "",
                f"### Ignored, not confirmed, or measured while the machine changed ({len(rest)})",
                "",
            ]
            lines += [_change_line(c, plots) for c in rest]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------
# Plots (matplotlib, no display)
# ---------------------------------------------------------------------------------------------------
def _plot_name(machine: str, series: str, point: str) -> str:
    return hashlib.sha1(f"{machine}|{series}|{point}".encode()).hexdigest()[:16] + ".png"


def plot_series(entry: detect.Series, labels: Sequence[str], marked: str | None, path: Path) -> None:
    """Median and interquartile range at every point; the change's point marked."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    scale, unit = (1e3, "ms") if entry.unit == "seconds" else (1.0, "MLX / torch")
    xs, mid, low, high = [], [], [], []
    for index, samples in enumerate(entry.samples):
        if samples:
            q25, q50, q75 = np.percentile(samples, [25, 50, 75]) * scale
            xs.append(index)
            mid.append(q50)
            low.append(q50 - q25)
            high.append(q75 - q50)
    figure, axes = plt.subplots(figsize=(4.2, 2.2), dpi=100)
    axes.errorbar(xs, mid, yerr=[low, high], marker="o", markersize=3, capsize=2, linewidth=1)
    if marked in labels:
        axes.axvline(labels.index(marked) - 0.5, color="tab:red", linestyle="--", linewidth=1)
    if entry.unit == "ratio":
        axes.axhline(1.0, color="grey", linewidth=0.6)
    axes.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=6)
    axes.set_ylabel(unit, fontsize=7)
    axes.tick_params(axis="y", labelsize=6)
    axes.set_xlim(-0.5, len(labels) - 0.5)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def plot_family(members: Sequence[detect.Series], labels: Sequence[str], title: str, path: Path) -> None:
    """Every ratio series of one family: its median at each point (log scale), and 1 (parity)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(5.0, 2.6), dpi=100)
    for entry in members:
        points = [(i, float(np.median(s))) for i, s in enumerate(entry.samples) if s]
        if points:
            axes.plot(*zip(*points, strict=True), marker="o", markersize=2, linewidth=0.8, alpha=0.7)
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.set_yscale("log")
    axes.set_title(title, fontsize=8)
    axes.set_ylabel("MLX time / torch time", fontsize=7)
    axes.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=6)
    axes.set_xlim(-0.5, len(labels) - 0.5)
    axes.tick_params(axis="y", labelsize=6)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def draw_plots(report: Report, folder: Path) -> None:
    """A plot per change (its name stored in the change as ``plot``) and one per ratio family."""
    for m in report.machines:
        by_key = {s.key: s for s in m.series.values()}
        for change in m.changes:
            change["plot"] = _plot_name(m.machine, change["series"], change["point"])
            plot_series(by_key[change["series"]], m.points, change["point"], folder / change["plot"])
        for s in m.standing:
            members = [
                e
                for e in m.series.values()
                if e.unit == "ratio"
                and ratios.family(e.benchmark) == s.family
                and s.pair in e.params
                and (s.dtype in e.params or not s.dtype)
            ]
            title = f"{m.machine}: {s.family} {s.dtype} ({s.pair})"
            plot_family(members, m.points, title, folder / _family_plot(m, s))


def _family_plot(m: MachineReport, s: ratios.Standing) -> str:
    return _plot_name(m.machine, f"family|{s.pair}|{s.family}|{s.dtype}", "")


# ---------------------------------------------------------------------------------------------------
# Site pages
# ---------------------------------------------------------------------------------------------------
PAGES = (
    ("index.html", "Changes"),
    ("ratios.html", "MLX / torch"),
    ("triage.html", "Triage"),
    ("facts.html", "Run facts"),
)
STYLE = """
body { font-family: sans-serif; margin: 1.5em; max-width: 75em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; }
.change { margin: 0.8em 0; padding: 0.5em; border-left: 4px solid #c33; }
.change.improvement { border-color: #3a3; }
.muted { color: #777; }
code { font-size: 0.85em; }
"""


def _page(title: str, body: str) -> str:
    nav = " ".join(f'<a href="{name}">{label}</a>' for name, label in PAGES)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<title>{html_text.escape(title)}</title><link rel="icon" href="../swallow.ico">'
        f"<style>{STYLE}</style></head><body>"
        f'<nav><a href="../index.html">asv graphs</a> {nav}</nav><h1>{html_text.escape(title)}</h1>'
        f"{body}</body></html>\n"
    )


def _change_html(c: dict[str, Any]) -> str:
    e = html_text.escape
    extra = [e(note) for note in _notes(c)]
    link = (c.get("triage") or {}).get("link")
    if link:
        extra.append(f'<a href="{e(link)}">triage link</a>')
    what = "MLX/torch ratio" if c["unit"] == "ratio" else "time"
    return (
        f'<div class="change {e(c["kind"])}"><b>{e(c["point"])}</b> {e(c["kind"])} of the {what}: '
        f"x{c['ratio']:.2f} (99% interval {c['ci_low']:.2f}-{c['ci_high']:.2f}, p={c['p_value']:.1g}), "
        f"{e(detect.figure(c['before'], c['unit']))} &rarr; {e(detect.figure(c['after'], c['unit']))} "
        f"since {e(c['previous'])}<br><code>{e(c['series'])}</code> "
        f'<span class="muted">({"; ".join(extra)})</span><br>'
        f'<img src="plots/{e(c["plot"])}" alt="series of {e(c["series"])}" width="420"></div>'
    )


def write_site(report: Report, html: Path, facts: Path) -> Path:
    """Our pages under ``html/mtb/``; returns that folder."""
    folder = html / SITE_FOLDER
    draw_plots(report, folder / "plots")
    headline = report.headline()
    e = html_text.escape
    body = [f"<p>Generated {e(report.generated)}. {len(headline)} change(s) in the headline, "
            f"{len(report.untriaged_regressions())} untriaged regression(s).</p>"]  # fmt: skip
    body += [f"<p class='muted'>problem: {e(p)}</p>" for p in report.problems]
    ratio_body: list[str] = []
    for m in report.machines:
        shown = [c for c in m.changes if c["headline"]]
        rest = [c for c in m.changes if not c["headline"]]
        body.append(f"<h2>Machine {e(m.machine)}</h2><h3>Where MLX stands at the newest point</h3>")
        body.append(_standing_table(m))
        checks = "".join(
            f"<li>{'<b>changed</b>' if c.disturbed else 'steady'}: {e(c.sentence())}</li>" for c in m.checks
        ) + "".join(f"<li><b>timing bug</b>: {e(bug)}</li>" for bug in m.timing_bugs)
        body.append(f"<h3>Machine checks</h3><ul>{checks}</ul>" if checks else "")
        body.append(f"<h3>Changes, newest first ({len(shown)})</h3>")
        body += [_change_html(c) for c in shown] or ["<p>None beyond the noise of their series.</p>"]
        if rest:
            body.append(
                f"<h3>Ignored, not confirmed, or measured while the machine changed ({len(rest)})</h3>"
            )
            body += [_change_html(c) for c in rest]
        ratio_body.append(f"<h2>Machine {e(m.machine)}</h2>")
        ratio_body.append(_standing_table(m))
        for s in m.standing:
            name = _family_plot(m, s)
            ratio_body.append(f'<img src="plots/{name}" alt="{e(s.family)} {e(s.pair)}" width="500">')
    (folder / "index.html").write_text(_page("Changes along the timeline", "\n".join(body)))
    (folder / "ratios.html").write_text(_page("Where MLX stands against torch", "\n".join(ratio_body)))
    (folder / "triage.html").write_text(_page("Triage", _triage_html(report)))
    (folder / "facts.html").write_text(_page("Run facts", _facts_html(facts)))
    (folder / "report.json").write_text(json.dumps(report.as_json(), indent=1))
    (folder / "report.md").write_text(to_markdown(report, plots="plots"))
    return folder


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An HTML table of text cells (escaped here)."""
    e = html_text.escape
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{e(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _standing_table(m: MachineReport) -> str:
    return _table(
        ("pair", "family", "dtype", "point", "MLX/torch (geometric mean)", "range", "series", ""),
        [
            (s.pair, s.family, s.dtype, s.point, f"{s.geometric_mean:.2f}", f"{s.lowest:.2f}-{s.highest:.2f}",
             s.series, s.sentence())
            for s in m.standing
        ],
    )  # fmt: skip


def _triage_html(report: Report) -> str:
    e = html_text.escape
    table = _table(
        ("machine", "point", "series", "change", "status", "reason"),
        [
            (m.machine, c["point"], c["series"], f"{c['kind']} x{c['ratio']:.2f}",
             (c["triage"] or {}).get("status") or "untriaged", (c["triage"] or {}).get("reason") or "")
            for m in report.machines
            for c in m.changes
        ],
    )  # fmt: skip
    problems = "".join(f"<li>{e(p)}</li>" for p in report.problems)
    return (
        "<p>Decisions are kept in <code>triage.toml</code> in the project's git repository.</p>"
        + (f"<ul>{problems}</ul>" if problems else "")
        + table
    )


FACT_KEYS = (
    "framework", "framework_version", "backend", "device", "device_info", "blas", "threads",
    "float32_matmul", "compiled", "python", "numpy", "platform", "cpu_count", "recorded_at",
)  # fmt: skip


def latest_facts(facts: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """Host -> backend -> the newest facts line recorded for it."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for path in sorted(facts.glob("*/*.jsonl")) if facts.is_dir() else []:
        if not is_run_facts(path):  # skip reasons and clock readings are kept beside them
            continue
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            host = out.setdefault(path.parent.name, {})
            backend = str(record.get("backend"))
            if str(record.get("recorded_at", "")) >= str(host.get(backend, {}).get("recorded_at", "")):
                host[backend] = record
    return out


def _facts_html(facts: Path) -> str:
    parts = [
        f"<h2>Host {html_text.escape(host)}</h2>"
        + _table(FACT_KEYS, [[record.get(k, "") for k in FACT_KEYS] for record in backends.values()])
        for host, backends in latest_facts(facts).items()
    ]
    return "\n".join(parts) or "<p>No run facts recorded yet.</p>"
