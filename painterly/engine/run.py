"""The public API: :func:`stylize` takes images and settings and returns a :class:`Result`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from PIL import Image

from ..errors import SettingsError
from . import colour
from .checkpoint import Checkpoint
from .cluster import TileCluster, check_cluster
from .devices import (
    HEAP_MAX_PIXELS,
    large_blocks_from_heap,
    memory_budget,
    pick_device,
    pick_precision,
    release_freed_memory,
    storage_dtype,
)
from .images import ImageLike, from_any, open_image, resize_longer, resize_tensor, to_pil, to_tensor
from .masks import prepare_masks
from .network import VGG19, deepest
from .objective import WHOLE, build_objective
from .optimize import ScaleOutcome, run_scale
from .palette import tone_palette
from .plan import Plan, ScalePlan, make_plan
from .prints import to_uint16
from .progress import Tracker
from .result import Callback, Result
from .settings import Machine, Settings, split_fields
from .tiles import TiledGradient, TiledMeasure
from .validate import check_styles
from .weights import load_weights

__all__ = ["Engine", "apply_colour", "build_network", "prepare_images", "stylize"]


class Engine:
    """What runs on one device can share: the network, and style targets already computed.

    A batch worker keeps one engine for all its jobs, so VGG19 is loaded once and the Gram targets
    of a style image used again (same pixels, size, layers and loss) are not recomputed.
    :func:`stylize` makes a fresh one when none is given. It changes no process-wide state: threads
    and the allocator belong to the program's entry points (:func:`painterly.engine.devices.setup_process`).
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
    cluster: TileCluster | None = None,
    **overrides: Any,
) -> Result:
    """Paint ``content`` in the style of ``style`` (one image or several, blended).

    ``content``/``style``: PIL images, image file paths, numpy arrays (uint8 0..255 or float 0..1,
    (H, W[, 3|4])) or tensors ((3, H, W), float 0..1). ``settings`` (what the picture is) defaults to
    the ``default`` preset; ``machine`` (where and how fast it is computed: device, threads, memory,
    tiles, CUDA graphs) to :class:`~painterly.engine.settings.Machine`'s defaults. ``overrides`` replace single
    fields of either (``stylize(c, s, steps=50, device="cpu")``). ``masks``: one
    grayscale image per style saying where it applies (see :mod:`painterly.engine.masks`). ``init_image``
    starts from that image. ``callback`` receives a :class:`Progress` after every step and may return
    True to stop. ``extra_terms``: more loss terms (see :class:`painterly.engine.objective.Term`), each with a
    ``for_size((w, h))`` method giving the term at a scale's size. ``engine`` shares the network and
    style targets between calls. ``on_checkpoint`` receives a :class:`painterly.engine.checkpoint.Checkpoint`
    at each scale's end and when the run is stopped; ``resume`` (one of those, of the same settings
    and inputs) continues from where it was taken. ``cluster`` (a :class:`painterly.RayTiles`, or
    anything with :class:`painterly.engine.cluster.TileCluster`'s ``run_scale``) paints the tiled scales
    with their tiles spread over its workers; the memory budget is then each worker's.
    """
    from .settings import DEFAULT

    started = time.perf_counter()
    picture, on_machine = split_fields(overrides)
    settings = (settings or DEFAULT).replace(**picture) if picture else (settings or DEFAULT)
    machine = (machine or Machine()).replace(**on_machine) if on_machine else (machine or Machine())
    content_img, style_imgs = _inputs(content, style, settings)
    device = pick_device(machine.device)
    precision = pick_precision(settings.precision, device)
    if cluster is not None:
        check_cluster(settings)
    plan = make_plan(settings, content_img.size, precision, memory_budget(machine.max_memory, device),
                     machine.tile_size, cluster.workers if cluster is not None else None)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one input size per scale: the autotuned kernels pay off
    engine = engine or Engine()
    run = _Run(content_img, style_imgs, masks, _init_image(settings, init_image), settings, machine, plan,
               engine.network(settings, device, precision), engine, extra_terms, device, precision,
               storage_dtype(precision), torch.bfloat16 if precision == "bf16" else None,
               Tracker(plan, settings.optimizer, callback, plan.prior_rate(device.type, precision)), cluster)
    try:
        outcome, image, reached, interrupted, to_rgb = _paint_scales(run, resume, on_checkpoint)
    finally:
        large_blocks_from_heap(False)  # the process's other work maps them again
    return _result(run, outcome, image, reached, interrupted, to_rgb, started)


@dataclass
class _Run:
    """What every scale of one :func:`stylize` call uses."""

    content: Image.Image
    styles: list[Image.Image]
    masks: Sequence[ImageLike] | None
    start: Image.Image | None  # the image to start from, if not the photo, noise or the artwork
    settings: Settings
    machine: Machine
    plan: Plan
    net: VGG19
    engine: Engine
    extra_terms: Sequence[Any]
    device: torch.device
    precision: str
    dtype: torch.dtype
    autocast: torch.dtype | None
    tracker: Tracker
    cluster: TileCluster | None = None  # paints the tiled scales, where given


def _paint_scales(run: _Run, resume: Checkpoint | None, on_checkpoint: Callable[[Checkpoint], Any] | None):
    """Each scale of the plan in turn (from the checkpoint ``resume`` if given); (the last scale's
    outcome, the image, the index of the scale reached, whether Ctrl-C stopped the setting up of a
    scale, the colour transform back to RGB). Ctrl-C before anything is painted is raised."""
    image: torch.Tensor | None = None
    first_scale, steps_done = 0, 0
    if resume is not None:
        first_scale, steps_done = resume.scale, resume.steps_done
        image = resume.image.to(run.device, run.dtype, copy=True)  # optimized in place: the checkpoint stays as it was
        run.tracker.history = list(resume.history)
    outcome: ScaleOutcome | None = None
    reached = first_scale
    for scale in run.plan.scales[first_scale:]:
        t0 = time.perf_counter()
        large_blocks_from_heap(scale.tile == 0 and scale.pixels <= HEAP_MAX_PIXELS)  # see its docstring
        try:
            objective, gradient, to_rgb, image = _set_up_scale(scale, image, run)
        except KeyboardInterrupt:
            if outcome is None:
                raise  # nothing painted yet
            return outcome, outcome.image, reached, True, to_rgb
        run.tracker.setup_seconds += time.perf_counter() - t0
        before = steps_done if scale.index == first_scale else 0  # run before a resume
        report, steps = run.tracker.reporter(scale.index, to_rgb, before), max(1, scale.steps - before)
        if run.cluster is not None and gradient is not None:
            done = run.cluster.run_scale(gradient, image, run.settings, steps, report, scale.history or None,
                                         run.precision)
        else:
            done = run_scale(objective, image, run.settings, steps, report, gradient=gradient,
                             history=scale.history or None, reuse_start=True,
                             cuda_graphs=run.machine.cuda_graphs == "on")
        if done.stopped and done.steps_run == 0:
            if outcome is None:  # Ctrl-C in the run's first step: nothing painted yet (not a loss of inf)
                raise KeyboardInterrupt
            # Stopped before this scale's first step was whole: the previous scale's result stands.
            return outcome, outcome.image, reached, True, to_rgb
        outcome, reached = done, scale.index
        image = outcome.image
        del objective, gradient, done
        release_freed_memory()
        if on_checkpoint is not None:
            finished = not outcome.stopped
            on_checkpoint(Checkpoint(scale.index + 1 if finished else scale.index,
                                     0 if finished else outcome.steps_run + before, image.detach().cpu(),
                                     list(run.tracker.history)))
        if outcome.stopped:
            break
    assert outcome is not None and image is not None  # the plan has at least one scale
    return outcome, image, reached, False, to_rgb


def _result(run: _Run, outcome: ScaleOutcome, image: torch.Tensor, reached: int, interrupted: bool,
            to_rgb: Callable[[torch.Tensor], torch.Tensor], started: float) -> Result:
    """The :class:`Result` of a run whose last scale ended in ``outcome`` with ``image``."""
    if not math.isfinite(outcome.best_total):
        raise SettingsError(f"the loss is not finite ({outcome.best_total}) from the first step: the weights overflow "
                            "float arithmetic; use a smaller content_weight or style_weight")
    plan, history = run.plan, run.tracker.history
    final = image if image.shape[-2:] == (plan.size[1], plan.size[0]) else resize_tensor(image, plan.size)
    if final is not image:  # stopped at a coarse scale: the colour transform of the final size
        _, _, to_rgb = prepare_images(run.content, run.styles, run.settings.colour, plan.scales[-1], run.device,
                                      run.dtype)
    rgb = to_rgb(final)
    return Result(
        image=to_pil(rgb),
        rgb16=to_uint16(rgb),
        history=history,
        best_step=outcome.best_step + len(history) - outcome.steps_run,  # global index, scale reached
        best_loss=outcome.best_total,
        seconds=time.perf_counter() - started,
        seconds_setup=run.tracker.setup_seconds,
        settings=run.settings,
        device=str(run.device),
        precision=run.precision,
        machine=run.machine,
        stopped=outcome.stopped or interrupted,
        content=run.content,
        styles=run.styles,
        plan=plan,
        scale_reached=reached,
    )


def _set_up_scale(scale: ScalePlan, image: torch.Tensor | None, run: _Run):
    """One scale's objective (tiled where the plan says), its gradient function (None: untiled),
    the colour transform back to RGB, and the image it starts from (the previous scale's, resized)."""
    settings, device = run.settings, run.device
    content_t, style_ts, to_rgb = prepare_images(run.content, run.styles, settings.colour, scale, device, run.dtype)
    mask_ts = prepare_masks(run.masks, len(style_ts), scale.size, device) if run.masks is not None else None
    measure = TiledMeasure(scale.tile) if scale.tile else WHOLE
    objective = build_objective(run.net, settings, content_t, style_ts, masks=mask_ts, autocast_dtype=run.autocast,
                                extra_terms=[t.for_size(scale.size) for t in run.extra_terms],
                                cache=run.engine.style_cache, measure=measure)
    gradient = TiledGradient(objective, scale.size, scale.tile) if scale.tile else None
    if image is None:
        image = first_image(settings, run.start, content_t, style_ts, scale.size, device).to(run.dtype)
        if settings.colour == "luminance":  # the run happens on gray images
            image = colour.gray_as_rgb(colour.luminance(image))
    elif image.shape[-2:] != (scale.size[1], scale.size[0]):
        image = resize_tensor(image, scale.size)
    return objective, gradient, to_rgb, image


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


def first_image(
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
        return torch.lerp(content_t, tone_palette(content_t, style_ts), settings.palette_share())
    return content_t.clone()
