"""Optical flow, warping and the reliability mask (painterly.video.flow), on small generated frames."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

pytest.importorskip("cv2")

from painterly.video.flow import dis_flow, flow_pair, reliability, resize_flow, warp

PHOTO = Path(__file__).parents[1] / "painterly" / "examples" / "content" / "chelsea.jpg"


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """The bundled cat photo at 112x75: enough texture for flow, small enough to be quick."""
    img = Image.open(PHOTO).convert("RGB")
    return img.resize((img.width // 4, img.height // 4), Image.LANCZOS)


def crop(img: Image.Image, x: int, y: int, w: int = 72, h: int = 48) -> Image.Image:
    return img.crop((x, y, x + w, y + h))


@pytest.mark.parametrize("preset", ["fast", "medium"])
@pytest.mark.parametrize("dx, dy", [(3, -2), (-1, 4)])
def test_dis_recovers_a_known_translation_within_half_a_pixel(photo, preset, dx, dy):
    # Frame b is frame a's view moved by (-dx, -dy): a point at x in a is at x + (dx, dy) in b.
    a, b = crop(photo, 10, 10), crop(photo, 10 - dx, 10 - dy)
    flow = dis_flow(a, b, preset)
    assert flow.shape == (1, 2, 48, 72) and flow.dtype == torch.float32
    inner = flow[0, :, 6:-6, 6:-6]  # points near the border leave the other frame
    error = ((inner[0] - dx).square() + (inner[1] - dy).square()).sqrt()
    assert error.median() < 0.1
    assert torch.quantile(error.flatten(), 0.95) < 0.5


def test_warp_with_an_integer_flow_is_a_shift():
    image = torch.arange(2 * 6 * 8, dtype=torch.float32).view(1, 2, 6, 8)
    flow = torch.zeros(1, 2, 6, 8)
    flow[:, 0], flow[:, 1] = 2.0, -1.0  # out(x, y) = image(x + 2, y - 1)
    out = warp(image, flow)
    # grid_sample works in [-1, 1] coordinates: integer shifts come back within float32 rounding.
    assert torch.allclose(out[..., 1:, :6], image[..., :-1, 2:], atol=1e-4)
    assert torch.allclose(out[..., 0, :6], image[..., 0, 2:], atol=1e-4)  # y - 1 < 0 takes the border row


def test_warp_half_a_pixel_is_the_mean_of_neighbours():
    image = torch.tensor([[[[0.0, 10.0, 30.0]]]])
    flow = torch.zeros(1, 2, 1, 3)
    flow[:, 0] = 0.5
    assert torch.allclose(warp(image, flow)[0, 0, 0, :2], torch.tensor([5.0, 20.0]))


def test_warp_is_differentiable_in_the_image():
    torch.manual_seed(0)
    image = torch.rand(1, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    flow = (torch.rand(1, 2, 5, 6, dtype=torch.float64) - 0.5) * 3
    assert torch.autograd.gradcheck(lambda x: warp(x, flow), (image,))


def test_warp_refuses_a_flow_of_another_size():
    with pytest.raises(ValueError, match="differ in size"):
        warp(torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 4, 5))


def square_flows(h=40, w=40, top=14, left=10, side=12, d=6):
    """Flows of a square that moves right by ``d`` over a still background (exact, not estimated)."""
    backward = torch.zeros(1, 2, h, w)  # current -> previous: the square's pixels came from d to the left
    forward = torch.zeros(1, 2, h, w)  # previous -> current
    backward[0, 0, top:top + side, left + d:left + d + side] = -d
    forward[0, 0, top:top + side, left:left + side] = d
    return backward, forward


def test_mask_is_zero_where_the_moving_square_uncovered_the_background():
    backward, forward = square_flows()
    mask = reliability(backward, forward)[0, 0]
    assert mask.shape == (40, 40)
    assert torch.all(mask[14:26, 10:16] == 0)  # hidden by the square in the previous frame
    assert torch.all(mask[:10] == 1) and torch.all(mask[30:] == 1)  # the still background away from it
    assert torch.all(mask[16:24, 18:26] == 1)  # the square's inside moves consistently
    assert torch.all(mask[16:24, 27:29] == 0)  # its right edge: a motion boundary


def test_mask_is_zero_on_an_occluded_square_found_by_dis(photo):
    # A textured square (a piece of the photo's other half) slides 6 px right over the still photo.
    background = crop(photo, 4, 4, 64, 48)
    patch = crop(photo, 40, 20, 16, 16).transpose(Image.Transpose.ROTATE_90)
    previous, current = background.copy(), background.copy()
    previous.paste(patch, (16, 16))
    current.paste(patch, (22, 16))
    mask = reliability(*flow_pair(current, previous))[0, 0]
    uncovered = mask[18:30, 17:21]  # in the previous frame these were under the square
    assert uncovered.mean() < 0.25
    assert mask[:, 46:58].mean() > 0.9 and mask[36:, :].mean() > 0.9


def test_mask_is_zero_where_the_flow_leaves_the_frame():
    backward = torch.zeros(1, 2, 8, 10)
    backward[:, 0] = -3.0  # a pan: each pixel came from 3 px to the left
    forward = torch.zeros(1, 2, 8, 10)
    forward[:, 0] = 3.0
    mask = reliability(backward, forward)[0, 0]
    assert torch.all(mask[:, :3] == 0) and torch.all(mask[:, 3:] == 1)


def test_resize_flow_scales_the_vectors():
    flow = torch.ones(1, 2, 10, 20)
    out = resize_flow(flow, (10, 20))  # (w, h): half as wide, twice as tall
    assert out.shape == (1, 2, 20, 10)
    assert torch.allclose(out[:, 0], torch.full((1, 20, 10), 0.5))
    assert torch.allclose(out[:, 1], torch.full((1, 20, 10), 2.0))
