"""A small real results directory for the report and site tests: three points of the error-rate timeline
(aa-1, aa-2 and planted, where softmax was slowed 1.25x, sort 1.5x, argmax 2x on mlx-cpu) recorded on
the 2-core VM, trimmed to a few op benchmarks (tests/data/site/README.md says how)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

from asv import util as asv_util

from tools import error_rates
from tools import timeline as tl

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "site"


def make(folder: Path) -> Path:
    """The timeline rebuilt from its points (the same commits as recorded), the results copied, and an
    asv configuration pointing at both; returns the configuration's path."""
    points = [
        tl.Point(p["tag"], p["pins"], dt.datetime.fromisoformat(p["date"]), tuple(p.get("notes", ())))
        for p in json.loads((DATA / "points.json").read_text())
    ]
    hashes = tl.build_repo(points, folder / "timeline", progress=lambda message: None)
    shutil.copytree(DATA / "results", folder / "results")
    shutil.copytree(DATA / "facts", folder / "facts")
    recorded = {p.name.split("-")[0] for p in (folder / "results" / "vm").glob("*-*.json")}
    assert recorded == {h[:8] for h in hashes}, "the rebuilt timeline must have the recorded commits"
    default = asv_util.load_json(str(ROOT / "asv.conf.json"), js_comments=True)
    return error_rates.write_config(default, folder, ROOT)
