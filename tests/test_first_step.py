"""L-BFGS's first step of a scale, scaled to a largest pixel change (``lbfgs_first_step``)."""

from __future__ import annotations

import pytest
import torch

from painterly.engine.optimize import PixelLBFGS, make_optimizer
from painterly.engine.settings import DEFAULT, TUTORIAL, Settings
from painterly.errors import SettingsError


def _steps(first_step: float, n: int) -> list[torch.Tensor]:
    """The image after each of ``n`` steps on a small quadratic whose gradient is tiny (1e-3 a pixel)."""
    target = torch.linspace(0, 255, 48).view(1, 3, 4, 4)
    image = torch.full((1, 3, 4, 4), 128.0, requires_grad=True)
    opt = PixelLBFGS([image], lr=1.0, history_size=5, max_step=128.0, first_step=first_step)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = 1e-3 * 0.5 * ((image - target) ** 2).mean() / 255
        loss.backward()
        return loss

    seen = [image.detach().clone()]
    for _ in range(n):
        opt.step(closure)
        seen.append(image.detach().clone())
    return seen


def test_the_first_step_moves_the_largest_pixel_by_first_step_levels() -> None:
    seen = _steps(8.0, 1)
    assert (seen[1] - seen[0]).abs().max().item() == pytest.approx(8.0, rel=1e-5)


def test_without_it_the_first_step_is_the_gradient_and_hardly_moves() -> None:
    seen = _steps(0.0, 1)
    assert (seen[1] - seen[0]).abs().max().item() < 1e-3


def test_a_scaled_first_step_gets_further_in_a_few_steps() -> None:
    target = torch.linspace(0, 255, 48).view(1, 3, 4, 4)
    scaled, plain = _steps(8.0, 4)[-1], _steps(0.0, 4)[-1]
    assert (scaled - target).abs().mean() < 0.5 * (plain - target).abs().mean()


def test_the_setting_reaches_the_optimizer_and_is_checked() -> None:
    image = torch.zeros(1, 3, 4, 4, requires_grad=True)
    opt = make_optimizer(image, Settings(optimizer="lbfgs", lr=1.0, lbfgs_first_step=6.0))
    assert opt.first_step == 6.0
    assert TUTORIAL.lbfgs_first_step == 0.0 and DEFAULT.lbfgs_first_step >= 0.0
    with pytest.raises(SettingsError, match="lbfgs_first_step"):
        Settings(lbfgs_first_step=-1.0)
