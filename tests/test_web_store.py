"""The studio keeps its work: runs in SQLite in the data folder survive a restart (finished ones with
their images, a running one as interrupted and rerunnable, queued ones queued again), a killed
server's leftovers are cleaned at start, and two studios never share a data folder."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient
from web_helpers import wait_for  # noqa: E402

from painterly.web.server import WebConfig, create_app, serve_main
from painterly.web.store import DB_FILE, DataFolderBusy, Store

DATA = Path(__file__).parent / "data"
CONTENT = DATA / "content" / "chelsea.png"
STYLE = DATA / "styles" / "great_wave.png"
FAST = {"preset": "tutorial", "size": 64, "steps": 3, "start_size": 0, "precision": "fp32",
        "content_layers": ["block2_conv2"], "style_layers": ["block1_conv1"], "style_weight": 1.0}
LONG = {**FAST, "steps": 2000}
TIMEOUT = 60.0


def start(folder: Path, **changes: Any) -> TestClient:
    client = TestClient(create_app(WebConfig(preview_interval=0.0, threads=1, data=str(folder), **changes)))
    client.__enter__()
    return client


def submit(client: TestClient, settings: dict[str, Any]) -> str:
    files = [("content", ("chelsea.png", CONTENT.read_bytes(), "image/png")),
             ("style", ("wave.png", STYLE.read_bytes(), "image/png"))]
    answer = client.post("/api/jobs", files=files, data={"settings": json.dumps(settings)})
    assert answer.status_code == 202, answer.text
    return answer.json()["id"]




def test_a_restart_keeps_finished_runs_interrupts_the_running_one_and_requeues_the_rest(tmp_path: Path) -> None:
    folder = tmp_path / "studio"
    first = start(folder)
    done = submit(first, FAST)
    wait_for(first, done, lambda j: j["status"] == "done")
    image = first.get(f"/api/jobs/{done}/image").content
    running = submit(first, LONG)
    queued = submit(first, FAST)
    wait_for(first, running, lambda j: j["step"] >= 2)
    first.__exit__(None, None, None)  # the server stops mid-run

    second = start(folder)
    try:
        assert second.get(f"/api/jobs/{done}").json()["status"] == "done"
        assert second.get(f"/api/jobs/{done}/image").content == image
        stopped = second.get(f"/api/jobs/{running}").json()
        assert stopped["status"] == "interrupted" and "rerun" in stopped["error"] and stopped["step"] >= 2
        assert second.get(f"/api/jobs/{running}/image").status_code == 200  # the image it got to
        assert wait_for(second, queued, lambda j: j["status"] == "done")["step"] == 3  # queued again, and ran
        listed = [job["id"] for job in second.get("/api/jobs").json()["jobs"]]
        assert listed == [queued, running, done] and "history" not in second.get("/api/jobs").json()["jobs"][0]

        again = second.post(f"/api/jobs/{running}/rerun")
        assert again.status_code == 202, again.text
        rerun = again.json()["id"]
        second.post(f"/api/jobs/{rerun}/cancel")
        job = second.get(f"/api/jobs/{rerun}").json()
        assert job["rerun_of"] == running and job["settings"]["steps"] == 2000
        assert job["inputs"] == stopped["inputs"]
        assert second.delete(f"/api/jobs/{running}").status_code == 204
        assert second.get(f"/api/jobs/{running}").status_code == 404
        assert not (folder / "runs" / running).exists()
        assert second.post("/api/jobs/nope/rerun").status_code == 404
    finally:
        second.__exit__(None, None, None)


def test_a_killed_servers_leftovers_are_cleaned_at_start(tmp_path: Path) -> None:
    folder = tmp_path / "studio"
    client = start(folder)
    kept = submit(client, FAST)
    wait_for(client, kept, lambda j: j["status"] == "done")
    client.__exit__(None, None, None)
    # What a kill -9 leaves: a row still 'running', a folder never recorded, a half-written file.
    with sqlite3.connect(folder / DB_FILE) as db:
        (state,) = db.execute("SELECT state FROM runs WHERE id = ?", (kept,)).fetchone()
        crashed = {**json.loads(state), "id": "crashed", "status": "running", "created": time.time()}
        db.execute("INSERT INTO runs (id, created, status, finished, disk_bytes, state) VALUES (?, ?, ?, ?, ?, ?)",
                   ("crashed", crashed["created"], "running", None, 0, json.dumps(crashed)))
    (folder / "runs" / "crashed").mkdir()
    (folder / "runs" / "orphan").mkdir()
    (folder / "runs" / "orphan" / "content.png").write_bytes(b"x")
    (folder / "runs" / kept / ".result.part.abc123.png").write_bytes(b"half")

    client = start(folder)
    try:
        assert not (folder / "runs" / "orphan").exists()
        assert not (folder / "runs" / kept / ".result.part.abc123.png").exists()
        assert (folder / "runs" / kept / "result.png").exists()
        assert client.get("/api/jobs/crashed").json()["status"] == "interrupted"
    finally:
        client.__exit__(None, None, None)


def test_two_studios_never_share_a_data_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store(tmp_path)
    try:
        with pytest.raises(DataFolderBusy):
            Store(tmp_path)
        assert serve_main(["--port", "0", "--data", str(tmp_path)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("painterly: error: another painterly studio is using") and err.count("\n") == 1
    finally:
        store.close()
    Store(tmp_path).close()  # free again once the first has closed


def test_default_data_folder_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from painterly.web.store import default_data_folder

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_data_folder() == tmp_path / "painterly" / "studio"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_folder() == tmp_path / "home" / ".local" / "share" / "painterly" / "studio"
