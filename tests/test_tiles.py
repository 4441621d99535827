"""Exact tiling: a step cut into tiles gives the untiled loss and gradient; the planner tiles only
where memory is short and refuses what cannot fit; a tiled run paints the untiled picture."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from painterly import DEFAULT, TUTORIAL, stylize
from painterly.engine.objective import build_objective
from painterly.engine.plan import make_plan
from painterly.engine.run import build_network
from painterly.engine.settings import Machine
from painterly.engine.tiles import ALIGN, TiledGradient, TiledMeasure, halo_for, make_tiles
from painterly.errors import SettingsError

GIB = 2**30


def _rand(*shape: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    return (torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 255).to(dtype)


def _masks(h: int, w: int, dtype: torch.dtype) -> list[torch.Tensor]:
    left = torch.zeros(1, 1, h, w, dtype=dtype)
    left[..., : w // 3] = 1.0
    left[..., w // 3: w // 2] = 0.5
    return [left, 1.0 - left]


#: Every kind of term: the tutorial's Gram and content (with TV on), the relative Gram, the moments
#: term, and masked Grams of two styles.
CASES = {
    "tutorial": (TUTORIAL.replace(tv_weight=1.0), False),
    "relative": (DEFAULT.replace(style_loss="relative"), False),
    "moments": (DEFAULT, False),
    "masks": (DEFAULT.replace(style_loss="relative", style_blend_weights=(0.7, 0.3)), True),
}


def _both(case: str, dtype: torch.dtype, tile: int = 32):
    settings, masked = CASES[case]
    precision = "fp64" if dtype == torch.float64 else "fp32"
    net = build_network(settings, torch.device("cpu"), precision)
    h, w = 100, 150  # neither side a multiple of the tile or of 16: the last tiles are ragged
    content = _rand(1, 3, h, w, seed=1, dtype=dtype)
    styles = [_rand(1, 3, 80, 90, seed=2, dtype=dtype)] + ([_rand(1, 3, 70, 70, seed=3, dtype=dtype)] if masked else [])
    objective = build_objective(net, settings, content, styles, masks=_masks(h, w, dtype) if masked else None)
    image = _rand(1, 3, h, w, seed=4, dtype=dtype).requires_grad_(True)
    terms = objective(image)
    terms.total.backward()
    assert image.grad is not None
    tiled = TiledGradient(objective, (w, h), tile)
    assert len(tiled.tiles) == 20
    tiled_terms, grad = tiled(image.detach())
    return terms, image.grad, tiled_terms, grad


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))


@pytest.mark.parametrize("case", list(CASES))
def test_tiled_loss_and_gradient_equal_untiled_in_fp64(case: str) -> None:
    terms, grad, tiled_terms, tiled_grad = _both(case, torch.float64)
    for name, value in terms.parts.items():
        assert float(tiled_terms.parts[name]) == pytest.approx(float(value.detach()), rel=1e-5, abs=1e-12), name
    assert float(tiled_terms.total) == pytest.approx(float(terms.total.detach()), rel=1e-5)
    assert _relative(tiled_grad, grad) < 1e-5


@pytest.mark.parametrize("case", ["tutorial", "relative", "masks"])
def test_tiled_loss_and_gradient_equal_untiled_in_fp32(case: str) -> None:
    terms, grad, tiled_terms, tiled_grad = _both(case, torch.float32)
    assert float(tiled_terms.total) == pytest.approx(float(terms.total.detach()), rel=1e-4)
    assert _relative(tiled_grad, grad) < 1e-4


def test_tiled_moments_in_fp32_are_as_close_to_fp64_as_untiled() -> None:
    """The moments term's eigen-solve is only as exact as float32 itself, tiled or not: compared
    with the fp64 gradient where every layer's covariance has full rank (block5 of a 368 px image:
    529 positions for 512 channels; below that, the clamped zero eigenvalues make both float32
    gradients noise, and tiles are only ever cut from large images)."""
    h = w = 368
    grads = {}
    for dtype, precision in ((torch.float64, "fp64"), (torch.float32, "fp32")):
        net = build_network(DEFAULT, torch.device("cpu"), precision)
        content = _rand(1, 3, h, w, seed=1, dtype=dtype)
        objective = build_objective(net, DEFAULT, content, [_rand(1, 3, 200, 240, seed=2, dtype=dtype)])
        image = (content * 0.5 + _rand(1, 3, h, w, seed=4, dtype=dtype) * 0.5).requires_grad_(True)
        objective(image).total.backward()
        assert image.grad is not None
        grads[precision] = image.grad
        if dtype == torch.float32:
            grads["tiled"] = TiledGradient(objective, (w, h), 128)(image.detach())[1]
    untiled, tiled = _relative(grads["fp32"], grads["fp64"]), _relative(grads["tiled"], grads["fp64"])
    assert tiled < 2 * untiled + 1e-4 and tiled < 1e-2, (tiled, untiled)


def test_tiles_cover_the_image_once_with_aligned_halos() -> None:
    assert halo_for(("block5_conv1",)) == 80 and halo_for(("block2_conv1",)) == 16
    tiles = make_tiles(100, 150, 32, 80)
    cover = np.zeros((100, 150), int)
    for t in tiles:
        y0, y1, x0, x1 = t.inner
        cover[y0:y1, x0:x1] += 1
        assert all(v % ALIGN == 0 or v in (100, 150) for v in (*t.inner, *t.outer))
        assert t.outer[0] == max(0, y0 - 80) and t.outer[3] == min(150, x1 + 80)
    assert (cover == 1).all()
    with pytest.raises(SettingsError, match="multiple of 16"):
        make_tiles(100, 100, 40, 80)


def test_tiled_targets_equal_whole_image_targets() -> None:
    net = build_network(DEFAULT, torch.device("cpu"), "fp64")
    content = _rand(1, 3, 90, 130, seed=5, dtype=torch.float64)
    style = _rand(1, 3, 120, 100, seed=6, dtype=torch.float64)
    for settings in (DEFAULT, DEFAULT.replace(style_loss="relative")):
        whole = build_objective(net, settings, content, [style])
        tiled = build_objective(net, settings, content, [style], measure=TiledMeasure(32))
        for a, b in zip(whole.terms, tiled.terms):
            targets_a = getattr(a, "targets", None)
            targets_b = getattr(b, "targets", None)
            if isinstance(targets_a, dict):
                for layer, value in targets_a.items():
                    for x, y in zip(value if isinstance(value, tuple) else (value,),
                                    targets_b[layer] if isinstance(value, tuple) else (targets_b[layer],)):
                        assert _relative(y, x) < 1e-6, (a.name, layer)  # the root: an eigen-solve
            elif isinstance(targets_a, list):
                for layer, gram in targets_a[0].grams.items():
                    assert _relative(targets_b[0].grams[layer], gram) < 1e-9, layer


# -- the planner ---------------------------------------------------------------------------------


def test_planner_tiles_only_what_does_not_fit() -> None:
    roomy = make_plan(DEFAULT.replace(size=2048), (2048, 2048), "bf16", 64 * GIB)
    assert all(s.tile == 0 for s in roomy.scales)
    tight = make_plan(DEFAULT.replace(size=4096), (4096, 4096), "bf16", 8 * GIB)
    assert tight.scales[0].tile == 0 and tight.scales[-1].tile > 0
    assert all(s.peak_bytes <= 8 * GIB for s in tight.scales)
    assert tight.scales[-1].history < tight.scales[0].history  # fewer pairs at the largest scale
    assert "tiles of" in tight.describe().splitlines()[-1]
    untiled = make_plan(DEFAULT.replace(size=4096), (4096, 4096), "bf16", None)
    assert tight.scales[-1].peak_bytes < untiled.scales[-1].peak_bytes
    big = make_plan(DEFAULT.replace(size=8192), (8192, 8192), "bf16", 16 * GIB)
    assert big.scales[-1].tile and big.scales[-1].peak_bytes <= 16 * GIB


def test_planner_follows_tile_size_and_refuses_what_cannot_fit() -> None:
    never = make_plan(DEFAULT.replace(size=4096), (4096, 4096), "bf16", 8 * GIB, tile_size=-1)
    assert all(s.tile == 0 for s in never.scales)
    # From 256 px (the default starts at 362, which tiles of 256 px cut too): a first scale no larger than the tile.
    forced = make_plan(DEFAULT.replace(size=512, start_size=256), (512, 512), "bf16", None, tile_size=256)
    assert forced.scales[-1].tile == 256 and forced.scales[-1].tiles == 4 and forced.scales[0].tile == 0
    with pytest.raises(SettingsError, match=r"needs at least .* GiB even in tiles.*at most size \d+ fits"):
        make_plan(DEFAULT.replace(size=8192), (8192, 8192), "bf16", 4 * GIB)


@pytest.mark.parametrize("field,value,match", [
    ("max_memory", -1.0, "max_memory must be a positive number"),
    ("max_memory", float("nan"), "max_memory must be a positive number"),
    ("tile_size", 100, "tile_size must be a multiple of 16"),
    ("tile_size", 32, "tile_size must be a multiple of 16 of at least 64"),
])
def test_bad_memory_settings(field: str, value: object, match: str) -> None:
    with pytest.raises(SettingsError, match=match):
        Machine(**{field: value})


# -- a whole run -----------------------------------------------------------------------------------


def test_a_tiled_run_paints_the_untiled_picture(content_img, style_img) -> None:
    # From the photo: the palette start is the same image either way, but on this 64 px photo blown up to 160 px
    # three steps from it carry the float differences of the tiled sums to 3 levels on one pixel (the demo
    # pair at 160 px: at most 1 level from either start).
    settings = DEFAULT.replace(size=160, start_size=0, steps=3, patience=0, precision="fp32", style_loss="relative",
                               init="content")
    untiled = stylize(content_img, style_img, settings, machine=Machine(device="cpu", tile_size=-1))
    tiled = stylize(content_img, style_img, settings, machine=Machine(device="cpu", tile_size=64))
    assert tiled.plan is not None and tiled.plan.scales[-1].tiles > 1
    difference = np.abs(np.asarray(untiled.image, int) - np.asarray(tiled.image, int))
    assert difference.max() <= 1
    assert tiled.best_loss == pytest.approx(untiled.best_loss, rel=1e-4)
