"""The one progress display of every command that runs long work: :class:`ProgressLine`, and what
each command shows on it (:class:`ProgressBar` for a picture, :class:`BatchBar` for a batch,
:class:`FrameBar` for a video).

On a terminal the line is tqdm's: redrawn in place, cut to the terminal's width (the least useful
parts go first), and left whole when the run ends or is interrupted. Where output is not a terminal
(a log file, a pipe, CI) nothing is redrawn: a whole line is written now and then and at the moments
that matter (a finished job, the last step). The ETA on it is the engine's
(:mod:`painterly.engine.progress`), written by :func:`clock`.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from tqdm import tqdm

#: Seconds between lines where output is not a terminal.
PLAIN_EVERY = {"paint": 5.0, "batch": 30.0, "video": 10.0}


def clock(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on (two hours are ``2:00:00``, never ``120:00``)."""
    seconds = max(0, int(round(seconds)))
    hours, minutes, secs = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def bar(fraction: float, width: int) -> str:
    """``#####-----``: ``fraction`` (0..1) of ``width`` characters filled."""
    filled = max(0, min(width, int(fraction * width)))
    return "#" * filled + "-" * (width - filled)


def fit(choices: Sequence[Sequence[str]], columns: int) -> str:
    """The first of ``choices`` (each a list of parts, most complete first) whose parts, joined by
    spaces, fit in ``columns``; else the last one cut to fit."""
    text = ""
    for parts in choices:
        text = " ".join(p for p in parts if p)
        if len(text) <= columns:
            return text
    return text[:columns]


class ProgressLine:
    """One line of progress on ``stream``; see the module's docstring. ``clock`` is the monotonic
    clock that spaces the lines written where output is not a terminal."""

    def __init__(self, stream: TextIO, enabled: bool = True, every: float = 5.0,
                 clock: Callable[[], float] | None = None) -> None:
        self.stream, self.enabled, self.every = stream, enabled, every
        self.clock = clock or time.monotonic
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.shown: tqdm | None = None
        self.last_plain: float | None = None

    def columns(self) -> int:
        """The width of the terminal the line is written to (200 where it has none to ask)."""
        try:
            return max(40, os.get_terminal_size(self.stream.fileno()).columns)
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            return 200

    def show(self, text: Callable[[int], str], milestone: bool = False) -> None:
        """Show ``text(columns)``: on a terminal at once, in its width; elsewhere at a milestone or
        when ``every`` seconds have passed since the last line."""
        if not self.enabled:
            return
        if self.tty:
            line = text(self.columns() - 1)
            if self.shown is None:
                self.shown = tqdm(file=self.stream, bar_format="{desc}", desc=line, mininterval=0, leave=True)
            else:
                self.shown.set_description_str(line, refresh=True)
            return
        now = self.clock()
        if milestone or self.last_plain is None or now - self.last_plain > self.every:
            self.last_plain = now
            self.stream.write(text(200) + "\n")

    def say(self, message: str) -> None:
        """A line of its own, above the progress line."""
        if not self.enabled:
            return
        if self.shown is not None:
            self.shown.write(message, file=self.stream)
        else:
            self.stream.write(message + "\n")

    def close(self) -> None:
        """End the line (its last state stays on the terminal)."""
        if self.shown is not None:
            self.shown.close()
            self.shown = None


class ProgressBar(ProgressLine):
    """A picture's :class:`~painterly.engine.result.Progress` events: the scale, a bar, the step, the
    loss and each term by name, elapsed time and the ETA. ``intro`` is said before the first step."""

    def __init__(self, stream: TextIO, enabled: bool = True, width: int = 20, intro: str = "",
                 clock: Callable[[], float] | None = None) -> None:
        super().__init__(stream, enabled, PLAIN_EVERY["paint"], clock)
        self.width, self.intro = width, intro

    def __call__(self, event: Any) -> None:
        if self.intro:
            self.say(self.intro)
            self.intro = ""
        self.show(lambda columns: self.line(event, columns), milestone=event.step + 1 == event.total_steps)

    def line(self, event: Any, columns: int) -> str:
        """The progress line, at most ``columns`` characters: the least useful parts go first."""
        done = event.step + 1
        shown = "[" + bar(done / max(event.total_steps, 1), self.width) + "]"
        scale = f"scale {event.scale + 1}/{event.scales} " if event.scales > 1 else ""
        terms = " ".join(f"{k} {v:.2e}" for k, v in event.losses.items() if k != "total" and v)
        core = f"{scale}step {done}/{event.total_steps} loss {event.losses['total']:.3e}"
        times = f"{clock(event.elapsed)}, ETA {clock(event.eta)}"
        return fit([(shown, core, f"({terms})" if terms else "", times), (shown, core, times), (core, times),
                    (core,)], columns)


class BatchBar(ProgressLine):
    """A batch's :class:`~painterly.batch.run.BatchProgress` events: jobs done, images per hour, ETA,
    and on a terminal the running jobs' steps."""

    def __init__(self, stream: TextIO, enabled: bool = True, width: int = 20,
                 clock: Callable[[], float] | None = None) -> None:
        super().__init__(stream, enabled, PLAIN_EVERY["batch"], clock)
        self.width = width

    def __call__(self, event: Any) -> None:
        finished = event.painted + event.skipped + event.failed
        rate = f"{event.images_per_hour:.0f} images/h" if event.images_per_hour else "-- images/h"
        eta = clock(event.eta) if event.eta is not None else "?"
        line = (f"batch [{bar(finished / max(event.total, 1), self.width)}] {finished}/{event.total} jobs "
                f"({event.skipped} skipped, {event.failed} failed), {rate}, ETA {eta}")
        steps = " ".join(f"| job {j}: step {s}/{t}" for j, (s, t) in sorted(event.running.items()) if s)
        self.show(lambda columns: fit([(line, steps), (line,)], columns) if self.tty else line,
                  milestone=event.finished is not None)


class FrameBar(ProgressLine):
    """A video's :class:`~painterly.video.paint.FrameProgress` events: the pass, a bar over the frames,
    the frame and how far it is, its losses, elapsed time and the ETA."""

    def __init__(self, stream: TextIO, enabled: bool = True, width: int = 24,
                 clock: Callable[[], float] | None = None) -> None:
        super().__init__(stream, enabled, PLAIN_EVERY["video"], clock)
        self.width = width

    def __call__(self, event: Any) -> None:
        done = event.frame + event.frame_fraction
        temporal = event.losses.get("temporal")
        passes = f"pass {event.pass_index + 1}/{event.passes} " if event.passes > 1 else ""
        core = (f"{passes}[{bar(done / max(event.frames, 1), self.width)}] frame {event.frame + 1}/{event.frames} "
                f"({event.frame_fraction:4.0%}) loss {event.losses.get('total', 0):.3e}")
        extra = f"temporal {temporal:.2e}" if temporal else ""
        times = f"{clock(event.elapsed)} elapsed, ETA {clock(event.eta)}"
        self.show(lambda columns: fit([(core, extra, times), (core, times), (core,)], columns),
                  milestone=event.done is not None)
