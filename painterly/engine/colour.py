"""Colour control (Gatys et al. 2016, "Preserving Color in Neural Artistic Style Transfer").

Two ways to keep the content photo's colours:

* ``luminance``: transfer on luminance only. The style's luminance is matched to the content's mean
  and spread, both run as gray images, then the content's colour channels are put back.
* ``histogram``: recolour the style image so its colour mean and covariance equal the content's,
  then run as usual.

Tensors are (1, 3, H, W) RGB in 0..255. YIQ is the colour space the paper uses.
"""

from __future__ import annotations

import torch

# RGB -> YIQ (NTSC); rows give Y, I, Q.
_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]]
)


def rgb_to_yiq(image: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB -> YIQ, same scale (Y in 0..255)."""
    return torch.einsum("ij,njhw->nihw", _RGB_TO_YIQ.to(image), image)


def yiq_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_yiq`."""
    return torch.einsum("ij,njhw->nihw", torch.linalg.inv(_RGB_TO_YIQ.double()).to(image), image)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB -> (N, 1, H, W) luminance Y."""
    return rgb_to_yiq(image)[:, :1]


def gray_as_rgb(y: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) luminance -> (N, 3, H, W) gray RGB, for the network."""
    return y.expand(-1, 3, -1, -1).clamp(0, 255).contiguous()


def combine_luminance(result_y: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Result luminance (N, 1, H, W) with the content's I and Q -> (N, 3, H, W) RGB."""
    iq = rgb_to_yiq(content)[:, 1:]
    return yiq_to_rgb(torch.cat([result_y, iq], dim=1)).clamp(0, 255)


def match_histogram(style: torch.Tensor, content: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Recolour ``style`` so its RGB mean and covariance equal ``content``'s (linear map, Cholesky).

    With ``x`` the style's pixels, ``x' = A (x - mu_s) + mu_c`` where ``A = L_c L_s^-1`` and
    ``L`` are the Cholesky factors of the covariances, so ``cov(x') = cov_c`` exactly.
    """
    def stats(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pixels = img.double().reshape(3, -1)
        mean = pixels.mean(dim=1, keepdim=True)
        centred = pixels - mean
        cov = centred @ centred.T / pixels.shape[1] + eps * torch.eye(3, dtype=torch.float64, device=img.device)
        return pixels, mean, cov

    s_pixels, s_mean, s_cov = stats(style)
    _, c_mean, c_cov = stats(content)
    transform = torch.linalg.cholesky(c_cov) @ torch.linalg.inv(torch.linalg.cholesky(s_cov))
    out = transform @ (s_pixels - s_mean) + c_mean
    return out.reshape(style.shape).to(style.dtype).clamp(0, 255)
