"""The published site: replaced only by a publish that succeeded, and made to work offline.

`asv publish` writes pages that load jQuery, flot, bootstrap and three small plugins from CDNs; on a
machine without internet the pages show only "Can not determine continental origin of swallow".  The same
files are npm packages, and the npm registry is reachable where PyPI is, so after publishing they are
fetched once (``npm pack``, cached), copied under ``html/vendor/`` and the pages are pointed at the copies.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# files under html/ that are kept in git, not written by asv publish
KEPT_IN_HTML = ("README.md",)


@dataclass(frozen=True)
class Asset:
    package: str  # npm name@version
    path: str  # inside the package
    extra_dirs: tuple[str, ...] = ()  # folders the file refers to (bootstrap's fonts)


# CDN address in asv 0.6.6's pages -> the npm file with the same contents.  stupidtable 1.0.1 is not on
# npm; 1.1.3 keeps the one call asv makes (``$(table).stupidtable()``).
ASSETS = {
    "https://code.jquery.com/jquery-3.3.1.min.js": Asset("jquery@3.3.1", "dist/jquery.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.min.js": Asset(
        "flot@0.8.3", "jquery.flot.js"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.time.min.js": Asset(
        "flot@0.8.3", "jquery.flot.time.js"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.selection.min.js": Asset(
        "flot@0.8.3", "jquery.flot.selection.js"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.categories.min.js": Asset(
        "flot@0.8.3", "jquery.flot.categories.js"
    ),
    "https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js": Asset(
        "flot-orderbars@1.0.0", "js/jquery.flot.orderBars.js"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js": Asset(
        "stupid-table-plugin@1.1.3", "stupidtable.min.js"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js": Asset(
        "blueimp-md5@2.19.0", "js/md5.min.js"
    ),
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js": Asset(
        "bootstrap@3.1.1", "dist/js/bootstrap.min.js"
    ),
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css": Asset(
        "bootstrap@3.1.1", "dist/css/bootstrap.min.css", extra_dirs=("dist/fonts",)
    ),
}
TAG = re.compile(r"<(?:script|link)\b[^>]*>")
EXTERNAL = re.compile(
    r'(?:src|href)="(https://(?:code\.jquery\.com|cdnjs\.cloudflare\.com|cdn\.jsdelivr\.net)/[^"]+)"'
)


def npm_package(spec: str, cache: Path) -> Path:
    """The unpacked npm package ``spec`` (name@version), fetched with ``npm pack`` on first use."""
    target = cache / spec.replace("/", "_")
    if (target / "package").is_dir():
        return target / "package"
    target.mkdir(parents=True, exist_ok=True)
    if shutil.which("npm") is None:
        raise FileNotFoundError("npm is not installed")
    out = subprocess.run(
        ["npm", "pack", "--silent", spec], cwd=target, capture_output=True, text=True, check=False
    )
    tarballs = list(target.glob("*.tgz"))
    if out.returncode != 0 or not tarballs:
        raise FileNotFoundError(f"npm pack {spec} failed: {out.stderr.strip()[-300:]}")
    with tarfile.open(tarballs[0]) as tar:
        tar.extractall(target, filter="data")
    return target / "package"


def vendor_site(html: Path, cache: Path, fetch=npm_package) -> list[str]:
    """Point every page of ``html`` at local copies of its CDN files; return what is still external."""
    vendor = html / "vendor"
    replacements: dict[str, str] = {}
    missing: list[str] = []
    pages = sorted(html.glob("*.html"))
    for url in sorted({u for page in pages for u in EXTERNAL.findall(page.read_text())}):
        asset = ASSETS.get(url)
        if asset is None:
            missing.append(url)
            continue
        try:
            package = fetch(asset.package, cache)
        except FileNotFoundError as exc:
            missing.append(f"{url} ({exc})")
            continue
        local = vendor / asset.package / asset.path
        local.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(package / asset.path, local)
        for folder in asset.extra_dirs:
            shutil.copytree(package / folder, vendor / asset.package / folder, dirs_exist_ok=True)
        replacements[url] = local.relative_to(html).as_posix()
    for page in pages:
        page.write_text(TAG.sub(lambda tag: _localise(tag.group(0), replacements), page.read_text()))
    return missing


def _localise(tag: str, replacements: dict[str, str]) -> str:
    """One <script>/<link> tag pointed at its local copy.  Its integrity hash goes: it pins the CDN's
    bytes, and some npm files are the unminified form of the same release."""
    for url, local in replacements.items():
        if f'"{url}"' in tag:
            tag = tag.replace(f'"{url}"', f'"{local}"')
            return re.sub(r'\s+(?:integrity|crossorigin|referrerpolicy)="[^"]*"', "", tag)
    return tag


def publish(run_asv: Callable[[list[str]], int], html: Path, log: Callable[[str], None]) -> None:
    """``asv publish`` into a folder beside ``html`` and swap it in only when it succeeded, so a failed
    publish (an empty results folder, say) never deletes the site there was; files kept in git under
    ``html/`` (its README) are carried over, since asv empties the folder it writes."""
    fresh = html.with_name(f".{html.name}-publishing")
    previous = html.with_name(f".{html.name}-previous")
    for leftover in (fresh, previous):
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        run_asv(["publish", "--html-dir", str(fresh)])
    except SystemExit:
        shutil.rmtree(fresh, ignore_errors=True)
        log(f"publishing failed (above); {html} is left as it was")
        raise
    if html.is_dir():
        for kept in KEPT_IN_HTML:
            if (html / kept).is_file() and not (fresh / kept).exists():
                shutil.copy2(html / kept, fresh / kept)
        html.rename(previous)
    fresh.rename(html)
    shutil.rmtree(previous, ignore_errors=True)


OUR_ANCHOR = '<a href="mtb/index.html">Changes &amp; MLX/torch</a>'
OUR_LINK = f'<li id="nav-li-mtb">{OUR_ANCHOR}</li>'
ASV_NAV_ITEM = re.compile(r'<li id="nav-li-regressions">.*?</li>')


def link_our_pages(html: Path) -> bool:
    """Add a link to our pages (tools/report.py, under html/mtb/) to asv's navigation bar; False when
    asv's index page has no such bar (the link then opens the page instead)."""
    index = html / "index.html"
    if not index.is_file():
        return False
    page = index.read_text()
    if OUR_LINK in page:
        return True
    linked, count = ASV_NAV_ITEM.subn(lambda m: m.group(0) + "\n\t" + OUR_LINK, page, count=1)
    if count == 0:
        linked = page.replace("<body>", f"<body><p>{OUR_ANCHOR}</p>", 1)
    index.write_text(linked)
    return count == 1
