"""Optical flow between video frames, warping along it, and where the flow can be trusted.

A flow is a float32 tensor (1, 2, H, W): for every pixel ``x`` of frame ``a``, the offset
``(dx, dy)`` in pixels to where that point is in frame ``b``, so ``a(x) ~ b(x + flow(x))``. The flow
comes from OpenCV's DIS (dense inverse search; Kroeger et al. 2016), which needs no binaries and
no downloads (``pip install 'painterly[video]'``). Warping is pure torch, differentiable with respect
to the warped image. The reliability mask is Ruder et al.'s (2016, "Artistic style transfer for
videos", section 3.1): pixels where the flow forward and the flow back do not cancel (occlusions and
disocclusions) and pixels on motion boundaries get 0, the rest 1.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = ["dis_flow", "erode", "flow_pair", "reliability", "warp"]

#: Ruder et al.'s thresholds: |w~ + w^|^2 > A (|w~|^2 + |w^|^2) + B marks a disocclusion ...
CONSISTENCY_A, CONSISTENCY_B = 0.01, 0.5
#: ... and |grad u^|^2 + |grad v^|^2 > A |w^|^2 + B a motion boundary.
BOUNDARY_A, BOUNDARY_B = 0.01, 0.002


def _cv2():
    try:
        import cv2
    except ImportError:
        from ..errors import SettingsError

        raise SettingsError(
            "optical flow needs OpenCV: pip install 'painterly[video]' (opencv-python-headless)"
        ) from None
    return cv2


def _gray(image: Image.Image | np.ndarray) -> np.ndarray:
    """An (H, W) uint8 luminance array, the input DIS works on."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("L"))
    arr = np.asarray(image)
    if arr.ndim == 3:  # RGB uint8 -> ITU-R 601 luma, as Pillow computes it
        arr = arr[..., 0] * 0.299 + arr[..., 1] * 0.587 + arr[..., 2] * 0.114
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def dis_flow(a: Image.Image | np.ndarray, b: Image.Image | np.ndarray, preset: str = "medium") -> torch.Tensor:
    """Dense flow from frame ``a`` to frame ``b`` (same size), (1, 2, H, W) float32 in pixels.

    ``preset`` picks DIS's effort (``ultrafast``, ``fast``, ``medium``); every preset is refined
    down to full resolution, since the frames painterly paints are small (a few hundred pixels) and
    half a pixel of error there is a visible smear.
    """
    cv2 = _cv2()
    ga, gb = _gray(a), _gray(b)
    if ga.shape != gb.shape:
        raise ValueError(f"frames differ in size: {ga.shape[::-1]} and {gb.shape[::-1]}")
    presets = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
    dis = cv2.DISOpticalFlow_create(presets[preset])
    dis.setFinestScale(0)  # the presets stop at half or quarter resolution
    flow = dis.calc(ga, gb, None)  # (H, W, 2) float32
    return torch.from_numpy(np.ascontiguousarray(flow)).permute(2, 0, 1).unsqueeze(0)


def flow_pair(
    current: Image.Image | np.ndarray, previous: Image.Image | np.ndarray, preset: str = "medium"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(backward, forward)``: the flow from ``current`` to ``previous`` (what warps the previous
    frame onto the current one) and the flow from ``previous`` to ``current`` (what checks it)."""
    return dis_flow(current, previous, preset), dis_flow(previous, current, preset)


def _grid(flow: torch.Tensor) -> torch.Tensor:
    """grid_sample's (1, H, W, 2) grid in [-1, 1] for the points ``x + flow(x)``."""
    _, _, h, w = flow.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype, device=flow.device),
                            torch.arange(w, dtype=flow.dtype, device=flow.device), indexing="ij")
    gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    return torch.stack([gx, gy], dim=-1)


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``image`` (N, C, H, W) sampled at ``x + flow(x)`` (bilinear; points outside take the border).

    With ``flow`` the flow from the current frame to the previous one, this carries the previous
    frame onto the current one. Differentiable with respect to ``image`` (and ``flow``).
    """
    if image.shape[-2:] != flow.shape[-2:]:
        raise ValueError(f"image {tuple(image.shape[-2:])} and flow {tuple(flow.shape[-2:])} differ in size")
    grid = _grid(flow.to(image.dtype)).expand(image.shape[0], -1, -1, -1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _gradient_sq(flow: torch.Tensor) -> torch.Tensor:
    """|grad u|^2 + |grad v|^2 per pixel, (1, 1, H, W), from central differences (one-sided at the edges)."""
    padded = F.pad(flow, (1, 1, 1, 1), mode="replicate")
    dx = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2
    dy = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2
    return (dx.square() + dy.square()).sum(dim=1, keepdim=True)


def reliability(backward: torch.Tensor, forward: torch.Tensor) -> torch.Tensor:
    """Ruder et al.'s mask ``c`` for the current frame, (1, 1, H, W) float32 of 0s and 1s.

    ``backward`` is the flow current -> previous (``w^``), ``forward`` previous -> current (``w``).
    A pixel gets 0 where the two do not cancel (``w~ = w(x + w^(x))``;
    ``|w~ + w^|^2 > 0.01 (|w~|^2 + |w^|^2) + 0.5``): the point was hidden in the previous frame or
    the flow is wrong there; on a motion boundary (``|grad u^|^2 + |grad v^|^2 > 0.01 |w^|^2 + 0.002``);
    and, beyond the paper, where ``x + w^(x)`` leaves the previous frame (the border warp would smear).
    """
    w_tilde = warp(forward, backward)
    disagree = (w_tilde + backward).square().sum(1, keepdim=True)
    scale = w_tilde.square().sum(1, keepdim=True) + backward.square().sum(1, keepdim=True)
    occluded = disagree > CONSISTENCY_A * scale + CONSISTENCY_B
    boundary = _gradient_sq(backward) > BOUNDARY_A * backward.square().sum(1, keepdim=True) + BOUNDARY_B
    _, _, h, w = backward.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=backward.dtype), torch.arange(w, dtype=backward.dtype),
                            indexing="ij")
    tx, ty = xs + backward[:, 0], ys + backward[:, 1]
    outside = ((tx < 0) | (tx > w - 1) | (ty < 0) | (ty > h - 1)).unsqueeze(1)
    return (~(occluded | boundary | outside)).to(torch.float32)


def erode(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """``mask`` (1, 1, H, W) of 0s and 1s with every 0 grown by ``radius`` px (a square window)."""
    if radius < 1:
        return mask
    return 1.0 - F.max_pool2d(1.0 - mask, 2 * radius + 1, stride=1, padding=radius)


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``flow`` resampled to ``size`` (w, h), its vectors scaled with the frame."""
    w, h = size
    _, _, h0, w0 = flow.shape
    if (h0, w0) == (h, w):
        return flow
    out = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
    return out * torch.tensor([w / w0, h / h0], dtype=flow.dtype).view(1, 2, 1, 1)
