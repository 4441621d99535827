"""What a run will do, before any pixel moves: scales, steps, style sizes, memory and cost.

:func:`make_plan` is the one place that turns settings and input sizes into a schedule. The API runs
it, the CLI prints it and computes its ETA from it, the web studio checks it against its limits,
and batch, tiling and video code sum it. Nothing else re-derives scales or style sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from ..errors import SettingsError
from .images import fit_size
from .network import work_per_pixel
from .settings import Settings
from .validate import MIN_SIZE, check_resized

#: Fixed cost of one step, in pixel-equivalents: launching VGG19's layers, the losses and the
#: optimizer cost about as much as this many pixels of convolution (fitted on the CPU: a 128 px step
#: takes about twice what its pixels alone would). Keeps the first, small scales from being priced at
#: nothing in the ETA.
STEP_OVERHEAD_PIXELS = 16_000

#: Seconds per unit of plan cost, measured with ``benchmarks/tiles.py --part steps``: a 1024x768
#: step of the default preset took 2.9 s in bf16 on a 2-core Xeon with AVX512-BF16, 9.9 s in fp32
#: there and 9.1 s in fp32 on a 2-core AMD EPYC (AVX2). Larger steps cost more per pixel (53.5 s at
#: 2048x1536 in fp32: 1.4x); the ETA after the first steps is measured, this is only what the CLI
#: says before them. fp32 since the steps got cheaper (large blocks from the heap up to 512x512
#: pixels, the moments' backward), on a 2-core AMD EPYC with AVX2 only: 0.9-1.0e-5 at 512x384 (1.5-1.7
#: s a step), the figure here; larger steps cost more per unit (:data:`RATE_GROWTH`).
SECONDS_PER_COST = {("cpu", "bf16"): 3.7e-6, ("cpu", "fp32"): 1.0e-5}
#: The pixels of the step :data:`SECONDS_PER_COST` holds for (512x384), and how its seconds per unit
#: of cost grow beyond them with the pixels the network runs over at once (the whole image, or a
#: tile): ``(pixels / RATE_PIXELS) ** RATE_GROWTH``. Fitted on that EPYC in fp32: 1.36e-5 at 1024x768
#: (8.5 s a step; 4x the pixels, 1.35x the rate).
RATE_PIXELS = 512 * 384
RATE_GROWTH = 0.22
#: The layers those figures were measured with (the default preset's then, up to block5_conv1): a run
#: whose network stops earlier costs its share of their arithmetic a pixel (block4_conv2: 0.77).
CALIBRATED_LAYERS = ("block5_conv1",)

#: Bytes a pixel of the optimized image costs at the peak of an untiled step (VGG19 up to block5's
#: maps, kept for the backward pass, their gradients, the float32 copies the style term makes),
#: measured with ``benchmarks/tiles.py --part steps``: 6.1 GiB peak RSS at 2048x1536 in bf16 with
#: the default preset (2-core Xeon); 8.76 GiB in fp32 (2-core AMD EPYC), about 2500 B/px.
BYTES_PER_PIXEL = {"bf16": 1600, "fp32": 2500, "fp64": 5000}
#: Bytes per pixel of one L-BFGS curvature pair: two float32 image-sized vectors (s and y).
PAIR_BYTES_PER_PIXEL = 2 * 3 * 4
#: What a process holds before the first step: torch, the weights, the inputs.
BASE_BYTES = 1_200_000_000
#: Bytes per pixel of the whole image that a tiled step holds besides its tile: the image, its
#: gradient, the best image and L-BFGS's last point and gradient (float32), the content target (the
#: block4 maps), and what the allocator keeps of the tiles' freed maps. Measured as peak RSS less
#: the rest of the estimate: bf16, 10.8 GiB at 8192x6144 with two pairs in tiles of 1536 px (2-core
#: Xeon), about 70 B/px; fp32 (2-core AMD EPYC), 8.36 GiB at 4096x4096 with 8 pairs in tiles of 768
#: px, about 145 B/px (the previous 120 planned it at 7.92). With 160, a whole 4096x4096 fp32 run
#: in 8 GiB peaked at 7.69 GiB at its 2896 px scale (planned 7.88) and 7.2 GiB at its 4096 px scale
#: in tiles of 512 px (planned 7.7), all 18 steps of it. That run's first try also
#: peaked at 8.17 GiB somewhere in its first ten scales; were that the 2896 px tiled scale, it would
#: take about 190 B/px.
TILED_BYTES_PER_PIXEL = {"bf16": 120, "fp32": 160, "fp64": 400}
#: Tile sizes the planner tries, largest first (interior px; each tile adds a halo of 80 px a side).
TILE_SIZES = (2048, 1536, 1024, 768, 512, 384, 256)
#: A tiled step's time over an untiled one's, by precision. The tiles' halos are computed twice (a
#: forward pass without gradients, then forward and backward). In bf16 a tile's maps stay in the
#: CPU's caches where the whole image's do not, which pays for that: on a 2-core Xeon at 2048x1536 a
#: step in 12 tiles of 512 px took 0.82x the untiled step, at 1024x768 in 4 tiles 1.06x
#: (benchmarks/tiles.py --part steps). In fp32 nothing pays for it: 1.62x at 1024x768 in 4 tiles on
#: the Xeon; on a 2-core AMD EPYC (AVX2) the 4096x4096 default run (--part big) spent 2.5 to 2.7e-5 s
#: per unit of untiled cost in its tiled scales, 2.1 to 2.3 times SECONDS_PER_COST's fp32 rate (its
#: untiled scales 0.8 to 1.3 times), and took 4.6 hours where a factor of 1.0 had planned 2.2.
#: Against today's 1.0e-5 and its growth at tiles of 512 px (x1.065), that is 2.45 (2.6e-5 a unit).
TILED_STEP_FACTOR = {"bf16": 1.0, "fp32": 2.45, "fp64": 2.45}
#: ... until the halos dominate: small tiles cost this much per pixel the network runs over (tile and
#: halo), as a multiple of an untiled step's per pixel (fitted to the same two measurements).
HALO_COST = 0.6
#: Seconds a run spends before its first step (torch, the weights, the targets), for the CLI's first estimate.
SETUP_SECONDS = 3.0
#: Fewest L-BFGS pairs the planner keeps when memory is short, before it refuses the run (an
#: 8192x6144 bf16 run with two pairs took steps as usual; in fp32, 8192x8192 fits 16 GiB with two).
MIN_HISTORY = 2
#: Pairs the planner tries to keep before it takes smaller tiles.
GOOD_HISTORY = 8


@dataclass(frozen=True)
class ScalePlan:
    """One scale of a run."""

    index: int  # 0-based
    size: tuple[int, int]  # (w, h) of the image optimized at this scale
    steps: int  # planned steps (early stopping may end the scale sooner)
    style_size: int  # longer side the style images are resized to
    history: int  # L-BFGS pairs held at most (0 for Adam)
    peak_bytes: int  # estimated peak memory of a step at this scale
    cost: float  # relative cost of the whole scale: steps x (pixels + per-step overhead)
    tile: int = 0  # interior px of the tiles each step is cut into (0: untiled)
    tiles: int = 1  # how many

    @property
    def pixels(self) -> int:
        return self.size[0] * self.size[1]

    @property
    def rate_factor(self) -> float:
        """How much more a unit of this scale's cost takes than at :data:`RATE_PIXELS` (never less)."""
        w, h = self.size
        at_once = min(w, self.tile) * min(h, self.tile) if self.tile else w * h
        return max(1.0, at_once / RATE_PIXELS) ** RATE_GROWTH

    @property
    def step_parts(self) -> tuple[float, float]:
        """A step's cost in its two parts: (the per-step overhead of its tiles, the rest: its pixels,
        times a tiled step's factor). The ETA prices them apart."""
        overhead = STEP_OVERHEAD_PIXELS * self.tiles
        return overhead, self.cost / max(self.steps, 1) - overhead


@dataclass(frozen=True)
class Plan:
    """Every scale of a run, coarse to fine, and what they add up to."""

    scales: tuple[ScalePlan, ...]
    content_size: tuple[int, int]  # (w, h) of the content image as given

    @property
    def size(self) -> tuple[int, int]:
        """(w, h) of the result."""
        return self.scales[-1].size

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.scales)

    @property
    def total_cost(self) -> float:
        return sum(s.cost for s in self.scales)

    @property
    def peak_bytes(self) -> int:
        return max(s.peak_bytes for s in self.scales)

    @property
    def enlarged(self) -> bool:
        """True when the result is larger than the content image (it was upsampled)."""
        return max(self.size) > max(self.content_size)

    def cost_done(self, scale: int, steps_done: int) -> float:
        """Cost of the scales before ``scale`` plus ``steps_done`` steps of ``scale``."""
        done = sum(s.cost for s in self.scales[:scale])
        current = self.scales[scale]
        return done + current.cost * min(steps_done, current.steps) / max(current.steps, 1)

    def seconds(self, seconds_per_cost: float) -> float:
        """The whole run's time at ``seconds_per_cost``."""
        return self.total_cost * seconds_per_cost

    def estimate_seconds(self, device: str, precision: str) -> float | None:
        """A rough time for the whole run before any step has run, from :data:`SECONDS_PER_COST`
        (measured on one 2-core CPU; None where nothing was measured). The progress bar's ETA,
        from the steps actually run, replaces it."""
        rate = self.prior_rate(device, precision)
        return None if rate is None else SETUP_SECONDS + self.total_cost * rate

    def prior_rate(self, device: str, precision: str) -> float | None:
        """Seconds per unit of this plan's cost before any step has run: :data:`SECONDS_PER_COST`,
        grown for its larger scales (:attr:`ScalePlan.rate_factor`), averaged over the scales by cost."""
        rate = SECONDS_PER_COST.get((device, precision))
        if rate is None:
            return None
        return rate * sum(s.cost * s.rate_factor for s in self.scales) / max(self.total_cost, 1e-9)

    def describe(self) -> str:
        """One line per scale, for a terminal: size, steps, style size, memory."""
        lines = []
        for s in self.scales:
            tiled = f", in {s.tiles} tiles of {s.tile} px" if s.tile else ""
            lines.append(f"scale {s.index + 1}/{len(self.scales)}: {s.size[0]}x{s.size[1]}{tiled}, "
                         f"up to {s.steps} steps, style {s.style_size} px, about {s.peak_bytes / 2**30:.1f} GiB")
        return "\n".join(lines)


def step_cost(size: tuple[int, int], factor: float = 1.0, tiles: int = 1) -> float:
    """Relative cost of one step at ``size`` (w, h): its pixels (times ``factor``, a tiled step's cost
    over an untiled one's) and the per-step overhead of each of its ``tiles``."""
    return size[0] * size[1] * factor + STEP_OVERHEAD_PIXELS * tiles


def style_size(longer: int, style_scale: float) -> int:
    """Longer side of the style images for a result whose longer side is ``longer``."""
    return max(MIN_SIZE, round(longer * style_scale))


_Figure = TypeVar("_Figure", int, float)


def _measured(table: dict[str, _Figure], precision: str) -> _Figure:
    """``table``'s figure for ``precision``; fp32's for a precision nothing was measured in."""
    return table.get(precision, table["fp32"])


def peak_bytes(size: tuple[int, int], precision: str, history: int) -> int:
    """Estimated peak memory of one step at ``size`` (w, h), with ``history`` L-BFGS pairs held."""
    pixels = size[0] * size[1]
    per_pixel = _measured(BYTES_PER_PIXEL, precision)
    return BASE_BYTES + (per_pixel + PAIR_BYTES_PER_PIXEL * history) * pixels


def tiled_peak_bytes(size: tuple[int, int], precision: str, history: int, tile: int, halo: int,
                     workers: int | None = None) -> int:
    """Estimated peak memory of a tiled step: one tile with its halo at a time, plus what the whole
    image needs (:data:`TILED_BYTES_PER_PIXEL`) and the L-BFGS pairs. Spread over ``workers`` (a
    cluster's), each worker's: its share of the image, and its pairs twice (the copies kept in its
    node's object store so that a lost worker costs one step)."""
    w, h = size
    outer = min(h, tile + 2 * halo) * min(w, tile + 2 * halo)
    per_pixel = _measured(BYTES_PER_PIXEL, precision)
    pairs = PAIR_BYTES_PER_PIXEL * history * (1 if workers is None else 2)
    share = 1 if workers is None else max(1, workers)
    return BASE_BYTES + per_pixel * outer + (_whole_bytes(precision) + pairs) * w * h // share


def _whole_bytes(precision: str) -> int:
    """Bytes per pixel of the whole image a tiled step holds besides its tile and the pairs."""
    return _measured(TILED_BYTES_PER_PIXEL, precision)


def _tiled_work(size: tuple[int, int], tile: int, halo: int, precision: str) -> tuple[int, float]:
    """(tiles, cost of a tiled step as a multiple of an untiled one's in ``precision``)."""
    from .tiles import make_tiles

    tiles = make_tiles(size[1], size[0], tile, halo)
    outer = sum((t.outer[1] - t.outer[0]) * (t.outer[3] - t.outer[2]) for t in tiles) / (size[0] * size[1])
    return len(tiles), max(_measured(TILED_STEP_FACTOR, precision), HALO_COST * outer)


def _fit(tile_size: int, size: tuple[int, int], precision: str, history: int, budget: int | None,
         halo: int, workers: int | None = None) -> tuple[int, int, int, int, float]:
    """(tile, tiles, history, peak bytes, cost factor) of one scale: untiled where it fits ``budget``
    (or where ``tile_size`` says so), else the largest tile, then the most pairs, that fit."""
    untiled = peak_bytes(size, precision, history)
    if tile_size == -1 or (tile_size == 0 and (budget is None or untiled <= budget)):
        return 0, 1, history, untiled, 1.0
    if tile_size > 0:
        if max(size) <= tile_size:
            return 0, 1, history, untiled, 1.0
        count, factor = _tiled_work(size, tile_size, halo, precision)
        return tile_size, count, history, tiled_peak_bytes(size, precision, history, tile_size, halo, workers), factor
    assert budget is not None
    floor = min(history, MIN_HISTORY)
    pair_bytes = PAIR_BYTES_PER_PIXEL * size[0] * size[1] * (1 if workers is None else 2) // (workers or 1)
    choices = []  # (tile, pairs that fit), largest tile first
    for tile in TILE_SIZES:
        if tile < max(size):
            room = budget - tiled_peak_bytes(size, precision, 0, tile, halo, workers)
            choices.append((tile, min(history, room // pair_bytes if history else 0)))
    # The largest tile that keeps a useful history (tiles cost time: halos are computed twice), else
    # the most pairs any tile allows.
    good = [c for c in choices if c[1] >= min(history, GOOD_HISTORY)]
    usable = [c for c in choices if c[1] >= floor]
    if good or usable:
        tile, pairs = good[0] if good else max(usable, key=lambda c: c[1])
        count, factor = _tiled_work(size, tile, halo, precision)
        return tile, count, int(pairs), tiled_peak_bytes(size, precision, int(pairs), tile, halo, workers), factor
    least = tiled_peak_bytes(size, precision, floor, TILE_SIZES[-1], halo, workers)
    per_pixel = _whole_bytes(precision) + PAIR_BYTES_PER_PIXEL * floor
    room = budget - (least - per_pixel * size[0] * size[1])
    longer = int((max(0, room / per_pixel) * max(size) / min(size)) ** 0.5)  # the same shape, this many px
    raise SettingsError(
        f"a {size[0]}x{size[1]} step needs at least {least / 2**30:.1f} GiB even in tiles, and max_memory allows "
        f"{budget / 2**30:.1f} GiB: at most size {longer} fits (use a smaller size or more max_memory)")


def make_plan(settings: Settings, content_size: tuple[int, int], precision: str = "fp32",
              budget: int | None = None, tile_size: int = 0, workers: int | None = None) -> Plan:
    """The plan of a run of ``settings`` on a content image of ``content_size`` (w, h).

    ``precision`` is the one the run will use (``bf16``, ``fp32`` or ``fp64``; see
    :func:`painterly.engine.devices.pick_precision`), for the memory estimate. ``budget``: the bytes the run
    may use (:func:`painterly.engine.devices.memory_budget`); a scale whose step would not fit is cut into
    tiles, with fewer L-BFGS pairs if need be (None: untiled unless ``tile_size`` says otherwise).
    ``tile_size`` is the machine's (:attr:`painterly.engine.settings.Machine.tile_size`): 0 tiles only what
    does not fit, -1 never, a size always. ``workers``: the tiled scales are spread over a cluster of
    that many workers, and ``budget`` is each worker's (the untiled scales run here, in it too).
    Raises :class:`ImageError` if the content would be too thin for the network at some scale, and
    :class:`SettingsError` if a scale cannot fit ``budget`` even tiled.
    """
    from .tiles import halo_for

    layers = [*settings.content_layers, *settings.style_layers]
    halo = halo_for(layers)
    share = work_per_pixel(layers) / work_per_pixel(CALIBRATED_LAYERS) if layers else 1.0
    scales = []
    for index, (longer, steps) in enumerate(zip(settings.scale_sizes(), settings.scale_steps())):
        size = fit_size(content_size, longer)
        check_resized(size, longer, "the content image")
        history = 0 if settings.optimizer == "adam" else max(1, min(settings.lbfgs_history, steps - 1))
        tile, tiles, history, peak, factor = _fit(tile_size, size, precision, history, budget, halo, workers)
        scales.append(ScalePlan(index, size, steps, style_size(longer, settings.style_scale), history,
                                peak, steps * step_cost(size, factor * share, tiles), tile, tiles))
    return Plan(tuple(scales), tuple(content_size))  # type: ignore[arg-type]
