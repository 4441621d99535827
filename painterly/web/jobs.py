"""The web studio's job queue (:class:`JobQueue`): one optimization at a time, live events, runs kept in the store.

The queue puts together the pieces of its own modules: the run's folder and files
(:mod:`~painterly.web.run_files`), a queued or running run (:mod:`~painterly.web.job`), the line of
runs in memory with their listeners (:mod:`~painterly.web.line`), expiry and the disk cap
(:mod:`~painterly.web.retention`), the worker thread (:mod:`~painterly.web.worker`), the event
streams (:mod:`~painterly.web.events`) and what happens at start (:mod:`~painterly.web.recovery`).
Queued and running runs are held in memory; finished ones live only in the
:class:`~painterly.web.store.Store`.

A run's time before it starts (:meth:`JobQueue.estimate_seconds`) is its plan's cost at the rate the
last finished run measured. Cancel is immediate for the queue: the run's status says ``cancelled`` at
once and the next run may start, while the worker stops the cancelled one.
"""

from __future__ import annotations

import math
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..engine.plan import Plan
from ..engine.run import stylize
from ..engine.settings import Machine, Settings
from . import events
from .job import ACTIVE, Job
from .line import Line
from .recovery import Planner, keep_previews, requeued
from .retention import Retention
from .run_files import CONTENT_FILE, Named, mask_file, named_inputs, stored_image, style_file, write_inputs
from .store import Store, folder_bytes
from .worker import Paint, Worker

RETRY_SECONDS = (5, 600)  # the range of a full queue's Retry-After


class JobQueue:
    """Runs by id: the waiting line and the worker thread in memory, every run in the store.

    ``planner`` plans a run at the server's precision and limits (runs queued again at start are
    planned anew); ``paint`` is the function that paints a run (:data:`~painterly.web.worker.Paint`).
    """

    def __init__(
        self,
        store: Store,
        *,
        ttl: float = 0.0,
        max_disk_bytes: int = 1 << 30,
        max_queued: int = 20,
        preview_interval: float = 0.3,
        device: str = "auto",
        threads: int = 0,
        planner: Planner,
        paint: Paint = stylize,
    ) -> None:
        self.store, self.root = store, store.runs
        self.device, self.planner = device, planner
        self.machine = Machine(device=device, threads=threads)  # every job runs on the server's machine
        self.retention = Retention(store, ttl, max_disk_bytes)
        self.line = Line(self.retention, max_queued)
        self.worker = Worker(self.line, store, self.retention, machine=self.machine, paint=paint,
                             preview_interval=preview_interval)

    @property
    def ttl(self) -> float:
        """Seconds a finished run is kept (0: until deleted)."""
        return self.retention.ttl

    @ttl.setter
    def ttl(self, seconds: float) -> None:
        self.retention.ttl = seconds

    @property
    def max_disk_bytes(self) -> int:
        """The disk space all runs' folders may use."""
        return self.retention.max_disk_bytes

    @max_disk_bytes.setter
    def max_disk_bytes(self, limit: int) -> None:
        self.retention.max_disk_bytes = limit

    def recover(self) -> None:
        """At start: runs that were going are interrupted (keeping their last image), queued ones are
        queued again (see :meth:`Store.recover` and :mod:`painterly.web.recovery`)."""
        queued = self.store.recover(time.time())
        keep_previews(self.store)
        jobs = requeued(self.store, queued, self.planner)
        with self.line.lock:
            for job in jobs:
                self.line.append_locked(job)
            if self.line.waiting:
                self.worker.start_locked()

    def submit(self, settings: Settings, preset: str, plan: Plan, content: Named, styles: list[Named],
               masks: list[Named] | None = None, rerun_of: str | None = None) -> str:
        """Write the inputs to a new run folder and put the run in line; returns its id.

        ``masks``: one (name, grayscale image) per style, or None for a run without spatial control.
        """
        self.sweep(force=True)
        with self.line.lock:
            refusal = self.line.refusal_locked() or self.retention.refusal(0)
        if refusal is not None:  # before writing anything
            raise refusal
        job_id = secrets.token_urlsafe(18)
        folder = self.store.folder_of(job_id)
        inputs = write_inputs(folder, content, styles, masks)
        job = Job(job_id, folder, settings, preset, plan, inputs, rerun_of=rerun_of, disk_bytes=folder_bytes(folder))
        line = self.line
        with line.lock:
            self.retention.sweep(room_for=job.disk_bytes)
            refusal = line.refusal_locked() or self.retention.refusal(job.disk_bytes)
            if refusal is not None:
                shutil.rmtree(folder, ignore_errors=True)
                raise refusal
            line.append_locked(job)
            self.store.save(job.state())
            line.publish_status_locked(job)
            self.worker.start_locked()
            line.wake.notify_all()
        return job.id

    def rerun_inputs(self, job_id: str) -> dict[str, Any] | None:
        """What :meth:`submit` needs to run a stored run again (settings, names, images), or None."""
        state = self.store.load(job_id)
        if state is None:
            return None
        return {"settings": Settings.from_dict(state["settings"]), "preset": state["preset"],
                **named_inputs(self.store.folder_of(job_id), state["inputs"])}

    def snapshot(self, job_id: str) -> dict[str, Any] | None:
        """The run's state, JSON-ready, or None (unknown, deleted or expired)."""
        self.sweep()
        with self.line.lock:
            job = self.line.jobs.get(job_id)
            if job is not None:
                return self.line.snapshot_locked(job)
        state = self.store.load(job_id)
        return None if state is None else self.retention.shown(state, None)

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest runs, newest first, without their loss histories."""
        return self.recent_page(limit)[0]

    def recent_page(self, limit: int, offset: int = 0, statuses: tuple[str, ...] = ()) -> tuple[
            list[dict[str, Any]], int]:
        """A page of runs, newest first (only those in ``statuses`` if given), and how many match in all."""
        self.sweep()
        with self.line.lock:
            live = {job.id: self.line.snapshot_locked(job) for job in self.line.jobs.values()}
        states = self.store.recent(limit, offset, statuses)
        rows = [live.get(state["id"]) or self.retention.shown(state, None) for state in states]
        return [{k: v for k, v in row.items() if k != "history"} for row in rows], self.store.count(statuses)

    def retry_after(self) -> int:
        """Seconds a refused client should wait: until the running run should end, within :data:`RETRY_SECONDS`."""
        with self.line.lock:
            eta = self.line.current.eta if self.line.current is not None else None
        low, high = RETRY_SECONDS
        return int(min(high, max(low, math.ceil(eta if eta is not None else 30))))

    def estimate_seconds(self, plan: Plan, device: str, precision: str) -> float | None:
        """A run's time before it starts: at the rate the last finished run measured on this server,
        else the planner's figure for the device (None where there is none)."""
        with self.line.lock:
            rate = self.worker.rate
        if rate is not None:
            return round(plan.total_cost * rate, 1)
        estimate = plan.estimate_seconds(device, precision)
        return None if estimate is None else round(estimate, 1)

    def listeners(self, job_id: str) -> int:
        """How many streams follow the run now."""
        with self.line.lock:
            job = self.line.jobs.get(job_id)
            return len(job.listeners) if job else 0

    def image(self, job_id: str) -> bytes | None:
        """The current (running) or final PNG, or None when there is none yet."""
        with self.line.lock:
            job = self.line.jobs.get(job_id)
            if job is not None and job.preview is not None:
                return job.preview
        return stored_image(self.store.folder_of(job_id))

    def input_path(self, job_id: str, index: int | None) -> Path:
        """The stored content image (``index`` None) or style image ``index`` (checked by the caller)."""
        return self.store.folder_of(job_id) / (CONTENT_FILE if index is None else style_file(index))

    def mask_path(self, job_id: str, index: int) -> Path:
        """The stored mask ``index`` (checked by the caller)."""
        return self.store.folder_of(job_id) / mask_file(index)

    def cancel(self, job_id: str) -> bool:
        """Stop a run: a waiting one leaves the line, a running one stops within a second. False if it
        was not queued or running. Either way its place is free at once: the status says ``cancelled``."""
        line = self.line
        with line.lock:
            job = line.jobs.get(job_id)
            if job is None or job.status not in ACTIVE:
                return False
            if job.status == "queued":
                line.leave_locked(job)
            else:
                self.worker.cancel_running_locked(job)
            job.cancel.set()
            job.status, job.finished, job.eta = "cancelled", time.time(), None
            self.store.save(job.state())
            line.publish_status_locked(job)
            line.wake.notify_all()
            return True

    def delete(self, job_id: str) -> bool | None:
        """Forget a finished run and delete its files: True; False while it is queued, running or
        still stopping; None if there is no such run."""
        with self.line.lock:
            current = self.line.current
            if job_id in self.line.jobs or (current is not None and current.id == job_id):
                return False
            if self.store.load(job_id) is None:
                return None
            self.store.delete(job_id)
            return True

    def sweep(self, force: bool = False) -> None:
        """Delete expired runs, and the oldest finished ones while the disk cap is passed (at most
        once every few seconds unless ``force``: it reads the store)."""
        with self.line.lock:
            if force or self.retention.due():
                self.retention.sweep()

    def end_streams(self) -> None:
        """The server is stopping: end every live stream now (later ones end after their first status)."""
        with self.line.lock:
            self.line.stopping = True
            self.line.close_streams_locked()

    def stream(self, job_id: str) -> AsyncIterator[str]:
        """Server-sent events for one run (:func:`painterly.web.events.stream`)."""
        return events.stream(self.line, job_id, self.snapshot)

    def close(self) -> None:
        """Stop the worker and end the streams. A running run stays ``running`` in the store, so that
        the next start shows it as interrupted; queued runs stay queued."""
        with self.line.lock:
            if self.line.closed:
                return
            self.line.closed = True
            current = self.line.current
            self.line.close_streams_locked()
            self.line.wake.notify_all()
        self.worker.stop(current)
        self.store.close()
