"""The studio's worker (:class:`Worker`): one thread that runs the line's jobs one at a time.

It calls the paint function (:func:`painterly.stylize`, or the one the app was given) and turns its
:class:`~painterly.engine.run.Progress` events into messages for the run's listeners and, once a
second, into the run's row and preview file. The rate of the last run that finished times the plans
the page shows before Start.

A finished run's summary says how much the picture changed from the photo (``change``, the mean per
pixel, 0..1) and whether that is so little that the run needs more steps (``barely_changed``).

Cancel is immediate for the line (see :meth:`painterly.web.jobs.JobQueue.cancel`); the worker stops at
the next step, and if it is in the middle of something longer (setup: weights, targets), it is
interrupted there after :data:`CANCEL_GRACE` seconds.
"""

from __future__ import annotations

import ctypes
import io
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from PIL import Image, ImageChops, ImageStat

from ..engine.result import Progress, Result
from ..engine.settings import Machine
from ..errors import PainterlyError
from ..output.record import make_record, write_outputs
from .job import Job
from .line import Line
from .retention import Retention
from .run_files import PREVIEW_FILE, RESULT_FILE, input_names, load_inputs, png_bytes, save_stopped, stopped_record
from .store import Store, folder_bytes, write_atomic

log = logging.getLogger(__name__)

SWEEP_SECONDS = 30.0  # the idle worker sweeps this often
SAVE_SECONDS = 1.0  # a running job's row (and preview file) is written at most this often
CANCEL_GRACE = 0.3  # seconds a cancelled run has to stop at a step before it is interrupted
#: Below this mean change per pixel (0..1) from the photo, a result says it barely changed.
BARELY_CHANGED = 0.02

#: What paints a run: :func:`painterly.stylize`'s signature (content, styles, settings, machine=,
#: masks=, callback=), returning its :class:`~painterly.engine.run.Result`.
Paint = Callable[..., Result]


class Interrupted(BaseException):
    """Raised inside the worker thread to stop a cancelled run between two steps of its setup.

    A BaseException, so that no ``except Exception`` on the way swallows it.
    """


class Worker:
    """The thread that takes jobs from the line, paints them and records how they ended."""

    def __init__(self, line: Line, store: Store, retention: Retention, *, machine: Machine, paint: Paint,
                 preview_interval: float) -> None:
        self.line, self.store, self.retention = line, store, retention
        self.machine, self.paint, self.preview_interval = machine, paint, preview_interval
        self.rate: float | None = None  # seconds per unit of plan cost, measured on the last run that finished
        self.thread: threading.Thread | None = None
        # What a run imports lazily the first time (torch.optim's constructor pulls in torch._dynamo and
        # sympy: a second), imported here, before the thread runs anything: a cancelled run is stopped
        # by an exception raised in the thread, and one landing inside a first import leaves half-made
        # modules behind that fail every later run ("module 'sympy' has no attribute 'core'").
        import torch._dynamo  # noqa: F401

    def start_locked(self) -> None:
        """Start the thread, once, unless the line is closed."""
        if self.thread is None and not self.line.closed:
            self.thread = threading.Thread(target=self._work, name=f"painterly-{self.machine.device}", daemon=True)
            self.thread.start()

    def stop(self, current: Job | None) -> None:
        """After the line closed: interrupt ``current`` (the job it was running) and wait for the thread."""
        if current is not None:
            current.cancel.set()
            self.interrupt(current)
        if self.thread is not None:
            self.thread.join(timeout=10)

    def cancel_running_locked(self, job: Job) -> None:
        """``job`` (running) was cancelled: it stops at its next step, or is interrupted in a grace period."""
        threading.Timer(CANCEL_GRACE, self.interrupt, (job,)).start()

    def interrupt(self, job: Job) -> None:
        """Raise :class:`Interrupted` in the thread if it is still inside ``job``'s paint call."""
        with job.stop_lock:
            if job.interruptible and self.thread is not None and self.thread.ident is not None:
                job.interruptible = False  # once
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.thread.ident),
                                                           ctypes.py_object(Interrupted))
                return
        if self.line.current is job and not self.line.closed:  # not inside the paint call yet: look again shortly
            threading.Timer(CANCEL_GRACE, self.interrupt, (job,)).start()

    # -- the thread ---------------------------------------------------------------------------

    def _work(self) -> None:
        line = self.line
        while (job := self._next()) is not None:
            outcome = self._run(job)
            with line.lock:
                self._finish_locked(job, *outcome)
                line.current = None
                self.retention.sweep()

    def _next(self) -> Job | None:
        """Wait for a job (sweeping now and then) and mark it running; None once the line is closed."""
        line = self.line
        with line.lock:
            while not line.waiting and not line.closed:
                line.wake.wait(timeout=SWEEP_SECONDS)
                self.retention.sweep()
            if line.closed:
                return None
            job = line.waiting.popleft()
            job.status, job.started, line.current = "running", time.time(), job
            self.store.save(job.state())
            line.publish_status_locked(job)
            line.announce_positions_locked()
        return job

    def _run(self, job: Job) -> tuple[dict[str, Any] | None, str | None]:
        """Run the job; (summary, None) or (None, error). A cancelled job keeps the image it got to."""
        try:
            content, styles, masks = load_inputs(job.folder, job.inputs)
            job.interruptible = True
            if job.cancel.is_set():
                raise Interrupted
            result = self.paint(content, styles, job.settings, machine=self.machine, masks=masks,
                                callback=lambda event: self._progress(job, event))
            with job.stop_lock:
                job.interruptible = False
            if not math.isfinite(result.best_loss):
                return None, ("the loss overflowed (it became infinite or not a number); lower content_weight, "
                              "style_weight or tv_weight")
            record = make_record(result, preset=job.preset, extra=input_names(job.folder, job.inputs))
            write_outputs(result, job.folder / RESULT_FILE, record)
            return summary(result, content), None
        except Interrupted:
            job.interruptible = False
            if job.preview is not None:  # the image it got to
                with Image.open(io.BytesIO(job.preview)) as image:
                    save_stopped(job.settings, job.folder, image, stopped_record(job.folder, job.inputs, job.preset))
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

    def _progress(self, job: Job, event: Progress) -> bool:
        """The paint callback: record the step, tell the listeners, render and save now and then."""
        if job.cancel.is_set():
            return True
        losses = {k: finite(v) for k, v in event.losses.items()}
        now = time.monotonic()
        last = event.step + 1 >= event.total_steps
        png = None
        if job.image_version == 0 or last or now - job.last_render >= self.preview_interval:
            png = png_bytes(event.image())  # rendered here: the tensor changes after the callback returns
            job.last_render = now
        line = self.line
        with line.lock:
            if event.scale != job.scale or event.step == 0:
                job.scale_start = event.step
            job.step, job.scale, job.size = event.step + 1, event.scale, event.size
            job.elapsed = round(event.elapsed, 3)
            job.eta = job.eta_after(event)
            job.history.append({"step": event.step, **losses})
            line.publish_locked(job, "progress", job.progress())
            if png is not None:
                job.preview, job.image_version = png, job.image_version + 1
                line.publish_locked(job, "image", {"version": job.image_version, "step": job.step})
            save = now - job.last_saved >= SAVE_SECONDS and job.status == "running"
            if save:
                job.last_saved = now
                self.store.save(job.state())
                preview = job.preview
        if save and preview is not None:
            write_atomic(job.folder / PREVIEW_FILE, preview)
        return job.cancel.is_set()

    def _finish_locked(self, job: Job, summary: dict[str, Any] | None, error: str | None) -> None:
        job.preview = None  # the file (if any) is the image from now on
        job.image_version += 1
        job.error, job.result, job.eta = error, summary, None
        if job.status == "running" and self.line.closed:  # stopped with the server: rerun it after a restart
            job.status, job.finished = "interrupted", time.time()
            job.error = "the server stopped during this run; rerun it to start again"
        elif job.status == "running":
            job.status, job.finished = ("failed" if error else "done"), time.time()
            if job.status == "done" and job.rate is not None:
                self.rate = job.rate
        (job.folder / PREVIEW_FILE).unlink(missing_ok=True)
        job.disk_bytes = folder_bytes(job.folder)
        self.line.jobs.pop(job.id, None)
        self.store.save(job.state())
        self.line.publish_locked(job, "image", {"version": job.image_version, "step": job.step})
        self.line.publish_status_locked(job)


def summary(result: Result, content: Image.Image) -> dict[str, Any]:
    """What a finished run's state says of its result."""
    change = mean_change(content, result.image)
    return {"seconds": round(result.seconds, 3), "best_step": result.best_step, "best_loss": result.best_loss,
            "width": result.image.width, "height": result.image.height, "device": result.device,
            "precision": result.precision, "stopped": result.stopped, "change": round(change, 4),
            "barely_changed": change < BARELY_CHANGED}


def mean_change(before: Image.Image, after: Image.Image) -> float:
    """Mean absolute change per pixel and channel from ``before`` to ``after`` (0..1), at ``after``'s size."""
    a = before.convert("RGB").resize(after.size, Image.Resampling.BILINEAR)
    diff = ImageChops.difference(a, after.convert("RGB"))
    return sum(ImageStat.Stat(diff).mean) / (3 * 255)


def finite(value: float) -> float | None:
    """JSON has no NaN or infinity (and the browser's JSON.parse refuses them)."""
    return float(value) if math.isfinite(value) else None
