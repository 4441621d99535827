"""The engine's public parts: the plan, the objective's named terms, extra terms, the Engine's caches,
strength and the settings that follow their leader, the relative and moment style losses."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from painterly import DEFAULT, TUTORIAL, preset, stylize
from painterly.engine.losses import feature_moments, sqrtm_psd, wasserstein_term
from painterly.engine.network import VGG19, work_per_pixel
from painterly.engine.objective import Objective, TVTerm, build_objective
from painterly.engine.plan import STEP_OVERHEAD_PIXELS, make_plan
from painterly.engine.run import Engine, build_network
from painterly.engine.weights import load_weights
from painterly.errors import ImageError, SettingsError


def _rand(*shape: int, seed: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# -- the plan ----------------------------------------------------------------------------------


def test_a_network_cut_earlier_is_priced_at_its_share_of_the_arithmetic() -> None:
    # 9 x in x out multiply-adds a pixel per conv, a quarter per block: block1_conv1 is 9 x 3 x 64.
    assert work_per_pixel(["block1_conv1"]) == 9 * 3 * 64
    assert work_per_pixel(["block1_conv2", "block1_conv1"]) == 9 * 3 * 64 + 9 * 64 * 64
    assert work_per_pixel(["block2_conv1"]) == 9 * 3 * 64 + 9 * 64 * 64 + 9 * 64 * 128 // 4
    one = DEFAULT.replace(start_size=0)
    deep = make_plan(one.replace(content_layers=("block5_conv2",)), (512, 384)).scales[0]
    short = make_plan(one, (512, 384)).scales[0]
    assert short.cost < 0.8 * deep.cost


def test_plan_follows_the_settings_scales_and_steps() -> None:
    plan = make_plan(DEFAULT, (1000, 750), "bf16")
    assert [max(s.size) for s in plan.scales] == DEFAULT.scale_sizes()
    assert [s.steps for s in plan.scales] == DEFAULT.scale_steps()
    assert plan.size == (512, 384) and plan.total_steps == sum(DEFAULT.scale_steps())
    assert [s.style_size for s in plan.scales] == [max(s.size) for s in plan.scales]  # style_scale 1
    last = plan.scales[-1]
    share = work_per_pixel(["block4_conv2"]) / work_per_pixel(["block5_conv1"])  # the default's network, cut short
    assert last.cost == pytest.approx(last.steps * (512 * 384 * share + STEP_OVERHEAD_PIXELS))
    assert plan.cost_done(len(plan.scales) - 1, last.steps) == pytest.approx(plan.total_cost)
    assert plan.peak_bytes == max(s.peak_bytes for s in plan.scales) == last.peak_bytes
    assert not plan.enlarged and make_plan(DEFAULT, (200, 150)).enlarged
    assert len(plan.describe().splitlines()) == len(plan.scales)


def test_plan_memory_grows_with_pixels_precision_and_history() -> None:
    small, big = make_plan(TUTORIAL.replace(size=512), (512, 512)), make_plan(TUTORIAL.replace(size=2048), (512, 512))
    assert big.peak_bytes > small.peak_bytes
    assert make_plan(DEFAULT, (512, 512), "fp32").peak_bytes > make_plan(DEFAULT, (512, 512), "bf16").peak_bytes
    assert small.scales[0].history == 0  # Adam holds no pairs
    lbfgs = make_plan(TUTORIAL.replace(optimizer="lbfgs", steps=50), (512, 512))
    assert lbfgs.scales[0].history == 49


def test_plan_refuses_a_content_too_thin_at_some_scale() -> None:
    with pytest.raises(ImageError, match="too thin"):
        make_plan(DEFAULT, (4000, 100))


# -- the objective -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vgg64() -> VGG19:
    return VGG19(load_weights("")).double()


class Brightness:
    """A pixel term: squared distance of the mean level to a target, for the extra-terms seam."""

    def __init__(self, level: float, weight: float = 1.0, size: tuple[int, int] | None = None) -> None:
        self.name, self.weight, self.layers, self.level, self.size = "brightness", weight, (), level, size
        self.sizes: list[tuple[int, int]] = []

    def for_size(self, size: tuple[int, int]) -> Brightness:
        self.sizes.append(size)
        return Brightness(self.level, self.weight, size)

    def __call__(self, image: torch.Tensor, features: dict[str, torch.Tensor]) -> torch.Tensor:
        assert image.shape[-1] == self.size[0] and image.shape[-2] == self.size[1]
        return (image.mean() - self.level) ** 2


def test_an_extra_term_is_one_more_named_term(vgg64: VGG19) -> None:
    settings = TUTORIAL.replace(precision="fp64", content_layers=("block1_conv2",), style_layers=("block1_conv1",))
    content = _rand(1, 3, 8, 8, seed=1) * 255
    extra = Brightness(10.0).for_size((8, 8))
    objective = build_objective(vgg64, settings, content, [_rand(1, 3, 8, 8, seed=2) * 255], extra_terms=[extra])
    assert [t.name for t in objective.terms] == ["style", "content", "tv", "brightness"]
    terms = objective(content)
    assert set(terms.floats()) == {"total", "style", "content", "tv", "brightness"}
    assert float(terms.parts["brightness"]) == pytest.approx(float((content.mean() - 10) ** 2))
    assert float(terms.total) == pytest.approx(sum(float(v) for v in terms.parts.values()))
    with pytest.raises(ValueError, match="share a name"):
        Objective(vgg64, [TVTerm(1.0), TVTerm(2.0)])


def test_extra_terms_reach_every_scale_and_the_history() -> None:
    from painterly.samples import demo_paths

    content, style = demo_paths()
    term = Brightness(0.0, weight=1e-9)
    settings = DEFAULT.replace(size=64, start_size=45, steps=2, min_scale_steps=1)
    result = stylize(content, style, settings, extra_terms=[term])
    assert term.sizes == [make_plan(settings, (w, h)).scales[i].size
                          for i, (w, h) in enumerate([result.content.size] * len(term.sizes))]
    assert len(term.sizes) == len(settings.scale_sizes()) == 2
    assert all("brightness" in h for h in result.history)


def test_the_engine_builds_the_network_once_and_reuses_style_targets() -> None:
    from painterly.samples import demo_paths

    content, style = demo_paths()
    engine = Engine()
    settings = DEFAULT.replace(size=48, start_size=0, steps=1)
    first = stylize(content, style, settings, engine=engine)
    assert len(engine.networks) == 1 and len(engine.style_cache) == 1
    second = stylize(content, style, settings, engine=engine)
    assert len(engine.networks) == 1 and len(engine.style_cache) == 1  # nothing recomputed
    assert second.history[0]["total"] == first.history[0]["total"]
    stylize(content, style, settings.replace(style_scale=0.8), engine=engine)
    assert len(engine.style_cache) == 2  # another style size: other targets
    assert engine.network(settings, torch.device("cpu"), first.precision) is next(iter(engine.networks.values()))


# -- strength and settings that follow -----------------------------------------------------------


def test_strength_scales_the_two_weights() -> None:
    s = DEFAULT.replace(strength=0.8)
    assert s.loss_weights() == pytest.approx((s.content_weight * 0.2, s.style_weight * 0.8))
    assert DEFAULT.replace(strength=0.0).loss_weights()[1] == 0
    assert TUTORIAL.strength == -1 and TUTORIAL.loss_weights() == (1e3, 1e-2)
    raw = DEFAULT.replace(style_weight=3.0)  # a raw weight given: strength is off, the weights as given
    assert raw.strength == -1 and raw.loss_weights() == (DEFAULT.content_weight, 3.0)
    both = DEFAULT.replace(style_weight=3.0, strength=0.25)
    assert both.loss_weights() == pytest.approx((DEFAULT.content_weight * 0.75, 0.75))
    for bad in (1.5, -0.5, float("nan")):
        with pytest.raises(SettingsError, match="strength must be between 0"):
            DEFAULT.replace(strength=bad)


def test_the_learning_rate_follows_the_optimizer_unless_given() -> None:
    assert TUTORIAL.lr == 5.0 and TUTORIAL.replace(optimizer="lbfgs").lr == 1.0
    assert DEFAULT.replace(optimizer="adam").lr == 5.0
    assert TUTORIAL.replace(optimizer="lbfgs", lr=0.5).lr == 0.5
    assert TUTORIAL.replace(steps=3).lr == 5.0  # nothing follows an unrelated change


def test_layer_weights_follow_their_layers() -> None:
    assert len(DEFAULT.style_layer_weights) == len(DEFAULT.style_layers) == 4
    assert DEFAULT.replace(style_layers=("block1_conv1", "block2_conv1")).style_layer_weights == ()
    same_count = DEFAULT.replace(style_layers=("block1_conv2", "block2_conv2", "block3_conv2", "block4_conv2"))
    assert same_count.style_layer_weights == DEFAULT.style_layer_weights


def test_strength_zero_keeps_the_photo_and_more_strength_moves_further() -> None:
    from painterly.samples import demo_paths

    content, style = demo_paths()
    # Gentle steps (16 levels, not the preset's 128): a few big L-BFGS steps make where the run lands depend
    # on its path more than on the weights (0.85 / 0.62 / 0.55 for strength 0.3 / 0.5 / 0.7). 128 px, not 64:
    # with block3_conv2 beside block4_conv2 the content is compared on 8x8 maps at 64 px, where the path
    # decides (0.38 at 0.3, 0.21 at 0.7); at 128 px 0.26 and 0.53.
    base = preset("draft").replace(size=128, start_size=0, steps=12, patience=0, lbfgs_max_step=16.0)
    photo = stylize(content, style, base.replace(strength=0.0))
    moved = [stylize(content, style, base.replace(strength=s)).history[-1]["content"] / (1 - s) for s in (0.3, 0.7)]
    assert photo.history[-1]["style"] == 0 and photo.history[-1]["content"] < 0.01  # content and a little TV
    assert 0 < moved[0] < moved[1]  # the unweighted content distance grows with strength


# -- relative and moment style losses ---------------------------------------------------------


def test_relative_style_loss_is_the_squared_relative_gram_distance(vgg64: VGG19) -> None:
    settings = TUTORIAL.replace(precision="fp64", style_loss="relative", style_layers=("block1_conv1",),
                                content_layers=(), style_weight=1.0)
    style = _rand(1, 3, 8, 8, seed=3) * 255
    objective = build_objective(vgg64, settings, None, [style])
    image = _rand(1, 3, 8, 8, seed=4) * 255
    from painterly.engine.losses import gram_matrix

    g = gram_matrix(vgg64(image, ["block1_conv1"])["block1_conv1"])
    a = gram_matrix(vgg64(style, ["block1_conv1"])["block1_conv1"])
    assert float(objective(image).total) == pytest.approx(float((g - a).pow(2).sum() / a.pow(2).sum()))
    assert float(objective(style).total) == pytest.approx(0, abs=1e-20)


def test_wasserstein_term_is_zero_on_its_target_and_positive_elsewhere() -> None:
    maps = torch.relu(_rand(1, 16, 6, 6, seed=5) - 0.3)
    mean, cov = feature_moments(maps)
    target = {"x": (mean, cov, sqrtm_psd(cov))}
    assert float(wasserstein_term({"x": maps}, target, {"x": 1.0})) == pytest.approx(0, abs=1e-6)
    other = torch.relu(_rand(1, 16, 6, 6, seed=6) - 0.1)
    assert float(wasserstein_term({"x": other}, target, {"x": 1.0})) > 1e-3
    root = sqrtm_psd(cov)
    assert torch.allclose(root @ root, cov, atol=1e-10)


def test_wasserstein_term_gradient_fp64() -> None:
    target_maps = _rand(1, 4, 5, 5, seed=7) + 0.5
    mean, cov = feature_moments(target_maps)
    target = {"x": (mean, cov, sqrtm_psd(cov))}
    x = (_rand(1, 4, 5, 5, seed=8) + 0.2).requires_grad_()
    assert gradcheck(lambda m: wasserstein_term({"x": m}, target, {"x": 1.0}), (x,), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_moments_objective_blends_two_styles_as_a_mixture(vgg64: VGG19) -> None:
    settings = TUTORIAL.replace(precision="fp64", style_loss="moments", style_layers=("block1_conv1",),
                                content_layers=(), style_weight=1.0)
    a, b = _rand(1, 3, 8, 8, seed=9) * 255, _rand(1, 3, 8, 8, seed=10) * 100
    both = build_objective(vgg64, settings.replace(style_blend_weights=(1.0, 1.0)), None, [a, b])
    mean, cov, _ = both.term("style").targets["block1_conv1"]
    pooled = torch.cat([vgg64(a, ["block1_conv1"])["block1_conv1"], vgg64(b, ["block1_conv1"])["block1_conv1"]], -1)
    want_mean, want_cov = feature_moments(pooled)  # the two images' positions pooled: the mixture
    assert torch.allclose(mean, want_mean) and torch.allclose(cov, want_cov, atol=1e-8)


def test_build_network_is_cut_after_the_deepest_layer() -> None:
    net = build_network(DEFAULT, torch.device("cpu"))
    assert list(net.convs)[-1] == "block4_conv2"  # block4_conv2 content, block4_conv1 the deepest style layer


def test_a_schedule_of_countless_scales_is_refused_at_once() -> None:
    with pytest.raises(SettingsError, match="at most 32 are allowed"):
        DEFAULT.replace(scale_factor=1 + 1e-12)
    assert DEFAULT.scale_count() == len(DEFAULT.scale_sizes()) == 2


def test_a_loss_that_overflows_is_an_error_not_a_result() -> None:
    from painterly.samples import demo_paths

    content, style = demo_paths()
    with pytest.raises(SettingsError, match="loss is not finite"):
        stylize(content, style, TUTORIAL.replace(size=32, steps=2, content_weight=1e308, style_weight=1e308))
