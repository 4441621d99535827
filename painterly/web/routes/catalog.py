"""What the studio offers: the settings a run takes (with the server's limits) and the bundled example images."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse

from ... import samples
from ...engine.settings import INITS, MIN_SIZE, PRESETS, Settings
from ..checks import REFUSED, ApiError
from ..config import WebConfig
from ..schemas import ERRORS
from ..studio import StudioDep

#: Help of a field as the page shows it, where the CLI's would offer what the web refuses.
WEB_HELP = {"init": "what the painting starts from: content (the photo), palette (the photo in the "
                   "artwork's colours, dark kept dark), noise or style"}

router = APIRouter()


@router.get("/api/settings", summary="The settings a run takes, with defaults, help, choices and presets")
def get_settings(studio: StudioDep) -> dict[str, Any]:
    return settings_schema(studio.config)


@router.get("/api/examples", summary="The bundled example images")
def get_examples() -> dict[str, Any]:
    listing = {kind: [{"name": name, "url": f"/api/examples/{name}"} for name in found]
               for kind, found in (("content", samples.contents()), ("styles", samples.styles()))}
    return {**listing, "credits": samples.TURTLE_CREDIT}


@router.get("/api/examples/{name}", summary="One bundled example image (JPEG)", responses=ERRORS)
def get_example(name: str) -> FileResponse:
    found = {**samples.styles(), **samples.contents()}
    if name not in found:
        raise ApiError(404, f"no example called {name!r}", "name")
    return FileResponse(found[name], media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})


def settings_schema(config: WebConfig) -> dict[str, Any]:
    """The Settings fields a request may set (type, default, help, group, choices), presets, limits."""
    hints = typing.get_type_hints(Settings)
    defaults = Settings().to_dict()
    fields = [
        {"name": f.name, "type": _type_name(hints[f.name]), "default": defaults[f.name],
         "help": WEB_HELP.get(f.name, f.metadata["help"]), "group": f.metadata["group"],
         "choices": list(INITS if f.name == "init" else f.metadata.get("choices", ())) or None}
        for f in dataclasses.fields(Settings) if f.name not in REFUSED
    ]
    limits = {name: getattr(config, name) for name in (
        "max_size", "max_steps", "max_total_steps", "max_scales", "max_style_size", "max_memory_mb", "max_styles",
        "max_upload_mb", "max_pixels", "max_request_pixels")}
    return {"fields": fields, "presets": {name: p.to_dict() for name, p in PRESETS.items()},
            "default_preset": "default", "limits": {**limits, "min_size": MIN_SIZE}, "refused": REFUSED}


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is tuple:
        return f"list[{typing.get_args(hint)[0].__name__}]"
    return hint.__name__
