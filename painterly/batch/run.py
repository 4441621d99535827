"""Running a batch: the worker's side (:class:`Painter`), local worker processes (:class:`LocalPool`)
and the driver loop (:func:`run_batch`) that skips finished jobs, hands out the others, writes what
comes back and keeps the results file.

A worker receives a :class:`Work`: the settings and the input files' bytes, never a path, so the same
work runs in a local process or on a Ray node without a shared disk. It sends back the finished
image encoded with its run record embedded; only the driver writes files, each atomically. A pool
(local or :class:`painterly.workers.ray_pool.RayPool`) has three calls: ``submit(work)``, ``wait(timeout)``
returning events, ``close()``; a worker that dies is reported as a lost job, and the driver gives
the job to another worker.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..engine.images import OUTPUT_FORMATS, atomic_path, open_image
from ..errors import ImageError, PainterlyError
from .jobs import Job

#: A job whose worker died this many times is failed rather than tried again.
MAX_ATTEMPTS = 3
#: Seconds between a local worker's step reports.
STEP_REPORT_SECONDS = 0.5


@dataclass(frozen=True)
class Work:
    """What a worker needs to paint one job: settings and the input files' bytes."""

    job: int
    settings: Any  # Settings
    preset: str
    content: bytes
    styles: tuple[bytes, ...]
    record_extra: dict[str, Any]  # the input paths and digests, for the record
    format: str  # Pillow format of the output
    machine: Any = None  # Machine: device, memory and tiles for the worker (None: its defaults)


@dataclass(frozen=True)
class Painted:
    """A finished job: the encoded image (record embedded) and what the results file says of it."""

    job: int
    data: bytes
    best_loss: float
    seconds: float


#: Events a pool reports: ("step", job, step, steps), ("done", job, Painted), ("failed", job, message),
#: ("lost", job, message): the worker died (the driver retries the job elsewhere).
Event = tuple[str, int, Any, Any]


class Pool(Protocol):
    size: int

    def submit(self, work: Work) -> None: ...
    def wait(self, timeout: float) -> list[Event]: ...
    def close(self) -> None: ...


# -- the worker's side -------------------------------------------------------------------------

class Painter:
    """Paints works one after the other with one :class:`~painterly.engine.run.Engine`: the network is
    loaded once and style targets are reused across jobs."""

    def __init__(self) -> None:
        from ..engine.run import Engine

        self.engine = Engine()

    def paint(self, work: Any, callback: Callable[[Any], Any] | None = None) -> Event:
        """Run ``work``; a ``done`` event, or ``failed`` with one line saying why.

        A :class:`Work` is one picture of a batch. Any other work (a video's chunk of frames or one
        frame's refinement, :mod:`painterly.video.parallel`) runs itself on this painter's engine:
        ``work.run(engine, callback)`` returns its ``done`` event, so that the same pools carry it.
        """
        try:
            if isinstance(work, Work):
                return self._picture(work, callback)
            return work.run(self.engine, callback)
        except PainterlyError as exc:
            return ("failed", work.job, str(exc), None)
        except Exception as exc:  # noqa: BLE001 -- a bug or an exhausted machine fails this job, not the batch
            return ("failed", work.job, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", None)

    def _picture(self, work: Work, callback: Callable[[Any], Any] | None) -> Event:
        from ..engine.run import stylize
        from ..output.record import make_record

        content = decode(work.content)
        styles = [decode(s) for s in work.styles]
        result = stylize(content, styles, work.settings, machine=work.machine, callback=callback, engine=self.engine)
        record = make_record(result, preset=work.preset, extra=work.record_extra)
        data = encode(result.image, work.format, record)
        return ("done", work.job, Painted(work.job, data, result.best_loss, result.seconds), None)


def decode(data: bytes):
    """An input file's bytes as an upright RGB PIL image (the driver has checked the file already)."""
    from PIL import Image, ImageOps

    from ..engine.images import to_rgb

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return to_rgb(ImageOps.exif_transpose(img))


def encode(image, fmt: str, record: dict[str, Any]) -> bytes:
    """``image`` in format ``fmt`` with ``record`` embedded, as :func:`painterly.output.record.write_outputs`
    would write it."""
    from ..output import metadata

    params = metadata.save_params(fmt, record)
    if fmt == "JPEG":
        params.setdefault("quality", 95)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def worker_main(channel: Any, threads: int) -> None:
    """A local worker process: set up once, then paint what arrives on ``channel`` (its own end of
    a pipe to the driver) until told to stop (None) or until the driver is gone."""
    from ..engine.devices import setup_process

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    setup_process(threads)
    painter = Painter()
    while True:
        try:
            work = channel.recv()
        except (EOFError, OSError):
            return  # the driver is gone
        if work is None:
            return
        try:
            channel.send(painter.paint(work, _step_reporter(channel, work.job)))
        except (BrokenPipeError, OSError):
            return


def _step_reporter(channel: Any, job: int) -> Callable[[Any], None]:
    last = [0.0]

    def report(progress: Any) -> None:
        now = time.monotonic()
        if now - last[0] >= STEP_REPORT_SECONDS:
            last[0] = now
            channel.send(("step", job, progress.step + 1, progress.total_steps))

    return report


# -- local processes ---------------------------------------------------------------------------

@dataclass
class _Worker:
    process: Any
    channel: Any  # the driver's end of the worker's pipe


class LocalPool:
    """``workers`` processes on this machine (spawned, so no torch state is inherited), each with
    ``threads`` torch threads (default: this machine's cores shared out, at least 1 each).

    Each worker talks to the driver over a pipe of its own, written only from its main thread: a
    worker killed mid-message (SIGKILL, the OOM killer) takes only its own pipe with it, which the
    driver then reads as the end of that worker. A queue shared by all workers would not survive
    that: its lock, held by the dead writer, would block every other worker's reports for good.
    """

    def __init__(self, workers: int, threads: int | None = None) -> None:
        self.size = workers
        self.threads = threads or max(1, _cores() // workers)
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[_Worker | None] = [None] * workers  # started with their first job
        self.busy: dict[int, int] = {}  # worker slot -> job

    def _start(self) -> _Worker:
        ours, theirs = self.context.Pipe(duplex=True)
        process = self.context.Process(target=worker_main, args=(theirs, self.threads), daemon=True)
        process.start()
        theirs.close()  # the worker holds the only other end: its death reads as end-of-file here
        return _Worker(process, ours)

    def submit(self, work: Any) -> None:
        slot = next(i for i in range(self.size) if i not in self.busy)
        worker = self.workers[slot] or self._start()
        self.workers[slot] = worker
        self.busy[slot] = work.job
        try:
            worker.channel.send(work)
        except OSError:
            pass  # it died since its last job; wait() reports the job lost

    def wait(self, timeout: float) -> list[Event]:
        events: list[Event] = []
        channels = {w.channel: slot for slot, w in enumerate(self.workers) if w is not None and slot in self.busy}
        for channel in multiprocessing.connection.wait(list(channels), timeout) if channels else []:
            events += self._read(channels[channel])
        if not channels:
            time.sleep(min(timeout, 0.05))
        return events

    def _read(self, slot: int) -> list[Event]:
        """Everything worker ``slot`` has sent; if its pipe has ended, its job is lost."""
        worker = self.workers[slot]
        assert worker is not None
        events: list[Event] = []
        try:
            while worker.channel.poll():
                events.append(worker.channel.recv())
        except (EOFError, OSError):
            worker.process.join(1.0)
            if slot in self.busy:
                events.append(("lost", self.busy.pop(slot),
                               f"worker process died (exit code {worker.process.exitcode})", None))
            worker.channel.close()
            self.workers[slot] = None  # the next job starts a new one
        for kind, job, *_ in events:
            if kind in ("done", "failed") and self.busy.get(slot) == job:
                del self.busy[slot]
        return events

    def close(self) -> None:
        started = [w for w in self.workers if w is not None]
        for worker in started:
            if not self.busy:
                with contextlib.suppress(OSError):
                    worker.channel.send(None)
        deadline = time.monotonic() + 5
        for worker in started:
            if self.busy:
                worker.process.terminate()  # stopped mid-batch: the jobs in flight are abandoned
            worker.process.join(max(0.1, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(1.0)
            worker.channel.close()
        self.workers = [None] * self.size


def open_pool(workers: int | None, threads: int | None, ray: str | None = None) -> Any:
    """The workers ``--workers``, ``--threads`` and ``--ray`` ask for: actors on the Ray cluster
    ``ray`` names (see :func:`painterly.workers.ray_pool.connect`), else ``workers`` local processes (default 1)."""
    if ray is not None:
        from ..workers.ray_pool import RayPool, connect

        started_here = connect(ray)
        return RayPool(workers, threads, shutdown=started_here)
    return LocalPool(workers or 1, threads)


class InlinePool:
    """Jobs one after the other in this process: for notebooks, a debugger, and tests of the driver."""

    size = 1

    def __init__(self) -> None:
        self.painter: Painter | None = None
        self.events: list[Event] = []

    def submit(self, work: Work) -> None:
        self.painter = self.painter or Painter()
        self.events.append(self.painter.paint(work))

    def wait(self, timeout: float) -> list[Event]:
        events, self.events = self.events, []
        return events

    def close(self) -> None:
        self.events = []


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# -- the driver --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    """One line of the results file."""

    job: int
    output: str
    status: str  # done, skipped or failed
    seconds: float | None = None
    best_loss: float | None = None
    error: str | None = None
    attempts: int = 0

    def line(self) -> str:
        return json.dumps({"job": self.job, "output": self.output, "status": self.status, "seconds": self.seconds,
                           "best_loss": self.best_loss, "error": self.error, "attempts": self.attempts})


@dataclass(frozen=True)
class BatchProgress:
    """The batch as it stands, for the progress line."""

    total: int
    painted: int
    skipped: int
    failed: int
    running: dict[int, tuple[int, int]]  # job -> (step, steps), as the workers last reported
    elapsed: float
    images_per_hour: float | None
    eta: float | None  # seconds, from the plans' costs and the speed so far
    finished: Outcome | None  # the job that just ended, if any


@dataclass
class BatchSummary:
    painted: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    failures: list[Outcome] = field(default_factory=list)


class _Inputs:
    """Input files' bytes and digests, each file read once per batch."""

    def __init__(self) -> None:
        self.digests: dict[Path, str] = {}

    def digest(self, path: Path) -> str:
        if path not in self.digests:
            self.digests[path] = hashlib.sha256(read_input(path)).hexdigest()
        return self.digests[path]


def read_input(path: Path) -> bytes:
    """A file's bytes; :class:`ImageError` naming it if it cannot be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"image not found: {path}") from None
    except IsADirectoryError:
        raise ImageError(f"{path} is a folder, expected an image file") from None
    except OSError as exc:
        raise ImageError(f"cannot read {path}: {exc.strerror}") from None


def run_batch(jobs: Sequence[Job], pool: Pool, results: str | os.PathLike,
              on_progress: Callable[[BatchProgress], Any] | None = None, machine: Any = None) -> BatchSummary:
    """Run ``jobs`` on ``pool``: skip those already done, write each finished picture atomically, and
    append a line per job to ``results`` (JSON lines) as it ends. ``machine``
    (:class:`~painterly.engine.settings.Machine`) is what every worker runs with. Closes the pool."""
    return _Driver(jobs, pool, Path(results), on_progress, machine).run()


class _Driver:
    def __init__(self, jobs: Sequence[Job], pool: Pool, results: Path, on_progress: Any, machine: Any = None) -> None:
        self.machine = machine
        self.jobs = {job.index: job for job in jobs}
        self.pool, self.results, self.on_progress = pool, results, on_progress
        self.inputs = _Inputs()
        self.summary = BatchSummary()
        self.costs: dict[int, float] = {}
        self.attempts: dict[int, int] = {}
        self.running: dict[int, tuple[int, int]] = {}
        self.start = time.perf_counter()
        self.cost_done = 0.0  # the plans' cost of the jobs painted so far
        self.open = set(self.jobs)  # jobs not settled yet

    def run(self) -> BatchSummary:
        try:
            todo = deque(job for job in self.jobs.values() if self._needs_work(job))
            self._report(None)
            while todo or self.running:
                while todo and len(self.running) < self.pool.size:
                    self._submit(todo.popleft())
                for kind, index, payload, _ in self.pool.wait(0.5):
                    if index not in self.running:
                        continue  # a late report of a job already settled
                    if kind == "step":
                        self.running[index] = (payload, _)
                    elif kind == "lost":
                        del self.running[index]
                        if self.attempts[index] >= MAX_ATTEMPTS:
                            self._finish(self.jobs[index], "failed", error=f"{payload}, {MAX_ATTEMPTS} times")
                        else:
                            todo.appendleft(self.jobs[index])
                    else:
                        del self.running[index]
                        self._settle(self.jobs[index], kind, payload)
                self._report(None)
        finally:
            self.pool.close()
        self.summary.seconds = time.perf_counter() - self.start
        return self.summary

    def _needs_work(self, job: Job) -> bool:
        """Plan ``job``: False if it is done already or cannot run (its outcome recorded)."""
        from ..engine.plan import make_plan
        from ..output import metadata
        from ..output.record import same_work

        _remove_stale_parts(job.output)
        if job.error:
            self._finish(job, "failed", error=job.error)
            return False
        assert job.settings is not None  # a job without settings has an error, handled above
        try:
            digests = {"content": self.inputs.digest(job.content),
                       "styles": [self.inputs.digest(s) for s in job.styles], "masks": None}
            if job.output.exists():
                with contextlib.suppress(PainterlyError):
                    if same_work(metadata.read(job.output), job.settings.to_dict(), digests):
                        self._finish(job, "skipped")
                        return False
            size = open_image(job.content).size  # checks the content fully, before it is shipped
            precision = job.settings.precision if job.settings.precision != "auto" else "fp32"
            self.costs[job.index] = make_plan(job.settings, size, precision).total_cost
        except PainterlyError as exc:
            self._finish(job, "failed", error=str(exc))
            return False
        return True

    def _submit(self, job: Job) -> None:
        try:
            for style in job.styles:
                open_image(style)
            work = Work(job.index, job.settings, job.preset, read_input(job.content),
                        tuple(read_input(s) for s in job.styles), self._record_extra(job),
                        OUTPUT_FORMATS[job.output.suffix.lower()], self.machine)
        except PainterlyError as exc:
            self._finish(job, "failed", error=str(exc))
            return
        self.attempts[job.index] = self.attempts.get(job.index, 0) + 1
        assert job.settings is not None  # only jobs without an error are submitted
        self.running[job.index] = (0, sum(job.settings.scale_steps()))
        self.pool.submit(work)

    def _record_extra(self, job: Job) -> dict[str, Any]:
        return {"content": str(job.content.resolve()), "styles": [str(s.resolve()) for s in job.styles],
                "masks": None, "inputs": {"content": self.inputs.digest(job.content),
                                          "styles": [self.inputs.digest(s) for s in job.styles], "masks": None}}

    def _settle(self, job: Job, kind: str, payload: Any) -> None:
        if kind == "failed":
            self._finish(job, "failed", error=payload)
            return
        painted: Painted = payload
        try:
            with atomic_path(job.output) as tmp:
                tmp.write_bytes(painted.data)
        except OSError as exc:
            self._finish(job, "failed", error=f"cannot write {job.output}: {exc.strerror or exc}")
            return
        self.cost_done += self.costs[job.index]
        self._finish(job, "done", seconds=round(painted.seconds, 3), best_loss=painted.best_loss)

    def _finish(self, job: Job, status: str, **details: Any) -> None:
        outcome = Outcome(job.index, str(job.output), status, attempts=self.attempts.get(job.index, 0), **details)
        self.open.discard(job.index)
        with open(self.results, "a", encoding="utf-8") as handle:
            handle.write(outcome.line() + "\n")
        if status == "done":
            self.summary.painted += 1
        elif status == "skipped":
            self.summary.skipped += 1
        else:
            self.summary.failed += 1
            self.summary.failures.append(outcome)
        self._report(outcome)

    def _report(self, finished: Outcome | None) -> None:
        if self.on_progress is None:
            return
        elapsed = time.perf_counter() - self.start
        painted = self.summary.painted
        in_flight = sum(self.costs[j] * s / max(t, 1) for j, (s, t) in self.running.items())
        done_cost = self.cost_done + in_flight
        left = sum(self.costs.get(j, 0.0) for j in self.open) - in_flight
        eta = left * elapsed / done_cost if painted and done_cost > 0 else None
        self.on_progress(BatchProgress(
            total=len(self.jobs), painted=painted, skipped=self.summary.skipped, failed=self.summary.failed,
            running=dict(self.running), elapsed=elapsed,
            images_per_hour=painted * 3600 / elapsed if painted and elapsed > 0 else None,
            eta=max(0.0, eta) if eta is not None else None, finished=finished))


def _remove_stale_parts(output: Path) -> None:
    """Temporary files a killed batch left beside ``output`` (the output itself is never half written)."""
    if output.parent.is_dir():
        for part in output.parent.glob(f".{glob.escape(output.stem)}.part.*{output.suffix}"):
            with contextlib.suppress(OSError):
                part.unlink()
