"""What a run shows: its image (live or final), its inputs as it uses them, and its live events."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response, StreamingResponse

from ..checks import ApiError
from ..schemas import ERRORS
from ..studio import StudioDep

router = APIRouter()


@router.get("/api/jobs/{job_id}/image", summary="The current or final image (PNG)", responses=ERRORS)
def get_image(studio: StudioDep, job_id: str, download: bool = False) -> Response:
    job = studio.find(job_id)
    png = studio.jobs.image(job_id)
    if png is None:
        raise ApiError(404, "no image yet: the run has not made its first step", "id")
    headers = {"Cache-Control": "no-store"}
    if download:
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(job["inputs"]["content"]).stem)[:40] or "result"
        headers["Content-Disposition"] = f'attachment; filename="painterly-{stem}.png"'
    return Response(png, media_type="image/png", headers=headers)


@router.get("/api/jobs/{job_id}/content", summary="The run's content image, as the run uses it", responses=ERRORS)
def get_content(studio: StudioDep, job_id: str) -> FileResponse:
    studio.find(job_id)
    return stored(studio.jobs.input_path(job_id, None))


@router.get("/api/jobs/{job_id}/styles/{index}", summary="The run's style image number index (from 0)",
            responses=ERRORS)
def get_style(studio: StudioDep, job_id: str, index: int) -> FileResponse:
    names = studio.find(job_id)["inputs"]["styles"]
    if not 0 <= index < len(names):
        raise ApiError(404, f"this run has {len(names)} style images", "index")
    return stored(studio.jobs.input_path(job_id, index))


@router.get("/api/jobs/{job_id}/masks/{index}", summary="The run's mask number index (from 0), grayscale",
            responses=ERRORS)
def get_mask(studio: StudioDep, job_id: str, index: int) -> FileResponse:
    names = studio.find(job_id)["inputs"]["masks"]
    if not 0 <= index < len(names):
        raise ApiError(404, f"this run has {len(names)} masks", "index")
    return stored(studio.jobs.mask_path(job_id, index))


@router.get("/api/jobs/{job_id}/events", summary="Live progress (server-sent events)", responses=ERRORS,
            response_class=StreamingResponse)
def get_events(studio: StudioDep, job_id: str) -> StreamingResponse:
    """Events: ``status`` (the whole state, first and on every change), ``progress`` (each step),
    ``image`` (a new image: fetch ``/image?v=<version>``). The stream ends with a final status."""
    studio.find(job_id)
    return StreamingResponse(studio.jobs.stream(job_id), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def stored(path: Path) -> FileResponse:
    """A stored PNG of a run, or a 404 answer if it was deleted meanwhile."""
    if not path.is_file():  # deleted between the look-up and now
        raise ApiError(404, "no such run (it may have been deleted)", "id")
    return FileResponse(path, media_type="image/png")
