"""The losses of Gatys style transfer, as pure functions, and the objective that combines them.

Shapes: feature maps are (N, C, H, W); Gram matrices (N, C, C); images (N, 3, H, W) RGB 0..255.
Everything is accumulated in float32 even when the network ran in bf16 (float64 stays float64).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
from torch.nn import functional as F


def _wide_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; everything else is accumulated in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _wide(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32, or float64 if it already is: losses never accumulate in half precision."""
    return t.to(_wide_dtype(t.dtype))


#: Positions per slice of the Gram's float32 forward on the CPU (4096 x 64 channels: 1 MiB).
_GRAM_SLICE = 4096


class _Gram(torch.autograd.Function):
    """``x^T (x * weights) / norm - target`` of positions-by-channels maps ``x`` (N, H*W, C), accumulated
    in float32, with a one-matmul backward in ``x``'s dtype. ``target`` may be None (the Gram itself).

    Autograd of ``x^T x`` would run two matmuls in float32 for the gradient; the Gram is symmetric in
    its two uses of ``x``, so one matmul ``x @ (dG + dG^T)`` gives it. That matmul runs in the
    features' own precision: under bf16 autocast the gradient flowing back into the network is bf16
    anyway, so it loses nothing and runs at bf16 speed.

    The forward must keep the digits of ``G - A``, a small difference of large numbers near
    convergence. For float32 (and float64) maps it is a float32 Gram and a subtraction. For bf16 maps
    on the CPU it is one bf16 matmul that starts its float32 accumulator at ``-A`` (``A`` rounded to
    bf16; the rounding is added back in float32): the products of bf16 numbers are exact in float32,
    so only the finished difference is rounded, to bf16 precision (2-3 digits) of the difference
    itself, not of ``G``. That is twice as fast as a float32 Gram and needs no float32 copy of the
    maps. Masked Grams, and bf16 on GPUs (where this has not been measured), take the float32 Gram.

    Positions come first because the network's maps are channels-last: ``(N, H*W, C)`` is then a view
    of them, not a copy, and the gradient goes back to the network channels-last too.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weights: torch.Tensor | None, norm: torch.Tensor | float,
                target: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weights)
        ctx.norm = norm
        n, positions, c = x.shape
        if target is not None and weights is None and x.dtype != _wide_dtype(x.dtype) and x.device.type == "cpu":
            start = target.to(x.dtype).expand(n, c, c)
            # weights is None: norm is the float number of positions (see _gram)
            low = torch.baddbmm(start, x.transpose(1, 2), x, beta=-1.0, alpha=1.0 / cast(float, norm))
            return low.to(target.dtype) + (start.to(target.dtype) - target)
        gram = torch.zeros(n, c, c, dtype=_wide_dtype(x.dtype), device=x.device)
        # On the CPU, in slices of positions: each slice's float32 copy stays in cache, where a copy of
        # the whole map would go out to memory and back (block1 at 512 px: 35 -> 14 ms on 2 cores).
        step = _GRAM_SLICE if x.device.type == "cpu" else positions
        for first in range(0, positions, step):
            part = _wide(x[:, first:first + step])
            right = part if weights is None else part * weights[:, first:first + step].to(part.dtype)
            gram.baddbmm_(part.transpose(1, 2), right)
        gram = gram / norm
        return gram if target is None else gram - target

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weights = ctx.saved_tensors
        sym = ((grad + grad.transpose(1, 2)) / ctx.norm).to(x.dtype)  # scaled while still wide
        out = x @ sym
        if weights is not None:
            out = out * weights.to(x.dtype)
        return out, None, None, None


def _gram(features: torch.Tensor, mask: torch.Tensor | None, target: torch.Tensor | None) -> torch.Tensor:
    """``_Gram`` of (N, C, H, W) maps read as positions x channels, with the mask's weights and norm."""
    n, c, h, w = features.shape
    x = features.permute(0, 2, 3, 1).reshape(n, h * w, c)  # a view of channels-last maps
    if mask is None:
        return _Gram.apply(x, None, float(h * w), target)
    m = mask.detach().reshape(n, h * w, 1)
    norm = _wide(m).sum(dim=1, keepdim=True).clamp_min(1e-8)
    return _Gram.apply(x, m, norm, target)


def gram_matrix(features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Feature correlations ``A^T A / (H*W)`` of (N, C, H, W) maps -> (N, C, C), as the tutorial.

    With ``mask`` (N, 1, H, W) in 0..1, positions are weighted by the mask and the sum is divided by
    the mask's total instead of H*W, so the statistics come only from the masked region.
    The result is float32 (float64 for float64 maps) whatever the maps' precision.
    """
    return _gram(features, mask, None)


def gram_difference(features: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``gram_matrix(features, mask) - target`` (float32, or float64), computed so that the difference
    keeps its digits when the maps are bf16 (see :class:`_Gram`)."""
    return _gram(features, mask, target.detach())


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of two feature maps (scalar)."""
    return F.mse_loss(_wide(features), _wide(target))


def style_loss(gram: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of two Gram matrices over their C x C entries (scalar)."""
    return F.mse_loss(gram, target)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between horizontally and vertically neighbouring pixels (scalar).

    A mean, not a sum, so that one weight behaves the same at every image size.
    """
    dx = image[..., :, 1:] - image[..., :, :-1]
    dy = image[..., 1:, :] - image[..., :-1, :]
    return _wide(dx).pow(2).mean() + _wide(dy).pow(2).mean()


@dataclass(frozen=True)
class StyleTarget:
    """What one region of the result should look like: a Gram per layer, where (mask), how much."""

    grams: dict[str, torch.Tensor]  # layer -> (1, C, C)
    mask: torch.Tensor | None = None  # (1, 1, H, W) at the image's size, 0..1; None: everywhere
    weight: float = 1.0


def resize_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Area-average a (1, 1, H, W) mask to the spatial size of the (N, C, h, w) map ``like``."""
    if mask.shape[-2:] == like.shape[-2:]:
        return mask
    return F.adaptive_avg_pool2d(mask, cast("tuple[int, int]", like.shape[-2:]))


def _wide_zero(features: dict[str, torch.Tensor]) -> torch.Tensor:
    """A float32 (float64) zero on the maps' device to start a sum of losses, made without converting a map."""
    first = next(iter(features.values()))
    return torch.zeros((), dtype=_wide_dtype(first.dtype), device=first.device)


def style_term(
    features: dict[str, torch.Tensor],
    targets: list[StyleTarget],
    layer_weights: dict[str, float],
    normalized: bool = False,
) -> torch.Tensor:
    """Weighted sum over layers (and regions) of the Gram losses against ``targets``.

    Each layer's loss is the mean squared difference of the Grams (the tutorial's), or with
    ``normalized`` the squared Frobenius distance relative to the target's, ``|G - A|^2 / |A|^2``:
    scale-free, so a layer weight means the same for shallow and deep layers.
    """
    total = _wide_zero(features)
    for layer, weight in layer_weights.items():
        f = features[layer]
        for target in targets:
            mask = None if target.mask is None else resize_mask(target.mask, f)
            difference = gram_difference(f, target.grams[layer], mask)
            if normalized:
                loss = difference.pow(2).sum() / target.grams[layer].pow(2).sum().clamp_min(1e-12)
            else:
                loss = difference.pow(2).mean()
            total = total + weight * target.weight * loss
    return total


class _Moments(torch.autograd.Function):
    """Mean (C,) and covariance (C, C) of positions-by-channels ``x`` (P, C), with a one-matmul backward.

    Autograd of ``c^T c`` (``c = x - mean``) runs two matmuls for the gradient, one per use of ``c``,
    then takes the mean of the gradient over the positions back out. The covariance is symmetric in
    its two uses, so ``c (dS + dS^T) / P`` is the whole gradient through it, and as ``c``'s columns sum
    to zero that gradient has no mean to take out. The forward is the plain one. At 512 px in fp32
    the four style layers' moments, forward and backward, take 156 ms where autograd's took 251 (86
    and 139 at block1; a 2-core AVX2 CPU): a twentieth of a step saved."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = x.mean(dim=0)
        centred = x - mean
        ctx.save_for_backward(centred)
        return mean, centred.T @ centred / x.shape[0]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_mean: torch.Tensor, grad_cov: torch.Tensor) -> torch.Tensor:
        # An output that was not used comes back as zeros (autograd materializes them).
        (centred,) = ctx.saved_tensors
        positions = centred.shape[0]
        return centred @ ((grad_cov + grad_cov.T) / positions) + grad_mean / positions


def feature_moments(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (C,) and covariance (C, C) over the positions of (1, C, H, W) maps, float32 (float64)."""
    _, c, h, w = features.shape
    return _Moments.apply(_wide(features.permute(0, 2, 3, 1).reshape(h * w, c)))


def moment_targets(features: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """:func:`feature_moments` of every map in ``features``."""
    return {layer: feature_moments(f) for layer, f in features.items()}


def symmetric_eigen(matrix: torch.Tensor, vectors: bool):
    """``eigh`` (or ``eigvalsh``) of a covariance-like matrix, in float64 if its own precision fails to
    converge (covariances of small maps are rank deficient: block5 of a 64 px image has a handful of
    positions for 512 channels, and LAPACK's float32 solvers can fail on many repeated zero
    eigenvalues), and with a tiny ridge on the diagonal only if that fails too. A ridge is not added
    otherwise: it would lift the zero eigenvalues into the range where the square root's gradient
    is huge and let the null space drive the optimization."""
    solve = torch.linalg.eigh if vectors else torch.linalg.eigvalsh
    wide = matrix.double()
    for attempt in (lambda: solve(matrix), lambda: solve(wide),
                    lambda: solve(wide + 1e-9 * wide.diagonal().mean().abs() * torch.eye(len(wide), dtype=wide.dtype,
                                                                                           device=wide.device))):
        try:
            out = attempt()
        except torch.linalg.LinAlgError:
            continue
        return tuple(t.to(matrix.dtype) for t in out) if vectors else out.to(matrix.dtype)
    raise torch.linalg.LinAlgError("the eigen-solve of a feature covariance failed even in float64")


def sqrtm_psd(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a positive semi-definite (C, C) matrix."""
    values, vectors = symmetric_eigen(matrix, vectors=True)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def wasserstein_term(
    features: dict[str, torch.Tensor],
    targets: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    layer_weights: dict[str, float],
) -> torch.Tensor:
    """``targets``: layer -> (mean, covariance, its square root :func:`sqrtm_psd`).

    Weighted sum over layers of the Wasserstein-2 distance between Gaussians fitted to the maps
    and to the style's, relative to the target's second moment (scale-free like the normalized Gram):

    ``(|m - m_t|^2 + tr(S + S_t - 2 (S_t^1/2 S S_t^1/2)^1/2)) / (|m_t|^2 + tr S_t)``.
    """
    total = _wide_zero(features)
    for layer, weight in layer_weights.items():
        mean, cov = feature_moments(features[layer])
        t_mean, t_cov, root = targets[layer]
        cross = symmetric_eigen(root @ cov @ root, vectors=False).clamp_min(1e-12).sqrt().sum()
        distance = (mean - t_mean).pow(2).sum() + cov.trace() + t_cov.trace() - 2 * cross
        total = total + weight * distance / (t_mean.pow(2).sum() + t_cov.trace()).clamp_min(1e-12)
    return total


def content_term(
    features: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    layer_weights: dict[str, float],
    normalized: bool = False,
) -> torch.Tensor:
    """Weighted sum over layers of the content losses: mean squared differences, or with
    ``normalized`` the squared distance relative to the target's, ``|F - P|^2 / |P|^2``."""
    total = _wide_zero(features)
    for layer, weight in layer_weights.items():
        loss = content_loss(features[layer], targets[layer])
        if normalized:
            loss = loss / _wide(targets[layer]).pow(2).mean().clamp_min(1e-12)
        total = total + weight * loss
    return total


#: Most positions of a layer's map that the nearest-neighbour style term compares, on each side: a map
#: with more is average-pooled by a whole factor until it fits (see :func:`pooled_positions`).
NEAREST_POSITIONS = 4096
#: Output positions matched at once (a chunk's similarity matrix is chunk x style positions).
_MATCH_CHUNK = 1024


def pooled_positions(features: torch.Tensor, factor: int) -> torch.Tensor:
    """(1, C, H, W) maps average-pooled by ``factor`` (windows of factor x factor positions, the last ones
    partial) and read as positions x channels, (P, C), in float32 (float64)."""
    _, c, _, _ = features.shape
    x = F.avg_pool2d(_wide(features), factor, factor, ceil_mode=True) if factor > 1 else _wide(features)
    return x.permute(0, 2, 3, 1).reshape(-1, c)


def pooling_factor(height: int, width: int, most: int = NEAREST_POSITIONS) -> int:
    """The smallest whole factor that pools an ``height`` x ``width`` map to at most ``most`` positions."""
    factor = 1
    while math.ceil(height / factor) * math.ceil(width / factor) > most:
        factor += 1
    return factor


def nearest_matches(out: torch.Tensor, style: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """For each row of ``out`` (P, C), the index of the row of ``style`` (Q, C) nearest to it under the
    cosine distance of both centred on ``centre`` (C,) (NNST's centred cosine), (P,) long."""
    candidates = F.normalize(style - centre, dim=1)
    found = [(F.normalize(part - centre, dim=1) @ candidates.T).argmax(dim=1)
             for part in out.split(_MATCH_CHUNK)]
    return torch.cat(found)


def nearest_distance(out: torch.Tensor, targets: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """Mean centred cosine distance ``1 - cos(out - centre, target - centre)`` of matched rows (scalar)."""
    return (1 - F.cosine_similarity(out - centre, targets - centre, dim=1)).mean()
