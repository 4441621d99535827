"""An independent judge of a stylized picture: a separate VGG19 pass in float32, not the optimizer's loss,
and a structure figure that shares nothing with the network (``measures.py``).

Four figures, lower is better:

* **style**: mean over ``block1_conv1 .. block5_conv1`` (after ReLU) of ``|G(out) - G(art)|_F / |G(art)|_F``
  with ``G = F^T F / (H W)``, the artwork resized so that its longer side equals the output's;
* **colour**: sliced Wasserstein-1 distance between the output's and the artwork's RGB pixels in 0..1,
  over 64 random directions (fixed seed);
* **content**: ``|F(out) - F(photo)| / |F(photo)|`` at ``block4_conv2``, the photo at the output's size.
  It shares the optimizer's network, and it stayed flat while a face dissolved into the strokes: read it
  beside **structure**;
* **structure**: ``measures.structure_distance``, SSIM's structure term of the coarse luminances (no network).

``python benchmarks/judge.py OUT.png PHOTO.jpg ART.jpg`` prints the four.
"""

from __future__ import annotations

import sys
from functools import lru_cache

import torch
from measures import structure_distance  # noqa: E402  (benchmarks/ is the script's own folder)
from PIL import Image

from painterly.engine.images import open_image, resize_longer, to_tensor
from painterly.engine.network import VGG19
from painterly.engine.weights import load_weights

STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")
CONTENT_LAYER = "block4_conv2"
DIRECTIONS = 64


@lru_cache(maxsize=1)
def _network() -> VGG19:
    return VGG19(load_weights("")).eval()


def _gram(f: torch.Tensor) -> torch.Tensor:
    _, c, h, w = f.shape
    x = f.reshape(c, h * w)
    return x @ x.T / (h * w)


@torch.no_grad()
def _maps(image: Image.Image, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
    return _network()(to_tensor(image), list(layers))


def style_distance(out: Image.Image, art: Image.Image) -> float:
    art = resize_longer(art, max(out.size))
    a, b = _maps(out, STYLE_LAYERS), _maps(art, STYLE_LAYERS)
    ratios = [float((_gram(a[k]) - _gram(b[k])).norm() / _gram(b[k]).norm()) for k in STYLE_LAYERS]
    return sum(ratios) / len(ratios)


def colour_distance(out: Image.Image, art: Image.Image, directions: int = DIRECTIONS, seed: int = 0) -> float:
    x = to_tensor(out)[0].reshape(3, -1).T / 255.0
    y = to_tensor(art)[0].reshape(3, -1).T / 255.0
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(directions, 3, generator=g)
    d = d / d.norm(dim=1, keepdim=True)
    px, py = (x @ d.T).sort(dim=0).values, (y @ d.T).sort(dim=0).values
    n = 4096  # both distributions compared at the same quantiles
    q = torch.linspace(0, 1, n)
    qx = px[(q * (len(px) - 1)).round().long()]
    qy = py[(q * (len(py) - 1)).round().long()]
    return float((qx - qy).abs().mean())


def content_distance(out: Image.Image, photo: Image.Image) -> float:
    photo = photo.resize(out.size, Image.LANCZOS)
    a, b = _maps(out, (CONTENT_LAYER,))[CONTENT_LAYER], _maps(photo, (CONTENT_LAYER,))[CONTENT_LAYER]
    return float((a - b).norm() / b.norm())


def judge(out: Image.Image, photo: Image.Image, art: Image.Image) -> dict[str, float]:
    """The four figures of ``out`` against its ``photo`` and ``art`` (RGB PIL images)."""
    return {"style": style_distance(out, art), "colour": colour_distance(out, art),
            "content": content_distance(out, photo), "structure": structure_distance(out, photo)}


def judge_gray(out: Image.Image, photo: Image.Image, art: Image.Image) -> dict[str, float]:
    """:func:`judge` on the gray images (for colour-preserving modes: the strokes, not the colours)."""
    gray = [im.convert("L").convert("RGB") for im in (out, photo, art)]
    return judge(*gray)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python benchmarks/judge.py OUT PHOTO ART")
    images = [open_image(p) for p in sys.argv[1:]]
    print({k: round(v, 4) for k, v in judge(*images).items()})
