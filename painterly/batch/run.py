"""Running a batch: the driver loop (:func:`run_batch`) that skips finished jobs, hands the others to
a pool of workers (:mod:`painterly.workers`), writes what comes back and keeps the results file.

A worker receives a :class:`~painterly.workers.painter.Work`: the settings and the input files'
bytes, never a path. It sends back the finished image encoded with its run record embedded; only the
driver writes files, each atomically. A worker that dies is reported as a lost job, and the driver
gives the job to another worker.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.images import OUTPUT_FORMATS, atomic_path, open_image
from ..engine.progress import seconds_left
from ..errors import ImageError, PainterlyError
from ..workers.painter import Painted, Pool, Work
from .jobs import Job

#: A job whose worker died this many times is failed rather than tried again.
MAX_ATTEMPTS = 3


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
        eta = seconds_left(elapsed, done_cost, left) if painted else None
        self.on_progress(BatchProgress(
            total=len(self.jobs), painted=painted, skipped=self.summary.skipped, failed=self.summary.failed,
            running=dict(self.running), elapsed=elapsed,
            images_per_hour=painted * 3600 / elapsed if painted and elapsed > 0 else None,
            eta=eta, finished=finished))


def _remove_stale_parts(output: Path) -> None:
    """Temporary files a killed batch left beside ``output`` (the output itself is never half written)."""
    if output.parent.is_dir():
        for part in output.parent.glob(f".{glob.escape(output.stem)}.part.*{output.suffix}"):
            with contextlib.suppress(OSError):
                part.unlink()
