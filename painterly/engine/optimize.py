"""The optimization of an objective over the pixels: TensorFlow's Adam or L-BFGS, one scale's loop.

The image being optimized is RGB in 0..255. The tutorial optimizes the preprocessed image (BGR minus
the ImageNet means) and clips each channel to ``[-mean, 255 - mean]``; that is the same image shifted
and reordered, so the gradients, the Adam trajectory and the clipping are the same here.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .objective import LossTerms, Objective
from .settings import Settings

#: The range every step clamps the pixels to (levels).
PIXEL_RANGE = (0.0, 255.0)


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


class PixelLBFGS(torch.optim.Optimizer):
    """L-BFGS over one image: one evaluation per step, each step capped at ``max_step`` pixel levels.

    ``torch.optim.LBFGS`` without a line search takes its first quasi-Newton step from a curvature
    pair measured over a vanishing first step; on the quartic style loss that step overshoots by
    orders of magnitude, and a line search spends many evaluations finding its way back. Capping the
    largest pixel change of a step keeps every step in a region the curvature pairs describe, at one
    evaluation per step. The pairs are taken between the points actually evaluated, so clamping the
    image between steps keeps them consistent.

    Before there is a curvature pair the direction is ``-g``, and ``lr`` times the gradient of a loss
    relative to its target's size moves a pixel by a small fraction of a level: the first step is
    nearly lost, and so is the second (its pair describes that tiny step). ``first_step`` (levels, 0:
    off) scales that step so that its largest pixel change is ``first_step``.

    ``bounds`` (the range the caller clamps the pixels to, or None): a pixel held at a bound whose
    gradient pushes it further out is left out of the step, as L-BFGS-B leaves its active bounds out.
    Without that, every step moved such pixels by the most a step allows (and the clamp put them back):
    they set the step's largest change, so the cap shrank every other pixel's step, and their
    gradients, which the steps did not change, made curvature pairs that were thrown away (on astronaut
    x Composition VII, 10 of the first scale's 17 pairs).

    ``compact`` picks how ``-H g`` is computed (the same step either way, see :class:`_Pairs`):
    ``None`` takes the compact form on GPUs and the two-loop recursion on the CPU.
    """

    def __init__(self, params, lr: float = 1.0, history_size: int = 100, max_step: float = 16.0,
                 compact: bool | None = None, first_step: float = 0.0,
                 bounds: tuple[float, float] | None = None):
        super().__init__(params, {"lr": lr, "history_size": history_size, "max_step": max_step})
        if len(self.param_groups) != 1 or len(self.param_groups[0]["params"]) != 1:
            raise ValueError("PixelLBFGS optimizes exactly one tensor")
        self.compact, self.first_step, self.bounds = compact, first_step, bounds

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor]):  # type: ignore[override]
        with torch.enable_grad():
            loss = closure()
        group = self.param_groups[0]
        p = group["params"][0]
        if p.grad is None:
            return loss
        state = self.state[p]
        if "pairs" not in state:
            compact = p.device.type != "cpu" if self.compact is None else self.compact
            state["pairs"] = _Pairs(group["history_size"], compact)
        x, g = p.detach().reshape(-1), p.grad.reshape(-1)
        if self.bounds is not None:
            g.masked_fill_(held_at_bounds(x, g, self.bounds), 0)
        if "x" in state:
            # s = x - x_old and y = g - g_old in the old vectors' own memory, then x and g copied into it
            # (p and its gradient change in place): no image-sized temporaries at print sizes.
            state["pairs"].add(state["x"].neg_().add_(x), state["g"].neg_().add_(g))
            state["x"].copy_(x)
            state["g"].copy_(g)
        else:
            state["x"], state["g"] = x.clone(), g.clone()
        d = state["pairs"].direction(state["g"]).mul_(group["lr"])
        # On the device: no sync.
        d.mul_(step_factor(d.abs().max(), group["max_step"], 0.0 if len(state["pairs"]) else self.first_step))
        p.add_(d.view_as(p).to(p.dtype))
        return loss


def step_factor(largest: torch.Tensor, max_step: float, first_step: float = 0.0) -> torch.Tensor:
    """What scales a direction whose largest entry is ``largest``: to ``first_step`` where that is set (a
    scale's first step, before any curvature pair), then down so that no pixel moves more than
    ``max_step``."""
    if first_step:
        return first_step / largest.clamp(min=1e-30) * min(1.0, max_step / first_step)
    return (max_step / largest).clamp(max=1.0)


def held_at_bounds(x: torch.Tensor, g: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    """Where a pixel sits at a bound and its gradient (descent goes along ``-g``) pushes it out."""
    low, high = bounds
    return ((x <= low) & (g > 0)) | ((x >= high) & (g < 0))


class _Pairs:
    """The last ``capacity`` curvature pairs ``(s, y)``, and ``-H g`` from them.

    The pairs are rows of two matrices allocated at the first pair, filled in order and then
    overwritten oldest first; ``order`` lists the rows from oldest to newest. ``-H g`` comes from:

    * the two-loop recursion (Nocedal and Wright, alg. 7.4): four passes over the pairs, the fewest
      bytes read, which is what counts on a CPU;
    * its compact form (Byrd, Nocedal and Schnabel 1994; Nocedal and Wright, eq. 7.24) when
      ``compact``: a handful of matrix-vector products and ``m x m`` algebra in float64 on the CPU,
      where the recursion would launch hundreds of GPU kernels and wait on each of its scalars. It
      keeps ``sy[i, j] = s_i . y_j`` and ``yy[i, j] = y_i . y_j`` up to date as rows change.
    """

    def __init__(self, capacity: int, compact: bool) -> None:
        self.capacity, self.compact = capacity, compact
        self.order: list[int] = []
        self.s = self.y = torch.empty(0)
        self.sy = torch.zeros(capacity, capacity, dtype=torch.float64)
        self.yy = torch.zeros(capacity, capacity, dtype=torch.float64)

    def __len__(self) -> int:
        return len(self.order)

    def add(self, s: torch.Tensor, y: torch.Tensor) -> None:
        """Keep the pair if it describes positive curvature (``s.y > 1e-10 y.y``)."""
        sy, yy = torch.stack([s @ y, y @ y]).tolist()
        if not sy > 1e-10 * yy:
            return
        if not self.order:
            self.s = s.new_zeros(self.capacity, s.numel())
            self.y = s.new_zeros(self.capacity, s.numel())
        row = len(self.order) if len(self.order) < self.capacity else self.order.pop(0)
        self.order.append(row)
        self.s[row], self.y[row] = s, y
        self.sy[row, row], self.yy[row, row] = sy, yy
        if self.compact:
            n = len(self.order)  # rows fill in order and are reused only once all are in use: the first n
            s_y, y_y, y_s = torch.stack([self.s[:n] @ y, self.y[:n] @ y, self.y[:n] @ s]).cpu().double()
            self.sy[:n, row], self.sy[row, :n] = s_y, y_s
            self.yy[:n, row] = self.yy[row, :n] = y_y

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        """``-H g`` with ``H0 = (s.y / y.y) I`` of the newest pair; ``-g`` before there is any pair."""
        if not self.order:
            return -g
        newest = self.order[-1]
        gamma = float(self.sy[newest, newest] / self.yy[newest, newest])
        return self._compact(g, gamma) if self.compact else self._two_loop(g, gamma)

    def _two_loop(self, g: torch.Tensor, gamma: float) -> torch.Tensor:
        q = g.clone()
        alphas = []
        for row in reversed(self.order):
            alphas.append(float(self.s[row] @ q) / float(self.sy[row, row]))
            q.sub_(self.y[row], alpha=alphas[-1])
        q.mul_(gamma)
        for row, a in zip(self.order, reversed(alphas)):
            b = float(self.y[row] @ q) / float(self.sy[row, row])
            q.add_(self.s[row], alpha=a - b)
        return q.neg_()

    def _compact(self, g: torch.Tensor, gamma: float) -> torch.Tensor:
        n = len(self.order)
        s, y = self.s[:n], self.y[:n]
        sg, yg = torch.stack([s @ g, y @ g]).cpu().double()  # to the CPU first: MPS has no float64
        on_s, on_y = compact_coefficients(self.sy[:n, :n], self.yy[:n, :n], self.order, sg, yg, gamma)
        h_g = torch.addmv(torch.addmv(g * gamma, s.T, on_s.to(g)), y.T, on_y.to(g))
        return h_g.neg_()


def compact_coefficients(sy: torch.Tensor, yy: torch.Tensor, order: list[int], sg: torch.Tensor,
                         yg: torch.Tensor, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The coefficients of ``H g = gamma g + S^T on_s + Y^T on_y`` in L-BFGS's compact form, from
    the pairs' dot products alone (float64, rows as stored; ``order``: oldest to newest): so the
    vectors can live anywhere, even split over machines, and only these scalars travel."""
    n = len(order)
    rows = torch.tensor(order)
    sg, yg = sg[rows], yg[rows]
    sy, yy = sy[rows][:, rows], yy[rows][:, rows]
    r = sy.triu()
    r_inv_sg = torch.linalg.solve_triangular(r, sg[:, None], upper=True)
    inner = (torch.diag(sy.diagonal()) + gamma * yy) @ r_inv_sg - gamma * yg[:, None]
    on_s = torch.zeros(n, dtype=torch.float64)
    on_y = torch.zeros(n, dtype=torch.float64)
    on_s[rows] = torch.linalg.solve_triangular(r.T, inner, upper=False)[:, 0]
    on_y[rows] = -gamma * r_inv_sg[:, 0]
    return on_s, on_y


def make_optimizer(image: torch.Tensor, settings: Settings, steps: int | None = None) -> torch.optim.Optimizer:
    """The optimizer ``settings.optimizer`` names, over the one tensor ``image``.

    ``steps``, when known, bounds L-BFGS's history (a run of n steps never holds more than n - 1 pairs),
    so that the memory it sets aside for its pairs is no more than the run can use.
    """
    if settings.optimizer == "adam":
        return TFAdam([image], lr=settings.lr, betas=(settings.adam_beta1, settings.adam_beta2), eps=settings.adam_eps)
    history = settings.lbfgs_history if steps is None else max(1, min(settings.lbfgs_history, steps - 1))
    return PixelLBFGS([image], lr=settings.lr, history_size=history, max_step=settings.step_cap(),
                      first_step=settings.first_step(max(image.shape[-2:])), bounds=PIXEL_RANGE)


def capture_graph(run: Callable[[], object], device: torch.device, warmup: int = 2):
    """Call ``run`` ``warmup`` times on a side stream (cuDNN's autotuning included, off the capturing
    stream as capture requires), then capture one more call as a CUDA graph.

    Returns the graph and what the captured call returned (tensors the graph overwrites on replay).
    """
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(warmup):
            run()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = run()
    return graph, out


class GraphedGradient:
    """An objective's loss terms and gradient at one image size, captured once as a CUDA graph.

    An eager step launches some hundreds of small kernels (the network's layers forward and back,
    each style layer's Gram and loss); on a fast GPU at these image sizes the launches, not the
    arithmetic, set the pace. Replaying the captured graph launches them all at once. Each call
    copies the image into the graph's input and replays; the returned terms and gradient are the
    graph's own tensors, overwritten by the next call.
    """

    def __init__(self, objective: Objective, like: torch.Tensor, warmup: int = 2) -> None:
        self.input = like.detach().clone().requires_grad_(True)

        def run() -> LossTerms:
            self.input.grad = None
            terms = objective(self.input)
            terms.total.backward()
            return terms

        self.graph, self.terms = capture_graph(run, like.device, warmup)
        assert self.input.grad is not None
        self.grad: torch.Tensor = self.input.grad

    def __call__(self, image: torch.Tensor) -> tuple[LossTerms, torch.Tensor]:
        with torch.no_grad():
            self.input.copy_(image)
        self.graph.replay()
        return self.terms, self.grad


def graphed_gradient(objective: Objective, image: torch.Tensor, enabled: bool = True,
                     capture: Callable[[Objective, torch.Tensor], Any] | None = None) -> GraphedGradient | None:
    """A :class:`GraphedGradient` (or what ``capture`` makes) where ``enabled`` (the machine's
    ``cuda_graphs``) and the device allow one, else None (eager steps).

    A capture that fails (an old driver, an operation a graph cannot hold) falls back to eager steps
    with a warning: the run is the same, only slower.
    """
    if not enabled or image.device.type != "cuda":
        return None
    if any(getattr(t, "graph_safe", True) is False for t in getattr(objective, "terms", ())):
        return None  # a term whose targets change between calls (the nearest-neighbour style)
    try:
        return (capture or GraphedGradient)(objective, image)
    except RuntimeError as exc:
        warnings.warn(f"CUDA graph capture failed, running eager steps instead: {exc}", RuntimeWarning, stacklevel=2)
        return None


@dataclass
class ScaleOutcome:
    """What one scale's loop produced."""

    image: torch.Tensor  # (1, 3, H, W) RGB 0..255: the best (or averaged) image
    best_step: int  # index within the scale of the best loss
    best_total: float
    steps_run: int
    stopped: bool  # stopped by the callback or Ctrl-C


StepReport = Callable[[int, dict[str, float], torch.Tensor], bool]


Gradient = Callable[[torch.Tensor], "tuple[LossTerms, torch.Tensor]"]


def run_scale(
    objective: Objective, start: torch.Tensor, settings: Settings, steps: int, report: StepReport,
    gradient: Gradient | None = None, history: int | None = None, reuse_start: bool = False,
    cuda_graphs: bool = True,
) -> ScaleOutcome:
    """Optimize the pixels of ``start`` for up to ``steps`` steps at one size.

    ``report(i, losses, image)`` is called after every step with the losses measured before its
    update and the image after it (clamped); returning True stops the loop. The image with the lowest
    loss is kept (not the image
    after that step's update, as the tutorial's code does), or the running average when ``ema`` is set.
    ``gradient(image) -> (terms, grad)`` replaces the objective's own forward and backward (a
    :class:`painterly.engine.tiles.TiledGradient`); ``history`` caps L-BFGS's pairs below the settings' (the
    plan's, where memory is short). ``reuse_start``: optimize in ``start``'s own memory (the caller
    no longer needs it; at print sizes an image-sized copy is hundreds of megabytes). ``cuda_graphs``:
    on CUDA, replay each step from a captured graph (:func:`graphed_gradient`).
    """
    image = (start.detach() if reuse_start else start.detach().clone()).requires_grad_(True)
    optimizer = make_optimizer(image, settings, steps if history is None else min(steps, history + 1))
    # The lowest loss yet, its step and image; "step" is the step being taken.
    best: dict[str, Any] = {"total": math.inf, "step": -1, "image": image.detach().clone(), "at": 0}
    average = image.detach().clone() if settings.ema else None
    patience = _Patience(settings.patience, settings.min_improvement)
    # The last evaluation's losses. (Kept on the closure itself, they made a reference cycle through
    # it that held the scale's image, optimizer state and curvature pairs until a garbage collection:
    # a multi-scale run kept earlier scales' pairs alive, 0.8 GB more at 1024 px.)
    measured: dict[str, dict[str, float]] = {}
    closure = _closure(objective, gradient or graphed_gradient(objective, image, cuda_graphs), image, optimizer,
                       best, measured)
    stopped, done = False, 0
    try:
        for step in range(steps):
            best["at"] = step
            optimizer.step(closure)  # type: ignore[arg-type]  # torch's stub wants a float; a Tensor loss is usual
            with torch.no_grad():
                image.clamp_(*PIXEL_RANGE)
                if average is not None:
                    average.lerp_(image, 1 - settings.ema)
            losses = measured["losses"]
            done += 1  # counted only once the step is whole, so Ctrl-C mid-step is not counted
            if report(step, losses, image.detach()):
                stopped = True
                break
            if not math.isfinite(losses["total"]) or patience.stalled(losses["total"]):
                break
    except KeyboardInterrupt:
        stopped = True
    result = average if average is not None else best["image"]
    return ScaleOutcome(result, best["step"], best["total"], done, stopped)


def _closure(objective: Objective, graphed: Gradient | None, image: torch.Tensor, optimizer: Any,
             best: dict[str, Any], measured: dict[str, dict[str, float]]) -> Callable[[], torch.Tensor]:
    """The optimizer's closure: the loss and its gradient at ``image`` (by ``graphed`` where given),
    noting the losses in ``measured`` and the lowest yet in ``best``."""

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        if graphed is None:
            terms = objective(image)
            terms.total.backward()
        else:
            terms, grad = graphed(image)
            image.grad = grad if grad.dtype == image.dtype else grad.to(image.dtype)
        losses = terms.floats()
        if losses["total"] < best["total"]:
            best.update(total=losses["total"], step=best["at"], image=image.detach().clone())
        measured["losses"] = losses
        return terms.total

    return closure


class _Patience:
    """Early stopping: stalled once ``patience`` steps in a row have not improved the loss by
    ``min_improvement`` (relative) over the best so far; never with a patience of 0."""

    def __init__(self, patience: int, min_improvement: float) -> None:
        self.patience, self.min_improvement = patience, min_improvement
        self.reference, self.since = math.inf, 0

    def stalled(self, total: float) -> bool:
        if not self.patience:
            return False
        if total < self.reference * (1 - self.min_improvement):
            self.reference, self.since = total, 0
            return False
        self.since += 1
        return self.since >= self.patience
