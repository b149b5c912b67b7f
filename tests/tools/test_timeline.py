"""The timeline tool builds the repository asv runs over: one commit per release point."""

from __future__ import annotations

import datetime as dt
import json
import subprocess

import pytest

from tools import timeline as tl

UTC = dt.UTC
LM_MINIMUMS = {"0.26.4": "0.26.0", "0.28.0": "0.29.1", "0.31.3": "0.31.2", "0.32.2": "0.32.2"}


def _git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def test_mlx_timeline_repository_has_one_tagged_commit_per_release(tmp_path):
    companions = tl.Companions(torch="2.13.0", numpy="2.4.6", linux=True, mlx_lm_minimums=LM_MINIMUMS)
    dates = {"0.30.0": dt.datetime(2025, 11, 1, tzinfo=UTC), "0.32.4": dt.datetime(2026, 10, 14, tzinfo=UTC)}
    points = tl.mlx_timeline(["0.29.4", "0.30.0", "0.32.4"], companions, dates)
    messages = []
    hashes = tl.build_repo(points, tmp_path / "t", progress=messages.append)

    assert _git(tmp_path / "t", "tag").split() == ["mlx-0.29.4", "mlx-0.30.0", "mlx-0.32.4"]
    log = _git(tmp_path / "t", "log", "--reverse", "--format=%H %s %aI").splitlines()
    assert [line.split()[0] for line in log] == hashes
    assert [line.split()[1] for line in log] == ["mlx-0.29.4", "mlx-0.30.0", "mlx-0.32.4"]
    assert log[1].split()[2].startswith("2025-11-01") and log[2].split()[2].startswith("2026-10-14")
    assert log[0].split()[2] < log[1].split()[2], "an undated release is kept in version order"
    pins = _git(tmp_path / "t", "show", f"{hashes[0]}:{tl.PINS_FILE}").splitlines()
    assert pins == [
        "mlx==0.29.4",
        "mlx-cpu==0.29.4",
        "mlx-lm==0.28.0",
        "torch==2.13.0",
        "numpy==2.4.6",
        "transformers==5.23.0",
        "mlx-whisper==0.4.3",
    ]
    assert "mlx-lm==0.32.2" in _git(tmp_path / "t", "show", f"{hashes[2]}:{tl.PINS_FILE}")
    assert "point 3/3 mlx-0.32.4 (0 left" in messages[-1]
    assert [p["tag"] for p in tl.read_points(tmp_path / "t")] == ["mlx-0.29.4", "mlx-0.30.0", "mlx-0.32.4"]


def test_rebuilding_with_a_newer_release_keeps_the_earlier_hashes(tmp_path):
    companions = tl.Companions(linux=True)
    first = tl.build_repo(tl.mlx_timeline(["0.31.0", "0.31.2"], companions, {}), tmp_path / "t", print)
    again = tl.build_repo(
        tl.mlx_timeline(["0.31.0", "0.31.2", "0.32.0"], companions, {}), tmp_path / "t", print
    )
    assert again[:2] == first, "asv results are keyed by commit: appending must not move them"


def test_torch_and_combined_timelines_hold_the_other_framework(tmp_path):
    companions = tl.Companions(mlx="0.32.4", linux=False)
    torch_points = tl.torch_timeline(["2.11.0", "2.12.0"], companions, {})
    assert [p.pins["mlx"] for p in torch_points] == ["0.32.4", "0.32.4"]
    assert [p.pins["torch"] for p in torch_points] == ["2.11.0", "2.12.0"]
    assert "mlx-cpu" not in torch_points[0].pins  # macOS: MLX is one package
    mlx_dates = {"0.31.0": dt.datetime(2026, 3, 1, tzinfo=UTC), "0.32.0": dt.datetime(2026, 7, 1, tzinfo=UTC)}
    torch_dates = {
        "2.11.0": dt.datetime(2026, 1, 1, tzinfo=UTC),
        "2.12.0": dt.datetime(2026, 5, 1, tzinfo=UTC),
    }
    both = tl.combined_timeline(
        ["0.31.0", "0.32.0"], ["2.11.0", "2.12.0"], companions, mlx_dates, torch_dates
    )
    assert [p.tag for p in both] == ["torch-2.11.0", "mlx-0.31.0", "torch-2.12.0", "mlx-0.32.0"]
    assert [(p.pins["mlx"], p.pins["torch"]) for p in both] == [
        ("0.31.0", "2.11.0"),
        ("0.31.0", "2.11.0"),
        ("0.31.0", "2.12.0"),
        ("0.32.0", "2.12.0"),
    ]


def test_mlx_lm_rule_picks_the_newest_release_written_for_that_mlx():
    assert tl.mlx_lm_for("0.26.5", LM_MINIMUMS) == "0.26.4"
    assert tl.mlx_lm_for("0.29.4", LM_MINIMUMS) == "0.28.0"
    assert tl.mlx_lm_for("0.31.2", LM_MINIMUMS) == "0.31.3"
    assert tl.mlx_lm_for("0.32.4", LM_MINIMUMS) == "0.32.2"
    assert tl.mlx_lm_for("0.25.0", LM_MINIMUMS) is None
    point = tl.mlx_timeline(["0.25.2"], tl.Companions(linux=True, mlx_lm_minimums=LM_MINIMUMS), {})[0]
    assert "mlx-lm" not in point.pins and "no mlx-lm release" in point.notes[0]


def test_selection_filters_and_names_an_empty_result():
    available = ["0.30.0", "0.31.0", "0.31.2", "0.32.0", "0.32.4", "not-a-version"]
    assert tl.Selection(last=2).apply("mlx", available) == ["0.32.0", "0.32.4"]
    assert tl.Selection(range=">=0.31,<0.32").apply("mlx", available) == ["0.31.0", "0.31.2"]
    assert tl.Selection(only=("0.31.2", "0.30.0")).apply("mlx", available) == ["0.30.0", "0.31.2"]
    with pytest.raises(tl.TimelineError, match=r"mlx 9\.9\.9 is not a release in the registry"):
        tl.Selection(only=("9.9.9",)).apply("mlx", available)  # before an existing timeline is replaced
    with pytest.raises(tl.TimelineError, match=r"no mlx release is left after the filter \(range '>=1.0'\)"):
        tl.Selection(range=">=1.0").apply("mlx", available)
    with pytest.raises(tl.TimelineError, match="is not a version specifier"):
        tl.Selection(range="newest").apply("mlx", available)


def test_build_refuses_a_folder_that_is_not_a_timeline(tmp_path):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep me")
    with pytest.raises(tl.TimelineError, match="is not a timeline"):
        tl.build_repo(tl.mlx_timeline(["0.32.4"], tl.Companions(), {}), tmp_path / "precious", print)
    assert (tmp_path / "precious" / "notes.txt").exists()


def test_point_file_records_the_pins(tmp_path):
    tl.build_repo(tl.mlx_timeline(["0.32.4"], tl.Companions(linux=True), {}), tmp_path / "t", print)
    point = json.loads((tmp_path / "t" / tl.POINT_FILE).read_text())
    assert point["tag"] == "mlx-0.32.4" and point["pins"]["mlx-cpu"] == "0.32.4"


def test_release_dates_come_from_the_index_pip_uses_and_no_dates_is_one_line(capsys):
    import http.server
    import threading

    files = [
        {
            "filename": "mlx_cpu-0.26.5-py3-none-any.whl",
            "upload-time": "2025-07-18T22:33:52Z",
        },
        {"filename": "mlx_cpu-0.26.5.tar.gz", "upload-time": "2025-07-18T22:30:00Z"},
        {
            "filename": "mlx_cpu-0.27.1-py3-none-any.whl",
            "upload-time": "2025-07-25T23:00:55Z",
        },
    ]
    asked = []

    class Index(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append((self.path, self.headers.get("Accept")))
            body = json.dumps({"meta": {"api-version": "1.1"}, "files": files}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dates = tl.release_dates("mlx-cpu", index=f"http://127.0.0.1:{server.server_port}/simple")
    finally:
        server.shutdown()
    assert asked == [("/simple/mlx-cpu/", "application/vnd.pypi.simple.v1+json")]
    assert {v: d.isoformat() for v, d in dates.items()} == {
        "0.26.5": "2025-07-18T22:30:00+00:00",  # the release's first file
        "0.27.1": "2025-07-25T23:00:55+00:00",
    }
    assert tl.release_dates("mlx-cpu", index="http://127.0.0.1:9", timeout=2) == {}
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("[timeline] no release dates for mlx-cpu from http://127.0.0.1:9")


def test_the_index_is_pips_own(monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example.invalid/simple/")
    assert tl.pip_index_url() == "https://mirror.example.invalid/simple"
