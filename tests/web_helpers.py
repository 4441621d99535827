"""Helpers the studio's tests share."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

TIMEOUT = 60.0
#: Debian's Chromium, driven by Playwright (which cannot download browsers here).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-gpu"]


def missing(what: str) -> None:
    """Skip, or fail under CI: the browser tests must run there."""
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {what} is missing; the browser tests must run in CI")
    pytest.skip(f"{what} is missing")


@contextmanager
def chromium() -> Iterator[Any]:
    """Headless Chromium through Playwright, closed at the end (skips, or fails under CI, if missing)."""
    if not CHROMIUM.exists():
        missing(str(CHROMIUM) + " (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright for Python (pip install playwright)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def wait_for(client: Any, job_id: str, ok: Callable[[dict[str, Any]], bool],
             timeout: float = TIMEOUT) -> dict[str, Any]:
    """Poll ``/api/jobs/{job_id}`` until ``ok(job)``; fail with the last state after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if ok(job):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never got there; last state: {job}")


@contextmanager
def app_clients(folder: Path) -> Iterator[Callable[..., Any]]:
    """``make(**changes)`` starts the studio's app under a TestClient with those :class:`WebConfig`
    changes (no preview throttle, one thread, its own data folder under ``folder``); ``paint=f`` makes
    the app paint with ``f`` instead of :func:`painterly.stylize`. Every app started is shut down at the end."""
    from fastapi.testclient import TestClient

    from painterly.web.server import WebConfig, create_app

    opened: list[Any] = []

    def make(paint: Callable[..., Any] | None = None, **changes: Any) -> Any:
        config = WebConfig(**{"preview_interval": 0.0, "threads": 1, "data": str(folder / f"data{len(opened)}"),
                              **changes})
        client = TestClient(create_app(config) if paint is None else create_app(config, paint=paint))
        client.__enter__()
        opened.append(client)
        return client

    try:
        yield make
    finally:
        for client in opened:
            client.__exit__(None, None, None)


#: How long a browser test waits for a condition on the page by default (a short run's result).
UNTIL_SECONDS = 90.0
#: How long ``painterly serve`` may take to print its address.
STARTUP_SECONDS = 60.0


def until(page: Any, expression: str, timeout: float = UNTIL_SECONDS) -> None:
    """Poll a JavaScript expression until it is true (the page's CSP forbids wait_for_function's eval)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"never true: {expression}")
        time.sleep(0.05)


def start_serve(options: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    """``painterly serve OPTIONS`` in a subprocess writing to ``log``; (the process, the URL it prints)."""
    command = [sys.executable, "-m", "painterly", "serve", *options]
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + STARTUP_SECONDS
    while not (found := re.search(r"http://127\.0\.0\.1:\d+/", log.read_text())):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"painterly serve did not start:\n{log.read_text()}")
        time.sleep(0.1)
    return process, found.group(0)
