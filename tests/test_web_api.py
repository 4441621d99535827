"""The web studio's HTTP API against the real app: uploads, polling, events, images, masks and the
creative settings, the queue, cancelling, expiry, the disk cap, and every bad input refused with a
clear ``{detail, field}``.

Runs are tiny (64 px, a handful of Adam steps, shallow layers) so the whole file takes seconds.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient
from web_helpers import wait_for  # noqa: E402

from painterly import samples
from painterly.engine.settings import FIELD_NAMES, PRESETS, Settings
from painterly.web.server import REFUSED, WebConfig, create_app, serve_main

DATA = Path(__file__).parent / "data"
CONTENT = DATA / "content" / "chelsea.png"
STYLE = DATA / "styles" / "great_wave.png"
STYLE2 = DATA / "styles" / "starry_night.png"
#: A run of a second or so: Adam (the tutorial preset), shallow layers, 64 px, fp32.
FAST = {"preset": "tutorial", "size": 64, "steps": 4, "start_size": 0, "precision": "fp32",
        "content_layers": ["block2_conv2"], "style_layers": ["block1_conv1", "block2_conv1"], "style_weight": 1.0}
#: A run that would take minutes: it is there to be waited for and cancelled.
LONG = {**FAST, "steps": 2000}
TIMEOUT = 90.0


def config(**changes: Any) -> WebConfig:
    return WebConfig(**{"preview_interval": 0.0, "threads": 1, **changes})


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """Start apps with the given :class:`WebConfig` changes; each is shut down after the test."""
    opened: list[TestClient] = []

    def make(**changes: Any) -> TestClient:
        client = TestClient(create_app(config(data=str(tmp_path / f"data{len(opened)}"), **changes)))
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def upload(content: bytes | None = None, styles: list[bytes] | None = None, settings: Any = None,
           content_name: str = "chelsea.png", masks: list[bytes] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``client.post`` (multipart: content, style..., mask..., settings over :data:`FAST`)."""
    files = []
    if content is not None:
        files.append(("content", (content_name, content, "image/png")))
    for i, style in enumerate(styles if styles is not None else [STYLE.read_bytes()]):
        files.append(("style", (f"style{i}.png", style, "image/png")))
    for i, mask in enumerate(masks or []):
        files.append(("mask", (f"mask{i}.png", mask, "image/png")))
    data = {"settings": settings if isinstance(settings, str) else json.dumps({**FAST, **(settings or {})})}
    return {"files": files, "data": data}


def submit(client: TestClient, settings: dict[str, Any] | None = None, **kwargs: Any) -> str:
    response = client.post("/api/jobs", **upload(CONTENT.read_bytes(), settings=settings, **kwargs))
    assert response.status_code == 202, response.text
    return response.json()["id"]




def events(client: TestClient, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Read a job's event stream to its end: [(event, data), ...]."""
    found = []
    with client.stream("GET", f"/api/jobs/{job_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[len("event: "):]
            elif line.startswith("data: "):
                found.append((kind, json.loads(line[len("data: "):])))
    return found


# -- what the page builds itself from -------------------------------------------------------------


def test_settings_come_from_the_dataclass(client: TestClient) -> None:
    schema = client.get("/api/settings").json()
    fields = {f["name"]: f for f in schema["fields"]}
    assert set(fields) == set(FIELD_NAMES) - set(REFUSED)
    assert fields["size"]["default"] == Settings().size and fields["size"]["type"] == "int"
    assert fields["colour"]["choices"] == ["none", "luminance", "histogram"]
    assert fields["init"]["choices"] == ["content", "palette", "noise", "style"]  # no file names from the web
    assert fields["style_layers"]["type"] == "list[str]"
    assert fields["steps"]["help"] == Settings.__dataclass_fields__["steps"].metadata["help"]
    assert schema["presets"] == {name: p.to_dict() for name, p in PRESETS.items()}
    assert schema["limits"]["max_size"] == 1024


def test_examples_are_listed_and_served(client: TestClient) -> None:
    listing = client.get("/api/examples").json()
    assert [e["name"] for e in listing["content"]] == list(samples.contents())
    assert [e["name"] for e in listing["styles"]] == list(samples.styles())
    first = client.get(listing["styles"][0]["url"])
    assert first.status_code == 200 and first.content[:2] == b"\xff\xd8"
    for name in ("nope", "..%2F..%2Fsettings.py", "great_wave.jpg"):
        missing = client.get(f"/api/examples/{name}")
        assert missing.status_code == 404 and missing.json()["detail"]


def test_page_static_files_and_openapi(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "painterly" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/app.js").status_code == 200
    for outside in ("/static/../server.py", "/static/%2e%2e/server.py", "/static/..%2fjobs.py"):
        assert client.get(outside).status_code == 404
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/image", "/api/jobs/{job_id}/events",
                 "/api/settings", "/api/examples", "/api/examples/{name}"):
        assert path in paths
    assert "delete" in paths["/api/jobs/{job_id}"]


# -- a run from upload to download ------------------------------------------------------------------


def test_run_streams_progress_and_ends_with_the_result(client: TestClient) -> None:
    blocker = submit(client, LONG)  # keeps the job below waiting until its stream is open
    # A PNG named .txt and declared text/plain is still a PNG: the bytes decide, not the name.
    files = upload(CONTENT.read_bytes(), [STYLE.read_bytes(), STYLE2.read_bytes()])
    files["files"][0] = ("content", ("notes.txt", CONTENT.read_bytes(), "text/plain"))
    response = client.post("/api/jobs", **files)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{24,}", job_id)

    stream: list[tuple[str, dict[str, Any]]] = []
    reader = threading.Thread(target=lambda: stream.extend(events(client, job_id)))
    reader.start()
    deadline = time.monotonic() + TIMEOUT
    while not client.app.state.jobs.listeners(job_id) and time.monotonic() < deadline:
        time.sleep(0.01)
    client.post(f"/api/jobs/{blocker}/cancel")
    reader.join(TIMEOUT)

    kinds = [kind for kind, _ in stream]
    assert stream[0][0] == "status" and stream[0][1]["status"] == "queued" and stream[0][1]["position"] == 1
    assert kinds[-1] == "status" and stream[-1][1]["status"] == "done"
    assert "running" in [data["status"] for kind, data in stream if kind == "status"]
    steps = [data["step"] for kind, data in stream if kind == "progress"]
    assert steps == [1, 2, 3, 4]
    versions = [data["version"] for kind, data in stream if kind == "image"]
    assert len(versions) >= 2 and versions == sorted(set(versions))

    job = client.get(f"/api/jobs/{job_id}").json()
    assert job["status"] == "done" and job["position"] is None and job["error"] is None
    assert [h["step"] for h in job["history"]] == [0, 1, 2, 3]
    assert set(job["losses"]) >= {"total", "style", "content", "tv"}
    assert job["inputs"] == {"content": "notes.txt", "styles": ["style0.png", "style1.png"], "masks": []}
    assert job["settings"]["size"] == 64 and job["preset"] == "tutorial"
    assert job["result"]["width"] == 64 and job["expires"] is None  # kept until deleted

    image = client.get(f"/api/jobs/{job_id}/image")
    assert image.headers["content-type"] == "image/png" and "attachment" not in image.headers.get(
        "content-disposition", "")
    result = Image.open(io.BytesIO(image.content))
    assert result.size == (64, 43)
    assert json.loads(result.info["painterly"])["settings"]["steps"] == 4  # the settings travel with the file
    download = client.get(f"/api/jobs/{job_id}/image", params={"download": 1})
    assert 'filename="painterly-notes.png"' in download.headers["content-disposition"]
    assert Image.open(io.BytesIO(client.get(f"/api/jobs/{job_id}/content").content)).size == (64, 43)
    assert Image.open(io.BytesIO(client.get(f"/api/jobs/{job_id}/styles/1").content)).size == (64, 40)
    assert client.get(f"/api/jobs/{job_id}/styles/2").status_code == 404
    assert client.get(f"/api/jobs/{job_id}/masks/0").status_code == 404  # no masks in this run
    assert events(client, job_id) == [("status", job)]  # a finished job's stream is its final state


def half_mask(side: str, size: tuple[int, int] = (64, 43)) -> bytes:
    """A grayscale mask, white on the ``left`` or ``right`` half."""
    mask = Image.new("L", size, 0)
    w, h = size
    mask.paste(255, (0, 0, w // 2, h) if side == "left" else (w // 2, 0, w, h))
    return png(mask)


def test_masked_run_gives_each_style_its_region(client: TestClient) -> None:
    masks = [half_mask("left", (128, 86)), half_mask("right", (32, 20))]  # any size: fitted to the content
    response = client.post("/api/jobs", **upload(CONTENT.read_bytes(), [STYLE.read_bytes(), STYLE2.read_bytes()],
                                                 masks=masks))
    assert response.status_code == 202, response.text
    job = wait_for(client, response.json()["id"], lambda j: j["status"] in ("done", "failed"))
    assert job["status"] == "done", job["error"]
    assert job["inputs"]["masks"] == ["mask0.png", "mask1.png"]
    stored = Image.open(io.BytesIO(client.get(f"/api/jobs/{job['id']}/masks/1").content))
    assert stored.mode == "L" and stored.size == (64, 43)  # the content's size, as the run uses it
    assert stored.getpixel((0, 0)) == 0 and stored.getpixel((63, 0)) == 255
    assert client.get(f"/api/jobs/{job['id']}/masks/2").status_code == 404
    result = Image.open(io.BytesIO(client.get(f"/api/jobs/{job['id']}/image").content))
    assert json.loads(result.info["painterly"])["masks"] == ["mask0.png", "mask1.png"]


def test_creative_settings_reach_the_run(client: TestClient) -> None:
    creative = {"colour": "luminance", "style_scale": 0.5, "style_blend_weights": [0.7, 0.3],
                "style_layer_weights": [1.0, 2.0]}  # as many as FAST's style_layers (the preset has 5)
    response = client.post("/api/jobs", **upload(CONTENT.read_bytes(), [STYLE.read_bytes(), STYLE2.read_bytes()],
                                                 settings=creative))
    assert response.status_code == 202, response.text
    job = wait_for(client, response.json()["id"], lambda j: j["status"] in ("done", "failed"))
    assert job["status"] == "done", job["error"]
    assert {k: job["settings"][k] for k in creative} == creative
    style = Image.open(io.BytesIO(client.get(f"/api/jobs/{job['id']}/styles/0").content))
    assert max(style.size) == 32  # stored at the style scale: 0.5 x 64 px
    result = Image.open(io.BytesIO(client.get(f"/api/jobs/{job['id']}/image").content))
    assert json.loads(result.info["painterly"])["settings"]["style_blend_weights"] == [0.7, 0.3]


def test_queue_runs_one_job_at_a_time_and_cancels(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_queued=2)
    first = submit(client, LONG)
    second = submit(client, FAST)
    third = submit(client, FAST)
    assert client.post("/api/jobs", **upload(CONTENT.read_bytes())).status_code == 503  # the line is full
    wait_for(client, first, lambda j: j["status"] == "running" and j["step"] >= 1)
    assert client.get(f"/api/jobs/{first}/image").status_code == 200  # the image as it is now
    assert client.get(f"/api/jobs/{second}").json()["position"] == 1
    assert client.get(f"/api/jobs/{third}").json()["position"] == 2
    assert client.get(f"/api/jobs/{second}/image").status_code == 404  # nothing yet

    refused = client.delete(f"/api/jobs/{second}")  # deleting is not cancelling
    assert refused.status_code == 409 and "cancel it first" in refused.json()["detail"]
    queued = client.post(f"/api/jobs/{second}/cancel")
    assert queued.status_code == 200 and queued.json()["status"] == "cancelled"
    assert client.get(f"/api/jobs/{third}").json()["position"] == 1  # moved up at once
    running = client.post(f"/api/jobs/{first}/cancel")
    assert running.json()["status"] == "cancelled"  # its place is free at once

    done = wait_for(client, third, lambda j: j["status"] == "done")
    stopped = client.get(f"/api/jobs/{first}").json()
    assert stopped["status"] == "cancelled" and stopped["step"] < 2000 and done["started"] >= stopped["finished"]
    assert client.get(f"/api/jobs/{second}").json()["step"] == 0  # never ran

    late = client.post(f"/api/jobs/{third}/cancel")  # a late cancel leaves the result alone
    assert late.status_code == 409 and client.get(f"/api/jobs/{third}/image").status_code == 200
    assert client.delete(f"/api/jobs/{third}").status_code == 204  # deleting is its own action
    assert client.get(f"/api/jobs/{third}").status_code == 404
    assert client.get(f"/api/jobs/{first}/image").status_code == 200  # a cancelled run keeps its image


def test_finished_jobs_expire(make_client: Callable[..., TestClient]) -> None:
    client = make_client(job_ttl=60)
    job_id = submit(client)
    wait_for(client, job_id, lambda j: j["status"] == "done")
    root = client.app.state.jobs.root
    assert len(list(root.iterdir())) == 1
    client.app.state.jobs.ttl = 1e-6  # as if a minute had passed
    client.app.state.jobs.sweep(force=True)
    assert client.get(f"/api/jobs/{job_id}").status_code == 404
    assert list(root.iterdir()) == []


def test_disk_cap_deletes_old_results_then_refuses(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    jobs = client.app.state.jobs
    first = submit(client)
    wait_for(client, first, lambda j: j["status"] == "done")
    inputs = sum(p.stat().st_size for p in (jobs.root / first).glob("*.png") if p.name != "result.png")
    jobs.max_disk_bytes = int(inputs * 1.5)  # room for one job's inputs and a half
    second = submit(client, LONG)
    assert client.get(f"/api/jobs/{first}").status_code == 404  # the oldest result made room
    third = client.post("/api/jobs", **upload(CONTENT.read_bytes()))
    assert third.status_code == 507 and "disk" in third.json()["detail"]
    client.post(f"/api/jobs/{second}/cancel")
    assert sum(1 for _ in jobs.root.iterdir()) == 1


def test_unknown_jobs_are_404(client: TestClient) -> None:
    for path in ("/api/jobs/nope", "/api/jobs/nope/image", "/api/jobs/nope/events", "/api/jobs/nope/content",
                 "/api/jobs/nope/styles/0", "/api/jobs/..%2F..%2Fetc%2Fpasswd/image"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json()["detail"]
    assert client.delete("/api/jobs/nope").status_code == 404


# -- bad input: a 4xx naming the field, never a crash -----------------------------------------------------


def noise_png(w: int, h: int) -> bytes:
    return png(Image.frombytes("RGB", (w, h), os.urandom(w * h * 3)))


GOOD = CONTENT.read_bytes()
BAD_UPLOADS = {
    "no content": (upload(None), 422, "content", "content is missing"),
    "no style": ({"files": [("content", ("c.png", GOOD, "image/png"))]}, 422, "style", "style is missing"),
    "text as content": (upload(b"this is not an image\n"), 415, "content", "not an image"),
    "svg as style": (upload(GOOD, [b"<svg xmlns='http://www.w3.org/2000/svg'/>"]), 415, "style", "not an image"),
    "empty file": (upload(b""), 422, "content", "empty"),
    "truncated png": (upload(GOOD[: len(GOOD) // 2]), 422, "content", "truncated or corrupt"),
    "too many pixels": (upload(png(Image.new("1", (1500, 1000)))), 413, "content", "1,000,000 pixels"),
    "too small": (upload(png(Image.new("RGB", (8, 8)))), 422, "content", "too small"),
    "too thin at this size": (upload(png(Image.new("RGB", (400, 40)))), 422, "content", "too thin"),
    "style too thin": (upload(GOOD, [png(Image.new("RGB", (400, 20)))]), 422, "style", "too thin"),
    "style file too large": (upload(GOOD, [noise_png(120, 120)]), 413, "style", "larger than 0.03 MB"),
    "too many styles": (upload(GOOD, [GOOD] * 3), 422, "style", "at most 2 style images"),
    "settings not json": (upload(GOOD, settings="{size: 64"), 422, "settings", "not valid JSON"),
    "settings not an object": (upload(GOOD, settings="[64]"), 422, "settings", "JSON object"),
    "unknown setting": (upload(GOOD, settings={"sise": 64}), 422, "sise", "did you mean 'size'"),
    "unknown preset": (upload(GOOD, settings={"preset": "fastest"}), 422, "preset", "choose one of"),
    "steps zero": (upload(GOOD, settings={"steps": 0}), 422, "steps", "steps must be a whole number >= 1"),
    "size as text": (upload(GOOD, settings={"size": "big"}), 422, "size", "size must be"),
    "size over the server's": (upload(GOOD, settings={"size": 256}), 422, "size", "at most 128 px"),
    "steps over the server's": (upload(GOOD, settings={"steps": 101}), 422, "steps", "at most 100"),
    "unknown colour": (upload(GOOD, settings={"colour": "sepia"}), 422, "colour", "choose one of"),
    "unknown layer": (upload(GOOD, settings={"style_layers": ["block9_conv1"]}), 422, "style_layers", "unknown layer"),
    "layer weights": (upload(GOOD, settings={"style_layer_weights": [1, 2, 3]}), 422, "style_layer_weights",
                      "3 values but there are 2 style_layers"),
    "weights file": (upload(GOOD, settings={"weights": "/etc/passwd"}), 422, "weights", "cannot be set"),
    "device": (upload(GOOD, settings={"device": "cuda"}), 422, "device", "cannot be set"),
    "threads": (upload(GOOD, settings={"threads": 64}), 422, "threads", "cannot be set"),
    "tile size": (upload(GOOD, settings={"tile_size": 256}), 422, "tile_size", "cannot be set"),
    "cuda graphs": (upload(GOOD, settings={"cuda_graphs": "off"}), 422, "cuda_graphs", "cannot be set"),
    "init file": (upload(GOOD, settings={"init": "/etc/passwd"}), 422, "init", "init must be one of"),
    "blend weights": (upload(GOOD, settings={"style_blend_weights": [1, 2]}), 422, "style_blend_weights", "2 values"),
    "masks for fewer styles": (upload(GOOD, [GOOD, GOOD], masks=[half_mask("left")]), 422, "mask",
                               "got 1 mask for 2 style images"),
    "mask without style": (upload(GOOD, [GOOD], masks=[half_mask("left")] * 2), 422, "mask", "got 2 masks"),
    "all-black mask": (upload(GOOD, [GOOD, GOOD], masks=[half_mask("left"), png(Image.new("L", (64, 43)))]), 422,
                       "mask", "mask 2 is empty (all black)"),
    "text as mask": (upload(GOOD, masks=[b"left half\n"]), 415, "mask", "mask 1 is not an image"),
    "truncated mask": (upload(GOOD, masks=[half_mask("left")[:60]]), 422, "mask", "mask 1 is truncated"),
    "mask too many pixels": (upload(GOOD, masks=[png(Image.new("1", (1500, 1000)))]), 413, "mask",
                             "mask 1 is 1500x1000"),
    "mask file too large": (upload(GOOD, masks=[noise_png(120, 120)]), 413, "mask", "larger than 0.03 MB"),
    "mask as text": ({**upload(GOOD), "data": {"settings": json.dumps(FAST), "mask": "left"}}, 422, "mask",
                     "Expected UploadFile"),
}


@pytest.mark.parametrize("request_kwargs, status, field, message", BAD_UPLOADS.values(), ids=BAD_UPLOADS.keys())
def test_bad_input_is_refused_with_a_clear_message(make_client: Callable[..., TestClient], request_kwargs: dict,
                                                   status: int, field: str, message: str) -> None:
    client = make_client(max_upload_mb=0.03, max_pixels=1_000_000, max_styles=2, max_size=128, max_steps=100)
    response = client.post("/api/jobs", **request_kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["field"] == field and message in body["detail"], body
    assert list(client.app.state.jobs.root.iterdir()) == []  # nothing was stored


def test_oversized_request_is_refused_before_it_is_read(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_upload_mb=0.01, max_styles=1)
    response = client.post("/api/jobs", **upload(noise_png(400, 400)))
    assert response.status_code == 413 and "in all" in response.json()["detail"]


# -- the command --------------------------------------------------------------------------------------


def test_serve_help_lists_the_server_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        serve_main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--host", "--port", "--max-upload-mb", "--job-ttl", "--max-disk-mb", "--preview-interval"):
        assert option in out


def test_serve_reports_a_busy_port_in_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        code = serve_main(["--port", str(busy.getsockname()[1]), "--data", str(tmp_path)])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("painterly: error: cannot listen on 127.0.0.1:") and err.count("\n") == 1
