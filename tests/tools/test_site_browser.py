"""The published site in a real browser: asv's pages and ours, offline (every host but this machine
unreachable), without console errors; graphs drawn, our plots loaded; screenshots kept in
docs/screenshots/ (git-ignored) for a person to look at."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.tools import browser, site_data
from tools import mtb

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    reason = browser.ensure_chromium()
    if reason:
        pytest.skip(reason)
    config = site_data.make(tmp_path_factory.mktemp("site"))
    assert mtb.publish_site(config, dict(os.environ))
    return config.parent / "html"


def _wait(session, script: str, seconds: float = 20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = session.execute_script(script)
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not true within {seconds} s: {script}")


def _errors(session) -> list[dict]:
    return [e for e in session.get_log("browser") if e["level"] == "SEVERE"]


def test_asv_pages_draw_their_graphs_offline_and_link_to_ours(html):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with browser.serve(html) as base, browser.chromium() as session:
        session.get(f"{base}/index.html")
        assert _wait(session, "return document.querySelectorAll('.benchmark-plot').length") > 0
        assert _errors(session) == []
        session.get(f"{base}/index.html#ops.normalization.Softmax.time_forward")
        assert _wait(session, "return document.querySelectorAll('canvas.flot-base').length") > 0
        session.save_screenshot(str(SCREENSHOTS / "asv-softmax.png"))
        assert _errors(session) == []
        href = session.execute_script("return document.querySelector('#nav-li-mtb a').href")
        assert href == f"{base}/mtb/index.html"


def test_our_pages_render_with_their_plots_offline(html):
    with browser.serve(html) as base, browser.chromium() as session:
        for page, heading in (
            ("index.html", "Changes along the timeline"),
            ("ratios.html", "Where MLX stands against torch"),
            ("triage.html", "Triage"),
            ("facts.html", "Run facts"),
        ):
            session.get(f"{base}/mtb/{page}")
            assert session.execute_script("return document.querySelector('h1').textContent") == heading
            _wait(session, "return Array.from(document.images).every(i => i.complete)")
            widths = session.execute_script("return Array.from(document.images).map(i => i.naturalWidth)")
            assert all(w > 0 for w in widths), f"{page}: an image did not load"
            if page in ("index.html", "ratios.html"):
                assert widths, f"{page} shows plots"
            assert _errors(session) == [], page
            session.save_screenshot(str(SCREENSHOTS / f"mtb-{page.removesuffix('.html')}.png"))
        session.get(f"{base}/mtb/index.html")
        text = session.execute_script("return document.body.textContent")
        assert "planted regression" in text and "ops.normalization.Softmax.time_forward" in text
