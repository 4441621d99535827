"""The palette start: the photo in the artwork's colours, its tones kept in order."""

from __future__ import annotations

import pytest
import torch

from painterly.engine.colour import luminance, rgb_to_yiq, yiq_to_rgb
from painterly.engine.palette import SPAN_LEVELS, SPAN_QUANTILES, SPAN_SHARE, tone_palette
from painterly.engine.run import first_image
from painterly.engine.settings import DEFAULT, DEMO, QUALITY, TUTORIAL


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _photo() -> torch.Tensor:
    """A light left half and a dark right half with noise: 32x48, mostly light (a white cup on a table)."""
    image = torch.full((1, 3, 32, 48), 40.0)
    image[..., :36] = 210.0
    image[:, 0, :, :36] += 20.0  # the light part a little red
    return (image + 20 * _rand(1, 3, 32, 48)).clamp(0, 255)


def _artwork() -> torch.Tensor:
    """Mostly dark blue with a few light yellow pixels (a night sky with stars): 40x40."""
    image = torch.empty(1, 3, 40, 40)
    image[:, 0], image[:, 1], image[:, 2] = 20.0, 30.0, 110.0
    stars = _rand(40, 40, seed=1) < 0.25
    image[:, 0][0, stars], image[:, 1][0, stars], image[:, 2][0, stars] = 240.0, 220.0, 90.0
    return (image + 10 * _rand(1, 3, 40, 40, seed=2)).clamp(0, 255)


def _ranks(values: torch.Tensor) -> torch.Tensor:
    order = values.flatten().argsort()
    ranks = torch.empty(values.numel())
    ranks[order] = torch.arange(values.numel(), dtype=torch.float32)
    return ranks


def test_the_photos_tone_order_is_kept() -> None:
    photo = _photo()
    out = tone_palette(photo, [_artwork()])
    y_photo, y_out = luminance(photo).flatten(), luminance(out).flatten()
    # Monotone: every pair of pixels keeps its order (ties allowed), so the rank correlation is near 1.
    r_photo, r_out = _ranks(y_photo), _ranks(y_out)
    assert torch.corrcoef(torch.stack([r_photo, r_out]))[0, 1] > 0.99
    # The photo's light half stays the lighter one although the artwork is mostly dark.
    assert luminance(out)[..., :36].mean() > luminance(out)[..., 36:].mean() + 50


def test_the_luminance_takes_the_artworks_distribution() -> None:
    art = _artwork()
    out = tone_palette(_photo(), [art])
    q = torch.tensor([0.1, 0.25, 0.5, 0.65, 0.85, 0.9])  # not at the jump to the stars (0.75)
    assert torch.allclose(luminance(out).flatten().quantile(q), luminance(art).flatten().quantile(q), atol=6.0)


def test_the_chroma_is_the_artworks_at_each_tone() -> None:
    """Dark pixels take the sky's blue, light ones the stars' yellow, whatever the photo's hues were."""
    photo = _photo()
    out = tone_palette(photo, [_artwork()]).reshape(3, -1)
    y = luminance(photo).flatten()
    # The artwork is a quarter stars: the photo's lightest fifth takes their yellow, its darker half the sky's blue.
    light, dark = out[:, y > y.quantile(0.8)].mean(dim=1), out[:, y < y.quantile(0.5)].mean(dim=1)
    assert dark[2] > dark[0] + 40  # blue over red
    assert light[0] > light[2] + 60  # yellow: red and green over blue
    assert light[1] > light[2] + 60


def test_the_photos_own_chroma_varies_around_the_artworks() -> None:
    """Two regions of one tone and different hues stay apart, with the artwork's hue at that tone between them."""
    photo = torch.full((1, 3, 20, 40), 128.0)
    yiq = rgb_to_yiq(photo)
    yiq[:, 1, :, :20], yiq[:, 1, :, 20:] = 30.0, -30.0
    photo = yiq_to_rgb(yiq + _rand(1, 3, 20, 40) - 0.5)
    art = rgb_to_yiq(_artwork())
    art[:, 1] += 20 * _rand(1, 40, 40, seed=3)  # some spread of I at every tone
    out = rgb_to_yiq(tone_palette(photo, [yiq_to_rgb(art).clamp(0, 255)]))
    assert out[:, 1, :, :20].mean() > out[:, 1, :, 20:].mean() + 5


def test_several_artworks_pool_their_palettes() -> None:
    light = torch.full((1, 3, 16, 16), 230.0)
    dark = torch.full((1, 3, 16, 16), 20.0)
    out = tone_palette(_photo(), [light, dark])
    assert out.min() < 40 and out.max() > 210


def test_a_flat_artwork_paints_its_colour_with_the_photos_shapes_in_tone() -> None:
    art = torch.tensor([200.0, 60.0, 30.0]).view(1, 3, 1, 1).expand(1, 3, 24, 24).contiguous()
    photo = _photo()
    out = tone_palette(photo, [art])
    # Its one hue everywhere: chroma within a few levels of the artwork's (a little off where red clips at 255)...
    off = (rgb_to_yiq(out)[:, 1:] - rgb_to_yiq(art)[:, 1:, :1, :1]).abs()
    assert off.mean() < 3 and off.max() < 10
    # ...and the photo's light and dark halves apart in tone, by the floor of span (64 levels at most).
    y = luminance(out)
    assert 50 < y[..., :36].mean() - y[..., 36:].mean() < 75


def _span(y: torch.Tensor) -> float:
    low, high = y.flatten().quantile(torch.tensor(SPAN_QUANTILES)).tolist()
    return high - low


def _narrow(level: float, speck: float, seed: int = 4) -> torch.Tensor:
    """Nine tenths within a few levels of ``level``, a few specks of ``speck``: 40x40. Near black with bright
    specks, the Hubble deep field; near white with dark ones, a drawing on white paper."""
    image = level + 10 * _rand(1, 3, 40, 40, seed=seed)
    specks = _rand(40, 40, seed=seed + 1) < 0.05
    image[:, :, specks] = speck
    return image


@pytest.mark.parametrize("contrast", [1.0, 0.4])
@pytest.mark.parametrize("artwork", ["dark", "pale"])
def test_an_artwork_of_narrow_tones_keeps_the_photos_subject_visible(artwork: str, contrast: float) -> None:
    """The photo is not squeezed into the artwork's few levels: its tones span half the photo's, or
    SPAN_LEVELS when that is less, in their order; the picture stays as dark (or as pale) as the artwork."""
    photo = 128 + contrast * (_photo() - 128)
    art = _narrow(8.0, 230.0) if artwork == "dark" else _narrow(236.0, 40.0)
    assert _span(luminance(art)) < 20
    out = tone_palette(photo, [art])
    y_photo, y_out, y_art = luminance(photo), luminance(out), luminance(art)
    wanted = min(SPAN_SHARE * _span(y_photo), SPAN_LEVELS)
    assert _span(y_out) == pytest.approx(wanted, abs=3.0)
    r_photo, r_out = _ranks(y_photo), _ranks(y_out)
    assert torch.corrcoef(torch.stack([r_photo, r_out]))[0, 1] > 0.99
    if artwork == "dark":
        assert y_out.mean() < y_photo.mean() - 40
        assert y_out.flatten().quantile(0.1) < y_art.flatten().quantile(0.1) + 2
    else:
        assert y_out.mean() > y_photo.mean() + 40
        assert y_out.flatten().quantile(0.9) > y_art.flatten().quantile(0.9) - 8


def test_an_artwork_of_ordinary_range_is_matched_as_before() -> None:
    """The floor of span changes nothing where the artwork spans enough: the matched luminance is the
    artwork's at every quantile, as without it."""
    art, photo = _artwork(), _photo()
    assert _span(luminance(art)) > SPAN_LEVELS
    out = tone_palette(photo, [art])
    q = torch.linspace(0.02, 0.7, 12)  # below the jump to the stars
    assert torch.allclose(luminance(out).flatten().quantile(q), luminance(art).flatten().quantile(q), atol=6.0)


def test_the_default_presets_start_from_the_palette_and_the_tutorial_from_the_photo() -> None:
    assert DEFAULT.init == DEMO.init == QUALITY.init == "palette"
    assert TUTORIAL.init == "content"
    photo, art = _photo(), _artwork()
    start = first_image(DEFAULT, None, photo, [art], (48, 32), torch.device("cpu"))
    assert torch.equal(start, tone_palette(photo, [art]))
    assert torch.equal(first_image(TUTORIAL, None, photo, [art], (48, 32), torch.device("cpu")), photo)


def test_strength_zero_starts_from_the_photo_itself() -> None:
    """No artwork is painted at strength 0, so the palette start would only be a recolouring to undo."""
    photo, art = _photo(), _artwork()
    start = first_image(DEFAULT.replace(strength=0.0), None, photo, [art], (48, 32), torch.device("cpu"))
    assert torch.equal(start, photo)


def test_low_strengths_mix_the_palette_start_with_the_photo() -> None:
    """The low end of the dial is the photo with the artwork's texture: below strength 0.4 the start is
    the photo and its palette version mixed, the palette's share the square of the strength's fraction of 0.4."""
    photo, art = _photo(), _artwork()
    palette = tone_palette(photo, [art])
    for strength, share in ((0.1, 0.0625), (0.3, 0.5625), (0.4, 1.0), (0.9, 1.0)):
        start = first_image(DEFAULT.replace(strength=strength), None, photo, [art], (48, 32), torch.device("cpu"))
        assert torch.allclose(start, photo + share * (palette - photo), atol=1e-4), strength
    raw = DEFAULT.replace(content_weight=1.0, style_weight=1.0)  # raw weights: strength off, the full palette
    assert torch.equal(first_image(raw, None, photo, [art], (48, 32), torch.device("cpu")), palette)
