"""Reading, converting, resizing and writing images.

Inside painterly an image is a float32 tensor (1, 3, H, W), RGB in 0..255. This module turns files,
PIL images, numpy arrays and tensors into that, and back into PIL images and files.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError, OutputError
from .validate import MAX_INPUT_PIXELS, MIN_SIDE, check_min_side, check_pixels, check_resized

__all__ = ["MAX_INPUT_PIXELS", "MIN_SIDE"]  # the limits, where image code has always found them
#: Output extensions and the Pillow format each one writes.
OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}

ImageLike = Union[Image.Image, np.ndarray, torch.Tensor]


def open_image(path: str | os.PathLike) -> Image.Image:
    """Read an image file into an RGB PIL image, upright (EXIF rotation applied).

    Raises :class:`ImageError` with one clear sentence for a missing file, a file that is not an
    image, a truncated or corrupt image, and an image too small or absurdly large.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"image not found: {path}")
    if path.is_dir():
        raise ImageError(f"{path} is a folder, expected an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                check_pixels(img.size, str(path))
                img.load()
                upright = ImageOps.exif_transpose(img)
                rgb = to_rgb(upright)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{path} is too large to be a real photo (decompression bomb?); "
                         f"at most {MAX_INPUT_PIXELS:,} pixels are accepted") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path} is not an image Pillow can read "
                         "(accepted: PNG, JPEG, WebP, TIFF, BMP, GIF, ...)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{path} is truncated or corrupt and cannot be decoded ({exc})") from None
    check_min_side(rgb.size, str(path))
    return rgb


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode (RGBA, LA, P, L, 1, I;16, I, F, CMYK, YCbCr, LAB) -> 8-bit RGB.

    Transparency is composited onto white; 16-bit and float images are scaled to 8 bits.
    """
    if img.mode == "RGB":
        return img.copy()
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        if img.mode == "F" and arr.max() <= 1.0:
            top = 1.0
        arr = np.clip(arr / top * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def from_any(image: ImageLike | str | os.PathLike, what: str = "image") -> Image.Image:
    """An RGB PIL image from an image file's path, a PIL image, a numpy array or a tensor.

    Arrays are (H, W), (H, W, 3) or (H, W, 4); uint8 means 0..255, floats mean 0..1 (values
    outside are refused, not clipped: an array in 0..255 as floats is a common mistake).
    Tensors are (3, H, W) or (1, 3, H, W), floats in 0..1 (torchvision's convention), or uint8.
    """
    if isinstance(image, (str, os.PathLike)):
        rgb = open_image(image)
    elif isinstance(image, Image.Image):
        check_pixels(image.size, what)
        rgb = to_rgb(ImageOps.exif_transpose(image))
    elif isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]
        if t.dim() != 3 or t.shape[0] not in (1, 3, 4):
            raise ImageError(f"{what}: expected a tensor of shape (3, H, W) or (1, 3, H, W), got {tuple(image.shape)}")
        rgb = from_any(t.permute(1, 2, 0).numpy(), what)
    elif isinstance(image, np.ndarray):
        rgb = _array_to_pil(image, what)
    else:
        raise ImageError(f"{what}: expected a file path, a PIL image, a numpy array or a tensor, "
                         f"got {type(image).__name__}")
    check_min_side(rgb.size, what)
    return rgb


def _array_to_pil(arr: np.ndarray, what: str) -> Image.Image:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageError(f"{what}: expected an array of shape (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
    if arr.dtype == np.uint8:
        data = arr
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageError(f"{what}: the array holds NaN or infinite values")
        low, high = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if low < -1e-3 or high > 1 + 1e-3:
            raise ImageError(f"{what}: a float array must hold values in 0..1, got {low:g}..{high:g} "
                             "(for 0..255 pass uint8, or divide by 255)")
        data = (np.clip(arr, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.integer):
        top = 65535 if arr.max(initial=0) > 255 else 255
        data = (np.clip(arr, 0, top) / top * 255.0).round().astype(np.uint8)
    else:
        raise ImageError(f"{what}: unsupported array dtype {arr.dtype} (use uint8 or float in 0..1)")
    check_pixels((data.shape[1], data.shape[0]), what)
    mode = {2: "L", 3: "RGB", 4: "RGBA"}[data.ndim if data.ndim == 2 else data.shape[2] + 0]
    return to_rgb(Image.fromarray(np.ascontiguousarray(data), mode))


def fit_size(size: tuple[int, int], longer: int) -> tuple[int, int]:
    """(w, h) scaled so the longer side is ``longer`` px, keeping the aspect ratio (as the tutorial)."""
    w, h = size
    scale = longer / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def resize_longer(img: Image.Image, longer: int, what: str = "image") -> Image.Image:
    """Resize so the longer side is ``longer`` px with Lanczos (the tutorial's ANTIALIAS)."""
    new = fit_size(img.size, longer)
    check_resized(new, longer, what)
    return img if new == img.size else img.resize(new, Image.Resampling.LANCZOS)


def to_tensor(img: Image.Image, device: torch.device | str = "cpu") -> torch.Tensor:
    """RGB PIL image -> float32 (1, 3, H, W) in 0..255."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous().to(device)


def to_pil(image: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) tensor in 0..255 -> RGB PIL image (clipped and rounded)."""
    t = image.detach().float().cpu()
    if t.dim() == 4:
        t = t[0]
    arr = t.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(arr, "RGB")


def resize_tensor(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a (1, 3, H, W) tensor to (w, h) with bicubic interpolation, clamped to 0..255."""
    w, h = size
    if image.shape[-2:] == (h, w):
        return image
    out = torch.nn.functional.interpolate(image, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
    return out.clamp(0, 255)


def output_format(path: str | os.PathLike) -> str:
    """The Pillow format an output path's extension asks for; :class:`OutputError` if none."""
    ext = Path(path).suffix.lower()
    accepted = ", ".join(sorted(set(OUTPUT_FORMATS)))
    if not ext:
        raise OutputError(f"output '{Path(path).name}' has no extension to say its format: "
                          f"name a file ending in {accepted}, e.g. {Path(path).name}.png")
    if ext not in OUTPUT_FORMATS:
        raise OutputError(f"cannot write '{ext}' files: the output must end in {accepted}")
    return OUTPUT_FORMATS[ext]


def check_output(path: str | os.PathLike, inputs: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Check before a run that ``path`` can be written and is none of ``inputs``."""
    out = Path(path)
    output_format(out)
    parent = out.resolve().parent
    if not parent.is_dir():
        raise OutputError(f"output folder does not exist: {out.parent}")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder is not writable: {out.parent}")
    if out.is_dir():
        raise OutputError(f"output {out} is a folder, expected a file name such as result.png")
    for source in inputs:
        if Path(source).exists() and out.exists() and out.resolve() == Path(source).resolve():
            raise OutputError(f"output {out} is also an input; choose another name (inputs are never overwritten)")
    return out


def make_public(path: str | os.PathLike) -> None:
    """Give a file made by ``mkstemp`` (mode 0600) the ordinary permissions of a new file (umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix), renamed over ``path`` when the block ends.

    A crash or an exception leaves either no file or the old one, never half a file.
    """
    out = Path(path)
    # The real suffix last, so that writers which go by the extension (imageio) know the format.
    fd, name = tempfile.mkstemp(prefix=f".{out.stem}.part.", suffix=out.suffix, dir=out.resolve().parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        make_public(tmp)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def save_image(img: Image.Image, path: str | os.PathLike, **params: Any) -> Path:
    """Write ``img`` atomically (see :func:`atomic_path`); the format follows the extension."""
    out = Path(path)
    fmt = output_format(out)
    if fmt == "JPEG":
        params.setdefault("quality", 95)
    with atomic_path(out) as tmp, open(tmp, "wb") as handle:
        img.save(handle, format=fmt, **params)
    return out
