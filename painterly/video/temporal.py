"""The temporal loss of Ruder et al. (2016) as a named loss term, and the temporal-error figure.

A video frame is painted with one more term in its objective: the masked mean squared difference
between the image being optimized and the previous *output* frame warped onto it along the optical
flow, ``(1/D) sum_x c(x) (image(x) - warped(x))^2`` with ``D = 3 H W``. The warped output is a
fixed target (no gradient flows into the previous frame), the image is not: the gradient
``2 c (image - warped) / D`` pulls every reliable pixel toward where the painting already was.
(cysmith/neural-style-tf builds the same loss from a NumPy array, so its gradient is zero.)

Long-term terms (section 3.2 of the paper) compare with several earlier outputs at once; each pixel
is held only to the nearest earlier frame that sees it, so that a point hidden for a while is held
to where it was last seen rather than to every copy of it. :func:`long_term_masks` makes those masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["TemporalTerm", "long_term_masks", "temporal_error"]


@dataclass(frozen=True, eq=False)
class TemporalTerm:
    """``weight * (1/D) sum c (image - target)^2``: a pixel term for :func:`painterly.stylize`'s ``extra_terms``.

    ``target``: the earlier output warped onto this frame, (1, 3, H, W) RGB 0..255;
    ``mask``: ``c``, (1, 1, H, W) in 0..1 (see :func:`painterly.video.flow.reliability`).
    """

    target: torch.Tensor
    mask: torch.Tensor
    weight: float = 1.0
    name: str = "temporal"
    layers: tuple[str, ...] = ()  # a pixel term: it reads no network features

    def __post_init__(self) -> None:
        if self.target.dim() != 4 or self.target.shape[:2] != (1, 3):
            raise ValueError(f"target must be (1, 3, H, W), got {tuple(self.target.shape)}")
        if self.mask.shape != (1, 1, *self.target.shape[-2:]):
            raise ValueError(f"mask must be (1, 1, H, W) like the target, got {tuple(self.mask.shape)}")
        object.__setattr__(self, "target", self.target.detach())
        object.__setattr__(self, "mask", self.mask.detach())

    def __call__(self, image: torch.Tensor, features: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The unweighted loss of ``image`` (1, 3, H, W) RGB 0..255: a scalar, float32 at least."""
        wide = torch.promote_types(image.dtype, torch.float32)  # bf16 images are summed in float32
        target, mask = self.target.to(image.device, wide), self.mask.to(image.device, wide)
        diff = image.to(wide) - target
        return (mask * diff.square()).sum() / diff.numel()

    def for_size(self, size: tuple[int, int]) -> TemporalTerm:
        """The term at another scale ``size`` (w, h) of a coarse-to-fine run."""
        w, h = size
        if self.target.shape[-2:] == (h, w):
            return self
        target = F.interpolate(self.target, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        # Bilinear pooling of the 0/1 mask keeps a coarse pixel's share of reliable fine pixels.
        mask = F.interpolate(self.mask, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        return TemporalTerm(target, mask.clamp(0, 1), self.weight, self.name)


def long_term_masks(masks: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Ruder et al.'s long-term masks from the plain ones, nearest earlier frame first.

    ``masks[k]`` is the reliability of the flow from this frame to its ``k``-th earlier neighbour in
    use (t-1, t-2, t-4, ...). Each pixel keeps its weight only in the nearest frame where it is
    reliable: ``c_k = max(m_k - sum_{l<k} m_l, 0)``.
    """
    if not masks:
        return []
    out: list[torch.Tensor] = []
    covered = torch.zeros_like(masks[0])
    for m in masks:
        out.append((m - covered).clamp(min=0))
        covered = covered + m
    return out


def temporal_error(frame: torch.Tensor, warped_previous: torch.Tensor, mask: torch.Tensor) -> float:
    """Masked mean squared difference between a frame and its warped predecessor (levels 0..255, squared).

    ``sum c (frame - warped)^2 / (3 sum c)``: over the pixels the flow can be trusted, how far the
    frame moved from where the motion says its predecessor's paint should be. 0 when no pixel is
    reliable. Lower is steadier; the same figure for the content frames is the floor flow error sets.
    """
    weight = mask.sum() * frame.shape[1]
    if weight <= 0:
        return 0.0
    return float((mask * (frame.float() - warped_previous.float()).square()).sum() / weight)
