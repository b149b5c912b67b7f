"""mtb: the project's command line.

python -m tools.mtb main          build the default timeline, run the suite over each release point, publish
python -m tools.mtb timeline ...  build a timeline of MLX releases, torch releases, or both (see --help)
python -m tools.mtb probe         which backends run on this machine, and why the others do not
python -m tools.mtb spread A B    run-to-run spread between two asv result files
python -m tools.mtb fidelity      each recorded time against a bare loop of the same call
python -m tools.mtb find BENCH    the release that changed BENCH (asv find between two points)
python -m tools.mtb publish       asv's pages and ours (the report) under html/, working offline
python -m tools.mtb report        changes, MLX/torch standing and triage as Markdown, JSON and site pages
python -m tools.mtb error-rates   the detector's false flags and planted finds, measured on this machine
python -m tools.mtb bundle        download what an offline CUDA host lacks, packed and split into parts
python -m tools.mtb gpu           on a CUDA host: install a bundle, check both frameworks, run the suite
python -m tools.mtb job NAME P..  one parameter set of a workload job, measured now as asv measures it
python -m tools.mtb asv ARGS...   any asv command, with recorded results guarded and a clean stop
python -m tools.mtb source ...    MLX commits built from source (a wheel per commit, cached), measured by asv
python -m tools.mtb bisect ...    the MLX commit that changed one benchmark's figure, built and measured
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from packaging.version import Version

from benchmarks.harness import settings
from tools import bundle, error_rates, ratios, site, triage
from tools import detect as detect_tool
from tools import fidelity as fidelity_tool
from tools import report as report_tool
from tools import results as results_store
from tools import source as source_tool
from tools import timeline as tl

ROOT = Path(__file__).resolve().parent.parent
# The default timeline: MLX releases from 0.32.2 on (three today) with the local torch 2.13.0.
DEFAULT_MLX_RANGE = ">=0.32.2"
# What succeeded is kept (not measured again); every timing keeps its samples, for two-sample tests.
RUN_FLAGS = ("--skip-existing-successful", "--record-samples")
# decisions about detected changes, kept in git (tools/triage.py)
TRIAGE_FILE = "triage.toml"
# seconds between progress lines while a point runs
PROGRESS_EVERY = 60.0
# the asv configuration of a run in the Python already there (a CUDA host): no environments to build
EXISTING_CONFIG = "asv.existing.conf.json"
GPU_BACKENDS = ("mlx-gpu", "mlx-gpu-compiled", "torch-cuda", "torch-compile")


def load_conf(path: str) -> dict:
    """An asv configuration (JSON with comments), read by asv's own reader.  asv is imported here, not
    at the top: on a CUDA host `mtb gpu --bundle` installs asv before anything else needs it."""
    from asv import util as asv_util

    return asv_util.load_json(path, js_comments=True)


def _log(message: str) -> None:
    print(f"[mtb] {message}", flush=True)


class Stopped(Exception):
    """SIGINT or SIGTERM arrived: stop what was started, keep what finished, exit 128 + the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_stopping = False


def _on_signal(signum: int, frame: object) -> None:
    global _stopping
    if not _stopping:  # a second Ctrl-C while stopping changes nothing
        _stopping = True
        raise Stopped(signum)


def _stop_process_group(process: subprocess.Popen) -> None:
    """asv and everything it started share one process group: SIGINT lets asv clean up its own
    temporary folders and forkserver; whatever is left after 30 s is killed."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def probe_backends() -> dict[str, str | None]:
    """Backend name -> None if it runs here, else the reason.  Runs in a child process so that this
    process (and asv's forkserver after it) never touches a device."""
    code = (
        "import json; from benchmarks.harness.backends import BACKEND_NAMES, get_backend;"
        "print(json.dumps({n: get_backend(n).unavailable_reason() for n in BACKEND_NAMES}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"mtb: probing the backends failed:\n{out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def resolve_backends(choice: str) -> list[str]:
    """``auto``: the backends this machine has (absent ones would each cost a benchmark process per
    parameter set only to be skipped); ``all``: every backend, absent ones skipped with their reason by
    asv; or a comma list, validated as MTB_BACKENDS is."""
    if choice == "auto":
        status = probe_backends()
        for reason in status.values():
            if reason:
                _log(f"not run here: {reason}")
        return [name for name, reason in status.items() if reason is None]
    try:  # the same check as MTB_BACKENDS
        return list(settings.read("MTB_BACKENDS", {"MTB_BACKENDS": choice}))
    except settings.SettingError as exc:
        raise SystemExit(f"mtb: --backends: {exc}") from None


# Compilers keep their caches under the temporary folder unless told otherwise, and each asv run gets
# a temporary folder of its own (below) that goes with the run: every run then compiled every kernel
# again.  Measured on an H200: an MLX GELU kernel's first compile takes 3.4-6.4 s per dtype, 0.01 s
# from the cache; torch.compile's first process per parameter set 1.6-2.3 s, 0.9-1.3 s from the cache.
# A user's own setting of these is kept.
# MLX's PTX cache is named by kernel only, so its folder is set per MLX version where MLX is imported
# (benchmarks/harness/frameworks.py); inductor keys its entries by torch's sources itself.
COMPILER_CACHES = {"TORCHINDUCTOR_CACHE_DIR": "inductor"}


def compiler_cache_env(env: Mapping[str, str], root: Path | None = None) -> dict[str, str]:
    base = root or Path.home() / ".cache" / "mlx-torch-bench"
    return {name: env.get(name) or str(base / folder) for name, folder in COMPILER_CACHES.items()}


def _asv(
    args: Sequence[str],
    env: dict[str, str],
    ok_codes: Sequence[int] = (0,),
    cwd: Path = ROOT,
    progress: Callable[[], None] | None = None,
) -> int:
    """asv in a process group of its own (tools/asv_entry.py: results saved after every benchmark),
    with a temporary folder of its own that is removed however it ends."""
    command = [sys.executable, "-m", "tools.asv_entry", *args]
    _log("$ asv " + " ".join(args))
    path = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    # asv tells benchmark processes its folder and commit only in environments it builds; the facts
    # and skip reasons (benchmarks/harness/facts.py) need them in an existing environment too
    where = {"ASV_CONF_DIR": str((cwd / _config_of(args)).resolve().parent)}
    if "--set-commit-hash" in args[:-1]:
        where["ASV_COMMIT"] = args[list(args).index("--set-commit-hash") + 1]
    with tempfile.TemporaryDirectory(prefix="mtb-") as scratch:
        child_env = {**where, **env, **compiler_cache_env(env), "TMPDIR": scratch, "PYTHONPATH": path}
        process = subprocess.Popen(command, cwd=cwd, env=child_env, start_new_session=True)
        try:
            while True:
                try:
                    code = process.wait(timeout=PROGRESS_EVERY)
                    break
                except subprocess.TimeoutExpired:
                    if progress is not None:
                        progress()
        except Stopped:
            _stop_process_group(process)
            raise
        # benchmark processes asv left behind (none expected) go with it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    if code not in ok_codes:
        raise SystemExit(f"mtb: `asv {' '.join(args)}` failed with exit status {code}")
    return code


def build_timeline(args: argparse.Namespace) -> list[str]:
    """Resolve versions from the registry, make the points, write the repository."""
    kind = args.kind
    mlx_sel = tl.Selection(args.mlx_range, args.mlx_last, tuple(args.mlx_versions or ()))
    torch_sel = tl.Selection(args.torch_range, args.torch_last, tuple(args.torch_versions or ()))
    try:
        companions = tl.Companions(torch=args.torch, mlx=args.mlx, numpy=args.numpy)
        mlx_versions: list[str] = []
        torch_versions: list[str] = []
        if kind in ("mlx", "both"):
            available = tl.registry_versions("mlx")
            if companions.linux:  # only releases with a Linux CPU build
                cpu = set(tl.registry_versions("mlx-cpu"))
                available = [v for v in available if v in cpu]
            mlx_versions = mlx_sel.apply("mlx", available)
        if kind in ("torch", "both"):
            torch_versions = torch_sel.apply("torch", tl.registry_versions("torch"))
        if not args.no_mlx_lm:
            _log("reading which MLX each mlx-lm release needs")
            lm_versions = [v for v in tl.registry_versions("mlx-lm") if Version(v) >= tl.OLDEST_MLX_LM]
            companions = dataclasses.replace(companions, mlx_lm_minimums=tl.mlx_lm_minimums(lm_versions))
        if kind == "mlx":
            points = tl.mlx_timeline(mlx_versions, companions, tl.release_dates("mlx"))
        elif kind == "torch":
            points = tl.torch_timeline(torch_versions, companions, tl.release_dates("torch"))
        else:
            points = tl.combined_timeline(
                mlx_versions, torch_versions, companions, tl.release_dates("mlx"), tl.release_dates("torch")
            )
        hashes = tl.build_repo(points, ROOT / args.out, progress=lambda m: _log(m))
    except tl.TimelineError as exc:
        raise SystemExit(f"mtb: {exc}") from None
    for point in points:
        for note in point.notes:
            _log(f"{point.tag}: {note}")
    _log(f"timeline {args.out}: {', '.join(p.tag for p in points)}")
    return hashes


def point_progress(results_dir: Path, commit: str, total: int) -> Callable[[], None]:
    """A progress line: benchmarks this point has finished (its results are saved after each one),
    of how many, and the time left at the pace so far."""
    since = time.time()

    def report() -> None:
        done = results_store.finished_since(results_dir, commit, since)
        elapsed = time.time() - since
        estimate = f", about {elapsed / done * max(total - done, 0):.0f} s left" if done else ""
        print(flush=True)  # asv's progress line does not end while a benchmark runs
        _log(f"{done}/{total} benchmarks done at this point ({elapsed:.0f} s{estimate})")

    return report


def run_points(
    config: str,
    conf: dict,
    env: dict[str, str],
    bench: str | None,
    commits: str,
    started: float,
    total: int = 0,
) -> list[str]:
    """asv run over the timeline one release point at a time, so that progress shows (which point, how
    many left, time so far) and a point that fails to install or run does not stop the others.  Returns
    the points whose run failed (asv's exit status 1: the point could not be installed or run)."""
    extra = ["--bench", bench] if bench else []
    repo = ROOT / conf["repo"]
    if commits != "main" or not (repo / tl.POINT_FILE).exists():
        # asv exits 2 when some benchmarks failed: their failure is recorded, every other result kept.
        code = _asv(["run", "--config", config, *RUN_FLAGS, commits, *extra], env, ok_codes=(0, 1, 2))
        return [commits] if code == 1 else []
    points = tl.read_points(repo)
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        points_started = time.monotonic()
        for index, point in enumerate(points, 1):
            left = len(points) - index
            elapsed = time.monotonic() - points_started
            estimate = f", about {elapsed / (index - 1) * (left + 1):.0f} s to go" if index > 1 else ""
            _log(
                f"point {index}/{len(points)} {point['tag']} ({left} left, "
                f"{time.monotonic() - started:.0f} s so far{estimate})"
            )
            hashfile = Path(tmp) / "point.txt"
            hashfile.write_text(point["commit"] + "\n")
            args = ["run", "--config", config, *RUN_FLAGS, f"HASHFILE:{hashfile}", *extra]
            progress = point_progress(ROOT / conf.get("results_dir", "results"), point["commit"], total)
            if _asv(args, env, ok_codes=(0, 1, 2), progress=progress) not in (0, 2):
                failed.append(point["tag"])
    return failed


def selected_benchmarks(bench: str | None, env: dict[str, str]) -> list[str]:
    """The benchmark names ``--bench`` selects, found the way asv finds them (in a child process: the
    suite imports torch, and this process starts asv's forkserver later)."""
    code = (
        "import json; from asv_runner.discovery import disc_benchmarks;"
        "print(json.dumps([b.name for b in disc_benchmarks('benchmarks')]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise SystemExit(f"mtb: the suite cannot be imported: {last}")
    names = json.loads(out.stdout.strip().splitlines()[-1])
    return [n for n in names if bench is None or re.search(bench, n)]


def check_profile(name: str) -> None:
    from benchmarks.harness.profiles import ProfileError, get_profile

    try:
        get_profile(name)
    except ProfileError as exc:
        raise SystemExit(f"mtb: {exc}") from None


def check_bench(bench: str | None) -> None:
    if bench is not None:
        try:
            re.compile(bench)
        except re.error as exc:
            raise SystemExit(f"mtb: --bench {bench!r} is not a regular expression: {exc}") from None


def check_run_inputs(args: argparse.Namespace, conf: dict) -> None:
    """What would make the run fail or do nothing, said before anything starts (the timeline included)."""
    check_profile(args.profile)
    check_bench(args.bench)
    if args.no_timeline and not (ROOT / conf["repo"] / ".git").exists():
        raise SystemExit(
            f"mtb: there is no timeline at {conf['repo']} yet; run without --no-timeline once "
            "(or `python3 -m tools.mtb timeline`) to build it"
        )


def main_job(
    profile: str, backends: str, bench: str | None, config: str, commits: str, publish: bool = True
) -> int:
    """Run every point, publish, print the summary; 0 only if every point ran and no benchmark failed."""
    backend_names = ",".join(resolve_backends(backends))
    env = tl.installer_env(dict(os.environ, MTB_PROFILE=profile, MTB_BACKENDS=backend_names))
    selected = selected_benchmarks(bench, env)
    if not selected:
        raise SystemExit(f"mtb: --bench {bench!r} matches no benchmark; `python3 -m asv check` lists them")
    _log(f"profile {profile}; backends {env['MTB_BACKENDS']}; {len(selected)} benchmarks")
    started = time.monotonic()
    if not (Path.home() / ".asv-machine.json").exists():
        _asv(["machine", "--yes", "--config", config], env)
    # asv 0.6.6 exits 1 from a successful `asv setup`; a real failure shows up in `asv run` below.
    _asv(["setup", "--config", config], env, ok_codes=(0, 1))
    conf = load_conf(str(ROOT / config))
    results_dir = ROOT / conf.get("results_dir", "results")
    with results_store.guarded(results_dir, guard_folder(ROOT / config), _log):
        failed = run_points(config, conf, env, bench, commits, started, total=len(selected))
    points = tl.read_points(ROOT / conf["repo"]) if (ROOT / conf["repo"] / tl.POINT_FILE).exists() else []
    summary = results_store.summary(results_dir, points, set(selected))
    reasons = results_store.skip_reasons((ROOT / config).parent / "facts", [p["commit"] for p in points])
    print(results_store.format_summary(summary, failed, reasons))
    status = 1 if failed or any(row.failed for row in summary) else 0
    if not publish:
        return status
    if not publish_site(ROOT / config, env):
        status = 1
    html = ROOT / conf.get("html_dir", "html")
    _log(f"done in {time.monotonic() - started:.0f} s; the site is {html / 'index.html'}")
    _log(f"view it with: python -m asv preview --config {config}")
    if status:
        _log("exit status 1: a point could not run or a benchmark failed (above)")
    return status


def publish_site(config: Path, env: dict[str, str]) -> bool:
    """asv's pages (swapped in only when publishing succeeded, made to work offline), then ours (the
    report, ratios, triage and run facts under html/mtb/, linked from asv's navigation).  False when
    the results could not be reported on (said in one line); asv's pages are published all the same."""
    conf = load_conf(str(config))
    html = config.resolve().parent / conf.get("html_dir", "html")
    if results_store.widen_benchmark_list(config.resolve().parent / conf.get("results_dir", "results")):
        _log("benchmark list widened by the parameters of every machine's results (asv shows them all)")
    site.publish(lambda args: _asv([*args, "--config", str(config)], env), html, _log)
    still_external = site.vendor_site(html, Path.home() / ".cache" / "mlx-torch-bench" / "npm")
    for url in still_external:
        _log(f"the site still loads {url}: viewing it needs internet")
    try:
        report = report_tool.build(config, ROOT / TRIAGE_FILE, detect_tool.Settings())
    except (detect_tool.DetectError, triage.TriageError) as exc:
        _log(f"no report pages: {exc}")
        return False
    for problem in report.problems:
        _log(f"problem: {problem}")
    pages = report_tool.write_site(report, html, config.resolve().parent / "facts")
    site.link_our_pages(html)
    _log(f"report: {len(report.headline())} change(s) in the headline; {pages / 'index.html'}")
    return True


def _timeline_arguments(parser: argparse.ArgumentParser, default_mlx_range: str | None) -> None:
    parser.add_argument(
        "--kind",
        choices=("mlx", "torch", "both"),
        default="mlx",
        help="whose releases make the points (the other framework is held)",
    )
    parser.add_argument("--out", default=".timeline/default", help="where to write the timeline repository")
    parser.add_argument("--mlx-range", default=default_mlx_range, help="PEP 440 range, e.g. '>=0.30,<0.32'")
    parser.add_argument("--mlx-last", type=positive_int, help="the last N MLX releases")
    parser.add_argument("--mlx-versions", nargs="+", help="exactly these MLX releases")
    parser.add_argument("--torch-range", help="PEP 440 range of torch releases")
    parser.add_argument("--torch-last", type=positive_int, help="the last N torch releases")
    parser.add_argument("--torch-versions", nargs="+", help="exactly these torch releases")
    parser.add_argument("--torch", default="2.13.0", help="torch held while MLX moves")
    parser.add_argument("--mlx", default="0.32.4", help="MLX held while torch moves")
    parser.add_argument("--numpy", default="2.4.6", help="numpy pinned at every point")
    parser.add_argument("--no-mlx-lm", action="store_true", help="do not pin a matching mlx-lm")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help keeps the description's layout and shows every default there is."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return int(text)


def _detector_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = detect_tool.Settings()
    parser.add_argument(
        "--min-effect", type=float, default=defaults.min_effect, help="smallest relative change reported"
    )
    parser.add_argument(
        "--noise-factor",
        type=float,
        default=defaults.noise_factor,
        help="band: this times the series' spread",
    )
    parser.add_argument(
        "--confidence",
        type=float,
        default=defaults.confidence,
        help="of the interval that must clear the band",
    )
    parser.add_argument("--json", type=Path, help="also write the findings here")


def detector_settings(args: argparse.Namespace) -> detect_tool.Settings:
    if not 0 < args.confidence < 1 or args.min_effect < 0 or args.noise_factor < 0:
        raise SystemExit(
            "mtb: --confidence must lie between 0 and 1, --min-effect and --noise-factor 0 or more"
        )
    return detect_tool.Settings(
        min_effect=args.min_effect, noise_factor=args.noise_factor, confidence=args.confidence
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtb", description=__doc__, formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    main = sub.add_parser(
        "main", help="run the suite with asv, then publish the site to html/", formatter_class=HelpFormatter
    )
    main.add_argument(
        "--profile",
        default=os.environ.get("MTB_PROFILE", "quick"),
        help="size profile: quick or full",
    )
    main.add_argument("--backends", default="auto", help="auto (those present), all, or a comma list")
    main.add_argument("--bench", help="asv --bench regular expression (default: everything)")
    main.add_argument("--config", default="asv.conf.json", help="the asv configuration")
    main.add_argument("--commits", default="main", help="asv commit range (default: every point)")
    main.add_argument("--no-timeline", action="store_true", help="run over the timeline already built")
    # A range with a fixed start, not "the last N": new releases are appended to the same timeline, so
    # the commits (and the results recorded against them) of the releases already there never move.
    _timeline_arguments(main, default_mlx_range=DEFAULT_MLX_RANGE)

    timeline = sub.add_parser(
        "timeline", help="build a version timeline repository for asv", formatter_class=HelpFormatter
    )
    _timeline_arguments(timeline, default_mlx_range=None)

    sub.add_parser("probe", help="which backends run on this machine")

    det = sub.add_parser(
        "detect",
        help="changes between consecutive points, beyond each series' noise (tools/detect.py)",
        formatter_class=HelpFormatter,
    )
    det.add_argument(
        "files", nargs="*", type=Path, help="asv results files in point order (default: the timeline)"
    )
    det.add_argument("--config", default="asv.conf.json", help="the asv configuration (results, timeline)")
    _detector_arguments(det)

    rep = sub.add_parser(
        "report",
        help="changes, MLX/torch standing and triage: Markdown, JSON, site pages (tools/report.py)",
        formatter_class=HelpFormatter,
    )
    rep.add_argument("--config", default="asv.conf.json", help="the asv configuration (results, timeline)")
    rep.add_argument("--triage", type=Path, default=Path(TRIAGE_FILE), help="the triage file")
    rep.add_argument("--markdown", type=Path, help="write the Markdown here (default: print it)")
    rep.add_argument("--site", action="store_true", help="write the pages under the site's html/mtb/")
    rep.add_argument(
        "--fail-on-untriaged", action="store_true", help="exit 1 when a regression is in no triage entry"
    )
    _detector_arguments(rep)

    find = sub.add_parser(
        "find",
        help="asv find between two points of the timeline (forkserver; any timeline length)",
        formatter_class=HelpFormatter,
    )
    find.add_argument("benchmark", help="regular expression matching exactly one benchmark")
    find.add_argument("--from", dest="start", help="the point before the change (default: the first)")
    find.add_argument("--to", dest="end", help="the point after the change (default: the last)")
    find.add_argument("--improvement", action="store_true", help="look for a speed-up instead (asv --invert)")
    find.add_argument("--config", default="asv.conf.json", help="the asv configuration")

    pub = sub.add_parser(
        "publish",
        help="asv publish, offline assets, and the report pages (html/mtb/)",
        formatter_class=HelpFormatter,
    )
    pub.add_argument("--config", default="asv.conf.json", help="the asv configuration")

    rates = sub.add_parser(
        "error-rates",
        help="the detector on an A/A pair and a planted slowdown, run here (tools/error_rates.py)",
        formatter_class=HelpFormatter,
    )
    rates.add_argument("--profile", default=os.environ.get("MTB_PROFILE", "quick"), help="quick or full")
    rates.add_argument("--backends", default="auto", help="auto (those present), all, or a comma list")
    rates.add_argument("--bench", default=r"^ops\.", help="asv --bench regular expression")
    rates.add_argument("--mlx", default=tl.Companions().mlx, help="the MLX release of every point")
    rates.add_argument("--out", type=Path, default=Path(".asv/error-rates"), help="timeline, env, results")
    rates.add_argument("--no-run", action="store_true", help="evaluate the results already in --out")
    _detector_arguments(rates)

    bun = sub.add_parser(
        "bundle",
        help="download what an offline CUDA host lacks (tools/bundle.py), split into parts",
        formatter_class=HelpFormatter,
    )
    bun.add_argument("--out", type=Path, default=Path(".bundle"), help="folder for the manifest and parts")
    bun.add_argument("--python", default="3.12", help="the host's Python, major.minor")
    bun.add_argument("--part-mb", type=float, default=None, help="split into parts of this many MiB")
    bun.add_argument("--no-timeline", action="store_true", help="leave the release timeline out")

    gpu = sub.add_parser(
        "gpu",
        help="on a CUDA host: install a bundle, check torch and MLX see the GPU, run the suite with asv",
        formatter_class=HelpFormatter,
    )
    gpu.add_argument("--bundle", type=Path, help="the folder `mtb bundle` made (omit if MLX is installed)")
    gpu.add_argument(
        "--site", type=Path, default=BUNDLE_SITE,
        help="where the bundle's packages are installed",
    )  # fmt: skip
    gpu.add_argument("--machine", help="asv machine name (default: cuda-<device name>)")
    gpu.add_argument("--profile", default=os.environ.get("MTB_PROFILE", "quick"), help="quick or full")
    gpu.add_argument(
        "--backends", default=",".join(GPU_BACKENDS), help="comma list, or auto (every backend present)"
    )
    gpu.add_argument("--bench", help="asv --bench regular expression (default: everything)")
    gpu.add_argument("--install-only", action="store_true", help="install and check, run nothing")

    ado = sub.add_parser(
        "adopt",
        help="merge a run made in another copy of this repository (a GPU host's results/, facts/) here",
        formatter_class=HelpFormatter,
    )
    ado.add_argument("folder", type=Path, help="the copy's root: the folder holding its results/ and facts/")

    job = sub.add_parser(
        "job",
        help="measure one parameter set of a workload job now, with asv's measuring code (fresh interpreter)",
        formatter_class=HelpFormatter,
    )
    job.add_argument("name", help="the job's class, e.g. LLMGeneration")
    job.add_argument("params", nargs="+", help="its parameter values in order, e.g. torch-cuda tinyllama ...")
    job.add_argument("--json", type=Path, help="also write the figures here")

    guarded = sub.add_parser(
        "asv",
        help="any asv command with results guarded and a clean stop: mtb asv run --bench X ...",
        prefix_chars="\0",  # every argument after `asv` is asv's
    )
    guarded.add_argument("asv_args", nargs=argparse.REMAINDER)

    src = sub.add_parser(
        "source",
        help="MLX commits of a range built from source (a cached wheel per commit) and measured by asv",
        formatter_class=HelpFormatter,
    )
    _source_arguments(src)
    src.add_argument(
        "--range",
        required=True,
        help="git's A..B: the first-parent commits after A up to B (A^..B includes A)",
    )
    # the source environment holds MLX, torch and numpy only: the workloads need more
    src.add_argument("--bench", default=r"^ops\.", help="asv --bench regular expression")

    bis = sub.add_parser(
        "bisect",
        help="the MLX commit between --good and --bad that changed one benchmark's figure",
        formatter_class=HelpFormatter,
    )
    _source_arguments(bis)
    bis.add_argument("--good", required=True, help="a commit before the change")
    bis.add_argument("--bad", required=True, help="a commit after it")
    bis.add_argument(
        "--bench", required=True, help="the benchmark's full name, e.g. ops.reductions.Sum.time_forward"
    )
    bis.add_argument(
        "--params", help="its parameter values in order, comma-separated, e.g. '8x1e5,float32,mlx-cpu'"
    )

    scr = sub.add_parser(
        "screen",
        help="which op cases changed between consecutive MLX versions on mlx-cpu, timed in lockstep",
        formatter_class=HelpFormatter,
    )
    scr.add_argument(
        "--mlx", required=True,
        help="comma list, oldest first: release numbers (installed once with pip) or folders holding mlx",
    )  # fmt: skip
    scr.add_argument("--ops", help="regular expression over op names (default: every op)")
    scr.add_argument("--rounds", type=int, default=5, help="times each case is timed on every version")
    scr.add_argument("--threshold", type=float, default=0.15, help="the smallest step named (0.15: 15%%)")
    scr.add_argument("--profile", default=os.environ.get("MTB_PROFILE", "quick"), help="quick or full")
    scr.add_argument("--json", type=Path, help="also write every timing and step here")

    sp = sub.add_parser("spread", help="run-to-run spread of time_ results between two asv result files")
    sp.add_argument("first", type=Path)
    sp.add_argument("second", type=Path)
    sp.add_argument("--min-ms", type=float, default=1.0, help="the threshold between small and large ops")
    sp.add_argument("--worst", type=int, default=10, help="list this many of the least repeatable")
    fid = sub.add_parser(
        "fidelity",
        help="compare each recorded time with a bare back-to-back loop of the same prepared call",
        formatter_class=HelpFormatter,
    )
    fid.add_argument("--bench", default=r"^ops\.", help="regular expression over benchmark names")
    fid.add_argument("--backends", default="auto", help="auto (those present), or a comma list")
    fid.add_argument(
        "--profile",
        default=os.environ.get("MTB_PROFILE", "quick"),
        help="size profile: quick or full",
    )
    fid.add_argument(
        "--results", type=Path, help="an asv results file to check instead of running asv here now"
    )
    fid.add_argument("--out", type=Path, help="folder for the run (default: fidelity/<date-time>)")
    fid.add_argument("--streams", type=int, default=10, help="bare streams per case and process (median)")
    fid.add_argument(
        "--bare-processes", type=int, default=2, help="fresh bare processes before and after each class"
    )
    fid.add_argument("--stream-seconds", type=float, default=0.01, help="length of one bare stream")
    fid.add_argument("--strict", action="store_true", help="exit 1 when a case is flagged")
    return parser


def fidelity_backends(choice: str) -> list[str]:
    """Like ``resolve_backends``, but a name that is unknown or absent here is reported and left out while
    the others are checked; only a list that leaves nothing stops the run."""
    if choice in ("auto", "all"):
        return resolve_backends("auto")
    names = [n.strip() for n in choice.split(",") if n.strip()]
    status = probe_backends()
    kept = []
    for name in names:
        if name not in settings.BACKEND_NAMES:
            _log(f"unknown backend {name!r} left out (known: {', '.join(settings.BACKEND_NAMES)})")
        elif status.get(name):
            _log(f"left out, not here: {status[name]}")
        else:
            kept.append(name)
    if not kept:
        raise SystemExit(f"mtb fidelity: none of the backends {choice!r} runs here; try --backends auto")
    return kept


def fidelity_job(args: argparse.Namespace) -> int:
    if args.streams < 1 or args.stream_seconds <= 0 or args.bare_processes < 1:
        raise SystemExit(
            "mtb fidelity: --streams and --bare-processes must be 1 or more, --stream-seconds above 0"
        )
    check_profile(args.profile)
    backends = fidelity_backends(args.backends)
    out = args.out or ROOT / "fidelity" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MTB_PROFILE=args.profile, MTB_BACKENDS=",".join(backends))
    plan = fidelity_tool.BarePlan(
        stream_seconds=args.stream_seconds, streams=args.streams, processes=args.bare_processes
    )
    rows = fidelity_tool.fidelity(args.bench, backends, out, args.results, plan, env, log=_log)
    print(fidelity_tool.format_table(rows))
    facts = {
        "profile": args.profile,
        "backends": backends,
        "bench": args.bench,
        "load_average": os.getloadavg(),
    }
    fidelity_tool.write_json(rows, out / "fidelity.json", facts)
    _log(f"wrote {out / 'fidelity.json'}")
    flagged = sum(r.flagged for r in rows)
    return 1 if args.strict and flagged else 0


def bundle_job(args: argparse.Namespace) -> int:
    timeline = None
    if not args.no_timeline:
        timeline = ROOT / ".timeline" / "default"
        if not (timeline / tl.POINT_FILE).exists():
            _log("building the default timeline (asv records the GPU run against one of its points)")
            build_timeline(build_parser().parse_args(["timeline", "--mlx-range", DEFAULT_MLX_RANGE]))
    try:
        made = bundle.make(args.out, args.python, args.part_mb, timeline)
    except bundle.BundleError as exc:
        raise SystemExit(f"mtb bundle: {exc}") from None
    size = sum(p.size for p in made.parts) / 2**20
    _log(f"{len(made.wheels)} wheels, {size:.0f} MiB in {len(made.parts)} part(s) under {args.out}:")
    for part in made.parts:
        _log(f"  {part.file}  {part.size / 2**20:.1f} MiB")
    _log(f"on the host: python3 -m tools.mtb gpu --bundle <folder holding {bundle.MANIFEST} and the parts>")
    return 0


def _device_slug(name: str) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", name.lower().replace("nvidia", "")).strip("-")
    return f"cuda-{words or 'gpu'}"


BUNDLE_SITE = Path.home() / ".cache" / "mlx-torch-bench" / "site"


def use_bundle_site(site_dir: Path = BUNDLE_SITE) -> None:
    """Make the packages ``mtb gpu`` installed from a bundle (MLX's CUDA build, asv) importable here and
    in every process started from here; nothing changes where no bundle was installed.  Raises
    ``bundle.BundleError`` when MLX's CUDA libraries cannot be linked."""
    if site_dir.is_dir():
        bundle.link_cuda_libraries(site_dir)
        if str(site_dir) not in sys.path:
            sys.path.insert(0, str(site_dir))
        importlib.invalidate_caches()
    path = os.pathsep.join(str(p) for p in (site_dir, ROOT) if p.is_dir())
    # asv gives benchmark processes ASV_PYTHONPATH, not PYTHONPATH
    os.environ.update(PYTHONPATH=path, ASV_PYTHONPATH=path)
    # A CUDA image may forbid bytecode files (PYTHONDONTWRITEBYTECODE): every process then compiles
    # torch's Python source again (7-10 s to import torch and the suite on the H200 tried).  The
    # bytecode goes to a folder of ours instead, so the host's site-packages stay as they are.
    if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
        os.environ.setdefault("PYTHONPYCACHEPREFIX", str(site_dir.parent / "pycache"))


def gpu_job(args: argparse.Namespace) -> int:
    """Install (when given a bundle), check, then the suite through asv in this Python."""
    check_profile(args.profile)
    check_bench(args.bench)
    site_dir = args.site.expanduser().resolve()
    timeline = ROOT / ".timeline" / "default"
    try:
        if args.bundle is not None:
            bundle.install(args.bundle, site_dir, timeline, _log)
        use_bundle_site(site_dir)
        found = bundle.probe(dict(os.environ))
        bundle.check_frameworks(found, site_dir)
    except bundle.BundleError as exc:
        raise SystemExit(f"mtb gpu: {exc}") from None
    _log(f"torch {found['torch']} and MLX {found['mlx']} see the GPU ({found.get('device')})")
    if args.install_only:
        return 0
    if not (timeline / tl.POINT_FILE).exists():
        raise SystemExit(
            f"mtb gpu: no timeline at {timeline}: make the bundle with its timeline (`mtb bundle`), or build "
            "it with `python3 -m tools.mtb timeline` where PyPI is reachable"
        )
    points = [p for p in tl.read_points(timeline) if p["pins"].get("mlx") == found["mlx"]]
    if not points:
        raise SystemExit(
            f"mtb gpu: the timeline has no point for MLX {found['mlx']}: bundle an MLX release the timeline "
            "holds, or rebuild the timeline to include it"
        )
    point = points[-1]
    machine = args.machine or _device_slug(str(found.get("device", "gpu")))
    _log(f"machine {machine}; point {point['tag']} (torch here: {found['torch']})")
    return run_existing(machine, point, args.backends, args.profile, args.bench)


def cmd_adopt(args: argparse.Namespace) -> int:
    try:
        changed = results_store.adopt(args.folder, ROOT, _log)
    except results_store.AdoptError as exc:
        raise SystemExit(f"mtb adopt: {exc}") from None
    _log(f"{changed} file(s) changed" if changed else "nothing new: every value and fact is here already")
    return 0


def run_existing(machine: str, point: dict, backends_choice: str, profile: str, bench: str | None) -> int:
    """The suite through asv in this Python (no environment built), recorded against ``point`` of the
    timeline on ``machine``; results guarded as in ``main``."""
    backends = ",".join(resolve_backends(backends_choice))
    # asv names no environment for the benchmark processes of an existing Python: the facts need one
    env = dict(
        os.environ, MTB_PROFILE=profile, MTB_BACKENDS=backends, MTB_MACHINE=machine, ASV_ENV_NAME="existing"
    )
    _log(f"backends {backends}")
    started = time.monotonic()
    run_started = datetime.datetime.now(datetime.UTC)  # this run's clock readings: those from now on
    config = ROOT / EXISTING_CONFIG
    _asv(["machine", "--yes", "--machine", machine, "--config", EXISTING_CONFIG], env)
    conf = load_conf(str(config))
    results_dir = ROOT / conf["results_dir"]
    extra = ["--bench", bench] if bench else []
    run = [
        "run", "--config", EXISTING_CONFIG, "-E", f"existing:{sys.executable}", "--machine", machine,
        "--set-commit-hash", point["commit"], *RUN_FLAGS, *extra,
    ]  # fmt: skip
    with results_store.guarded(results_dir, guard_folder(config), _log):
        code = _asv(run, env, ok_codes=(0, 1, 2))
    selected = set(selected_benchmarks(bench, env))
    summary = results_store.summary(results_dir, [point], selected, machine=machine)
    reasons = results_store.skip_reasons(ROOT / "facts", [point["commit"]], machine)
    print(results_store.format_summary(summary, [point["tag"]] if code == 1 else [], reasons))
    from benchmarks.harness import clocks, facts

    run_facts = facts.facts_path(ROOT, machine=machine, commit=point["commit"], env="existing")
    clock_file = facts.beside(run_facts, "clocks")
    for line in clocks.summarise(clock_file, since=run_started):
        _log(f"GPU clocks: {line}")
    for line in clocks.where_time_went(clock_file, since=run_started):
        _log(f"time spent: {line}")
    found_file = results_store.point_file(results_dir, point["commit"], machine)
    if found_file is not None:
        from tools import ceilings

        for flag in ceilings.findings(found_file):
            _log(f"timing bug: {flag.describe()}")
    _log(f"done in {time.monotonic() - started:.0f} s; results in {results_dir / machine}")
    return 1 if code == 1 or any(row.failed for row in summary) else 0


def job_command(args: argparse.Namespace) -> int:
    """The figures of one parameter set, from the measuring process asv's ``setup_cache`` would start."""
    import importlib
    import pkgutil
    import statistics

    from benchmarks import workloads
    from benchmarks.harness import jobs

    check_settings()
    specs = {}
    for module in pkgutil.iter_modules(workloads.__path__):
        loaded = importlib.import_module(f"benchmarks.workloads.{module.name}")
        for value in vars(loaded).values():
            spec = getattr(value, "spec", None)
            if isinstance(spec, jobs.JobSpec):
                specs[spec.name] = spec
    spec = specs.get(args.name)
    if spec is None:
        raise SystemExit(f"mtb job: no workload job {args.name!r}; jobs: {', '.join(sorted(specs))}")
    params = spec.declared(args.params)
    if params is None:
        named = zip(spec.param_names, spec.params, strict=True)
        choices = "; ".join(f"{n}: {', '.join(map(str, p))}" for n, p in named)
        raise SystemExit(f"mtb job: {args.name} has no parameter set {args.params}; parameters are {choices}")
    result = jobs.measure_in_process(spec, params)
    if args.json:
        args.json.write_text(json.dumps({"job": spec.name, "params": args.params, **result}, indent=1))
    if "skip" in result or "error" in result:
        print(f"{spec.name} {' '.join(args.params)}: {result.get('skip') or result.get('error')}")
        return 0 if "skip" in result else 1
    for metric, samples in result["timings"].items():
        q = statistics.quantiles(samples, n=4) if len(samples) > 1 else [samples[0]] * 3
        print(f"{metric:<34} median {q[1]:.6g} s (q25 {q[0]:.6g}, q75 {q[2]:.6g}, {len(samples)} samples)")
    for metric, value in result["tracks"].items():
        print(f"{metric:<34} {value:.6g}")
    for metric, error in result["errors"].items():
        print(f"{metric:<34} failed: {error}")
    return 1 if result["errors"] else 0


def guard_folder(config: Path) -> Path:
    """Where copies of the results wait during a run: beside the configuration, outside the results
    folder (asv reads every JSON file under it)."""
    return config.resolve().parent / ".asv" / "mtb"


def _config_of(asv_args: Sequence[str]) -> Path:
    """The configuration an asv command line names (asv's default: asv.conf.json)."""
    config = Path("asv.conf.json")
    for i, arg in enumerate(asv_args):
        if arg == "--config" and i + 1 < len(asv_args):
            config = Path(asv_args[i + 1])
        elif arg.startswith("--config="):
            config = Path(arg.split("=", 1)[1])
    return config


def guarded_asv(asv_args: Sequence[str]) -> int:
    """Any asv command, run as ``mtb main`` runs asv: recorded values never replaced by worse ones or
    dropped, results saved after every benchmark, and a clean stop on SIGINT / SIGTERM."""
    if not asv_args:
        raise SystemExit("mtb asv: give an asv command, e.g. `python3 -m tools.mtb asv run --bench SumAll`")
    config = _config_of(asv_args)
    if not config.is_file():
        raise SystemExit(f"mtb asv: no asv configuration {config}; pass --config PATH")
    conf = load_conf(str(config))
    results_dir = config.resolve().parent / conf.get("results_dir", "results")
    with results_store.guarded(results_dir, guard_folder(config), _log):
        return _asv(asv_args, dict(os.environ), ok_codes=range(256), cwd=Path.cwd())


# ---------------------------------------------------------------------------------------------------
# Source mode (tools/source.py): MLX commits built from source
# ---------------------------------------------------------------------------------------------------
# the configuration mtb writes for MLX's source runs (beside it, the guard's copies)
SOURCE_CONFIG = Path(".asv") / "source" / "mlx" / "asv.conf.json"


@dataclasses.dataclass(frozen=True)
class SourcePlan:
    repo: Path
    config: Path
    build: source_tool.Build
    env: dict[str, str]


def source_plan(args: argparse.Namespace) -> SourcePlan:
    """Everything a source run or bisection needs that can be checked before anything runs."""
    try:
        backends = list(settings.read("MTB_BACKENDS", {"MTB_BACKENDS": args.backends}))
    except settings.SettingError as exc:
        raise SystemExit(f"mtb: error: --backends: {exc}") from None
    cache = settings.read("MTB_SOURCE_CACHE")
    try:
        repo = source_tool.resolve_repo(args.mlx_repo, cache, "mlx", "--mlx-repo")
        mirror = source_tool.check_mirror(args.deps_mirror)
    except source_tool.SourceError as exc:
        raise SystemExit(f"mtb: error: {exc}") from None
    build = source_tool.Build(
        "mlx",
        cache=cache,
        cmake_args=source_tool.MLX_CMAKE_ARGS,
        deps_mirror=mirror,
        isolation=not args.no_build_isolation,
        rebuild_failed=args.rebuild_failed,
    )
    env = tl.installer_env(dict(os.environ, MTB_PROFILE=args.profile, MTB_BACKENDS=",".join(backends)))
    return SourcePlan(repo, ROOT / SOURCE_CONFIG, build, env)


def _source_runner(env: dict[str, str]) -> Callable[[list[str]], int]:
    # asv exits 1 when a commit could not be built and 2 when a benchmark failed: both are recorded
    return lambda asv_args: _asv(asv_args, env, ok_codes=(0, 1, 2))


def _write_source_config(plan: SourcePlan, repo: Path) -> None:
    source_tool.write_config(source_tool.mlx_config(str(repo), plan.build, ROOT), plan.config)


def source_job(args: argparse.Namespace) -> int:
    """MLX commits of a range, each built from source by our step, measured by asv."""
    check_profile(args.profile)
    check_bench(args.bench)
    plan = source_plan(args)
    try:
        commits = source_tool.commits_in_range(plan.repo, args.range)
        source_tool.check_toolchain(plan.repo, commits)
        declared = source_tool.discover(ROOT / "benchmarks", plan.env)
        selected = source_tool.select(args.bench, declared)
    except source_tool.SourceError as exc:
        raise SystemExit(f"mtb: error: {exc}") from None
    _log(
        f"{len(commits)} commit(s) of {plan.repo}, {len(selected)} benchmarks; "
        f"builds cached in {plan.build.records()}"
    )
    _write_source_config(plan, plan.repo)
    runner = _source_runner(plan.env)
    source_tool.ensure_machine(runner, plan.config, args.machine, Path.home())
    started = time.monotonic()
    source_tool.run_commits(runner, plan.config, commits, args.bench, _log, machine=args.machine)
    subjects = {c: source_tool.subject(plan.repo, c) for c in commits}
    print(source_tool.build_summary(plan.build.records(), commits, subjects))
    conf = load_conf(str(plan.config))
    points = [{"commit": c, "tag": c[:12]} for c in commits]
    summary = results_store.summary(Path(conf["results_dir"]), points, set(selected), args.machine)
    reasons = results_store.skip_reasons(plan.config.parent / "facts", commits, args.machine)
    print(results_store.format_summary(summary, [], reasons))
    _log(f"done in {time.monotonic() - started:.0f} s; results in {conf['results_dir']}")
    return 1 if any(row.failed or row.missing for row in summary) else 0


def bisect_job(args: argparse.Namespace) -> int:
    """The commit between --good and --bad at which one benchmark's figure changed."""
    check_profile(args.profile)
    plan = source_plan(args)
    try:
        line = source_tool.bisect_commits(plan.repo, args.good, args.bad)
        source_tool.check_toolchain(plan.repo, line)
        declared = source_tool.discover(ROOT / "benchmarks", plan.env)
        goal = source_tool.target(args.bench, args.params, declared)
    except source_tool.SourceError as exc:
        raise SystemExit(f"mtb: error: {exc}") from None
    _log(f"{goal.describe()} over {len(line)} first-parent commits, {line[0][:12]}..{line[-1][:12]}")
    _write_source_config(plan, plan.repo)
    runner = _source_runner(plan.env)
    source_tool.ensure_machine(runner, plan.config, args.machine, Path.home())
    try:
        found = source_tool.bisect(
            runner, plan.config, plan.repo, line, goal, plan.build.records(), _log, machine=args.machine
        )
    except source_tool.BisectionStopped as exc:
        print(source_tool.format_stopped(exc.found))
        raise SystemExit(f"mtb: error: {exc}") from None
    except source_tool.SourceError as exc:
        raise SystemExit(f"mtb: error: {exc}") from None
    print(source_tool.format_bisection(found))
    # what each built commit cost: the first build and the incremental ones after it
    built = [c for c in line if c in found.figures or c in found.skipped]
    print("builds:\n" + source_tool.build_summary(plan.build.records(), built, found.subjects))
    return 0 if found.isolated and not found.unresolved() else 1


def _source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mlx-repo", required=True, help="MLX's git repository: a clone's path or a URL")
    parser.add_argument("--backends", default="mlx-cpu", help="comma list of the backends measured")
    parser.add_argument("--profile", default=os.environ.get("MTB_PROFILE", "quick"), help="quick or full")
    parser.add_argument(
        "--deps-mirror", type=Path,
        help="folder of <owner>+<repo>/repo git mirrors: CMake's FetchContent takes its sources from there",
    )  # fmt: skip
    parser.add_argument("--machine", help="asv machine name (default: this host's)")
    parser.add_argument(
        "--no-build-isolation", action="store_true",
        help="pip wheel --no-build-isolation: the build requirements already installed in the environment",
    )  # fmt: skip
    parser.add_argument(
        "--rebuild-failed", action="store_true", help="build again commits whose build failed"
    )


def detect_job(args: argparse.Namespace) -> int:
    """Changes along the timeline's points on every machine in the results (or along FILES)."""
    settings_ = detector_settings(args)
    groups: list[tuple[list[Path | None], list[str]]] = []
    if args.files:
        missing = [str(f) for f in args.files if not f.is_file()]
        if missing:
            raise SystemExit(f"mtb detect: no such results file: {', '.join(missing)}")
        names = [f.name for f in args.files]
        unique = len(set(names)) == len(names)
        labels = names if unique else [f"#{i} {f}" for i, f in enumerate(args.files, 1)]
        groups.append((list(args.files), labels))
    else:
        config = ROOT / args.config  # (an absolute path stays itself)
        conf = load_conf(str(config))
        base = config.resolve().parent  # asv reads the paths relative to the configuration
        repo, results_dir = base / conf["repo"], base / conf.get("results_dir", "results")
        if not (repo / tl.POINT_FILE).exists():
            raise SystemExit(f"mtb detect: no timeline at {conf['repo']}; give results files in point order")
        points = tl.read_points(repo)
        for machine in sorted(p for p in results_dir.iterdir() if p.is_dir()) if results_dir.is_dir() else []:
            files = [results_store.point_file(results_dir, p["commit"], machine.name) for p in points]
            groups.append((files, [p["tag"] for p in points]))
    found: list[detect_tool.Change] = []
    for files, labels in groups:
        try:
            series = detect_tool.series_from(files)
        except detect_tool.DetectError as exc:
            raise SystemExit(f"mtb detect: {exc}") from None
        changes = detect_tool.detect(series, labels, settings_)
        print(detect_tool.format_changes(changes, detect_tool.comparisons(series)))
        found.extend(changes)
    if args.json:
        args.json.write_text(json.dumps([c.as_json() for c in found], indent=1))
        _log(f"wrote {args.json}")
    return 0


def find_job(args: argparse.Namespace) -> int:
    """``asv find FROM..TO BENCHMARK`` with the points named by their tags, checked before asv starts."""
    config = ROOT / args.config
    if not config.is_file():
        raise SystemExit(f"mtb find: no asv configuration {args.config}; pass --config PATH")
    conf = load_conf(str(config))
    repo = config.resolve().parent / conf["repo"]
    if not (repo / tl.POINT_FILE).exists():
        raise SystemExit(f"mtb find: no timeline at {conf['repo']}; `python3 -m tools.mtb main` builds it")
    tags = [p["tag"] for p in tl.read_points(repo)]
    start, end = args.start or tags[0], args.end or tags[-1]
    for name, tag in (("--from", start), ("--to", end)):
        if tag not in tags:
            raise SystemExit(f"mtb find: {name} {tag!r} is not a point of the timeline ({', '.join(tags)})")
    if tags.index(start) >= tags.index(end):
        raise SystemExit(f"mtb find: --from {start} must come before --to {end} ({', '.join(tags)})")
    try:
        re.compile(args.benchmark)
    except re.error as exc:
        raise SystemExit(f"mtb find: {args.benchmark!r} is not a regular expression: {exc}") from None
    matches = selected_benchmarks(args.benchmark, dict(os.environ))
    if len(matches) != 1:
        shown = ", ".join(matches[:4]) + (" ..." if len(matches) > 4 else "")
        raise SystemExit(
            f"mtb find: {args.benchmark!r} matches {len(matches)} benchmarks ({shown or 'none'}); "
            "asv find needs exactly one, e.g. '^ops.reductions.SumAll.time_forward$'"
        )
    command = [
        "find",
        "--config",
        str(config),
        "--launch-method",
        "forkserver",
        f"{start}..{end}",
        matches[0],
    ]
    if args.improvement:
        command.insert(1, "--invert")
    results_dir = config.resolve().parent / conf.get("results_dir", "results")
    with results_store.guarded(results_dir, guard_folder(config), _log):
        return _asv(command, tl.installer_env(dict(os.environ)))


def report_job(args: argparse.Namespace) -> int:
    config = ROOT / args.config
    if not config.is_file():
        raise SystemExit(f"mtb report: no asv configuration {args.config}; pass --config PATH")
    try:
        report = report_tool.build(config, ROOT / args.triage, detector_settings(args))
    except (detect_tool.DetectError, triage.TriageError) as exc:
        raise SystemExit(f"mtb report: {exc}") from None
    for problem in report.problems:
        _log(f"problem: {problem}")
    if args.site:
        conf = load_conf(str(config))
        html = config.resolve().parent / conf.get("html_dir", "html")
        pages = report_tool.write_site(report, html, config.resolve().parent / "facts")
        site.link_our_pages(html)
        _log(f"wrote {pages}")
    markdown = report_tool.to_markdown(report)
    if args.markdown:
        args.markdown.write_text(markdown)
        _log(f"wrote {args.markdown}")
    else:
        print(markdown)
    if args.json:
        args.json.write_text(json.dumps(report.as_json(), indent=1))
        _log(f"wrote {args.json}")
    untriaged = report.untriaged_regressions()
    if args.fail_on_untriaged and untriaged:
        _log(f"exit status 1: {len(untriaged)} regression(s) in no entry of {args.triage}")
        return 1
    return 0


def error_rates_job(args: argparse.Namespace) -> int:
    """Build and run the error-rate timeline (A, A, planted) under --out, then sort the detector's flags."""
    settings_ = detector_settings(args)
    out = (ROOT / args.out).resolve()
    config = out / "asv.conf.json"
    if not args.no_run:
        check_profile(args.profile)
        idle = error_rates.plant_wheel(error_rates.IDLE_VERSION, {}, out / "wheels")
        plan = {name: factor for name, (factor, _) in error_rates.DEFAULT_PLAN.items()}
        planted = error_rates.plant_wheel(error_rates.PLANTED_VERSION, plan, out / "wheels")
        pins = error_rates.default_pins(tl.Companions(mlx=args.mlx))
        points = error_rates.points(pins, idle, planted)
        try:
            tl.build_repo(points, out / "timeline", progress=lambda m: _log(m))
        except tl.TimelineError as exc:
            raise SystemExit(f"mtb error-rates: {exc}") from None
        default = load_conf(str(ROOT / "asv.conf.json"))
        error_rates.write_config(default, out, ROOT)
        main_job(args.profile, args.backends, args.bench, str(config), "main", publish=False)
    if not config.is_file():
        raise SystemExit(f"mtb error-rates: nothing measured in {out} yet; run without --no-run")
    conf = load_conf(str(config))
    results_dir, points = Path(conf["results_dir"]), tl.read_points(Path(conf["repo"]))
    machines = sorted(p.name for p in results_dir.iterdir() if p.is_dir()) if results_dir.is_dir() else []
    report = {}
    for machine in machines:
        files = [results_store.point_file(results_dir, p["commit"], machine) for p in points]
        try:
            series = detect_tool.series_from(files)
        except detect_tool.DetectError as exc:
            raise SystemExit(f"mtb error-rates: {exc}") from None
        labels = [p["tag"] for p in points]
        report[machine] = {}
        print(f"machine {machine}:")
        for what, members in (("timings", series), ("MLX/torch ratios", ratios.ratio_series(series))):
            rates = error_rates.evaluate(members, detect_tool.detect(members, labels, settings_))
            print(error_rates.format_rates(rates, what))
            report[machine][what] = rates.as_json()
    if args.json:
        found = {"settings": dataclasses.asdict(settings_), "machines": report}
        args.json.write_text(json.dumps(found, indent=1))
        _log(f"wrote {args.json}")
    return 0


def check_settings() -> None:
    """Every MTB_* variable, before anything starts (benchmarks/harness/settings.py)."""
    problems = settings.problems()
    if problems:
        raise SystemExit("\n".join(f"mtb: {p}" for p in problems))


def main(argv: Sequence[str] | None = None) -> int:
    """The command line, with SIGINT and SIGTERM turned into a clean stop (exit 130 / 143)."""
    global _stopping
    _stopping = False
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return run_command(build_parser().parse_args(argv))
    except Stopped as stop:
        print(
            f"[mtb] stopped by {stop}: every benchmark that finished is kept, nothing else is left running",
            file=sys.stderr,
            flush=True,
        )
        return 128 + stop.signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_command(args: argparse.Namespace) -> int:
    check_settings()
    if args.command in ("fidelity", "job", "probe") and BUNDLE_SITE.is_dir():
        # on a host where `mtb gpu` installed a bundle, these run the suite with what it installed
        try:
            use_bundle_site(BUNDLE_SITE)
        except bundle.BundleError as exc:
            raise SystemExit(f"mtb {args.command}: {exc}") from None
    if args.command in ("main", "timeline") and shutil.which("git") is None:
        raise SystemExit("mtb: asv and the timelines need git on PATH")
    if args.command == "main":
        conf = load_conf(str(ROOT / args.config))
        check_run_inputs(args, conf)
        if not args.no_timeline:
            build_timeline(args)
        return main_job(args.profile, args.backends, args.bench, args.config, args.commits)
    elif args.command == "asv":
        return guarded_asv(args.asv_args)
    elif args.command == "source":
        return source_job(args)
    elif args.command == "bisect":
        return bisect_job(args)
    elif args.command == "detect":
        return detect_job(args)
    elif args.command == "report":
        return report_job(args)
    elif args.command == "find":
        return find_job(args)
    elif args.command == "publish":
        config = ROOT / args.config
        if not config.is_file():
            raise SystemExit(f"mtb publish: no asv configuration {args.config}; pass --config PATH")
        return 0 if publish_site(config, dict(os.environ)) else 1
    elif args.command == "error-rates":
        return error_rates_job(args)
    elif args.command == "adopt":
        return cmd_adopt(args)
    elif args.command == "job":
        return job_command(args)
    elif args.command == "bundle":
        return bundle_job(args)
    elif args.command == "gpu":
        return gpu_job(args)
    elif args.command == "timeline":
        build_timeline(args)
    elif args.command == "probe":
        for name, reason in probe_backends().items():
            print(f"{name:18s} {'available' if reason is None else reason}")
    elif args.command == "spread":
        try:
            from tools import spread as spread_tool

            report = spread_tool.compare_files(args.first, args.second, min_seconds=args.min_ms / 1e3)
        except spread_tool.SpreadError as exc:
            raise SystemExit(f"mtb spread: {exc}") from None
        print(spread_tool.format_report(report, worst=args.worst))
    elif args.command == "fidelity":
        return fidelity_job(args)
    elif args.command == "screen":
        return screen_job(args)
    return 0


def screen_job(args: argparse.Namespace) -> int:
    """Op cases timed on several MLX versions in lockstep; the steps between consecutive versions."""
    from tools import screen

    check_profile(args.profile)
    if args.rounds < 2:
        raise SystemExit(
            "mtb screen: --rounds must be 2 or more (a step must point the same way in every round)"
        )
    if not 0 < args.threshold < 10:
        raise SystemExit("mtb screen: --threshold is a fraction such as 0.15 (15%)")
    cache = Path(settings.read("MTB_SOURCE_CACHE")) / "releases"
    if args.json and not args.json.parent.is_dir():
        raise SystemExit(
            f"mtb screen: --json {args.json}: no folder {args.json.parent}; make it or give another"
        )
    try:
        cases = screen.screen_cases(args.ops, args.profile)
        versions = screen.resolve_versions([v.strip() for v in args.mlx.split(",") if v.strip()], cache, _log)
        _log(f"{len(cases)} case(s) x {len(versions)} versions x {args.rounds} rounds")
        times = screen.measure(versions, cases, args.rounds, args.profile, _log)
    except screen.ScreenError as exc:
        raise SystemExit(f"mtb screen: {exc}") from None
    labels = [v.label for v in versions]
    found = screen.steps(times, labels, args.threshold)
    print(screen.format_screen(found, len(cases), labels, args.threshold))
    if args.json:
        args.json.write_text(json.dumps({
            "versions": labels, "profile": args.profile, "times": times,
            "steps": [dataclasses.asdict(s) for s in found],
        }, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
