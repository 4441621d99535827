"""The public API: :func:`stylize` takes images and settings and returns a :class:`Result`."""

from __future__ import annotations

import io
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from PIL import Image

from . import colour
from .checkpoint import Checkpoint
from .devices import memory_budget, pick_device, pick_precision, release_freed_memory, storage_dtype
from .errors import SettingsError
from .images import ImageLike, from_any, open_image, resize_longer, resize_tensor, to_pil, to_tensor
from .masks import prepare_masks
from .network import VGG19, deepest
from .objective import WHOLE, build_objective
from .optimize import ScaleOutcome, run_scale
from .palette import tone_palette
from .plan import SECONDS_PER_COST, Plan, ScalePlan, make_plan
from .prints import to_uint16
from .settings import Machine, Settings, split_fields
from .tiles import TiledGradient, TiledMeasure
from .validate import check_styles
from .weights import load_weights

__all__ = ["Engine", "Progress", "Result", "apply_colour", "build_network", "prepare_images", "stylize"]


@dataclass(frozen=True)
class Progress:
    """One step of a run, as the callback receives it. ``image()`` renders the current image."""

    step: int  # 0-based, counted over all scales
    total_steps: int  # steps planned over all scales (early stopping may end sooner)
    scale: int  # 0-based index of the current scale
    scales: int
    size: tuple[int, int]  # (w, h) of the current scale
    losses: dict[str, float]  # total, style, content, tv (weighted; total is their sum)
    elapsed: float  # seconds since the optimization started
    eta: float  # estimated seconds left
    _image: torch.Tensor = field(repr=False)
    _to_rgb: Callable[[torch.Tensor], torch.Tensor] = field(repr=False)

    def image(self) -> Image.Image:
        """The image as it is after this step (a PIL copy; costs one conversion).

        Call it inside the callback: the tensor behind it is the one being optimized.
        """
        return to_pil(self._to_rgb(self._image))


#: A callback may return True to stop the run (the best image so far is still returned).
Callback = Callable[[Progress], Any]


@dataclass
class Result:
    """What :func:`stylize` returns."""

    image: Image.Image
    history: list[dict[str, Any]]
    best_step: int
    best_loss: float
    seconds: float  # the whole call
    seconds_setup: float  # loading weights, images and targets
    settings: Settings
    device: str
    precision: str
    stopped: bool = False  # stopped early by the callback or Ctrl-C
    machine: Machine = field(default_factory=Machine)  # what it ran on: not part of the picture
    content: Image.Image | None = field(default=None, repr=False)
    styles: list[Image.Image] = field(default_factory=list, repr=False)
    plan: Plan | None = field(default=None, repr=False)
    rgb16: Any = field(default=None, repr=False)  # the image as (H, W, 3) uint16 samples, for 16-bit files
    scale_reached: int = 0  # 0-based index of the last scale that ran (the image is upsampled from it if stopped early)

    @property
    def best_step_of_scale(self) -> tuple[int, int]:
        """(1-based step within the scale reached, steps that scale ran) of the best image."""
        in_scale = [h for h in self.history if h.get("scale") == self.scale_reached]
        first = in_scale[0]["step"] if in_scale else 0
        return self.best_step - first + 1, len(in_scale)

    def record(self) -> dict[str, Any]:
        """The run record (``--history``): settings, per-step losses, best, timings, versions."""
        from . import __version__

        return {
            "settings": self.settings.to_dict(),
            "machine": self.machine.to_dict(),
            "history": self.history,
            "best": {"step": self.best_step, "total": self.best_loss},
            "seconds_total": self.seconds,
            "seconds_setup": self.seconds_setup,
            "image_size": list(self.image.size),
            "device": self.device,
            "precision": self.precision,
            "stopped": self.stopped,
            "scale_reached": self.scale_reached,
            "scales": len(self.plan.scales) if self.plan else 1,
            "versions": {"painterly": __version__, "torch": torch.__version__, "python": platform.python_version()},
        }

    def _repr_png_(self) -> bytes:
        """Jupyter shows the result inline."""
        buffer = io.BytesIO()
        self.image.save(buffer, format="PNG")
        return buffer.getvalue()


class Engine:
    """What runs on one device can share: the network, and style targets already computed.

    A batch worker keeps one engine for all its jobs, so VGG19 is loaded once and the Gram targets
    of a style image used again (same pixels, size, layers and loss) are not recomputed.
    :func:`stylize` makes a fresh one when none is given. It changes no process-wide state: threads
    and the allocator belong to the program's entry points (:func:`painterly.devices.setup_process`).
    """

    def __init__(self) -> None:
        self.networks: dict[tuple[Any, ...], VGG19] = {}
        self.style_cache: dict[tuple[Any, ...], Any] = {}

    def network(self, settings: Settings, device: torch.device, precision: str) -> VGG19:
        """:func:`build_network` for ``settings``, built once per cut, pooling, weights, device and precision."""
        cut = deepest([*settings.content_layers, *settings.style_layers])
        key = (cut, settings.pooling, settings.weights, str(device), precision)
        if key not in self.networks:
            self.networks[key] = build_network(settings, device, precision)
        return self.networks[key]


def stylize(
    content: ImageLike,
    style: ImageLike | Sequence[ImageLike],
    settings: Settings | None = None,
    *,
    machine: Machine | None = None,
    callback: Callback | None = None,
    masks: Sequence[ImageLike] | None = None,
    init_image: ImageLike | None = None,
    extra_terms: Sequence[Any] = (),
    engine: Engine | None = None,
    resume: Checkpoint | None = None,
    on_checkpoint: Callable[[Checkpoint], Any] | None = None,
    **overrides: Any,
) -> Result:
    """Paint ``content`` in the style of ``style`` (one image or several, blended).

    ``content``/``style``: PIL images, image file paths, numpy arrays (uint8 0..255 or float 0..1,
    (H, W[, 3|4])) or tensors ((3, H, W), float 0..1). ``settings`` (what the picture is) defaults to
    the ``default`` preset; ``machine`` (where and how fast it is computed: device, threads, memory,
    tiles, CUDA graphs) to :class:`~painterly.settings.Machine`'s defaults. ``overrides`` replace single
    fields of either (``stylize(c, s, steps=50, device="cpu")``). ``masks``: one
    grayscale image per style saying where it applies (see :mod:`painterly.masks`). ``init_image``
    starts from that image. ``callback`` receives a :class:`Progress` after every step and may return
    True to stop. ``extra_terms``: more loss terms (see :class:`painterly.objective.Term`), each with a
    ``for_size((w, h))`` method giving the term at a scale's size. ``engine`` shares the network and
    style targets between calls. ``on_checkpoint`` receives a :class:`painterly.checkpoint.Checkpoint`
    at each scale's end and when the run is stopped; ``resume`` (one of those, of the same settings
    and inputs) continues from where it was taken.
    """
    from .settings import DEFAULT

    started = time.perf_counter()
    picture, on_machine = split_fields(overrides)
    settings = (settings or DEFAULT).replace(**picture) if picture else (settings or DEFAULT)
    machine = (machine or Machine()).replace(**on_machine) if on_machine else (machine or Machine())
    content_img, style_imgs = _inputs(content, style, settings)
    start_img = _init_image(settings, init_image)
    device = pick_device(machine.device)
    precision = pick_precision(settings.precision, device)
    plan = make_plan(settings, content_img.size, precision, memory_budget(machine.max_memory, device),
                     machine.tile_size)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one input size per scale: the autotuned kernels pay off
    dtype = storage_dtype(precision)
    engine = engine or Engine()
    net = engine.network(settings, device, precision)
    autocast = torch.bfloat16 if precision == "bf16" else None

    tracker = _Tracker(plan, settings.optimizer, callback, SECONDS_PER_COST.get((device.type, precision)))
    image: torch.Tensor | None = None
    first_scale, steps_done = 0, 0
    if resume is not None:
        first_scale, steps_done = resume.scale, resume.steps_done
        image = resume.image.to(device, dtype, copy=True)  # optimized in place: the checkpoint stays as it was
        tracker.history = list(resume.history)
    outcome: ScaleOutcome | None = None
    interrupted = False  # by Ctrl-C (or SIGTERM) while a scale was being set up
    for scale in plan.scales[first_scale:]:
        t0 = time.perf_counter()
        try:
            objective, gradient, to_rgb, image = _set_up_scale(
                scale, image, content_img, style_imgs, masks, start_img, settings, net, engine, extra_terms,
                device, dtype, autocast)
        except KeyboardInterrupt:
            if outcome is None:
                raise  # nothing painted yet
            interrupted = True
            break
        tracker.setup_seconds += time.perf_counter() - t0
        before = steps_done if scale.index == first_scale else 0  # run before a resume
        done = run_scale(objective, image, settings, max(1, scale.steps - before),
                         tracker.reporter(scale.index, to_rgb, before),
                         gradient=gradient, history=scale.history or None, reuse_start=True,
                         cuda_graphs=machine.cuda_graphs == "on")
        if done.stopped and done.steps_run == 0:
            if outcome is None:  # Ctrl-C in the run's first step: nothing painted yet (not a loss of inf)
                raise KeyboardInterrupt
            # Stopped before this scale's first step was whole: the previous scale's result stands.
            interrupted, image = True, outcome.image
            break
        outcome = done
        image, reached = outcome.image, scale.index
        del objective, gradient, done
        release_freed_memory()
        if on_checkpoint is not None:
            done_here = outcome.steps_run + before
            finished = not outcome.stopped
            on_checkpoint(Checkpoint(scale.index + 1 if finished else scale.index, 0 if finished else done_here,
                                     image.detach().cpu(), list(tracker.history)))
        if outcome.stopped:
            break
    assert outcome is not None and image is not None  # the plan has at least one scale
    history = tracker.history
    if not math.isfinite(outcome.best_total):
        raise SettingsError(f"the loss is not finite ({outcome.best_total}) from the first step: the weights overflow "
                            "float arithmetic; use a smaller content_weight or style_weight")
    final = image if image.shape[-2:] == (plan.size[1], plan.size[0]) else resize_tensor(image, plan.size)
    if final is not image:  # stopped at a coarse scale: the colour transform of the final size
        _, _, to_rgb = prepare_images(content_img, style_imgs, settings.colour, plan.scales[-1], device, dtype)
    rgb = to_rgb(final)
    return Result(
        image=to_pil(rgb),
        rgb16=to_uint16(rgb),
        history=history,
        best_step=outcome.best_step + len(history) - outcome.steps_run,  # global index, scale reached
        best_loss=outcome.best_total,
        seconds=time.perf_counter() - started,
        seconds_setup=tracker.setup_seconds,
        settings=settings,
        device=str(device),
        precision=precision,
        machine=machine,
        stopped=outcome.stopped or interrupted,
        content=content_img,
        styles=style_imgs,
        plan=plan,
        scale_reached=reached,
    )


def _set_up_scale(scale: ScalePlan, image: torch.Tensor | None, content_img: Image.Image,
                  style_imgs: list[Image.Image], masks: Sequence[ImageLike] | None, start_img: Image.Image | None,
                  settings: Settings, net: VGG19, engine: Engine, extra_terms: Sequence[Any],
                  device: torch.device, dtype: torch.dtype, autocast: torch.dtype | None):
    """One scale's objective (tiled where the plan says), its gradient function (None: untiled),
    the colour transform back to RGB, and the image it starts from (the previous scale's, resized)."""
    content_t, style_ts, to_rgb = prepare_images(content_img, style_imgs, settings.colour, scale, device, dtype)
    mask_ts = prepare_masks(masks, len(style_ts), scale.size, device) if masks is not None else None
    measure = TiledMeasure(scale.tile) if scale.tile else WHOLE
    objective = build_objective(net, settings, content_t, style_ts, masks=mask_ts, autocast_dtype=autocast,
                                extra_terms=[t.for_size(scale.size) for t in extra_terms],
                                cache=engine.style_cache, measure=measure)
    gradient = TiledGradient(objective, scale.size, scale.tile) if scale.tile else None
    if image is None:
        image = _first_image(settings, start_img, content_t, style_ts, scale.size, device).to(dtype)
        if settings.colour == "luminance":  # the run happens on gray images
            image = colour.gray_as_rgb(colour.luminance(image))
    elif image.shape[-2:] != (scale.size[1], scale.size[0]):
        image = resize_tensor(image, scale.size)
    return objective, gradient, to_rgb, image


class _Tracker:
    """Turns the loop's per-step reports into history entries, ETAs and :class:`Progress` events.

    The ETA prices the plan's steps still to come by this run's own steps. A step's plan cost has two
    parts, :attr:`~painterly.plan.ScalePlan.step_parts`: the per-step part (launching the network's
    layers, the losses, the optimizer) and the per-pixel part; each gets its own seconds per unit.
    On a loaded machine the per-step part grows most (the threads wait on each other at every
    layer), so one rate measured on the small first scales priced the large last ones far too high:
    a run the plan put at 59 s said 13:49 with 2:43 left. Until :attr:`MEASURED_STEPS` untiled steps
    have been timed, both parts take ``prior_rate`` (the plan's measured seconds per cost on this
    kind of device, where known); from then on only the timed steps count: one rate while they are
    all of one size, the two parts fitted by least squares once two sizes have run. The run's first
    step (which warms caches up) is not timed.

    Tiled steps are timed apart: their cost over an untiled step's differs by machine (0.8x to 1.9x
    measured), so the untiled steps alone promised a 4096 px run's tiled scales in a third of their
    time. Their time over what the untiled prices predict for them starts at 1 (one tiled step's
    worth) and moves to the tiled steps' own from the first of them.
    """

    #: Untiled steps this run must have timed before its ETA comes from them alone.
    MEASURED_STEPS = 3

    def __init__(self, plan: Plan, optimizer: str, callback: Callback | None,
                 prior_rate: float | None = None) -> None:
        self.plan, self.optimizer, self.callback = plan, optimizer, callback
        self.prior_rate = prior_rate
        self.history: list[dict[str, Any]] = []
        self.start = time.perf_counter()
        self.setup_seconds = 0.0
        self.last: float | None = None  # working seconds at the previous report (None: none yet)
        # Untiled steps timed: their count, seconds, cost, the sizes they ran at, and the sums least
        # squares needs (o: per-step part, p: per-pixel part, t: seconds): o*o, o*p, p*p, o*t, p*t.
        self.untiled_steps, self.untiled_seconds, self.untiled_cost = 0, 0.0, 0.0
        self.sizes: set[tuple[int, int]] = set()
        self.sums = [0.0] * 5
        self.tiled = [0.0, 0.0, 0.0]  # tiled steps timed: seconds, per-step part, per-pixel part
        tiled = [s.step_parts for s in plan.scales if s.tile]
        self.tiled_weight = tiled[0] if tiled else (0.0, 0.0)  # counts as much as a prediction of 1

    def prices(self, first: float) -> tuple[float, float, float]:
        """(seconds per unit of a step's per-step cost, per unit of its per-pixel cost, tiled steps'
        time over what those two predict for them); ``first`` where nothing is known."""
        if self.untiled_steps >= self.MEASURED_STEPS or (self.untiled_steps > 0 and self.prior_rate is None):
            per_step, per_pixel = self._fitted()
        else:
            per_step = per_pixel = self.prior_rate if self.prior_rate is not None else first
        seconds, step_part, pixel_part = self.tiled
        if not seconds:
            return per_step, per_pixel, 1.0
        weight = per_step * self.tiled_weight[0] + per_pixel * self.tiled_weight[1]
        return per_step, per_pixel, (weight + seconds) / (weight + per_step * step_part + per_pixel * pixel_part)

    def _fitted(self) -> tuple[float, float]:
        """The untiled steps' prices: seconds over cost while they ran at one size, else the least
        squares fit of seconds = per_step * o + per_pixel * p, neither price below 0."""
        rate = self.untiled_seconds / self.untiled_cost
        oo, op, pp, ot, pt = self.sums
        det = oo * pp - op * op
        if len(self.sizes) < 2 or self.untiled_steps < self.MEASURED_STEPS or det <= 1e-9 * oo * pp:
            return rate, rate
        per_step, per_pixel = (ot * pp - pt * op) / det, (pt * oo - ot * op) / det
        if per_step < 0:  # the best fit on the boundary: all of a step's time is its pixels'
            return 0.0, pt / pp
        if per_pixel < 0:
            return ot / oo, 0.0
        return per_step, per_pixel

    def time_step(self, scale: ScalePlan, seconds: float) -> None:
        """Count a step of ``scale`` that took ``seconds``."""
        step_part, pixel_part = scale.step_parts
        if scale.tile:
            for i, value in enumerate((seconds, step_part, pixel_part)):
                self.tiled[i] += value
            return
        self.untiled_steps += 1
        self.untiled_seconds += seconds
        self.untiled_cost += step_part + pixel_part
        self.sizes.add(scale.size)
        for i, value in enumerate((step_part * step_part, step_part * pixel_part, pixel_part * pixel_part,
                                   step_part * seconds, pixel_part * seconds)):
            self.sums[i] += value

    def eta(self, scale: int, steps_done: int, first: float) -> float:
        """Seconds still to come after ``steps_done`` steps of ``scale``."""
        per_step, per_pixel, tiled = self.prices(first)

        def step_seconds(s: ScalePlan) -> float:
            step_part, pixel_part = s.step_parts
            return (per_step * step_part + per_pixel * pixel_part) * (tiled if s.tile else 1.0)

        current = self.plan.scales[scale]
        left = step_seconds(current) * max(0, current.steps - steps_done)
        return left + sum(step_seconds(s) * s.steps for s in self.plan.scales[scale + 1:])

    def reporter(self, scale: int, to_rgb: Callable[[torch.Tensor], torch.Tensor], before: int = 0):
        """The ``report`` function :func:`run_scale` calls at ``scale``, of which ``before`` steps
        ran before a resume: their cost was done in the earlier run (counted in this run's, it made
        the steps measured after a resume look cheap: a resumed 4096 px run said 26 min where two
        hours were left)."""
        plan_scale = self.plan.scales[scale]
        size = plan_scale.size
        step_cost = plan_scale.cost / max(plan_scale.steps, 1)
        offset = len(self.history)

        def report(i: int, losses: dict[str, float], current: torch.Tensor) -> bool:
            now = time.perf_counter() - self.start
            self.history.append({"step": offset + i, **losses, "seconds": round(now, 6), "scale": scale,
                                 "size": list(size), "optimizer": self.optimizer})
            working = now - self.setup_seconds
            if self.last is not None:
                self.time_step(plan_scale, working - self.last)
            first = self.prior_rate if self.prior_rate is not None else working / max(step_cost, 1e-9)
            self.last = working
            if self.callback is None:
                return False
            event = Progress(offset + i, self.plan.total_steps, scale, len(self.plan.scales), size, losses, now,
                             self.eta(scale, before + i + 1, first), current, to_rgb)
            return bool(self.callback(event))

        return report


def _inputs(content: ImageLike, style: ImageLike | Sequence[ImageLike], settings: Settings):
    """The content and style images as RGB PIL images, checked."""
    styles_in = list(style) if isinstance(style, (list, tuple)) else [cast(ImageLike, style)]
    check_styles(len(styles_in), settings.style_blend_weights)
    names = [f"style image {i + 1}" if len(styles_in) > 1 else "style image" for i in range(len(styles_in))]
    return from_any(content, "content image"), [from_any(s, n) for s, n in zip(styles_in, names)]


def build_network(settings: Settings, device: torch.device, precision: str = "fp32") -> VGG19:
    """VGG19 cut after the deepest layer ``settings`` uses, channels-last, in ``precision``.

    For bf16 the convolutions' weights are stored in bf16: autocast would otherwise cast them from
    float32 on every pass (the same rounding, so the same numbers, at a cost of about 2% of a step).
    """
    layers = [*settings.content_layers, *settings.style_layers]
    cut = deepest(layers)
    weights = load_weights(settings.weights)
    names = list(weights)
    kept = {name: weights[name] for name in names[: names.index(cut) + 1]}
    net = VGG19(kept, pooling=settings.pooling).to(device, storage_dtype(precision))
    if precision == "bf16":
        net.convs.to(torch.bfloat16)
    return net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stub lacks it


def prepare_images(
    content: Image.Image,
    styles: Sequence[Image.Image],
    mode: str,
    scale: ScalePlan,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, list[torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]:
    """The content at the scale's size and the styles at its style size, as (1, 3, h, w) tensors in
    0..255, with colour mode ``mode`` applied; and how to turn an optimized image back into RGB."""
    content_t = to_tensor(resize_longer(content, max(scale.size), "content image"), device).to(dtype)
    style_ts = [to_tensor(resize_longer(s, scale.style_size, "style image"), device).to(dtype) for s in styles]
    return apply_colour(mode, content_t, style_ts)


def apply_colour(mode: str, content: torch.Tensor, styles: list[torch.Tensor]):
    """Colour mode -> (content, styles, to_rgb): the images the network sees and how to get RGB back."""
    if mode == "histogram":
        return content, [colour.match_histogram(s, content) for s in styles], lambda x: x
    if mode == "luminance":
        content_y = colour.luminance(content)
        # The styles' own luminance, not matched to the photo's: matching it (Gatys et al.'s option) gave
        # back the photo's tones with faint strokes (gray style figure 0.94x the photo's own; 0.21x
        # unmatched, chelsea x starry_night at 256 px), while the colours are the photo's either way.
        styles_y = [colour.gray_as_rgb(colour.luminance(s)) for s in styles]
        original = content

        def to_rgb(x: torch.Tensor) -> torch.Tensor:
            y = colour.luminance(x)
            return colour.combine_luminance(y, resize_tensor(original, (x.shape[-1], x.shape[-2])))

        return colour.gray_as_rgb(content_y), styles_y, to_rgb
    return content, styles, lambda x: x


def _init_image(settings: Settings, init_image: ImageLike | None) -> Image.Image | None:
    if init_image is not None:
        return from_any(init_image, "init image")
    if settings.init != "file":
        return None
    return open_image(settings.init_file)


def _first_image(
    settings: Settings,
    start_img: Image.Image | None,
    content_t: torch.Tensor,
    style_ts: list[torch.Tensor],
    size: tuple[int, int],
    device: torch.device,
) -> torch.Tensor:
    """The image the first scale starts from, (1, 3, h, w) RGB 0..255."""
    w, h = size
    if start_img is not None:
        return to_tensor(start_img.resize(size, Image.Resampling.LANCZOS), device)
    if settings.init == "noise":
        generator = torch.Generator().manual_seed(settings.seed)
        noise = torch.rand((1, 3, h, w), generator=generator) * 255.0
        return noise.to(device)
    if settings.init == "style":
        return resize_tensor(style_ts[0], size)
    if settings.init == "palette" and settings.loss_weights()[1] > 0:  # strength 0 keeps the photo: no palette
        return tone_palette(content_t, style_ts)
    return content_t.clone()
