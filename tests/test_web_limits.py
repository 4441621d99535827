"""The studio cannot be knocked over: the work budget, same-origin only, settings that never 500,
non-finite losses, cancel at any point (setup included).

Against the real app through Starlette's TestClient (no socket); runs are tiny (64 px, a few Adam
steps on shallow layers).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient
from web_helpers import app_clients, wait_for  # noqa: E402

from painterly import stylize
from painterly.web.checks import display_name, json_depth
from painterly.web.server import WebConfig

DATA = Path(__file__).parent / "data"
CONTENT = DATA / "content" / "chelsea.png"
STYLE = DATA / "styles" / "great_wave.png"
FAST = {"preset": "tutorial", "size": 64, "steps": 3, "start_size": 0, "precision": "fp32",
        "content_layers": ["block2_conv2"], "style_layers": ["block1_conv1", "block2_conv1"], "style_weight": 1.0}
TIMEOUT = 60.0


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    with app_clients(tmp_path) as make:
        yield make


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


def form(settings: Any = None, content_name: str = "chelsea.png", content: bytes | None = None,
         styles: int = 1) -> dict[str, Any]:
    files = [("content", (content_name, content or CONTENT.read_bytes(), "image/png"))]
    files += [("style", (f"style{i}.png", STYLE.read_bytes(), "image/png")) for i in range(styles)]
    text = settings if isinstance(settings, str) else json.dumps({**FAST, **(settings or {})})
    return {"files": files, "data": {"settings": text}}


def refused(client: TestClient, status: int, field: str | None, words: str, **kwargs: Any) -> dict[str, Any]:
    started = time.monotonic()
    response = client.post("/api/jobs", **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"detail", "field"} and body["field"] == field and words in body["detail"], body
    assert time.monotonic() - started < 5, "a refusal must be cheap"
    return body




# -- the work budget ----------------------------------------------------------------------------------

BUDGET = {
    # a scale factor a hair above 1: ~35,000 scales (the plan is never listed)
    # The settings themselves refuse more than MAX_SCALES (32); the server's --max-scales can be lower.
    "scales": ({"start_size": 32, "size": 1024, "scale_factor": 1.0001}, "scale_factor", "at most 32 are allowed"),
    "scales, absurd": ({"start_size": 32, "size": 1024, "scale_factor": 1 + 1e-15}, "scale_factor",
                       "at most 32 are allowed"),
    # a steps decay above 1 over 6 scales: 2000 + 4000 + ... steps
    "total steps": ({"start_size": 32, "size": 1024, "scale_factor": 2, "steps": 2000, "scale_steps_decay": 2},
                    "steps", "--max-total-steps"),
    "style size": ({"size": 1024, "style_scale": 8}, "style_scale", "8192 px style images"),
}


@pytest.mark.parametrize("settings, field, words", BUDGET.values(), ids=BUDGET.keys())
def test_work_budget_refuses_before_queueing(client: TestClient, settings: dict, field: str, words: str) -> None:
    refused(client, 422, field, words, **form(settings))
    assert list(client.app.state.jobs.root.iterdir()) == []


def test_memory_and_pixel_limits_name_their_flags(make_client: Callable[..., TestClient]) -> None:
    body = refused(make_client(max_memory_mb=1300), 422, "size", "--max-memory-mb", **form({"size": 1024}))
    assert "GiB" in body["detail"]
    client = make_client(max_request_pixels=2000)
    # the content is 64x43 = 2,752 px: past 2,000 before anything is decoded
    refused(client, 413, "content", "--max-request-pixels", **form())
    small = make_client(max_request_pixels=4000)  # the content fits, content + style (64x40) does not
    refused(small, 413, "style", "--max-request-pixels", **form())


def test_limits_are_flags_of_serve_and_in_the_schema(client: TestClient) -> None:
    from painterly.web.server import parse_config

    config = parse_config(["--max-scales", "3", "--max-total-steps", "50", "--max-style-size", "256",
                           "--max-memory-mb", "900", "--max-request-pixels", "1000", "--decode-workers", "1",
                           "--allow-origin", "https://Studio.example:8443/"])
    assert (config.max_scales, config.max_total_steps, config.max_style_size) == (3, 50, 256)
    assert config.allow_origin == ("https://studio.example:8443",)
    limits = client.get("/api/settings").json()["limits"]
    assert limits["max_total_steps"] == WebConfig().max_total_steps and "max_scales" in limits


def test_accepted_run_reports_its_plan(client: TestClient) -> None:
    answer = client.post("/api/jobs", **form({"start_size": 32, "scale_factor": 2, "steps": 4,
                                              "scale_steps_decay": 0.5, "min_scale_steps": 1}))
    assert answer.status_code == 202, answer.text
    plan = answer.json()["plan"]
    assert [s["size"][0] for s in plan["scales"]] == [32, 64] and plan["total_steps"] == 6
    job = wait_for(client, answer.json()["id"], lambda j: j["status"] == "done")
    assert (job["total_steps"], job["scales"]) == (6, 2)
    assert job["step"] == 6 and job["eta"] is None


# -- same origin only -----------------------------------------------------------------------------------


def test_cross_origin_form_post_and_foreign_host_are_refused(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    evil = client.post("/api/jobs", **form(), headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403 and "other sites" in evil.json()["detail"]
    null = client.post("/api/jobs", **form(), headers={"Origin": "null"})
    assert null.status_code == 403
    hidden = client.post("/api/jobs", **form(), headers={"Sec-Fetch-Site": "cross-site"})
    assert hidden.status_code == 403
    rebound = client.get("/api/settings", headers={"Host": "evil.example:8000"})  # DNS rebinding
    assert rebound.status_code == 403 and "answers requests for" in rebound.json()["detail"]
    assert client.get("/", headers={"Host": "testserver.evil.example"}).status_code == 403
    assert list(client.app.state.jobs.root.iterdir()) == []

    own = client.post("/api/jobs", **form(), headers={"Origin": "http://testserver"})
    assert own.status_code == 202, own.text
    client.post(f"/api/jobs/{own.json()['id']}/cancel", headers={"Origin": "http://testserver"})

    proxied = make_client(allow_origin=("https://studio.example",))
    allowed = proxied.get("/api/settings", headers={"Host": "studio.example", "Origin": "https://studio.example"})
    assert allowed.status_code == 200
    assert proxied.get("/api/settings", headers={"Origin": "https://other.example"}).status_code == 403


# -- settings parsing never 500s ------------------------------------------------------------------------

BAD_SETTINGS = {
    "5000-digit number": ('{"size": ' + "9" * 5000 + "}", "settings", "5,000 digits long"),
    "long float": ('{"lr": 0.' + "1" * 100 + "}", "settings", "characters long"),
    "overflowing float": ('{"content_weight": 1e400}', "settings", "too large to be finite"),
    "NaN": ('{"content_weight": NaN}', "settings", "not a number JSON allows"),
    "deep nesting": ('{"style_layers": ' + "[" * 5000 + "]" * 5000 + "}", "settings", "nested more than"),
    "huge settings": ('{"seed": 1, "x": "' + "a" * 20_000 + '"}', "settings", "characters long"),
    "layers as an object": ('{"style_layers": {"block1_conv1": 1}}', "style_layers", "must be a list of texts"),
    "layers as text": ('{"style_layers": "block1_conv1"}', "style_layers", "must be a list"),
    "weights with text": ('{"style_layer_weights": [1, "2"]}', "style_layer_weights", "list of numbers"),
    "size true": ('{"size": true}', "size", "must be a whole number, got true"),
    "size float": ('{"size": 64.5}', "size", "must be a whole number"),
    "huge seed": ('{"seed": 123456789012345678901234567890}', "seed", "beyond"),
    "preset list": ('{"preset": ["draft"]}', "preset", "preset must be a name"),
    "colour number": ('{"colour": 3}', "colour", "must be a text"),
    "long list": ('{"style_blend_weights": [' + ",".join(["1"] * 100) + "]}", "style_blend_weights", "at most 64"),
}


@pytest.mark.parametrize("text, field, words", BAD_SETTINGS.values(), ids=BAD_SETTINGS.keys())
def test_malformed_settings_are_422_never_500(client: TestClient, text: str, field: str, words: str) -> None:
    refused(client, 422, field, words, **form(text))


def test_names_lose_control_and_bidi_characters(client: TestClient) -> None:
    assert display_name("photo\u202egnp.exe", "content") == "photognp.exe"
    assert display_name("a\u200bb\u2066c\x07d\u2028e.png", "x") == "abcde.png"
    assert display_name("\u202e\u200f", "content image") == "content image"
    answer = client.post("/api/jobs", **form(content_name="../../cat\u202egnp.exe"))
    assert answer.status_code == 202, answer.text
    job = wait_for(client, answer.json()["id"], lambda j: j["status"] == "done")
    assert job["inputs"]["content"] == "catgnp.exe"


def test_json_depth_skips_strings() -> None:
    assert json_depth('{"a": "[[[[", "b": [1, [2]]}') == 3
    assert json_depth('{"a": "\\"[[["}') == 1


def test_overflowing_loss_fails_the_run(client: TestClient) -> None:
    answer = client.post("/api/jobs", **form({"content_weight": 1e308, "style_weight": 1e308}))
    assert answer.status_code == 202, answer.text
    job = wait_for(client, answer.json()["id"], lambda j: j["status"] in ("done", "failed"))
    assert job["status"] == "failed" and ("overflowed" in job["error"] or "not finite" in job["error"])
    assert job["result"] is None


# -- cancel at any point ------------------------------------------------------------------------------


def test_cancel_stops_a_run_stuck_in_setup_within_a_second(make_client: Callable[..., TestClient]) -> None:
    """A stylize that never reaches its first step (a long setup) is interrupted; the next run starts."""
    real = stylize
    calls = []

    def stuck_then_real(*args: Any, **kwargs: Any):
        calls.append(time.monotonic())
        if len(calls) == 1:
            while True:  # setup that never ends, in Python steps like the engine's own
                time.sleep(0.01)
        return real(*args, **kwargs)

    client = make_client(paint=stuck_then_real)  # the app paints with it instead of stylize
    first = client.post("/api/jobs", **form()).json()["id"]
    second = client.post("/api/jobs", **form()).json()["id"]
    wait_for(client, first, lambda j: j["status"] == "running")
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    cancelled_at = time.monotonic()
    assert client.post(f"/api/jobs/{first}/cancel").json()["status"] == "cancelled"
    wait_for(client, second, lambda j: j["status"] != "queued")
    assert len(calls) == 2 and calls[1] - cancelled_at < 1.0, "the worker was not free within a second"
    assert wait_for(client, second, lambda j: j["status"] == "done")["step"] == 3
    assert client.get(f"/api/jobs/{first}").json()["status"] == "cancelled"
    assert client.post(f"/api/jobs/{first}/cancel").status_code == 200  # cancelling twice is harmless


def test_bad_requests_never_leave_files(client: TestClient) -> None:
    flat = Image.new("RGB", (6000, 6000), "white")  # tiny as a PNG, 36 million pixels decoded
    import io

    buffer = io.BytesIO()
    flat.save(buffer, format="PNG")
    refused(client, 413, "content", "at most 25,000,000 pixels", **form(content=buffer.getvalue()))
    assert list(client.app.state.jobs.root.iterdir()) == []
