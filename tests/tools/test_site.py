"""The published site is made to work offline: CDN files become local copies."""

from __future__ import annotations

from pathlib import Path

from tools.site import ASSETS, vendor_site

JQUERY = "https://code.jquery.com/jquery-3.3.1.min.js"
BOOTSTRAP_CSS = "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css"


def _fake_fetch(spec: str, cache: Path) -> Path:
    root = cache / spec / "package"
    for asset in ASSETS.values():
        if asset.package == spec:
            (root / asset.path).parent.mkdir(parents=True, exist_ok=True)
            (root / asset.path).write_text(f"/* {spec} {asset.path} */")
            for folder in asset.extra_dirs:
                (root / folder).mkdir(parents=True, exist_ok=True)
                (root / folder / "glyphs.woff").write_text("font")
    return root


def test_pages_point_at_vendored_copies(tmp_path):
    html = tmp_path / "html"
    html.mkdir()
    unknown = "https://cdn.jsdelivr.net/npm/left-pad@1.0.0/index.js"
    page = (
        f'<script src="{JQUERY}" integrity="sha256-abc" crossorigin="anonymous" onerror="f()"></script>'
        f'<link rel="stylesheet" href="{BOOTSTRAP_CSS}">'
        f'<script src="{unknown}" integrity="sha256-x"></script>'
    )
    (html / "index.html").write_text(page)
    (html / "error.html").write_text(f'<script src="{JQUERY}"></script>')
    missing = vendor_site(html, tmp_path / "cache", fetch=_fake_fetch)
    text = (html / "index.html").read_text()
    assert (
        JQUERY not in text and '<script src="vendor/jquery@3.3.1/dist/jquery.min.js" onerror="f()">' in text
    )
    assert 'integrity="sha256-x"' in text, "tags left external keep their integrity hash"
    assert 'href="vendor/bootstrap@3.1.1/dist/css/bootstrap.min.css"' in text
    assert (html / "vendor/bootstrap@3.1.1/dist/fonts/glyphs.woff").exists(), "the css's fonts come along"
    assert "jquery-3.3.1" not in (html / "error.html").read_text()
    assert missing == [unknown], "what cannot be vendored is reported, not silently left"


def test_every_cdn_file_of_asv_publish_is_covered():
    import asv

    from tools.site import EXTERNAL

    template = Path(asv.__file__).parent / "www" / "index.html"

    urls = set(EXTERNAL.findall(template.read_text()))
    assert urls and urls <= set(ASSETS), urls - set(ASSETS)
