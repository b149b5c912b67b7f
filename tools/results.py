"""The recorded results, kept safe: nothing a run records replaces a good value with a worse one.

asv rewrites a point's results file whenever it runs there: a run with fewer backends drops the other
columns, and a benchmark that fails or is skipped this time stores NaN over the value it had.  ``mtb``
therefore copies every results file aside before it starts asv (``guarded``) and afterwards, however
asv ended, merges the copy back: per benchmark and parameter combination the new value is kept where it
is a value, the old one where the new is a failure (None) or a skip (NaN), and combinations or whole
benchmarks the new run did not cover are put back.  A benchmark whose code changed (asv's version
hash) keeps only the new run's values, as asv would, unless the new run has none.  The copies sit on
disk until the merge is done, so a run killed outright is merged at the start of the next one.

A results file that is not valid JSON is moved aside with one line saying where, and its point is then
measured again.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness.facts import side_files

Log = Callable[[str], None]


def is_value(value: Any) -> bool:
    """A recorded figure: not a failure (None) and not a skip (NaN)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def results_files(results_dir: Path) -> list[Path]:
    """asv's per-point results files (not machine.json, not benchmarks.json)."""
    if not results_dir.is_dir():
        return []
    return sorted(p for p in results_dir.glob("*/*.json") if p.name != "machine.json")


def move_aside_corrupt(results_dir: Path, log: Log) -> list[Path]:
    """Move results files that do not parse out of asv's way (asv would stop on them)."""
    moved = []
    for path in results_files(results_dir):
        try:
            json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            target = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            path.rename(target)
            log(
                f"{path} is not valid JSON ({exc}); moved to {target.name} and its point will be measured "
                "again (delete the moved file once you no longer need it)"
            )
            moved.append(target)
    return moved


def _rows(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    columns = data["result_columns"]
    return {
        name: dict(itertools.zip_longest(columns, row[: len(columns)]))
        for name, row in data.get("results", {}).items()
    }


def _per_combo(row: dict[str, Any], column: str, size: int) -> list[Any]:
    value = row.get(column)
    if isinstance(value, list) and len(value) == size:
        return list(value)
    return [None] * size


PER_COMBO = ("result", "stats_ci_99_a", "stats_ci_99_b", "stats_q_25", "stats_q_75", "stats_number",
             "stats_repeat", "samples")  # fmt: skip


def _combos(params: list[list[str]]) -> list[tuple[str, ...]]:
    return list(itertools.product(*params)) if params else [()]


def merge_row(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """One benchmark: the new run's values, with old values put back where the new has none."""
    new_results = new.get("result")
    new_has_value = isinstance(new_results, list) and any(is_value(v) for v in new_results)
    if old.get("version") != new.get("version"):
        return new if new_has_value else old
    old_params = old.get("params") or []
    new_params = new.get("params") or []
    if len(old_params) != len(new_params):
        return new if new_has_value else old
    params = [list(dict.fromkeys([*n, *o])) for n, o in zip(new_params, old_params, strict=True)]
    old_combos = _combos(old_params)
    new_combos = _combos(new_params)
    old_index = {c: i for i, c in enumerate(old_combos)}
    new_index = {c: i for i, c in enumerate(new_combos)}
    old_cols = {c: _per_combo(old, c, len(old_combos)) for c in PER_COMBO}
    new_cols = {c: _per_combo(new, c, len(new_combos)) for c in PER_COMBO}
    merged: dict[str, list[Any]] = {c: [] for c in PER_COMBO}
    for combo in _combos(params):
        i, j = new_index.get(combo), old_index.get(combo)
        take_new = i is not None and (is_value(new_cols["result"][i]) or j is None)
        take_old = not take_new and j is not None and (i is None or is_value(old_cols["result"][j]))
        for column in PER_COMBO:
            if take_new:
                merged[column].append(new_cols[column][i])
            elif take_old:
                merged[column].append(old_cols[column][j])
            else:
                merged[column].append(new_cols[column][i] if i is not None else None)
    out = dict(new)
    out["params"] = params
    for column in PER_COMBO:
        values = merged[column]
        out[column] = None if all(v is None for v in values) else values
    return out


def merge_data(old: dict[str, Any], new: dict[str, Any], newest_wins: bool = False) -> dict[str, Any]:
    """A whole results file: every benchmark of either, merged with ``merge_row``.  ``newest_wins``: where
    a benchmark's version differs, the row that started later counts as the new one (files from two
    machines' copies, neither of them a run just made)."""
    columns = new["result_columns"]
    old_rows, new_rows = _rows(old), _rows(new)
    out = dict(new)
    results = {}
    for name in [*new_rows, *(n for n in old_rows if n not in new_rows)]:
        if name in new_rows and name in old_rows:
            first, second = old_rows[name], new_rows[name]
            if newest_wins and first.get("version") != second.get("version"):
                first, second = sorted((first, second), key=lambda r: r.get("started_at") or 0)
            row = merge_row(first, second)
        else:
            row = new_rows.get(name) or old_rows[name]
        values = [row.get(c) for c in columns]
        while values and values[-1] is None:  # asv's compact form
            values.pop()
        results[name] = values
    out["results"] = results
    out["durations"] = {**old.get("durations", {}), **new.get("durations", {})}
    return out


def _canonical(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, allow_nan=True)


def write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text)
    os.replace(partial, path)


def merge_file(kept: Path, current: Path) -> bool:
    """Merge the kept copy into the current results file; True if the file changed."""
    text = kept.read_text()
    try:
        current_text = current.read_text()
        new = json.loads(current_text)
    except (OSError, ValueError):
        write_atomically(current, text)
        return True
    if current_text == text:
        return False
    merged = merge_data(json.loads(text), new)
    if _canonical(merged) == _canonical(new):  # (NaN is not equal to itself: compare the text)
        return False
    write_atomically(current, json.dumps(merged, separators=(",", ":"), allow_nan=True))
    return True


def _guard_folder(state_dir: Path) -> Path:
    return state_dir / "results-before-run"


def restore_pending(
    results_dir: Path, state_dir: Path, log: Log, after: str = "a run that was stopped"
) -> int:
    """Merge the copies taken before a run into the results; how many files changed."""
    folder = _guard_folder(state_dir)
    changed = 0
    if folder.is_dir():
        for kept in sorted(folder.rglob("*.json")):
            current = results_dir / kept.relative_to(folder)
            current.parent.mkdir(parents=True, exist_ok=True)
            changed += merge_file(kept, current)
        shutil.rmtree(folder)
        if changed:
            log(f"kept recorded values that {after} had replaced or dropped, in {changed} file(s)")
    return changed


@contextlib.contextmanager
def guarded(results_dir: Path, state_dir: Path, log: Log) -> Iterator[None]:
    """Around an asv run: corrupt files moved aside, good values never replaced, dropped ones put back."""
    restore_pending(results_dir, state_dir, log)
    move_aside_corrupt(results_dir, log)
    folder = _guard_folder(state_dir)
    for path in results_files(results_dir):
        target = folder / path.relative_to(results_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    listing = results_dir / "benchmarks.json"
    before = _read_json(listing)
    try:
        yield
    finally:
        restore_pending(results_dir, state_dir, log, after="this run")
        after = _read_json(listing)
        if before and after and after != before:
            listing.write_text(json.dumps(merge_benchmark_lists(before, after), indent=4, sort_keys=True))


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def widen_benchmark_list(results_dir: Path) -> bool:
    """asv's benchmarks.json widened by every parameter value a results file holds (another machine's
    backends, a GPU-only dtype), so that ``asv publish`` shows every machine's results even when the
    list was last written by a run elsewhere (a fresh clone's CPU run).  True when it changed."""
    listing = results_dir / "benchmarks.json"
    data = _read_json(listing)
    if not data:
        return False
    changed = False
    for path in results_files(results_dir):
        stored = _read_json(path) or {}
        columns = stored.get("result_columns") or []
        if "params" not in columns:
            continue
        for name, row in (stored.get("results") or {}).items():
            entry = data.get(name)
            params = row[columns.index("params")] if isinstance(row, list) else None
            if not isinstance(entry, dict) or not params or len(params) != len(entry.get("params") or []):
                continue
            union = _union(entry["params"], params)
            if union != entry["params"]:
                entry["params"] = union
                changed = True
    if changed:
        listing.write_text(json.dumps(data, indent=4, sort_keys=True))
    return changed


def _union(first: list[list[str]], second: list[list[str]]) -> list[list[str]]:
    """Per parameter, the values of ``first`` then those of ``second`` it lacks (retired values stay: a
    listing only ever widens, as the results it describes are never dropped)."""
    return [[*a, *(v for v in b if v not in a)] for a, b in zip(first, second, strict=True)]


def merge_benchmark_lists(before: dict, after: dict) -> dict:
    """asv's benchmarks.json after a run, with what the run did not see kept from before.

    asv keeps one list for the whole results folder and each run rewrites it with the parameters it
    discovered; ``asv publish`` shows only results whose parameters are in that list.  A machine that runs
    other backends (a GPU host) or other dtypes would therefore hide every other machine's results.  The
    merged list keeps every benchmark and, per parameter, the values of both lists (this run's first).
    """
    merged = dict(after)
    for name, old in before.items():
        new = after.get(name)
        if not isinstance(old, dict):
            continue
        if not isinstance(new, dict):
            merged[name] = old
            continue
        old_params, new_params = old.get("params") or [], new.get("params") or []
        if len(old_params) != len(new_params) or old.get("param_names") != new.get("param_names"):
            continue  # the benchmark's parameters were redeclared: this run's list is the truth
        union = _union(new_params, old_params)
        merged[name] = {**new, "params": union}
    return merged


@dataclass(frozen=True)
class PointSummary:
    point: str
    ran: int  # parameter combinations with a value
    skipped: int  # NaN: skipped, with the reason asv printed (and recorded in facts/, skips.jsonl)
    failed: int  # None: the benchmark failed
    missing: int  # selected benchmarks with no entry at all (the point did not run them)


def point_file(results_dir: Path, commit: str, machine: str | None = None) -> Path | None:
    """The newest results file of a commit (one per environment; mtb uses one environment), on one
    machine or any."""
    found = []
    for path in results_files(results_dir):
        if machine is not None and path.parent.name != machine:
            continue
        if path.name.startswith(commit[:8]):
            with contextlib.suppress(OSError, ValueError):
                if json.loads(path.read_text()).get("commit_hash") == commit:
                    found.append(path)
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def finished_since(results_dir: Path, commit: str, since: float) -> int:
    """How many benchmarks of a commit's results were recorded at or after ``since`` (seconds)."""
    path = point_file(results_dir, commit)
    if path is None:
        return 0
    with contextlib.suppress(OSError, ValueError):
        rows = _rows(json.loads(path.read_text()))
        return sum((row.get("started_at") or 0) >= since * 1000 for row in rows.values())
    return 0


def summarise_point(point: str, path: Path | None, selected: set[str]) -> PointSummary:
    ran = skipped = failed = 0
    rows = _rows(json.loads(path.read_text())) if path is not None else {}
    for name in selected & set(rows):
        values = rows[name].get("result")
        size = len(_combos(rows[name].get("params") or []))
        values = values if isinstance(values, list) else [None] * size
        ran += sum(is_value(v) for v in values)
        skipped += sum(isinstance(v, float) and math.isnan(v) for v in values)
        failed += sum(v is None for v in values)
    return PointSummary(point, ran, skipped, failed, len(selected - set(rows)))


def summary(
    results_dir: Path, points: list[dict[str, str]], selected: set[str], machine: str | None = None
) -> list[PointSummary]:
    files = [point_file(results_dir, p["commit"], machine) for p in points]
    return [summarise_point(p["tag"], f, selected) for p, f in zip(points, files, strict=True)]


def skip_reasons(facts_dir: Path, commits: list[str], machine: str | None = None) -> Counter[str]:
    """Why combinations were skipped at these commits: reason -> how many (benchmark, parameters, point),
    from the benchmark processes' records (benchmarks/harness/facts.py), on one machine or all."""
    wanted = {c[:8] for c in commits}
    seen: set[tuple[str, ...]] = set()
    counts: Counter[str] = Counter()
    for path in side_files(facts_dir, "skips", machine or "*"):
        if path.name[:8] not in wanted:
            continue
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                entry = json.loads(line)
                key = (path.name[:8], entry["benchmark"], *entry["params"])
                if key not in seen:
                    seen.add(key)
                    counts[entry["reason"]] += 1
    return counts


def format_summary(rows: list[PointSummary], failed_points: list[str], reasons: Counter[str]) -> str:
    lines = ["", f"{'point':<20} {'ran':>6} {'skipped':>8} {'failed':>7} {'not run':>8}"]
    for row in rows:
        note = "  (the point could not run)" if row.point in failed_points else ""
        lines.append(f"{row.point:<20} {row.ran:>6} {row.skipped:>8} {row.failed:>7} {row.missing:>8}{note}")
    lines.append("(parameter combinations; every skip's reason is in facts/<host>/*.skips.jsonl)")
    for reason, count in reasons.most_common(8):
        lines.append(f"  skipped {count:>4} x  {reason}")
    return "\n".join(lines)


class AdoptError(ValueError):
    """A folder that holds no run to adopt; the message is the one line to show."""


def adopt(source: Path, root: Path, log: Log) -> int:
    """Bring a run made in another copy of this repository (a GPU host's, carried back as a folder holding
    its ``results/`` and ``facts/``) into ``root``: each results file merged into the one here as after a
    run (``merge_data``: a value is never replaced by a failure or a skip, nor lost; where a benchmark's
    version differs, the newer row is taken as the new one), asv's benchmark list widened by the copy's,
    each facts file's lines appended where this copy lacks them.  Every file is read and checked before
    any is written.  How many files changed."""
    found = results_files(source / "results")
    facts = sorted((source / "facts").glob("*/*.jsonl"))
    if not found and not facts:
        raise AdoptError(
            f"{source} holds no results/<machine>/*.json and no facts/<machine>/*.jsonl: give the folder "
            "that holds a run's results/ and facts/ (the repository copy the run was made in)"
        )
    plans: list[tuple[Path, Path, dict[str, Any], dict[str, Any] | None]] = []
    for path in found:
        target = root / "results" / path.parent.name / path.name
        plans.append((path, target, _results_data(path), _results_data(target) if target.exists() else None))
    listing, listing_here = source / "results" / "benchmarks.json", root / "results" / "benchmarks.json"
    lists = [_json_file(p) if p.exists() else None for p in (listing, listing_here)]
    changed = 0
    for path, target, new, kept in plans:
        target.parent.mkdir(parents=True, exist_ok=True)
        machine_file = path.with_name("machine.json")
        if machine_file.exists() and not target.with_name("machine.json").exists():
            shutil.copyfile(machine_file, target.with_name("machine.json"))
        merged = new if kept is None else merge_data(kept, new, newest_wins=True)
        if kept is None or _canonical(merged) != _canonical(kept):
            write_atomically(target, json.dumps(merged, separators=(",", ":"), allow_nan=True))
            log(f"results: {path.parent.name}/{path.name} merged")
            changed += 1
    adopted_list, list_here = lists
    if adopted_list is not None:
        widened = adopted_list if list_here is None else merge_benchmark_lists(list_here, adopted_list)
        if list_here is None or _canonical(widened) != _canonical(list_here):
            listing_here.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(listing_here, json.dumps(widened, indent=4))
            log("results: benchmarks.json widened")
            changed += 1
    for path in facts:
        target = root / "facts" / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        text = target.read_text() if target.exists() else ""
        have = set(text.splitlines())
        lines = [line for line in path.read_text().splitlines() if line.strip() and line not in have]
        if lines:
            with target.open("a") as out:
                # a line cut short by a killed process stays a line of its own
                cut_short = text and not text.endswith("\n")
                out.write(("\n" if cut_short else "") + "".join(f"{x}\n" for x in lines))
            log(f"facts: {path.parent.name}/{path.name}: {len(lines)} lines added")
            changed += 1
    return changed


def _json_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise AdoptError(f"{path} is not valid JSON ({exc}): carry it again or move it aside") from None
    if not isinstance(data, dict):
        raise AdoptError(f"{path} holds no JSON object: carry it again or move it aside")
    return data


def _results_data(path: Path) -> dict[str, Any]:
    data = _json_file(path)
    if "result_columns" not in data or not isinstance(data.get("results", {}), dict):
        raise AdoptError(f"{path} is not an asv results file (no result_columns): carry it again")
    return data
