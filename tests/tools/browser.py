"""Headless Chromium (Debian's packages) driven by selenium, with every address but this machine's
unreachable, for the site tests."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

PACKAGES = ("chromium", "chromium-driver")


def _binaries() -> tuple[str | None, str | None]:
    return shutil.which("chromium"), shutil.which("chromedriver")


def ensure_chromium() -> str | None:
    """None when Chromium and its driver are here (installed from Debian's packages now if they were
    not and this is root on Debian), else why not."""
    if all(_binaries()):
        return None
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return "headless Chromium is not installed and apt-get (as root) is not available to install it"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]
    out = subprocess.run(install, capture_output=True, text=True, env=env, check=False, timeout=900)
    if out.returncode != 0:  # a fresh machine's package lists may be empty
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env, check=False, timeout=600)
        out = subprocess.run(install, capture_output=True, text=True, env=env, check=False, timeout=900)
    if out.returncode != 0 or not all(_binaries()):
        last = (out.stderr.strip().splitlines() or ["no message"])[-1]
        return f"`apt-get install {' '.join(PACKAGES)}` failed: {last}"
    return None


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """``folder`` over HTTP on 127.0.0.1 (asv's pages read their JSON with XHR, which file:// forbids)."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    """A headless Chromium that can reach 127.0.0.1 only, with its console log readable."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = _binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = str(browser)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        # offline: every host name fails to resolve except the local server's address
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(service=Service(executable_path=str(driver)), options=options)
    try:
        yield session
    finally:
        session.quit()
