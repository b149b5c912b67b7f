"""The GPU's state around each benchmark: SM and memory clocks, temperature, power and the reasons the
driver gives for holding the clocks down, read through NVML (``nvidia-ml-py``) before a benchmark's
first sample and after its last, and appended to ``<commit>-<env>.clocks.jsonl`` beside the run facts.

A GPU timing is only comparable with another taken at the same clocks: a card that idled between
benchmarks starts a sample at a few hundred MHz, a hot one throttles.  ``assess`` turns a before/after
pair into plain findings; the pages and the closing notes quote them.  On a machine without NVML (every
CPU machine) nothing is read and nothing is written.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness import facts
from benchmarks.harness.backends import Backend

# The driver's reasons for clocks below their maximum that make a timing slower (idle and application
# settings are not: the first is expected between benchmarks, the second is the card's configuration).
SLOWDOWN_REASONS = {
    "nvmlClocksEventReasonSwPowerCap": "software power cap",
    "nvmlClocksEventReasonHwSlowdown": "hardware slowdown",
    "nvmlClocksEventReasonSwThermalSlowdown": "software thermal slowdown",
    "nvmlClocksEventReasonHwThermalSlowdown": "hardware thermal slowdown",
    "nvmlClocksEventReasonHwPowerBrakeSlowdown": "hardware power brake",
}
# a sample taken with the SM clock this far under its maximum is not at full speed
CLOCK_SHORTFALL = 0.10

_nvml: Any = None


def _handle() -> Any:
    """NVML's handle of the GPU this process uses (the first visible one), or None without NVML."""
    global _nvml
    if _nvml is False:
        return None
    try:
        import pynvml

        if _nvml is None:
            pynvml.nvmlInit()
            _nvml = pynvml
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip() or "0"
        return pynvml.nvmlDeviceGetHandleByIndex(int(visible) if visible.isdigit() else 0)
    except Exception:  # no library, no driver, no GPU: there is nothing to read
        _nvml = False
        return None


def read() -> dict[str, Any] | None:
    """The GPU's clocks, temperature, power and slowdown reasons now; None without NVML."""
    handle = _handle()
    if handle is None:
        return None
    nvml = _nvml

    def query(fn: str, *args: Any, scale: float = 1.0) -> Any:
        """One reading; None where this GPU or driver does not report it (MIG, vGPU, older drivers)."""
        try:
            value = getattr(nvml, fn)(handle, *args)
        except Exception:
            return None
        return value / scale if scale != 1.0 else value

    reasons = query("nvmlDeviceGetCurrentClocksEventReasons")
    return {
        "sm_clock_mhz": query("nvmlDeviceGetClockInfo", nvml.NVML_CLOCK_SM),
        "sm_clock_max_mhz": query("nvmlDeviceGetMaxClockInfo", nvml.NVML_CLOCK_SM),
        "memory_clock_mhz": query("nvmlDeviceGetClockInfo", nvml.NVML_CLOCK_MEM),
        "temperature_c": query("nvmlDeviceGetTemperature", nvml.NVML_TEMPERATURE_GPU),
        "power_w": query("nvmlDeviceGetPowerUsage", scale=1000.0),
        "power_limit_w": query("nvmlDeviceGetEnforcedPowerLimit", scale=1000.0),
        "slowdown": [t for bit, t in SLOWDOWN_REASONS.items() if reasons and reasons & getattr(nvml, bit, 0)],
    }


def versions() -> dict[str, Any]:
    """Driver and NVML versions and the device's name (run facts); empty without NVML."""
    handle = _handle()
    if handle is None:
        return {}
    nvml = _nvml
    try:
        return {
            "nvml_device": nvml.nvmlDeviceGetName(handle),
            "nvml_driver": nvml.nvmlSystemGetDriverVersion(),
            "nvml_cuda_driver_api": nvml.nvmlSystemGetCudaDriverVersion_v2(),
        }
    except Exception as exc:  # facts say why they are missing rather than failing the run
        return {"nvml_error": f"{type(exc).__name__}: {exc}"}


def assess(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> list[str]:
    """Findings on a benchmark's GPU state: clocks under their maximum while it ran, slowdown reasons
    the driver gave, heating.  Empty when nothing was read or nothing is wrong."""
    if not after:
        return []
    found = []
    top = after.get("sm_clock_max_mhz") or 0
    clock = after.get("sm_clock_mhz")
    if top and clock is not None and clock < (1 - CLOCK_SHORTFALL) * top:
        shortfall = 1 - clock / top
        found.append(f"SM clock {clock} MHz after the samples, {shortfall:.0%} under its maximum {top} MHz")
    for reason in after.get("slowdown", []):
        found.append(f"the driver reported {reason}")
    if before and after.get("temperature_c") is not None and before.get("temperature_c") is not None:
        rise = after["temperature_c"] - before["temperature_c"]
        if rise >= 10:
            found.append(f"temperature rose {rise} C during the benchmark (to {after['temperature_c']} C)")
    return found


def process_seconds() -> float | None:
    """Seconds since this process started (a forkserver child: since its fork), from the kernel: what
    splits a benchmark's start-up into asv's part (between processes) and the process's own part."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of proc(5): start time in ticks
        return round(time.clock_gettime(time.CLOCK_BOOTTIME) - started, 3)
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def record(
    benchmark: str,
    params: Sequence[Any],
    phase: str,
    backend: Backend | None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Append the GPU state at ``phase`` (before or after) of a benchmark on a GPU backend, with the
    process's age and ``extra`` figures of the phase."""
    from benchmarks.harness.peaks import device_class

    if not isinstance(backend, Backend) or device_class(backend) != "gpu":
        return
    try:
        state = read()
    except Exception:  # a reading must never fail the benchmark it describes
        state = None
    path = _clocks_file()
    if state is None or path is None:
        return
    entry = {
        "benchmark": benchmark,
        "params": [str(p) for p in params],
        "phase": phase,
        "at": now(),
        "process_s": process_seconds(),
        **(extra or {}),
        **state,
    }
    facts.record(entry, path)


def _clocks_file() -> Path | None:
    """Beside the run facts: ``<commit>-<env>.clocks.jsonl`` (None outside asv)."""
    path = facts.facts_path()
    return None if path is None else facts.beside(path, "clocks")


def now() -> str:
    """The time a reading is stamped with."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def record_host(benchmark: str, phase: str, began: str, extra: dict[str, Any]) -> None:
    """Append a reading of host work outside any parameter set, stamped when it ``began`` (no GPU state:
    it may come from a process that must not touch the device before it forks), with ``extra`` figures."""
    path = _clocks_file()
    if path is not None:
        facts.record({"benchmark": benchmark, "phase": phase, "at": began, **extra}, path)


def record_sample(benchmark: str, params: Sequence[Any], done: int, repeat: int, backend: Backend) -> None:
    """After sample ``done`` of ``repeat``: the GPU's state after the first and after the last (asv stops a
    slow benchmark's round early; the first is then what is left)."""
    if done in (1, repeat):
        record(benchmark, params, "after last sample" if done == repeat else "after first sample", backend)


def summarise(path: Path, since: datetime.datetime | None = None) -> list[str]:
    """Per finding, how many benchmark processes of a clocks file ended with it (their state after the
    last sample against the one before the first): what a run's closing lines say about its clocks.
    ``since``: only readings taken then or later (the file keeps every run's)."""
    from collections import Counter

    if not path.is_file():
        return []
    rows = _rows(path, since)
    before: dict[tuple[str, ...], dict[str, Any]] = {}
    counts: Counter[str] = Counter()
    ended = 0
    for row in rows:
        key = (row.get("benchmark", ""), *row.get("params", []))
        if row.get("phase") == "before":
            before[key] = row
        elif row.get("phase") in ("after last sample", "after"):
            ended += 1
            for finding in assess(before.get(key), row):
                counts[_kind(finding)] += 1
    return [f"{n} of {ended} benchmark processes: {kind}" for kind, n in counts.most_common()]


def _rows(path: Path, since: datetime.datetime | None = None) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):  # a line cut short by a killed process
            row = json.loads(line)
            if since is None or ("at" in row and datetime.datetime.fromisoformat(row["at"]) >= since):
                rows.append(row)
    return rows


# the phase of a reading of inputs drawn before an op's measuring processes (harness/run.py draw_ahead)
DRAWN_AHEAD = "inputs drawn ahead"
# ops and jobs named in the closing line that lists where most of a run's time went
SLOWEST_OPS = 5


def _add_seconds(totals: dict[str, dict[str, float]], group: str, parts: Mapping[str, Any] | None) -> None:
    """Add a reading's seconds per part (a job build's phases, an op's probes) to ``group``'s sums."""
    for part, seconds in (parts or {}).items():
        sums = totals.setdefault(group, {})
        sums[part] = sums.get(part, 0.0) + float(seconds)


def _split(parts: Mapping[str, float] | None) -> str:
    """`` (part N s, ...)`` for the parts that took half a second or more, else nothing."""
    shown = ", ".join(f"{part} {s:.0f} s" for part, s in (parts or {}).items() if s >= 0.5)
    return f" ({shown})" if shown else ""


def where_time_went(path: Path, since: datetime.datetime | None = None) -> list[str]:
    """Where a run's time went, from the readings of a clocks file: per op backend, seconds preparing
    (device context, inputs, compiling, warm-up), probing (peak memory, parity, throughput) and sampling,
    summed over its parameter sets; per workload job, seconds building (model, weights, warm-up) and
    measuring; beside the span from the first reading to the last, and the ops and jobs that took most
    of it.  ``since``: only readings taken then or later (the file keeps every run's)."""
    if not path.is_file():
        return []
    rows = [r for r in _rows(path, since) if "at" in r]
    if not rows:
        return []
    at = {id(r): datetime.datetime.fromisoformat(r["at"]).timestamp() for r in rows}
    spent: dict[str, dict[str, float]] = {}
    probe_seconds: dict[str, dict[str, float]] = {}  # per op backend: seconds per probe
    built: dict[str, dict[str, float]] = {}  # per job: sets, building, measuring
    build_phases: dict[str, dict[str, float]] = {}  # per job: seconds per phase of its builds
    ahead = {"cases": 0, "seconds": 0.0}  # inputs drawn before the ops' measuring processes
    measured: list[tuple[str, str, dict[str, float]]] = []  # (op, backend, its readings) per set
    by_op: dict[str, float] = {}
    latest: dict[tuple[str, ...], dict[str, float]] = {}  # a set measured again starts a new entry
    for row in rows:
        params = row.get("params", [])
        key = (row.get("benchmark", ""), *params)
        phase = row.get("phase")
        if phase == DRAWN_AHEAD:
            ahead["cases"] += int(row.get("cases", 0))
            ahead["seconds"] += float(row.get("seconds", 0.0))
            by_op[key[0]] = by_op.get(key[0], 0.0) + float(row.get("seconds", 0.0))
        elif phase == "before" and "build_s" in row:
            job = built.setdefault(key[0], {"sets": 0, "build": 0.0, "measure": 0.0})
            job["sets"] += 1
            job["build"] += float(row["build_s"])
            _add_seconds(build_phases, key[0], row.get("build_phases"))
            by_op[key[0]] = by_op.get(key[0], 0.0) + float(row["build_s"])
            latest[key] = {"before": at[id(row)]}
        elif phase == "after" and key[0] in built and key in latest:
            seconds = at[id(row)] - latest.pop(key)["before"]
            built[key[0]]["measure"] += seconds
            by_op[key[0]] += seconds
        elif phase == "before" and "prepare_s" in row:
            backend = spent.setdefault(params[-1], {"sets": 0, "prepare": 0.0, "probes": 0.0, "samples": 0.0})
            backend["sets"] += 1
            backend["prepare"] += float(row["prepare_s"])
            by_op[key[0]] = by_op.get(key[0], 0.0) + float(row["prepare_s"])
            latest[key] = {"before": at[id(row)]}
            measured.append((key[0], params[-1], latest[key]))
        elif key in latest and phase in ("after probes", "after last sample"):
            latest[key][phase] = at[id(row)]
            _add_seconds(probe_seconds, params[-1], row.get("probe_s"))
    for op, name, marks in measured:
        backend = spent[name]
        probed = marks.get("after probes", marks["before"])
        backend["probes"] += probed - marks["before"]
        sampled = marks.get("after last sample", probed)
        backend["samples"] += sampled - probed
        by_op[op] += sampled - marks["before"]
    span = max(at.values()) - min(at.values())
    lines = [f"{span:.0f} s from the first clock reading to the last"]
    for name, b in sorted(spent.items()):
        lines.append(
            f"{name}: {b['sets']:.0f} parameter sets, {b['prepare']:.0f} s preparing, {b['probes']:.0f} s "
            f"probing{_split(probe_seconds.get(name))}, {b['samples']:.0f} s sampling"
        )
    for name, j in sorted(built.items()):
        lines.append(
            f"{name}: {j['sets']:.0f} parameter sets, {j['build']:.0f} s building"
            f"{_split(build_phases.get(name))}, {j['measure']:.0f} s measuring"
        )
    if ahead["cases"]:
        lines.append(f"inputs of {ahead['cases']} cases drawn ahead in {ahead['seconds']:.0f} s")
    if by_op:
        slowest = sorted(by_op.items(), key=lambda item: -item[1])[:SLOWEST_OPS]
        lines.append("most time: " + ", ".join(f"{op} {seconds:.0f} s" for op, seconds in slowest))
    return lines


def _kind(finding: str) -> str:
    """A finding without its figures, so that like findings count together."""
    if finding.startswith("SM clock"):
        return f"SM clock more than {CLOCK_SHORTFALL:.0%} under its maximum after the last sample"
    if finding.startswith("temperature rose"):
        return "temperature rose 10 C or more"
    return finding
