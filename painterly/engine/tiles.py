"""Exact tiled evaluation: the loss and gradient of a whole image, computed over tiles that fit in memory.

Every loss term painterly builds is a function of sums over the positions of the network's maps: a
Gram matrix is the sum of ``f f^T`` divided by a count, the mean and covariance come from ``sum f``
and ``sum f f^T``, the content loss is a sum of squared differences. So a step over tiles can give
exactly the untiled gradient, in two passes:

1. each tile, cut with a halo that covers the network's receptive field, runs forward without
   gradients; the maps of its *interior* (the positions it owns) are exact, and their sums are
   added into the whole image's statistics;
2. the loss is computed from the whole image's statistics, and its gradient with respect to each
   statistic (for a Gram term, ``dL/dS``, the fixed global ``G - A`` in effect); each tile then runs
   forward again with gradients, and backpropagates the linear function ``<dL/dS, S_tile>`` of its
   interior maps; its input gradient is added into the whole image's gradient.

Tile offsets are multiples of the deepest pooling stride, so a tile's pooling windows are the
image's; the only zero padding a tile sees inside its halo is at the image's true border, as
untiled. Means use the whole image's counts. Terms on the pixels alone (total variation) are
evaluated on the whole image, so they are exact across tile edges.

:class:`TiledGradient` is what :func:`painterly.engine.optimize.run_scale` calls instead of the untiled
forward and backward; :class:`TiledMeasure` measures the targets (content maps, style Grams and
moments) tile by tile, for :func:`painterly.engine.objective.build_objective`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch

from ..errors import SettingsError
from .losses import resize_mask, symmetric_eigen
from .network import CONV_LAYERS
from .objective import ContentTerm, LossTerms, Measure, MomentTerm, Objective, StyleTerm, Term, TVTerm

#: Tile offsets and interior sizes are multiples of this: VGG19's stride at block5 (four 2x2 pools).
ALIGN = 16


def stride(layer: str) -> int:
    """How many input pixels one position of ``layer``'s map steps over (1 in block1, 16 in block5)."""
    return 2 ** (int(layer[5]) - 1)


def halo_for(layers: Sequence[str]) -> int:
    """Input pixels a tile needs on each side so that the maps of its interior at ``layers`` are
    exactly the whole image's: half the receptive field of the deepest layer, rounded up to ``ALIGN``.
    (block5_conv1: a field of 156 px, a halo of 80.)"""
    deepest = max(CONV_LAYERS.index(layer) for layer in layers)
    field, jump = 1, 1
    for name in CONV_LAYERS[: deepest + 1]:
        if name.endswith("_conv1") and name != "block1_conv1":
            field += jump  # a 2x2 pool, stride 2
            jump *= 2
        field += 2 * jump  # a 3x3 convolution
    return ALIGN * math.ceil(field / 2 / ALIGN)


@dataclass(frozen=True)
class Tile:
    """One tile: the rows and columns whose maps it owns (``inner``) and those it feeds to the network
    (``outer``: the interior and its halo, clipped to the image). Each is (y0, y1, x0, x1)."""

    inner: tuple[int, int, int, int]
    outer: tuple[int, int, int, int]


def _cuts(length: int, tile: int) -> list[tuple[int, int]]:
    """[start, end) spans of at most ``tile`` (a multiple of ALIGN) covering 0..length, evenly sized."""
    count = max(1, math.ceil(length / tile))
    step = ALIGN * math.ceil(length / count / ALIGN)
    starts = list(range(0, length, step))
    return [(a, min(length, a + step)) for a in starts]


def make_tiles(height: int, width: int, tile: int, halo: int) -> list[Tile]:
    """Tiles of at most ``tile`` x ``tile`` interior pixels covering an image, each with ``halo``."""
    if tile < ALIGN or tile % ALIGN:
        raise SettingsError(f"tile_size must be a multiple of {ALIGN} (got {tile})")
    tiles = []
    for y0, y1 in _cuts(height, tile):
        for x0, x1 in _cuts(width, tile):
            outer = (max(0, y0 - halo), min(height, y1 + halo), max(0, x0 - halo), min(width, x1 + halo))
            tiles.append(Tile((y0, y1, x0, x1), outer))
    return tiles


def _span(layer: str, tile: Tile) -> tuple[slice, slice, slice, slice]:
    """Rows and columns of ``tile``'s interior in its own map of ``layer``, then in the whole image's.

    Offsets are multiples of ALIGN, so they divide exactly; an interior that reaches the image's end
    ends where the whole map does (``H // stride``: the pools round down), and so does the tile's map.
    """
    s = stride(layer)
    y0, y1, x0, x1 = tile.inner
    oy, _, ox, _ = tile.outer
    rows, cols = slice(y0 // s, y1 // s), slice(x0 // s, x1 // s)
    local_rows = slice(rows.start - oy // s, rows.stop - oy // s)
    local_cols = slice(cols.start - ox // s, cols.stop - ox // s)
    return local_rows, local_cols, rows, cols


def map_size(layer: str, height: int, width: int) -> tuple[int, int]:
    """Spatial size of ``layer``'s map for an image of ``height`` x ``width`` (pools round down)."""
    s = stride(layer)
    return height // s, width // s


def _positions(x: torch.Tensor) -> torch.Tensor:
    """(1, C, h, w) maps as (h*w, C) positions by channels (a view of channels-last maps)."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def _second_moment(x: torch.Tensor, weights: torch.Tensor | None = None, shift: torch.Tensor | None = None):
    """``sum_p w_p (f_p - shift)(f_p - shift)^T`` and ``sum_p w_p (f_p - shift)`` over (P, C) positions,
    accumulated in float32 (float64 stays float64) in slices, without gradients."""
    wide = torch.float64 if x.dtype == torch.float64 else torch.float32
    c = x.shape[1]
    outer = torch.zeros(c, c, dtype=wide, device=x.device)
    first = torch.zeros(c, dtype=wide, device=x.device)
    for start in range(0, x.shape[0], 8192):
        part = x[start:start + 8192].to(wide)
        if shift is not None:
            part = part - shift
        right = part if weights is None else part * weights[start:start + 8192].to(wide)
        outer.addmm_(part.T, right)
        first += right.sum(dim=0)
    return outer, first


class _Pairing(torch.autograd.Function):
    """``<g, sum_p w_p (f_p - shift)(f_p - shift)^T> + <h, sum_p w_p (f_p - shift)>`` as a function of the
    (P, C) positions ``x``, for its gradient only: the forward returns zero (the value is known from
    the first pass); the backward is one matmul in ``x``'s own precision, as the Gram's."""

    @staticmethod
    def forward(ctx, x, weights, shift, g, h):  # type: ignore[override]
        ctx.save_for_backward(x, weights, shift, g, h)
        return x.new_zeros((), dtype=torch.float32 if x.dtype != torch.float64 else torch.float64)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        x, weights, shift, g, h = ctx.saved_tensors
        sym = (g + g.T) * grad
        wide = sym.dtype
        out = x @ sym.to(x.dtype)
        if shift is not None:
            out = out - (shift.to(wide) @ sym).to(x.dtype)
        if h is not None:
            out = out + (h * grad).to(x.dtype)
        if weights is not None:
            out = out * weights.to(x.dtype)
        return out, None, None, None, None


# -- each term, as statistics ------------------------------------------------------------------

class Adapter:
    """A term in tiled form: the sums it needs from each tile, its value from the whole image's sums,
    and the linear function of a tile's maps whose gradient is the term's."""

    layers: tuple[str, ...] = ()

    def stats(self, maps: dict[str, torch.Tensor], tile: Tile) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def loss(self, totals: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def pairing(self, maps: dict[str, torch.Tensor], tile: Tile, grads: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def crop(self, top: int, left: int, bottom: int, right: int) -> Adapter:
        """This term for the tiles of the region rows ``top:bottom``, columns ``left:right`` of the
        image, given in the region's own coordinates (``top`` and ``left`` multiples of ALIGN): its
        ``stats`` and ``pairing``, with the whole image's counts and norms (its ``loss`` is the
        whole image's to take)."""
        return self


def _mean_square(t: torch.Tensor) -> float:
    """The mean of ``t``'s squares in float64, a few channels at a time (no float64 copy of it all)."""
    total = sum(float(t[:, i:i + 16].double().pow(2).sum()) for i in range(0, t.shape[1], 16))
    return total / t.numel()


class _ContentAdapter(Adapter):
    def __init__(self, term: ContentTerm, size: tuple[int, int]) -> None:
        self.term, self.size = term, size
        self.layers = term.layers
        self.norms = {layer: _mean_square(t) for layer, t in term.targets.items()}

    def _differences(self, maps: dict[str, torch.Tensor], tile: Tile) -> Iterator[tuple[str, torch.Tensor]]:
        for layer in self.layers:
            target = self.term.targets[layer]
            local_r, local_c, rows, cols = _span(layer, tile)
            f = maps[layer][..., local_r, local_c]
            wide = torch.float64 if f.dtype == torch.float64 else torch.float32
            yield layer, f.to(wide) - target[..., rows, cols].to(wide)

    def stats(self, maps, tile):
        return {layer: d.pow(2).sum() for layer, d in self._differences(maps, tile)}

    def loss(self, totals):
        total: Any = 0.0
        for layer, weight in self.term.layer_weights.items():
            value = totals[layer] / self.term.targets[layer].numel()
            if self.term.normalized:
                value = value / max(self.norms[layer], 1e-12)
            total = total + weight * value
        return cast(torch.Tensor, total)

    def crop(self, top, left, bottom, right):
        out = copy.copy(self)
        out.term = dataclasses.replace(self.term, targets={
            layer: t[..., top // stride(layer):bottom // stride(layer), left // stride(layer):right // stride(layer)]
            .clone() for layer, t in self.term.targets.items()})
        return out

    def pairing(self, maps, tile, grads):
        total: Any = 0.0
        for layer, d in self._differences(maps, tile):
            if layer in grads:
                total = total + (grads[layer] * d.pow(2)).sum()
        return cast(torch.Tensor, total)


class _StyleAdapter(Adapter):
    """Gram terms (the tutorial's and the relative one), masked or not."""

    def __init__(self, term: StyleTerm, size: tuple[int, int]) -> None:
        self.term = term
        self.layers = term.layers
        h, w = size
        self.masks: dict[tuple[str, int], torch.Tensor] = {}
        self.counts: dict[tuple[str, int], torch.Tensor | float] = {}
        for layer in self.layers:
            mh, mw = map_size(layer, h, w)
            for i, target in enumerate(term.targets):
                if target.mask is None:
                    self.counts[layer, i] = float(mh * mw)
                else:
                    like = torch.empty(1, 1, mh, mw)
                    mask = resize_mask(target.mask.float(), like)
                    self.masks[layer, i] = mask
                    self.counts[layer, i] = mask.double().sum().clamp_min(1e-8).item()

    def _weights(self, layer: str, i: int, tile: Tile) -> torch.Tensor | None:
        if (layer, i) not in self.masks:
            return None
        _, _, rows, cols = _span(layer, tile)
        return _positions(self.masks[layer, i][..., rows, cols])

    def _each(self, maps, tile):
        for layer in self.layers:
            local_r, local_c, _, _ = _span(layer, tile)
            x = _positions(maps[layer][..., local_r, local_c])
            for i in range(len(self.term.targets)):
                yield layer, i, x, self._weights(layer, i, tile)

    def stats(self, maps, tile):
        return {f"{layer}/{i}": _second_moment(x, w)[0] for layer, i, x, w in self._each(maps, tile)}

    def loss(self, totals):
        total: Any = 0.0
        for layer, weight in self.term.layer_weights.items():
            for i, target in enumerate(self.term.targets):
                a = target.grams[layer][0]
                gram = totals[f"{layer}/{i}"] / self.counts[layer, i]
                d = gram - a.to(gram.dtype)
                value = d.pow(2).sum() / a.pow(2).sum().clamp_min(1e-12) if self.term.normalized else d.pow(2).mean()
                total = total + weight * target.weight * value
        return cast(torch.Tensor, total)

    def crop(self, top, left, bottom, right):
        out = copy.copy(self)
        targets = [dataclasses.replace(t, mask=None) for t in self.term.targets]  # the masks below are cut
        out.term = dataclasses.replace(self.term, targets=targets)
        out.masks = {(layer, i): m[..., top // stride(layer):bottom // stride(layer),
                                   left // stride(layer):right // stride(layer)].clone()
                     for (layer, i), m in self.masks.items()}
        return out

    def pairing(self, maps, tile, grads):
        total: Any = 0.0
        for layer, i, x, w in self._each(maps, tile):
            g = grads.get(f"{layer}/{i}")
            if g is not None:
                total = total + _Pairing.apply(x, w, None, g, None)
        return cast(torch.Tensor, total)


class _MomentAdapter(Adapter):
    """The mean-and-covariance (Wasserstein-2) term; sums are taken about the style's mean, so the
    covariance keeps its digits in float32."""

    def __init__(self, term: MomentTerm, size: tuple[int, int]) -> None:
        self.term = term
        self.layers = term.layers
        self.counts = {layer: float(math.prod(map_size(layer, *size))) for layer in self.layers}

    def _each(self, maps, tile):
        for layer in self.layers:
            local_r, local_c, _, _ = _span(layer, tile)
            yield layer, _positions(maps[layer][..., local_r, local_c])

    def stats(self, maps, tile):
        out = {}
        for layer, x in self._each(maps, tile):
            shift = self.term.targets[layer][0].to(torch.float64 if x.dtype == torch.float64 else torch.float32)
            outer, first = _second_moment(x, None, shift)
            out[f"{layer}/outer"], out[f"{layer}/first"] = outer, first
        return out

    def loss(self, totals):
        total: Any = 0.0
        for layer, weight in self.term.layer_weights.items():
            t_mean, t_cov, root = self.term.targets[layer]
            n = self.counts[layer]
            offset = totals[f"{layer}/first"] / n  # mean minus the style's mean
            cov = totals[f"{layer}/outer"] / n - torch.outer(offset, offset)
            cross = symmetric_eigen(root @ cov @ root, vectors=False).clamp_min(1e-12).sqrt().sum()
            distance = offset.pow(2).sum() + cov.trace() + t_cov.trace() - 2 * cross
            total = total + weight * distance / (t_mean.pow(2).sum() + t_cov.trace()).clamp_min(1e-12)
        return cast(torch.Tensor, total)

    def pairing(self, maps, tile, grads):
        total: Any = 0.0
        for layer, x in self._each(maps, tile):
            g, h = grads.get(f"{layer}/outer"), grads.get(f"{layer}/first")
            if g is None:
                continue
            shift = self.term.targets[layer][0].to(g.dtype)
            total = total + _Pairing.apply(x, None, shift, g, h if h is not None else torch.zeros_like(shift))
        return cast(torch.Tensor, total)


def _adapter(term: Term, size: tuple[int, int]) -> Adapter | None:
    """The tiled form of ``term``; None for a term on the pixels alone (evaluated whole)."""
    if isinstance(term, ContentTerm):
        return _ContentAdapter(term, size)
    if isinstance(term, StyleTerm):
        return _StyleAdapter(term, size)
    if isinstance(term, MomentTerm):
        return _MomentAdapter(term, size)
    if isinstance(term, TVTerm) or not term.layers:
        return None
    raise SettingsError(f"the loss term {term.name!r} reads the network's maps and has no tiled form; "
                        "run it untiled (tile_size -1) or at a size that fits untiled")


class TiledGradient:
    """The loss terms and gradient of ``objective`` for images of one size, over tiles of at most
    ``tile`` x ``tile`` pixels: the same numbers as the untiled step (see the module's docstring).
    Called like :class:`painterly.engine.optimize.GraphedGradient`: ``(terms, grad) = tiled(image)``."""

    def __init__(self, objective: Objective, size: tuple[int, int], tile: int) -> None:
        w, h = size
        self.objective = objective
        self.layers = objective.layers
        self.halo = halo_for(self.layers) if self.layers else 0
        self.tiles = make_tiles(h, w, tile, self.halo)
        self.adapters: list[tuple[Term, Adapter | None]] = [(t, _adapter(t, (h, w))) for t in objective.terms]

    def features(self, piece: torch.Tensor) -> dict[str, torch.Tensor]:
        """The maps of a tile's pixels (its outer rows and columns) at the layers the terms read."""
        return self.objective.features(piece, self.layers)

    def mapped(self) -> list[tuple[Term, Adapter]]:
        """The weighted terms that read the network's maps, each with its tiled form."""
        return [(t, a) for t, a in self.adapters if a is not None and t.weight]

    def __call__(self, image: torch.Tensor) -> tuple[LossTerms, torch.Tensor]:
        image = image.detach()
        mapped = self.mapped()
        adapters = [a for _, a in mapped]
        # 1. the whole image's statistics
        totals: list[dict[str, torch.Tensor]] = [{} for _ in mapped]
        for tile in self.tiles:
            add_tile_sums(self.features, adapters, outer_piece(image, tile), tile, totals)
        # 2. the terms from them, and their gradients in each statistic
        parts, grads = loss_from_totals(mapped, totals)
        grad = torch.zeros_like(image)
        for term, maybe in self.adapters:
            if maybe is None and term.weight:
                value = _pixel_term(term, image, grad)
                parts[term.name] = value
        # 3. each tile's share of the gradient
        if mapped:
            for tile in self.tiles:
                share = tile_gradient(self.features, adapters, outer_piece(image, tile), tile, grads)
                if share is not None:
                    y0, y1, x0, x1 = tile.outer
                    grad[..., y0:y1, x0:x1] += share
        return sum_terms(self.objective.terms, parts, image), grad


def outer_piece(image: torch.Tensor, tile: Tile) -> torch.Tensor:
    """The pixels a tile feeds to the network: its interior and halo."""
    y0, y1, x0, x1 = tile.outer
    return image[..., y0:y1, x0:x1]


def add_tile_sums(features: Callable[[torch.Tensor], dict[str, torch.Tensor]], adapters: Sequence[Adapter],
                  piece: torch.Tensor, tile: Tile, totals: list[dict[str, torch.Tensor]]) -> None:
    """Pass 1 for one tile: add its sums into ``totals`` (one dict per adapter), without gradients."""
    with torch.no_grad():
        maps = features(piece)
        for sums, adapter in zip(totals, adapters):
            for key, value in adapter.stats(maps, tile).items():
                sums[key] = sums[key] + value if key in sums else value


def loss_from_totals(mapped: Sequence[tuple[Term, Adapter]], totals: Sequence[dict[str, torch.Tensor]]
                     ) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Each term's weighted value from the whole image's sums, and its gradient in each sum."""
    parts: dict[str, torch.Tensor] = {}
    grads: list[dict[str, torch.Tensor]] = []
    for sums, (term, adapter) in zip(totals, mapped):
        leaves = {k: v.detach().requires_grad_(True) for k, v in sums.items()}
        value = term.weight * adapter.loss(leaves)
        found = torch.autograd.grad(value, list(leaves.values()), allow_unused=True)
        grads.append({k: g for k, g in zip(leaves, found) if g is not None})
        parts[term.name] = value.detach()
    return parts, grads


def tile_gradient(features: Callable[[torch.Tensor], dict[str, torch.Tensor]], adapters: Sequence[Adapter],
                  piece: torch.Tensor, tile: Tile, grads: Sequence[dict[str, torch.Tensor]]) -> torch.Tensor | None:
    """Pass 2 for one tile: the gradient in its outer pixels of its share of the terms (None: none)."""
    piece = piece.detach().clone().requires_grad_(True)
    maps = features(piece)
    pairing: Any = 0.0
    for g, adapter in zip(grads, adapters):
        pairing = pairing + adapter.pairing(maps, tile, g)
    if not (isinstance(pairing, torch.Tensor) and pairing.requires_grad):
        return None
    pairing.backward()
    return piece.grad


def sum_terms(terms: Sequence[Term], parts: dict[str, torch.Tensor], like: torch.Tensor) -> LossTerms:
    """The terms in the objective's order (zero where unweighted) and their total, in ``like``'s
    precision (float64 stays float64, else float32) and on its device."""
    ordered = {t.name: parts.get(t.name, like.new_zeros((), dtype=torch.float32)) for t in terms}
    wide = torch.float64 if like.dtype == torch.float64 else torch.float32
    total = torch.stack([v.to(wide) for v in ordered.values()]).sum()
    return LossTerms(total, ordered)


#: Rows of the image per band when a term on the pixels alone is evaluated in bands.
BAND_ROWS = 256


def _pixel_term(term: Term, image: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``term.weight * term(image)``, its gradient added into ``grad``. Total variation is taken in
    bands of rows (each overlapping the next by one row, whose vertical differences it owns), so no
    image-sized temporaries are made; any other pixel term on the whole image."""
    if not isinstance(term, TVTerm):
        pixels = image.clone().requires_grad_(True)
        value = term.weight * term(pixels, {})
        value.backward()
        assert pixels.grad is not None
        grad += pixels.grad
        return value.detach()
    n, c, h, w = image.shape
    across, down = n * c * h * max(w - 1, 0), n * c * max(h - 1, 0) * w  # the means' counts, whole image
    wide = torch.float64 if image.dtype == torch.float64 else torch.float32
    total = torch.zeros((), dtype=wide, device=image.device)
    for top in range(0, h, BAND_ROWS):
        bottom = min(h, top + BAND_ROWS)
        piece = image[..., top:min(h, bottom + 1), :].clone().requires_grad_(True)
        own = piece[..., : bottom - top, :]  # the rows this band owns
        value = piece.new_zeros((), dtype=wide)
        if across:
            value = value + (own[..., :, 1:] - own[..., :, :-1]).to(wide).pow(2).sum() / across
        if down and piece.shape[-2] > 1:
            value = value + (piece[..., 1:, :] - piece[..., :-1, :]).to(wide).pow(2).sum() / down
        value = term.weight * value
        value.backward()
        assert piece.grad is not None
        grad[..., top:top + piece.shape[-2], :] += piece.grad
        total = total + value.detach()
    return total


# -- targets, measured tile by tile --------------------------------------------------------------

class TiledMeasure(Measure):
    """Measures targets as :class:`painterly.engine.objective.Measure` does, over tiles of at most ``tile``
    pixels: content maps are assembled from the tiles' interiors; Grams and moments are sums."""

    def __init__(self, tile: int) -> None:
        self.tile = tile

    def keep(self, target: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Content targets stay in the maps' precision (bf16 halves what the whole image's block4 maps
        hold; the terms compare in float32 anyway)."""
        return target

    def _tiles(self, image: torch.Tensor, layers: Sequence[str]) -> list[Tile]:
        return make_tiles(image.shape[-2], image.shape[-1], self.tile, halo_for(layers))

    def maps(self, objective: Objective, image: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        h, w = image.shape[-2:]
        out: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for tile in self._tiles(image, layers):
                y0, y1, x0, x1 = tile.outer
                maps = objective.features(image[..., y0:y1, x0:x1], layers)
                for layer in layers:
                    f = maps[layer]
                    if layer not in out:
                        out[layer] = f.new_zeros((1, f.shape[1], *map_size(layer, h, w)))
                    local_r, local_c, rows, cols = _span(layer, tile)
                    out[layer][..., rows, cols] = f[..., local_r, local_c]
        return out

    def moments(self, objective: Objective, image: torch.Tensor,
                layers: tuple[str, ...]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Mean (C,) and covariance (C, C) of each layer's maps, as :func:`painterly.engine.losses.feature_moments`."""
        h, w = image.shape[-2:]
        sums: dict[str, list[torch.Tensor]] = {}
        with torch.no_grad():
            for tile in self._tiles(image, layers):
                y0, y1, x0, x1 = tile.outer
                maps = objective.features(image[..., y0:y1, x0:x1], layers)
                for layer in layers:
                    local_r, local_c, _, _ = _span(layer, tile)
                    x = _positions(maps[layer][..., local_r, local_c])
                    if layer not in sums:  # the first tile's mean as the shift keeps float32's digits
                        wide = torch.float64 if x.dtype == torch.float64 else torch.float32
                        c = x.shape[1]
                        sums[layer] = [torch.zeros(c, c, dtype=wide, device=x.device),
                                       torch.zeros(c, dtype=wide, device=x.device),
                                       x.to(wide).mean(dim=0)]
                    outer, first = _second_moment(x, None, sums[layer][2])
                    sums[layer][0] += outer
                    sums[layer][1] += first
        out = {}
        for layer, (outer, first, shift) in sums.items():
            n = math.prod(map_size(layer, h, w))
            offset = first / n
            out[layer] = (offset + shift, outer / n - torch.outer(offset, offset))
        return out

    def grams(self, objective: Objective, image: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Each layer's Gram matrix (1, C, C), as :func:`painterly.engine.losses.gram_matrix`."""
        return {layer: (cov + torch.outer(mean, mean))[None]
                for layer, (mean, cov) in self.moments(objective, image, layers).items()}
