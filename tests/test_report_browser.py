"""Opens report.html in headless Chromium and checks it renders offline: every image decodes, every table is
there, and no script error, console error or network request happens.

Talks to Chromium over the DevTools protocol on a pipe (--remote-debugging-pipe: fd 3 in, fd 4 out, JSON
messages ending in NUL), so it needs the standard library only. Chromium comes from scripts/test-setup.sh;
without it the test skips, except on CI (CI=true), where it fails.
"""

from __future__ import annotations

import base64
import io
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import pytest
from test_report import EXPECTED_TABLES, build_synthetic_report

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--no-default-browser-check",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
    "--mute-audio", "--window-size=1280,1000", "--remote-debugging-pipe",
)
TIMEOUT_S = 60.0
PAGE_FACTS = """JSON.stringify({
  images: Array.from(document.images, img => ({ok: img.complete && img.naturalWidth > 0, alt: img.alt,
                                               data: img.currentSrc.startsWith('data:image/png;base64,')})),
  tables: document.querySelectorAll('table').length,
  rows: document.querySelectorAll('tbody tr').length,
  scripts: document.scripts.length,
  title: document.title,
  headline_top: document.getElementById('headline')?.getBoundingClientRect().top ?? null,
  height: document.documentElement.scrollHeight,
})"""


def chromium_binary() -> str:
    """The chromium executable; skip when it is missing, unless on CI (CI=true), where that is a failure."""
    binary = shutil.which("chromium")
    if binary:
        return binary
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is not installed on CI: scripts/test-setup.sh must run (as root) before pytest")
    pytest.skip("chromium is not installed: run scripts/test-setup.sh as root (installs Debian's chromium)")


class DevToolsPipe:
    """A headless Chromium and its DevTools protocol connection over a pipe; keeps every event it receives."""

    def __init__(self, binary: str, profile_dir: Path, log_path: Path):
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()
        self._log = open(log_path, "wb")
        command = f'exec "$0" "$@" 3<&{to_browser_read} 4>&{from_browser_write}'
        self.process = subprocess.Popen(
            ["bash", "-c", command, binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", "about:blank"],
            pass_fds=(to_browser_read, from_browser_write), stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def _receive(self, deadline: float) -> dict[str, Any]:
        """The next message from the browser."""
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._from_browser], [], [], remaining)[0]:
                raise TimeoutError("no answer from chromium over the DevTools pipe")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise ConnectionError("chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        """Wait until an event named `method` has arrived; return it."""
        deadline = time.monotonic() + TIMEOUT_S
        while not any(event.get("method") == method for event in self.events):
            self.events.append(self._receive(deadline))
        return next(event for event in self.events if event.get("method") == method)

    def close(self) -> None:
        """Close the browser and the pipes."""
        try:
            self.call("Browser.close")
        except (OSError, RuntimeError, TimeoutError, ConnectionError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)
        self._log.close()


def problems_in(events: list[dict[str, Any]], page_url: str) -> list[str]:
    """Script exceptions, console or log errors, and any request other than the page itself or a data: URI."""
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            found.append(f"exception: {params['exceptionDetails'].get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            found.append(f"console {params['type']}: {params.get('args')}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            found.append(f"log error: {params['entry'].get('text')} ({params['entry'].get('url', '')})")
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if url != page_url and not url.startswith("data:"):
                found.append(f"request to {url}")
        elif method == "Network.loadingFailed":
            found.append(f"loading failed: {params.get('errorText')}")
    return found


def render(binary: str, page: Path, work_dir: Path) -> tuple[dict[str, Any], list[str], bytes]:
    """Load `page` in headless Chromium: its facts (PAGE_FACTS), the problems seen, a viewport screenshot."""
    page_url = page.resolve().as_uri()
    browser = DevToolsPipe(binary, work_dir / "profile", work_dir / "chromium.log")
    try:
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.call(f"{domain}.enable", session)
        browser.call("Page.navigate", session, url=page_url)
        browser.wait_for("Page.loadEventFired")
        facts = json.loads(browser.call("Runtime.evaluate", session, expression=PAGE_FACTS,
                                        returnByValue=True)["result"]["value"])
        screenshot = base64.b64decode(browser.call("Page.captureScreenshot", session, format="png")["data"])
    finally:
        browser.close()
    return facts, problems_in(browser.events, page_url), screenshot


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    binary = chromium_binary()
    paths = build_synthetic_report(tmp_path / "report")
    facts, problems, screenshot = render(binary, paths["html"], tmp_path)
    assert problems == [], (tmp_path / "chromium.log").read_text(errors="replace")[-2000:]
    assert facts["title"] == "agf test report"
    assert facts["scripts"] == 0
    assert facts["tables"] == EXPECTED_TABLES
    assert facts["rows"] > 100
    # The answer first: the headline starts within the first screen (the window is 1000 px tall).
    assert facts["headline_top"] is not None and facts["headline_top"] < 500
    assert len(facts["images"]) == 7
    broken = [image["alt"] for image in facts["images"] if not (image["ok"] and image["data"])]
    assert broken == []
    pixels = matplotlib.image.imread(io.BytesIO(screenshot), format="png")
    assert pixels.shape[1] == 1280
    assert np.ptp(pixels[..., :3]) > 0.5  # text and tables drawn, not a blank page


def test_the_check_catches_broken_images_script_errors_and_requests(tmp_path: Path) -> None:
    binary = chromium_binary()
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><html><head><title>broken</title></head><body><table><tr><td>1</td></tr></table>'
        '<img src="data:image/png;base64,AAAA" alt="bad data"><img src="missing.png" alt="missing file">'
        "<script>console.error('boom'); notDefined();</script></body></html>"
    )
    facts, problems, _ = render(binary, page, tmp_path)
    assert facts["tables"] == 1 and facts["scripts"] == 1
    assert [image["ok"] for image in facts["images"]] == [False, False]
    assert any(p.startswith("exception:") for p in problems)
    assert any(p.startswith("console error:") for p in problems)
    assert any(p.startswith("request to file:") and p.endswith("missing.png") for p in problems)
