"""Measures of a stylized picture that share nothing with the optimizer's network.

The judge in ``judge.py`` scores style and colour; its content figure is a VGG19 distance, the same
network the optimizer descends, and it stayed flat while a face dissolved into the strokes. These two
look at the picture the way a person checks "is this still my photo?":

* **structure**: ``1 -`` the structure component of SSIM (the local correlation of the two luminances,
  blind to brightness and contrast) between the result and the photo, at two coarse sizes (longer side
  64 and 128 px, box-filtered). At those sizes brush strokes and paper grain average out; what is
  left is where the edges and shapes are. 0 is the photo's layout; the artwork pasted into the photo's
  frame scores about 0.75-0.95. Lower is better.
* **face**: on a portrait, whether scikit-image's LBP frontal-face cascade (shipped inside
  scikit-image) finds a face in the result where it finds one in the photo (overlap, IoU >= 0.3).

``python benchmarks/measures.py OUT.png PHOTO.jpg`` prints both. Needs the ``bench`` extra
(scikit-image).
"""

from __future__ import annotations

import sys
from functools import lru_cache

import numpy as np
from PIL import Image

#: Longer sides (px) at which the structure is compared.
STRUCTURE_SIZES = (64, 128)
#: Side of the square window of the local statistics, in px of the coarse image.
WINDOW = 7
#: Overlap (intersection over union) for a face in the result to count as the photo's.
FACE_IOU = 0.3


def _luminance(image: Image.Image, longer: int) -> np.ndarray:
    """The image's luminance in 0..1, box-filtered down so that its longer side is ``longer``."""
    gray = image.convert("L")
    scale = longer / max(gray.size)
    size = (max(1, round(gray.width * scale)), max(1, round(gray.height * scale)))
    return np.asarray(gray.resize(size, Image.BOX), dtype=np.float64) / 255.0


def _box(a: np.ndarray) -> np.ndarray:
    from scipy.ndimage import uniform_filter

    return uniform_filter(a, WINDOW, mode="reflect")


def structure_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over windows of SSIM's structure term ``(cov + c) / (sd_a sd_b + c)`` of two gray images."""
    c = (0.03**2) / 2  # SSIM's C3 for a dynamic range of 1
    ma, mb = _box(a), _box(b)
    va = np.clip(_box(a * a) - ma * ma, 0, None)
    vb = np.clip(_box(b * b) - mb * mb, 0, None)
    cov = _box(a * b) - ma * mb
    return float(((cov + c) / (np.sqrt(va * vb) + c)).mean())


def structure_distance(out: Image.Image, photo: Image.Image) -> float:
    """``1 -`` the coarse structure similarity of ``out`` to ``photo`` (resized to ``out``'s size)."""
    photo = photo.resize(out.size, Image.LANCZOS)
    return float(np.mean([1 - structure_similarity(_luminance(out, s), _luminance(photo, s))
                          for s in STRUCTURE_SIZES]))


@lru_cache(maxsize=1)
def _detector():
    from skimage import data
    from skimage.feature import Cascade

    return Cascade(data.lbp_frontal_face_cascade_filename())


def faces(image: Image.Image) -> list[tuple[int, int, int, int]]:
    """Frontal faces as (left, top, width, height), from faces an eighth of the shorter side up."""
    pixels = np.asarray(image.convert("RGB"))
    side = min(pixels.shape[:2])
    found = _detector().detect_multi_scale(img=pixels, scale_factor=1.1, step_ratio=1,
                                           min_size=(side // 8, side // 8), max_size=(side, side))
    return [(f["c"], f["r"], f["width"], f["height"]) for f in found]


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    w = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    h = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def face_kept(out: Image.Image, photo: Image.Image) -> bool | None:
    """Whether a face is found in ``out`` where the photo (at ``out``'s size) has one; None if it has none."""
    wanted = faces(photo.resize(out.size, Image.LANCZOS))
    if not wanted:
        return None
    found = faces(out)
    return any(_iou(w, f) >= FACE_IOU for w in wanted for f in found)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python benchmarks/measures.py OUT PHOTO")
    result, original = (Image.open(p).convert("RGB") for p in sys.argv[1:])
    print({"structure": round(structure_distance(result, original), 4), "face": face_kept(result, original)})
