"""Local worker processes (:class:`LocalPool`), jobs in this process (:class:`InlinePool`), and
:func:`open_pool`, which picks the pool the ``--workers``, ``--threads`` and ``--ray`` options ask for."""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .painter import Event, Painter, Work

#: Seconds between a local worker's step reports.
STEP_REPORT_SECONDS = 0.5


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
        self.threads = threads or max(1, cores() // workers)
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


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
