"""Fidelity: does each recorded time equal the call it claims to time?

For every timing of a selection (an op's ``time_`` method, a workload job's ``track_<what>_seconds``),
the figure asv recorded (the median of its samples) is compared with an independent bare measurement of
the same prepared call: a fresh process per backend that imports only that backend's framework, prepares
the call exactly as the suite does (an op class's own ``setup``: same inputs, same compiled function,
same warm-up; a workload job built from its spec), then times steady streams of back-to-back calls, each
call ending in the backend's sync.  The bare figure is the median of the streams' per-call means (what
harness/timing.py promises a recorded time to be).  A ratio suite / bare outside 1 +- 10% (calls of 50 us
or more) or 1 +- 25% (shorter ones) is flagged.

``mtb fidelity`` runs asv itself, class by class, into a folder of its own, each class bracketed by a
bare measurement before and one after (so both see the same machine), or reads a results file given
with ``--results``.
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LARGE_CALL_SECONDS = 50e-6
LARGE_BOUND = 0.10
SMALL_BOUND = 0.25
# on a GPU: calls of 1 ms or more should be recorded within 5% of the device's own time
DEVICE_GOAL_SECONDS = 1e-3
DEVICE_GOAL = 0.05


@dataclass
class Row:
    benchmark: str  # asv name, e.g. ops.normalization.LayerNorm.time_forward
    params: tuple[str, ...]
    backend: str
    suite_seconds: float | None = None
    suite_q25: float | None = None
    suite_q75: float | None = None
    bare_seconds: float | None = None
    bare_runs: list[list[float]] = field(default_factory=list)  # the streams of each bare process
    frameworks: list[str] = field(default_factory=list)  # what the bare process had imported
    # on a CUDA device: the GPU's own time per call, from CUPTI's kernel timestamps (both frameworks)
    # and, for torch, from CUDA events around the stream
    device_runs: list[float] = field(default_factory=list)
    event_runs: list[float] = field(default_factory=list)
    note: str = ""  # why a figure is missing

    @property
    def key(self) -> str:
        return f"{self.benchmark}[{', '.join(self.params)}]"

    @property
    def ratio(self) -> float | None:
        if self.suite_seconds and self.bare_seconds:
            return self.suite_seconds / self.bare_seconds
        return None

    @property
    def bare_range(self) -> tuple[float, float] | None:
        """The lowest and highest per-process bare figure: how far this machine drifted while the
        suite's figure was taken between them."""
        medians = [statistics.median(run) for run in self.bare_runs if run]
        return (min(medians), max(medians)) if medians else None

    @property
    def outside_range(self) -> float | None:
        """Suite over the nearest end of ``bare_range`` (1.0 when the suite's figure lies inside it)."""
        span = self.bare_range
        if self.suite_seconds is None or span is None:
            return None
        low, high = span
        if self.suite_seconds > high:
            return self.suite_seconds / high
        if self.suite_seconds < low:
            return self.suite_seconds / low
        return 1.0

    @property
    def device_seconds(self) -> float | None:
        return statistics.median(self.device_runs) if self.device_runs else None

    @property
    def event_seconds(self) -> float | None:
        return statistics.median(self.event_runs) if self.event_runs else None

    @property
    def device_ratio(self) -> float | None:
        """Suite over the GPU's busy time per call: 1 + the host's share of the recorded figure."""
        if self.suite_seconds and self.device_seconds:
            return self.suite_seconds / self.device_seconds
        return None

    @property
    def bound(self) -> float:
        reference = self.bare_seconds or self.suite_seconds or 0.0
        return LARGE_BOUND if reference >= LARGE_CALL_SECONDS else SMALL_BOUND

    @property
    def flagged(self) -> bool:
        ratio = self.ratio
        return ratio is not None and abs(ratio - 1.0) > self.bound

    @property
    def flagged_outside_range(self) -> bool:
        """Flagged even against the drift: the suite's figure beyond the bound of every bare figure."""
        outside = self.outside_range
        return outside is not None and abs(outside - 1.0) > self.bound

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            key=self.key,
            ratio=self.ratio,
            bound=self.bound,
            flagged=self.flagged,
            bare_range=self.bare_range,
            device_seconds=self.device_seconds,
            event_seconds=self.event_seconds,
            device_ratio=self.device_ratio,
            outside_range=self.outside_range,
            flagged_outside_range=self.flagged_outside_range,
        )
        return out


# ---------------------------------------------------------------------------------------------------
# The suite's figures: an asv results file
# ---------------------------------------------------------------------------------------------------
def _backend_of(params: Sequence[str], backends: Iterable[str]) -> str | None:
    known = set(backends)
    return next((p for p in params if p in known), None)


def suite_rows(
    results_file: Path, bench: str | None = None, backends: Sequence[str] | None = None
) -> list[Row]:
    """One row per ``time_`` result (benchmark x parameters) in ``results_file``, measured or not."""
    from asv.results import Results

    from benchmarks.harness.settings import BACKEND_NAMES

    wanted = set(backends or BACKEND_NAMES)
    pattern = re.compile(bench) if bench else None
    results = Results.load(str(results_file))
    rows: list[Row] = []
    for name in sorted(results.get_all_result_keys()):
        if not is_timing(name) or (pattern and not pattern.search(name)):
            continue
        params = results.get_result_params(name)
        values = results.get_result_value(name, params)
        stats = results.get_result_stats(name, params)
        combos = list(itertools.product(*params)) if params else [()]
        for combo, value, stat in zip(combos, values, stats, strict=True):
            plain = tuple(_unquote(p) for p in combo)
            backend = _backend_of(plain, BACKEND_NAMES)
            if backend is None or backend not in wanted:
                continue
            row = Row(name, plain, backend)
            if value is None or value != value:
                row.note = "no figure in the results (skipped or failed there)"
            else:
                row.suite_seconds = float(value)
                if stat:
                    row.suite_q25, row.suite_q75 = stat.get("q_25"), stat.get("q_75")
            rows.append(row)
    return rows


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"" else value


# ---------------------------------------------------------------------------------------------------
# The bare measurement, in a process of its own per backend
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BarePlan:
    """Streams as long as the suite's batches (the quick profile's 10 ms) and their median: the same
    statistic as the suite's, which a preempted stream cannot move.  ``processes`` fresh processes per
    backend each time the bare figure is taken: on a shared VM one process runs faster or slower than
    the next as a whole (the suite's rounds average over processes for the same reason), so a bare
    figure from one process would carry that process's luck."""

    warmup_seconds: float = 0.05
    stream_seconds: float = 0.01
    streams: int = 10
    processes: int = 2


def stream_per_call(call: Callable[[], Any], seconds: float) -> float:
    """Mean seconds per call over back-to-back calls lasting at least ``seconds`` (at least 2 calls)."""
    calls, start = 0, time.perf_counter()
    while True:
        call()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= 2:
            return elapsed / calls


def device_times(call: Callable[[], Any], backend: str, seconds: float = 0.2) -> dict[str, float]:
    """The GPU's own time per call of a stream: ``device``, the union of the kernels' (and copies')
    intervals from CUPTI through torch's profiler, which sees every CUDA context of the process, MLX's
    too; ``events``, CUDA events around the stream on torch's stream (torch backends only: MLX launches
    on streams of its own, which torch's events do not bracket).  Empty off CUDA."""
    from benchmarks.harness.backends import get_backend
    from benchmarks.harness.peaks import device_class
    from benchmarks.harness.settings import BACKEND_NAMES

    try:
        import torch
    except ImportError:
        return {}
    if backend not in BACKEND_NAMES or device_class(get_backend(backend)) != "gpu":
        return {}
    if not torch.cuda.is_available():
        return {}
    calls = max(3, min(200, int(seconds / max(stream_per_call(call, 0.02), 1e-6))))
    out: dict[str, float] = {}
    if backend.startswith("torch-"):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            call()
        end.record()
        end.synchronize()
        out["events"] = start.elapsed_time(end) / 1e3 / calls
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            call()
    spans = sorted(
        (e.time_range.start, e.time_range.end) for e in prof.events() if e.device_type == DeviceType.CUDA
    )
    busy, reach = 0.0, float("-inf")
    for begin, finish in spans:  # the union of the intervals, in microseconds
        if finish > reach:
            busy += finish - max(begin, reach)
            reach = finish
    if busy > 0:
        out["device"] = busy / 1e6 / calls
    return out


def bare_measure(call: Callable[[], Any], plan: BarePlan) -> list[float]:
    stream_per_call(call, plan.warmup_seconds)
    return [stream_per_call(call, plan.stream_seconds) for _ in range(plan.streams)]


def is_timing(name: str) -> bool:
    """An op's ``time_`` method, or a workload job's timing (``track_<what>_seconds``)."""
    method = name.split(".")[-1]
    return method.startswith("time_") or (method.startswith("track_") and method.endswith("_seconds"))


def _prepared_call(benchmark: str, params: Sequence[str]) -> Callable[[], Any]:
    """The unit call behind a timing, prepared as the suite prepares it: an op class's own setup, or a
    workload job built from its spec."""
    from benchmarks.harness.jobs import JobSpec, build_job

    module_name, class_name, method = benchmark.rsplit(".", 2)
    module = importlib.import_module(f"benchmarks.{module_name}")
    cls = getattr(module, class_name)
    spec = getattr(cls, "spec", None)
    if isinstance(spec, JobSpec):
        typed = spec.declared(params)
        if typed is None:
            raise NotImplementedError(f"{class_name} has no parameter set {list(params)}")
        job = build_job(f"{class_name} {' '.join(params)}", lambda: spec.build(*typed))
        return spec.timings[method.removeprefix("track_")](job)
    instance = cls()
    instance.setup(None, *params)  # the scratch folder holds the track_ probes, not needed for a timing
    return instance.timed_call(method).call


def bare_worker(requests: list[dict[str, Any]], plan: BarePlan) -> list[dict[str, Any]]:
    """Measure each request (benchmark, params) in this process; a failure or skip is reported, not
    raised, so the other requests still run."""
    from benchmarks.harness.settings import BACKEND_NAMES

    answers = []
    for request in requests:
        answer: dict[str, Any] = {"benchmark": request["benchmark"], "params": request["params"]}
        try:
            call = _prepared_call(request["benchmark"], request["params"])
            answer["streams"] = bare_measure(call, plan)
            answer.update(device_times(call, _backend_of(request["params"], BACKEND_NAMES) or ""))
        except NotImplementedError as exc:
            answer["note"] = f"skipped: {exc}"
        except Exception as exc:  # reported per request; the others go on
            answer["note"] = f"failed: {type(exc).__name__}: {exc}"
        answer["frameworks"] = loaded_frameworks()
        answers.append(answer)
        _release_prepared()
    return answers


def loaded_frameworks() -> list[str]:
    return [name for name, module in (("mlx", "mlx.core"), ("torch", "torch")) if sys.modules.get(module)]


def _release_prepared() -> None:
    from benchmarks.harness.suite import release_prepared

    release_prepared()


def blocked_modules(backend: str, benchmarks: Sequence[str] = ()) -> list[str]:
    """The other framework, kept out of a bare process: it holds only what it measures.  A workload's
    MLX side is built from torch's weights (the same weights on both sides), so it keeps torch."""
    if backend.startswith("mlx-gpu"):
        return []  # torch's profiler reads the GPU's own times (device_times)
    if backend.startswith("mlx-"):
        return [] if any(b.startswith("workloads.") for b in benchmarks) else ["torch"]
    return ["mlx", "mlx.core"]


def run_bare(rows: list[Row], plan: BarePlan, env: dict[str, str] | None = None) -> None:
    """Add bare streams to every row, from ``plan.processes`` processes per backend; ``bare_seconds`` is
    the median of all the streams a row has (a second call, after asv has run, brackets the suite's
    figure in time)."""
    # MLX fixes its float32 matrix-product mode at a process's first product: tf32 rows get their own
    by_backend: dict[tuple[str, bool], list[Row]] = {}
    for row in rows:
        by_backend.setdefault((row.backend, "tf32" in row.params), []).append(row)
    for _ in range(plan.processes):
        for (backend, _tf32), group in by_backend.items():
            _bare_process(backend, group, plan, env)


def _bare_process(backend: str, group: list[Row], plan: BarePlan, env: dict[str, str] | None) -> None:
    """One fresh process measuring every row of ``group`` (one backend) in turn."""
    payload = {
        "plan": asdict(plan),
        "block": blocked_modules(backend, [r.benchmark for r in group]),
        "requests": [{"benchmark": r.benchmark, "params": list(r.params)} for r in group],
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(payload, handle)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "tools.fidelity", handle.name],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        os.unlink(handle.name)
    answers = _parse_answers(out.stdout)
    if answers is None:
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        for row in group:
            row.note = f"bare process failed (exit {out.returncode}): {' | '.join(tail)}"
        return
    for row, answer in zip(group, answers, strict=True):
        streams = answer.get("streams")
        row.frameworks = answer.get("frameworks", [])
        if streams:
            row.bare_runs.append(streams)
            if "device" in answer:
                row.device_runs.append(answer["device"])
            if "events" in answer:
                row.event_runs.append(answer["events"])
            row.bare_seconds = statistics.median([s for run in row.bare_runs for s in run])
        elif not row.bare_runs:
            row.note = answer.get("note", "no bare figure")


def _parse_answers(stdout: str) -> list[dict[str, Any]] | None:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("["):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


# ---------------------------------------------------------------------------------------------------
# Running the suite through asv, into a folder of its own
# ---------------------------------------------------------------------------------------------------
def asv_config(out_dir: Path) -> Path:
    """An asv configuration that runs the suite in this Python (``environment_type: existing``) and
    keeps its results apart from the timeline's."""
    out_dir = out_dir.resolve()  # asv reads the paths relative to the configuration file
    config = {
        "version": 1,
        "project": "mlx-torch-bench",
        "repo": str(ROOT),
        "dvcs": "git",
        "branches": ["HEAD"],
        "environment_type": "existing",
        "benchmark_dir": str(ROOT / "benchmarks"),
        "results_dir": str(out_dir / "results"),
        "html_dir": str(out_dir / "html"),
        "env_dir": str(out_dir / "env"),
        "launch_method": "forkserver",
    }
    path = out_dir / "asv.conf.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def run_asv(config: Path, bench: str, env: dict[str, str]) -> int:
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    command = [
        sys.executable, "-m", "asv", "run", "--config", str(config), f"--python={sys.executable}",
        "--set-commit-hash", commit, "--record-samples", "--bench", bench,
    ]  # fmt: skip
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


def results_file(out_dir: Path) -> Path | None:
    files = [p for p in (out_dir / "results").glob("*/*.json") if p.name != "machine.json"]
    return max(files, key=lambda p: p.stat().st_mtime) if files else None


def time_benchmarks(bench: str | None, env: dict[str, str]) -> dict[str, list[list[str]]]:
    """The suite's ``time_`` benchmarks matching ``bench``, with their parameter values (asv's own
    discovery, in a child process)."""
    code = (
        "import json, sys; from asv_runner.discovery import disc_benchmarks;"
        "print(json.dumps({b.name: b.params for b in disc_benchmarks(sys.argv[1])}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "benchmarks")],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"mtb fidelity: importing the suite failed:\n{out.stderr.strip()[-2000:]}")
    found = json.loads(out.stdout.strip().splitlines()[-1])
    pattern = re.compile(bench) if bench else None
    return {n: p for n, p in found.items() if is_timing(n) and (pattern is None or pattern.search(n))}


def planned_rows(name: str, params: list[list[str]], backends: Sequence[str]) -> list[Row]:
    """The parameter sets of ``name`` on ``backends``, less those the profile never times (the quick
    profile compiles a subset of the ops: a bare process for the others would only report the skip)."""
    from benchmarks.harness.settings import BACKEND_NAMES

    rows = []
    for combo in itertools.product(*params) if params else [()]:
        plain = tuple(_unquote(p) for p in combo)
        backend = _backend_of(plain, BACKEND_NAMES)
        if backend is not None and backend in backends and not _profile_skips(name, plain, backend):
            rows.append(Row(name, plain, backend))
    return rows


def _profile_skips(benchmark: str, params: tuple[str, ...], backend: str) -> bool:
    from benchmarks.harness.backends import get_backend
    from benchmarks.harness.opspec import OpSpec
    from benchmarks.harness.profiles import active_profile, compiled_skip_reason

    if not get_backend(backend).compiled:
        return False
    module_name, class_name, _ = benchmark.rsplit(".", 2)
    cls = getattr(importlib.import_module(f"benchmarks.{module_name}"), class_name, None)
    spec = getattr(cls, "spec", None)
    if not isinstance(spec, OpSpec):
        return False
    profile = active_profile()
    case, dtype = params[0], params[1]
    try:
        index, _ = spec.find_case(profile.name, case)
    except KeyError:
        return False
    return compiled_skip_reason(profile, spec.name, index, dtype) is not None


# ---------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------
def summary(rows: Sequence[Row]) -> dict[str, Any]:
    ratios = [r.ratio for r in rows if r.ratio is not None]
    large = [r.ratio for r in rows if r.ratio is not None and r.bound == LARGE_BOUND]
    small = [r.ratio for r in rows if r.ratio is not None and r.bound == SMALL_BOUND]

    def quantiles(values: list[float]) -> dict[str, float] | None:
        if not values:
            return None
        ordered = sorted(values)
        return {
            "n": len(ordered),
            "min": ordered[0],
            "median": statistics.median(ordered),
            "max": ordered[-1],
            "p10": ordered[int(0.1 * (len(ordered) - 1))],
            "p90": ordered[int(0.9 * (len(ordered) - 1))],
        }

    drifts = [span[1] / span[0] - 1.0 for r in rows if r.ratio is not None and (span := r.bare_range)]
    return {
        "compared": len(ratios),
        "flagged": sum(r.flagged for r in rows),
        "flagged_outside_bare_range": sum(r.flagged_outside_range for r in rows),
        "bare_drift_median": statistics.median(drifts) if drifts else None,
        "bare_drift_p90": sorted(drifts)[int(0.9 * (len(drifts) - 1))] if drifts else None,
        "without_figure": sum(r.ratio is None for r in rows),
        "ratio_all": quantiles(ratios),
        "ratio_50us_or_more": quantiles(large),
        "ratio_under_50us": quantiles(small),
    }


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.4g}"


def format_table(rows: Sequence[Row]) -> str:
    """suite, bare, their ratio and the suite over the range of bare figures; ``flag``: the ratio is out
    of bounds; ``FLAG``: out of bounds against every bare figure too (not the machine's drift)."""
    lines = [f"{'suite ms':>10} {'bare ms':>10} {'ratio':>6} {'range':>6}  {'':4} benchmark"]
    for row in rows:
        ratio = "-" if row.ratio is None else f"{row.ratio:.3f}"
        outside = "-" if row.outside_range is None else f"{row.outside_range:.3f}"
        flag = "FLAG" if row.flagged_outside_range else ("flag" if row.flagged else "")
        figures = f"{_ms(row.suite_seconds):>10} {_ms(row.bare_seconds):>10} {ratio:>6} {outside:>6}"
        lines.append(f"{figures}  {flag:4} {row.key}")
        if row.note and row.ratio is None:
            lines.append(f"{'':41}{row.note}")
    on_device = [r for r in rows if r.device_ratio is not None]
    if on_device:
        lines.append("")
        lines.append(f"{'suite ms':>10} {'device ms':>10} {'events ms':>10} {'s/dev':>6}  benchmark")
        for row in on_device:
            suite, device, events = map(_ms, (row.suite_seconds, row.device_seconds, row.event_seconds))
            lines.append(f"{suite:>10} {device:>10} {events:>10} {row.device_ratio:>6.3f}  {row.key}")
        for framework in ("mlx", "torch"):
            large = sorted(
                r.device_ratio  # type: ignore[misc]
                for r in on_device
                if r.backend.startswith(framework) and (r.device_seconds or 0) >= DEVICE_GOAL_SECONDS
            )
            if large:
                within = sum(abs(x - 1) <= DEVICE_GOAL for x in large)
                lines.append(
                    f"{framework} on the GPU, calls of 1 ms or more: suite/device median "
                    f"{statistics.median(large):.3f} (min {large[0]:.3f}, max {large[-1]:.3f}); "
                    f"{within}/{len(large)} within {DEVICE_GOAL:.0%}"
                )
    info = summary(rows)
    lines.append(
        f"compared {info['compared']}, flagged {info['flagged']} (ratio outside 1 +- {LARGE_BOUND:.0%} at "
        f">= 50 us, 1 +- {SMALL_BOUND:.0%} below), of which {info['flagged_outside_bare_range']} also that "
        f"far outside the range of the bare figures (FLAG); without a figure {info['without_figure']}"
    )
    if info["bare_drift_median"] is not None:
        lines.append(
            f"drift of the bare figures around a class's asv run: median {info['bare_drift_median']:.1%}, "
            f"p90 {info['bare_drift_p90']:.1%}"
        )
    for label in ("ratio_50us_or_more", "ratio_under_50us"):
        q = info[label]
        if q:
            lines.append(
                f"{label}: n={q['n']} min {q['min']:.3f} p10 {q['p10']:.3f} median {q['median']:.3f} "
                f"p90 {q['p90']:.3f} max {q['max']:.3f}"
            )
    return "\n".join(lines)


def write_json(rows: Sequence[Row], path: Path, facts: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"facts": facts, "summary": summary(rows), "rows": [r.as_json() for r in rows]}, indent=1)
    )


# ---------------------------------------------------------------------------------------------------
# The whole command
# ---------------------------------------------------------------------------------------------------
def fidelity(
    bench: str | None,
    backends: Sequence[str],
    out_dir: Path,
    results: Path | None,
    plan: BarePlan,
    env: dict[str, str],
    log: Callable[[str], None] = print,
) -> list[Row]:
    """Suite figures and their bare measurements.  With ``results``, the recorded figures of that
    file; otherwise asv runs here now, one benchmark at a time, each run bracketed by a bare
    measurement before and one after (this machine's speed drifts by 10-20% over seconds)."""
    if results is not None:
        if not results.is_file():
            raise SystemExit(
                f"mtb fidelity: no results file at {results} (asv writes results/<machine>/*.json)"
            )
        rows = [r for r in suite_rows(results, bench, backends) if r.suite_seconds is not None]
        run_bare(rows, plan, env)
        return rows
    found = time_benchmarks(bench, env)
    if not found:
        raise SystemExit(f"mtb fidelity: no timing benchmark matches --bench {bench!r}")
    by_class: dict[str, dict[str, list[list[str]]]] = {}
    for name, params in found.items():
        by_class.setdefault(name.rsplit(".", 1)[0], {})[name] = params
    config = asv_config(out_dir)
    rows: list[Row] = []
    for index, (cls, methods) in enumerate(by_class.items(), 1):
        planned = [row for name, params in methods.items() for row in planned_rows(name, params, backends)]
        if not planned:
            log(f"[{index}/{len(by_class)}] {cls}: no parameter set on {', '.join(backends)}")
            continue
        log(f"[{index}/{len(by_class)}] {cls}: bare loop, asv, bare loop")
        run_bare(planned, plan, env)
        names = "|".join(re.escape(name.rsplit(".", 1)[1]) for name in methods)
        code = run_asv(config, f"^{re.escape(cls)}\\.({names})(\\(|$)", env)
        found_file = results_file(out_dir)
        recorded = {}
        if found_file is not None:
            pattern = f"^{re.escape(cls)}\\.({names})$"
            recorded = {r.key: r for r in suite_rows(found_file, pattern, backends)}
        for row in planned:
            match = recorded.get(row.key)
            if match is None or match.suite_seconds is None:
                row.note = match.note if match else f"asv recorded nothing (exit {code})"
            else:
                row.suite_seconds, row.suite_q25, row.suite_q75 = (
                    match.suite_seconds,
                    match.suite_q25,
                    match.suite_q75,
                )
        run_bare([r for r in planned if r.suite_seconds is not None], plan, env)
        rows.extend(planned)
    return rows


def _worker_main(path: str) -> None:
    payload = json.loads(Path(path).read_text())
    for name in payload["block"]:
        sys.modules[name] = None  # type: ignore[assignment]  # an import of it now fails
    answers = bare_worker(payload["requests"], BarePlan(**payload["plan"]))
    print(json.dumps(answers), flush=True)


if __name__ == "__main__":
    _worker_main(sys.argv[1])
