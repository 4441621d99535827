"""The GPU path: the same runs on CUDA as on the CPU, in fp32 and bf16. Skipped without a CUDA GPU.

The CPU tests pin ``device='cpu'``; these run the engine, the optimizers and the command line on
``cuda`` and compare with the CPU where the numbers should agree. cuDNN computes fp32 convolutions
in TF32 by default (as TensorFlow does on the same GPUs), so the CPU's numbers are checked with
TF32 on (loosely) and off (closely).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from painterly import DEFAULT, TUTORIAL, stylize
from painterly.engine import optimize
from painterly.engine.optimize import PixelLBFGS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

#: The tutorial's layers and weights at 64 px: every layer the real runs use, a second or two per run.
TINY = TUTORIAL.replace(size=64, steps=12, start_size=0)


def _losses(result) -> list[float]:
    return [h["total"] for h in result.history]


def test_cuda_fp32_follows_the_cpu(content_img: Image.Image, style_img: Image.Image,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = stylize(content_img, style_img, TINY.replace(precision="fp32"), device="cpu")
    gpu = stylize(content_img, style_img, TINY.replace(precision="fp32"), device="cuda")
    assert gpu.device.startswith("cuda") and gpu.precision == "fp32"
    assert torch.backends.cudnn.benchmark  # set by the run: one input size per scale
    assert gpu.image.size == cpu.image.size
    assert _losses(gpu) == pytest.approx(_losses(cpu), rel=2e-2)  # TF32 convolutions, cuDNN's default
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    strict = stylize(content_img, style_img, TINY.replace(precision="fp32"), device="cuda")
    assert _losses(strict) == pytest.approx(_losses(cpu), rel=1e-3)


def test_cuda_bf16_within_two_percent_of_fp32(content_img: Image.Image, style_img: Image.Image) -> None:
    fp32 = stylize(content_img, style_img, TINY.replace(precision="fp32"), device="cuda")
    bf16 = stylize(content_img, style_img, TINY.replace(precision="bf16"), device="cuda")
    assert bf16.precision == "bf16"
    assert bf16.history[-1]["total"] == pytest.approx(fp32.history[-1]["total"], rel=0.02)


def test_auto_precision_on_cuda_is_bf16_where_supported(content_img: Image.Image, style_img: Image.Image) -> None:
    result = stylize(content_img, style_img, TINY.replace(precision="auto", steps=1), device="cuda")
    assert result.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")


def test_cuda_default_preset_multiscale_lbfgs(content_img: Image.Image, style_img: Image.Image) -> None:
    settings = DEFAULT.replace(size=96, start_size=48, scale_factor=2.0, steps=20)
    result = stylize(content_img, style_img, settings, device="cuda")
    assert max(result.image.size) == 96
    scales = sorted({h["scale"] for h in result.history})
    assert scales == [0, 1]
    losses = _losses(result)
    assert losses[-1] < losses[0] * 0.5


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_cuda_graphs_replay_the_eager_steps(content_img: Image.Image, style_img: Image.Image,
                                            monkeypatch: pytest.MonkeyPatch, optimizer: str, precision: str) -> None:
    replays: list[tuple[int, ...]] = []
    original = optimize.GraphedGradient.__call__

    def spy(self, image):
        replays.append(tuple(image.shape))
        return original(self, image)

    monkeypatch.setattr(optimize.GraphedGradient, "__call__", spy)
    lr = 1.0 if optimizer == "lbfgs" else 5.0
    settings = TINY.replace(precision=precision, optimizer=optimizer, lr=lr, steps=8, start_size=32, scale_factor=2.0)
    graphed = stylize(content_img, style_img, settings, device="cuda")
    assert len(replays) == 16 and len(set(replays)) == 2  # every step of both scales, one graph per size
    eager = stylize(content_img, style_img, settings, device="cuda", cuda_graphs="off")
    assert len(replays) == 16  # off: no replays
    assert _losses(graphed) == pytest.approx(_losses(eager), rel=1e-3)
    assert max(graphed.image.size) == 64


@pytest.mark.parametrize("compact", [False, True], ids=["two-loop", "compact"])
def test_pixel_lbfgs_on_cuda_takes_the_cpu_steps(compact: bool) -> None:
    torch.manual_seed(0)
    a = torch.randn(40, 40, dtype=torch.float64)
    target = torch.randn(40, dtype=torch.float64)

    def run(device: str) -> torch.Tensor:
        x = torch.zeros(40, dtype=torch.float64, device=device, requires_grad=True)
        opt = PixelLBFGS([x], history_size=5, max_step=0.5, compact=compact if device == "cuda" else False)
        aa, tt = a.to(device), target.to(device)

        def closure():
            opt.zero_grad()
            r = aa @ (x - tt)
            loss = (r**2).sum() + 0.05 * (r**4).sum()
            loss.backward()
            return loss

        for _ in range(20):
            opt.step(closure)
        return x.detach().cpu()

    assert torch.allclose(run("cuda"), run("cpu"), rtol=1e-7, atol=1e-7)


def test_cuda_masks_colour_and_two_styles(content_img: Image.Image, style_img: Image.Image,
                                          style2_img: Image.Image) -> None:
    w, h = content_img.size
    left = Image.new("L", (w, h), 0)
    left.paste(255, (0, 0, w // 2, h))
    right = Image.eval(left, lambda v: 255 - v)
    for colour in ("luminance", "histogram"):
        result = stylize(content_img, [style_img, style2_img], TINY.replace(steps=3, colour=colour), device="cuda",
                         masks=[left, right])
        assert result.device.startswith("cuda") and max(result.image.size) == 64


def test_cli_on_cuda(cli, tmp_path: Path, content_path: Path, style_path: Path) -> None:
    out = tmp_path / "out.png"
    code, _, err = cli([content_path, style_path, "-o", out, "--size", "64", "--steps", "3", "--device", "cuda", "-q"])
    assert code == 0, err
    assert Image.open(out).size[0] == 64
