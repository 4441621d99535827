"""The nearest-neighbour style term (``--style-loss nearest``): matching, pooling, its objective and runs."""

from __future__ import annotations

import pytest
import torch

import painterly
from painterly.engine.losses import nearest_distance, nearest_matches, pooled_positions, pooling_factor
from painterly.engine.network import VGG19
from painterly.engine.objective import MomentTerm, NearestTerm, build_objective
from painterly.engine.settings import DEFAULT, Settings
from painterly.errors import PainterlyError


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_each_row_finds_itself_among_the_candidates() -> None:
    style = _rand(50, 8, seed=1)
    order = torch.randperm(50, generator=torch.Generator().manual_seed(2))
    found = nearest_matches(style[order], style, style.mean(dim=0))
    assert torch.equal(found, order)


def test_matching_is_by_centred_cosine_not_by_length() -> None:
    centre = torch.zeros(2, dtype=torch.float64)
    style = torch.tensor([[1.0, 0.0], [0.0, 10.0]], dtype=torch.float64)
    out = torch.tensor([[0.1, 3.0], [5.0, 0.2]], dtype=torch.float64)  # near the second, then the first in angle
    assert nearest_matches(out, style, centre).tolist() == [1, 0]


def test_distance_is_zero_on_the_targets_and_two_opposite() -> None:
    rows = _rand(10, 4, seed=3)
    centre = torch.zeros(4, dtype=torch.float64)
    assert float(nearest_distance(rows, rows * 3, centre)) == pytest.approx(0.0, abs=1e-12)
    assert float(nearest_distance(rows, -rows, centre)) == pytest.approx(2.0)


def test_pooling_factor_is_the_smallest_that_fits() -> None:
    assert pooling_factor(64, 64, most=4096) == 1
    assert pooling_factor(65, 64, most=4096) == 2
    assert pooling_factor(128, 96, most=4096) == 2  # 64 x 48 positions
    assert pooling_factor(512, 512, most=4096) == 8


def test_pooled_positions_average_windows() -> None:
    maps = torch.arange(16, dtype=torch.float64).reshape(1, 1, 4, 4)
    rows = pooled_positions(maps, 2)
    assert rows.shape == (4, 1)
    assert rows[:, 0].tolist() == [2.5, 4.5, 10.5, 12.5]


@pytest.fixture(scope="module")
def net() -> VGG19:
    from painterly.engine.weights import load_weights

    return VGG19(load_weights("")).double()


def test_the_nearest_objective_adds_a_named_term_beside_the_moments(net: VGG19) -> None:
    settings = DEFAULT.replace(style_loss="nearest", precision="fp64",
                               style_layers=("block1_conv1", "block2_conv1"), style_layer_weights=())
    content = _rand(1, 3, 24, 24, seed=4) * 255
    style = _rand(1, 3, 24, 24, seed=5) * 255
    objective = build_objective(net, settings, content, [style])
    names = [t.name for t in objective.terms]
    assert names == ["style", "nearest", "content", "tv"]
    assert isinstance(objective.term("style"), MomentTerm)
    nearest = objective.term("nearest")
    assert isinstance(nearest, NearestTerm)
    # The style image itself is its own nearest neighbour everywhere: the term is zero there.
    assert float(objective(style).parts["nearest"]) == pytest.approx(0.0, abs=1e-9)
    assert float(objective(content).parts["nearest"]) > 0.01


def test_the_nearest_term_has_a_gradient_and_a_step_lowers_it(net: VGG19) -> None:
    settings = Settings(style_loss="nearest", precision="fp64", style_layers=("block1_conv1", "block2_conv1"),
                        content_layers=(), content_weight=0.0, strength=-1.0, style_weight=1.0)
    style = _rand(1, 3, 24, 24, seed=6) * 255
    objective = build_objective(net, settings, None, [style])
    term = objective.term("nearest")
    image = (_rand(1, 3, 24, 24, seed=7) * 255).requires_grad_(True)
    before = term(image, objective.features(image))
    before.backward()
    before = before.detach()
    assert image.grad is not None and float(image.grad.abs().sum()) > 0
    with torch.no_grad():
        moved = image - 50.0 * image.grad / image.grad.abs().max()
    with torch.no_grad():
        assert float(term(moved, objective.features(moved))) < float(before)


def test_a_run_with_the_nearest_loss_paints_and_records_the_term(content_img, style_img) -> None:
    result = painterly.stylize(content_img, style_img, DEFAULT.replace(style_loss="nearest", size=48, start_size=0,
                                                                       steps=6, precision="fp32"))
    assert result.image.size == (48, 32)
    assert "nearest" in result.history[-1]
    assert result.history[-1]["total"] < result.history[0]["total"]


def test_tiles_refuse_the_nearest_loss_in_one_sentence(content_img, style_img) -> None:
    with pytest.raises(PainterlyError, match="no tiled form"):
        painterly.stylize(content_img, style_img, DEFAULT.replace(style_loss="nearest", size=128, start_size=0,
                                                                  steps=2), tile_size=64)
