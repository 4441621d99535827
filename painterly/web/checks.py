"""Checking what a request to the web studio sends: uploads, masks, settings and the request's size.

Every upload (content, styles, masks) is decoded by Pillow (the name and the declared type are not trusted) and checked
against the size and pixel limits of the server's :class:`~painterly.web.server.WebConfig`;
settings go through :class:`~painterly.settings.Settings` like the CLI's, less the :data:`REFUSED`
fields. Whatever is refused raises :class:`ApiError`, which the app answers with
``{"detail": "...", "field": "..."}`` naming the form field or setting at fault.
"""

from __future__ import annotations

import io
import json
import re
import warnings
from typing import TYPE_CHECKING, Any

from fastapi import UploadFile
from fastapi.exceptions import HTTPException
from fastapi.responses import JSONResponse
from PIL import Image, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool

from ..api import MIN_STYLE
from ..errors import ImageError, SettingsError
from ..images import MIN_SIDE, fit_size, from_any, resize_longer
from ..masks import prepare_masks
from ..settings import FIELD_NAMES, INITS, Settings, preset

if TYPE_CHECKING:
    from .server import WebConfig

#: Pillow formats accepted as uploads (decided from the bytes, never from the name).
UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
#: Settings a request may not set: they read files or change the whole server.
REFUSED = {
    "weights": "it names a file on the server",
    "device": "the server decides (painterly serve --device)",
    "threads": "the server decides (painterly serve --threads)",
}


class ApiError(HTTPException):
    """A refused request: the status, one sentence, and the form field or setting at fault."""

    def __init__(self, status: int, detail: str, field: str | None = None) -> None:
        super().__init__(status, detail)
        self.field = field


def parse_settings(text: str, n_styles: int, config: WebConfig) -> tuple[str, Settings]:
    """The ``settings`` form field (JSON) -> (preset name, Settings); :class:`ApiError` 422 if bad."""
    try:
        data = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise ApiError(422, f"settings is not valid JSON ({exc.msg} at character {exc.pos})", "settings") from None
    if not isinstance(data, dict):
        raise ApiError(422, 'settings must be a JSON object, e.g. {"preset": "draft", "size": 256}', "settings")
    name = data.pop("preset", "default")
    try:
        if not isinstance(name, str):
            raise SettingsError(f"preset must be a name such as 'default', got {name!r}")
        settings = preset(name)
    except SettingsError as exc:
        raise ApiError(422, str(exc), "preset") from None
    for key, value in data.items():
        if key in REFUSED:
            raise ApiError(422, f"{key} cannot be set from the web: {REFUSED[key]}", key)
        if key == "init" and value not in INITS:
            raise ApiError(422, f"init must be one of {', '.join(INITS)} here, got {value!r}", key)
    settings = _apply(settings, data)
    if settings.size > config.max_size:
        raise ApiError(422, f"size must be at most {config.max_size} px on this server, got {settings.size}", "size")
    if settings.steps > config.max_steps:
        raise ApiError(422, f"steps must be at most {config.max_steps} on this server, got {settings.steps}", "steps")
    if settings.style_blend_weights and len(settings.style_blend_weights) != n_styles:
        raise ApiError(422, f"style_blend_weights has {len(settings.style_blend_weights)} values for {n_styles} "
                       "style images", "style_blend_weights")
    return name, settings


def _apply(settings: Settings, changes: dict[str, Any]) -> Settings:
    """``settings`` with ``changes``; if they are refused, an :class:`ApiError` naming the first field at fault.

    To find it, the changes are applied one at a time in the dataclass's field order, so that a field
    checked against another (``style_layer_weights`` against ``style_layers``) comes after it.
    """
    try:
        return settings.replace(**changes)
    except (TypeError, ValueError):  # SettingsError is a ValueError
        pass
    for key in sorted(changes, key=lambda k: FIELD_NAMES.index(k) if k in FIELD_NAMES else -1):  # unknown first
        settings = _try(settings, key, {key: changes[key]})
    return settings


def _try(settings: Settings, key: str, changes: dict[str, Any]) -> Settings:
    try:
        return settings.replace(**changes)
    except SettingsError as exc:
        raise ApiError(422, str(exc), key) from None
    except (TypeError, ValueError) as exc:  # e.g. a JSON object where a list of names belongs
        raise ApiError(422, f"{key} has a value of the wrong kind ({exc})", key) from None


async def read_image(upload: UploadFile, field: str, what: str, config: WebConfig) -> tuple[str, Image.Image]:
    """An upload -> (display name, RGB image), checked for size, pixels, type and integrity."""
    limit = int(config.max_upload_mb * 2**20)
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, f"{what} is larger than {config.max_upload_mb:g} MB", field)
    if not data:
        raise ApiError(422, f"{what} is an empty file", field)
    image = await run_in_threadpool(decode_image, data, what, field, config.max_pixels)
    return display_name(upload.filename, what), image


def decode_image(data: bytes, what: str, field: str, max_pixels: int) -> Image.Image:
    """Bytes -> RGB image, upright; the format is whatever Pillow finds in the bytes."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise ApiError(413, f"{what} is {w}x{h} px; at most {max_pixels:,} pixels are accepted", field)
                img.load()
                return from_any(img, what)
    except UnidentifiedImageError:
        raise ApiError(415, f"{what} is not an image this server reads "
                       f"(accepted: {', '.join(UPLOAD_FORMATS)})", field) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ApiError(413, f"{what} is too large to be a real photo; at most {max_pixels:,} pixels are accepted",
                       field) from None
    except ImageError as exc:
        raise ApiError(422, str(exc), field) from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise ApiError(422, f"{what} is truncated or corrupt and cannot be decoded", field) from None


def check_fits(content: Image.Image, settings: Settings) -> None:
    """Refuse a content image that would be too thin for the network at some scale of the run."""
    for size in settings.scale_sizes():
        w, h = fit_size(content.size, size)
        if min(w, h) < MIN_SIDE:
            raise ApiError(422, f"the content image would be {w}x{h} px at size {size}: too thin for the network "
                           f"(each side needs {MIN_SIDE} px); use a larger size or a less elongated image", "content")


def check_counts(n_styles: int, n_masks: int | None, config: WebConfig) -> None:
    """Refuse more styles than the server allows, and masks that are not one per style."""
    if n_styles > config.max_styles:
        raise ApiError(422, f"at most {config.max_styles} style images per run, got {n_styles}", "style")
    if n_masks is not None and n_masks != n_styles:
        raise ApiError(422, f"got {n_masks} mask{'s' if n_masks != 1 else ''} for {n_styles} style image"
                       f"{'s' if n_styles != 1 else ''}: give one mask per style, or none", "mask")


def working_copies(
    content: tuple[str, Image.Image],
    styles: list[tuple[str, Image.Image]],
    masks: list[tuple[str, Image.Image]] | None,
    settings: Settings,
):
    """The inputs shrunk to the sizes the run uses: content to ``size``, styles to the style size,
    masks to the content's size (grayscale)."""
    check_fits(content[1], settings)
    style_size = max(MIN_STYLE, round(settings.size * settings.style_scale))
    content_copy = working_copy(content[1], settings.size, "content image", "content")
    return ((content[0], content_copy),
            [(name, working_copy(img, style_size, "style image", "style")) for name, img in styles],
            None if masks is None else working_masks(masks, content_copy.size, settings))


def working_masks(
    masks: list[tuple[str, Image.Image]], size: tuple[int, int], settings: Settings
) -> list[tuple[str, Image.Image]]:
    """The masks as grayscale images of the content's ``size`` (w, h), refused (with the core's
    message) if one would cover nothing at some scale of the run."""
    gray = [(name, image.convert("L").resize(size, Image.BILINEAR)) for name, image in masks]
    for longer in settings.scale_sizes():  # the run prepares them at every scale: fail now, not then
        try:
            prepare_masks([image for _, image in gray], len(gray), fit_size(size, longer))
        except ImageError as exc:
            raise ApiError(422, str(exc), "mask") from None
    return gray


def working_copy(image: Image.Image, longer: int, what: str, field: str) -> Image.Image:
    """Shrink an input to the largest size the run uses (inputs are never enlarged here)."""
    try:
        return resize_longer(image, longer, what) if max(image.size) > longer else image
    except ImageError as exc:  # too thin at that size
        raise ApiError(422, str(exc), field) from None


def display_name(filename: str | None, fallback: str) -> str:
    """The upload's file name for display only (it never becomes a path)."""
    name = re.split(r"[\\/]", filename or "")[-1]
    name = re.sub(r"[\x00-\x1f\x7f]", "", name).strip()[:80]
    return name or fallback


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes before they are parsed."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        message = f"the request is larger than {self.limit / 2**20:.1f} MB in all"
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            await JSONResponse({"detail": message, "field": None}, 413)(scope, receive, send)
            return
        seen = 0

        async def limited_receive():
            nonlocal seen
            event = await receive()
            seen += len(event.get("body", b""))
            if seen > self.limit:  # no (or a wrong) Content-Length
                raise ApiError(413, message)
            return event

        await self.app(scope, limited_receive, send)
