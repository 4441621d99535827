"""The studio under load, against ``painterly serve`` on 127.0.0.1 in a subprocess whose memory is
read from /proc: 20 concurrent uploads of the largest images the (lowered) limits allow stay under
a stated memory ceiling, and 100 tiny runs one after another leave its memory within 10%.

Both loops are bounded in count and time.
"""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("fastapi")

DATA = Path(__file__).parent / "data"
CONTENT = DATA / "content" / "chelsea.png"
STYLE = DATA / "styles" / "great_wave.png"
TINY = {"preset": "tutorial", "size": 32, "steps": 1, "start_size": 0, "precision": "fp32",
        "content_layers": ["block1_conv2"], "style_layers": ["block1_conv1"], "style_weight": 1.0}
#: The load test's limits: 3 images of 2000x2000 per request (content, style, mask) = the request's pixels.
SIDE = 2000
LOAD_LIMITS = ["--max-styles", "1", "--max-pixels", str(SIDE * SIDE), "--max-request-pixels", str(3 * SIDE * SIDE),
               "--max-upload-mb", "1", "--decode-workers", "2", "--max-queued", "25"]
#: Peak memory the 20 concurrent uploads may add to the server. Decoded all at once, their 60 million
#: pixels would take well over 1 GB (3 bytes a pixel, and Pillow's copies); one at a time per request
#: and two requests at a time, about 60-100 MB were measured (the runs that start meanwhile included).
LOAD_CEILING_MB = 250


def serve(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    log = tmp_path / "server.log"
    command = [sys.executable, "-m", "painterly", "serve", "--port", "0", "--threads", "1", "--preview-interval", "1",
               "--data", str(tmp_path / "data"), *extra]
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not (found := re.search(r"http://127\.0\.0\.1:\d+/", log.read_text())):
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"painterly serve did not start:\n{log.read_text()}")
        time.sleep(0.1)
    return process, found.group(0)


@pytest.fixture
def server(request, tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    process, url = serve(tmp_path, *getattr(request, "param", ()))
    yield process, url
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


def memory_kb(pid: int, key: str) -> int:
    """VmRSS (resident now) or VmHWM (peak) of a process, in kB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{key}:\s+(\d+) kB", status, re.M).group(1))


def reset_peak(pid: int) -> None:
    """Start VmHWM afresh from the current resident size (Linux: clear_refs 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def post_job(url: str, files: list[tuple[str, str, bytes]], settings: dict) -> dict:
    """A multipart POST with urllib (no client library needed); the JSON answer with its HTTP status as "http"."""
    boundary = uuid.uuid4().hex
    body = io.BytesIO()
    for field, name, data in files:
        body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
                   "Content-Type: image/png\r\n\r\n".encode())
        body.write(data + b"\r\n")
    body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="settings"\r\n\r\n{json.dumps(settings)}\r\n'
               f"--{boundary}--\r\n".encode())
    request = urllib.request.Request(url + "api/jobs", body.getvalue(), method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return {**json.load(answer), "http": answer.status}
    except urllib.error.HTTPError as error:
        return {**json.load(error), "http": error.code}


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.load(answer)


def wait_done(url: str, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = get(f"{url}api/jobs/{job_id}")
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.02)
    raise AssertionError(f"run {job_id} did not finish in {timeout} s")


def flat_png(mode: str, value) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (SIDE, SIDE), value).save(buffer, format="PNG")
    return buffer.getvalue()


def tiny_files() -> list[tuple[str, str, bytes]]:
    return [("content", "c.png", CONTENT.read_bytes()), ("style", "s.png", STYLE.read_bytes())]


@pytest.mark.parametrize("server", [LOAD_LIMITS], indirect=True)
def test_twenty_concurrent_uploads_of_the_largest_images_stay_under_the_ceiling(server) -> None:
    process, url = server
    assert wait_done(url, post_job(url, tiny_files(), TINY)["id"])["status"] == "done"  # torch warmed up
    files = [("content", "c.png", flat_png("RGB", (200, 120, 40))), ("style", "s.png", flat_png("RGB", "navy")),
             ("mask", "m.png", flat_png("L", 255))]
    assert all(len(data) < 2**20 for _, _, data in files)  # under --max-upload-mb 1: "small" requests
    before = memory_kb(process.pid, "VmRSS")
    reset_peak(process.pid)
    answers: list[dict] = []
    threads = [threading.Thread(target=lambda: answers.append(post_job(url, files, TINY))) for _ in range(20)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert time.monotonic() - started < 120 and len(answers) == 20
    assert all(a["http"] == 202 for a in answers), [a for a in answers if a["http"] != 202][:1]
    peak = memory_kb(process.pid, "VmHWM")
    added = (peak - before) / 1024
    assert added < LOAD_CEILING_MB, f"20 concurrent uploads added {added:.0f} MB at peak"
    for answer in answers:  # shorten the line behind them
        request = urllib.request.Request(f"{url}api/jobs/{answer['id']}/cancel", b"", method="POST")
        try:
            urllib.request.urlopen(request, timeout=30).close()
        except urllib.error.HTTPError as error:
            assert error.code == 409  # it had finished already
    over = post_job(url, [*files, ("style", "s2.png", files[1][2])], TINY)  # one more image than allowed
    assert over["http"] == 422 and over["field"] == "style"


@pytest.mark.slow
def test_a_hundred_tiny_runs_leave_memory_within_ten_percent(server) -> None:
    process, url = server
    started = time.monotonic()

    def run_one() -> None:
        answer = post_job(url, tiny_files(), TINY)
        assert answer["http"] == 202, answer
        assert wait_done(url, answer["id"])["status"] == "done"

    for _ in range(10):  # warm-up: torch, the allocator, SQLite's pages
        run_one()
    baseline = memory_kb(process.pid, "VmRSS")
    for _ in range(100):
        run_one()
        assert time.monotonic() - started < 600, "the soak test took too long"
    after = memory_kb(process.pid, "VmRSS")
    growth = (after - baseline) / baseline
    assert growth < 0.10, f"memory grew {growth:.1%} over 100 runs ({baseline / 1024:.0f} -> {after / 1024:.0f} MB)"
    assert len(get(f"{url}api/jobs?limit=200")["jobs"]) == 110  # all kept, in the store
