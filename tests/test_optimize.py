"""The optimization: TensorFlow's Adam rule, L-BFGS cost per step, clamping, best image, patience, EMA.

Most tests drive :func:`run_scale` with small stand-in objectives over a (1, 3, 4, 4) image, so the
loop's bookkeeping is checked without the network.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import SimpleNamespace

import pytest
import torch

from painterly.engine.objective import LossTerms, layer_weights
from painterly.engine.optimize import (
    PixelLBFGS,
    TFAdam,
    graphed_gradient,
    held_at_bounds,
    make_optimizer,
    run_scale,
)
from painterly.engine.settings import Settings

# x after each of three TF-rule Adam steps (lr 5, betas 0.99/0.999, eps 0.1) on (x - 3)^2 from x = 0,
# worked out by hand: g = 2(x - 3); m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
# lr_t = lr sqrt(1 - b2^t) / (1 - b1^t); x -= lr_t m / (sqrt(v) + eps). First step: g = -6, m = -0.06,
# v = 0.036, lr_t = 15.8114, x = 15.8114 * 0.06 / (0.189737 + 0.1) = 3.2743.
TF_ADAM_X = [3.274295007498024, 5.359644473769848, 5.52629901669094]


def _adam_steps(optimizer_cls, **kwargs) -> list[float]:
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = optimizer_cls([x], lr=5.0, betas=(0.99, 0.999), eps=0.1, **kwargs)
    out = []
    for _ in range(3):
        opt.zero_grad()
        ((x - 3) ** 2).sum().backward()
        opt.step()
        out.append(x.item())
    return out


def _tf_rule_by_hand(steps: int = 3) -> list[float]:
    x, m, v, out = 0.0, 0.0, 0.0, []
    lr, b1, b2, eps = 5.0, 0.99, 0.999, 0.1
    for t in range(1, steps + 1):
        g = 2 * (x - 3)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        x -= lr * math.sqrt(1 - b2**t) / (1 - b1**t) * m / (math.sqrt(v) + eps)
        out.append(x)
    return out


def test_tf_adam_matches_the_tensorflow_rule() -> None:
    assert _tf_rule_by_hand() == pytest.approx(TF_ADAM_X, rel=1e-12)
    assert _adam_steps(TFAdam) == pytest.approx(TF_ADAM_X, rel=1e-12)


def test_tf_adam_differs_from_torch_adam_with_a_large_eps() -> None:
    torch_x = _adam_steps(torch.optim.Adam)
    assert torch_x[0] == pytest.approx(4.918032786885246, rel=1e-9)  # eps after bias correction
    assert abs(torch_x[0] - TF_ADAM_X[0]) > 1
    assert abs(torch_x[2] - TF_ADAM_X[2]) > 0.5


def test_tf_adam_with_a_closure_returns_the_loss() -> None:
    x = torch.zeros(1, requires_grad=True)
    opt = TFAdam([x])

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = ((x - 3) ** 2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == 9.0
    assert x.item() == pytest.approx(TF_ADAM_X[0], rel=1e-5)


def test_make_optimizer() -> None:
    image = torch.zeros(1, 3, 4, 4, requires_grad=True)
    adam = make_optimizer(image, Settings(optimizer="adam", lr=2.0, adam_beta1=0.9, adam_eps=0.5))
    assert isinstance(adam, TFAdam)
    assert adam.defaults == {"lr": 2.0, "betas": (0.9, 0.999), "eps": 0.5}
    lbfgs = make_optimizer(image, Settings(optimizer="lbfgs", lr=0.5, lbfgs_history=7, lbfgs_max_step=3.0))
    assert isinstance(lbfgs, PixelLBFGS)
    assert lbfgs.defaults == {"lr": 0.5, "history_size": 7, "max_step": 3.0}
    # A run of 5 steps never holds more than 4 pairs: no memory is set aside for more.
    assert make_optimizer(image, Settings(optimizer="lbfgs", lbfgs_history=7), steps=5).defaults["history_size"] == 4
    assert make_optimizer(image, Settings(optimizer="lbfgs", lbfgs_history=7), steps=1).defaults["history_size"] == 1


@pytest.mark.parametrize("strength, cap", [(-1.0, 12.0), (0.3, 12.0), (0.8, 12.0), (0.9, 24.0), (1.0, 48.0)])
def test_strengths_above_0_8_let_the_steps_grow(strength: float, cap: float) -> None:
    """Above strength 0.8 the loss's balance hardly moves the picture: the rest of the dial lets L-BFGS
    travel further, its step cap growing to 4x at strength 1."""
    image = torch.zeros(1, 3, 4, 4, requires_grad=True)
    settings = Settings(optimizer="lbfgs", lbfgs_max_step=12.0, strength=strength)
    assert make_optimizer(image, settings).defaults["max_step"] == pytest.approx(cap)


@pytest.mark.parametrize("size, first", [((384, 512), 0.0), ((512, 362), 0.0), ((768, 1024), 12.0),
                                         ((1086, 1448), 12.0)])
def test_the_first_step_is_whole_above_512_px(size: tuple[int, int], first: float) -> None:
    """Above 512 px L-BFGS's first step at a scale moves a pixel a whole step cap (there the relative losses'
    gradient step would hardly move the pixels); up to 512 px it is the gradient's step, unless
    ``lbfgs_first_step`` sets it at every size."""
    image = torch.zeros(1, 3, *size, requires_grad=True)
    settings = Settings(optimizer="lbfgs", lbfgs_max_step=12.0, strength=0.5)
    assert make_optimizer(image, settings).first_step == first
    assert make_optimizer(image, settings.replace(strength=1.0)).first_step == (first and 48.0)
    assert make_optimizer(image, settings.replace(lbfgs_first_step=5.0)).first_step == 5.0


def _minimize(optimizer_for, loss_of, x0: torch.Tensor, steps: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    x = x0.clone().requires_grad_(True)
    optimizer = optimizer_for(x)
    seen = []

    def closure():
        optimizer.zero_grad()
        seen.append(x.detach().clone())
        loss = loss_of(x)
        loss.backward()
        return loss

    for _ in range(steps):
        optimizer.step(closure)
    return x.detach(), seen


def test_pixel_lbfgs_solves_an_ill_conditioned_quadratic() -> None:
    # Curvatures from 1 to 1000: gradient descent would need thousands of steps.
    scales = torch.logspace(0, 3, 48, dtype=torch.float64)
    target = torch.linspace(-5, 5, 48, dtype=torch.float64)

    def loss_of(x):
        return 0.5 * (scales * (x - target) ** 2).sum()

    x, _ = _minimize(lambda x: PixelLBFGS([x], max_step=100.0), loss_of, torch.zeros(48, dtype=torch.float64), 120)
    assert torch.allclose(x, target, atol=1e-4)


def test_pixel_lbfgs_caps_every_step() -> None:
    target = torch.full((1, 3, 4, 4), 60.0)
    target[..., :2] = -40.0

    def loss_of(x):
        return ((x - target) ** 4).sum()  # quartic: the quasi-Newton steps overshoot without a cap

    x, seen = _minimize(lambda x: PixelLBFGS([x], max_step=5.0), loss_of, torch.zeros(1, 3, 4, 4), 40)
    steps = [float((b - a).abs().max()) for a, b in zip(seen, seen[1:])]
    assert max(steps) <= 5.0 + 1e-4
    assert steps[0] == pytest.approx(5.0)  # the first step is the capped gradient step
    assert float(loss_of(x)) < float(loss_of(torch.zeros(1, 3, 4, 4))) * 1e-3


def _clamped_run(bounds, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A quadratic whose minimum lies outside 0..255 on a few pixels, each step clamped as run_scale
    clamps it; returns the image and the target."""
    target = torch.linspace(40, 215, 48).view(1, 3, 4, 4).clone()
    target[..., 0, 0] = 400.0  # far above the range: held at 255 with the gradient pushing out
    target[..., 1, 1] = -150.0  # far below it
    x = torch.full((1, 3, 4, 4), 128.0)
    x[..., 0, 0], x[..., 1, 1] = 255.0, 0.0  # already at the bounds, as a painted picture's extremes are
    x.requires_grad_(True)
    optimizer = PixelLBFGS([x], max_step=16.0, first_step=8.0, bounds=bounds)

    def closure():
        optimizer.zero_grad()
        loss = 0.5 * ((x - target) ** 2).sum()
        loss.backward()
        return loss

    for _ in range(steps):
        optimizer.step(closure)
        with torch.no_grad():
            x.clamp_(0, 255)
    return x.detach(), target


def test_pixels_held_at_a_bound_are_left_out_of_the_step() -> None:
    x = torch.tensor([0.0, 0.0, 255.0, 255.0, 100.0])
    g = torch.tensor([1.0, -1.0, -1.0, 1.0, 1.0])  # descent goes along -g
    assert held_at_bounds(x, g, (0.0, 255.0)).tolist() == [True, False, True, False, False]
    # The pixels that want out of the range no longer set the step's largest change: the others reach
    # their targets in a few steps; without the bounds every step was cut to the outside pixels' cap.
    inside = torch.ones(1, 3, 4, 4, dtype=torch.bool)
    inside[..., 0, 0] = inside[..., 1, 1] = False
    bounded, target = _clamped_run((0.0, 255.0), 8)
    unbounded, _ = _clamped_run(None, 8)
    assert float((bounded - target)[inside].abs().max()) < 0.5
    assert float((unbounded - target)[inside].abs().max()) > 10 * float((bounded - target)[inside].abs().max())
    assert float(bounded[..., 0, 0].min()) == 255.0 and float(bounded[..., 1, 1].max()) == 0.0


def test_pixel_lbfgs_skips_pairs_without_positive_curvature() -> None:
    # A concave direction (-x^2) gives s.y < 0: that pair must not enter the history.
    x = torch.tensor([1.0, 1.0], requires_grad=True)
    optimizer = PixelLBFGS([x], max_step=0.5)

    def closure():
        optimizer.zero_grad()
        loss = -(x**2).sum()
        loss.backward()
        return loss

    for _ in range(3):
        optimizer.step(closure)
    assert len(optimizer.state[x]["pairs"]) == 0
    assert torch.isfinite(x).all()


def _two_loop_lbfgs(x0: torch.Tensor, loss_of, steps: int, history: int, max_step: float) -> list[torch.Tensor]:
    """A plain textbook L-BFGS (two-loop recursion over a list of pairs) with PixelLBFGS's step cap."""
    x, pairs, prev, seen = x0.clone(), [], None, []
    for _ in range(steps):
        xg = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(loss_of(xg), xg)
        if prev is not None:
            s, y = x - prev[0], g - prev[1]
            if s @ y > 1e-10 * (y @ y):
                pairs = [*pairs, (s, y, 1 / (s @ y))][-history:]
        prev = (x.clone(), g.clone())
        q = g.clone()
        alphas = []
        for s, y, rho in reversed(pairs):
            alphas.append(rho * (s @ q))
            q = q - alphas[-1] * y
        if pairs:
            q = q * (pairs[-1][0] @ pairs[-1][1]) / (pairs[-1][1] @ pairs[-1][1])
        for (s, y, rho), a in zip(pairs, reversed(alphas)):
            q = q + (a - rho * (y @ q)) * s
        d = -q
        d = d * min(1.0, max_step / float(d.abs().max()))
        x = x + d
        seen.append(x.clone())
    return seen


@pytest.mark.parametrize("compact", [False, True], ids=["two-loop", "compact"])
@pytest.mark.parametrize("history", [3, 100], ids=["history-wraps", "history-fills"])
def test_pixel_lbfgs_takes_the_textbook_steps(history: int, compact: bool) -> None:
    # Both ways of computing the step (the two-loop recursion over the rows of the stored pairs, and
    # the compact form's matrix products) take the textbook L-BFGS steps, also once the history is
    # full and its oldest rows are reused.
    torch.manual_seed(0)
    a = torch.randn(30, 30, dtype=torch.float64)
    target = torch.randn(30, dtype=torch.float64)

    def loss_of(x):
        r = a @ (x - target)
        return (r**2).sum() + 0.05 * (r**4).sum()  # not quadratic: every pair differs

    steps = 25
    reference = _two_loop_lbfgs(torch.zeros(30, dtype=torch.float64), loss_of, steps, history, max_step=0.5)
    x = torch.zeros(30, dtype=torch.float64, requires_grad=True)
    optimizer = PixelLBFGS([x], history_size=history, max_step=0.5, compact=compact)

    def closure():
        optimizer.zero_grad()
        loss = loss_of(x)
        loss.backward()
        return loss

    for i in range(steps):
        optimizer.step(closure)
        assert torch.allclose(x.detach(), reference[i], rtol=1e-9, atol=1e-9), f"step {i}"
    assert len(optimizer.state[x]["pairs"]) == min(history, steps - 1)
    assert float(loss_of(x.detach())) < 1e-3 * float(loss_of(torch.zeros(30, dtype=torch.float64)))


def test_no_cuda_graph_off_cuda_or_when_switched_off() -> None:
    # Capturing is for CUDA only; elsewhere (and with cuda_graphs='off') every step runs eagerly.
    image = torch.zeros(1, 3, 8, 8)
    assert graphed_gradient(object(), image, True) is None  # type: ignore[arg-type]
    meta = torch.zeros(1, 3, 8, 8, device="meta")
    assert graphed_gradient(object(), meta, True) is None  # type: ignore[arg-type]
    on_a_gpu = SimpleNamespace(device=torch.device("cuda"))  # stands in for a CUDA image: nothing runs on it
    assert graphed_gradient(object(), on_a_gpu, False) is None  # type: ignore[arg-type]


def test_a_failed_cuda_graph_capture_falls_back_to_eager_steps() -> None:
    def refuse(objective, image):
        raise RuntimeError("operation not permitted when stream is capturing")

    on_a_gpu = SimpleNamespace(device=torch.device("cuda"))  # stands in for a CUDA image: nothing runs on it
    with pytest.warns(RuntimeWarning, match="CUDA graph capture failed, running eager steps instead"):
        assert graphed_gradient(object(), on_a_gpu, True, capture=refuse) is None  # type: ignore[arg-type]


def test_layer_weights() -> None:
    assert layer_weights(("a", "b", "c", "d"), ()) == {"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25}
    assert layer_weights(("a", "b"), (3.0, 1.0)) == {"a": 3.0, "b": 1.0}


# -- run_scale with stand-in objectives --------------------------------------------------------


class Quadratic:
    """Loss sum((image - target)^2); records every image it is evaluated on."""

    def __init__(self, target: float | torch.Tensor) -> None:
        self.target = target
        self.seen: list[torch.Tensor] = []

    def __call__(self, image: torch.Tensor) -> LossTerms:
        self.seen.append(image.detach().clone())
        total = ((image - self.target) ** 2).sum()
        zero = total.new_zeros(())
        return LossTerms(total, {"style": total, "content": zero, "tv": zero})


class Scripted:
    """Loss values from a script (the k-th call gets the k-th value) with a constant gradient."""

    def __init__(self, values: list[float], slope: float = 1.0) -> None:
        self.values = values
        self.slope = slope
        self.seen: list[torch.Tensor] = []

    def __call__(self, image: torch.Tensor) -> LossTerms:
        value = self.values[len(self.seen)]
        self.seen.append(image.detach().clone())
        total = self.slope * image.sum() - (self.slope * image.sum()).detach() + value
        zero = total.new_zeros(())
        return LossTerms(total, {"style": total, "content": zero, "tv": zero})


def _run(objective, settings: Settings, steps: int, start: torch.Tensor | None = None,
         stop: Callable[[int], bool] = lambda i: False):
    if start is None:
        start = torch.full((1, 3, 4, 4), 100.0)
    reports: list[tuple[int, dict[str, float], torch.Tensor]] = []

    def report(i: int, losses: dict[str, float], image: torch.Tensor) -> bool:
        reports.append((i, losses, image.clone()))
        return stop(i)

    return run_scale(objective, start, settings, steps, report), reports


ADAM = Settings(optimizer="adam", lr=5.0)
LBFGS = Settings(optimizer="lbfgs", lr=1.0)


def test_lbfgs_evaluates_the_objective_once_per_step() -> None:
    objective = Quadratic(50.0)
    outcome, reports = _run(objective, LBFGS, 6)
    assert len(objective.seen) == 6 == len(reports) == outcome.steps_run
    assert [r[0] for r in reports] == list(range(6))
    assert reports[-1][1]["total"] < reports[0][1]["total"]


def test_adam_evaluates_the_objective_once_per_step() -> None:
    objective = Quadratic(50.0)
    outcome, _ = _run(objective, ADAM, 4)
    assert len(objective.seen) == 4 == outcome.steps_run


def test_the_start_image_is_not_modified() -> None:
    start = torch.full((1, 3, 4, 4), 100.0)
    _run(Quadratic(0.0), ADAM, 3, start)
    assert torch.equal(start, torch.full((1, 3, 4, 4), 100.0))


@pytest.mark.parametrize(
    "settings", [ADAM.replace(lr=100.0), LBFGS.replace(lr=100.0, lbfgs_max_step=500.0)], ids=["adam", "lbfgs"]
)
def test_pixels_are_clamped_after_every_step(settings: Settings) -> None:
    # The minimum is far outside 0..255 in both directions: the image pushes against both bounds.
    target = torch.full((1, 3, 4, 4), 1000.0)
    target[..., :2] = -1000.0
    objective = Quadratic(target)
    outcome, reports = _run(objective, settings, 5, torch.full((1, 3, 4, 4), 128.0))
    for _, _, image in reports:
        assert image.min() >= 0 and image.max() <= 255
    for seen in objective.seen:
        assert seen.min() >= 0 and seen.max() <= 255
    assert reports[-1][2][..., :2].max() == 0 and reports[-1][2][..., 2:].min() == 255
    assert outcome.image.min() >= 0 and outcome.image.max() <= 255


def test_keeps_the_image_the_lowest_loss_was_measured_on() -> None:
    objective = Scripted([5.0, 3.0, 1.0, 4.0, 2.0])
    outcome, reports = _run(objective, ADAM, 5)
    assert outcome.best_step == 2 and outcome.best_total == 1.0
    assert torch.equal(outcome.image, objective.seen[2])
    # ... not the image after that step's update (what the report saw), nor the last one.
    assert not torch.equal(outcome.image, reports[2][2])
    assert not torch.equal(outcome.image, reports[-1][2])


def test_best_image_on_a_decreasing_loss_is_the_last_one_evaluated() -> None:
    # The tutorial's code keeps the image after the last update; painterly keeps the image whose
    # loss it measured, which for a decreasing loss is the last image evaluated, one update earlier.
    objective = Quadratic(50.0)
    outcome, reports = _run(objective, ADAM, 4)
    totals = [r[1]["total"] for r in reports]
    assert totals == sorted(totals, reverse=True)
    assert outcome.best_step == 3
    assert torch.equal(outcome.image, objective.seen[3])
    assert not torch.equal(outcome.image, reports[3][2])


def test_reports_carry_the_losses_of_each_step() -> None:
    objective = Scripted([9.0, 8.0, 7.0])
    _, reports = _run(objective, ADAM, 3)
    assert [r[1]["total"] for r in reports] == [9.0, 8.0, 7.0]
    assert set(reports[0][1]) == {"total", "style", "content", "tv"}


def test_patience_stops_early() -> None:
    objective = Scripted([10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0])
    outcome, reports = _run(objective, ADAM.replace(patience=2), 8)
    # Step 0 sets the reference; steps 1 and 2 do not improve on it: stop after 3 steps.
    assert outcome.steps_run == 3 == len(reports)
    assert not outcome.stopped


def test_patience_counts_only_real_improvement() -> None:
    # A drop smaller than min_improvement (1e-3 relative) does not reset the count.
    objective = Scripted([10.0, 9.9999, 9.9998, 5.0, 5.0, 5.0, 5.0, 5.0])
    outcome, _ = _run(objective, ADAM.replace(patience=2, min_improvement=1e-3), 8)
    assert outcome.steps_run == 3
    objective = Scripted([10.0, 9.0, 8.0, 7.0, 7.0, 7.0, 7.0, 7.0])
    outcome, _ = _run(objective, ADAM.replace(patience=2), 8)
    assert outcome.steps_run == 6


def test_without_patience_every_step_runs() -> None:
    outcome, _ = _run(Scripted([10.0] * 6), ADAM, 6)
    assert outcome.steps_run == 6


def test_report_returning_true_stops() -> None:
    outcome, reports = _run(Quadratic(50.0), ADAM, 10, stop=lambda i: i == 2)
    assert outcome.stopped and outcome.steps_run == 3 == len(reports)


def test_a_non_finite_loss_stops() -> None:
    outcome, _ = _run(Scripted([3.0, 2.0, math.nan, 1.0, 1.0]), ADAM, 5)
    assert outcome.steps_run == 3 and outcome.best_total == 2.0


def test_ctrl_c_keeps_the_best_image_so_far() -> None:
    class Interrupted(Quadratic):
        def __call__(self, image: torch.Tensor) -> LossTerms:
            if len(self.seen) == 3:
                raise KeyboardInterrupt
            return super().__call__(image)

    objective = Interrupted(50.0)
    outcome, reports = _run(objective, ADAM, 10)
    assert outcome.stopped and len(reports) == 3
    assert outcome.best_step == 2 and torch.equal(outcome.image, objective.seen[2])


def test_ctrl_c_counts_only_completed_steps() -> None:
    # Interrupted during the 4th evaluation: 3 steps were completed and reported, not 4. The API
    # uses steps_run to place best_step in the history, so this shifts best_step by one.
    class Interrupted(Quadratic):
        def __call__(self, image: torch.Tensor) -> LossTerms:
            if len(self.seen) == 3:
                raise KeyboardInterrupt
            return super().__call__(image)

    outcome, reports = _run(Interrupted(50.0), ADAM, 10)
    assert outcome.steps_run == len(reports) == 3


def test_ema_output_is_the_running_average() -> None:
    ema = 0.5
    objective = Quadratic(50.0)
    outcome, reports = _run(objective, ADAM.replace(ema=ema), 4)
    average = torch.full((1, 3, 4, 4), 100.0)
    for _, _, image in reports:  # the images after each step's update and clamp
        average = ema * average + (1 - ema) * image
    assert torch.allclose(outcome.image, average)
    assert not torch.allclose(outcome.image, reports[-1][2])
    assert not torch.allclose(outcome.image, objective.seen[outcome.best_step])


def test_a_finished_scale_frees_its_optimizer_without_a_garbage_collection() -> None:
    """A scale's image, optimizer state and curvature pairs are freed when it returns: a reference
    cycle would keep them (hundreds of megabytes each at print sizes) until the collector ran."""
    import gc

    def optimizers() -> int:
        return sum(type(o) is PixelLBFGS for o in gc.get_objects())

    _run(Scripted([5.0, 4.0, 3.0]), LBFGS, 3)  # torch keeps its first optimizer's frames: warm up
    gc.disable()
    try:
        before = optimizers()
        for _ in range(3):
            _run(Scripted([5.0, 4.0, 3.0]), LBFGS, 3)
        assert optimizers() == before
    finally:
        gc.enable()
