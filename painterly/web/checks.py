"""Checking what a request to the web studio sends: settings, uploads, names and the request's size.

Settings arrive as a JSON form field: its length, the length of each number and the nesting are
limited before it is parsed, each field must have its exact type (a list where a list belongs), and
the result goes through :class:`~painterly.engine.settings.Settings` like the CLI's, less the
:data:`REFUSED` fields. Uploads are read in two passes: first every file's header (format and
size, no pixels), checked against the per-image and per-request pixel limits; then, under the
server's decode limit, one image at a time is decoded and at once shrunk to the size the run uses.
Whatever is refused raises :class:`ApiError`, which the app answers with
``{"detail": "...", "field": "..."}`` naming the form field or setting at fault.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import typing
import unicodedata
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from fastapi.exceptions import HTTPException
from fastapi.responses import JSONResponse
from PIL import Image, UnidentifiedImageError

from ..engine.images import from_any, resize_longer
from ..engine.masks import prepare_masks
from ..engine.settings import FIELD_NAMES, INITS, Settings, preset
from ..engine.validate import check_styles
from ..errors import ImageError, SettingsError

if TYPE_CHECKING:
    from ..engine.plan import Plan
    from .config import WebConfig

#: Pillow formats accepted as uploads (decided from the bytes, never from the name).
UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
#: Settings a request may not set: they read files or change the whole server.
REFUSED = {
    "weights": "it names a file on the server",
    "init_file": "it names a file on the server",
    "device": "the server decides (painterly serve --device)",
    "threads": "the server decides (painterly serve --threads)",
    "max_memory": "the server decides (its work budget, painterly serve --max-...)",
    "cuda_graphs": "the server decides (a machine setting)",
    "tile_size": "the server decides (a machine setting; tiles give the same picture)",
}
MAX_SETTINGS_CHARS = 16_384
MAX_NUMBER_CHARS = 32  # digits, sign, point and exponent of one number
MAX_DEPTH = 2  # an object of lists
MAX_LIST = 64
MAX_INT = 2**53  # the largest whole number JavaScript (the page) keeps exactly
#: Characters dropped from displayed names: controls, format characters (bidi overrides, zero-width), separators.
HIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Zl", "Zp"}
EXIF_ORIENTATION = 0x0112


class ApiError(HTTPException):
    """A refused request: the status, one sentence, and the form field or setting at fault."""

    def __init__(self, status: int, detail: str, field: str | None = None) -> None:
        super().__init__(status, detail)
        self.field = field


# -- settings --------------------------------------------------------------------------------------


def parse_settings(text: str, n_styles: int, config: WebConfig) -> tuple[str, Settings]:
    """The ``settings`` form field (JSON) -> (preset name, Settings); :class:`ApiError` 422 if bad."""
    data = parse_json(text or "{}")
    name = data.pop("preset", "default")
    try:
        if not isinstance(name, str):
            raise SettingsError(f"preset must be a name such as 'default', got {_kind(name)}")
        settings = preset(name)
    except SettingsError as exc:
        raise ApiError(422, str(exc), "preset") from None
    return name, apply_changes(settings, data, n_styles, config)


def apply_changes(settings: Settings, data: dict[str, Any], n_styles: int, config: WebConfig) -> Settings:
    """``settings`` with the request's changes ``data`` (checked as :func:`parse_settings` checks a
    new run's), within the server's size and step limits; :class:`ApiError` 422 if refused."""
    for key, value in data.items():
        if key in REFUSED:
            raise ApiError(422, f"{key} cannot be set from the web: {REFUSED[key]}", key)
        if key in FIELD_NAMES:
            check_type(key, value)
        if key == "init" and value not in INITS:
            raise ApiError(422, f"init must be one of {', '.join(INITS)} here, got {_kind(value)}", key)
    settings = _apply(settings, data)
    if settings.size > config.max_size:
        raise ApiError(422, f"size must be at most {config.max_size} px on this server, got {settings.size}", "size")
    if settings.steps > config.max_steps:
        raise ApiError(422, f"steps must be at most {config.max_steps} per scale on this server, got {settings.steps}",
                       "steps")
    try:
        check_styles(n_styles, settings.style_blend_weights)
    except (SettingsError, ImageError) as exc:
        raise ApiError(422, str(exc), "style_blend_weights" if isinstance(exc, SettingsError) else "style") from None
    return settings


def parse_json(text: str) -> dict[str, Any]:
    """The settings text as a dict, within the length, number and nesting limits."""
    if len(text) > MAX_SETTINGS_CHARS:
        raise ApiError(422, f"settings is {len(text):,} characters long; at most {MAX_SETTINGS_CHARS:,} are accepted",
                       "settings")
    if json_depth(text) > MAX_DEPTH:
        raise ApiError(422, f"settings is nested more than {MAX_DEPTH} levels deep; it takes an object of "
                       "values and lists", "settings")
    try:
        data = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise ApiError(422, f"settings is not valid JSON ({exc.msg} at character {exc.pos})", "settings") from None
    except _BadNumber as exc:
        raise ApiError(422, str(exc), "settings") from None
    if not isinstance(data, dict):
        raise ApiError(422, 'settings must be a JSON object, e.g. {"preset": "draft", "size": 256}', "settings")
    return data


class _BadNumber(ValueError):
    pass


def _int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _BadNumber(f"settings has a number {len(text):,} digits long; at most {MAX_NUMBER_CHARS} are accepted")
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _BadNumber(f"settings has a number {len(text):,} characters long; at most {MAX_NUMBER_CHARS} "
                         "are accepted")
    value = float(text)
    if not math.isfinite(value):
        raise _BadNumber(f"settings has the number {text}, too large to be finite")
    return value


def _constant(text: str) -> None:
    raise _BadNumber(f"settings has {text}, which is not a number JSON allows")


def json_depth(text: str) -> int:
    """How deeply ``text``'s brackets nest (outside strings), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


_HINTS = typing.get_type_hints(Settings)


def check_type(key: str, value: Any) -> None:
    """Refuse ``value`` unless it has the exact JSON type of the Settings field ``key``."""
    hint = _HINTS[key]
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, list):
            raise ApiError(422, f"{key} must be a list of {_kind_name(item)}s, got {_kind(value)}", key)
        if len(value) > MAX_LIST:
            raise ApiError(422, f"{key} has {len(value)} values; at most {MAX_LIST} are accepted", key)
        for entry in value:
            if not _is(entry, item):
                raise ApiError(422, f"{key} must be a list of {_kind_name(item)}s, got {_kind(entry)} in it", key)
    elif not _is(value, hint):
        raise ApiError(422, f"{key} must be a {_kind_name(hint)}, got {_kind(value)}", key)


def _is(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return kind is bool
    if kind is int:
        return isinstance(value, int) and abs(value) <= MAX_INT
    if kind is float:
        return isinstance(value, (int, float)) and abs(value) <= 1e308
    return isinstance(value, kind)


def _kind_name(kind: type) -> str:
    return {int: "whole number", float: "number", str: "text"}.get(kind, kind.__name__)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, int) and abs(value) > MAX_INT:
        return "a whole number beyond ±2**53"
    if isinstance(value, (int, float, str)):
        return repr(value)[:40]
    return {dict: "an object", list: "a list", type(None): "null"}.get(type(value), type(value).__name__)


def _apply(settings: Settings, changes: dict[str, Any]) -> Settings:
    """``settings`` with ``changes``; if they are refused, an :class:`ApiError` naming the first field at fault.

    To find it, the changes are applied one at a time in the dataclass's field order, so that a field
    checked against another (``style_layer_weights`` against ``style_layers``) comes after it.
    """
    try:
        return settings.replace(**changes)
    except (TypeError, ValueError, OverflowError):  # SettingsError is a ValueError
        pass
    for key in sorted(changes, key=lambda k: FIELD_NAMES.index(k) if k in FIELD_NAMES else -1):  # unknown first
        settings = _try(settings, key, {key: changes[key]})
    return settings


def _try(settings: Settings, key: str, changes: dict[str, Any]) -> Settings:
    try:
        return settings.replace(**changes)
    except SettingsError as exc:
        raise ApiError(422, str(exc), key) from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise ApiError(422, f"{key} has a value of the wrong kind ({exc})", key) from None


# -- uploads ---------------------------------------------------------------------------------------


@dataclass
class Upload:
    """One uploaded image file, not decoded yet: where it came from and what its header says."""

    file: BinaryIO  # the spooled upload (on disk past 1 MB)
    name: str  # for display only
    field: str  # form field
    what: str  # for messages: "content image", "style image 2", "mask 1"
    size: tuple[int, int] = (0, 0)  # (w, h), upright


def check_header(upload: Upload, bytes_: int | None, config: WebConfig) -> None:
    """Refuse a file that is too large, empty, not an image, or of too many pixels; sets ``upload.size``."""
    limit = int(config.max_upload_mb * 2**20)
    if bytes_ is not None and bytes_ > limit:
        raise ApiError(413, f"{upload.what} is larger than {config.max_upload_mb:g} MB", upload.field)
    if bytes_ == 0:
        raise ApiError(422, f"{upload.what} is an empty file", upload.field)
    with _opened(upload) as img:
        w, h = img.size
        if _orientation(img) in (5, 6, 7, 8):  # shown turned by a quarter
            w, h = h, w
    if w * h > config.max_pixels:
        raise ApiError(413, f"{upload.what} is {w}x{h} px; at most {config.max_pixels:,} pixels are accepted",
                       upload.field)
    upload.size = (w, h)


def _orientation(img: Image.Image) -> int | None:
    """The EXIF orientation, read from the header only. (A PNG's ``getexif()`` decodes the whole
    image to look for EXIF after the pixels: 20 requests at once did that in 20 threads.)"""
    if img.format != "PNG":
        return img.getexif().get(EXIF_ORIENTATION)
    exif = Image.Exif()
    if img.info.get("exif"):  # an eXIf chunk before the pixels
        exif.load(img.info["exif"])
    return exif.get(EXIF_ORIENTATION)


def check_request_pixels(uploads: list[Upload], config: WebConfig) -> None:
    """Refuse a request whose images together pass ``max_request_pixels``."""
    total = 0
    for upload in uploads:
        total += upload.size[0] * upload.size[1]
        if total > config.max_request_pixels:
            raise ApiError(413, f"the images of this request have more than {config.max_request_pixels:,} pixels in "
                           f"all (--max-request-pixels); {upload.what} passes it", upload.field)


def decode_shrunk(upload: Upload, longer: int) -> Image.Image:
    """The upload as an upright RGB image, shrunk so its longer side is at most ``longer`` px."""
    with _opened(upload) as img:
        if img.format == "JPEG":  # decode at 1/2, 1/4 or 1/8 scale when that still covers ``longer``
            img.draft("RGB", (longer, longer))
        img.load()
        try:
            image = from_any(img, upload.what)
        except ImageError as exc:
            raise ApiError(422, str(exc), upload.field) from None
    try:
        return resize_longer(image, longer, upload.what) if max(image.size) > longer else image
    except ImageError as exc:  # too thin at that size
        raise ApiError(422, str(exc), upload.field) from None


def decode_masks(uploads: list[Upload], size: tuple[int, int], plan: Plan) -> list[Image.Image]:
    """The masks as grayscale images of the content's working ``size`` (w, h), refused (with the
    core's message) if one would cover nothing at some scale of the run."""
    masks = []
    for upload in uploads:
        with _opened(upload) as img:
            img.load()
            masks.append(img.convert("L").resize(size, Image.Resampling.BILINEAR))
    for scale in plan.scales:  # the run prepares them at every scale: fail now, not then
        try:
            prepare_masks(masks, len(masks), scale.size)
        except ImageError as exc:
            raise ApiError(422, str(exc), "mask") from None
    return masks


@contextlib.contextmanager
def _opened(upload: Upload) -> Iterator[Image.Image]:
    """The upload opened by Pillow, every decoding failure turned into an :class:`ApiError`."""
    upload.file.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(upload.file, formats=UPLOAD_FORMATS) as img:
                yield img
    except UnidentifiedImageError:
        raise ApiError(415, f"{upload.what} is not an image this server reads "
                       f"(accepted: {', '.join(UPLOAD_FORMATS)})", upload.field) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ApiError(413, f"{upload.what} is too large to be a real photo", upload.field) from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError):
        raise ApiError(422, f"{upload.what} is truncated or corrupt and cannot be decoded", upload.field) from None


def display_name(filename: str | None, fallback: str) -> str:
    """The upload's file name for display only (it never becomes a path): the form's escapes decoded
    first, then its last path component only, without control or bidi characters (a right-to-left
    override would show ``gnp.exe`` as ``exe.png``), 80 characters.

    Browsers send ``"``, CR and LF of a file name as ``%22``, ``%0D`` and ``%0A`` (the HTML form
    encoding); only those are decoded, so a name that really holds ``%41`` keeps it.
    """
    name = FORM_ESCAPES.sub(lambda m: chr(int(m.group(1), 16)), filename or "")
    name = unicodedata.normalize("NFC", name)
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(c for c in name if unicodedata.category(c) not in HIDDEN_CATEGORIES)
    return name.strip()[:80] or fallback


#: What a browser escapes in a multipart file name (the HTML standard's form-data encoding).
FORM_ESCAPES = re.compile(r"%(22|0[dDaA])")


def safe_text(text: str) -> str:
    """``text`` that can be written as UTF-8: a lone surrogate (JSON's ``"\\ud800"``) becomes ``\\ud800``."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


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
