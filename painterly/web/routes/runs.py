"""Runs: start one, list them, ask what one would take, read one's state."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile

from ..budget import plan_summary
from ..checks import ApiError, parse_settings, safe_text
from ..intake import check_counts
from ..job import ACTIVE, FINISHED
from ..schemas import ERRORS, JobOut, PlanIn
from ..studio import StudioDep

router = APIRouter()


@router.post("/api/jobs", status_code=202, summary="Start a run (it waits in line if another is running)",
             responses=ERRORS)
async def post_job(
    studio: StudioDep,
    content: Annotated[UploadFile, File(description="the photo to paint (PNG, JPEG, WebP, GIF, BMP, TIFF)")],
    style: Annotated[list[UploadFile], File(description="one or more artworks")],
    settings: Annotated[str, Form(description='JSON: {"preset": "draft", "size": 256, ...}')] = "{}",
    mask: Annotated[list[UploadFile] | None, File(
        description="optional: one grayscale mask per style, in the same order (white: that style applies)"
    )] = None,
) -> dict[str, Any]:
    given = await studio.intake.read(content, style, mask, settings)
    return await studio.queue(given.settings, given.preset, given.plan, given.content, given.styles, given.masks)


@router.get("/api/jobs", summary="The newest runs, newest first (without loss histories), a page at a time",
            responses=ERRORS)
def list_jobs(studio: StudioDep, limit: int = 50, offset: int = 0, status: str = "") -> dict[str, Any]:
    """``status``: only runs in these states (comma-separated, e.g. ``done,interrupted``);
    ``total``: how many runs match, for paging with ``offset``."""
    statuses = tuple(s for s in status.split(",") if s)
    unknown = [s for s in statuses if s not in (*ACTIVE, *FINISHED)]
    if unknown:
        raise ApiError(422, f"status takes {', '.join((*ACTIVE, *FINISHED))}, got {unknown[0][:40]!r}", "status")
    page, total = studio.jobs.recent_page(max(1, min(limit, 200)), max(0, offset), statuses)
    return {"jobs": page, "total": total}


@router.post("/api/plan", summary="What a run would cost, and whether this server would take it", responses=ERRORS)
def post_plan(studio: StudioDep, request: PlanIn) -> dict[str, Any]:
    """The same checks as ``POST /api/jobs`` on the settings, the content image's size and the
    number of artworks, without the images: ``refused`` is ``{"detail", "field"}`` or null."""
    intake = studio.intake
    try:
        check_counts(request.styles, None, studio.config)
        preset, settings = parse_settings(request.settings, request.styles, studio.config)
        plan = intake.plan(settings, (request.width, request.height))
    except ApiError as exc:
        return {"preset": None, "plan": None, "seconds": None,
                "refused": {"detail": safe_text(str(exc.detail)), "field": exc.field and safe_text(exc.field)}}
    precision = intake.precision if settings.precision == "auto" else settings.precision
    return {"preset": preset, "plan": plan_summary(plan),
            "seconds": studio.jobs.estimate_seconds(plan, studio.device, precision), "refused": None}


@router.get("/api/jobs/{job_id}", response_model=JobOut, summary="A run's state", responses=ERRORS)
def get_job(studio: StudioDep, job_id: str) -> dict[str, Any]:
    return studio.find(job_id)
