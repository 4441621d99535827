"""The web studio's job queue: one optimization at a time, live events, runs kept in the store.

A :class:`JobQueue` owns one worker thread (one device) and a :class:`~painterly.web.store.Store`.
Each run's folder holds its inputs (``content.png``, ``style-0.png`` ..., ``mask-0.png`` ... if
masked), the latest image while it runs (``preview.png``) and at the end ``result.png`` with its
settings embedded. Queued and running runs are also held in memory (with their listeners); finished
ones live only in the store. The worker runs :func:`painterly.stylize` and turns its
:class:`~painterly.engine.run.Progress` events into messages for subscribers (server-sent events) and, once
a second, into the run's row. Its ETA comes from the run's plan: seconds per unit of the plan's cost,
measured from the end of the first step (which also pays for the warm-up) to the latest, times the cost
left; after the first step alone there is none. The rate of the last finished run also times the plan
the page shows before Start (:meth:`JobQueue.estimate_seconds`).

A finished run's summary says how much the picture changed from the photo (``change``, the mean per
pixel, 0..1) and whether that is so little that the run needs more steps (``barely_changed``).

Cancel is immediate for the queue: the run's status says ``cancelled`` at once, the next run may
start, and the worker stops at the next step; if it is in the middle of something longer (setup:
weights, targets), it is interrupted there after :data:`CANCEL_GRACE` seconds.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import io
import json
import logging
import math
import secrets
import shutil
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops, ImageStat

from ..engine.images import save_image
from ..engine.plan import Plan
from ..engine.result import Progress
from ..engine.run import stylize
from ..engine.settings import Machine, Settings
from ..errors import PainterlyError
from ..output.metadata import save_params
from ..output.record import input_digests, make_record, write_outputs
from .store import Store, folder_bytes, write_atomic

log = logging.getLogger(__name__)

ACTIVE = ("queued", "running")
FINISHED = ("done", "failed", "cancelled", "interrupted")
CONTENT_FILE = "content.png"
RESULT_FILE = "result.png"
PREVIEW_FILE = "preview.png"
KEEPALIVE_SECONDS = 15.0
SWEEP_SECONDS = 30.0  # the idle worker sweeps this often
SWEEP_EVERY = 5.0  # requests sweep at most this often
SAVE_SECONDS = 1.0  # a running job's row (and preview file) is written at most this often
CANCEL_GRACE = 0.3  # seconds a cancelled run has to stop at a step before it is interrupted
#: Below this mean change per pixel (0..1) from the photo, a result says it barely changed.
BARELY_CHANGED = 0.02
RETRY_SECONDS = (5, 600)  # the range of a full queue's Retry-After


class QueueFull(Exception):
    """Too many jobs are waiting already."""


class StorageFull(Exception):
    """The job folders would pass the disk cap, even after deleting every finished job."""


class Interrupted(BaseException):
    """Raised inside the worker thread to stop a cancelled run between two steps of its setup.

    A BaseException, so that no ``except Exception`` on the way swallows it.
    """


def style_file(index: int) -> str:
    return f"style-{index}.png"


def mask_file(index: int) -> str:
    return f"mask-{index}.png"


@dataclass(eq=False)
class Job:
    """A queued or running run: its state, its plan and who listens to it. Guarded by the queue's lock."""

    id: str
    folder: Path
    settings: Settings
    preset: str
    plan: Plan
    inputs: dict[str, Any]  # content, styles, masks: display names
    created: float = field(default_factory=time.time)
    status: str = "queued"
    started: float | None = None
    finished: float | None = None
    step: int = 0  # steps done
    scale: int = 0
    size: tuple[int, int] | None = None
    elapsed: float = 0.0
    eta: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    preview: bytes | None = None  # the latest image while running, PNG
    image_version: int = 0
    result: dict[str, Any] | None = None
    disk_bytes: int = 0
    rerun_of: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    listeners: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = field(default_factory=list)
    last_render: float = 0.0
    last_saved: float = 0.0
    scale_start: int = 0  # global step at which the current scale began
    first: tuple[float, float] | None = None  # (elapsed, cost done) after the first step
    rate: float | None = None  # seconds per unit of plan cost since the first step
    interruptible: bool = False  # the worker is inside stylize: Interrupted may be raised there
    stop_lock: threading.Lock = field(default_factory=threading.Lock)

    def state(self) -> dict[str, Any]:
        """What the store keeps (and the API shows, less ``position`` and ``expires``)."""
        plan = self.plan
        return {
            "id": self.id, "status": self.status, "created": self.created, "started": self.started,
            "finished": self.finished, "step": self.step, "total_steps": plan.total_steps, "scale": self.scale,
            "scales": len(plan.scales), "size": list(self.size) if self.size else None, "elapsed": self.elapsed,
            "eta": self.eta, "losses": self.history[-1] if self.history else None, "history": self.history,
            "error": self.error, "image_version": self.image_version, "preset": self.preset,
            "settings": self.settings.to_dict(), "inputs": self.inputs, "result": self.result,
            "disk_bytes": self.disk_bytes, "rerun_of": self.rerun_of,
            "plan": {"total_steps": plan.total_steps, "peak_bytes": plan.peak_bytes,
                     "content_size": list(plan.content_size),
                     "scales": [{"size": list(s.size), "steps": s.steps, "style_size": s.style_size}
                                for s in plan.scales]},
        }


class JobQueue:
    """Runs by id: the waiting line and the worker thread in memory, every run in the store."""

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
        planner=None,
    ) -> None:
        self.store, self.root = store, store.runs
        self.ttl, self.max_disk_bytes, self.max_queued = ttl, max_disk_bytes, max_queued
        self.preview_interval, self.device = preview_interval, device
        self.machine = Machine(device=device, threads=threads)  # every job runs on the server's machine
        self.planner = planner  # settings, content size -> Plan (the server's precision)
        self._jobs: dict[str, Job] = {}  # queued and running only
        self._waiting: collections.deque[Job] = collections.deque()
        self._current: Job | None = None
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._worker: threading.Thread | None = None
        self._swept = 0.0
        self._stopping = False  # the server is stopping: streams end at once
        self._rate: float | None = None  # seconds per unit of plan cost, measured on the last run that finished

    def recover(self) -> None:
        """At start: runs that were going are interrupted, queued ones are queued again (see :meth:`Store.recover`).

        An interrupted run whose server was killed (no shutdown, so no result written) gets its last
        saved image as the result, with the run's settings embedded like any other result's.
        """
        queued = self.store.recover(time.time())
        for state in self.store.interrupted:
            self._keep_preview(state)
        self._queue_again(queued)

    def _keep_preview(self, state: dict[str, Any]) -> None:
        folder = self.store.folder_of(state["id"])
        preview = folder / PREVIEW_FILE
        if not preview.is_file() or (folder / RESULT_FILE).is_file():
            return
        try:
            with Image.open(preview) as image:
                _save_stopped(Settings.from_dict(state["settings"]), folder, image,
                              self._stopped_record(folder, state["inputs"], state["preset"]))
            preview.unlink()
        except Exception:  # a damaged preview: the run keeps it as it is
            log.exception("run %s: the interrupted image could not be kept with its settings", state["id"])
            return
        state["disk_bytes"] = folder_bytes(folder)
        self.store.save(state)

    def _queue_again(self, queued: list[dict[str, Any]]) -> None:
        for state in queued:
            folder = self.store.folder_of(state["id"])
            try:
                with Image.open(folder / CONTENT_FILE) as content:
                    size = content.size
                job = self._job_from_state(state, self.planner(Settings.from_dict(state["settings"]), size))
            except Exception as exc:  # inputs gone or settings no longer valid: say so, do not crash the start
                state.update(status="failed", finished=time.time(), error=f"could not be queued again ({exc})")
                self.store.save(state)
                continue
            with self._lock:
                self._jobs[job.id] = job
                self._waiting.append(job)
        with self._lock:
            if self._waiting:
                self._start_worker_locked()

    # -- the public side ------------------------------------------------------------------

    def submit(
        self,
        settings: Settings,
        preset: str,
        plan: Plan,
        content: tuple[str, Image.Image],
        styles: list[tuple[str, Image.Image]],
        masks: list[tuple[str, Image.Image]] | None = None,
        rerun_of: str | None = None,
    ) -> str:
        """Write the inputs to a new run folder and put the run in line; returns its id.

        ``masks``: one (name, grayscale image) per style, or None for a run without spatial control.
        """
        self.sweep(force=True)
        with self._lock:
            refusal = self._refusal_locked(0)
        if refusal is not None:  # before writing anything
            raise refusal
        job_id = secrets.token_urlsafe(18)
        folder = self.store.folder_of(job_id)
        folder.mkdir()
        try:
            write_atomic(folder / CONTENT_FILE, _png(content[1], 6))
            for i, (_, image) in enumerate(styles):
                write_atomic(folder / style_file(i), _png(image, 6))
            for i, (_, image) in enumerate(masks or []):
                write_atomic(folder / mask_file(i), _png(image, 6))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        inputs = {"content": content[0], "styles": [n for n, _ in styles], "masks": [n for n, _ in masks or []]}
        job = Job(job_id, folder, settings, preset, plan, inputs, rerun_of=rerun_of, disk_bytes=folder_bytes(folder))
        with self._lock:
            self._sweep_locked(room_for=job.disk_bytes)
            refusal = self._refusal_locked(job.disk_bytes)
            if refusal is not None:
                shutil.rmtree(folder, ignore_errors=True)
                raise refusal
            self._jobs[job.id] = job
            self._waiting.append(job)
            self.store.save(job.state())
            self._publish_locked(job, "status", self._snapshot_locked(job))
            self._start_worker_locked()
            self._wake.notify_all()
        return job.id

    def rerun_inputs(self, job_id: str) -> dict[str, Any] | None:
        """What :meth:`submit` needs to run a stored run again (settings, names, images), or None."""
        state = self.store.load(job_id)
        if state is None:
            return None
        folder = self.store.folder_of(job_id)
        inputs = state["inputs"]
        return {
            "settings": Settings.from_dict(state["settings"]), "preset": state["preset"],
            "content": (inputs["content"], _load(folder / CONTENT_FILE)),
            "styles": [(name, _load(folder / style_file(i))) for i, name in enumerate(inputs["styles"])],
            "masks": [(name, _load(folder / mask_file(i), "L")) for i, name in enumerate(inputs["masks"])] or None,
        }

    def snapshot(self, job_id: str) -> dict[str, Any] | None:
        """The run's state, JSON-ready, or None (unknown, deleted or expired)."""
        self.sweep()
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                return self._snapshot_locked(job)
        state = self.store.load(job_id)
        return None if state is None else self._shown(state, None)

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest runs, newest first, without their loss histories."""
        return self.recent_page(limit)[0]

    def recent_page(self, limit: int, offset: int = 0, statuses: tuple[str, ...] = ()) -> tuple[
            list[dict[str, Any]], int]:
        """A page of runs, newest first (only those in ``statuses`` if given), and how many match in all."""
        self.sweep()
        with self._lock:
            live = {job.id: self._snapshot_locked(job) for job in self._jobs.values()}
        states = self.store.recent(limit, offset, statuses)
        rows = [live.get(state["id"]) or self._shown(state, None) for state in states]
        return [{k: v for k, v in row.items() if k != "history"} for row in rows], self.store.count(statuses)

    def retry_after(self) -> int:
        """Seconds a refused client should wait: until the running run should end, within :data:`RETRY_SECONDS`."""
        with self._lock:
            eta = self._current.eta if self._current is not None else None
        low, high = RETRY_SECONDS
        return int(min(high, max(low, math.ceil(eta if eta is not None else 30))))

    def estimate_seconds(self, plan: Plan, device: str, precision: str) -> float | None:
        """A run's time before it starts: at the rate the last finished run measured on this server,
        else the planner's figure for the device (None where there is none)."""
        with self._lock:
            rate = self._rate
        if rate is not None:
            return round(plan.total_cost * rate, 1)
        estimate = plan.estimate_seconds(device, precision)
        return None if estimate is None else round(estimate, 1)

    def listeners(self, job_id: str) -> int:
        with self._lock:
            job = self._jobs.get(job_id)
            return len(job.listeners) if job else 0

    def image(self, job_id: str) -> bytes | None:
        """The current (running) or final PNG, or None when there is none yet."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None and job.preview is not None:
                return job.preview
        folder = self.store.folder_of(job_id)
        for name in (RESULT_FILE, PREVIEW_FILE):
            try:
                return (folder / name).read_bytes()
            except FileNotFoundError:
                continue
        return None

    def input_path(self, job_id: str, index: int | None) -> Path:
        """The stored content image (``index`` None) or style image ``index`` (checked by the caller)."""
        return self.store.folder_of(job_id) / (CONTENT_FILE if index is None else style_file(index))

    def mask_path(self, job_id: str, index: int) -> Path:
        """The stored mask ``index`` (checked by the caller)."""
        return self.store.folder_of(job_id) / mask_file(index)

    def cancel(self, job_id: str) -> bool:
        """Stop a run: a waiting one leaves the line, a running one stops within a second. False if it
        was not queued or running. Either way its place is free at once: the status says ``cancelled``."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status not in ACTIVE:
                return False
            if job.status == "queued":
                self._waiting.remove(job)
                self._jobs.pop(job.id)
                self._announce_positions_locked()
            else:
                threading.Timer(CANCEL_GRACE, self._interrupt, (job,)).start()
            job.cancel.set()
            job.status, job.finished, job.eta = "cancelled", time.time(), None
            self.store.save(job.state())
            self._publish_locked(job, "status", self._snapshot_locked(job))
            self._wake.notify_all()
            return True

    def delete(self, job_id: str) -> bool | None:
        """Forget a finished run and delete its files: True; False while it is queued, running or
        still stopping; None if there is no such run."""
        with self._lock:
            if job_id in self._jobs or (self._current is not None and self._current.id == job_id):
                return False
            if self.store.load(job_id) is None:
                return None
            self.store.delete(job_id)
            return True

    def sweep(self, force: bool = False) -> None:
        """Delete expired runs, and the oldest finished ones while the disk cap is passed (at most
        once every few seconds unless ``force``: it reads the store)."""
        with self._lock:
            if force or time.monotonic() - self._swept >= SWEEP_EVERY:
                self._sweep_locked()

    def end_streams(self) -> None:
        """The server is stopping: end every live stream now (later ones end after their first status)."""
        with self._lock:
            self._stopping = True
            for job in self._jobs.values():
                self._publish_locked(job, "close", None)

    async def stream(self, job_id: str) -> AsyncIterator[str]:
        """Server-sent events for one run: ``status`` first, then ``progress``/``image``/``status``.

        Ends after a status that is final; a comment line every few seconds keeps proxies awake.
        """
        inbox: asyncio.Queue = asyncio.Queue()
        listener = (asyncio.get_running_loop(), inbox)
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                job.listeners.append(listener)
                first = self._snapshot_locked(job)
            stopping = self._stopping
        if job is None or stopping:
            yield "retry: 2000\n" + _sse("status", self.snapshot(job_id))
            return
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
        """Stop the worker and end the streams. A running run stays ``running`` in the store, so that
        the next start shows it as interrupted; queued runs stay queued."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            current = self._current
            for job in self._jobs.values():
                self._publish_locked(job, "close", None)
            self._wake.notify_all()
            worker = self._worker
        if current is not None:
            current.cancel.set()
            self._interrupt(current)
        if worker is not None:
            worker.join(timeout=10)
        self.store.close()

    # -- the worker -------------------------------------------------------------------------

    def _start_worker_locked(self) -> None:
        if self._worker is None and not self._closed:
            self._worker = threading.Thread(target=self._work, name=f"painterly-{self.device}", daemon=True)
            self._worker.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._closed:
                    self._wake.wait(timeout=SWEEP_SECONDS)
                    self._sweep_locked()
                if self._closed:
                    return
                job = self._waiting.popleft()
                job.status, job.started, self._current = "running", time.time(), job
                self.store.save(job.state())
                self._publish_locked(job, "status", self._snapshot_locked(job))
                self._announce_positions_locked()
            outcome = self._run(job)
            with self._lock:
                self._finish_locked(job, *outcome)
                self._current = None
                self._sweep_locked()

    def _run(self, job: Job) -> tuple[dict[str, Any] | None, str | None]:
        """Run the job; (summary, None) or (None, error). A cancelled job keeps the image it got to."""
        try:
            content = _load(job.folder / CONTENT_FILE)
            styles = [_load(job.folder / style_file(i)) for i in range(len(job.inputs["styles"]))]
            masks = [_load(job.folder / mask_file(i), "L") for i in range(len(job.inputs["masks"]))] or None
            job.interruptible = True
            if job.cancel.is_set():
                raise Interrupted
            result = stylize(content, styles, job.settings, machine=self.machine, masks=masks,
                             callback=lambda event: self._progress(job, event))
            with job.stop_lock:
                job.interruptible = False
            if not math.isfinite(result.best_loss):
                return None, ("the loss overflowed (it became infinite or not a number); lower content_weight, "
                              "style_weight or tv_weight")
            write_outputs(result, job.folder / RESULT_FILE, self._record(job, result))
            change = mean_change(content, result.image)
            return {"seconds": round(result.seconds, 3), "best_step": result.best_step,
                    "best_loss": result.best_loss, "width": result.image.width, "height": result.image.height,
                    "device": result.device, "precision": result.precision, "stopped": result.stopped,
                    "change": round(change, 4), "barely_changed": change < BARELY_CHANGED}, None
        except Interrupted:
            job.interruptible = False
            if job.preview is not None:  # the image it got to
                with Image.open(io.BytesIO(job.preview)) as image:
                    _save_stopped(job.settings, job.folder, image, self._record(job, None))
            return None, None
        except PainterlyError as exc:
            return None, str(exc)
        except MemoryError:
            return None, "out of memory; try a smaller size"
        except Exception as exc:  # a bug, not the user's fault: keep the server up and say so
            log.exception("job %s failed", job.id)
            return None, f"internal error ({type(exc).__name__}); the server log has the details"
        finally:
            job.interruptible = False

    @classmethod
    def _record(cls, job: Job, result: Any) -> dict[str, Any]:
        """The run record embedded in the result (:mod:`painterly.output.record`): the display names of the
        inputs, not the server's paths, and the digests of the inputs as the run used them."""
        if result is None:  # interrupted: the image it got to, without a Result
            return cls._stopped_record(job.folder, job.inputs, job.preset)
        return make_record(result, preset=job.preset, extra=cls._names(job.folder, job.inputs))

    @classmethod
    def _stopped_record(cls, folder: Path, inputs: dict[str, Any], preset: str) -> dict[str, Any]:
        return {"preset": preset, **cls._names(folder, inputs), "stopped": True}

    @staticmethod
    def _names(folder: Path, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"content": inputs["content"], "styles": inputs["styles"], "masks": inputs["masks"] or None,
                "inputs": input_digests(folder / CONTENT_FILE,
                                        [folder / style_file(i) for i in range(len(inputs["styles"]))],
                                        [folder / mask_file(i) for i in range(len(inputs["masks"]))] or None),
                "made_with": "painterly serve"}

    def _interrupt(self, job: Job) -> None:
        """Raise :class:`Interrupted` in the worker if it is still inside ``job``'s stylize call."""
        with job.stop_lock:
            if job.interruptible and self._worker is not None and self._worker.ident is not None:
                job.interruptible = False  # once
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._worker.ident),
                                                           ctypes.py_object(Interrupted))
                return
        if self._current is job and not self._closed:  # not inside stylize yet: look again shortly
            threading.Timer(CANCEL_GRACE, self._interrupt, (job,)).start()

    def _progress(self, job: Job, event: Progress) -> bool:
        """The stylize callback: record the step, tell the listeners, render and save now and then."""
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
            if event.scale != job.scale or event.step == 0:
                job.scale_start = event.step
            job.step, job.scale, job.size = event.step + 1, event.scale, event.size
            job.elapsed = round(event.elapsed, 3)
            job.eta = self._eta(job, event)
            job.history.append({"step": event.step, **losses})
            self._publish_locked(job, "progress", self._progress_locked(job))
            if png is not None:
                job.preview, job.image_version = png, job.image_version + 1
                self._publish_locked(job, "image", {"version": job.image_version, "step": job.step})
            save = now - job.last_saved >= SAVE_SECONDS and job.status == "running"
            if save:
                job.last_saved = now
                self.store.save(job.state())
                preview = job.preview
        if save and preview is not None:
            write_atomic(job.folder / PREVIEW_FILE, preview)
        return job.cancel.is_set()

    @staticmethod
    def _eta(job: Job, event: Progress) -> float | None:
        """Seconds left: the plan's cost left at the rate measured since the first step (which also
        pays for warm-up, and would double the first estimates if it were counted); None after the
        first step, which alone cannot tell the rate."""
        if len(job.plan.scales) != event.scales:  # the engine planned differently: trust its estimate
            return round(event.eta, 3)
        done = job.plan.cost_done(event.scale, event.step - job.scale_start + 1)
        if job.first is None:
            job.first = (event.elapsed, done)
        first_elapsed, first_done = job.first
        if done <= first_done:  # one step measures only the warm-up: no estimate until the second
            return None
        job.rate = (event.elapsed - first_elapsed) / (done - first_done)
        return round(max(0.0, job.rate * (job.plan.total_cost - done)), 3)

    # -- helpers (lock held) ------------------------------------------------------------------

    def _finish_locked(self, job: Job, summary: dict[str, Any] | None, error: str | None) -> None:
        job.preview = None  # the file (if any) is the image from now on
        job.image_version += 1
        job.error, job.result, job.eta = error, summary, None
        if job.status == "running" and self._closed:  # stopped with the server: rerun it after a restart
            job.status, job.finished = "interrupted", time.time()
            job.error = "the server stopped during this run; rerun it to start again"
        elif job.status == "running":
            job.status, job.finished = ("failed" if error else "done"), time.time()
            if job.status == "done" and job.rate is not None:
                self._rate = job.rate
        (job.folder / PREVIEW_FILE).unlink(missing_ok=True)
        job.disk_bytes = folder_bytes(job.folder)
        self._jobs.pop(job.id, None)
        self.store.save(job.state())
        self._publish_locked(job, "image", {"version": job.image_version, "step": job.step})
        self._publish_locked(job, "status", self._snapshot_locked(job))

    def _job_from_state(self, state: dict[str, Any], plan: Plan) -> Job:
        return Job(state["id"], self.store.folder_of(state["id"]), Settings.from_dict(state["settings"]),
                   state["preset"], plan, state["inputs"], created=state["created"],
                   disk_bytes=state.get("disk_bytes", 0), rerun_of=state.get("rerun_of"))

    def _progress_locked(self, job: Job) -> dict[str, Any]:
        return {"step": job.step, "total_steps": job.plan.total_steps, "scale": job.scale,
                "scales": len(job.plan.scales), "size": list(job.size) if job.size else None,
                "elapsed": job.elapsed, "eta": job.eta, "losses": job.history[-1] if job.history else None}

    def _snapshot_locked(self, job: Job) -> dict[str, Any]:
        position = self._waiting.index(job) + 1 if job.status == "queued" and job in self._waiting else None
        return self._shown(job.state(), position)

    def _shown(self, state: dict[str, Any], position: int | None) -> dict[str, Any]:
        finished = state.get("finished")
        expires = finished + self.ttl if finished and self.ttl > 0 and state["status"] in FINISHED else None
        return {**{k: v for k, v in state.items() if k != "disk_bytes"}, "position": position, "expires": expires}

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
        if self.store.disk_bytes() + new_bytes > self.max_disk_bytes:
            return StorageFull("the server's disk space for runs is used up; delete old runs or try again later")
        return None

    def _sweep_locked(self, room_for: int = 0) -> None:
        self._swept = time.monotonic()
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


def _save_stopped(settings: Settings, folder: Path, image: Image.Image, record: dict[str, Any]) -> None:
    """The image a stopped run got to, as its result, with its settings embedded like a finished run's."""
    record = {"settings": settings.to_dict(), **record}
    save_image(image.convert("RGB"), folder / RESULT_FILE, **save_params("PNG", record))


def mean_change(before: Image.Image, after: Image.Image) -> float:
    """Mean absolute change per pixel and channel from ``before`` to ``after`` (0..1), at ``after``'s size."""
    a = before.convert("RGB").resize(after.size, Image.Resampling.BILINEAR)
    diff = ImageChops.difference(a, after.convert("RGB"))
    return sum(ImageStat.Stat(diff).mean) / (3 * 255)


def _sse(kind: str, data: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _finite(value: float) -> float | None:
    """JSON has no NaN or infinity (and the browser's JSON.parse refuses them)."""
    return float(value) if math.isfinite(value) else None


def _png(image: Image.Image, level: int = 1) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=level)  # level 1 for previews: replaced within a second
    return buffer.getvalue()


def _load(path: Path, mode: str = "RGB") -> Image.Image:
    with Image.open(path) as img:
        return img.convert(mode)
