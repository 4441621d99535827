"""Helpers the studio's tests share."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

TIMEOUT = 60.0


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
