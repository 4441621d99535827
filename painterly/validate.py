"""Every check of settings and inputs, and the limits and choices they check against.

One module, so that the CLI, the API, the web studio, batch and video refuse the same value with the
same sentence: the value given and what is accepted. :class:`~painterly.settings.Settings`,
:class:`~painterly.settings.Machine` and :class:`~painterly.video.VideoSettings` check themselves
here when they are made; the API checks its inputs here (styles and their blend weights, masks, image
sizes) before any work. Only :class:`~painterly.errors.SettingsError` and
:class:`~painterly.errors.ImageError` are raised; the entry points turn them into one line.

This module imports nothing else of painterly's but its errors and the network's layer names, so
every other module can use it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import ImageError, SettingsError, closest
from .network import CONV_LAYERS

if TYPE_CHECKING:
    from .settings import Machine, Settings
    from .video import VideoSettings

# -- choices ---------------------------------------------------------------------------------

OPTIMIZERS = ("lbfgs", "adam")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp64")
SWITCHES = ("on", "off")
INITS = ("content", "palette", "noise", "style")
POOLINGS = ("max", "avg")
COLOURS = ("none", "luminance", "histogram")
STYLE_LOSSES = ("gram", "relative", "moments", "nearest")
FLOW_PRESETS = ("ultrafast", "fast", "medium")  # OpenCV's DIS presets, least effort first

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


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise SettingsError(message)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def finite_nonneg(name: str, value: Any) -> None:
    """``value`` is a finite number >= 0."""
    _check(_is_number(value) and math.isfinite(value) and value >= 0,
           f"{name} must be a finite number >= 0, got {value!r}")


def whole_at_least(name: str, value: Any, low: int) -> None:
    """``value`` is a whole number >= ``low``."""
    _check(_is_whole(value) and value >= low, f"{name} must be a whole number >= {low}, got {value!r}")


def choice(name: str, value: Any, choices: Sequence[str]) -> None:
    """``value`` is one of ``choices``; a near miss gets a "did you mean"."""
    _check(value in choices,
           f"unknown {name} '{value}'{closest(str(value), choices)}; choose one of {', '.join(choices)}")


def _layers(name: str, layers: tuple[str, ...], weights: tuple[float, ...], allow_empty: bool) -> None:
    _check(allow_empty or len(layers) > 0, f"{name} needs at least one layer name")
    for layer in layers:
        _check(
            layer in CONV_LAYERS,
            f"unknown layer '{layer}' in {name}{closest(str(layer), CONV_LAYERS)}; "
            f"valid layers are block1_conv1 ... block5_conv4",
        )
    if weights:
        _check(
            len(weights) == len(layers),
            f"{name[:-1]}_weights has {len(weights)} values but there are {len(layers)} {name}",
        )
        for w in weights:
            finite_nonneg(f"{name[:-1]}_weights", w)


# -- settings --------------------------------------------------------------------------------

def check_settings(s: Settings) -> None:
    """Every field of a picture's :class:`~painterly.settings.Settings`, and how they fit together."""
    _check_sizes(s)
    for name in ("content_weight", "style_weight", "tv_weight", "lr", "lbfgs_max_step", "lbfgs_first_step", "adam_eps",
                 "min_improvement"):
        finite_nonneg(name, getattr(s, name))
    _check(s.lr > 0, f"lr must be > 0, got {s.lr}")
    _check(_is_number(s.strength) and (s.strength == -1 or 0 <= s.strength <= 1),
           f"strength must be between 0 (the photo) and 1 (the artwork), or -1 for the raw weights; got {s.strength!r}")
    _check(s.lbfgs_max_step > 0, f"lbfgs_max_step must be > 0, got {s.lbfgs_max_step}")
    for name in ("adam_beta1", "adam_beta2", "ema"):
        value = getattr(s, name)
        finite_nonneg(name, value)
        _check(value < 1, f"{name} must be in [0, 1), got {value}")
    whole_at_least("lbfgs_history", s.lbfgs_history, 1)
    whole_at_least("min_scale_steps", s.min_scale_steps, 1)
    whole_at_least("patience", s.patience, 0)
    whole_at_least("seed", s.seed, 0)
    _layers("content_layers", s.content_layers, s.content_layer_weights, allow_empty=True)
    _layers("style_layers", s.style_layers, s.style_layer_weights, allow_empty=True)
    _check(bool(s.content_layers or s.style_layers), "content_layers and style_layers cannot both be empty")
    for name, choices in (("optimizer", OPTIMIZERS), ("precision", PRECISIONS), ("pooling", POOLINGS),
                          ("colour", COLOURS), ("style_loss", STYLE_LOSSES)):
        choice(name, getattr(s, name), choices)
    _check_init(s)
    finite_nonneg("style_scale", s.style_scale)
    low, high = STYLE_SCALE_RANGE
    _check(low <= s.style_scale <= high, f"style_scale must be between {low} and {high:g}, got {s.style_scale}")
    for w in s.style_blend_weights:
        finite_nonneg("style_blend_weights", w)
    _check(not s.style_blend_weights or sum(s.style_blend_weights) > 0, "style_blend_weights must not all be 0")
    _check(isinstance(s.weights, str), "weights must be the path of a weights file (or empty: the bundled ones)")


def _check_sizes(s: Settings) -> None:
    whole_at_least("size", s.size, MIN_SIZE)
    _check(s.size <= MAX_SIZE, f"size must be at most {MAX_SIZE} px, got {s.size}")
    whole_at_least("steps", s.steps, 1)
    whole_at_least("start_size", s.start_size, 0)
    _check(s.start_size == 0 or s.start_size >= MIN_SIZE, f"start_size must be 0 or >= {MIN_SIZE}, got {s.start_size}")
    finite_nonneg("scale_factor", s.scale_factor)
    _check(s.scale_factor > 1, f"scale_factor must be > 1, got {s.scale_factor}")
    finite_nonneg("scale_steps_decay", s.scale_steps_decay)
    _check(0 < s.scale_steps_decay <= 4, f"scale_steps_decay must be in (0, 4], got {s.scale_steps_decay}")
    count = s.scale_count()
    _check(count <= MAX_SCALES, f"start_size {s.start_size}, size {s.size} and scale_factor {s.scale_factor!r} "
           f"make {count:,} scales; at most {MAX_SCALES} are allowed (raise scale_factor or start_size)")


def _check_init(s: Settings) -> None:
    _check(isinstance(s.init, str) and s.init in (*INITS, "file"),
           f"init must be content, noise, style, or file with init_file; got {s.init!r}")
    _check(isinstance(s.init_file, str), "init_file must be the path of an image file")
    _check(s.init != "file" or bool(s.init_file), "init file needs init_file: the image to start from")
    _check(s.init == "file" or not s.init_file,
           f"init_file is used only with init file (init is {s.init!r}); drop one of them")


def check_machine(m: Machine) -> None:
    """Every field of a :class:`~painterly.settings.Machine`."""
    choice("device", m.device, DEVICES)
    choice("cuda_graphs", m.cuda_graphs, SWITCHES)
    whole_at_least("threads", m.threads, 0)
    _check(_is_number(m.max_memory) and math.isfinite(m.max_memory) and m.max_memory >= 0,
           f"max_memory must be a positive number of GiB (or 0: three quarters of what is free), got {m.max_memory!r}")
    _check(_is_whole(m.tile_size) and (m.tile_size in (-1, 0) or (m.tile_size >= 64 and m.tile_size % 16 == 0)),
           f"tile_size must be a multiple of 16 of at least 64 px, 0 (tile when needed) or -1 (never), "
           f"got {m.tile_size!r}")


def check_video(v: VideoSettings) -> None:
    """Every field of :class:`~painterly.video.VideoSettings`."""
    finite_nonneg("temporal_weight", v.temporal_weight)
    whole_at_least("frame_steps", v.frame_steps, 1)
    _check(_is_whole(v.passes) and 1 <= v.passes <= MAX_PASSES,
           f"passes must be a whole number from 1 to {MAX_PASSES}, got {v.passes!r}")
    choice("long_term", v.long_term, SWITCHES)
    choice("flow", v.flow, FLOW_PRESETS)


def check_dpi(dpi: float) -> float:
    """A print's dots per inch, within :data:`DPI_RANGE`; returned as given."""
    low, high = DPI_RANGE
    _check(low <= dpi <= high, f"--dpi must be between {low} and {high}, got {dpi:g}")
    return dpi


# -- inputs ----------------------------------------------------------------------------------

def check_styles(n_styles: int, blend_weights: Sequence[float]) -> None:
    """At least one style image, and one blend weight per style where weights are given."""
    if n_styles < 1:
        raise ImageError("at least one style image is needed")
    _check(not blend_weights or len(blend_weights) == n_styles,
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


def check_frames(sizes: Sequence[tuple[int, int]]) -> None:
    """A clip's frames, by their sizes (w, h): at least one, all of one size."""
    if not sizes:
        raise ImageError("no frames to paint")
    for i, size in enumerate(sizes):
        if size != sizes[0]:
            raise ImageError(f"frames differ in size: frame 1 is {sizes[0][0]}x{sizes[0][1]}, frame {i + 1} is "
                             f"{size[0]}x{size[1]}")


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
