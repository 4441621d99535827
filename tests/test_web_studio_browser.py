"""The studio page in real headless Chromium: the phone layout, the page's own helpers (plan, kept
edits, errors cleared, Start not twice), offline API docs, and a server killed and restarted under
a running page (history kept, the run shown as interrupted, rerun works, the page reconnects).

Needs Debian's ``chromium`` and Playwright for Python, like ``test_web_browser.py``.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from web_helpers import chromium, until  # noqa: E402

pytestmark = pytest.mark.browser

DATA = Path(__file__).parent / "data"
CONTENT = DATA / "content" / "chelsea.png"
STYLE = DATA / "styles" / "great_wave.png"
STARTUP_SECONDS = 60
RUN_MS = 90_000


class Studio:
    """``painterly serve`` in a subprocess on 127.0.0.1, over one data folder; can be killed and restarted."""

    def __init__(self, data: Path, log: Path) -> None:
        self.data, self.log, self.port, self.process = data, log, 0, None

    def start(self) -> str:
        command = [sys.executable, "-m", "painterly", "serve", "--port", str(self.port), "--preview-interval", "0",
                   "--threads", "1", "--data", str(self.data)]
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_SECONDS
        while not (found := re.search(r"http://127\.0\.0\.1:(\d+)/", self.log.read_text())):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"painterly serve did not start:\n{self.log.read_text()}")
            time.sleep(0.1)
        self.port = int(found.group(1))
        return found.group(0)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
def studio(tmp_path: Path) -> Iterator[Studio]:
    pytest.importorskip("fastapi")
    server = Studio(tmp_path / "data", tmp_path / "server.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


def open_page(browser, url: str, path: str = "", **context):
    ctx = browser.new_context(**{"viewport": {"width": 1280, "height": 900}, **context})
    page = ctx.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("dialog", lambda dialog: dialog.accept())
    offsite = []  # the studio must work offline: nothing may be asked of another host
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url)
               else (offsite.append(route.request.url), route.abort()))
    page.offsite = offsite
    page.goto(url + path)
    page.wait_for_selector("body[data-ready=true]")
    return page


def fast_settings(page, steps: int, start_size: int = 0) -> None:
    page.select_option("#setting-preset", "tutorial")
    page.fill("#setting-size", "64")
    page.fill("#setting-steps", str(steps))
    page.click("#more-settings summary")
    page.fill("#setting-start_size", str(start_size))
    page.fill("#setting-scale_factor", "2")
    page.fill("#setting-content_layers", "block2_conv2")
    page.fill("#setting-style_layers", "block1_conv1")
    page.select_option("#setting-precision", "fp32")


def test_phone_layout_and_the_pages_helpers(browser, studio: Studio, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{studio.port}/"
    page = open_page(browser, url, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    long_name = tmp_path / ("a-photo-with-a-very-long-name-that-has-no-spaces-in-it-at-all-" * 2 + ".png")
    shutil.copy(CONTENT, long_name)
    page.set_input_files("#content-file", str(long_name))
    page.set_input_files("#style-file", str(STYLE))

    # A preset change keeps the user's own edits, and says so.
    page.fill("#setting-steps", "7")
    page.select_option("#setting-preset", "draft")
    assert page.input_value("#setting-steps") == "7" and "steps" in page.text_content("#kept-edits")
    fast_settings(page, steps=2000, start_size=32)

    # An error goes away as soon as its field is corrected.
    page.fill("#setting-style_layers", "block9_conv1")
    page.click("#start")
    page.wait_for_selector('[data-error-for="style_layers"]:not(:empty)')
    page.fill("#setting-style_layers", "block1_conv1")
    assert page.text_content('[data-error-for="style_layers"]') == ""
    assert page.get_attribute("#setting-style_layers", "aria-invalid") is None

    page.click("#start")
    page.wait_for_selector("#run-status.running", timeout=RUN_MS)
    until(page, "/Step \\d+ of 4000 \\(scale 1 of 2\\)/.test(document.querySelector('#run-progress').textContent)")
    assert "4000 steps over 2 scales" in page.text_content("#run-plan")
    # Start stays disabled for the request that is running, and comes back when the form changes.
    assert page.is_disabled("#start") and "already going" in page.text_content("#start-note")
    page.fill("#setting-steps", "1999")
    assert page.is_enabled("#start")
    page.fill("#setting-steps", "2000")
    assert page.is_disabled("#start")

    # No sideways scroll at 390 px, the long title wrapped.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} px wide on a 390 px phone"
    page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)

    page.click("#cancel")
    page.wait_for_selector("#run-status.cancelled", timeout=10_000)
    assert page.is_enabled("#start")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.offsite == [] and page.errors == []


def test_api_docs_work_offline(browser, studio: Studio) -> None:
    url = f"http://127.0.0.1:{studio.port}/"
    page = open_page(browser, url, "docs")
    text = page.text_content("#endpoints")
    for endpoint in ("/api/jobs/{job_id}/cancel", "/api/jobs/{job_id}/rerun", "/api/settings"):
        assert endpoint in text
    assert page.offsite == [] and page.errors == []


def test_a_killed_server_restarts_under_the_page(browser, studio: Studio) -> None:
    url = f"http://127.0.0.1:{studio.port}/"
    page = open_page(browser, url)
    page.set_input_files("#content-file", str(CONTENT))
    page.set_input_files("#style-file", str(STYLE))
    fast_settings(page, steps=3)
    page.click("#start")
    page.wait_for_selector("#run-status.done", timeout=RUN_MS)
    page.fill("#setting-steps", "2000")
    page.click("#start")
    page.wait_for_selector("#run-status.running", timeout=RUN_MS)
    until(page, "/Step [2-9]/.test(document.querySelector('#run-progress').textContent)")

    studio.kill()  # kill -9: no shutdown at all
    page.wait_for_selector("#connection:not([hidden])", timeout=15_000)
    studio.start()  # same port, same data folder
    page.wait_for_selector("#connection[hidden]", state="attached", timeout=20_000)
    page.wait_for_selector("#run-status.interrupted", timeout=20_000)
    assert "Interrupted after" in page.text_content("#run-progress")
    assert page.is_visible("#rerun")
    until(page, "document.querySelectorAll('#history li').length === 2")
    badges = page.locator("#history .badge").all_text_contents()
    assert badges == ["interrupted", "done"]

    page.click("#rerun")  # one click: the same inputs and settings, as a new run
    page.wait_for_selector("#run-status.running", timeout=RUN_MS)
    until(page, "document.querySelectorAll('#history li').length === 3")
    page.click("#cancel")
    page.wait_for_selector("#run-status.cancelled", timeout=10_000)
    page.locator("#history li", has_text="done").locator("button.delete").click()
    until(page, "document.querySelectorAll('#history li').length === 2")
    assert page.offsite == [] and page.errors == []
