"""The studio's API for iterating, browsing and planning, and the small holes of issue 33: a plan
before Start (the same checks as a submitted run), a rerun with changed settings, history a page at
a time with a state filter, the "barely changed" hint, no 500 for any string, ``Retry-After`` on a
full queue, upload names cut to their last path component after decoding, the settings embedded in
an interrupted run's image after a kill, and a quick, quiet stop on SIGTERM with a page listening.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from web_helpers import app_clients, wait_for  # noqa: E402

from painterly.engine.settings import FIELD_NAMES, Settings  # noqa: E402
from painterly.errors import ImageError  # noqa: E402
from painterly.output import metadata  # noqa: E402
from painterly.web.checks import display_name  # noqa: E402
from painterly.web.server import REFUSED  # noqa: E402
from painterly.web.worker import BARELY_CHANGED  # noqa: E402

DATA = Path(__file__).parent / "data"
CONTENT = DATA / "content" / "chelsea.png"
STYLE = DATA / "styles" / "great_wave.png"
FAST = {"preset": "tutorial", "size": 64, "steps": 4, "start_size": 0, "precision": "fp32",
        "content_layers": ["block2_conv2"], "style_layers": ["block1_conv1", "block2_conv1"], "style_weight": 1.0}
LONG = {**FAST, "steps": 2000}
STARTUP_SECONDS = 60


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    with app_clients(tmp_path) as make:
        yield make


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


def upload(settings: Any = None, content_name: str = "chelsea.png") -> dict[str, Any]:
    files = [("content", (content_name, CONTENT.read_bytes(), "image/png")),
             ("style", ("wave.png", STYLE.read_bytes(), "image/png"))]
    text = settings if isinstance(settings, str) else json.dumps({**FAST, **(settings or {})})
    return {"files": files, "data": {"settings": text}}


def submit(client: TestClient, settings: dict[str, Any] | None = None, **kwargs: Any) -> str:
    response = client.post("/api/jobs", **upload(settings, **kwargs))
    assert response.status_code == 202, response.text
    return response.json()["id"]


def plan_of(client: TestClient, settings: Any, styles: int = 1) -> dict[str, Any]:
    with Image.open(CONTENT) as image:
        w, h = image.size
    text = settings if isinstance(settings, str) else json.dumps(settings)
    response = client.post("/api/plan", json={"settings": text, "width": w, "height": h, "styles": styles})
    assert response.status_code == 200, response.text
    return response.json()


# -- plan before Start ----------------------------------------------------------------------------


def test_the_plan_before_start_is_the_one_a_run_gets(client: TestClient) -> None:
    planned = plan_of(client, FAST)
    assert planned["refused"] is None and planned["plan"]["total_steps"] == 4
    assert planned["plan"]["peak_bytes"] > 0 and planned["seconds"] is None or planned["seconds"] > 0
    job = client.get(f"/api/jobs/{submit(client)}").json()
    assert job["plan"]["total_steps"] == planned["plan"]["total_steps"]
    assert job["plan"]["peak_bytes"] == planned["plan"]["peak_bytes"]
    wait_for(client, job["id"], lambda j: j["status"] == "done", timeout=90)
    measured = plan_of(client, {**FAST, "steps": 8})  # after a run, the time is this server's own measure
    assert measured["seconds"] is not None and measured["seconds"] > 0


@pytest.mark.parametrize("changes, field", [
    ({"size": 5000}, "size"),  # a server limit
    ({"steps": 1500, "start_size": 32, "scale_factor": 2}, "steps"),  # 2 scales x 1500 > --max-total-steps
    ({"style_scale": 40.0}, "style_scale"),  # --max-style-size
    ({"colour": "purple"}, "colour"),  # the settings' own check
    ({"device": "cpu"}, "device"),  # not for the web
])
def test_the_plan_refuses_what_a_run_would_be_refused(make_client: Callable[..., TestClient],
                                                      changes: dict[str, Any], field: str) -> None:
    client = make_client(max_total_steps=2000)
    planned = plan_of(client, {**FAST, **changes})
    refused = client.post("/api/jobs", **upload(changes))
    assert refused.status_code == 422
    assert planned["plan"] is None and planned["refused"] == refused.json()
    assert planned["refused"]["field"] == field


def test_the_plan_says_when_memory_is_over_the_budget(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_memory_mb=1)
    planned = plan_of(client, FAST)
    assert planned["refused"]["field"] == "size" and "GiB of memory" in planned["refused"]["detail"]
    assert client.post("/api/jobs", **upload()).json() == planned["refused"]
    assert client.post("/api/plan", json={"settings": "{}", "width": 0, "height": 10}).status_code == 422


# -- iterate ------------------------------------------------------------------------------------------


def test_a_rerun_can_change_settings_and_is_checked(client: TestClient) -> None:
    first = submit(client, {"strength": 0.5})
    wait_for(client, first, lambda j: j["status"] == "done", timeout=90)
    more = client.post(f"/api/jobs/{first}/rerun", json={"settings": json.dumps({"strength": 0.75})})
    assert more.status_code == 202, more.text
    again = client.get(f"/api/jobs/{more.json()['id']}").json()
    assert again["settings"]["strength"] == 0.75 and again["rerun_of"] == first
    assert again["settings"]["steps"] == 4 and again["inputs"] == client.get(f"/api/jobs/{first}").json()["inputs"]
    for changes, field in (({"strength": "more"}, "strength"), ({"device": "cpu"}, "device"),
                           ({"size": 99999}, "size"), ({"steps": 1e308}, "steps")):
        refused = client.post(f"/api/jobs/{first}/rerun", json={"settings": json.dumps(changes)})
        assert refused.status_code == 422 and refused.json()["field"] == field, refused.text
    plain = client.post(f"/api/jobs/{first}/rerun")  # no body: the same run again
    assert plain.status_code == 202
    assert client.get(f"/api/jobs/{plain.json()['id']}").json()["settings"]["strength"] == 0.5
    for job_id in (more.json()["id"], plain.json()["id"]):
        client.post(f"/api/jobs/{job_id}/cancel")


def test_a_result_that_barely_changed_says_so() -> None:
    # A 2-step run at 64 px (the default preset) leaves the photo almost as it was.
    from painterly.web.worker import mean_change

    with Image.open(CONTENT) as photo:
        photo = photo.convert("RGB")
    assert mean_change(photo, photo) == 0.0
    assert mean_change(photo, Image.new("RGB", (32, 20), "black")) > 0.2
    assert BARELY_CHANGED < 0.05


def test_a_two_step_run_reports_that_it_barely_changed(client: TestClient) -> None:
    job_id = submit(client, {"steps": 2})
    done = wait_for(client, job_id, lambda j: j["status"] == "done", timeout=90)
    assert done["result"]["barely_changed"] is True and done["result"]["change"] < BARELY_CHANGED


def events(client: TestClient, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    found, kind = [], None
    with client.stream("GET", f"/api/jobs/{job_id}/events") as response:
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[len("event: "):]
            elif line.startswith("data: "):
                found.append((kind, json.loads(line[len("data: "):])))
    return found


@pytest.mark.slow  # timing: run it on a machine that is not busy with other work
def test_the_eta_is_right_within_30_percent_from_the_second_step(client: TestClient) -> None:
    job_id = submit(client, {"size": 128, "steps": 16})
    steps = [data for kind, data in events(client, job_id) if kind == "progress"]
    assert steps[0]["step"] == 1 and steps[0]["eta"] is None  # one step is the warm-up: no guess
    end = steps[-1]["elapsed"]
    for step in steps[1:]:
        left = end - step["elapsed"]
        if left >= 0.25 * end:  # near the end a few milliseconds are a large share
            assert abs(step["eta"] - left) <= 0.3 * left, (step["step"], step["eta"], left)


# -- the gallery ------------------------------------------------------------------------------------


def test_history_comes_a_page_at_a_time_and_filters_by_state(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_queued=5)
    running = submit(client, LONG)
    queued = [submit(client) for _ in range(3)]
    for job_id in queued[:2]:
        client.post(f"/api/jobs/{job_id}/cancel")
    everything = client.get("/api/jobs").json()
    assert everything["total"] == 4 and [j["id"] for j in everything["jobs"]] == [*reversed(queued), running]
    page = client.get("/api/jobs?limit=2&offset=1").json()
    assert page["total"] == 4 and [j["id"] for j in page["jobs"]] == [queued[1], queued[0]]
    cancelled = client.get("/api/jobs?status=cancelled").json()
    assert cancelled["total"] == 2 and {j["id"] for j in cancelled["jobs"]} == set(queued[:2])
    going = client.get("/api/jobs?status=queued,running").json()
    assert going["total"] == 2
    bad = client.get("/api/jobs?status=finished")
    assert bad.status_code == 422 and bad.json()["field"] == "status" and "done" in bad.json()["detail"]
    for job_id in (running, queued[2]):
        client.post(f"/api/jobs/{job_id}/cancel")


# -- the small holes --------------------------------------------------------------------------------


STRING_FIELDS = [name for name in FIELD_NAMES if name not in REFUSED
                 and isinstance(getattr(Settings(), name), (str, tuple))]


@pytest.mark.parametrize("key", [*STRING_FIELDS, "preset", "\ud800"])
def test_no_string_gives_a_500(client: TestClient, key: str) -> None:
    value: Any = "\ud800" if not isinstance(getattr(Settings(), key, ""), tuple) else ["\ud800"]
    text = json.dumps({**FAST, key: value})  # ASCII JSON text: "\\ud800" as the page could send it
    for response in (client.post("/api/jobs", **upload(text)),
                     client.post("/api/plan", json={"settings": text, "width": 64, "height": 64})):
        assert response.status_code in (200, 422), response.text
        answer = response.json()
        refusal = answer.get("refused") or answer
        assert response.status_code == 200 or refusal["field"] in (key, "\\ud800", "preset"), refusal
        assert refusal["detail"], refusal


def test_a_full_queue_says_when_to_try_again(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_queued=1)
    running = submit(client, LONG)
    wait_for(client, running, lambda j: j["status"] == "running")
    waiting = submit(client)
    full = client.post("/api/jobs", **upload())
    assert full.status_code == 503 and 5 <= int(full.headers["retry-after"]) <= 600
    again = client.post(f"/api/jobs/{running}/rerun")
    assert again.status_code == 503 and "retry-after" in again.headers
    for job_id in (waiting, running):
        client.post(f"/api/jobs/{job_id}/cancel")


def test_names_keep_their_last_path_component_after_decoding(client: TestClient) -> None:
    assert display_name("holiday/cat.png", "x") == "cat.png"
    assert display_name("C:\\Users\\me\\cat.png", "x") == "cat.png"
    assert display_name('my%22best%22 cat.png', "x") == 'my"best" cat.png'  # a browser's escaped quotes
    assert display_name("evil%0A/..%0D/cat.png", "x") == "cat.png"  # decoded first, then cut
    assert display_name("100%41.png", "x") == "100%41.png"  # only the form's own escapes are decoded
    assert display_name("a\u202e/b.png", "x") == "b.png"
    job_id = submit(client, content_name="photos/2024/my%22cat%22.png")
    assert client.get(f"/api/jobs/{job_id}").json()["inputs"]["content"] == 'my"cat".png'
    wait_for(client, job_id, lambda j: j["status"] == "done", timeout=90)


# -- the server as a process: kill -9 and SIGTERM ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Served:
    """``painterly serve`` in a subprocess on 127.0.0.1 over one data folder."""

    def __init__(self, data: Path, log: Path) -> None:
        self.data, self.log, self.port = data, log, free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "painterly", "serve", "--port", str(self.port), "--preview-interval", "0",
                   "--threads", "1", "--data", str(self.data)]
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_SECONDS
        while "painterly studio:" not in self.log.read_text():
            assert self.process.poll() is None and time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url(path), timeout=10) as response:
            return json.loads(response.read())

    def post_run(self, settings: dict[str, Any]) -> str:
        boundary = "painterly-test-boundary"
        parts = []
        for field, name, data in (("content", "chelsea.png", CONTENT.read_bytes()),
                                  ("style", "wave.png", STYLE.read_bytes())):
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
                         f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n")
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="settings"\r\n\r\n'
                     f"{json.dumps(settings)}\r\n--{boundary}--\r\n".encode())
        request = urllib.request.Request(self.url("/api/jobs"), data=b"".join(parts), method="POST",
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["id"]

    def wait(self, job_id: str, ok: Callable[[dict[str, Any]], bool], timeout: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not ok(job := self.get(f"/api/jobs/{job_id}")):
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        return job

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = Served(tmp_path / "data", tmp_path / "server.log")
    server.start()
    yield server
    server.stop()


def test_a_killed_runs_image_keeps_its_settings(served: Served, tmp_path: Path) -> None:
    job_id = served.post_run(LONG)
    served.wait(job_id, lambda j: j["step"] >= 3)
    time.sleep(1.5)  # the running run's image is saved once a second
    served.process.send_signal(signal.SIGKILL)
    served.process.wait(timeout=10)
    served.start()
    job = served.get(f"/api/jobs/{job_id}")
    assert job["status"] == "interrupted"
    record = saved_record(served, job_id, tmp_path / "interrupted.png")
    assert record["settings"]["steps"] == 2000 and record["settings"]["size"] == 64
    assert record["stopped"] is True and record["content"] == "chelsea.png"


def saved_record(served: Served, job_id: str, path: Path) -> dict[str, Any]:
    with urllib.request.urlopen(served.url(f"/api/jobs/{job_id}/image?download=1"), timeout=10) as response:
        path.write_bytes(response.read())
    return metadata.read(path)


def test_a_cancelled_runs_image_keeps_its_settings(client: TestClient, tmp_path: Path) -> None:
    job_id = submit(client, LONG)
    wait_for(client, job_id, lambda j: j["step"] >= 2, timeout=180)
    client.post(f"/api/jobs/{job_id}/cancel")
    saved, deadline = tmp_path / "cancelled.png", time.monotonic() + 90
    while True:  # the worker writes the result a moment after the cancel
        saved.write_bytes(client.get(f"/api/jobs/{job_id}/image?download=1").content)
        try:
            record = metadata.read(saved)
            break
        except ImageError:
            assert time.monotonic() < deadline, "the cancelled run's image never had its settings"
            time.sleep(0.1)
    assert record["settings"]["steps"] == 2000 and record["stopped"] is True


def test_sigterm_with_a_page_listening_stops_at_once_and_quietly(served: Served, tmp_path: Path) -> None:
    job_id = served.post_run(LONG)
    served.wait(job_id, lambda j: j["step"] >= 2)
    stream = urllib.request.urlopen(served.url(f"/api/jobs/{job_id}/events"), timeout=30)  # a page following it
    assert stream.readline().startswith(b"retry:")
    started = time.monotonic()
    served.process.send_signal(signal.SIGTERM)
    served.process.wait(timeout=15)
    took = time.monotonic() - started
    stream.close()
    log = served.log.read_text()
    assert served.process.returncode == 0, log
    assert took < 1.0, f"SIGTERM took {took:.1f} s:\n{log}"
    assert "Traceback" not in log and "ERROR" not in log, log
    assert re.search(r"painterly studio: stopped", log)
    served.start()  # the run is interrupted, its image kept with its settings
    assert served.get(f"/api/jobs/{job_id}")["status"] == "interrupted"
    record = saved_record(served, job_id, tmp_path / "stopped.png")
    assert record["settings"]["steps"] == 2000 and record["stopped"] is True
