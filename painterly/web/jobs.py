"""The web studio's job queue: one optimization at a time per device, live events, expiring files.

A :class:`JobQueue` owns one worker thread (one device) and a temporary folder. Each job gets a
folder of its own, named by :func:`tempfile.mkdtemp`, never by anything from a request; it holds
the inputs (``content.png``, ``style-0.png`` ..., ``mask-0.png`` ... if masked) and, at the end,
``result.png``. The worker runs
:func:`painterly.stylize` and turns its :class:`~painterly.api.Progress` events into messages for
subscribers (server-sent events). Finished jobs are deleted after ``ttl`` seconds, or sooner,
oldest first, when the folders together pass ``max_disk_bytes``.
"""

from __future__ import annotations

import asyncio
import collections
import io
import json
import logging
import math
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..api import Progress, stylize
from ..errors import PainterlyError
from ..images import save_image
from ..metadata import save_params
from ..settings import Settings

log = logging.getLogger(__name__)

FINISHED = ("done", "failed", "cancelled")
CONTENT_FILE = "content.png"
RESULT_FILE = "result.png"
KEEPALIVE_SECONDS = 15.0
SWEEP_SECONDS = 30.0


class QueueFull(Exception):
    """Too many jobs are waiting already."""


class StorageFull(Exception):
    """The job folders would pass the disk cap, even after deleting every finished job."""


def style_file(index: int) -> str:
    return f"style-{index}.png"


def mask_file(index: int) -> str:
    return f"mask-{index}.png"


@dataclass(eq=False)
class Job:
    """One run: its inputs on disk, its state, and who listens to it. Guarded by the queue's lock."""

    id: str
    folder: Path
    settings: Settings
    preset: str
    content_name: str
    style_names: list[str]
    mask_names: list[str] = field(default_factory=list)  # one per style, or none
    created: float = field(default_factory=time.time)
    status: str = "queued"  # queued, running, done, failed, cancelled
    started: float | None = None
    finished: float | None = None
    step: int = 0  # steps done
    total_steps: int = 0
    scale: int = 0
    scales: int = 1
    size: tuple[int, int] | None = None
    elapsed: float = 0.0
    eta: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    preview: bytes | None = None  # the latest image while running, PNG
    image_version: int = 0
    result: dict[str, Any] | None = None
    disk_bytes: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    listeners: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = field(default_factory=list)
    last_render: float = 0.0


class JobQueue:
    """Jobs by id, the waiting line, and the worker thread that runs them one at a time."""

    def __init__(
        self,
        root: Path | None = None,
        *,
        ttl: float = 3600.0,
        max_disk_bytes: int = 1 << 30,
        max_queued: int = 20,
        preview_interval: float = 0.3,
        device: str = "auto",
        threads: int = 0,
    ) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="painterly-web-", dir=root))
        self.ttl, self.max_disk_bytes, self.max_queued = ttl, max_disk_bytes, max_queued
        self.preview_interval, self.device, self.threads = preview_interval, device, threads
        self._jobs: dict[str, Job] = {}
        self._waiting: collections.deque[Job] = collections.deque()
        self._current: Job | None = None
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._worker: threading.Thread | None = None

    # -- the public side ------------------------------------------------------------------

    def submit(
        self,
        settings: Settings,
        preset: str,
        content: tuple[str, Image.Image],
        styles: list[tuple[str, Image.Image]],
        masks: list[tuple[str, Image.Image]] | None = None,
    ) -> Job:
        """Write the inputs to a new job folder and put the job in line; returns it.

        ``masks``: one (name, grayscale image) per style, or None for a run without spatial control.
        """
        self.sweep()
        with self._lock:
            refusal = self._refusal_locked(0)
        if refusal is not None:  # before writing anything
            raise refusal
        folder = Path(tempfile.mkdtemp(prefix="job-", dir=self.root))
        try:
            content[1].save(folder / CONTENT_FILE, format="PNG")
            for i, (_, image) in enumerate(styles):
                image.save(folder / style_file(i), format="PNG")
            for i, (_, image) in enumerate(masks or []):
                image.save(folder / mask_file(i), format="PNG")
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        settings = settings.replace(device=self.device, threads=self.threads)
        job = Job(secrets.token_urlsafe(18), folder, settings, preset, content[0], [n for n, _ in styles],
                  [n for n, _ in masks or []])
        job.disk_bytes = _folder_bytes(folder)
        with self._lock:
            self._sweep_locked(room_for=job.disk_bytes)
            refusal = self._refusal_locked(job.disk_bytes)
            if refusal is not None:
                shutil.rmtree(folder, ignore_errors=True)
                raise refusal
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._publish_locked(job, "status", self._snapshot_locked(job))
            self._start_worker_locked()
            self._wake.notify_all()
        return job

    def get(self, job_id: str) -> Job | None:
        """The job with this id, or None (unknown, deleted or expired)."""
        self.sweep()
        with self._lock:
            return self._jobs.get(job_id)

    def snapshot(self, job: Job) -> dict[str, Any]:
        """The job's state, JSON-ready."""
        with self._lock:
            return self._snapshot_locked(job)

    def image(self, job: Job) -> bytes | None:
        """The current (running) or final PNG, or None when there is none yet."""
        with self._lock:
            if job.preview is not None:
                return job.preview
            path = job.folder / RESULT_FILE
        return path.read_bytes() if path.is_file() else None

    def input_path(self, job: Job, index: int | None) -> Path:
        """The stored content image (``index`` None) or style image ``index`` (checked by the caller)."""
        return job.folder / (CONTENT_FILE if index is None else style_file(index))

    def mask_path(self, job: Job, index: int) -> Path:
        """The stored mask ``index`` (checked by the caller)."""
        return job.folder / mask_file(index)

    def cancel(self, job: Job) -> None:
        """Stop a job: a waiting one leaves the line, a running one stops after the current step.

        Either way its place is free at once: the status says ``cancelled`` right away.
        """
        with self._lock:
            if job.status == "queued":
                self._waiting.remove(job)
                self._announce_positions_locked()
            elif job.status != "running":
                return
            job.cancel.set()
            job.status, job.finished = "cancelled", time.time()
            self._publish_locked(job, "status", self._snapshot_locked(job))

    def delete(self, job: Job) -> bool:
        """Forget a finished job and delete its files; False while it is still stopping."""
        with self._lock:
            if job.status not in FINISHED or job is self._current:
                return False
            self._remove_locked(job)
            return True

    def sweep(self) -> None:
        """Delete expired jobs, and the oldest finished ones while the disk cap is passed."""
        with self._lock:
            self._sweep_locked()

    async def stream(self, job: Job) -> AsyncIterator[str]:
        """Server-sent events for one job: ``status`` first, then ``progress``/``image``/``status``.

        Ends after a status that is final; a comment line every few seconds keeps proxies awake.
        """
        inbox: asyncio.Queue = asyncio.Queue()
        listener = (asyncio.get_running_loop(), inbox)
        with self._lock:
            job.listeners.append(listener)
            first = self._snapshot_locked(job)
        try:
            yield "retry: 2000\n" + _sse("status", first)
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
                yield _sse(kind, data)
                if kind == "status" and data["status"] in FINISHED:
                    return
        finally:
            with self._lock:
                if listener in job.listeners:
                    job.listeners.remove(listener)

    def close(self) -> None:
        """Stop the worker (cancelling the running job), end the streams, delete every file."""
        with self._lock:
            self._closed = True
            for job in self._jobs.values():
                job.cancel.set()
                self._publish_locked(job, "close", None)
            self._wake.notify_all()
            worker = self._worker
        if worker is not None:
            worker.join(timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)

    # -- the worker -------------------------------------------------------------------------

    def _start_worker_locked(self) -> None:
        if self._worker is None and not self._closed:
            self._worker = threading.Thread(target=self._work, name=f"painterly-{self.device}", daemon=True)
            self._worker.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._closed:
                    self._wake.wait(timeout=min(SWEEP_SECONDS, max(self.ttl, 1.0)))
                    self._sweep_locked()
                if self._closed:
                    return
                job = self._waiting.popleft()
                job.status, job.started, self._current = "running", time.time(), job
                self._publish_locked(job, "status", self._snapshot_locked(job))
                self._announce_positions_locked()
            try:
                self._run(job)
            finally:
                with self._lock:
                    self._current = None
                    self._sweep_locked()

    def _run(self, job: Job) -> None:
        error = None
        try:
            content = _load(self.input_path(job, None))
            styles = [_load(self.input_path(job, i)) for i in range(len(job.style_names))]
            masks = [_load(self.mask_path(job, i)) for i in range(len(job.mask_names))] or None
            result = stylize(content, styles, job.settings, masks=masks,
                             callback=lambda event: self._progress(job, event))
            record = {"settings": job.settings.to_dict(), "preset": job.preset, "content": job.content_name,
                      "styles": job.style_names, "masks": job.mask_names or None, "best": {"step": result.best_step, "total": result.best_loss},
                      "versions": result.record()["versions"], "made_with": "painterly serve"}
            save_image(result.image, job.folder / RESULT_FILE, **save_params("PNG", record))
            summary = {"seconds": round(result.seconds, 3), "best_step": result.best_step,
                       "best_loss": _finite(result.best_loss), "width": result.image.width,
                       "height": result.image.height, "device": result.device, "precision": result.precision,
                       "stopped": result.stopped}
        except PainterlyError as exc:
            error = str(exc)
        except MemoryError:
            error = "out of memory; try a smaller size"
        except Exception as exc:  # a bug, not the user's fault: keep the server up and say so
            log.exception("job %s failed", job.id)
            error = f"internal error ({type(exc).__name__}); the server log has the details"
        with self._lock:
            job.preview = None  # the file (if any) is the image from now on
            job.image_version += 1
            if error is not None:
                job.error = error
            else:
                job.result = summary
            if job.status == "running":
                job.status, job.finished = ("failed" if error else "done"), time.time()
            job.disk_bytes = _folder_bytes(job.folder)
            self._publish_locked(job, "image", {"version": job.image_version, "step": job.step})
            self._publish_locked(job, "status", self._snapshot_locked(job))

    def _progress(self, job: Job, event: Progress) -> bool:
        """The stylize callback: record the step, tell the listeners, render now and then."""
        if job.cancel.is_set():
            return True
        losses = {k: _finite(v) for k, v in event.losses.items()}
        now = time.monotonic()
        last = event.step + 1 >= event.total_steps
        png = None
        if job.image_version == 0 or last or now - job.last_render >= self.preview_interval:
            png = _png(event.image())  # rendered here: the tensor changes after the callback returns
            job.last_render = now
        with self._lock:
            job.step, job.total_steps, job.scale, job.scales = event.step + 1, event.total_steps, event.scale, event.scales
            job.size, job.elapsed, job.eta = event.size, round(event.elapsed, 3), round(event.eta, 3)
            job.history.append({"step": event.step, **losses})
            self._publish_locked(job, "progress", self._progress_locked(job))
            if png is not None:
                job.preview, job.image_version = png, job.image_version + 1
                self._publish_locked(job, "image", {"version": job.image_version, "step": job.step})
        return job.cancel.is_set()

    # -- helpers (lock held) ------------------------------------------------------------------

    def _progress_locked(self, job: Job) -> dict[str, Any]:
        return {"step": job.step, "total_steps": job.total_steps, "scale": job.scale, "scales": job.scales,
                "size": list(job.size) if job.size else None, "elapsed": job.elapsed, "eta": job.eta,
                "losses": job.history[-1] if job.history else None}

    def _snapshot_locked(self, job: Job) -> dict[str, Any]:
        position = self._waiting.index(job) + 1 if job.status == "queued" else None
        return {
            "id": job.id, "status": job.status, "position": position, "created": job.created,
            "started": job.started, "finished": job.finished,
            "expires": job.finished + self.ttl if job.finished else None,
            **self._progress_locked(job), "history": list(job.history), "error": job.error,
            "image_version": job.image_version, "preset": job.preset, "settings": job.settings.to_dict(),
            "inputs": {"content": job.content_name, "styles": list(job.style_names), "masks": list(job.mask_names)},
            "result": job.result,
        }

    def _publish_locked(self, job: Job, kind: str, data: Any) -> None:
        for loop, inbox in list(job.listeners):
            try:
                loop.call_soon_threadsafe(inbox.put_nowait, (kind, data))
            except RuntimeError:  # that listener's event loop is gone
                job.listeners.remove((loop, inbox))

    def _announce_positions_locked(self) -> None:
        for job in self._waiting:
            self._publish_locked(job, "status", self._snapshot_locked(job))

    def _refusal_locked(self, new_bytes: int) -> Exception | None:
        if len(self._waiting) >= self.max_queued:
            return QueueFull(f"{len(self._waiting)} runs are waiting already; try again later")
        if self._disk_used_locked() + new_bytes > self.max_disk_bytes:
            return StorageFull("the server's disk space for runs is used up; try again when a run has finished")
        return None

    def _disk_used_locked(self) -> int:
        return sum(job.disk_bytes for job in self._jobs.values())

    def _sweep_locked(self, room_for: int = 0) -> None:
        now = time.time()
        finished = sorted((j for j in self._jobs.values() if j.status in FINISHED and j is not self._current),
                          key=lambda j: j.finished or 0.0)
        for job in finished:
            if now - (job.finished or now) >= self.ttl:
                self._remove_locked(job)
        for job in finished:
            if job.id in self._jobs and self._disk_used_locked() + room_for > self.max_disk_bytes:
                self._remove_locked(job)

    def _remove_locked(self, job: Job) -> None:
        self._jobs.pop(job.id, None)
        self._publish_locked(job, "close", None)
        shutil.rmtree(job.folder, ignore_errors=True)


def _sse(kind: str, data: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _finite(value: float) -> float | None:
    """JSON has no NaN or infinity (and the browser's JSON.parse refuses them)."""
    return float(value) if math.isfinite(value) else None


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # fast: previews are replaced within a second
    return buffer.getvalue()


def _load(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
