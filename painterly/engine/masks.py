"""Spatial control (Gatys et al. 2017): masks that give regions of the content to styles.

A mask is a grayscale image, white where its style applies and black where it does not; one per
style. A colour-label image with a colour per style is turned into such masks by
:func:`masks_from_labels`. Where no mask covers a pixel, no style loss applies and the content is kept.
Edges are softened so that regions blend instead of meeting at a seam.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageColor, ImageFilter

from ..errors import ImageError
from .images import ImageLike, from_any
from .validate import check_mask_count, check_mask_covers

#: Blur radius of mask edges, as a fraction of the longer side.
SOFT_EDGE = 0.01


def prepare_masks(
    masks: Sequence[ImageLike], n_styles: int, size: tuple[int, int], device: torch.device | str = "cpu"
) -> list[torch.Tensor]:
    """One (1, 1, h, w) tensor in 0..1 per style at ``size`` (w, h), soft-edged, summing to at most 1.

    Masks of another size are resized. Raises :class:`ImageError` if the count does not match the
    styles or a mask is empty (covers nothing).
    """
    check_mask_count(len(masks), n_styles)
    radius = max(1.0, SOFT_EDGE * max(size))
    out = []
    for i, mask in enumerate(masks):
        gray = from_any(mask, f"mask {i + 1}").convert("L").resize(size, Image.Resampling.BILINEAR)
        arr = np.asarray(gray.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255.0
        check_mask_covers(i, float(arr.max()))
        out.append(torch.from_numpy(arr)[None, None])
    total = torch.stack(out).sum(0).clamp_min(1.0)  # overlapping masks share a pixel
    return [(m / total).to(device) for m in out]


def parse_colour(text: str) -> tuple[int, int, int]:
    """'#ff0000', 'red' or '255,0,0' -> (r, g, b); :class:`ImageError` if it is none of those."""
    parts = text.split(",")
    try:
        if len(parts) == 3:
            rgb = tuple(int(p) for p in parts)
            if all(0 <= c <= 255 for c in rgb):
                return rgb  # type: ignore[return-value]
            raise ValueError
        return ImageColor.getrgb(text)[:3]  # type: ignore[return-value]
    except ValueError:
        raise ImageError(f"'{text}' is not a colour: use #rrggbb, a name such as red, or r,g,b") from None


def masks_from_labels(labels: ImageLike, colours: Sequence[str], tolerance: int = 24) -> list[Image.Image]:
    """Split a colour-label image into one grayscale mask per colour (the i-th colour -> style i).

    Pixels within ``tolerance`` (per channel) of a colour belong to it. Raises :class:`ImageError`
    if a colour is not a colour or appears nowhere in the label image.
    """
    rgb = np.asarray(from_any(labels, "label image"), dtype=np.int16)
    masks = []
    for text in colours:
        target = np.array(parse_colour(text), dtype=np.int16)
        hit = (np.abs(rgb - target).max(axis=2) <= tolerance)
        if not hit.any():
            raise ImageError(f"colour {text} maps to a style but appears nowhere in the label image")
        masks.append(Image.fromarray((hit * 255).astype(np.uint8), "L"))
    return masks
