"""Painting a clip frame by frame without flicker (Ruder et al. 2016, on DIS optical flow).

:func:`paint_video` takes the frames as images and returns the painted ones. The first frame is an
ordinary :func:`painterly.stylize` run. Every later frame starts from the previous output warped
along the optical flow onto it and is optimized with one more loss term, the masked squared
difference to that warped output (:class:`painterly.video.temporal.TemporalTerm`), so that the paint moves
with the picture instead of settling into a new painting each frame. It needs fewer steps than the
first frame: it starts close to where it should end. With long-term terms each frame is also held
to frames t-2 and t-4 where t-1 cannot see (disocclusions).

The command line (``painterly video IN STYLE... -o OUT``) is :mod:`painterly.cli.video`; it keeps
finished frames on disk so that a stopped run resumes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from ..engine.images import ImageLike, from_any, to_pil, to_tensor
from ..engine.progress import seconds_left
from ..engine.settings import Machine, Settings
from ..errors import SettingsError
from .flow import flow_pair, reliability, warp
from .settings import VideoSettings, check_frames
from .temporal import TemporalTerm, long_term_masks, temporal_error

__all__ = ["FrameProgress", "FrameResult", "VideoResult", "VideoSettings", "paint_video"]

#: Multi-pass: a reliable pixel starts from this blend of the neighbour's warped paint and its own
#: previous pass (Ruder et al.'s delta = 0.5).
PASS_BLEND = 0.5


@dataclass
class FrameResult:
    """One painted frame and what it cost."""

    index: int  # 0-based, in the clip as given
    image: Image.Image
    seconds: float  # the whole frame: flow, warping and the run
    flow_seconds: float  # optical flow, masks and warping
    steps: int
    losses: dict[str, float]  # the kept image's weighted losses by term (total, style, content, temporal, ...)
    temporal_error: float | None = None  # vs the previous output warped onto it (None for the first frame)
    content_error: float | None = None  # the same figure for the content frames: the floor flow error sets

    def stats(self) -> dict[str, Any]:
        """Everything but the image, JSON-ready."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "image"}


@dataclass(frozen=True)
class FrameProgress:
    """What a video run's callback receives: after every optimizer step, and once a frame is done."""

    frame: int  # 0-based index of the frame being painted
    frames: int  # frames in the clip
    frame_fraction: float  # 0..1 of the current frame done
    losses: dict[str, float]
    elapsed: float  # seconds since this run started
    eta: float  # seconds left, estimated
    done: FrameResult | None = None  # set when the event reports a finished frame
    pass_index: int = 0  # 0-based; the first pass paints, later ones (multi-pass) refine
    passes: int = 1


@dataclass
class VideoResult:
    """What :func:`paint_video` returns: the frames painted so far (all of them unless stopped)."""

    frames: list[FrameResult]
    stopped: bool
    seconds: float

    @property
    def images(self) -> list[Image.Image]:
        return [f.image for f in self.frames]

    @property
    def temporal_error(self) -> float:
        """Mean over the frames after the first of each one's :attr:`FrameResult.temporal_error`."""
        return _mean([f.temporal_error for f in self.frames])

    @property
    def content_error(self) -> float:
        """The same mean for the content frames (what a perfect painting of the motion would score)."""
        return _mean([f.content_error for f in self.frames])


def _mean(values: Sequence[float | None]) -> float:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else 0.0


FrameCallback = Callable[[FrameProgress], Any]


def paint_video(
    frames: Sequence[ImageLike],
    style: ImageLike | Sequence[ImageLike],
    settings: Settings | None = None,
    video: VideoSettings | None = None,
    *,
    machine: Machine | None = None,
    finished: Sequence[FrameResult] = (),
    callback: FrameCallback | None = None,
    on_frame: Callable[[FrameResult], None] | None = None,
    engine: Any = None,
) -> VideoResult:
    """Paint ``frames`` (images of one size, in order) in the style of ``style``.

    ``settings`` paint the first frame (default: the ``default`` preset) and, at full size only and
    for ``video.frame_steps`` steps, the others. ``finished``: frames already painted by an earlier
    run (the first ``len(finished)``), to continue from. ``on_frame`` is called with each finished
    frame (to keep it on disk); ``callback`` receives :class:`FrameProgress` events and may return
    True to stop, as Ctrl-C does: the frame being painted is then dropped and the result says
    ``stopped``. ``engine`` (a :class:`painterly.engine.run.Engine`) shares the network between frames;
    ``machine`` says where they are computed.
    """
    from ..engine.plan import make_plan
    from ..engine.run import Engine
    from ..engine.settings import DEFAULT

    settings = settings or DEFAULT
    video = video or VideoSettings()
    clip = clip_images(frames)
    size = clip[0].size
    if len(finished) > len(clip):
        raise SettingsError(f"{len(finished)} finished frames given for a clip of {len(clip)}")
    settings = settings.replace(size=max(size))  # the frames come at the size they are painted at
    later = settings.replace(steps=video.frame_steps, start_size=0)
    engine = engine or Engine()
    costs = [make_plan(settings if i == 0 else later, size).total_cost for i in range(len(clip))]
    costs += [make_plan(later, size).total_cost] * (len(clip) * (video.passes - 1))
    clock = _Clock(costs, len(clip), video.passes)
    results = list(finished)
    started = time.perf_counter()

    for t in range(len(finished), len(clip)):
        result, done = _paint_frame(clip, t, style, settings if t == 0 else later, video, results, machine,
                                    clock.step_callback(t, callback), engine)
        if done is None:
            break
        results.append(done)
        clock.finished(t)
        if on_frame is not None:
            on_frame(done)
        if callback is not None and callback(clock.event(t, 1.0, done.losses, done)):
            return VideoResult(results, t + 1 < len(clip) or video.passes > 1, time.perf_counter() - started)
    stopped = len(results) < len(clip)
    if not stopped and video.passes > 1 and len(clip) > 1:
        stopped = _more_passes(clip, style, later, video, results, clock, callback, engine, machine)
    return VideoResult(results, stopped, time.perf_counter() - started)


def _paint_frame(clip: list[Image.Image], t: int, style: Any, settings: Settings, video: VideoSettings,
                 results: list[FrameResult], machine: Machine | None, step_callback: Any,
                 engine: Any) -> tuple[Any, FrameResult | None]:
    """Frame ``t`` of the first pass: the first from ``settings`` alone, the others from the previous
    output warped to them, held to it by the temporal terms. (The run's result, the finished frame;
    None if it was stopped.)"""
    from ..engine.run import stylize

    t0 = time.perf_counter()
    errors: tuple[float | None, float | None] = (None, None)
    if t == 0:
        result = stylize(clip[0], style, settings, machine=machine, callback=step_callback, engine=engine)
        flow_seconds = 0.0
    else:
        terms, previous = _temporal_terms(clip, [r.image for r in results], t, video)
        flow_seconds = time.perf_counter() - t0
        result = stylize(clip[t], style, settings, machine=machine, init_image=to_pil(previous.warped),
                         extra_terms=terms, callback=step_callback, engine=engine)
        errors = previous.errors(result.image, clip[t])
    if result.stopped:
        return result, None
    return result, FrameResult(t, result.image, time.perf_counter() - t0, flow_seconds, len(result.history),
                               best_losses(result), *errors)


def best_losses(result: Any) -> dict[str, float]:
    """The weighted losses, by term, of the image a :func:`painterly.stylize` result kept."""
    best = next((h for h in result.history if h["step"] == result.best_step), result.history[-1])
    return {k: v for k, v in best.items() if k not in ("step", "seconds", "scale", "size", "optimizer")}


def clip_images(frames: Sequence[ImageLike]) -> list[Image.Image]:
    """A clip's frames as RGB PIL images, checked: at least one, all of one size."""
    clip = [from_any(f, f"frame {i + 1}") for i, f in enumerate(frames)]
    check_frames([f.size for f in clip])
    return clip


def _more_passes(clip, style, later: Settings, video: VideoSettings, results: list[FrameResult], clock: _Clock,
                 callback: FrameCallback | None, engine: Any, machine: Machine | None) -> bool:
    """Ruder et al.'s multi-pass (section 3.3): passes 2, 3, ... go backward, forward, ... over the clip.

    In each pass a frame starts from ``PASS_BLEND`` of its neighbour's paint (the frame painted just
    before it in this pass) warped onto it, where the flow is reliable, and its own last pass
    elsewhere, and is held to that warped neighbour by the temporal term. The pass's first frame has
    no neighbour yet and keeps its paint. Updates ``results`` in place; True if stopped.
    """
    from ..engine.run import stylize

    flows: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
    n = len(clip)
    for k in range(1, video.passes):
        order = list(range(n - 1, -1, -1)) if k % 2 else list(range(n))
        clock.finished(n * k)  # the pass's first frame keeps its paint
        for position, i in enumerate(order[1:], 1):
            t0 = time.perf_counter()
            job = n * k + position
            j = order[position - 1]  # the neighbour painted just before, in this pass's direction
            if (i, j) not in flows:
                backward, forward = flow_pair(clip[i], clip[j], video.flow)
                flows[i, j] = backward, reliability(backward, forward)
            backward, mask = flows[i, j]
            warped = warp(to_tensor(results[j].image), backward)
            own = to_tensor(results[i].image)
            start = own + PASS_BLEND * mask * (warped - own)
            term = TemporalTerm(warped, mask, video.temporal_weight)
            flow_seconds = time.perf_counter() - t0
            result = stylize(clip[i], style, later, machine=machine, init_image=to_pil(start), extra_terms=[term],
                             callback=clock.step_callback(job, callback, i, k), engine=engine)
            if result.stopped:
                return True
            losses = best_losses(result)
            old = results[i]
            results[i] = FrameResult(i, result.image, old.seconds + time.perf_counter() - t0,
                                     old.flow_seconds + flow_seconds, old.steps + len(result.history), losses)
            clock.finished(job)
            if callback is not None and callback(clock.event(job, 1.0, losses, results[i], i, k)):
                return True
    measure_errors(clip, results, video.flow)
    return False


def measure_errors(clip: list[Image.Image], results: list[FrameResult], flow: str) -> None:
    """Fill in each frame's temporal and content errors against its predecessor (after multi-pass)."""
    for t in range(1, len(results)):
        backward, forward = flow_pair(clip[t], clip[t - 1], flow)
        mask = reliability(backward, forward)
        previous = _Previous(warp(to_tensor(results[t - 1].image), backward), mask, backward, clip[t - 1])
        results[t].temporal_error, results[t].content_error = previous.errors(results[t].image, clip[t])


@dataclass
class _Previous:
    """The previous output warped onto the current frame, and what the temporal error needs."""

    warped: torch.Tensor  # (1, 3, H, W) RGB 0..255
    mask: torch.Tensor  # (1, 1, H, W) reliability of the flow to t-1
    backward: torch.Tensor  # flow current -> previous
    previous_content: Image.Image

    def errors(self, output: Image.Image, content: Image.Image) -> tuple[float, float]:
        """(temporal error of ``output``, the same for the content frames)."""
        warped_content = warp(to_tensor(self.previous_content), self.backward)
        return (temporal_error(to_tensor(output), self.warped, self.mask),
                temporal_error(to_tensor(content), warped_content, self.mask))


def _temporal_terms(
    clip: list[Image.Image], outputs: list[Image.Image], t: int, video: VideoSettings
) -> tuple[list[TemporalTerm], _Previous]:
    """The temporal terms of frame ``t`` (one per earlier frame in use) and the warped t-1 output."""
    offsets = [j for j in video.offsets if t - j >= 0]
    warped, masks, previous = [], [], None
    for j in offsets:
        backward, forward = flow_pair(clip[t], clip[t - j], video.flow)
        mask = reliability(backward, forward)
        warped.append(warp(to_tensor(outputs[t - j]), backward))
        masks.append(mask)
        if j == 1:
            previous = _Previous(warped[-1], mask, backward, clip[t - 1])
    assert previous is not None
    held = long_term_masks(masks) if len(masks) > 1 else masks
    names = ["temporal" if j == 1 else f"temporal_{j}" for j in offsets]
    terms = [TemporalTerm(w, m, video.temporal_weight, n) for w, m, n in zip(warped, held, names)]
    return terms, previous


class _Clock:
    """Seconds per unit of plan cost measured over this run's work so far, and the ETA from it."""

    def __init__(self, costs: list[float], frames: int, passes: int) -> None:
        self.costs, self.frames, self.passes = costs, frames, passes
        self.start = time.perf_counter()
        self.cost_done = 0.0

    def step_callback(self, t: int, callback: FrameCallback | None, frame: int | None = None, pass_index: int = 0):
        """A stylize callback for job ``t`` (frame ``t`` in the first pass; ``frame`` of ``pass_index`` later)."""
        if callback is None:
            return None

        def on_step(p) -> bool:
            fraction = (p.step + 1) / max(p.total_steps, 1)
            return bool(callback(self.event(t, fraction, p.losses, None, frame, pass_index)))

        return on_step

    def finished(self, t: int) -> None:
        self.cost_done += self.costs[t]

    def event(self, t: int, fraction: float, losses: dict[str, float], done: FrameResult | None = None,
              frame: int | None = None, pass_index: int = 0) -> FrameProgress:
        elapsed = time.perf_counter() - self.start
        current = self.costs[t] * (1.0 if done else fraction)
        spent = self.cost_done - (self.costs[t] if done else 0.0) + current
        left = sum(self.costs[t + 1:]) + self.costs[t] - current
        eta = seconds_left(elapsed, spent, left) or 0.0
        return FrameProgress(t if frame is None else frame, self.frames, fraction, losses, elapsed, eta, done,
                             pass_index, self.passes)


def temporal_errors(outputs: Sequence[ImageLike], frames: Sequence[ImageLike], flow: str = "medium") -> list[float]:
    """The temporal error of each output after the first against its warped predecessor, with the
    flow and mask of the content ``frames``: the figure :class:`FrameResult` reports, for any painted
    sequence (independent per-frame paintings included)."""
    outs = [to_tensor(from_any(o, "output frame")) for o in outputs]
    clip = [from_any(f, "frame") for f in frames]
    errors = []
    for t in range(1, min(len(outs), len(clip))):
        backward, forward = flow_pair(clip[t], clip[t - 1], flow)
        errors.append(temporal_error(outs[t], warp(outs[t - 1], backward), reliability(backward, forward)))
    return errors
