"""The web studio end to end: ``painterly serve`` in a subprocess, driven in real headless Chromium.

Needs the Debian package ``chromium`` (/usr/bin/chromium) and Playwright for Python (Playwright
cannot download browsers here). Without them the tests are skipped, except where the environment
variable CI is set: there a missing browser is a failure, so CI never passes by skipping them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from web_helpers import chromium, start_serve, until  # noqa: E402

from painterly.engine.settings import PRESETS

pytestmark = pytest.mark.browser

DATA = Path(__file__).parent / "data"
CONTENT = DATA / "content" / "chelsea.png"
STYLE = DATA / "styles" / "great_wave.png"
STYLE2 = DATA / "styles" / "starry_night.png"
RUN_MS = 90_000
#: Records every image the live preview loads, with the run's status at that moment.
RECORD_PREVIEWS = """
window.previews = [];
document.addEventListener("load", (event) => {
  if (event.target.id === "preview") {
    window.previews.push([event.target.src, document.querySelector("#run-status").textContent]);
  }
}, true);
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``painterly serve`` on a free 127.0.0.1 port (it prints the address); yields the URL."""
    pytest.importorskip("fastapi")
    log = tmp_path_factory.mktemp("server") / "server.log"
    process, url = start_serve(["--port", "0", "--preview-interval", "0", "--threads", "1",
                                "--data", str(tmp_path_factory.mktemp("data"))], log)
    try:
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError(f"painterly serve did not stop on Ctrl-C:\n{log.read_text()}") from None
    assert process.returncode == 0, log.read_text()


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


@pytest.fixture
def expect():
    from playwright.sync_api import expect

    return expect


@pytest.fixture
def page(browser, server: str):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.add_init_script(RECORD_PREVIEWS)
    page.goto(server)
    page.wait_for_selector("body[data-ready=true]")
    yield page
    context.close()
    assert page.errors == []


def choose_inputs_and_fast_settings(page, steps: int) -> None:
    """The tiny images and a run of a few Adam steps on shallow layers, set through the page's controls."""
    page.set_input_files("#content-file", str(CONTENT))
    page.set_input_files("#style-file", str(STYLE))
    page.select_option("#setting-preset", "tutorial")
    page.fill("#setting-size", "64")
    page.fill("#setting-steps", str(steps))
    page.click("#more-settings summary")
    page.fill("#setting-start_size", "0")
    page.fill("#setting-content_layers", "block2_conv2")
    page.fill("#setting-style_layers", "block1_conv1, block2_conv1")
    page.select_option("#setting-precision", "fp32")


def test_a_run_from_upload_to_download(page, expect, tmp_path: Path) -> None:
    # The controls come from the Settings dataclass, through the chosen preset.
    assert page.input_value("#setting-size") == str(PRESETS["default"].size)
    page.select_option("#setting-preset", "draft")
    assert page.input_value("#setting-size") == str(PRESETS["draft"].size)

    # Enough steps that the live image has time to change while the run goes on (a few tiny steps
    # can finish before the browser has loaded a second preview).
    choose_inputs_and_fast_settings(page, steps=40)
    page.click("#start")
    page.wait_for_selector("#result:not([hidden])", timeout=RUN_MS)
    assert page.text_content("#run-status") == "done"

    live = [src for src, status in page.evaluate("window.previews") if status == "running"]
    assert len(set(live)) >= 2, f"the live image changed {len(set(live))} times while running"
    assert page.get_attribute("#loss-chart", "data-points") == "40"
    assert "Done after 40 of 40 steps" in page.text_content("#run-progress")
    until(page, "document.querySelector('#result-image').naturalWidth === 64")
    until(page, "document.querySelector('#result-content').naturalWidth === 64")
    assert page.locator("#result-styles img").count() == 1
    assert "tutorial" in page.text_content("#settings-summary")
    assert page.locator("#run-settings dd.changed", has_text="block2_conv2").count() == 1

    with page.expect_download() as download:
        page.click("#download")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    result = Image.open(saved)
    assert saved.name == "painterly-chelsea.png" and result.size == (64, 43)
    assert json.loads(result.info["painterly"])["settings"]["steps"] == 40

    expect(page.locator("#history .badge")).to_have_text(["done"])
    page.screenshot(path=str(tmp_path / "studio.png"), full_page=True)
    assert (tmp_path / "studio.png").stat().st_size > 10_000


def test_cancel_and_errors_next_to_their_field(page, expect) -> None:
    page.click("#start")
    assert "photo" in page.text_content('[data-error-for="content"]')

    choose_inputs_and_fast_settings(page, steps=6)
    page.fill("#setting-style_layers", "block1_conv1, block9_conv1")
    page.click("#start")
    page.wait_for_selector('[data-error-for="style_layers"]:not(:empty)')
    assert "unknown layer 'block9_conv1'" in page.text_content('[data-error-for="style_layers"]')
    assert page.get_attribute("#setting-style_layers", "aria-invalid") == "true"

    page.fill("#setting-style_layers", "block1_conv1")
    page.fill("#setting-steps", "2000")
    page.click("#start")
    page.wait_for_selector("#run-status.running", timeout=RUN_MS)
    until(page, "window.previews.length >= 1")
    page.click("#cancel")
    page.wait_for_selector("#run-status.cancelled", timeout=10_000)
    assert "cancelled at step" in page.text_content("#result-caption")
    expect(page.locator("#history .badge", has_text="cancelled")).to_have_count(1)


def test_creative_controls_and_masks_are_sent(page, server: str, tmp_path: Path) -> None:
    choose_inputs_and_fast_settings(page, steps=3)
    assert page.is_hidden("#setting-style_blend_weights")  # blending needs several artworks
    page.set_input_files("#style-file", str(STYLE2))
    # The page decodes a picked file before taking it (a file that is not an image is refused at once):
    # the artwork joins the form a moment after the pick.
    page.wait_for_selector("#setting-style_blend_weights", state="visible", timeout=10_000)
    assert page.is_visible("#setting-style_blend_weights")

    page.select_option("#setting-colour", "luminance")
    page.fill("#setting-style_scale", "0.5")
    page.fill("#setting-style_blend_weights", "0.7, x")
    page.click("#start")  # checked on the page before anything is sent
    assert "takes numbers" in page.text_content('[data-error-for="style_blend_weights"]')
    page.fill("#setting-style_blend_weights", "0.7, 0.3")
    page.fill("#setting-ema", "0.5")
    page.select_option("#setting-pooling", "avg")
    page.fill("#setting-tv_weight", "1")
    page.fill("#setting-style_layer_weights", "1, 2")

    masks = []
    for side in ("left", "right"):
        mask = Image.new("L", (64, 43), 0)
        mask.paste(255, (0, 0, 32, 43) if side == "left" else (32, 0, 64, 43))
        mask.save(tmp_path / f"{side}.png")
        masks.append(tmp_path / f"{side}.png")
    page.click("#mask-details summary")
    page.set_input_files('.mask-file[data-index="0"]', str(masks[0]))
    page.click("#start")
    assert "every artwork, or none" in page.text_content('[data-error-for="mask"]')
    page.set_input_files('.mask-file[data-index="1"]', str(masks[1]))

    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/api/jobs")) as posted:
        page.click("#start")
    assert posted.value.status == 202, posted.value.text()
    page.wait_for_selector("#result:not([hidden])", timeout=RUN_MS)
    with urllib.request.urlopen(f"{server}api/jobs/{posted.value.json()['id']}") as answer:
        job = json.load(answer)  # what the server received, as it recorded it
    creative = {"colour": "luminance", "style_scale": 0.5, "style_blend_weights": [0.7, 0.3], "ema": 0.5,
                "pooling": "avg", "tv_weight": 1.0, "style_layer_weights": [1.0, 2.0]}
    assert {k: job["settings"][k] for k in creative} == creative
    assert len(job["inputs"]["styles"]) == 2 and job["inputs"]["masks"] == ["left.png", "right.png"]
    assert page.text_content("#run-status") == "done", page.text_content("#run-error")
    assert page.locator("#result-styles img.mask").count() == 2
    assert "masked" in page.text_content("#settings-summary")
    assert page.locator("#run-settings dd.changed", has_text="luminance").count() == 1
