"""How far a run is and how long the rest will take: :class:`Tracker` turns the optimizer's per-step
reports into history entries, :class:`~painterly.engine.result.Progress` events and an ETA priced
from the plan; :func:`seconds_left` is the same estimate for work counted in plan costs (a batch's
jobs, a video's frames)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from .plan import Plan, ScalePlan
from .result import Callback, Progress


class Tracker:
    """Turns the loop's per-step reports into history entries, ETAs and :class:`Progress` events.

    The ETA prices the plan's steps still to come by this run's own steps. A step's plan cost has two
    parts, :attr:`~painterly.engine.plan.ScalePlan.step_parts`: the per-step part (launching the network's
    layers, the losses, the optimizer) and the per-pixel part; each gets its own seconds per unit.
    On a loaded machine the per-step part grows most (the threads wait on each other at every
    layer), so one rate measured on the small first scales priced the large last ones far too high:
    a run the plan put at 59 s said 13:49 with 2:43 left. Until :attr:`MEASURED_STEPS` untiled steps
    have been timed, both parts take ``prior_rate`` (the plan's measured seconds per cost on this
    kind of device, where known); from then on only the timed steps count: one rate while they are
    all of one size, the two parts fitted by least squares once two sizes have run. The run's first
    step (which warms caches up) is not timed.

    Tiled steps are timed apart: their cost over an untiled step's differs by machine (0.8x to 1.9x
    measured), so the untiled steps alone promised a 4096 px run's tiled scales in a third of their
    time. Their time over what the untiled prices predict for them starts at 1 (one tiled step's
    worth) and moves to the tiled steps' own from the first of them.
    """

    #: Untiled steps this run must have timed before its ETA comes from them alone.
    MEASURED_STEPS = 3

    def __init__(self, plan: Plan, optimizer: str, callback: Callback | None,
                 prior_rate: float | None = None, clock: Callable[[], float] | None = None) -> None:
        self.plan, self.optimizer, self.callback = plan, optimizer, callback
        self.prior_rate = prior_rate
        self.clock = clock or time.perf_counter  # seconds, monotonic
        self.history: list[dict[str, Any]] = []
        self.start = self.clock()
        self.setup_seconds = 0.0
        self.last: float | None = None  # working seconds at the previous report (None: none yet)
        # Untiled steps timed: their count, seconds, cost, the sizes they ran at, and the sums least
        # squares needs (o: per-step part, p: per-pixel part, t: seconds): o*o, o*p, p*p, o*t, p*t.
        self.untiled_steps, self.untiled_seconds, self.untiled_cost = 0, 0.0, 0.0
        self.sizes: set[tuple[int, int]] = set()
        self.sums = [0.0] * 5
        self.tiled = [0.0, 0.0, 0.0]  # tiled steps timed: seconds, per-step part, per-pixel part
        tiled = [s.step_parts for s in plan.scales if s.tile]
        self.tiled_weight = tiled[0] if tiled else (0.0, 0.0)  # counts as much as a prediction of 1

    def prices(self, first: float) -> tuple[float, float, float]:
        """(seconds per unit of a step's per-step cost, per unit of its per-pixel cost, tiled steps'
        time over what those two predict for them); ``first`` where nothing is known."""
        if self.untiled_steps >= self.MEASURED_STEPS or (self.untiled_steps > 0 and self.prior_rate is None):
            per_step, per_pixel = self._fitted()
        else:
            per_step = per_pixel = self.prior_rate if self.prior_rate is not None else first
        seconds, step_part, pixel_part = self.tiled
        if not seconds:
            return per_step, per_pixel, 1.0
        weight = per_step * self.tiled_weight[0] + per_pixel * self.tiled_weight[1]
        return per_step, per_pixel, (weight + seconds) / (weight + per_step * step_part + per_pixel * pixel_part)

    def _fitted(self) -> tuple[float, float]:
        """The untiled steps' prices: seconds over cost while they ran at one size, else the least
        squares fit of seconds = per_step * o + per_pixel * p, neither price below 0."""
        rate = self.untiled_seconds / self.untiled_cost
        oo, op, pp, ot, pt = self.sums
        det = oo * pp - op * op
        if len(self.sizes) < 2 or self.untiled_steps < self.MEASURED_STEPS or det <= 1e-9 * oo * pp:
            return rate, rate
        per_step, per_pixel = (ot * pp - pt * op) / det, (pt * oo - ot * op) / det
        if per_step < 0:  # the best fit on the boundary: all of a step's time is its pixels'
            return 0.0, pt / pp
        if per_pixel < 0:
            return ot / oo, 0.0
        return per_step, per_pixel

    def time_step(self, scale: ScalePlan, seconds: float) -> None:
        """Count a step of ``scale`` that took ``seconds``."""
        step_part, pixel_part = scale.step_parts
        if scale.tile:
            for i, value in enumerate((seconds, step_part, pixel_part)):
                self.tiled[i] += value
            return
        self.untiled_steps += 1
        self.untiled_seconds += seconds
        self.untiled_cost += step_part + pixel_part
        self.sizes.add(scale.size)
        for i, value in enumerate((step_part * step_part, step_part * pixel_part, pixel_part * pixel_part,
                                   step_part * seconds, pixel_part * seconds)):
            self.sums[i] += value

    def eta(self, scale: int, steps_done: int, first: float) -> float:
        """Seconds still to come after ``steps_done`` steps of ``scale``."""
        per_step, per_pixel, tiled = self.prices(first)

        def step_seconds(s: ScalePlan) -> float:
            step_part, pixel_part = s.step_parts
            return (per_step * step_part + per_pixel * pixel_part) * (tiled if s.tile else 1.0)

        current = self.plan.scales[scale]
        left = step_seconds(current) * max(0, current.steps - steps_done)
        return left + sum(step_seconds(s) * s.steps for s in self.plan.scales[scale + 1:])

    def reporter(self, scale: int, to_rgb: Callable[[torch.Tensor], torch.Tensor], before: int = 0):
        """The ``report`` function :func:`run_scale` calls at ``scale``, of which ``before`` steps
        ran before a resume: their cost was done in the earlier run (counted in this run's, it made
        the steps measured after a resume look cheap: a resumed 4096 px run said 26 min where two
        hours were left)."""
        plan_scale = self.plan.scales[scale]
        size = plan_scale.size
        step_cost = plan_scale.cost / max(plan_scale.steps, 1)
        offset = len(self.history)

        def report(i: int, losses: dict[str, float], current: torch.Tensor) -> bool:
            now = self.clock() - self.start
            self.history.append({"step": offset + i, **losses, "seconds": round(now, 6), "scale": scale,
                                 "size": list(size), "optimizer": self.optimizer})
            working = now - self.setup_seconds
            if self.last is not None:
                self.time_step(plan_scale, working - self.last)
            first = self.prior_rate if self.prior_rate is not None else working / max(step_cost, 1e-9)
            self.last = working
            if self.callback is None:
                return False
            event = Progress(offset + i, self.plan.total_steps, scale, len(self.plan.scales), size, losses, now,
                             self.eta(scale, before + i + 1, first), current, to_rgb)
            return bool(self.callback(event))

        return report


def seconds_left(elapsed: float, cost_done: float, cost_left: float) -> float | None:
    """Seconds the work still to do (``cost_left``, in plan costs) takes at the speed so far
    (``cost_done`` in ``elapsed`` seconds); None before anything is done."""
    if cost_done <= 0:
        return None
    return max(0.0, elapsed / cost_done * cost_left)
