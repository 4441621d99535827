"""What the routes reach (:class:`Studio`): the server's limits, its job queue, its intake and its device.

One is made per app (:meth:`Studio.open`) and kept in ``app.state.studio``; a route asks for it with a
parameter typed :data:`StudioDep`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from ..engine.plan import Plan
from ..engine.settings import Settings
from .checks import ApiError
from .config import WebConfig
from .intake import Intake
from .jobs import JobQueue
from .line import QueueFull
from .retention import StorageFull
from .run_files import Named
from .store import Store
from .worker import Paint


@dataclass(frozen=True)
class Studio:
    """The app's state: ``config`` (its limits), ``jobs`` (the queue and the store), ``intake`` (the
    checks on requests) and ``device``, the kind of device the runs use (``cpu``, ``cuda``...)."""

    config: WebConfig
    jobs: JobQueue
    intake: Intake
    device: str

    @classmethod
    def open(cls, config: WebConfig, paint: Paint) -> Studio:
        """The studio over the data folder of ``config`` (raises :class:`DataFolderBusy` if another has it)."""
        from ..engine.devices import pick_device, pick_precision

        store = Store(config.data_folder())
        device = pick_device(config.device).type
        intake = Intake(config, pick_precision("auto", pick_device(config.device)))
        jobs = JobQueue(store, ttl=config.job_ttl, max_disk_bytes=int(config.max_disk_mb * 2**20),
                        max_queued=config.max_queued, preview_interval=config.preview_interval,
                        device=config.device, threads=config.threads, planner=intake.plan, paint=paint)
        return cls(config, jobs, intake, device)

    def find(self, job_id: str) -> dict[str, Any]:
        """The run's state, or a 404 answer."""
        job = self.jobs.snapshot(job_id)
        if job is None:
            raise ApiError(404, "no such run (it may have been deleted)", "id")
        return job

    async def queue(self, settings: Settings, preset: str, plan: Plan, content: Named, styles: list[Named],
                    masks: list[Named] | None, rerun_of: str | None = None) -> dict[str, Any]:
        """Put a checked run in line; the answer of ``POST /api/jobs`` (503 if the line is full, 507 if the disk is)."""
        try:
            job_id = await run_in_threadpool(self.jobs.submit, settings, preset, plan, content, styles, masks,
                                             rerun_of)
        except QueueFull as exc:
            error = ApiError(503, str(exc))
            error.headers = {"Retry-After": str(self.jobs.retry_after())}
            raise error from None
        except StorageFull as exc:
            raise ApiError(507, str(exc)) from None
        snapshot = self.find(job_id)
        return {"id": job_id, "status": snapshot["status"], "position": snapshot["position"],
                "url": f"/api/jobs/{job_id}", "plan": snapshot["plan"]}


async def current_studio(request: Request) -> Studio:
    """The studio of the app serving ``request``."""
    return request.app.state.studio


StudioDep = Annotated[Studio, Depends(current_studio)]
