"""Bad input to mtb gets one line naming the problem and the fix, before anything runs; exit statuses a
CI can trust; a failed publish never deletes the site."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.harness import settings
from tools import mtb, site
from tools import results as store
from tools import timeline as tl

ROOT = Path(__file__).resolve().parents[2]


def _mtb(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MTB_")}
    return subprocess.run(
        [sys.executable, "-m", "tools.mtb", *args], cwd=ROOT, env={**clean, **env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"MTB_THREADS": "abc"}, "mtb: MTB_THREADS='abc' must be a whole number of CPU threads"),
        ({"MTB_FLOAT32_MATMUL": "fp8"}, "mtb: MTB_FLOAT32_MATMUL='fp8' is not one of ieee, tf32"),
        ({"MTB_BACKENDS": "bogus-gpu"}, "mtb: MTB_BACKENDS='bogus-gpu' names unknown backend(s) bogus-gpu"),
        ({"MTB_BACKEND": "mlx-cpu"}, "mtb: MTB_BACKEND is not a setting of this suite (a typo?)"),
    ],
)
def test_a_bad_setting_stops_mtb_main_before_anything_runs(env, line):
    out = _mtb("main", "--no-timeline", **env)
    assert out.returncode == 1
    (only,) = out.stderr.strip().splitlines()
    assert only.startswith(line)
    assert "$ asv" not in out.stdout, "nothing was started"


def test_no_timeline_without_a_timeline_says_how_to_make_one(tmp_path):
    config = tmp_path / "asv.conf.json"
    config.write_text(json.dumps({"version": 1, "repo": str(tmp_path / "nowhere")}))
    out = _mtb("main", "--no-timeline", "--config", str(config))
    assert out.returncode == 1
    (only,) = out.stderr.strip().splitlines()
    assert "there is no timeline at" in only and "run without --no-timeline once" in only


def test_an_unknown_backend_flag_is_one_line():
    with pytest.raises(
        SystemExit, match=r"mtb: --backends: MTB_BACKENDS='mlx-cpu,tpu' names unknown backend"
    ):
        mtb.resolve_backends("mlx-cpu,tpu")
    assert mtb.resolve_backends("all") == list(settings.BACKEND_NAMES)


def test_counts_of_releases_must_be_positive():
    for bad in ("0", "-1", "two"):
        out = _mtb("timeline", "--mlx-last", bad)
        assert out.returncode == 2
        assert f"argument --mlx-last: {bad!r} is not a whole number of 1 or more" in out.stderr
    with pytest.raises(tl.TimelineError, match="give 1 or more"):
        tl.Selection(last=0).apply("mlx", ["0.31.2"])


def test_an_unknown_release_stops_before_the_timeline_is_written():
    with pytest.raises(tl.TimelineError, match=r"mlx 9\.9\.9 is not a release in the registry; the newest"):
        tl.Selection(only=("9.9.9",)).apply("mlx", ["0.31.2", "0.32.4"])


def test_bench_that_is_no_regular_expression_or_matches_nothing(tmp_path):
    config = tmp_path / "asv.conf.json"
    config.write_text(json.dumps({"version": 1, "repo": "."}))
    out = _mtb("main", "--no-timeline", "--bench", "ops.(", "--config", str(config))
    assert out.returncode == 1 and "--bench 'ops.(' is not a regular expression" in out.stderr
    env = {"MTB_PROFILE": "quick", "MTB_BACKENDS": "mlx-cpu,torch-cpu"}
    assert mtb.selected_benchmarks("no-such-benchmark", env) == []
    names = mtb.selected_benchmarks(r"ops\.reductions\.SumAll", env)
    assert "ops.reductions.SumAll.time_forward" in names and all("SumAll" in n for n in names)


def test_help_shows_the_defaults():
    out = _mtb("main", "--help")
    assert "(default: >=0.32.2)" in out.stdout and "(default: quick)" in out.stdout
    assert "(default: None)" not in out.stdout


def test_a_failed_publish_leaves_the_site_and_a_good_one_keeps_tracked_files(tmp_path):
    html = tmp_path / "html"
    html.mkdir()
    (html / "index.html").write_text("old site")
    (html / "README.md").write_text("kept in git")
    said: list[str] = []

    def failing(args):
        raise SystemExit("mtb: `asv publish` failed with exit status 1")

    with pytest.raises(SystemExit):
        site.publish(failing, html, said.append)
    assert (html / "index.html").read_text() == "old site"
    assert any("left as it was" in m for m in said)

    def working(args):
        out = Path(args[args.index("--html-dir") + 1])
        out.mkdir()
        (out / "index.html").write_text("new site")
        return 0

    site.publish(working, html, said.append)
    assert (html / "index.html").read_text() == "new site"
    assert (html / "README.md").read_text() == "kept in git"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["html"], "no temporary folder left"


def test_summary_counts_ran_skipped_failed(tmp_path):
    columns = ["result", "params", "version"]
    (tmp_path / "vm").mkdir()
    data = {
        "commit_hash": "abcdef0123",
        "result_columns": columns,
        "results": {"a.x": [[1.0, float("nan"), None], [["'m'", "'t'", "'c'"]], "v"]},
    }
    (tmp_path / "vm" / "abcdef01-env.json").write_text(json.dumps(data))
    rows = store.summary(tmp_path, [{"tag": "mlx-0.32.4", "commit": "abcdef0123"}], {"a.x", "a.y"})
    assert rows == [store.PointSummary("mlx-0.32.4", ran=1, skipped=1, failed=1, missing=1)]
    facts = tmp_path / "facts" / "host"
    facts.mkdir(parents=True)
    entry = {"benchmark": "X", "params": ["t"], "reason": "torch-cuda: no CUDA device"}
    (facts / "abcdef01-env.skips.jsonl").write_text(json.dumps(entry) + "\n" + json.dumps(entry) + "\n")
    reasons = store.skip_reasons(tmp_path / "facts", ["abcdef0123"])
    assert reasons == {"torch-cuda: no CUDA device": 1}, "one entry per benchmark, parameters and point"
    text = store.format_summary(rows, [], reasons)
    assert "mlx-0.32.4" in text and "skipped    1 x  torch-cuda: no CUDA device" in text


def test_spread_on_a_truncated_results_file_is_one_line(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"commit_hash": "abc", "results": {')
    out = _mtb("spread", str(broken), str(broken))
    assert out.returncode == 1
    (only,) = out.stderr.strip().splitlines()
    assert only.startswith(f"mtb spread: {broken} cannot be read as asv results")


def test_progress_counts_the_benchmarks_a_point_has_saved(tmp_path, capsys):
    (tmp_path / "vm").mkdir()
    now_ms = 1_000_000_000_000
    data = {
        "commit_hash": "abcdef0123",
        "result_columns": ["result", "params", "version", "started_at"],
        "results": {"a": [[1.0], [], "v", now_ms - 5000], "b": [[1.0], [], "v", now_ms + 1000]},
    }
    (tmp_path / "vm" / "abcdef01-env.json").write_text(json.dumps(data))
    assert store.finished_since(tmp_path, "abcdef0123", now_ms / 1000) == 1, "only b is of this run"
    assert store.finished_since(tmp_path, "0000000000", 0) == 0
    mtb.point_progress(tmp_path, "abcdef0123", total=4)()
    assert "/4 benchmarks done at this point" in capsys.readouterr().out


def _timeline_config(tmp_path: Path) -> Path:
    """A three-point timeline (nothing installed or run) and a configuration naming it."""
    start = tl.EPOCH
    points = [
        tl.Point(tag, {"mlx": "0.32.4"}, start + i * tl.DAY) for i, tag in enumerate(("a-1", "a-2", "a-3"))
    ]
    tl.build_repo(points, tmp_path / "timeline", progress=lambda m: None)
    config = tmp_path / "asv.conf.json"
    config.write_text(
        json.dumps({"version": 1, "repo": str(tmp_path / "timeline"), "results_dir": "results"})
    )
    return config


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--from", "a-9"], "mtb find: --from 'a-9' is not a point of the timeline (a-1, a-2, a-3)"),
        (["--from", "a-3", "--to", "a-1"], "mtb find: --from a-3 must come before --to a-1"),
        (["--bench-typo"], None),
    ],
)
def test_find_names_a_wrong_point_before_asv_starts(tmp_path, args, line):
    config = _timeline_config(tmp_path)
    out = _mtb("find", "SumAll.time_forward$", "--config", str(config), *args)
    assert out.returncode == (2 if line is None else 1)
    if line is not None:
        (only,) = out.stderr.strip().splitlines()
        assert only.startswith(line)
        assert "$ asv" not in out.stdout


def test_find_wants_exactly_one_benchmark(tmp_path):
    config = _timeline_config(tmp_path)
    out = _mtb("find", r"ops\.reductions", "--config", str(config))
    assert out.returncode == 1
    (only,) = out.stderr.strip().splitlines()
    assert "matches 9 benchmarks" in only or "benchmarks (ops.reductions" in only
    assert "asv find needs exactly one" in only
    out = _mtb("find", "(", "--config", str(config))
    assert "is not a regular expression" in out.stderr


def test_report_and_publish_name_a_missing_configuration(tmp_path):
    for command in ("report", "publish", "find"):
        extra = ["X"] if command == "find" else []
        out = _mtb(command, *extra, "--config", str(tmp_path / "none.json"))
        assert out.returncode == 1
        assert f"mtb {command}: no asv configuration" in out.stderr


def test_detector_options_out_of_range_are_one_line(tmp_path):
    out = _mtb("report", "--confidence", "1.5")
    assert out.returncode == 1
    assert out.stderr.strip() == (
        "mtb: --confidence must lie between 0 and 1, --min-effect and --noise-factor 0 or more"
    )


def test_error_rates_without_a_run_says_to_run_it(tmp_path):
    out = _mtb("error-rates", "--no-run", "--out", str(tmp_path / "rates"))
    assert out.returncode == 1
    assert "nothing measured in" in out.stderr and "run without --no-run" in out.stderr


def test_asv_runs_keep_compiler_caches_beyond_their_temporary_folder(monkeypatch, tmp_path):
    """Each asv run's TMPDIR goes with it; inductor's and MLX's kernel caches must not go too."""
    seen: dict[str, str] = {}

    class Done:
        pid = os.getpid()

        def __init__(self, command, cwd, env, start_new_session):
            seen.update(env)

        def wait(self, timeout=None):
            return 0

    monkeypatch.setattr(mtb.subprocess, "Popen", Done)
    monkeypatch.setattr(mtb.os, "killpg", lambda *a: (_ for _ in ()).throw(ProcessLookupError()))
    mtb._asv(["machine", "--yes"], {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "mine")})
    assert seen["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine"), "a user's own folder is kept"
    mtb._asv(["machine", "--yes"], {})
    inductor = Path(seen["TORCHINDUCTOR_CACHE_DIR"])
    assert inductor.name == "inductor" and not inductor.is_relative_to(seen["TMPDIR"])
    assert not Path(seen["TMPDIR"]).exists(), "the run's temporary folder is removed after it"
