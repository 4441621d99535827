"""The studio as a creative tool, in real headless Chromium: iterate (a nudge, a run opened back into
the form), compare (full size with zoom, before/after, two runs side by side), the gallery (pages,
filter, select and delete), the plan before Start, the phone layout at 390 px and the keyboard.

Screenshots are kept as test artifacts: under pytest's temporary folder (``.../screens``, printed
at the end of the module) and, when the environment variable ``PAINTERLY_ARTIFACTS`` names a
folder, copied there too. Needs Debian's ``chromium`` and Playwright, like ``test_web_browser.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web_helpers import chromium, start_serve, until  # noqa: E402

pytestmark = pytest.mark.browser

DATA = Path(__file__).parent / "data"
CONTENT = DATA / "content" / "chelsea.png"
STYLE = DATA / "styles" / "great_wave.png"
RUN_MS = 90_000
FAST = {"preset": "tutorial", "size": 64, "steps": 2000, "start_size": 0, "precision": "fp32",
        "content_layers": ["block2_conv2"], "style_layers": ["block1_conv1"]}
WIDTHS = {"desktop": {"viewport": {"width": 1280, "height": 900}},
          "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}}
PAGE_SIZE = {"desktop": 12, "phone": 8}  # runs per page of the gallery (app.js)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("fastapi")
    log = tmp_path_factory.mktemp("server") / "server.log"
    process, url = start_serve(["--port", "0", "--preview-interval", "0", "--threads", "1", "--max-queued", "40",
                                "--data", str(tmp_path_factory.mktemp("data"))], log)
    try:
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def screens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("screens")
    yield folder
    kept = os.environ.get("PAINTERLY_ARTIFACTS")
    if kept:
        Path(kept).mkdir(parents=True, exist_ok=True)
        for shot in folder.glob("*.png"):
            shutil.copy(shot, Path(kept) / shot.name)
    print(f"\nscreenshots: {folder}" + (f" (and {kept})" if kept else ""))


def keep(page, screens: Path, name: str) -> None:
    """A full-page screenshot kept as an artifact."""
    page.screenshot(path=str(screens / f"{name}.png"), full_page=True)
    assert (screens / f"{name}.png").stat().st_size > 5_000


def open_page(browser, url: str, **context: Any):
    ctx = browser.new_context(**{"viewport": {"width": 1280, "height": 900}, **context})
    page = ctx.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("dialog", lambda dialog: dialog.accept())
    offsite = []  # the studio must work offline: nothing may be asked of another host
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url)
               else (offsite.append(route.request.url), route.abort()))
    page.offsite = offsite
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
    return page


def api(url: str, path: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None) -> Any:
    request = urllib.request.Request(url.rstrip("/") + path, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read()
    return json.loads(text) if text else None


def post_run(url: str, settings: dict[str, Any]) -> str:
    boundary = "painterly-test"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
             f"Content-Type: image/png\r\n\r\n".encode() + path.read_bytes() + b"\r\n"
             for field, name, path in (("content", "chelsea.png", CONTENT), ("style", "wave.png", STYLE))]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="settings"\r\n\r\n'
                 f"{json.dumps(settings)}\r\n--{boundary}--\r\n".encode())
    return api(url, "/api/jobs", "POST", b"".join(parts),
               {"Content-Type": f"multipart/form-data; boundary={boundary}"})["id"]


def next_done(page, after: str) -> str:
    """The id of the run the page shows once it is another than ``after`` and done."""
    until(page, f"!!state.shown && state.shown.id !== '{after}' && state.shown.status === 'done'")
    return page.evaluate("state.shown.id")


def fast_settings(page, steps: int) -> None:
    page.select_option("#setting-preset", "tutorial")
    page.fill("#setting-size", "64")
    page.fill("#setting-steps", str(steps))
    page.fill("#setting-strength", "0.5")
    page.click("#more-settings summary")
    page.fill("#setting-start_size", "0")
    page.fill("#setting-content_layers", "block2_conv2")
    page.fill("#setting-style_layers", "block1_conv1")
    page.select_option("#setting-precision", "fp32")
    page.click("#more-settings summary")


@pytest.mark.parametrize("width", WIDTHS)
def test_iterate_and_compare(browser, server: str, screens: Path, width: str) -> None:
    page = open_page(browser, server, **WIDTHS[width])
    page.set_input_files("#content-file", str(CONTENT))
    page.set_input_files("#style-file", str(STYLE))
    fast_settings(page, steps=2)
    # The plan before Start, from the server's own checks, follows the settings.
    until(page, "document.querySelector('#plan-preview').dataset.steps === '2'", 20)
    page.fill("#setting-steps", "3000")
    until(page, "document.querySelector('#plan-preview').classList.contains('refused')", 20)
    assert "at most 2000" in page.text_content("#plan-preview")
    page.fill("#setting-steps", "2")
    until(page, "document.querySelector('#plan-preview').dataset.steps === '2'", 20)
    keep(page, screens, f"{width}-iterate-1-form")

    page.click("#start")
    page.wait_for_selector("#run-status.done", timeout=RUN_MS)
    assert page.title().startswith("done")
    assert page.evaluate("document.body.dataset.notified") == "done"  # a notification, where allowed
    # 2 steps at 64 px leave the photo as it was: the result says so and offers more steps.
    page.wait_for_selector("#result-hint:not([hidden])")
    assert "barely changed" in page.text_content("#result-hint")
    first = page.evaluate("state.shown.id")

    # One click: the same run with more of the artwork.
    assert page.is_visible("#more") and page.is_visible("#less") and page.is_visible("#rerun")
    page.click("#more")
    nudged = api(server, f"/api/jobs/{next_done(page, first)}")
    assert nudged["settings"]["strength"] == 0.65 and nudged["rerun_of"] == first

    # Before/after against the photo, and the result full size with zoom.
    page.fill("#ba-split", "30")
    assert page.evaluate("getComputedStyle(document.querySelector('#before-after')).getPropertyValue('--split')") \
        .strip() == "30%"
    until(page, "document.querySelector('#ba-photo').naturalWidth === 64")
    keep(page, screens, f"{width}-iterate-2-result-before-after")
    page.click("#zoom")
    page.wait_for_selector("#viewer[open]")
    page.click('#viewer [data-zoom="4"]')
    until(page, "document.querySelector('#viewer-image').getBoundingClientRect().width === 256")
    keep(page, screens, f"{width}-iterate-3-full-size")
    page.click("#viewer-close")

    # The first run back in the form: its images and settings, changed and started again.
    page.locator(f'#history li[data-id="{first}"] button.edit').click()
    page.wait_for_selector("#from-run:not([hidden])")
    assert page.input_value("#setting-steps") == "2" and page.input_value("#setting-strength") == "0.5"
    assert page.text_content("#content-picked") == "chelsea.png"
    assert page.locator("#style-picked img").count() == 1
    page.fill("#setting-steps", "5")
    page.click("#start")
    edited = api(server, f"/api/jobs/{next_done(page, nudged['id'])}")
    assert edited["settings"]["steps"] == 5 and edited["inputs"]["content"] == "chelsea.png"

    # Two runs side by side, what differs listed under each.
    page.locator(f'#history li[data-id="{first}"] input.select').check()
    page.locator(f'#history li[data-id="{edited["id"]}"] input.select').check()
    page.click("#compare-selected")
    page.wait_for_selector("#compare-dialog[open]")
    assert page.locator("#side-by-side figure").count() == 2
    assert "steps: 5" in page.text_content("#side-by-side") and "steps: 2" in page.text_content("#side-by-side")
    keep(page, screens, f"{width}-iterate-4-side-by-side")
    page.click("#compare-close")
    assert page.offsite == [] and page.errors == []


@pytest.mark.parametrize("width", WIDTHS)
def test_gallery_layout_and_keyboard(browser, server: str, screens: Path, tmp_path: Path, width: str) -> None:
    # Many runs, made cheaply: a long one runs while the others wait and are cancelled.
    running = post_run(server, FAST)
    waiting = [post_run(server, {**FAST, "steps": 3}) for _ in range(13)]
    page = open_page(browser, server, **WIDTHS[width])
    # A running run shows its progress in the tab's title.
    page.evaluate(f"follow('{running}')")
    until(page, r"/^\d+% · .*painterly studio$/.test(document.title)")
    for job_id in [*waiting, running]:
        api(server, f"/api/jobs/{job_id}/cancel", "POST")
    page.wait_for_selector("#run-status.cancelled", timeout=10_000)
    page.reload()
    page.wait_for_selector("body[data-ready=true]")

    # On a phone the narrow-screen rules apply: one column of settings, nothing wider than the phone.
    columns = page.evaluate("getComputedStyle(document.querySelector('.setting')).gridTemplateColumns")
    assert len(columns.split()) == (1 if width == "phone" else 2), columns
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTHS[width]["viewport"]["width"]
    # The form stays at the top; the gallery is paged below it.
    form_top = page.evaluate("document.querySelector('#run-form').getBoundingClientRect().top")
    gallery_top = page.evaluate("document.querySelector('.history-card').getBoundingClientRect().top")
    assert form_top < gallery_top
    total, size = api(server, "/api/jobs?limit=1")["total"], PAGE_SIZE[width]
    assert page.locator("#history li").count() == size
    assert f"page 1 of {-(-total // size)}" in page.text_content("#page-info")
    # A run without a result shows its photo, not a grey blank.
    assert "/content" in page.locator(f'#history li[data-id="{waiting[-1]}"] img').get_attribute("src")
    height = page.evaluate("document.documentElement.scrollHeight")
    keep(page, screens, f"{width}-gallery-1")
    page.click("#page-older")
    until(page, "document.querySelector('#page-info').textContent.startsWith('page 2')")
    page.select_option("#filter", "cancelled")
    until(page, "document.querySelector('#page-info').textContent.startsWith('page 1')")
    assert set(page.locator("#history .badge").all_text_contents()) == {"cancelled"}
    assert height < 6000, f"the page is {height} px tall at {width} width"

    # Select several and delete them at once.
    for tick in page.locator("#history input.select").all()[:3]:
        tick.check()
    assert "3 selected" in page.text_content("#selected-count")
    before = api(server, "/api/jobs?limit=1&status=cancelled")["total"]
    page.click("#delete-selected")
    until(page, f"document.querySelector('#history-count').textContent.startsWith('{before - 3} ')")
    assert api(server, "/api/jobs?limit=1&status=cancelled")["total"] == before - 3

    # Keyboard: focus is visible on the drop zone; a file that is not an image is refused at once.
    page.focus("#content-file")
    outline = page.evaluate("getComputedStyle(document.querySelector('#content-drop')).outlineStyle")
    assert outline not in ("", "none"), outline
    note = tmp_path / "notes.txt"
    note.write_text("not a picture")
    page.set_input_files("#content-file", str(note))
    page.wait_for_selector('[data-error-for="content"]:not(:empty)')
    assert "not an image" in page.text_content('[data-error-for="content"]')
    assert page.locator("#content-picked img").count() == 0

    # Labelled examples with a selected state.
    example = page.locator("#content-examples .example").first
    assert example.text_content().strip() != ""
    example.click()
    until(page, "document.querySelector('#content-examples .example').getAttribute('aria-pressed') === 'true'")
    assert page.text_content('[data-error-for="content"]') == ""
    page.keyboard.press("Tab")
    keep(page, screens, f"{width}-gallery-2-form")
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTHS[width]["viewport"]["width"]
    assert page.offsite == [] and page.errors == []
