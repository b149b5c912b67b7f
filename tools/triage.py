"""Triage kept in git: what people decided about each detected change.

``triage.toml`` at the project root holds one ``[[change]]`` table per decision::

    [[change]]
    series = "ops.shaping.Concat.time_forward(10000x64 @ 10000x32 axis=1, float32, mlx-cpu)"
    point = "mlx-0.32.3"          # the point that brought the change
    machine = "vm"                # optional: every machine when left out
    status = "acknowledged"       # acknowledged | expected | ignored | fixed
    fixed_in = "mlx-0.33.0"       # with status "fixed": the point that fixed it
    link = "https://github.com/ml-explore/mlx/issues/..."
    reason = "concatenate along the last axis copies twice since 0.32.3"

The report and the site read it: a change marked ``ignored`` stays out of the headline but is still
listed; an entry that names no series, point or machine of the results is reported (file, entry number
and key) and the rest of the file still applies.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

STATUSES = ("acknowledged", "expected", "ignored", "fixed")
FIELDS = ("series", "point", "machine", "status", "fixed_in", "link", "reason")


class TriageError(ValueError):
    """The triage file cannot be read at all (the message names it)."""


@dataclass(frozen=True)
class Entry:
    number: int  # its place in the file, for messages
    series: str
    point: str
    status: str
    machine: str | None = None
    fixed_in: str | None = None
    link: str | None = None
    reason: str | None = None

    def applies(self, series: str, point: str, machine: str) -> bool:
        return self.series == series and self.point == point and self.machine in (None, machine)


def read(path: Path) -> tuple[list[Entry], list[str]]:
    """The entries of ``path`` that are well formed, and one line per entry that is not."""
    if not path.exists():
        return [], []
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise TriageError(f"{path}: not valid TOML ({exc}); fix the file or move it aside") from None
    tables = data.get("change", [])
    if not isinstance(tables, list):
        raise TriageError(f"{path}: `change` must be an array of tables ([[change]])")
    entries, problems = [], []
    for number, table in enumerate(tables, 1):
        where = f"{path}: [[change]] #{number}"
        unknown = sorted(set(table) - set(FIELDS))
        missing = [k for k in ("series", "point", "status") if not isinstance(table.get(k), str)]
        if unknown or missing:
            problems.append(
                f"{where}: "
                + "; ".join(
                    ([f"unknown key(s) {', '.join(unknown)} (keys: {', '.join(FIELDS)})"] if unknown else [])
                    + ([f"needs {', '.join(missing)} (text)"] if missing else [])
                )
            )
            continue
        if table["status"] not in STATUSES:
            problems.append(f"{where}: status {table['status']!r} is not one of {', '.join(STATUSES)}")
            continue
        if table["status"] == "fixed" and not table.get("fixed_in"):
            problems.append(f"{where}: status 'fixed' needs fixed_in (the point that fixed it)")
            continue
        entries.append(Entry(number=number, **{k: table.get(k) for k in FIELDS}))
    return entries, problems


def check(
    entries: Sequence[Entry],
    path: Path,
    series: Iterable[str],
    points: Iterable[str],
    machines: Iterable[str],
) -> list[str]:
    """One line per entry naming a series, point or machine that the results do not have."""
    known_series, known_points, known_machines = set(series), set(points), set(machines)
    problems = []
    for entry in entries:
        where = f"{path}: [[change]] #{entry.number} ({entry.series} at {entry.point})"
        if entry.series not in known_series:
            problems.append(f"{where}: no such series in the results (copy its name from the report)")
        for key in ("point", "fixed_in"):
            value = getattr(entry, key)
            if value is not None and value not in known_points:
                problems.append(f"{where}: {key} {value!r} is not a point of the timeline")
        if entry.machine is not None and entry.machine not in known_machines:
            problems.append(f"{where}: machine {entry.machine!r} has no results")
    return problems


def lookup(entries: Sequence[Entry], series: str, point: str, machine: str) -> Entry | None:
    return next((e for e in entries if e.applies(series, point, machine)), None)
