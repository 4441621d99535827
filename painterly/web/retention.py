"""How long finished runs are kept and how much disk all runs may use (:class:`Retention`).

A finished run expires ``ttl`` seconds after it ended (never if ``ttl`` is 0). While the runs'
folders pass the disk cap, the oldest finished runs are deleted; a new run that would pass it even
then is refused (:class:`StorageFull`).
"""

from __future__ import annotations

import time
from typing import Any

from .job import FINISHED
from .store import Store

SWEEP_EVERY = 5.0  # requests sweep at most this often


class StorageFull(Exception):
    """The job folders would pass the disk cap, even after deleting every finished job."""


class Retention:
    """Expiry and the disk cap over a store. Not locked itself: the queue calls it under its line's lock."""

    def __init__(self, store: Store, ttl: float, max_disk_bytes: int) -> None:
        self.store, self.ttl, self.max_disk_bytes = store, ttl, max_disk_bytes
        self.swept = 0.0  # time.monotonic() of the last sweep

    def shown(self, state: dict[str, Any], position: int | None) -> dict[str, Any]:
        """A stored state as the API shows it: its place in line (queued runs) and when it expires."""
        finished = state.get("finished")
        expires = finished + self.ttl if finished and self.ttl > 0 and state["status"] in FINISHED else None
        return {**{k: v for k, v in state.items() if k != "disk_bytes"}, "position": position, "expires": expires}

    def refusal(self, new_bytes: int) -> StorageFull | None:
        """Why a run of ``new_bytes`` more cannot be kept, or None."""
        if self.store.disk_bytes() + new_bytes > self.max_disk_bytes:
            return StorageFull("the server's disk space for runs is used up; delete old runs or try again later")
        return None

    def due(self) -> bool:
        """Whether a request's sweep is due (they read the store, so at most every :data:`SWEEP_EVERY` s)."""
        return time.monotonic() - self.swept >= SWEEP_EVERY

    def sweep(self, room_for: int = 0) -> None:
        """Delete expired runs, then the oldest finished ones until ``room_for`` more bytes fit the cap."""
        self.swept = time.monotonic()
        now = time.time()
        finished = self.store.finished(FINISHED)
        if self.ttl > 0:
            for job_id, when, _ in finished:
                if now - when >= self.ttl:
                    self.store.delete(job_id)
        used = self.store.disk_bytes()
        for job_id, _, size in finished:
            if used + room_for <= self.max_disk_bytes:
                break
            if self.store.load(job_id) is not None:
                self.store.delete(job_id)
                used -= size
