"""A run's live events as server-sent events (:func:`stream`).

``status`` (the whole state, first and on every change), ``progress`` (each step), ``image`` (a new
image to fetch). The stream ends after a status that is final; a comment line every few seconds
keeps proxies awake.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from .job import FINISHED
from .line import Line

KEEPALIVE_SECONDS = 15.0


async def stream(line: Line, job_id: str, stored: Callable[[str], dict[str, Any] | None]) -> AsyncIterator[str]:
    """The events of ``job_id``; a run no longer in the line (or a stopping server) gets one status,
    ``stored(job_id)``, and the end."""
    inbox: asyncio.Queue = asyncio.Queue()
    listener = (asyncio.get_running_loop(), inbox)
    with line.lock:
        job = line.jobs.get(job_id)
        if job is not None:
            job.listeners.append(listener)
            first = line.snapshot_locked(job)
        stopping = line.stopping
    if job is None or stopping:
        yield "retry: 2000\n" + sse("status", stored(job_id))
        return
    try:
        yield "retry: 2000\n" + sse("status", first)
        if first["status"] in FINISHED:
            return
        while True:
            try:
                kind, data = await asyncio.wait_for(inbox.get(), KEEPALIVE_SECONDS)
            except asyncio.TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if kind == "close":
                return
            yield sse(kind, data)
            if kind == "status" and data["status"] in FINISHED:
                return
    finally:
        with line.lock:
            if listener in job.listeners:
                job.listeners.remove(listener)


def sse(kind: str, data: Any) -> str:
    """One server-sent event: its kind and its data as JSON."""
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
