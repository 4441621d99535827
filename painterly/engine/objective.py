"""The objective: a list of named, weighted loss terms over the network's maps, summed in one place.

A term is a small object: a ``name``, a ``weight``, the ``layers`` it reads, its own target, and a
function of the image and the maps that returns its unweighted value. :class:`Objective` runs the
network once for all the layers its terms read and adds ``weight * value`` up; the progress
events, the history and the report show each term by its name. A new term (temporal, tile-global
style) is one new class; :func:`build_objective` makes the standard ones from the settings and the
prepared images in one step.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, cast

import torch

from .losses import (
    NEAREST_POSITIONS,
    StyleTarget,
    content_term,
    gram_matrix,
    moment_targets,
    nearest_distance,
    nearest_matches,
    pooled_positions,
    pooling_factor,
    sqrtm_psd,
    style_term,
    total_variation,
    wasserstein_term,
)
from .network import VGG19
from .settings import Settings


class Term(Protocol):
    """What the objective needs of a loss term."""

    name: str
    weight: float

    @property
    def layers(self) -> tuple[str, ...]:  # network maps the term reads (empty: the pixels only)
        ...

    def __call__(self, image: torch.Tensor, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """The unweighted loss (a float32 or float64 scalar) of ``image`` (1, 3, H, W), RGB 0..255."""
        ...


def layer_weights(layers: tuple[str, ...], weights: tuple[float, ...]) -> dict[str, float]:
    """Per-layer weights: as given, or equal and summing to 1 (the tutorial's 1/n)."""
    if weights:
        return dict(zip(layers, weights))
    return {layer: 1.0 / len(layers) for layer in layers}


@dataclass
class ContentTerm:
    """Mean squared difference of the maps to the content's, per layer, weighted."""

    targets: dict[str, torch.Tensor]  # layer -> (1, C, h, w)
    layer_weights: dict[str, float]
    weight: float
    normalized: bool = False  # relative to the target's squared norm (see content_term)
    name: str = "content"

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.layer_weights)

    def __call__(self, image: torch.Tensor, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return content_term(features, self.targets, self.layer_weights, self.normalized)


@dataclass
class StyleTerm:
    """Gram-matrix differences to the style's, per layer and region (Gatys et al.).

    ``normalized``: each layer's squared Frobenius distance is divided by its target's squared norm,
    so every layer counts by its layer weight whatever the magnitude of its maps (the tutorial's mean
    squared difference lets block4 and block5, whose maps are largest, outweigh the rest by orders of
    magnitude, and colour and fine strokes live in the shallow layers).
    """

    targets: list[StyleTarget]
    layer_weights: dict[str, float]
    weight: float
    normalized: bool = False
    name: str = "style"

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.layer_weights)

    def __call__(self, image: torch.Tensor, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return style_term(features, self.targets, self.layer_weights, self.normalized)


@dataclass
class MomentTerm:
    """Mean-and-covariance (Wasserstein-2 between Gaussians) distance of the maps to the style's."""

    targets: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # layer -> mean, covariance, its root
    layer_weights: dict[str, float]
    weight: float
    name: str = "style"

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.layer_weights)

    def __call__(self, image: torch.Tensor, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return wasserstein_term(features, self.targets, self.layer_weights)


#: Style losses whose targets are each layer's mean and covariance (nearest adds its own term beside them).
MOMENT_LOSSES = ("moments", "nearest")
#: Steps between two matchings of the nearest-neighbour term (a matching costs a few steps' worth of
#: matrix products at the finest scale; in between, the targets stay where they were).
REMATCH_EVERY = 5
#: The nearest-neighbour term's weight relative to the style weight (style_loss "nearest").
NEAREST_SHARE = 1.0


@dataclass
class NearestTerm:
    """Neural-neighbour style (after NNST, Kolkin et al. 2022): each region of the result is pulled toward
    the artwork's feature nearest to what the region holds now, so the artwork's motifs land where they
    fit the photo's layout instead of wherever a global statistic puts them.

    Per style layer, the result's maps and the artwork's are average-pooled by one whole factor to at most
    :data:`~painterly.engine.losses.NEAREST_POSITIONS` positions (the artwork's then strided to as many); every
    ``rematch_every`` calls each result position is matched to its nearest artwork position under the
    cosine distance centred on the artwork's mean, and the term is the mean centred cosine distance to
    the matched features. The matching is not differentiated (it is a target, as in NNST). Several
    artworks pool their positions together. It has no tiled form (a match reads the whole image) and is
    not captured in CUDA graphs (its targets change between calls).
    """

    styles: dict[str, list[torch.Tensor]]  # layer -> each artwork's maps (1, C, h, w)
    layer_weights: dict[str, float]
    weight: float
    rematch_every: int = REMATCH_EVERY
    name: str = "nearest"
    graph_safe = False

    def __post_init__(self) -> None:
        self._calls = 0
        self._matches: dict[str, torch.Tensor] = {}
        self._pooled: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.layer_weights)

    def __call__(self, image: torch.Tensor, features: dict[str, torch.Tensor]) -> torch.Tensor:
        rematch = self._calls % self.rematch_every == 0
        self._calls += 1
        total: torch.Tensor | None = None
        for layer, weight in self.layer_weights.items():
            f = features[layer]
            factor = pooling_factor(f.shape[-2], f.shape[-1])
            out = pooled_positions(f, factor)
            style, centre = self._style(layer, factor, out.dtype)
            matches = self._matches.get(layer)
            if rematch or matches is None or len(matches) != len(out):
                with torch.no_grad():
                    matches = self._matches[layer] = nearest_matches(out.detach(), style, centre)
            value = weight * nearest_distance(out, style[matches], centre)
            total = value if total is None else total + value
        assert total is not None, "the nearest term needs at least one layer"
        return total

    def _style(self, layer: str, factor: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The artworks' pooled positions (Q, C) at ``factor`` and their mean, made once per factor."""
        key = (layer, factor)
        if key not in self._pooled:
            rows = torch.cat([pooled_positions(m, factor) for m in self.styles[layer]]).to(dtype)
            rows = rows[:: max(1, -(-len(rows) // NEAREST_POSITIONS))]
            self._pooled[key] = (rows, rows.mean(dim=0))
        return self._pooled[key]


@dataclass
class TVTerm:
    """Total variation of the pixels: mean squared difference of neighbours."""

    weight: float
    name: str = "tv"
    layers: tuple[str, ...] = ()

    def __call__(self, image: torch.Tensor, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return total_variation(image)


@dataclass(frozen=True)
class LossTerms:
    """The weighted terms of one evaluation by name, and their sum ``total``."""

    total: torch.Tensor
    parts: dict[str, torch.Tensor]

    def floats(self) -> dict[str, float]:
        """``total`` and every term as Python floats, in one transfer from the device (one GPU sync)."""
        names = ["total", *self.parts]
        tensors = [self.total, *self.parts.values()]
        values = torch.stack([t.detach().to(self.total.dtype) for t in tensors]).cpu().tolist()
        return dict(zip(names, values))


class Objective:
    """The weighted sum of ``terms`` for an image, with the maps of ``net`` computed once per call."""

    def __init__(self, net: VGG19, terms: Sequence[Term], autocast_dtype: torch.dtype | None = None) -> None:
        names = [t.name for t in terms]
        if len(set(names)) != len(names):
            raise ValueError(f"two loss terms share a name: {names}")
        self.net = net
        self.terms = list(terms)
        self.autocast_dtype = autocast_dtype
        self.layers = tuple(dict.fromkeys(layer for t in self.terms for layer in t.layers))

    def term(self, name: str) -> Term:
        """The term called ``name``."""
        for t in self.terms:
            if t.name == name:
                return t
        raise KeyError(name)

    def features(self, image: torch.Tensor, layers: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        """The network's maps of ``image`` at ``layers`` (default: every layer a term reads)."""
        layers = self.layers if layers is None else layers
        if not layers:
            return {}
        with self._autocast(image.device):
            return self.net(image.contiguous(memory_format=torch.channels_last), layers)

    def __call__(self, image: torch.Tensor) -> LossTerms:
        feats = self.features(image)
        parts: dict[str, torch.Tensor] = {}
        total: torch.Tensor | None = None
        for t in self.terms:
            value = t.weight * t(image, feats) if t.weight else image.new_zeros(())
            parts[t.name] = value
            total = value if total is None else total + value
        assert total is not None, "an objective needs at least one term"
        return LossTerms(total, parts)

    def _autocast(self, device: torch.device):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        # Autocast's cache of cast tensors must be off while a CUDA graph is being captured.
        capturing = device.type == "cuda" and torch.cuda.is_current_stream_capturing()
        return torch.autocast(device.type, dtype=self.autocast_dtype, cache_enabled=not capturing)


class Measure:
    """How the targets are measured from an image: the whole image in one pass of the network.
    :class:`painterly.engine.tiles.TiledMeasure` measures the same things tile by tile, for images whose
    maps would not fit in memory at once."""

    def maps(self, objective: Objective, image: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """The maps of ``image`` at ``layers``, without gradients."""
        with torch.no_grad():
            return objective.features(image, layers)

    def keep(self, target: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """A content target as it is kept: in the images' dtype."""
        return target.to(dtype)

    def grams(self, objective: Objective, image: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Each layer's Gram matrix (1, C, C)."""
        feats = self.maps(objective, image, layers)
        return {layer: gram_matrix(feats[layer]) for layer in layers}

    def moments(self, objective: Objective, image: torch.Tensor,
                layers: tuple[str, ...]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Each layer's mean (C,) and covariance (C, C) over positions."""
        return moment_targets(self.maps(objective, image, layers))


WHOLE = Measure()


def style_targets(
    net: VGG19,
    settings: Settings,
    styles: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor] | None = None,
    autocast_dtype: torch.dtype | None = None,
    measure: Measure = WHOLE,
) -> list[StyleTarget]:
    """The Gram targets of ``styles`` (each (1, 3, h, w) RGB 0..255) at the style layers.

    Without masks the styles' Grams are blended by ``settings.style_blend_weights`` into one target;
    with masks (one per style, at the result's size) each style rules its own region, its loss scaled
    by its blend weight.
    """
    if not settings.style_layers:
        return []
    weights = list(settings.style_blend_weights) or [1.0] * len(styles)
    total = sum(weights)
    probe = Objective(net, [], autocast_dtype)
    grams = [measure.grams(probe, s, settings.style_layers) for s in styles]
    if masks is not None:
        return [StyleTarget(g, m, w * len(weights) / total) for g, m, w in zip(grams, masks, weights)]
    blended = {layer: cast(torch.Tensor, sum(w * g[layer] for w, g in zip(weights, grams))) / total
               for layer in grams[0]}
    return [StyleTarget(blended)]


def build_objective(
    net: VGG19,
    settings: Settings,
    content: torch.Tensor | None,
    styles: Sequence[torch.Tensor],
    *,
    masks: Sequence[torch.Tensor] | None = None,
    autocast_dtype: torch.dtype | None = None,
    extra_terms: Sequence[Term] = (),
    cache: dict | None = None,
    measure: Measure = WHOLE,
) -> Objective:
    """The objective of ``settings`` for the prepared images, its targets computed once (no grad).

    ``content``: (1, 3, H, W) RGB 0..255 at the result's size (None: no content term); ``styles``:
    the style images at their style size; ``masks``: one (1, 1, H, W) per style, or None.
    ``extra_terms`` are added after the standard ones (style, content, tv), in order. ``cache``, a
    dict kept between calls (:class:`painterly.engine.run.Engine` keeps one), holds style targets by the
    styles' pixels and everything else they depend on, so a style used again costs nothing.
    ``measure`` measures the targets (:class:`painterly.engine.tiles.TiledMeasure`: tile by tile).
    """
    probe = Objective(net, [], autocast_dtype)
    terms: list[Term] = []
    content_weight, style_weight = settings.loss_weights()
    style_weights = layer_weights(settings.style_layers, settings.style_layer_weights)
    if settings.style_layers:
        key = None if cache is None or masks is not None else _style_key(net, settings, styles, autocast_dtype)
        if key is not None and cache is not None and key in cache:
            targets = cache[key]
        elif settings.style_loss in MOMENT_LOSSES and masks is None:
            targets = _moment_targets(probe, settings, styles, measure)
        else:
            targets = style_targets(net, settings, styles, masks, autocast_dtype, measure)
        if key is not None and cache is not None:
            cache[key] = targets
        if isinstance(targets, dict):
            terms.append(MomentTerm(targets, style_weights, style_weight))
            if settings.style_loss == "nearest":
                maps = [measure.maps(probe, s, settings.style_layers) for s in styles]
                terms.append(NearestTerm({layer: [m[layer] for m in maps] for layer in settings.style_layers},
                                         style_weights, style_weight * NEAREST_SHARE))
        else:
            terms.append(StyleTerm(targets, style_weights, style_weight,
                                   normalized=settings.style_loss != "gram"))
    if settings.content_layers and content is not None:
        feats = measure.maps(probe, content, settings.content_layers)
        targets = {layer: measure.keep(feats[layer], content.dtype) for layer in settings.content_layers}
        terms.append(ContentTerm(targets, layer_weights(settings.content_layers, settings.content_layer_weights),
                                 content_weight, normalized=settings.style_loss != "gram"))
    terms.append(TVTerm(settings.tv_weight))
    terms.extend(extra_terms)
    return Objective(net, terms, autocast_dtype)


def _style_key(net: VGG19, settings: Settings, styles: Sequence[torch.Tensor],
               autocast_dtype: torch.dtype | None) -> tuple:
    digests = []
    for s in styles:
        data = s.detach().cpu().contiguous()
        digests.append((tuple(data.shape), str(data.dtype), hashlib.sha1(data.numpy().tobytes()).hexdigest()))
    return (id(net), tuple(digests), settings.style_layers, settings.style_loss in MOMENT_LOSSES,
            settings.style_blend_weights, str(autocast_dtype))


def _moment_targets(probe: Objective, settings: Settings, styles: Sequence[torch.Tensor],
                    measure: Measure) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    weights = list(settings.style_blend_weights) or [1.0] * len(styles)
    per_style = [measure.moments(probe, s, settings.style_layers) for s in styles]
    total = sum(weights)
    out = {}
    for layer in settings.style_layers:
        # A blend of styles: the mixture's mean and covariance (second moments blended, then centred).
        mean = cast(torch.Tensor, sum(w * m[layer][0] for w, m in zip(weights, per_style))) / total
        second = sum(w * (m[layer][1] + torch.outer(m[layer][0], m[layer][0])) for w, m in zip(weights, per_style))
        cov = second / total - torch.outer(mean, mean)
        out[layer] = (mean, cov, sqrtm_psd(cov))
    return out
