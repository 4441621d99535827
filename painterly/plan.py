"""What a run will do, before any pixel moves: scales, steps, style sizes, memory and cost.

:func:`make_plan` is the one place that turns settings and input sizes into a schedule. The API runs
it, the CLI prints it and computes its ETA from it, the web studio checks it against its limits,
and batch, tiling and video code sum it. Nothing else re-derives scales or style sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ImageError
from .images import MIN_SIDE, fit_size
from .settings import Settings

#: Smallest longer side a style image is resized to, whatever the style scale.
MIN_STYLE = 32

#: Fixed cost of one step, in pixel-equivalents: launching VGG19's layers, the losses and the
#: optimizer cost about as much as this many pixels of convolution (fitted on the CPU: a 128 px step
#: takes about twice what its pixels alone would). Keeps the first, small scales from being priced at
#: nothing in the ETA.
STEP_OVERHEAD_PIXELS = 16_000

#: Bytes a pixel of the optimized image costs at the peak of a step (VGG19 up to block5's maps, kept
#: for the backward pass, and their gradients), measured at 1024-2048 px: 4.9 GiB at 2048 px in bf16.
#: fp32 maps take twice as much, fp64 four times.
BYTES_PER_PIXEL = {"bf16": 800, "fp32": 1600, "fp64": 3200}
#: What a process holds before the first step: torch, the weights, the inputs.
BASE_BYTES = 1_200_000_000


@dataclass(frozen=True)
class ScalePlan:
    """One scale of a run."""

    index: int  # 0-based
    size: tuple[int, int]  # (w, h) of the image optimized at this scale
    steps: int  # planned steps (early stopping may end the scale sooner)
    style_size: int  # longer side the style images are resized to
    history: int  # L-BFGS pairs held at most (0 for Adam)
    peak_bytes: int  # estimated peak memory of a step at this scale
    cost: float  # relative cost of the whole scale: steps x (pixels + per-step overhead)

    @property
    def pixels(self) -> int:
        return self.size[0] * self.size[1]


@dataclass(frozen=True)
class Plan:
    """Every scale of a run, coarse to fine, and what they add up to."""

    scales: tuple[ScalePlan, ...]
    content_size: tuple[int, int]  # (w, h) of the content image as given

    @property
    def size(self) -> tuple[int, int]:
        """(w, h) of the result."""
        return self.scales[-1].size

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.scales)

    @property
    def total_cost(self) -> float:
        return sum(s.cost for s in self.scales)

    @property
    def peak_bytes(self) -> int:
        return max(s.peak_bytes for s in self.scales)

    @property
    def enlarged(self) -> bool:
        """True when the result is larger than the content image (it was upsampled)."""
        return max(self.size) > max(self.content_size)

    def cost_done(self, scale: int, steps_done: int) -> float:
        """Cost of the scales before ``scale`` plus ``steps_done`` steps of ``scale``."""
        done = sum(s.cost for s in self.scales[:scale])
        current = self.scales[scale]
        return done + current.cost * min(steps_done, current.steps) / max(current.steps, 1)

    def seconds(self, seconds_per_cost: float) -> float:
        """The whole run's time at ``seconds_per_cost``."""
        return self.total_cost * seconds_per_cost

    def describe(self) -> str:
        """One line per scale, for a terminal: size, steps, style size, memory."""
        lines = []
        for s in self.scales:
            lines.append(f"scale {s.index + 1}/{len(self.scales)}: {s.size[0]}x{s.size[1]}, up to {s.steps} steps, "
                         f"style {s.style_size} px, about {s.peak_bytes / 2**30:.1f} GiB")
        return "\n".join(lines)


def step_cost(size: tuple[int, int]) -> float:
    """Relative cost of one step at ``size`` (w, h)."""
    return size[0] * size[1] + STEP_OVERHEAD_PIXELS


def style_size(longer: int, style_scale: float) -> int:
    """Longer side of the style images for a result whose longer side is ``longer``."""
    return max(MIN_STYLE, round(longer * style_scale))


def peak_bytes(size: tuple[int, int], precision: str, history: int) -> int:
    """Estimated peak memory of one step at ``size`` (w, h), with ``history`` L-BFGS pairs held."""
    pixels = size[0] * size[1]
    per_pixel = BYTES_PER_PIXEL.get(precision, BYTES_PER_PIXEL["fp32"])
    pairs = 2 * history * 3 * pixels * 4  # two float32 image-sized vectors per pair
    return BASE_BYTES + per_pixel * pixels + pairs


def make_plan(settings: Settings, content_size: tuple[int, int], precision: str = "fp32") -> Plan:
    """The plan of a run of ``settings`` on a content image of ``content_size`` (w, h).

    ``precision`` is the one the run will use (``bf16``, ``fp32`` or ``fp64``; see
    :func:`painterly.devices.pick_precision`), for the memory estimate. Raises :class:`ImageError`
    if the content would be too thin for the network at some scale.
    """
    scales = []
    for index, (longer, steps) in enumerate(zip(settings.scale_sizes(), settings.scale_steps())):
        size = fit_size(content_size, longer)
        if min(size) < MIN_SIDE:
            raise ImageError(
                f"the content image would be {size[0]}x{size[1]} px at {longer} px: too thin for the network "
                f"(each side needs {MIN_SIDE} px); use a larger size or a less elongated image"
            )
        history = 0 if settings.optimizer == "adam" else max(1, min(settings.lbfgs_history, steps - 1))
        scales.append(ScalePlan(index, size, steps, style_size(longer, settings.style_scale), history,
                                peak_bytes(size, precision, history), steps * step_cost(size)))
    return Plan(tuple(scales), tuple(content_size))  # type: ignore[arg-type]
