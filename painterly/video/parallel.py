"""A clip painted as a batch of works on a pool of workers (local processes or Ray): multi-pass in parallel.

:func:`painterly.video.paint.paint_video` paints frame t from frame t-1's paint, so every frame waits for
the one before. Here the clip is cut into contiguous chunks, one per worker, and each worker paints
its chunk as :func:`~painterly.video.paint.paint_video` does: that is the first pass. Neighbouring chunks
meet at a seam, two frames painted apart. Every later pass runs in two halves, the even frames and
then the odd ones, each half as one batch: a frame starts from its own paint blended with its two
neighbours' paint warped onto it (where the flow is reliable) and is held to both by temporal terms.
A frame of one half reads only frames of the other, so the frames of a half need no order among
them (a red-black sweep, the parallel form of Ruder et al.'s alternating passes); a seam is spread
over more frames, and softened, with every pass.

Works carry images as PNG bytes, never paths, so a Ray node needs no shared disk; they run on the
pools of ``painterly batch`` (:class:`painterly.workers.local.LocalPool`,
:class:`painterly.workers.ray_pool.RayPool`), whose workers keep one engine for all the works they get.
A stage (a chunk, or a half of a pass) is reported to ``on_stage`` once all its frames are back, so
the caller can keep them on disk; a stopped run goes on from the stages it finished.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from ..engine.images import ImageLike, from_any, to_pil, to_tensor
from ..engine.progress import seconds_left
from ..engine.settings import Machine, Settings
from ..errors import PainterlyError
from ..workers.painter import decode
from .paint import (
    PASS_BLEND,
    FrameProgress,
    FrameResult,
    VideoResult,
    VideoSettings,
    best_losses,
    clip_images,
    measure_errors,
)

__all__ = ["ChunkWork", "RefineWork", "Stage", "paint_video_parallel", "stages_of"]

#: A work whose worker died this many times fails the clip.
MAX_ATTEMPTS = 3
#: How far (a fraction of the longer side) a refined frame's reliability masks are pulled back from
#: every unreliable pixel (see :class:`RefineWork`).
EDGE_MARGIN = 0.012


def png(image: Image.Image) -> bytes:
    """An image as PNG bytes (lossless, quick to write: compression level 1)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


@dataclass(frozen=True)
class ChunkWork:
    """Pass 1 of frames ``first`` .. ``first + len(frames) - 1``: painted in order as
    :func:`~painterly.video.paint.paint_video` does, each from the one before."""

    job: int
    first: int
    frames: tuple[bytes, ...]
    styles: tuple[bytes, ...]
    settings: Settings
    video: VideoSettings
    machine: Machine | None = None

    def run(self, engine: Any, callback: Callable[[Any], Any] | None = None) -> tuple[str, int, Any, Any]:
        from .paint import paint_video

        result = paint_video([decode(f) for f in self.frames], [decode(s) for s in self.styles], self.settings,
                             self.video.replace(passes=1), machine=self.machine, engine=engine)
        frames = [(png(f.image), {**f.stats(), "index": self.first + f.index}) for f in result.frames]
        return ("done", self.job, frames, None)


@dataclass(frozen=True)
class RefineWork:
    """One frame of a later pass: started from its paint pulled toward its neighbours' warped paint,
    and held to them by temporal terms (``temporal`` for t-1, ``temporal_next`` for t+1).

    The reliability masks are pulled back :data:`EDGE_MARGIN` from every unreliable pixel. DIS smooths
    the flow across a moving subject's edge, so a margin of wrong but self-consistent flow passes the
    forward-backward check there. Held to both neighbours, whose outlines lie on either side of its
    own, a pixel in that margin was pulled toward two outlines, and a dark ring grew around the moving
    subject of the parallax clip pass after pass (temporal error 40, the ring itself steady). With the
    margin the ring is gone (152, the margin left free to change); holding each pixel to one preferred
    neighbour instead, alternating with the passes, left traces of old outlines (206). The sequential
    run, with one neighbour, has no ring with the plain masks.
    """

    job: int
    index: int
    frame: bytes
    paint: bytes  # this frame's paint so far
    neighbours: tuple[tuple[str, bytes, bytes], ...]  # (term name, neighbour's frame, neighbour's paint)
    styles: tuple[bytes, ...]
    settings: Settings
    video: VideoSettings
    machine: Machine | None = None

    def run(self, engine: Any, callback: Callable[[Any], Any] | None = None) -> tuple[str, int, Any, Any]:
        from ..engine.run import stylize
        from .flow import erode, flow_pair, reliability, warp
        from .temporal import TemporalTerm

        started = time.perf_counter()
        frame, own = decode(self.frame), to_tensor(decode(self.paint))
        terms, pull, weight = [], torch.zeros_like(own), torch.zeros_like(own[:, :1])
        for name, content, paint in self.neighbours:
            backward, forward = flow_pair(frame, decode(content), self.video.flow)
            mask = erode(reliability(backward, forward), round(EDGE_MARGIN * max(frame.size)))
            warped = warp(to_tensor(decode(paint)), backward)
            terms.append(TemporalTerm(warped, mask, self.video.temporal_weight, name))
            pull, weight = pull + mask * (warped - own), weight + mask
        start = own + PASS_BLEND * pull / weight.clamp_min(1.0)
        flow_seconds = time.perf_counter() - started
        result = stylize(frame, [decode(s) for s in self.styles], self.settings, machine=self.machine,
                         init_image=to_pil(start), extra_terms=terms, callback=callback, engine=engine)
        stats = {"index": self.index, "seconds": time.perf_counter() - started, "flow_seconds": flow_seconds,
                 "steps": len(result.history), "losses": best_losses(result)}
        return ("done", self.job, [(png(result.image), stats)], None)


@dataclass(frozen=True)
class Stage:
    """A unit of progress: a chunk of pass 1, or the even or odd half of a later pass."""

    name: str  # "chunk 1", "pass 2 even", ...
    frames: tuple[int, ...]  # the frames it paints
    pass_index: int  # 0-based
    chunk: tuple[int, int] | None = None  # pass 1: (first, end) of the chunk


def stages_of(n_frames: int, chunks: int, passes: int) -> list[Stage]:
    """The stages of a clip of ``n_frames`` in ``chunks`` chunks (fewer if the clip is shorter) and
    ``passes`` passes, in the order they run (the chunks all at once)."""
    chunks = max(1, min(chunks, n_frames))
    bounds = [round(i * n_frames / chunks) for i in range(chunks + 1)]
    spans = list(zip(bounds, bounds[1:]))
    stages = [Stage(f"chunk {i + 1}", tuple(range(a, b)), 0, (a, b)) for i, (a, b) in enumerate(spans)]
    for k in range(1, passes if n_frames > 1 else 1):
        for parity, half in ((0, "even"), (1, "odd")):
            stages.append(Stage(f"pass {k + 1} {half}", tuple(range(parity, n_frames, 2)), k))
    return stages


@dataclass
class _Flight:
    stage: Stage
    works: dict[int, Any] = field(default_factory=dict)  # job -> work still out
    back: list[tuple[bytes, dict[str, Any]]] = field(default_factory=list)


def paint_video_parallel(
    frames: Sequence[ImageLike],
    style: ImageLike | Sequence[ImageLike],
    pool: Any,
    settings: Settings | None = None,
    video: VideoSettings | None = None,
    *,
    machine: Machine | None = None,
    chunks: int | None = None,
    finished: Sequence[str] = (),
    painted: Sequence[FrameResult | None] = (),
    on_stage: Callable[[Stage, list[FrameResult]], None] | None = None,
    callback: Callable[[FrameProgress], Any] | None = None,
) -> VideoResult:
    """Paint ``frames`` in the style of ``style`` on ``pool`` (``submit``, ``wait``, ``close``, ``size``).

    ``chunks``: how many chunks pass 1 has (default: the pool's size). ``finished`` names stages an
    earlier run finished and ``painted`` holds the frames as they were then (None where not painted).
    ``on_stage(stage, frames)`` receives each finished stage with the frames it painted; ``callback``
    a :class:`~painterly.video.paint.FrameProgress` for each frame that comes back, and may return True to
    stop (as Ctrl-C does): the stages not finished are dropped, and the result says ``stopped``.
    Closes the pool.
    """
    from ..engine.plan import make_plan
    from ..engine.settings import DEFAULT

    settings = settings or DEFAULT
    video = video or VideoSettings()
    clip = clip_images(frames)
    styles_in: list[Any] = list(style) if isinstance(style, (list, tuple)) else [style]
    styles = [from_any(s, "style image") for s in styles_in]
    size = clip[0].size
    settings = settings.replace(size=max(size))
    later = settings.replace(steps=video.frame_steps, start_size=0)
    stages = stages_of(len(clip), chunks or pool.size, video.passes)
    first_cost, later_cost = make_plan(settings, size).total_cost, make_plan(later, size).total_cost
    costs = {s.name: (first_cost + later_cost * (len(s.frames) - 1) if s.chunk else later_cost * len(s.frames))
             for s in stages}
    results: list[FrameResult | None] = list(painted) + [None] * (len(clip) - len(painted))
    run = _Run(clip, styles, settings, later, video, machine, pool, results, costs, callback, on_stage)
    started = time.perf_counter()
    try:
        for group in _groups([s for s in stages if s.name not in finished]):
            if len(run.stages(group)) < len(group):
                return VideoResult([r for r in results if r is not None], True, time.perf_counter() - started)
    except KeyboardInterrupt:
        return VideoResult([r for r in results if r is not None], True, time.perf_counter() - started)
    finally:
        pool.close()
    complete = [r for r in results if r is not None]
    measure_errors(clip, complete, video.flow)
    return VideoResult(complete, False, time.perf_counter() - started)


def _groups(stages: list[Stage]) -> list[list[Stage]]:
    """Stages that may run at once: all chunks of pass 1 together, then each half-pass alone."""
    chunks = [s for s in stages if s.chunk]
    return ([chunks] if chunks else []) + [[s] for s in stages if not s.chunk]


class _Run:
    """Hands a group of stages' works to the pool and takes back what comes."""

    def __init__(self, clip: list[Image.Image], styles: list[Image.Image], settings: Settings, later: Settings,
                 video: VideoSettings, machine: Machine | None, pool: Any, results: list[FrameResult | None],
                 costs: dict[str, float], callback: Callable[[FrameProgress], Any] | None,
                 on_stage: Callable[[Stage, list[FrameResult]], None] | None) -> None:
        self.clip, self.settings, self.later, self.video, self.machine = clip, settings, later, video, machine
        self.pool, self.results, self.costs, self.callback, self.on_stage = pool, results, costs, callback, on_stage
        self.frames = [png(f) for f in clip]
        self.styles = tuple(png(s) for s in styles)
        self.start = time.perf_counter()
        self.cost_left = sum(costs.values())
        self.cost_done = 0.0
        self.next_job = 0

    def stages(self, group: list[Stage]) -> list[Stage]:
        """Run ``group``; the stages that finished (all of them unless stopped)."""
        flights: dict[int, _Flight] = {}  # job -> its stage's flight
        todo: list[tuple[_Flight, Any]] = []
        for stage in group:
            flight = _Flight(stage)
            for work in self._works(stage):
                flight.works[work.job] = work
                flights[work.job] = flight
                todo.append((flight, work))
        attempts: dict[int, int] = {}
        running: set[int] = set()
        done: list[Stage] = []
        while todo or running:
            while todo and len(running) < self.pool.size:
                _, work = todo.pop(0)
                attempts[work.job] = attempts.get(work.job, 0) + 1
                running.add(work.job)
                self.pool.submit(work)
            for kind, job, payload, _ in self.pool.wait(0.5):
                if job not in running or kind == "step":
                    continue
                running.discard(job)
                flight = flights[job]
                if kind == "lost":
                    if attempts[job] >= MAX_ATTEMPTS:
                        raise PainterlyError(f"{flight.stage.name}: {payload}, {MAX_ATTEMPTS} times")
                    todo.insert(0, (flight, flight.works[job]))
                    continue
                if kind == "failed":
                    raise PainterlyError(f"{flight.stage.name}: {payload}")
                del flight.works[job]
                flight.back += payload
                if not flight.works:
                    self._settle(flight)
                    done.append(flight.stage)
                if self._report(flight, payload):
                    return done  # asked to stop: what finished stands, the rest is dropped
        return done

    def _works(self, stage: Stage) -> list[Any]:
        works: list[Any] = []
        if stage.chunk:
            a, b = stage.chunk
            works.append(ChunkWork(self._job(), a, tuple(self.frames[a:b]), self.styles, self.settings, self.video,
                                   self.machine))
            return works
        n = len(self.clip)
        for t in stage.frames:
            current = self.results[t]
            assert current is not None  # pass 1 painted every frame
            neighbours = []
            for name, j in (("temporal", t - 1), ("temporal_next", t + 1)):
                if 0 <= j < n:
                    paint = self.results[j]
                    assert paint is not None
                    neighbours.append((name, self.frames[j], png(paint.image)))
            works.append(RefineWork(self._job(), t, self.frames[t], png(current.image), tuple(neighbours), self.styles,
                                    self.later, self.video, self.machine))
        return works

    def _job(self) -> int:
        self.next_job += 1
        return self.next_job

    def _settle(self, flight: _Flight) -> None:
        """A stage's frames all came back: they replace the frames' paint (a half reads the other half only),
        and the stage is reported as finished."""
        for data, stats in flight.back:
            t = stats["index"]
            earlier = self.results[t] if flight.stage.pass_index else None  # later passes add to the first's cost
            seconds = stats["seconds"] + (earlier.seconds if earlier else 0.0)
            flow_seconds = stats["flow_seconds"] + (earlier.flow_seconds if earlier else 0.0)
            steps = stats["steps"] + (earlier.steps if earlier else 0)
            self.results[t] = FrameResult(t, decode(data), seconds, flow_seconds, steps, stats["losses"],
                                          stats.get("temporal_error"), stats.get("content_error"))
        if self.on_stage is not None:
            self.on_stage(flight.stage, [r for r in self.results if r is not None and r.index in flight.stage.frames])

    def _report(self, flight: _Flight, payload: list[tuple[bytes, dict[str, Any]]]) -> bool:
        """A frame event for each frame that came back; True if the callback asks to stop."""
        stage = flight.stage
        share = self.costs[stage.name] / (len(stage.frames) if not stage.chunk else 1)
        self.cost_done += share
        self.cost_left = max(0.0, self.cost_left - share)  # costs are fractional: no -1e-17 at the end
        if self.callback is None:
            return False
        elapsed = time.perf_counter() - self.start
        eta = seconds_left(elapsed, self.cost_done, self.cost_left) or 0.0
        stop = False
        for _, stats in payload:
            event = FrameProgress(stats["index"], len(self.clip), 1.0, stats["losses"], elapsed, eta, None,
                                  stage.pass_index, self.video.passes)
            stop = bool(self.callback(event)) or stop
        return stop
