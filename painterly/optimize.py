"""The optimization: an objective over the pixels, TensorFlow's Adam or L-BFGS, one scale's loop.

The image being optimized is RGB in 0..255. The tutorial optimizes the preprocessed image (BGR minus
the ImageNet means) and clips each channel to ``[-mean, 255 - mean]``; that is the same image shifted
and reordered, so the gradients, the Adam trajectory and the clipping are the same here.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .losses import LossTerms, StyleTarget, content_term, gram_matrix, style_term, total_variation
from .network import VGG19
from .settings import Settings


class TFAdam(torch.optim.Optimizer):
    """Adam with TensorFlow's update rule (``tf.train.AdamOptimizer`` / Keras' Adam).

    TensorFlow adds epsilon to the *uncorrected* ``sqrt(v)`` and folds the bias corrections into the
    step size: ``lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t)``; ``x -= lr_t * m / (sqrt(v) + eps)``.
    ``torch.optim.Adam`` adds epsilon after bias correction, which with the tutorial's epsilon of 0.1
    is a different optimizer, so the tutorial needs this one.
    """

    def __init__(self, params, lr: float = 5.0, betas: tuple[float, float] = (0.99, 0.999), eps: float = 0.1):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["t"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                state["t"] += 1
                t, m, v = state["t"], state["m"], state["v"]
                m.mul_(b1).add_(p.grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                lr_t = group["lr"] * math.sqrt(1 - b2**t) / (1 - b1**t)
                p.addcdiv_(m, v.sqrt().add_(group["eps"]), value=-lr_t)
        return loss


def make_optimizer(image: torch.Tensor, settings: Settings) -> torch.optim.Optimizer:
    """The optimizer ``settings.optimizer`` names, over the one tensor ``image``."""
    if settings.optimizer == "adam":
        return TFAdam([image], lr=settings.lr, betas=(settings.adam_beta1, settings.adam_beta2), eps=settings.adam_eps)
    # One function evaluation per step, so steps cost the same for both optimizers.
    return torch.optim.LBFGS(
        [image], lr=settings.lr, max_iter=1, history_size=settings.lbfgs_history, tolerance_grad=0, tolerance_change=0
    )


def layer_weights(layers: tuple[str, ...], weights: tuple[float, ...]) -> dict[str, float]:
    """Per-layer weights: as given, or equal and summing to 1 (the tutorial's 1/n)."""
    if weights:
        return dict(zip(layers, weights))
    return {layer: 1.0 / len(layers) for layer in layers}


class Objective:
    """The weighted style + content + total-variation loss of an image, against fixed targets."""

    def __init__(
        self,
        net: VGG19,
        settings: Settings,
        content_targets: dict[str, torch.Tensor],
        style_targets: list[StyleTarget],
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        self.net = net
        self.content_targets = content_targets
        self.style_targets = style_targets
        self.content_layers = layer_weights(settings.content_layers, settings.content_layer_weights)
        self.style_layers = layer_weights(settings.style_layers, settings.style_layer_weights)
        self.weights = (settings.style_weight, settings.content_weight, settings.tv_weight)
        self.autocast_dtype = autocast_dtype
        self.layers = tuple(dict.fromkeys([*self.content_layers, *self.style_layers]))

    def features(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The network's maps of ``image`` at every layer the objective needs."""
        with self._autocast(image.device):
            return self.net(image.contiguous(memory_format=torch.channels_last), self.layers)

    def __call__(self, image: torch.Tensor) -> LossTerms:
        style_w, content_w, tv_w = self.weights
        feats = self.features(image)
        zero = image.new_zeros(())
        style = style_w * style_term(feats, self.style_targets, self.style_layers) if self.style_layers else zero
        content = content_w * content_term(feats, self.content_targets, self.content_layers) if self.content_layers else zero
        tv = tv_w * total_variation(image) if tv_w else zero
        return LossTerms(style + content + tv, style, content, tv)

    def _autocast(self, device: torch.device):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.autocast_dtype)


@torch.no_grad()
def content_targets(objective: Objective, content: torch.Tensor) -> dict[str, torch.Tensor]:
    """Content feature maps to match, computed once."""
    feats = objective.features(content)
    return {layer: feats[layer].to(content.dtype) for layer in objective.content_layers}


@torch.no_grad()
def style_grams(objective: Objective, style: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Gram matrices of a style image at every style layer, computed once (fp32)."""
    feats = objective.features(style)
    return {layer: gram_matrix(feats[layer], mask) for layer in objective.style_layers}


@dataclass
class ScaleOutcome:
    """What one scale's loop produced."""

    image: torch.Tensor  # (1, 3, H, W) RGB 0..255: the best (or averaged) image
    best_step: int  # index within the scale of the best loss
    best_total: float
    steps_run: int
    stopped: bool  # stopped by the callback or Ctrl-C


StepReport = Callable[[int, dict[str, float], torch.Tensor], bool]


def run_scale(
    objective: Objective, start: torch.Tensor, settings: Settings, steps: int, report: StepReport
) -> ScaleOutcome:
    """Optimize the pixels of ``start`` for up to ``steps`` steps at one size.

    ``report(i, losses, image)`` is called after every step with the losses measured before its
    update and the image after it (clamped); returning True stops the loop. The image with the lowest loss is kept (not the image
    after that step's update, as the tutorial's code does), or the running average when ``ema`` is set.
    """
    image = start.detach().clone().requires_grad_(True)
    optimizer = make_optimizer(image, settings)
    best = {"total": math.inf, "step": -1, "image": image.detach().clone()}
    average = image.detach().clone() if settings.ema else None
    since_improved, reference = 0, math.inf
    step = 0

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        terms = objective(image)
        terms.total.backward()
        losses = terms.floats()
        if losses["total"] < best["total"]:
            best.update(total=losses["total"], step=step, image=image.detach().clone())
        closure.losses = losses  # type: ignore[attr-defined]
        return terms.total

    stopped, done = False, 0
    try:
        for step in range(steps):
            optimizer.step(closure)
            with torch.no_grad():
                image.clamp_(0, 255)
                if average is not None:
                    average.lerp_(image, 1 - settings.ema)
            losses = closure.losses  # type: ignore[attr-defined]
            done += 1  # counted only once the step is whole, so Ctrl-C mid-step is not counted
            if report(step, losses, image.detach()):
                stopped = True
                break
            if not math.isfinite(losses["total"]):
                break
            if settings.patience:
                if losses["total"] < reference * (1 - settings.min_improvement):
                    reference, since_improved = losses["total"], 0
                else:
                    since_improved += 1
                    if since_improved >= settings.patience:
                        break
    except KeyboardInterrupt:
        stopped = True
    result = average if average is not None else best["image"]
    return ScaleOutcome(result, best["step"], best["total"], done, stopped)
