"""Every check of settings and inputs, and the limits and choices they check against.

One module, so that the CLI, the API, the web studio, batch and video refuse the same value with the
same sentence: the value given and what is accepted. :class:`~painterly.engine.settings.Settings`,
:class:`~painterly.engine.settings.Machine` and :class:`~painterly.video.settings.VideoSettings` check
themselves with these checks when they are made; the API checks its inputs here (styles and their blend
weights, masks, image sizes) before any work. Only :class:`~painterly.errors.SettingsError` and
:class:`~painterly.errors.ImageError` are raised; the entry points turn them into one line.

This module imports nothing else of painterly's but its errors and the network's layer names, so
every other module can use it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..errors import ImageError, SettingsError, closest
from .network import CONV_LAYERS

# -- choices ---------------------------------------------------------------------------------

OPTIMIZERS = ("lbfgs", "adam")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp64")
SWITCHES = ("on", "off")
INITS = ("content", "palette", "noise", "style")
POOLINGS = ("max", "avg")
COLOURS = ("none", "luminance", "histogram")
STYLE_LOSSES = ("gram", "relative", "moments", "nearest")

# -- limits ----------------------------------------------------------------------------------

#: Longer side of a result in px; beyond this a run cannot fit in any ordinary memory.
MAX_SIZE = 8192
#: Longer side of a run, of its first scale and of a resized style image: VGG19 pools four times
#: before block5, and smaller images leave nothing to compare.
MIN_SIZE = 32
#: Shorter side any image the network sees must keep, before and after resizing (four poolings).
MIN_SIDE = 16
#: Coarse-to-fine scales of one run; more only happens by mistake (a factor a hair above 1).
MAX_SCALES = 32
#: Largest accepted input, in pixels (w * h): larger files are refused as decompression bombs. It is
#: the largest result's (MAX_SIZE squared, 67 MP), so that ``--size 8192x8192`` can hand the run its
#: photo cropped and resized to that shape, and a result can be painted again.
MAX_INPUT_PIXELS = MAX_SIZE * MAX_SIZE
#: Most passes over a clip (Ruder et al. found 5-10 enough).
MAX_PASSES = 20
#: Dots per inch a print may have.
DPI_RANGE = (30, 2400)
#: Style image scale relative to the result.
STYLE_SCALE_RANGE = (0.05, 8.0)


def require(ok: bool, message: str) -> None:
    """A :class:`SettingsError` saying ``message`` unless ``ok``."""
    if not ok:
        raise SettingsError(message)


def is_number(value: Any) -> bool:
    """An int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_whole(value: Any) -> bool:
    """An int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def finite_nonneg(name: str, value: Any) -> None:
    """``value`` is a finite number >= 0."""
    require(is_number(value) and math.isfinite(value) and value >= 0,
           f"{name} must be a finite number >= 0, got {value!r}")


def whole_at_least(name: str, value: Any, low: int) -> None:
    """``value`` is a whole number >= ``low``."""
    require(is_whole(value) and value >= low, f"{name} must be a whole number >= {low}, got {value!r}")


def whole_between(name: str, value: Any, low: int, high: int) -> None:
    """``value`` is a whole number from ``low`` to ``high``."""
    require(is_whole(value) and low <= value <= high,
           f"{name} must be a whole number from {low} to {high}, got {value!r}")


def choice(name: str, value: Any, choices: Sequence[str]) -> None:
    """``value`` is one of ``choices``; a near miss gets a "did you mean"."""
    require(value in choices,
           f"unknown {name} '{value}'{closest(str(value), choices)}; choose one of {', '.join(choices)}")


def check_layers(name: str, layers: tuple[str, ...], weights: tuple[float, ...], allow_empty: bool) -> None:
    require(allow_empty or len(layers) > 0, f"{name} needs at least one layer name")
    for layer in layers:
        require(
            layer in CONV_LAYERS,
            f"unknown layer '{layer}' in {name}{closest(str(layer), CONV_LAYERS)}; "
            f"valid layers are block1_conv1 ... block5_conv4",
        )
    if weights:
        require(
            len(weights) == len(layers),
            f"{name[:-1]}_weights has {len(weights)} values but there are {len(layers)} {name}",
        )
        for w in weights:
            finite_nonneg(f"{name[:-1]}_weights", w)


def check_dpi(dpi: float) -> float:
    """A print's dots per inch, within :data:`DPI_RANGE`; returned as given."""
    low, high = DPI_RANGE
    require(low <= dpi <= high, f"--dpi must be between {low} and {high}, got {dpi:g}")
    return dpi


# -- inputs ----------------------------------------------------------------------------------

def check_styles(n_styles: int, blend_weights: Sequence[float]) -> None:
    """At least one style image, and one blend weight per style where weights are given."""
    if n_styles < 1:
        raise ImageError("at least one style image is needed")
    require(not blend_weights or len(blend_weights) == n_styles,
           f"style_blend_weights has {len(blend_weights)} values for {n_styles} style image"
           f"{'s' if n_styles != 1 else ''}")


def check_mask_count(n_masks: int, n_styles: int, noun: str = "mask", otherwise: str = "") -> None:
    """One mask per style image (``noun``: what the caller calls a mask; ``otherwise``: the other choice)."""
    if n_masks != n_styles:
        raise ImageError(f"got {n_masks} {noun}{'s' if n_masks != 1 else ''} for {n_styles} style "
                         f"image{'s' if n_styles != 1 else ''}: give one {noun} per style{otherwise}")


def check_mask_covers(index: int, brightest: float) -> None:
    """Mask ``index`` (0-based), whose brightest pixel is ``brightest`` in 0..1, gives its style a region."""
    if brightest < 0.5:
        raise ImageError(f"mask {index + 1} is empty (all black): it gives its style no region")


def check_pixels(size: tuple[int, int], what: str) -> None:
    """An input image of ``size`` (w, h) is not absurdly large."""
    if size[0] * size[1] > MAX_INPUT_PIXELS:
        raise ImageError(
            f"{what} is {size[0]}x{size[1]} px, too large (at most {MAX_INPUT_PIXELS:,} pixels are accepted)")


def check_min_side(size: tuple[int, int], what: str) -> None:
    """An input image of ``size`` (w, h) is large enough for the network."""
    if min(size) < MIN_SIDE:
        raise ImageError(
            f"{what} is {size[0]}x{size[1]} px, too small for the network (each side needs at least {MIN_SIDE} px)")


def check_resized(size: tuple[int, int], longer: int, what: str) -> None:
    """An image resized to ``size`` (w, h), longer side ``longer``, is still thick enough for the network."""
    if min(size) < MIN_SIDE:
        raise ImageError(
            f"{what} would be {size[0]}x{size[1]} px at size {longer}: too thin for the network "
            f"(each side needs at least {MIN_SIDE} px); use a larger size or a less elongated image")
