"""What a run returns and reports: the :class:`Result` of :func:`~painterly.engine.run.stylize`, and the
:class:`Progress` event its callback receives after every step."""

from __future__ import annotations

import io
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from .images import to_pil
from .plan import Plan
from .settings import Machine, Settings


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
            "versions": versions(),
        }

    def _repr_png_(self) -> bytes:
        """Jupyter shows the result inline."""
        buffer = io.BytesIO()
        self.image.save(buffer, format="PNG")
        return buffer.getvalue()


def versions() -> dict[str, str]:
    """The versions a record names: painterly's, torch's and Python's."""
    from ..version import __version__

    return {"painterly": __version__, "torch": torch.__version__, "python": platform.python_version()}
