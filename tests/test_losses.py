"""The losses: known answers, mask weighting, and gradient checks in float64."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck
from torch.nn import functional as F

from painterly.engine.losses import (
    StyleTarget,
    content_loss,
    content_term,
    feature_moments,
    gram_difference,
    gram_matrix,
    style_loss,
    style_term,
    total_variation,
)
from painterly.engine.network import VGG19
from painterly.engine.objective import Objective, build_objective
from painterly.engine.settings import Settings
from painterly.engine.weights import load_weights


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# -- known answers ---------------------------------------------------------------------------


def test_gram_of_ones_is_ones() -> None:
    gram = gram_matrix(torch.ones(1, 4, 5, 7))
    assert gram.shape == (1, 4, 4)
    assert torch.equal(gram, torch.ones(1, 4, 4))


def test_gram_of_constant_is_its_square() -> None:
    assert torch.allclose(gram_matrix(torch.full((2, 3, 6, 6), 3.0)), torch.full((2, 3, 3), 9.0))


def test_gram_is_divided_by_the_number_of_positions() -> None:
    f = _rand(1, 3, 4, 6)
    expected = torch.einsum("nchw,ndhw->ncd", f, f) / (4 * 6)
    assert torch.allclose(gram_matrix(f), expected)
    # The same features tiled twice keep the same Gram: it is a mean, not a sum.
    assert torch.allclose(gram_matrix(torch.cat([f, f], dim=-1)), gram_matrix(f))


def test_gram_keeps_float64_and_widens_half_precision() -> None:
    assert gram_matrix(_rand(1, 2, 3, 3)).dtype == torch.float64
    assert gram_matrix(torch.rand(1, 2, 3, 3).bfloat16()).dtype == torch.float32


def test_gram_with_a_mask_selecting_half_is_the_gram_of_that_half() -> None:
    f = _rand(1, 5, 6, 8)
    mask = torch.zeros(1, 1, 6, 8, dtype=torch.float64)
    mask[..., :4] = 1
    assert torch.allclose(gram_matrix(f, mask), gram_matrix(f[..., :4]))


def test_gram_with_a_full_mask_equals_no_mask() -> None:
    f = _rand(1, 3, 4, 4)
    assert torch.allclose(gram_matrix(f, torch.ones(1, 1, 4, 4, dtype=torch.float64)), gram_matrix(f))


def test_gram_with_a_soft_mask_weights_positions() -> None:
    f = _rand(1, 2, 1, 2)
    mask = torch.tensor([[[[0.25, 0.75]]]], dtype=torch.float64)
    a, b = f[0, :, 0, 0], f[0, :, 0, 1]
    expected = (0.25 * torch.outer(a, a) + 0.75 * torch.outer(b, b)) / 1.0
    assert torch.allclose(gram_matrix(f, mask)[0], expected)


def test_content_loss_is_the_mean_squared_error() -> None:
    a, b = _rand(1, 3, 4, 4, seed=1), _rand(1, 3, 4, 4, seed=2)
    assert torch.allclose(content_loss(a, b), ((a - b) ** 2).mean())
    assert content_loss(torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 3.0)).item() == pytest.approx(9.0)


def test_style_loss_is_the_mean_squared_error_of_grams() -> None:
    g, t = _rand(1, 4, 4, seed=1), _rand(1, 4, 4, seed=2)
    assert torch.allclose(style_loss(g, t), ((g - t) ** 2).mean())
    assert style_loss(torch.ones(1, 2, 2), torch.zeros(1, 2, 2)).item() == pytest.approx(1.0)


def test_total_variation_of_a_constant_is_zero() -> None:
    assert total_variation(torch.full((1, 3, 8, 8), 123.0)).item() == 0.0


def test_total_variation_of_a_checkerboard() -> None:
    # Every horizontal and every vertical neighbour differs by 255: mean dx^2 + mean dy^2 = 2 * 255^2.
    yy, xx = torch.meshgrid(torch.arange(6), torch.arange(8), indexing="ij")
    board = ((yy + xx) % 2).double().mul(255).expand(1, 3, 6, 8)
    assert total_variation(board).item() == pytest.approx(2 * 255.0**2)


def test_total_variation_of_stripes_counts_one_direction() -> None:
    stripes = (torch.arange(8) % 2).double().expand(1, 1, 4, 8)  # varies along x only
    assert total_variation(stripes).item() == pytest.approx(1.0)


def test_style_and_content_terms_weight_layers_and_targets() -> None:
    feats = {"a": _rand(1, 2, 3, 3, seed=1), "b": _rand(1, 2, 3, 3, seed=2)}
    grams = {k: _rand(1, 2, 2, seed=3) for k in feats}
    got = style_term(feats, [StyleTarget(grams, weight=2.0)], {"a": 0.25, "b": 0.75})
    want = 2.0 * (0.25 * style_loss(gram_matrix(feats["a"]), grams["a"])
                  + 0.75 * style_loss(gram_matrix(feats["b"]), grams["b"]))
    assert torch.allclose(got, want)
    targets = {k: _rand(1, 2, 3, 3, seed=4) for k in feats}
    got = content_term(feats, targets, {"a": 0.5, "b": 0.5})
    want = 0.5 * content_loss(feats["a"], targets["a"]) + 0.5 * content_loss(feats["b"], targets["b"])
    assert torch.allclose(got, want)


def test_style_term_resizes_a_mask_to_each_layer() -> None:
    feats = {"a": _rand(1, 2, 4, 4)}
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    mask[..., :4] = 1  # left half at 8x8 -> left half at 4x4
    grams = {"a": _rand(1, 2, 2, seed=5)}
    got = style_term(feats, [StyleTarget(grams, mask)], {"a": 1.0})
    assert torch.allclose(got, style_loss(gram_matrix(feats["a"][..., :2]), grams["a"]))


# -- gradients (float64) -----------------------------------------------------------------------


def test_gradcheck_gram_matrix() -> None:
    x = _rand(1, 3, 4, 5).requires_grad_()
    assert gradcheck(gram_matrix, (x,))


def test_gradcheck_gram_matrix_with_mask() -> None:
    x = _rand(1, 3, 4, 5).requires_grad_()
    mask = _rand(1, 1, 4, 5, seed=9)
    assert gradcheck(lambda f: gram_matrix(f, mask), (x,))


def test_gradcheck_style_loss_of_gram() -> None:
    x = _rand(1, 3, 4, 4).requires_grad_()
    target = _rand(1, 3, 3, seed=7)
    assert gradcheck(lambda f: style_loss(gram_matrix(f), target), (x,))


def test_gradcheck_content_loss() -> None:
    x = _rand(1, 3, 4, 4).requires_grad_()
    target = _rand(1, 3, 4, 4, seed=3)
    assert gradcheck(lambda f: content_loss(f, target), (x,))


def test_gradcheck_total_variation() -> None:
    x = _rand(1, 3, 5, 6).requires_grad_()
    assert gradcheck(total_variation, (x,))


def test_gradcheck_feature_moments() -> None:
    # Their backward is written by hand (one matmul): check it against finite differences, with the
    # mean and the covariance used together and each alone.
    x = torch.rand(1, 5, 4, 3, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(5, dtype=torch.float64), torch.rand(5, 5, dtype=torch.float64)
    assert gradcheck(lambda f: feature_moments(f), (x,))
    assert gradcheck(lambda f: (feature_moments(f)[0] * weights[0]).sum(), (x,))
    assert gradcheck(lambda f: (feature_moments(f)[1] * weights[1]).sum(), (x,))


def test_feature_moments_are_the_mean_and_covariance_and_keep_the_maps_precision() -> None:
    x = torch.rand(1, 6, 7, 5, dtype=torch.float64)
    positions = x.reshape(6, -1).T
    mean, cov = feature_moments(x)
    assert torch.allclose(mean, positions.mean(0)) and torch.allclose(cov, torch.cov(positions.T, correction=0))
    half = x.bfloat16().requires_grad_(True)
    mean, cov = feature_moments(half)
    assert mean.dtype == cov.dtype == torch.float32
    (mean.sum() + cov.sum()).backward()
    assert half.grad is not None and half.grad.dtype == torch.bfloat16


def test_style_loss_gradient_matches_the_closed_form() -> None:
    # d/dF mean((G - T)^2) with G = F F^T / M is 4 / (C^2 M) (G - T) F for symmetric G - T.
    f = _rand(1, 3, 2, 2).requires_grad_()
    target = _rand(1, 3, 3, seed=4)
    target = (target + target.transpose(1, 2)) / 2
    style_loss(gram_matrix(f), target).backward()
    a = f.detach().reshape(1, 3, 4)
    expected = 4 / (9 * 4) * (gram_matrix(f.detach()) - target) @ a
    assert torch.allclose(f.grad.reshape(1, 3, 4), expected)


@pytest.mark.parametrize("via", ["gram_matrix", "gram_difference"])
@pytest.mark.parametrize("masked", [False, True])
def test_bf16_gram_gradient_is_bf16_and_matches_float32(masked: bool, via: str) -> None:
    # The Gram's backward runs in the maps' own dtype (one bf16 matmul under autocast); its gradient
    # must agree with float32 autograd of the same bf16 maps to bf16 precision.
    f = (torch.rand(1, 16, 12, 10, generator=torch.Generator().manual_seed(5)) * 4).bfloat16()
    mask = torch.rand(1, 1, 12, 10, generator=torch.Generator().manual_seed(6)) if masked else None
    target = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(7))
    ours = f.clone().requires_grad_()
    if via == "gram_matrix":
        style_loss(gram_matrix(ours, mask), target).backward()
    else:
        gram_difference(ours, target, mask).pow(2).mean().backward()
    wide = f.float().requires_grad_()
    a = wide.reshape(1, 16, 120)
    m = None if mask is None else mask.reshape(1, 1, 120)
    gram = a @ a.transpose(1, 2) / 120 if m is None else (a * m) @ a.transpose(1, 2) / m.sum()
    style_loss(gram, target).backward()
    assert ours.grad.dtype == torch.bfloat16
    assert torch.allclose(ours.grad.float(), wide.grad, rtol=2e-2, atol=1e-2 * float(wide.grad.abs().max()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gram_difference_is_the_gram_minus_the_target(dtype: torch.dtype) -> None:
    f = _rand(2, 5, 6, 7, seed=21).to(dtype)
    target = _rand(1, 5, 5, seed=22).to(dtype)
    mask = _rand(2, 1, 6, 7, seed=23).to(dtype)
    assert torch.allclose(gram_difference(f, target), gram_matrix(f) - target)
    assert torch.allclose(gram_difference(f, target, mask), gram_matrix(f, mask) - target)
    assert gram_difference(f, target).dtype == dtype


@pytest.mark.parametrize("masked", [False, True])
def test_bf16_gram_difference_keeps_the_digits_of_the_difference(masked: bool) -> None:
    # Near convergence G - A is a small difference of large numbers. A bf16 Gram rounded before the
    # subtraction would carry errors of about 0.2% of G, here about 20% of G - A; the difference
    # must instead come out to bf16 precision of itself, like a float64 computation of the same maps.
    f = (torch.rand(1, 64, 24, 20, generator=torch.Generator().manual_seed(24)) * 4).bfloat16()
    f = f.contiguous(memory_format=torch.channels_last)
    mask = torch.rand(1, 1, 24, 20, generator=torch.Generator().manual_seed(25)) if masked else None
    exact = gram_matrix(f.double(), None if mask is None else mask.double())
    noise = torch.randn(1, 64, 64, generator=torch.Generator().manual_seed(26), dtype=torch.float64)
    target = (exact + 0.01 * exact.abs().mean() * noise).float()  # 1% away from the Gram
    want = exact - target.double()
    got = gram_difference(f, target, mask)
    assert got.dtype == torch.float32
    assert float((got.double() - want).norm() / want.norm()) < 5e-3
    rounded_first = gram_matrix(f, mask).bfloat16().double() - target.double()
    assert float((rounded_first - want).norm() / want.norm()) > 0.05  # the test can tell


@pytest.fixture(scope="module")
def vgg64() -> VGG19:
    """The whole VGG19 in float64 (precision 'fp64')."""
    return VGG19(load_weights("")).double()


def _objective(net: VGG19, settings: Settings, size: int, masks=None, second_style=None) -> Objective:
    content = _rand(1, 3, size, size, seed=11) * 255
    style = _rand(1, 3, size, size, seed=12) * 255
    styles = [style] if second_style is None else [style, second_style]
    return build_objective(net, settings, content, styles, masks=masks)


def test_gradcheck_whole_objective_fp64(vgg64: VGG19) -> None:
    # Every default layer (block5 at 1x1 for a 16 px image) and a tv term; the weights bring the
    # loss to order 1 so finite differences are accurate. fast_mode checks a random projection
    # (a full Jacobian of a float64 VGG19 would take minutes on a CPU).
    settings = Settings(precision="fp64", content_weight=1e-3, style_weight=1e-9, tv_weight=1e-4)
    objective = _objective(vgg64, settings, 16)
    image = (_rand(1, 3, 16, 16, seed=13) * 255).requires_grad_()
    assert gradcheck(lambda x: objective(x).total, (image,), eps=1e-4, atol=1e-6, rtol=1e-4,
                     fast_mode=True, check_undefined_grad=False)


def test_gradcheck_masked_two_style_objective_fp64(vgg64: VGG19) -> None:
    # Two styles, each ruling half the image through a mask (the spatial-control path), cut at block2.
    settings = Settings(
        precision="fp64", content_layers=("block2_conv1",), style_layers=("block1_conv1", "block2_conv1"),
        content_weight=1e-3, style_weight=1e-7, tv_weight=1e-3,
    )
    left = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    left[..., :4] = 1
    objective = _objective(vgg64, settings.replace(style_blend_weights=(0.5, 1.5)), 8, masks=[left, 1 - left],
                           second_style=_rand(1, 3, 8, 8, seed=21) * 255)
    targets = objective.term("style").targets
    assert [t.weight for t in targets] == [0.5, 1.5] and torch.equal(targets[1].mask, 1 - left)
    image = (_rand(1, 3, 8, 8, seed=14) * 255).requires_grad_()
    assert gradcheck(lambda x: objective(x).total, (image,), eps=1e-4, atol=1e-6, rtol=1e-4,
                     fast_mode=True, check_undefined_grad=False)


def test_objective_terms_are_weighted_and_summed(vgg64: VGG19) -> None:
    settings = Settings(precision="fp64", content_layers=("block1_conv2",), style_layers=("block1_conv1",),
                        content_weight=3.0, style_weight=5.0, tv_weight=7.0)
    objective = _objective(vgg64, settings, 8)
    image = _rand(1, 3, 8, 8, seed=15) * 255
    terms = objective(image)
    feats = vgg64(image, ["block1_conv1", "block1_conv2"])
    style_target = objective.term("style").targets[0].grams["block1_conv1"]
    style = 5.0 * style_loss(gram_matrix(feats["block1_conv1"]), style_target)
    content = 3.0 * F.mse_loss(feats["block1_conv2"], objective.term("content").targets["block1_conv2"])
    tv = 7.0 * total_variation(image)
    assert torch.allclose(terms.parts["style"], style)
    assert torch.allclose(terms.parts["content"], content)
    assert torch.allclose(terms.parts["tv"], tv)
    assert torch.allclose(terms.total, style + content + tv)
    assert set(terms.floats()) == {"total", "style", "content", "tv"}
