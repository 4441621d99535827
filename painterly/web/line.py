"""The runs in memory (:class:`Line`): those waiting, in order, and the one running, with their listeners.

Finished runs live only in the store. One lock, :attr:`Line.lock`, guards the line, the jobs in it
and the retention sweeps; methods whose names end in ``_locked`` expect it held.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

from .job import Job
from .retention import Retention


class QueueFull(Exception):
    """Too many jobs are waiting already."""


class Line:
    """The waiting line, the running job, and the events their listeners get."""

    def __init__(self, retention: Retention, max_queued: int) -> None:
        self.retention, self.max_queued = retention, max_queued
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)  # notified when a job joins the line or the queue closes
        self.jobs: dict[str, Job] = {}  # queued and running only
        self.waiting: collections.deque[Job] = collections.deque()
        self.current: Job | None = None
        self.closed = False  # the queue is closed: the worker ends
        self.stopping = False  # the server is stopping: streams end at once

    def refusal_locked(self) -> QueueFull | None:
        """Why one more run cannot wait in line, or None."""
        if len(self.waiting) >= self.max_queued:
            return QueueFull(f"{len(self.waiting)} runs are waiting already; try again later")
        return None

    def append_locked(self, job: Job) -> None:
        self.jobs[job.id] = job
        self.waiting.append(job)

    def leave_locked(self, job: Job) -> None:
        """A waiting job leaves the line; those behind it learn their new places."""
        self.waiting.remove(job)
        self.jobs.pop(job.id)
        self.announce_positions_locked()

    def snapshot_locked(self, job: Job) -> dict[str, Any]:
        """The job's state as the API shows it, with its place in line."""
        position = self.waiting.index(job) + 1 if job.status == "queued" and job in self.waiting else None
        return self.retention.shown(job.state(), position)

    def publish_locked(self, job: Job, kind: str, data: Any) -> None:
        """Send an event to every listener of ``job`` (from any thread: each gets it on its own loop)."""
        for loop, inbox in list(job.listeners):
            try:
                loop.call_soon_threadsafe(inbox.put_nowait, (kind, data))
            except RuntimeError:  # that listener's event loop is gone
                job.listeners.remove((loop, inbox))

    def publish_status_locked(self, job: Job) -> None:
        self.publish_locked(job, "status", self.snapshot_locked(job))

    def announce_positions_locked(self) -> None:
        for job in self.waiting:
            self.publish_status_locked(job)

    def close_streams_locked(self) -> None:
        """End the live streams of every job in memory."""
        for job in self.jobs.values():
            self.publish_locked(job, "close", None)
