"""mtb main walks the timeline one point at a time: progress for each, and a failing point does not
stop the others."""

from __future__ import annotations

from pathlib import Path

from tools import mtb
from tools import timeline as tl


def test_run_points_reports_progress_and_goes_on_past_a_failure(tmp_path, monkeypatch, capsys):
    tl.build_repo(
        tl.mlx_timeline(["0.31.2", "9.9.9", "0.32.4"], tl.Companions(linux=True), {}), tmp_path / "t"
    )
    calls = []

    def fake_asv(args, env, ok_codes=(0,), progress=None):
        assert "--record-samples" in args and "--skip-existing-successful" in args  # samples kept
        hashfile = next(a for a in args if a.startswith("HASHFILE:"))
        commit = Path(hashfile.removeprefix("HASHFILE:")).read_text().strip()
        calls.append(commit)
        return 1 if len(calls) == 2 else 0  # the second point fails to install

    monkeypatch.setattr(mtb, "_asv", fake_asv)
    failed = mtb.run_points("asv.conf.json", {"repo": str(tmp_path / "t")}, {}, None, "main", started=0.0)
    points = tl.read_points(tmp_path / "t")
    assert calls == [p["commit"] for p in points], "every point runs, in order"
    assert failed == ["mlx-9.9.9"]
    out = capsys.readouterr().out
    assert "point 1/3 mlx-0.31.2 (2 left" in out and "point 3/3 mlx-0.32.4 (0 left" in out
    assert "s so far)" in out and "s to go)" in out, "an estimate once a point has run"
