"""For prints: sizes in centimetres or inches at a DPI, exact pixel sizes, and 16-bit PNG and TIFF files.

Pillow writes RGB images 8 bits a channel only, so the 16-bit files are written here: a PNG of
colour type 2 at bit depth 16 and a baseline uncompressed TIFF of three 16-bit samples, each with the
run record embedded (a PNG text chunk; the TIFF's ImageDescription, as Pillow writes it for 8-bit
files) and the DPI (PNG ``pHYs``; TIFF X/YResolution in inches), so ``painterly info`` reads them.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import SettingsError
from .images import atomic_path
from .validate import check_dpi

#: Units a print size may be given in, as inches per unit.
UNITS = {"cm": 1 / 2.54, "mm": 1 / 25.4, "in": 1.0}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*[x×]\s*(\d+(?:\.\d+)?)\s*(cm|mm|in)\s*$", re.IGNORECASE)
_PIXELS = re.compile(r"^\s*(\d+)\s*[x×]\s*(\d+)\s*$")


def parse_pixels(text: str) -> tuple[int, int] | None:
    """``"1920x1080"`` -> (1920, 1080); None if ``text`` is not of that form."""
    match = _PIXELS.match(text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def print_pixels(text: str, dpi: float) -> tuple[int, int]:
    """The (w, h) in pixels of a print ``text`` ("30x20cm", "12x8in", "300x200mm") at ``dpi``."""
    match = _SIZE.match(text)
    if not match:
        raise SettingsError(f"--print-size takes WIDTHxHEIGHT with a unit, e.g. 30x20cm, 12x8in or 300x200mm; "
                            f"got {text!r}")
    per_unit = UNITS[match.group(3).lower()]
    w, h = (float(match.group(i)) * per_unit * check_dpi(dpi) for i in (1, 2))
    if min(w, h) < 1:
        raise SettingsError(f"--print-size {text} at {dpi:g} dpi is less than a pixel on a side")
    return round(w), round(h)


def fit_exactly(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``img`` cropped about its centre to the aspect ratio of ``size`` (w, h), then resized to it:
    the photo fills the print, as a print shop would do it."""
    w, h = img.size
    target = size[0] / size[1]
    if w / h > target:
        new_w = round(h * target)
        box = ((w - new_w) // 2, 0, (w - new_w) // 2 + new_w, h)
    else:
        new_h = round(w / target)
        box = (0, (h - new_h) // 2, w, (h - new_h) // 2 + new_h)
    cropped = img.crop(box)
    return cropped if cropped.size == size else cropped.resize(size, Image.Resampling.LANCZOS)


def to_uint16(rgb: torch.Tensor) -> np.ndarray:
    """A (1, 3, H, W) RGB tensor in 0..255 as (H, W, 3) 16-bit samples 0..65535, a band of rows at a
    time (no float copy of a print-size image)."""
    _, _, h, w = rgb.shape
    out = np.empty((h, w, 3), np.uint16)
    for top in range(0, h, 512):
        band = rgb[0, :, top:top + 512].detach().float().cpu().clamp(0, 255) * (65535 / 255)
        out[top:top + 512] = band.round().permute(1, 2, 0).numpy().astype(np.uint16)
    return out


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png16_bytes(rgb16: np.ndarray, text: dict[str, str], dpi: float | None) -> bytes:
    """A 16-bit RGB PNG of ``rgb16`` (H, W, 3) uint16, with ``text`` chunks and the DPI."""
    h, w, _ = rgb16.shape
    rows = np.empty((h, 1 + w * 6), np.uint8)
    rows[:, 0] = 0  # filter: none
    rows[:, 1:] = rgb16.astype(">u2").view(np.uint8).reshape(h, w * 6)
    out = [b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))]
    if dpi:
        per_metre = round(dpi / 0.0254)
        out.append(_chunk(b"pHYs", struct.pack(">IIB", per_metre, per_metre, 1)))
    for key, value in text.items():
        out.append(_chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8")))
    out.append(_chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)))
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)


def tiff16_bytes(rgb16: np.ndarray, description: str, dpi: float | None) -> bytes:
    """A baseline little-endian TIFF of ``rgb16`` (H, W, 3) uint16 in one uncompressed strip."""
    h, w, _ = rgb16.shape
    pixels = rgb16.astype("<u2").tobytes()
    desc = description.encode("utf-8") + b"\0"
    resolution = dpi or 72.0
    tags = 13
    ifd_size = 2 + tags * 12 + 4
    base = 8 + ifd_size  # extra data follows the IFD
    bits_at, desc_at = base, base + 6
    xres_at = desc_at + len(desc) + (len(desc) % 2)
    yres_at = xres_at + 8
    pixels_at = yres_at + 8
    entries = [  # tag, type (3 SHORT, 4 LONG, 2 ASCII, 5 RATIONAL), count, value or offset
        (256, 4, 1, w), (257, 4, 1, h), (258, 3, 3, bits_at), (259, 3, 1, 1), (262, 3, 1, 2),
        (270, 2, len(desc), desc_at), (273, 4, 1, pixels_at), (277, 3, 1, 3), (278, 4, 1, h),
        (279, 4, 1, len(pixels)), (282, 5, 1, xres_at), (283, 5, 1, yres_at), (296, 3, 1, 2),
    ]
    ifd = struct.pack("<H", tags)
    for tag, kind, count, value in entries:
        packed = struct.pack("<HH", value, 0) if kind == 3 and count == 1 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    ifd += struct.pack("<I", 0)
    numerator = round(resolution * 10000)
    extra = (struct.pack("<HHH", 16, 16, 16) + desc + b"\0" * (len(desc) % 2)
             + struct.pack("<II", numerator, 10000) * 2)
    return b"II*\0" + struct.pack("<I", 8) + ifd + extra + pixels


def save16(rgb16: np.ndarray, path: str | os.PathLike, record_text: str, key: str, dpi: float | None) -> None:
    """Write ``rgb16`` as a 16-bit PNG or TIFF (by ``path``'s suffix), atomically."""
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix == ".png":
        data = png16_bytes(rgb16, {key: record_text}, dpi)
    elif suffix in (".tif", ".tiff"):
        data = tiff16_bytes(rgb16, f"{key}:{record_text}", dpi)
    else:
        raise SettingsError(f"--bit-depth 16 writes .png or .tiff files, not {suffix or 'files without a suffix'}")
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
