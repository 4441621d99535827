"""The driver's side of a tiled scale spread over workers (:mod:`painterly.engine.shards` is the workers').

:func:`stylize` takes a *cluster* (:class:`TileCluster`: anything with a ``run_scale`` like the one
here) and hands it each tiled scale; the untiled scales run in the calling process as before. The
cluster reaches its workers through a :class:`ShardPool`: :class:`LocalShards` keeps them in this
process (the same arithmetic, for tests and for measuring what a step moves), the Ray pool of
:mod:`painterly.workers.tiles_ray` puts each in an actor. This module imports no cluster library.
"""

from __future__ import annotations

import copy
import math
import pickle
from collections.abc import Sequence
from typing import Any, Protocol

import torch

from ..errors import SettingsError
from .objective import LossTerms, Term, TVTerm
from .optimize import ScaleOutcome, StepReport, compact_coefficients
from .plan import BASE_BYTES, TILED_BYTES_PER_PIXEL, Plan
from .settings import Settings
from .shards import Shard, ShardSpec, assign, make_specs
from .tiles import TiledGradient, loss_from_totals, sum_terms

#: Times one step is tried again after losing workers before the run gives up.
MAX_RETRIES = 3


def check_cluster(settings: Settings) -> None:
    """Settings a cluster can paint (the tiled terms, L-BFGS), else one line saying what cannot."""
    if settings.style_loss == "nearest":
        raise SettingsError("style_loss nearest has no tiled form, so it cannot be spread over a cluster; "
                            "use moments, relative or gram, or paint without a cluster")
    if settings.optimizer != "lbfgs":
        raise SettingsError(f"a cluster runs L-BFGS only, not optimizer {settings.optimizer}; "
                            "use optimizer lbfgs, or paint without a cluster")


class WorkerLost(Exception):
    """A worker of the pool died (its tiles go to a replacement and the step is done again)."""


class ShardPool(Protocol):
    """How the driver reaches the shards. ``call`` starts a shard's method and returns a handle (a
    list of ``returns`` handles when given); handles may be passed as arguments of later calls, and
    ``get`` waits for them and gives their values, raising :class:`WorkerLost` for a dead worker."""

    traffic: dict[str, int]  # bytes between the driver and the workers: "sent", "fetched" (and "steps")

    def start(self, specs: Sequence[ShardSpec]) -> None: ...

    def call(self, shard: int, method: str, *args: Any, returns: int | None = None) -> Any: ...

    def get(self, handles: Sequence[Any]) -> list[Any]: ...

    def replace_lost(self) -> list[int]: ...

    def close(self) -> None: ...


class TileCluster(Protocol):
    """What :func:`painterly.stylize` needs of a cluster: the number of workers (the plan's budget
    applies to each) and a tiled scale's loop, as :func:`painterly.engine.optimize.run_scale`."""

    workers: int

    def run_scale(self, gradient: TiledGradient, start: torch.Tensor, settings: Settings, steps: int,
                  report: StepReport, history: int | None, precision: str) -> ScaleOutcome: ...


def nbytes(value: Any) -> int:
    """The bytes ``value`` takes pickled: what it costs to send."""
    return len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


class PairBook:
    """The driver's side of L-BFGS's compact form: which pair rows are in use (oldest first) and the
    pairs' dot products ``sy[i, j] = s_i . y_j``, ``yy[i, j] = y_i . y_j``, as
    :class:`painterly.engine.optimize.PixelLBFGS` keeps them, from the shards' summed dot products."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.order: list[int] = []
        self.sy = torch.zeros(capacity, capacity, dtype=torch.float64)
        self.yy = torch.zeros(capacity, capacity, dtype=torch.float64)

    def step(self, dots: torch.Tensor, has_pair: bool
             ) -> tuple[int, float | None, torch.Tensor | None, torch.Tensor | None]:
        """(row the new pair goes to or -1, gamma and the coefficients of ``H g``, None before any pair)."""
        filled = len(self.order)
        row = -1
        if not has_pair:
            sg, yg = dots[4:].view(2, filled) if filled else (torch.zeros(0), torch.zeros(0))
        else:
            s_y, y_y, s_g, y_g = dots[:4].tolist()
            on_rows = dots[4:].view(5, filled) if filled else torch.zeros(5, 0, dtype=torch.float64)
            sy_rows, yy_rows, ys_rows, sg, yg = (torch.cat([r, torch.zeros(1, dtype=torch.float64)]) for r in on_rows)
            if s_y > 1e-10 * y_y:  # positive curvature: kept, as PixelLBFGS keeps it
                row = filled if filled < self.capacity else self.order.pop(0)
                self.order.append(row)
                n = len(self.order)
                for rows, value in ((sy_rows, s_y), (yy_rows, y_y), (ys_rows, s_y), (sg, s_g), (yg, y_g)):
                    rows[row] = value
                self.sy[:n, row], self.sy[row, :n] = sy_rows[:n], ys_rows[:n]
                self.yy[:n, row] = self.yy[row, :n] = yy_rows[:n]
                self.sy[row, row], self.yy[row, row] = s_y, y_y
        if not self.order:
            return row, None, None, None
        n = len(self.order)
        newest = self.order[-1]
        gamma = float(self.sy[newest, newest] / self.yy[newest, newest])
        on_s, on_y = compact_coefficients(self.sy[:n, :n], self.yy[:n, :n], self.order, sg[:n], yg[:n], gamma)
        return row, gamma, on_s, on_y


class _Run:
    """One tiled scale's steps over a pool: the driver's state between steps (what it holds of the
    shards: handles of each one's state at the step's start and of its pairs, never their pixels)."""

    def __init__(self, pool: ShardPool, gradient: TiledGradient, start: torch.Tensor, shards: int,
                 history: int) -> None:
        self.pool, self.gradient, self.start, self.n = pool, gradient, start, shards
        self.mapped = gradient.mapped()
        tv = [t for t, a in gradient.adapters if a is None and isinstance(t, TVTerm) and t.weight]
        if len(tv) > 1:
            raise SettingsError("a cluster takes at most one total variation term")
        self.tv: Term | None = tv[0] if tv else None
        self.book = PairBook(history)
        self.pixel_in: list[list[Any]] = [[None] * shards for _ in range(shards)]
        self.states = [pool.call(k, "keep", returns=2)[0] for k in range(shards)]
        self.pairs: list[dict[int, Any]] = [{} for _ in range(shards)]
        self.best_total, self.best_step, self.steps = math.inf, -1, 0
        self.recoveries = 0

    def step(self) -> dict[str, float]:
        """One step, done again on new workers where one is lost; its losses (before its update)."""
        for _ in range(MAX_RETRIES + 1):
            try:
                return self._attempt()
            except WorkerLost:
                self.recover()
        raise SettingsError(f"the cluster lost workers {MAX_RETRIES + 1} times in one step; giving up")

    def recover(self) -> None:
        """Replace lost workers; every shard back to its state at the step's start."""
        while True:
            self.pool.replace_lost()
            self.recoveries += 1
            try:
                filled = len(self.book.order)
                done = [self.pool.call(k, "restore", self.states[k], *(self.pairs[k][r] for r in range(filled)))
                        for k in range(self.n)]
                self.pool.get(done)
                pieces = [self.pool.call(k, "pixel_pieces", returns=self.n) for k in range(self.n)]
                self.pixel_in = [[pieces[j][k] for j in range(self.n)] for k in range(self.n)]
                return
            except WorkerLost:
                if self.recoveries > 4 * MAX_RETRIES:
                    raise SettingsError("the cluster keeps losing workers; giving up") from None

    def evaluate(self) -> tuple[LossTerms, bool, list[Any]]:
        """The step's loss terms (the shards keep its gradient, and the point as the best where it is),
        whether it is the best yet, and the handles of each shard's part of L-BFGS's dot products."""
        pool, n = self.pool, self.n
        sums = pool.get([pool.call(k, "sums", *self.pixel_in[k]) for k in range(n)])
        totals = [{key: sum(s[i][key] for s in sums) for key in sums[0][i]} for i in range(len(self.mapped))]
        parts, grads = loss_from_totals(self.mapped, totals)
        back = [pool.call(k, "backward", grads, returns=n + 1) for k in range(n)]
        tv = pool.get([b[0] for b in back])
        if self.tv is not None:
            parts[self.tv.name] = torch.stack(tv).sum().to(torch.float64 if self.start.dtype == torch.float64
                                                           else torch.float32)
        terms = sum_terms(self.gradient.objective.terms, parts, self.start)
        keep = terms.floats()["total"] < self.best_total
        return terms, keep, [pool.call(k, "gradient", keep, *(back[j][1 + k] for j in range(n))) for k in range(n)]

    def _attempt(self) -> dict[str, float]:
        pool, n = self.pool, self.n
        terms, keep, handles = self.evaluate()
        losses = terms.floats()
        dots = pool.get(handles)
        book = copy.deepcopy(self.book)
        row, gamma, on_s, on_y = book.step(torch.stack(dots).sum(dim=0), self.steps > 0)
        directions = [pool.call(k, "direction", row, gamma, on_s, on_y, returns=2) for k in range(n)]
        largest = max(pool.get([d[0] for d in directions]))
        moved = [pool.call(k, "update", largest, gamma is None, returns=n) for k in range(n)]
        kept = [pool.call(k, "keep", returns=2) for k in range(n)]
        pool.get([k[1] for k in kept])  # the step is whole on every shard before it counts (states stay there)
        self.book, self.states = book, [k[0] for k in kept]
        self.pixel_in = [[moved[j][k] for j in range(n)] for k in range(n)]
        if row >= 0:
            for k in range(n):
                self.pairs[k][row] = directions[k][1]
        if keep:
            self.best_total, self.best_step = losses["total"], self.steps
        self.steps += 1
        return losses

    def image(self, averaged: bool) -> torch.Tensor:
        """The best image (or the running average), gathered from the shards."""
        image = torch.empty_like(self.start)
        for pieces in self.pool.get([self.pool.call(k, "result", averaged) for k in range(self.n)]):
            for (y0, y1, x0, x1), piece in pieces:
                image[..., y0:y1, x0:x1] = piece.to(image)
        return image


def run_sharded(pool: ShardPool, gradient: TiledGradient, start: torch.Tensor, settings: Settings, steps: int,
                report: StepReport, history: int | None, precision: str, workers: int,
                device: str = "cpu") -> ScaleOutcome:
    """Optimize ``start`` for up to ``steps`` steps with its tiles spread over ``pool``'s workers:
    :func:`painterly.engine.optimize.run_scale`'s loop (L-BFGS only, its steps capped and clamped the same
    way, the best image or the running average kept, early stopping, ``report`` after each step).
    ``report`` gets the scale's start image: the pixels stay on the workers until the scale ends.
    ``history`` caps L-BFGS's pairs below the settings' (the plan's), as there."""
    check_cluster(settings)
    # L-BFGS's pairs as make_optimizer caps them: no more than the scale's steps can use, nor the plan's.
    capacity = max(1, min(settings.lbfgs_history, (steps if history is None else min(steps, history + 1)) - 1))
    specs = make_specs(gradient, start, settings, precision, capacity, workers, device)
    pool.start(specs)
    setup = dict(pool.traffic)
    run = _Run(pool, gradient, start, len(specs), capacity)
    since_improved, reference, stopped = 0, math.inf, False
    try:
        for step in range(steps):
            losses = run.step()
            if report(step, losses, start):
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
        run.recover()  # every shard as it was when the step began (a step cut short is not counted)
    pool.traffic["steps"] = sum(pool.traffic[k] - setup[k] for k in ("sent", "fetched"))
    image = run.image(averaged=bool(settings.ema))
    return ScaleOutcome(image, run.best_step, run.best_total, run.steps, stopped)


def evaluate_sharded(pool: ShardPool, gradient: TiledGradient, image: torch.Tensor, settings: Settings,
                     precision: str, workers: int) -> tuple[LossTerms, torch.Tensor]:
    """The loss terms and gradient of ``image`` with its tiles spread over ``pool``'s workers: what
    ``gradient(image)`` gives in one process (the gradient gathered from the workers, which a run never does)."""
    specs = make_specs(gradient, image, settings, precision, 1, workers)
    pool.start(specs)
    run = _Run(pool, gradient, image, len(specs), 1)
    terms, _, dots = run.evaluate()
    pool.get(dots)
    grad = torch.zeros_like(image)
    for pieces in pool.get([pool.call(k, "owned_gradient") for k in range(len(specs))]):
        for (y0, y1, x0, x1), piece in pieces:
            grad[..., y0:y1, x0:x1] = piece.to(grad)
    return terms, grad


class LocalShards:
    """A :class:`ShardPool` in this process: each shard is called directly, one after the other
    (the arithmetic of a cluster's step, and what it would move, without one). ``lose(k)`` makes
    shard ``k``'s next call fail as a dead worker's would."""

    def __init__(self, features: Any) -> None:
        self.features = features
        self.shards: list[Shard | None] = []
        self.specs: list[ShardSpec] = []
        self.traffic = {"sent": 0, "fetched": 0}
        self.doomed: set[int] = set()

    def start(self, specs: Sequence[ShardSpec]) -> None:
        self.specs = list(specs)
        self.shards = [Shard(spec, self.features) for spec in specs]

    def lose(self, shard: int) -> None:
        self.doomed.add(shard)

    def call(self, shard: int, method: str, *args: Any, returns: int | None = None) -> Any:
        if shard in self.doomed:
            self.doomed.discard(shard)
            self.shards[shard] = None
        target = self.shards[shard]
        if target is None:
            raise WorkerLost(f"shard {shard}")
        self.traffic["sent"] += nbytes(args)
        value = getattr(target, method)(*args)
        self.traffic["fetched"] += nbytes(value)
        return list(value) if returns is not None else value

    def get(self, handles: Sequence[Any]) -> list[Any]:
        return list(handles)

    def replace_lost(self) -> list[int]:
        lost = [k for k, s in enumerate(self.shards) if s is None]
        for k in lost:
            self.shards[k] = Shard(self.specs[k], self.features)
        return lost

    def close(self) -> None:
        self.shards = []


class LocalTiles:
    """A :class:`TileCluster` in this process: the tiles of each tiled scale split among ``workers``
    shards called in turn (no faster than one process; it shows a cluster's arithmetic and what its
    steps move). ``traffic``: what the last scale moved (see :func:`traffic_of`)."""

    def __init__(self, workers: int = 2) -> None:
        self.workers = workers
        self.traffic: dict[str, float] = {}
        self.pool: LocalShards | None = None

    def run_scale(self, gradient: TiledGradient, start: torch.Tensor, settings: Settings, steps: int,
                  report: StepReport, history: int | None, precision: str) -> ScaleOutcome:
        self.pool = LocalShards(gradient.features)
        outcome = run_sharded(self.pool, gradient, start, settings, steps, report, history, precision, self.workers)
        halo = sum(s.sent() for s in self.pool.shards if s is not None)
        self.traffic = traffic_of(self.pool.traffic, halo, outcome.steps_run, start)
        return outcome


def traffic_of(driver: dict[str, int], halo: int, steps: int, image: torch.Tensor) -> dict[str, float]:
    """What a scale moved: bytes per step between the driver and the workers (``driver["steps"]``:
    over ``steps`` steps) and between workers (``halo``, its halos), the bytes moved once (the
    workers' start pixels and targets, the result gathered), and the image's own size."""
    per = max(steps, 1)
    return {"steps": steps, "driver_bytes_per_step": driver.get("steps", 0) / per,
            "halo_bytes_per_step": halo / per,
            "once_bytes": driver["sent"] + driver["fetched"] - driver.get("steps", 0),
            "image_bytes": image.numel() * image.element_size()}


def driver_peak_bytes(size: tuple[int, int], precision: str) -> int:
    """The driver's memory at a tiled scale spread over a cluster: what a process holds before its
    first step, the scale's start and end images and the content's targets (the whole image's bytes
    a tiled step holds, :data:`painterly.engine.plan.TILED_BYTES_PER_PIXEL`, as an upper bound)."""
    per_pixel = TILED_BYTES_PER_PIXEL.get(precision, TILED_BYTES_PER_PIXEL["fp32"])
    return BASE_BYTES + per_pixel * size[0] * size[1]


def describe_workers(plan: Plan, workers: int, precision: str = "fp32") -> list[str]:
    """One line per tiled scale of ``plan`` (made with ``workers``): how its tiles are shared out, each
    worker's memory and the driver's."""
    from .tiles import make_tiles

    lines = []
    for s in plan.scales:
        if not s.tile:
            continue
        w, h = s.size
        tiles = make_tiles(h, w, s.tile, 0)
        owners = assign(tiles, workers)
        shares = [sum((t.inner[1] - t.inner[0]) * (t.inner[3] - t.inner[2]) for t in (tiles[i] for i in own))
                  for own in owners]
        counts = sorted({len(own) for own in owners})
        lines.append(f"cluster: scale {s.index + 1}/{len(plan.scales)} {w}x{h}: {len(tiles)} tiles over "
                     f"{len(owners)} worker{'s' if len(owners) > 1 else ''} ({'-'.join(map(str, counts))} each, "
                     f"up to {max(shares) / (w * h):.0%} of the pixels), about {s.peak_bytes / 2**30:.1f} GiB a "
                     f"worker, {driver_peak_bytes(s.size, precision) / 2**30:.1f} GiB for the driver")
    if not lines:
        lines.append("cluster: no scale of this run is tiled, so it runs here (--tile-size tiles it)")
    return lines
