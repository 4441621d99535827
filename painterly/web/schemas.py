"""The shapes of the studio's JSON API (pydantic models), as ``/openapi.json`` and ``/docs`` show them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorOut(BaseModel):
    detail: str
    field: str | None = None


class JobOut(BaseModel):
    """A run's state. ``position`` is 1 for the next to run (queued runs only)."""

    id: str
    status: str
    position: int | None
    created: float
    started: float | None
    finished: float | None
    expires: float | None
    step: int
    total_steps: int
    scale: int
    scales: int
    size: list[int] | None
    elapsed: float
    eta: float | None
    losses: dict[str, Any] | None
    history: list[dict[str, Any]]
    error: str | None
    image_version: int
    preset: str
    settings: dict[str, Any]
    inputs: dict[str, Any]
    result: dict[str, Any] | None
    plan: dict[str, Any]
    rerun_of: str | None


class PlanIn(BaseModel):
    """A run's settings (the JSON text ``POST /api/jobs`` takes), its content image's size and number of artworks."""

    settings: str = "{}"
    width: int = Field(ge=1, le=1_000_000)
    height: int = Field(ge=1, le=1_000_000)
    styles: int = Field(default=1, ge=1, le=1000)


class RerunIn(BaseModel):
    """Changes to the stored run's settings, as JSON text: ``{"strength": 0.7}``."""

    settings: str = "{}"


#: The refusals a route may answer, each ``{"detail", "field"}`` (:class:`ErrorOut`).
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (403, 404, 409, 413, 415, 422, 503,
                                                                                  507)}
