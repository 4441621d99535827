"""The public API: :func:`stylize` takes images and settings and returns a :class:`Result`."""

from __future__ import annotations

import io
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from . import colour
from .devices import keep_freed_memory, pick_device, pick_precision, storage_dtype
from .errors import ImageError, SettingsError
from .images import ImageLike, fit_size, from_any, open_image, resize_longer, resize_tensor, to_pil, to_tensor
from .losses import StyleTarget
from .masks import prepare_masks
from .network import VGG19, deepest
from .optimize import Objective, content_targets, run_scale, style_grams
from .settings import INITS, Settings
from .weights import load_weights

__all__ = ["Progress", "Result", "stylize"]


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
    content: Image.Image | None = field(default=None, repr=False)
    styles: list[Image.Image] = field(default_factory=list, repr=False)

    def record(self) -> dict[str, Any]:
        """The run record (``--history``): settings, per-step losses, best, timings, versions."""
        from . import __version__

        return {
            "settings": self.settings.to_dict(),
            "history": self.history,
            "best": {"step": self.best_step, "total": self.best_loss},
            "seconds_total": self.seconds,
            "seconds_setup": self.seconds_setup,
            "image_size": list(self.image.size),
            "device": self.device,
            "precision": self.precision,
            "stopped": self.stopped,
            "versions": {"painterly": __version__, "torch": torch.__version__, "python": platform.python_version()},
        }

    def _repr_png_(self) -> bytes:
        """Jupyter shows the result inline."""
        buffer = io.BytesIO()
        self.image.save(buffer, format="PNG")
        return buffer.getvalue()


def stylize(
    content: ImageLike,
    style: ImageLike | Sequence[ImageLike],
    settings: Settings | None = None,
    *,
    callback: Callback | None = None,
    masks: Sequence[ImageLike] | None = None,
    init_image: ImageLike | None = None,
    **overrides: Any,
) -> Result:
    """Paint ``content`` in the style of ``style`` (one image or several, blended).

    ``content``/``style``: PIL images, numpy arrays (uint8 0..255 or float 0..1, (H, W[, 3|4])) or
    tensors ((3, H, W), float 0..1). ``settings`` defaults to the ``default`` preset; ``overrides``
    replace single fields (``stylize(c, s, steps=50)``). ``masks``: one grayscale image per style
    saying where it applies (see :mod:`painterly.masks`). ``init_image`` starts from that image.
    ``callback`` receives a :class:`Progress` after every step and may return True to stop.
    """
    from .settings import DEFAULT

    started = time.perf_counter()
    settings = (settings or DEFAULT).replace(**overrides) if overrides else (settings or DEFAULT)
    content_img, style_imgs = _inputs(content, style, settings)
    start_img = _init_image(settings, init_image)
    device = pick_device(settings.device)
    precision = pick_precision(settings.precision, device)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    if device.type == "cpu":
        keep_freed_memory()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one input size per scale: the autotuned kernels pay off
    dtype = storage_dtype(precision)
    net = _network(settings, device, precision)
    autocast = torch.bfloat16 if precision == "bf16" else None

    plan = [(fit_size(content_img.size, s), n) for s, n in zip(settings.scale_sizes(), settings.scale_steps())]
    for size, _ in plan:  # fail before any work if a scale is too thin for the network
        resize_longer(content_img, max(size), "content image")
    tracker = _Tracker(plan, settings.optimizer, callback)
    image: torch.Tensor | None = None
    for scale, (size, n_steps) in enumerate(plan):
        t0 = time.perf_counter()
        content_t = to_tensor(resize_longer(content_img, max(size), "content image"), device).to(dtype)
        style_size = max(MIN_STYLE, round(max(size) * settings.style_scale))
        style_ts = [to_tensor(resize_longer(s, style_size, "style image"), device).to(dtype) for s in style_imgs]
        content_t, style_ts, to_rgb = _apply_colour(settings.colour, content_t, style_ts)
        objective = Objective(net, settings, {}, [], autocast)
        objective.content_targets = content_targets(objective, content_t) if objective.content_layers else {}
        mask_ts = prepare_masks(masks, len(style_ts), size, device) if masks is not None else None
        objective.style_targets = _style_targets(objective, style_ts, settings.style_blend_weights, mask_ts)
        if image is None:
            image = _first_image(settings, start_img, content_t, style_ts, size, device).to(dtype)
            if settings.colour == "luminance":  # the run happens on gray images
                image = colour.gray_as_rgb(colour.luminance(image))
        else:
            image = resize_tensor(image, size)
        tracker.setup_seconds += time.perf_counter() - t0
        outcome = run_scale(objective, image, settings, n_steps, tracker.reporter(scale, to_rgb))
        image = outcome.image
        if outcome.stopped:
            break
    history = tracker.history
    return Result(
        image=to_pil(to_rgb(image)),
        history=history,
        best_step=outcome.best_step + len(history) - outcome.steps_run,  # global index, final scale
        best_loss=outcome.best_total,
        seconds=time.perf_counter() - started,
        seconds_setup=tracker.setup_seconds,
        settings=settings,
        device=str(device),
        precision=precision,
        stopped=outcome.stopped,
        content=content_img,
        styles=style_imgs,
    )


class _Tracker:
    """Turns the loop's per-step reports into history entries, ETAs and :class:`Progress` events."""

    def __init__(self, plan: list[tuple[tuple[int, int], int]], optimizer: str, callback: Callback | None) -> None:
        self.plan, self.optimizer, self.callback = plan, optimizer, callback
        self.total_steps = sum(n for _, n in plan)
        self.history: list[dict[str, Any]] = []
        self.start = time.perf_counter()
        self.setup_seconds = 0.0

    def reporter(self, scale: int, to_rgb: Callable[[torch.Tensor], torch.Tensor]):
        """The ``report`` function :func:`run_scale` calls at ``scale``."""
        size, n_steps = self.plan[scale]
        offset = len(self.history)
        marks = {"start": time.perf_counter() - self.start}

        def report(i: int, losses: dict[str, float], current: torch.Tensor) -> bool:
            now = time.perf_counter() - self.start
            self.history.append({"step": offset + i, **losses, "seconds": round(now, 6), "scale": scale,
                                 "size": list(size), "optimizer": self.optimizer})
            if self.callback is None:
                return False
            # Seconds per pixel-step measured at this scale, leaving out the first step (warm-up) once
            # there are others; the scales to come cost by their pixels.
            if i == 0:
                marks["first"] = now
            measured = (now - marks["first"]) / i if i else now - marks["start"]
            rate = measured / (size[0] * size[1])
            left = (n_steps - i - 1) * size[0] * size[1] + sum(n * w * h for (w, h), n in self.plan[scale + 1:])
            event = Progress(offset + i, self.total_steps, scale, len(self.plan), size, losses, now,
                             left * rate, current, to_rgb)
            return bool(self.callback(event))

        return report


def _inputs(content: ImageLike, style: ImageLike | Sequence[ImageLike], settings: Settings):
    """The content and style images as RGB PIL images, checked."""
    styles_in = list(style) if isinstance(style, (list, tuple)) else [style]
    if not styles_in:
        raise ImageError("at least one style image is needed")
    if settings.style_blend_weights and len(settings.style_blend_weights) != len(styles_in):
        raise SettingsError(
            f"style_blend_weights has {len(settings.style_blend_weights)} values for {len(styles_in)} style images"
        )
    names = [f"style image {i + 1}" if len(styles_in) > 1 else "style image" for i in range(len(styles_in))]
    return from_any(content, "content image"), [from_any(s, n) for s, n in zip(styles_in, names)]


#: Smallest longer side a style image is resized to, whatever the style scale.
MIN_STYLE = 32


def _network(settings: Settings, device: torch.device, precision: str = "fp32") -> VGG19:
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
    return net.to(memory_format=torch.channels_last)


def _apply_colour(mode: str, content: torch.Tensor, styles: list[torch.Tensor]):
    """Colour mode -> (content, styles, to_rgb): the images the network sees and how to get RGB back."""
    if mode == "histogram":
        return content, [colour.match_histogram(s, content) for s in styles], lambda x: x
    if mode == "luminance":
        content_y = colour.luminance(content)
        styles_y = [colour.gray_as_rgb(colour.match_luminance(colour.luminance(s), content_y)) for s in styles]
        original = content

        def to_rgb(x: torch.Tensor) -> torch.Tensor:
            y = colour.luminance(x)
            return colour.combine_luminance(y, resize_tensor(original, (x.shape[-1], x.shape[-2])))

        return colour.gray_as_rgb(content_y), styles_y, to_rgb
    return content, styles, lambda x: x


def _style_targets(
    objective: Objective, styles: list[torch.Tensor], blend: tuple[float, ...], masks: list[torch.Tensor] | None
) -> list[StyleTarget]:
    if not objective.style_layers:
        return []
    weights = list(blend) if blend else [1.0] * len(styles)
    grams = [style_grams(objective, s) for s in styles]
    if masks is not None:
        # Each style rules its own region; its loss is scaled by its blend weight.
        total = sum(weights)
        return [StyleTarget(gm, m, w * len(weights) / total) for gm, m, w in zip(grams, masks, weights)]
    total = sum(weights)
    blended = {layer: sum(w * g[layer] for w, g in zip(weights, grams)) / total for layer in grams[0]}
    return [StyleTarget(blended)]


def _init_image(settings: Settings, init_image: ImageLike | None) -> Image.Image | None:
    if init_image is not None:
        return from_any(init_image, "init image")
    if settings.init in INITS:
        return None
    return open_image(settings.init)  # any other value names an image file


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
        return to_tensor(start_img.resize(size, Image.LANCZOS), device)
    if settings.init == "noise":
        generator = torch.Generator().manual_seed(settings.seed)
        noise = torch.rand((1, 3, h, w), generator=generator) * 255.0
        return noise.to(device)
    if settings.init == "style":
        return resize_tensor(style_ts[0], size)
    return content_t.clone()
