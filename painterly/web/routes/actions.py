"""What can be done to a run: cancel it, run it again (maybe with changed settings), delete it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ..checks import ApiError, apply_changes, parse_json
from ..job import ACTIVE
from ..schemas import ERRORS, JobOut, RerunIn
from ..studio import StudioDep

router = APIRouter()


@router.post("/api/jobs/{job_id}/cancel", summary="Cancel a queued or running run (its files are kept)",
             response_model=JobOut, responses=ERRORS)
def cancel_job(studio: StudioDep, job_id: str) -> dict[str, Any]:
    job = studio.find(job_id)
    if not studio.jobs.cancel(job_id) and job["status"] not in ("cancelled",):
        raise ApiError(409, f"the run is {job['status']} already; there is nothing to cancel", "id")
    return studio.find(job_id)


@router.post("/api/jobs/{job_id}/rerun", status_code=202, summary="Run a stored run again, as a new run",
             responses=ERRORS)
async def rerun_job(studio: StudioDep, job_id: str, changes: RerunIn | None = None) -> dict[str, Any]:
    """With a body ``{"settings": {"strength": 0.7}}``, the new run has those settings changed
    (checked as a new run's are)."""
    studio.find(job_id)
    given = await run_in_threadpool(studio.jobs.rerun_inputs, job_id)
    if given is None:
        raise ApiError(404, "no such run (it may have been deleted)", "id")
    if changes is not None and changes.settings:
        data = parse_json(changes.settings)
        given["settings"] = apply_changes(given["settings"], data, len(given["styles"]), studio.config)
    plan = studio.intake.plan(given["settings"], given["content"][1].size)  # today's limits apply
    return await studio.queue(given["settings"], given["preset"], plan, given["content"], given["styles"],
                              given["masks"], rerun_of=job_id)


@router.delete("/api/jobs/{job_id}", status_code=204, summary="Delete a finished run and its files",
               responses={**ERRORS, 204: {"description": "deleted"}})
def delete_job(studio: StudioDep, job_id: str) -> Response:
    job = studio.find(job_id)
    if job["status"] in ACTIVE:
        raise ApiError(409, f"the run is {job['status']}; cancel it first (POST /api/jobs/{{id}}/cancel)", "id")
    deleted = studio.jobs.delete(job_id)
    if deleted is None:
        raise ApiError(404, "no such run (it may have been deleted)", "id")
    if not deleted:
        raise ApiError(409, "the run is still stopping; try again in a moment", "id")
    return Response(status_code=204)
