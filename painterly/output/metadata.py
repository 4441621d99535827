"""The image says how it was made: settings and versions embedded in the output file.

PNG gets a ``painterly`` text chunk; JPEG, WebP and TIFF get the same JSON in the EXIF
ImageDescription tag. :func:`read` gets it back from any of them.
"""

from __future__ import annotations

import json
import os
from typing import Any

from PIL import Image, PngImagePlugin

from ..errors import ImageError

KEY = "painterly"
_IMAGE_DESCRIPTION = 0x010E


def save_params(fmt: str, record: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``Image.save`` that embed ``record`` (JSON) in format ``fmt``."""
    text = json.dumps(record, separators=(",", ":"))
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text(KEY, text)
        return {"pnginfo": info}
    exif = Image.Exif()
    exif[_IMAGE_DESCRIPTION] = f"{KEY}:{text}"
    if fmt == "TIFF":
        return {"tiffinfo": exif}
    return {"exif": exif.tobytes()}


def read(path: str | os.PathLike) -> dict[str, Any]:
    """The record painterly embedded in an image file; :class:`ImageError` if there is none."""
    try:
        with Image.open(path) as img:
            text = img.info.get(KEY) or (getattr(img, "text", None) or {}).get(KEY)
            if not text:
                desc = img.getexif().get(_IMAGE_DESCRIPTION, "")
                if isinstance(desc, bytes):
                    desc = desc.decode("utf-8", "replace")
                text = desc[len(KEY) + 1:] if str(desc).startswith(f"{KEY}:") else None
    except FileNotFoundError:
        raise ImageError(f"image not found: {path}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path} is not an image Pillow can read ({exc})") from None
    if not text:
        raise ImageError(f"{path} carries no painterly settings (it was not made by painterly, or they were stripped)")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise ImageError(f"{path}: the painterly settings in it are damaged (not valid JSON)") from None
