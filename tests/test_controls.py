"""Creative controls: colour preservation, spatial masks, style blending, seeds, style scale, init."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from painterly import stylize
from painterly.engine import colour
from painterly.engine.images import resize_longer, to_tensor
from painterly.engine.masks import masks_from_labels, parse_colour, prepare_masks
from painterly.engine.plan import make_plan
from painterly.engine.run import prepare_images
from painterly.engine.settings import Settings
from painterly.errors import ImageError


@pytest.fixture
def settings(fast: Settings) -> Settings:
    return fast.replace(steps=3)


def _yiq(img: Image.Image) -> torch.Tensor:
    return colour.rgb_to_yiq(to_tensor(img).double())


# -- colour -------------------------------------------------------------------------------------


def test_yiq_round_trip() -> None:
    rgb = torch.rand(1, 3, 5, 5, dtype=torch.float64) * 255
    assert torch.allclose(colour.yiq_to_rgb(colour.rgb_to_yiq(rgb)), rgb)
    gray = torch.full((1, 3, 2, 2), 77.0, dtype=torch.float64)
    assert torch.allclose(colour.rgb_to_yiq(gray)[:, 1:], torch.zeros(1, 2, 2, 2, dtype=torch.float64), atol=1e-4)


def test_luminance_mode_keeps_the_contents_chroma(content_img, style2_img, settings: Settings) -> None:
    result = stylize(content_img, style2_img, settings.replace(colour="luminance"))
    content = resize_longer(content_img, settings.size)  # what the run saw
    out, want = _yiq(result.image), _yiq(content)
    assert (out[:, 1:] - want[:, 1:]).abs().mean() < 0.5  # I and Q: the content's
    assert (out[:, 1:] - want[:, 1:]).abs().max() < 4  # (rounding to 8 bits and clamping)
    assert (out[:, :1] - want[:, :1]).abs().mean() > 1  # Y: painted


def test_without_colour_mode_the_chroma_changes(content_img, style2_img, settings: Settings) -> None:
    result = stylize(content_img, style2_img, settings)
    out, want = _yiq(result.image), _yiq(resize_longer(content_img, settings.size))
    assert (out[:, 1:] - want[:, 1:]).abs().mean() > 1


def _correlated(seed: int, mean: list[float], mix: list[list[float]], n: int = 40 * 30) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.tensor(mix, dtype=torch.float64) @ torch.randn(3, n, generator=g, dtype=torch.float64)
    return (pixels + torch.tensor(mean, dtype=torch.float64)[:, None]).reshape(1, 3, 30, 40)


def _stats(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    p = img.reshape(3, -1)
    mean = p.mean(1)
    centred = p - mean[:, None]
    return mean, centred @ centred.T / p.shape[1]


def test_match_histogram_matches_mean_and_covariance() -> None:
    # Both images stay well inside 0..255, so the final clamp changes nothing.
    style = _correlated(0, [90, 140, 160], [[12, 3, 0], [2, 9, 1], [0, 4, 10]])
    content = _correlated(1, [150, 110, 70], [[8, -2, 1], [1, 11, 0], [3, 2, 6]])
    assert style.min() > 0 and style.max() < 255 and content.min() > 0 and content.max() < 255
    matched = colour.match_histogram(style, content)
    assert matched.shape == style.shape and matched.dtype == style.dtype
    assert 0 < matched.min() and matched.max() < 255
    m_mean, m_cov = _stats(matched)
    c_mean, c_cov = _stats(content)
    assert torch.allclose(m_mean, c_mean, atol=1e-9)
    assert torch.allclose(m_cov, c_cov, atol=1e-3)
    assert not torch.allclose(_stats(style)[1], c_cov, atol=1)


def test_match_histogram_is_one_linear_map_of_the_colours() -> None:
    # Every pixel goes through the same affine map, so the style's structure is kept.
    style = _correlated(2, [100, 100, 100], [[10, 2, 0], [0, 10, 3], [1, 0, 10]])
    content = _correlated(3, [120, 120, 120], [[20, 0, 0], [5, 20, 0], [0, 0, 20]])
    matched = colour.match_histogram(style, content)
    x = style.reshape(3, -1) - style.reshape(3, -1).mean(1, keepdim=True)
    y = matched.reshape(3, -1) - matched.reshape(3, -1).mean(1, keepdim=True)
    a = y @ torch.linalg.pinv(x)
    assert torch.allclose(a @ x, y, atol=1e-6)
    assert torch.allclose(a, torch.tril(a))  # Cholesky factors: lower triangular


def test_match_histogram_stays_on_the_images_device() -> None:
    # The meta device stands in for a GPU: it runs the same code and refuses CPU operands alike.
    style = torch.empty(1, 3, 8, 8, device="meta")
    content = torch.empty(1, 3, 8, 8, device="meta")
    assert colour.match_histogram(style, content).device.type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_histogram_mode_on_cuda(content_img, style2_img, settings: Settings) -> None:
    result = stylize(content_img, style2_img, settings.replace(colour="histogram", steps=1), device="cuda")
    assert result.device.startswith("cuda")


def test_histogram_mode_recolours_the_style_the_network_sees(content_img, style2_img, settings: Settings) -> None:
    # prepare_images is what stylize calls at every scale to make the images the network sees.
    histogram = settings.replace(colour="histogram", steps=1)
    last = make_plan(histogram, content_img.size).scales[-1]
    _, (style,), _ = prepare_images(content_img, [style2_img], "histogram", last, torch.device("cpu"), torch.float32)
    content = to_tensor(resize_longer(content_img, settings.size)).double()
    s_mean, _ = _stats(style.double())
    c_mean, _ = _stats(content)
    raw_mean, _ = _stats(to_tensor(resize_longer(style2_img, settings.size)).double())
    # Clamping to 0..255 moves the mean a little; it is far closer to the content's than before.
    assert (s_mean - c_mean).abs().max() < 3
    assert (raw_mean - c_mean).abs().max() > 10


# -- masks -------------------------------------------------------------------------------------


def test_masked_out_region_stays_close_to_the_content(content_img, style2_img, settings: Settings) -> None:
    w, h = resize_longer(content_img, settings.size).size
    mask = np.zeros((h, w), np.uint8)
    mask[:, : w // 2] = 255  # the style rules the left half only
    result = stylize(content_img, style2_img, settings, masks=[mask])
    change = (to_tensor(result.image) - to_tensor(resize_longer(content_img, settings.size))).abs()[0].mean(0)
    left, right = change[:, : w // 2 - 4].mean(), change[:, w // 2 + 4:].mean()
    assert left > 2
    assert right < 0.4 * left


def test_prepare_masks_resizes_and_normalises() -> None:
    big = np.zeros((100, 150), np.uint8)
    big[:, :75] = 255
    everywhere = np.full((20, 20), 255, np.uint8)  # another size and shape: resized
    left, full = prepare_masks([big, everywhere], 2, (48, 32))
    assert left.shape == full.shape == (1, 1, 32, 48)
    assert left.dtype == torch.float32 and 0 <= left.min() and left.max() <= 1
    assert left[..., :20].mean() > 0.45 and left[..., 28:].max() < 0.05  # soft edge, right side empty
    assert torch.all(left + full <= 1 + 1e-6)  # overlapping masks share a pixel
    assert torch.allclose(full[..., 28:], torch.ones(1, 1, 32, 20))  # alone on the right: all of it


def test_mask_count_must_match_the_styles() -> None:
    mask = np.full((32, 48), 255, np.uint8)
    with pytest.raises(ImageError, match="2 masks for 1 style"):
        prepare_masks([mask, mask], 1, (48, 32))


def test_empty_mask_is_refused(content_img, style_img, settings: Settings) -> None:
    with pytest.raises(ImageError, match="empty"):
        prepare_masks([np.zeros((32, 48), np.uint8)], 1, (48, 32))
    with pytest.raises(ImageError, match="empty"):
        stylize(content_img, style_img, settings, masks=[np.zeros((32, 48), np.uint8)])


def test_masks_from_labels() -> None:
    labels = np.zeros((32, 48, 3), np.uint8)
    labels[:, :24] = (255, 0, 0)
    labels[:, 24:] = (0, 0, 250)  # within the tolerance of pure blue
    red, blue = masks_from_labels(labels, ["red", "0,0,255"])
    assert np.asarray(red)[:, :24].min() == 255 and np.asarray(red)[:, 24:].max() == 0
    assert np.asarray(blue)[:, 24:].min() == 255 and np.asarray(blue)[:, :24].max() == 0
    with pytest.raises(ImageError, match="appears nowhere"):
        masks_from_labels(labels, ["red", "#00ff00"])


@pytest.mark.parametrize("text", ["notacolour", "300,0,0", "1,2", "a,b,c", "#12345"])
def test_bad_colour_strings(text: str) -> None:
    with pytest.raises(ImageError, match="is not a colour"):
        parse_colour(text)
    with pytest.raises(ImageError, match="is not a colour"):
        masks_from_labels(np.zeros((32, 48, 3), np.uint8), [text])


def test_colour_strings() -> None:
    assert parse_colour("#ff0000") == (255, 0, 0)
    assert parse_colour("blue") == (0, 0, 255)
    assert parse_colour("0,128,255") == (0, 128, 255)


def _one_error_line(code: int, stderr: str) -> str:
    lines = stderr.splitlines()
    assert code != 0 and len(lines) == 1 and lines[0].startswith("painterly: error:"), stderr
    return lines[0]


def test_cli_mask_errors(cli, tmp_path: Path, broken: dict[str, Path], content_path: Path, style_path: Path,
                         fast_args: list[str]) -> None:
    out = tmp_path / "out.png"
    base = [content_path, style_path, "-o", out, *fast_args]
    line = _one_error_line(*cli([*base, "--mask", broken["truncated_png"]])[::2])
    assert "truncated" in line
    line = _one_error_line(*cli([*base, "--mask", broken["not_an_image"]])[::2])
    assert "not an image" in line
    good = tmp_path / "mask.png"
    Image.new("L", (48, 32), 255).save(good)
    line = _one_error_line(*cli([*base, "--mask", good, good])[::2])
    assert "one --mask file per style" in line
    labels = tmp_path / "labels.png"
    Image.new("RGB", (48, 32), (255, 0, 0)).save(labels)
    line = _one_error_line(*cli([*base, "--mask-labels", labels, "--mask-colours", "green"])[::2])
    assert "appears nowhere" in line
    line = _one_error_line(*cli([*base, "--mask-labels", labels, "--mask-colours", "reddish"])[::2])
    assert "not a colour" in line
    assert not out.exists()


def test_cli_empty_mask(cli, tmp_path: Path, content_path: Path, style_path: Path, fast_args: list[str]) -> None:
    black = tmp_path / "black.png"
    Image.new("L", (48, 32), 0).save(black)
    out = tmp_path / "out.png"
    code, _, err = cli([content_path, style_path, "-o", out, *fast_args, "--mask", black])
    assert code != 0 and not out.exists() and "empty" in err.splitlines()[-1]
    _one_error_line(code, err)  # fails: "painterly: chelsea.png in the style of ..." comes first


def test_cli_mask_labels_run(cli, tmp_path: Path, content_path: Path, style_path: Path, style2_path: Path,
                             fast_args: list[str]) -> None:
    labels = tmp_path / "labels.png"
    img = Image.new("RGB", (64, 43), (255, 0, 0))
    img.paste((0, 0, 255), (32, 0, 64, 43))
    img.save(labels)
    out = tmp_path / "out.png"
    code, _, err = cli([content_path, style_path, style2_path, "-o", out, *fast_args, "--steps", "1",
                        "--mask-labels", labels, "--mask-colours", "red", "blue"])
    assert code == 0, err
    assert Image.open(out).size == (48, 32)


# -- blending, seeds, style scale, init ----------------------------------------------------------


def test_blend_weights_one_and_zero_equal_the_single_style(content_img, style_img, style2_img,
                                                           settings: Settings) -> None:
    single = stylize(content_img, style_img, settings)
    blended = stylize(content_img, [style_img, style2_img], settings.replace(style_blend_weights=(1.0, 0.0)))
    assert np.array_equal(np.asarray(blended.image), np.asarray(single.image))
    assert [h["total"] for h in blended.history] == [h["total"] for h in single.history]


def test_blend_weights_matter(content_img, style_img, style2_img, settings: Settings) -> None:
    a = stylize(content_img, [style_img, style2_img], settings.replace(style_blend_weights=(1.0, 0.0), steps=1))
    b = stylize(content_img, [style_img, style2_img], settings.replace(style_blend_weights=(0.0, 1.0), steps=1))
    assert a.history[0]["style"] != b.history[0]["style"]


def test_noise_init_follows_the_seed(content_img, style_img, settings: Settings) -> None:
    # One step: the result is the start image, the only one evaluated.
    def run(seed: int) -> np.ndarray:
        return np.asarray(stylize(content_img, style_img, settings.replace(init="noise", seed=seed, steps=1)).image)

    first, again, other = run(7), run(7), run(8)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.std() > 50  # noise, not the photo
    assert np.abs(first.astype(int) - np.asarray(resize_longer(content_img, 48))).mean() > 40


def test_style_scale_changes_the_style_size(content_img, style_img, settings: Settings) -> None:
    sizes: list[tuple[int, ...]] = []
    for scale in (1.0, 2.0, 0.5):
        last = make_plan(settings.replace(style_scale=scale), content_img.size).scales[-1]
        _, (style,), _ = prepare_images(content_img, [style_img], "none", last, torch.device("cpu"), torch.float32)
        sizes.append(tuple(style.shape[-2:]))
    # The Great Wave is 64x44: longer side 48, then 96, then the 32 px floor (not 24).
    assert sizes == [(33, 48), (66, 96), (22, 32)]


def test_init_from_a_file(tmp_path: Path, content_img, style_img, settings: Settings) -> None:
    start = tmp_path / "start.png"
    pattern = np.zeros((40, 60, 3), np.uint8)
    pattern[:, :30] = (200, 30, 30)
    Image.fromarray(pattern).save(start)
    result = stylize(content_img, style_img, settings.replace(init=str(start), steps=1))
    expected = Image.fromarray(pattern).resize((48, 32), Image.LANCZOS)
    assert np.array_equal(np.asarray(result.image), np.asarray(expected))


def test_init_style(content_img, style_img, settings: Settings) -> None:
    result = stylize(content_img, style_img, settings.replace(init="style", steps=1))
    wave = to_tensor(resize_longer(style_img, 48))
    assert result.image.size == (48, 32)
    # The style (48x33) resized to the content's 48x32 is the start image.
    assert np.abs(np.asarray(result.image).astype(float).mean() - float(wave.mean())) < 3
