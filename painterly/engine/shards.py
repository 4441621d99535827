"""One tiled scale spread over workers, each owning a fixed set of tiles: their pixels and their slice
of L-BFGS's state stay with it; a step moves only halos, the statistics' sums and scalars.

The tiled step (:mod:`painterly.engine.tiles`) is a map and a reduce: pass 1 adds each tile's sums into the
whole image's statistics, the loss and its gradient in those statistics come from the totals, pass 2
backpropagates each tile's share. Here each worker holds a :class:`Shard`: the tiles it owns (a
contiguous run of them, row by row), the pixels of its *region* (the tiles' interiors and halos) and,
for the pixels it owns (its tiles' interiors), L-BFGS's point, gradient and curvature pairs. A step:

1. each shard takes the halo pixels its neighbours own, runs pass 1 over its tiles, and returns its
   sums; the driver adds them up (in the shards' order) and takes each term's value and gradient in
   its statistics (:func:`painterly.engine.tiles.loss_from_totals`), which go back to every shard;
2. each shard runs pass 2 over its tiles (and total variation over the pixel pairs it owns); the
   gradient that falls on pixels a neighbour owns goes to that neighbour;
3. L-BFGS in its compact form needs only dot products: each shard returns its part of them, the
   driver adds them and sends back the direction's coefficients
   (:func:`painterly.engine.optimize.compact_coefficients`);
   then the largest pixel change (a max) sets the step's scale, and each shard moves its pixels and
   sends its neighbours their new halos.

So a step is the single-process tiled step's arithmetic, summed in another order: the same loss and
gradient to float rounding. :class:`ShardPool` is how the driver reaches the shards (in this
process: :class:`LocalShards`; on Ray: :mod:`painterly.workers.tiles_ray`); :func:`run_sharded` is the
scale's loop, :func:`painterly.engine.optimize.run_scale`'s counterpart. A worker that is lost mid-step
costs that step: every shard goes back to the state it held when the step began (kept by the pool,
see :meth:`ShardPool.snapshot`), the lost one on a replacement, and the step is done again.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import SettingsError
from .objective import TVTerm
from .optimize import PIXEL_RANGE, held_at_bounds, step_factor
from .settings import Settings
from .tiles import Adapter, Tile, TiledGradient, add_tile_sums, tile_gradient

Rect = tuple[int, int, int, int]  # rows y0:y1, columns x0:x1, in the whole image
Features = Callable[[torch.Tensor], "dict[str, torch.Tensor]"]


def assign_tiles(count: int, workers: int) -> list[list[int]]:
    """The tiles (by index, row by row) each worker owns: contiguous runs, as even as can be; no more
    workers than tiles."""
    workers = max(1, min(workers, count))
    bounds = [round(i * count / workers) for i in range(workers + 1)]
    return [list(range(bounds[i], bounds[i + 1])) for i in range(workers)]


def assign_blocks(rows: int, cols: int, workers: int) -> list[list[int]]:
    """The tiles of a ``rows`` x ``cols`` grid (by index, row by row) each worker owns: blocks of the
    grid, ``a`` down and ``workers / a`` across, as square as the grid allows (their halos border
    fewer tiles than runs' do: 16 workers on 16 x 16 tiles exchange 2.5 times less); contiguous runs
    (:func:`assign_tiles`) where no split of ``workers`` fits the grid or gives a worker more tiles
    than runs would."""
    runs = assign_tiles(rows * cols, workers)
    fits = [a for a in range(1, workers + 1) if workers % a == 0 and a <= rows and workers // a <= cols]
    if not fits:
        return runs
    down = min(fits, key=lambda a: abs(math.log(a * cols / (workers // a) / rows)))
    row_groups, col_groups = assign_tiles(rows, down), assign_tiles(cols, workers // down)
    blocks = [[r * cols + c for r in rs for c in cs] for rs in row_groups for cs in col_groups]
    return blocks if max(map(len, blocks)) <= max(map(len, runs)) else runs


def region_of(tiles: Sequence[Tile], height: int, width: int) -> Rect:
    """The pixels a shard holds: its tiles with their halos, and one more row and column (the
    neighbours total variation pairs each owned pixel with)."""
    y0 = min(t.outer[0] for t in tiles)
    x0 = min(t.outer[2] for t in tiles)
    y1 = max(max(t.outer[1], min(height, t.inner[1] + 1)) for t in tiles)
    x1 = max(max(t.outer[3], min(width, t.inner[3] + 1)) for t in tiles)
    return y0, y1, x0, x1


def overlap(a: Rect, b: Rect) -> Rect | None:
    y0, y1, x0, x1 = max(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), min(a[3], b[3])
    return (y0, y1, x0, x1) if y0 < y1 and x0 < x1 else None


def assign(tiles: Sequence[Tile], workers: int) -> list[list[int]]:
    """The tiles (by index) each worker owns: blocks of the tile grid (:func:`assign_blocks`)."""
    rows = len({t.inner[0] for t in tiles})
    return assign_blocks(rows, len(tiles) // rows, min(workers, len(tiles)))


def share_out(tiles: Sequence[Tile], workers: int, height: int, width: int
              ) -> tuple[list[list[Tile]], list[Rect], dict[tuple[int, int], list[Rect]]]:
    """Each worker's tiles (:func:`assign`) and region, and for each pair of workers ``(j, k)``
    the rects of ``j``'s pixels that ``k``'s tiles read: ``j`` sends their pixels to ``k`` after each
    update, and ``k`` sends ``j`` its gradient on them after each pass 2."""
    owned = [[tiles[i] for i in own] for own in assign(tiles, workers)]
    regions = [region_of(t, height, width) for t in owned]
    needs = [[region_of([t], height, width) for t in own] for own in owned]  # outers, and TV's neighbours
    links = {(j, k): [r for t in owned[j] if (r := _cover(t.inner, needs[k]))]
             for j in range(len(owned)) for k in range(len(owned)) if j != k}
    return owned, regions, links


def halo_bytes(links: dict[tuple[int, int], list[Rect]], element_size: int) -> int:
    """Bytes the halos of a step move between workers: each rect's pixels one way, gradient the other."""
    return 2 * 3 * element_size * sum((r[1] - r[0]) * (r[3] - r[2]) for rects in links.values() for r in rects)


def _cover(inner: Rect, needs: Sequence[Rect]) -> Rect | None:
    """The smallest rect of ``inner`` holding all of it that ``needs`` overlap (None: none)."""
    parts = [r for need in needs if (r := overlap(inner, need))]
    if not parts:
        return None
    return min(p[0] for p in parts), max(p[1] for p in parts), min(p[2] for p in parts), max(p[3] for p in parts)


@dataclass
class ShardSpec:
    """What a worker is given at a scale's start (once): its tiles, region and start pixels, the terms'
    tiled forms cut to its region, and how L-BFGS runs. The network it builds itself, from
    ``settings`` and ``precision``."""

    index: int
    shards: int  # how many there are
    tiles: list[Tile]  # in the whole image's coordinates
    region: Rect
    size: tuple[int, int]  # (h, w) of the whole image
    adapters: list[Adapter]  # cut to the region (see Adapter.crop)
    layers: tuple[str, ...]
    tv_weight: float
    pixels: torch.Tensor  # (1, 3, rh, rw): the start image's region
    sends: dict[int, list[Rect]]  # shard -> the rects of this shard's interiors that shard holds
    receives: dict[int, list[Rect]]  # shard -> the rects of its interiors this shard holds
    settings: Settings
    precision: str
    history: int
    device: str = "cpu"


def make_specs(gradient: TiledGradient, image: torch.Tensor, settings: Settings, precision: str,
               history: int, workers: int, device: str = "cpu") -> list[ShardSpec]:
    """One :class:`ShardSpec` per worker for a tiled scale (fewer where there are fewer tiles)."""
    for term, adapter in gradient.adapters:
        if adapter is None and term.weight and not isinstance(term, TVTerm):
            raise SettingsError(f"the loss term {term.name!r} reads the whole image and has no form spread over "
                                "workers; run it without a cluster")
    h, w = image.shape[-2:]
    tiles, regions, links = share_out(gradient.tiles, workers, h, w)
    tv = sum(t.weight for t, a in gradient.adapters if a is None and isinstance(t, TVTerm))
    specs = []
    for k, (own, (y0, y1, x0, x1)) in enumerate(zip(tiles, regions)):
        adapters = moved([a.crop(y0, x0, y1, x1) for _, a in gradient.mapped()], "cpu")
        specs.append(ShardSpec(
            k, len(tiles), own, regions[k], (h, w), adapters, gradient.layers, tv,
            image[..., y0:y1, x0:x1].detach().cpu().clone(),
            {j: rects for (i, j), rects in links.items() if i == k and rects},
            {j: rects for (j, i), rects in links.items() if i == k and rects},
            settings, precision, history, device))
    return specs


def moved(value: Any, device: torch.device | str) -> Any:
    """``value`` with every tensor in it on ``device``: tensors, dicts, lists, tuples, dataclasses and
    adapters (copies; what holds no tensor is kept as it is)."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: moved(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(moved(v, device) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type) or isinstance(value, Adapter):
        out = copy.copy(value)
        for name, item in vars(value).items():
            object.__setattr__(out, name, moved(item, device))
        return out
    return value


@dataclass
class ShardState:
    """What a shard needs to start a step again, besides its curvature pairs (kept one by one)."""

    x: torch.Tensor  # its owned pixels now
    x_old: torch.Tensor | None
    g_old: torch.Tensor | None
    best: torch.Tensor
    average: torch.Tensor | None
    filled: int  # pair rows in use


def total_variation_owned(pixels: torch.Tensor, rects: Sequence[Rect], size: tuple[int, int], end: tuple[int, int],
                          weight: float) -> torch.Tensor:
    """``weight`` times the total variation of the pixel pairs whose first pixel is in ``rects`` (a
    shard's interiors, in its region's coordinates, where the image ends at ``end``: rows, columns),
    with the means' counts of the whole image (``size``: h, w); differentiable in ``pixels``."""
    n, c = pixels.shape[:2]
    across, down = n * c * size[0] * max(size[1] - 1, 0), n * c * max(size[0] - 1, 0) * size[1]
    h, w = end
    wide = torch.float64 if pixels.dtype == torch.float64 else torch.float32
    value = pixels.new_zeros((), dtype=wide)
    for y0, y1, x0, x1 in rects:
        if across:
            row = pixels[..., y0:y1, x0:min(x1 + 1, w)]
            value = value + (row[..., :, 1:] - row[..., :, :-1]).to(wide).pow(2).sum() / across
        if down:
            col = pixels[..., y0:min(y1 + 1, h), x0:x1]
            value = value + (col[..., 1:, :] - col[..., :-1, :]).to(wide).pow(2).sum() / down
    return weight * value


class Shard:
    """A worker's tiles of one scale: their pixels, pass 1 and 2 over them, and its slice of L-BFGS.

    The driver calls its methods in the order of a step (see the module's docstring); pieces of
    pixels or gradients for other shards are returned one per shard (None: nothing for it), and
    those from other shards come in as arguments in the shards' order.
    """

    def __init__(self, spec: ShardSpec, features: Features, device: torch.device | None = None) -> None:
        self.spec, self.features = spec, features
        self.device = device or torch.device("cpu")
        y0, _, x0, _ = spec.region
        self.origin = (y0, x0)
        self.tiles = [Tile(self._local(t.inner), self._local(t.outer)) for t in spec.tiles]
        self.adapters = moved(spec.adapters, self.device) if self.device.type != "cpu" else spec.adapters
        self.pixels = spec.pixels.to(self.device, copy=True)
        h, w = spec.size
        self.end = (h - y0, w - x0)  # the image's end, from the region's corner
        self.settings = spec.settings
        self.pairs_s = self.pairs_y = torch.empty(0)
        self.filled = 0
        self.x_old: torch.Tensor | None = None
        self.g_old: torch.Tensor | None = None
        self.best = self.owned()
        self.average = self.owned() if self.settings.ema else None
        self.step: dict[str, torch.Tensor] = {}  # this step's point, gradient, pair and direction
        self.bytes_sent = 0  # halo pieces sent to other shards

    def _local(self, rect: Rect) -> Rect:
        y0, x0 = self.origin
        return rect[0] - y0, rect[1] - y0, rect[2] - x0, rect[3] - x0

    def owned(self, source: torch.Tensor | None = None) -> torch.Tensor:
        """The owned pixels (of ``source``, a region-sized tensor; default the pixels) as one vector."""
        source = self.pixels if source is None else source
        return torch.cat([source[..., a:b, c:d].reshape(-1) for a, b, c, d in (t.inner for t in self.tiles)])

    def _scatter(self, vector: torch.Tensor) -> None:
        start = 0
        for a, b, c, d in (t.inner for t in self.tiles):
            part = self.pixels[..., a:b, c:d]
            part.copy_(vector[start:start + part.numel()].view_as(part))
            start += part.numel()

    def _pieces(self, source: torch.Tensor, links: dict[int, list[Rect]], shards: int) -> list[Any]:
        out: list[Any] = [None] * shards
        for k, rects in links.items():
            out[k] = [source[..., a:b, c:d].cpu().clone() for a, b, c, d in map(self._local, rects)]
            self.bytes_sent += sum(p.numel() * p.element_size() for p in out[k])
        return out

    def pixel_pieces(self) -> list[Any]:
        """The pixels this shard owns that each other shard holds as halo."""
        return self._pieces(self.pixels, self.spec.sends, self.spec.shards)

    def sums(self, *pieces: Any) -> list[dict[str, torch.Tensor]]:
        """Take the halo pixels (one list per shard, None for none), then pass 1 over the tiles."""
        for j, got in enumerate(pieces):
            for (a, b, c, d), piece in zip(map(self._local, self.spec.receives.get(j, [])), got or []):
                self.pixels[..., a:b, c:d] = piece.to(self.device)
        totals: list[dict[str, torch.Tensor]] = [{} for _ in self.adapters]
        for tile in self.tiles:
            y0, y1, x0, x1 = tile.outer
            add_tile_sums(self.features, self.adapters, self.pixels[..., y0:y1, x0:x1], tile, totals)
        return [{k: v.cpu() for k, v in sums.items()} for sums in totals]

    def backward(self, grads: list[dict[str, torch.Tensor]]) -> list[Any]:
        """Pass 2 over the tiles and total variation over the owned pairs; returns the total
        variation's value, then the gradient on each other shard's pixels held here."""
        grads = [{k: v.to(self.device) for k, v in g.items()} for g in grads]
        grad = torch.zeros_like(self.pixels)
        for tile in self.tiles:
            y0, y1, x0, x1 = tile.outer
            share = tile_gradient(self.features, self.adapters, self.pixels[..., y0:y1, x0:x1], tile, grads)
            if share is not None:
                grad[..., y0:y1, x0:x1] += share
        tv = torch.zeros((), dtype=torch.float64)
        if self.spec.tv_weight:
            pixels = self.pixels.detach().clone().requires_grad_(True)
            value = total_variation_owned(pixels, [t.inner for t in self.tiles], self.spec.size, self.end,
                                          self.spec.tv_weight)
            value.backward()
            assert pixels.grad is not None
            grad += pixels.grad
            tv = value.detach().cpu()
        self.step = {"grad": grad}
        return [tv, *self._pieces(grad, self.spec.receives, self.spec.shards)]

    def gradient(self, keep_best: bool, *pieces: Any) -> torch.Tensor:
        """Add the gradient other shards found on the owned pixels; keep the point as the best if
        the driver says so; return this shard's part of the dot products L-BFGS needs (float64):
        ``s.y, y.y, s.g, y.g`` and, for each pair row in use, ``S.y, Y.y, Y.s, S.g, Y.g``."""
        grad = self.step["grad"]
        for j, got in enumerate(pieces):
            for (a, b, c, d), piece in zip(map(self._local, self.spec.sends.get(j, [])), got or []):
                grad[..., a:b, c:d] += piece.to(self.device)
        x, g = self.owned(), self.owned(grad)
        g.masked_fill_(held_at_bounds(x, g, PIXEL_RANGE), 0)  # as PixelLBFGS leaves them out
        self.step = {"x": x, "g": g}
        if keep_best:
            self.best = x.clone()
        rows_s, rows_y = self.pairs_s[:self.filled], self.pairs_y[:self.filled]
        if self.x_old is None or self.g_old is None:
            parts = [torch.stack([rows_s @ g, rows_y @ g]).reshape(-1)] if self.filled else []
            return torch.cat([torch.zeros(4, dtype=torch.float64), *[p.double().cpu() for p in parts]])
        s, y = x - self.x_old, g - self.g_old
        self.step.update(s=s, y=y)
        head = torch.stack([s @ y, y @ y, s @ g, y @ g]).double().cpu()
        if not self.filled:
            return head
        rows = torch.stack([rows_s @ y, rows_y @ y, rows_y @ s, rows_s @ g, rows_y @ g]).reshape(-1)
        return torch.cat([head, rows.double().cpu()])

    def direction(self, row: int, gamma: float | None, on_s: torch.Tensor | None,
                  on_y: torch.Tensor | None) -> tuple[torch.Tensor, Any]:
        """Keep this step's pair in ``row`` (-1: not kept), take the direction ``-lr H g`` from the
        driver's coefficients; returns its largest entry's size, and the pair kept (or None)."""
        g, kept = self.step["g"], None
        if row >= 0:
            s, y = self.step["s"], self.step["y"]
            if not self.filled and not self.pairs_s.numel():
                self.pairs_s = s.new_zeros(self.spec.history, s.numel())
                self.pairs_y = s.new_zeros(self.spec.history, s.numel())
            self.pairs_s[row], self.pairs_y[row] = s, y
            self.filled = max(self.filled, row + 1)
            kept = (s.cpu().clone(), y.cpu().clone())
        if gamma is None or on_s is None or on_y is None:
            d = -g
        else:
            n = len(on_s)
            h_g = torch.addmv(torch.addmv(g * gamma, self.pairs_s[:n].T, on_s.to(g)), self.pairs_y[:n].T, on_y.to(g))
            d = h_g.neg_()
        d = d.mul_(self.settings.lr)
        self.step["d"] = d
        return d.abs().max().cpu(), kept

    def update(self, largest: torch.Tensor, first: bool = False) -> list[Any]:
        """Move the owned pixels by the direction, scaled so that no pixel of the whole image moves
        more than ``max_step`` (``largest``: the whole direction's largest entry), clamp them, and
        return the pixels each other shard holds as halo. ``first``: there is no curvature pair yet,
        and the step is scaled to :meth:`Settings.first_step` of the whole image where that is set, as
        PixelLBFGS does."""
        x, g, d = self.step["x"], self.step["g"], self.step["d"]
        first_step = self.settings.first_step(max(self.spec.size)) if first else 0.0
        d.mul_(step_factor(largest.to(d), self.settings.step_cap(), first_step))
        moved = (x + d.to(x.dtype)).clamp_(*PIXEL_RANGE)
        self._scatter(moved)
        if self.average is not None:
            self.average.lerp_(moved, 1 - self.settings.ema)
        self.x_old, self.g_old, self.step = x, g, {}
        return self.pixel_pieces()

    def state(self) -> ShardState:
        return ShardState(self.owned().cpu(), _cpu(self.x_old), _cpu(self.g_old), self.best.to("cpu", copy=True),
                          _cpu(self.average), self.filled)

    def keep(self) -> tuple[ShardState, bool]:
        """The state (for the driver to hold, not to fetch), and True to say it is taken."""
        return self.state(), True

    def sent(self) -> int:
        """Bytes of halo pieces (pixels and gradients) this shard has sent to others."""
        return self.bytes_sent

    def restore(self, state: ShardState, *pairs: Any) -> None:
        """Go back to ``state`` with the pairs of its rows in use (in row order)."""
        self._scatter(state.x.to(self.device))
        self.x_old, self.g_old = _to(state.x_old, self.device), _to(state.g_old, self.device)
        self.best, self.average = state.best.to(self.device, copy=True), _to(state.average, self.device)
        self.filled, self.step = state.filled, {}
        if pairs:
            self.pairs_s = pairs[0][0].new_zeros(self.spec.history, pairs[0][0].numel()).to(self.device)
            self.pairs_y = torch.zeros_like(self.pairs_s)
            for row, (s, y) in enumerate(pairs):
                self.pairs_s[row], self.pairs_y[row] = s.to(self.device), y.to(self.device)

    def result(self, averaged: bool) -> list[tuple[Rect, torch.Tensor]]:
        """The owned pixels of the best image (or the running average), tile by tile."""
        return self._by_tile(self.average if averaged and self.average is not None else self.best)

    def owned_gradient(self) -> list[tuple[Rect, torch.Tensor]]:
        """This step's gradient on the owned pixels, tile by tile (for tests: a run never gathers it)."""
        return self._by_tile(self.step["g"])

    def _by_tile(self, vector: torch.Tensor) -> list[tuple[Rect, torch.Tensor]]:
        out, start = [], 0
        for tile, local in zip(self.spec.tiles, self.tiles):
            a, b, c, d = local.inner
            count = 3 * (b - a) * (d - c)
            out.append((tile.inner, vector[start:start + count].view(1, 3, b - a, d - c).cpu().clone()))
            start += count
        return out


def _cpu(t: torch.Tensor | None) -> torch.Tensor | None:
    """A copy on the CPU (the running average changes in place)."""
    return None if t is None else t.to("cpu", copy=True)


def _to(t: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if t is None else t.to(device, copy=True)
