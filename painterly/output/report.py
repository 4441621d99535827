"""Show the work (the tutorial's step 8): snapshots taken during a run, then a report folder.

>>> recorder = Recorder()
>>> result = stylize(content, style, callback=recorder)  # doctest: +SKIP
>>> write_report(result, "report", recorder)  # doctest: +SKIP

The folder gets ``inputs.png`` (content and styles), ``snapshots.png`` (the image every tenth of the
run, titled by step), ``progress.gif`` (and ``progress.mp4`` when imageio-ffmpeg is installed),
``result.png`` (content | style | result), ``losses.png`` (losses per step, log scale), ``run.json``
(the run record) and ``index.html``, one page showing them all that works opened straight from disk.
Figures need matplotlib (the ``report`` extra), imported inside the functions that draw.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import importlib.util
import itertools
import json
import math
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from PIL import Image, ImageDraw, ImageFont

from ..engine.images import atomic_path
from ..errors import OutputError, SettingsError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..engine.result import Progress, Result

__all__ = ["Recorder", "animation_frames", "inputs_figure", "losses_figure", "phase_changes", "result_figure",
           "snapshots_figure", "spread_steps", "write_report"]

SNAPSHOTS = 10  # the tutorial's grid: 10 images in 2 rows of 5
PER_ROW = 5
FRAMES = 30  # animation frames over a run (every step when the run is shorter)
KEEP_SIDE = 384  # longer side of the copies a Recorder keeps, px
GIF_SIDE = 320  # longer side of the animation, px
FRAME_MS = 120
LAST_FRAME_MS = 1500  # the result stays on screen a while before the loop restarts
VIDEO_FPS = 8
TILE_INCHES = 2.4  # width of one picture in a grid figure
TITLE_INCHES = 0.32  # the band above each picture that holds its title
HEAD_INCHES = 0.36  # the band above a grid that holds the figure's title
DPI = 100
LOSS_RANGE = 1e-4  # the losses plot shows values down to this fraction of the largest
#: Every file write_report may write; a rerun into the same folder removes the ones it did not write.
ARTIFACTS = ("inputs.png", "snapshots.png", "progress.gif", "progress.mp4", "result.png", "losses.png",
             "run.json", "index.html")


def spread_steps(total: int, count: int) -> list[int]:
    """``count`` 0-based steps spread evenly over ``total`` steps, the last one last (all when fewer).

    >>> spread_steps(1000, 10)[:3], spread_steps(1000, 10)[-1], spread_steps(3, 10)
    ([99, 199, 299], 999, [0, 1, 2])
    """
    count = min(count, total)
    return sorted({-(-(k + 1) * total // count) - 1 for k in range(count)})


class Recorder:
    """A :func:`~painterly.engine.run.stylize` callback that keeps small copies of the image at a few steps.

    On the first step it plans ``snapshots`` steps for the grid and ``frames`` for the animation, each
    spread evenly over the planned steps (``Progress.total_steps``). Only those steps render the image,
    so recording costs a few dozen conversions per run, however long. Never asks the run to stop.
    """

    def __init__(self, snapshots: int = SNAPSHOTS, frames: int = FRAMES, side: int = KEEP_SIDE) -> None:
        if snapshots < 1 or frames < 0 or side < 16:
            raise SettingsError(f"Recorder needs snapshots >= 1, frames >= 0 and side >= 16, "
                                f"got {snapshots}, {frames}, {side}")
        self.snapshots, self.frames, self.side = snapshots, frames, side
        self.total_steps = 0  # planned steps of the run being recorded
        self.grid_steps: list[int] = []
        self.frame_steps: list[int] = []
        self.images: dict[int, Image.Image] = {}  # 0-based step -> RGB copy, longer side <= side
        self.seconds = 0.0  # time spent rendering and shrinking: the recorder's whole cost
        self._wanted: set[int] = set()

    def __call__(self, event: Progress) -> None:
        if event.step == 0 or not self.total_steps:  # a new run: plan it
            self._plan(event.total_steps)
        if event.step in self._wanted:
            started = time.perf_counter()
            image = event.image()
            image.thumbnail((self.side, self.side), Image.Resampling.LANCZOS)
            self.images[event.step] = image
            self.seconds += time.perf_counter() - started

    def _plan(self, total_steps: int) -> None:
        self.total_steps = total_steps
        self.grid_steps = spread_steps(total_steps, self.snapshots)
        self.frame_steps = spread_steps(total_steps, self.frames) if self.frames else []
        self._wanted = set(self.grid_steps) | set(self.frame_steps)
        self.images = {}
        self.seconds = 0.0


# -- figures ------------------------------------------------------------------------------------

def tile_figure(tiles: Sequence[tuple[str, Image.Image]], per_row: int = PER_ROW, title: str = "") -> Figure:
    """Pictures in rows of ``per_row``, each titled; every cell is TILE_INCHES wide at DPI."""
    import numpy as np
    from matplotlib.figure import Figure

    rows, cols = math.ceil(len(tiles) / per_row), min(len(tiles), per_row)
    aspect = min(max(img.height / img.width for _, img in tiles), 2.0)
    cell_w, image_h = TILE_INCHES, TILE_INCHES * aspect
    cell_h, head, pad = image_h + TITLE_INCHES, HEAD_INCHES if title else 0.0, 0.06
    width, height = cols * cell_w, rows * cell_h + head
    fig = Figure(figsize=(width, height), dpi=DPI, facecolor="white")
    for i, (name, img) in enumerate(tiles):
        row, col = divmod(i, per_row)
        bottom = height - head - (row + 1) * cell_h
        ax = fig.add_axes(((col * cell_w + pad) / width, (bottom + pad) / height,
                           (cell_w - 2 * pad) / width, (image_h - 2 * pad) / height))
        ax.imshow(np.asarray(img.convert("RGB")))
        ax.set_axis_off()
        ax.set_title(name, fontsize=10, pad=4)
    if title:
        fig.suptitle(title, y=1 - 0.1 * HEAD_INCHES / height, va="top", fontsize=12)
    return fig


def _input_tiles(result: Result) -> list[tuple[str, Image.Image]]:
    tiles = [("content", result.content)] if result.content is not None else []
    many = len(result.styles) > 1
    return tiles + [(f"style {i + 1}" if many else "style", s) for i, s in enumerate(result.styles)]


def inputs_figure(result: Result) -> Figure:
    """Content and style(s) side by side, titled (the tutorial's first picture)."""
    tiles = _input_tiles(result)
    return tile_figure(tiles, per_row=max(len(tiles), 1), title="inputs")


def result_figure(result: Result) -> Figure:
    """Content | style(s) | result, titled (the tutorial's last picture)."""
    tiles = [*_input_tiles(result), ("result", result.image)]
    return tile_figure(tiles, per_row=len(tiles), title=_summary(result))


def snapshot_steps(result: Result, recorder: Recorder, count: int = SNAPSHOTS) -> list[int]:
    """The kept steps closest to ``count`` steps spread over the run as it went (it may have stopped early)."""
    kept = sorted(recorder.images)
    if not kept:
        return []
    chosen = {min(kept, key=lambda s: (abs(s - t), s)) for t in spread_steps(len(result.history), count)}
    return sorted(chosen)


def snapshots_figure(result: Result, recorder: Recorder, snapshots: int = SNAPSHOTS,
                     per_row: int = PER_ROW) -> Figure:
    """The image as the run went, in rows of ``per_row``, each titled with its step (1-based)."""
    steps = snapshot_steps(result, recorder, snapshots)
    if not steps:
        raise SettingsError("the recorder holds no snapshots: pass it to stylize as the callback first")
    return tile_figure([(_step_title(result, s), recorder.images[s]) for s in steps], per_row,
                       title=f"the image at {len(steps)} points of the {len(result.history)}-step run")


def _step_title(result: Result, step: int) -> str:
    entry = _entry(result.history, step)
    scales = {e["scale"] for e in result.history}
    if entry is not None and len(scales) > 1:
        w, h = entry["size"]
        return f"step {step + 1} ({w}x{h})"
    return f"step {step + 1}"


def _entry(history: list[dict[str, Any]], step: int) -> dict[str, Any] | None:
    if 0 <= step < len(history) and history[step]["step"] == step:
        return history[step]
    return next((e for e in history if e["step"] == step), None)


def phase_changes(history: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """(first step of a new phase, 0-based; label) wherever the scale or the optimizer changes."""
    changes = []
    for before, after in itertools.pairwise(history):
        what = []
        if after.get("scale") != before.get("scale"):
            w, h = after["size"]
            what.append(f"scale {after['scale'] + 1}: {w}x{h}")
        if after.get("optimizer") != before.get("optimizer"):
            what.append(f"{before.get('optimizer')} -> {after.get('optimizer')}")
        if what:
            changes.append((after["step"], ", ".join(what)))
    return changes


def losses_figure(history: list[dict[str, Any]], title: str = "losses") -> Figure:
    """Total, style, content and tv loss (weighted) against the step, log scale; phase changes marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), dpi=DPI, facecolor="white")
    ax = fig.add_subplot()
    steps = [e["step"] + 1 for e in history]
    marker = "o" if len(history) < 30 else None
    for name, width in (("total", 2.2), ("style", 1.2), ("content", 1.2), ("tv", 1.2)):
        shown = [v if 0 < v < math.inf else math.nan for v in (e.get(name, 0.0) for e in history)]
        if not all(math.isnan(v) for v in shown):  # a log scale cannot show 0: a term switched off is left out
            ax.plot(steps, shown, label=name, lw=width, marker=marker, ms=3)
    ax.set_yscale("log")
    positive = [v for line in ax.lines for v in cast(Iterable[float], line.get_ydata()) if 0 < v < math.inf]
    if positive:  # a term near 0 at the first steps (content, started from the content) would squash the rest
        ax.set_ylim(bottom=max(min(positive), max(positive) * LOSS_RANGE) / 2)
    for step, label in phase_changes(history):
        ax.axvline(step + 0.5, color="0.45", ls="--", lw=1)
        ax.annotate(label, (step + 0.5, 0.98), xycoords=("data", "axes fraction"), rotation=90, va="top",
                    ha="right", fontsize=8, color="0.3")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (weighted, log scale)")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    if ax.lines:
        ax.legend(loc="best")
    fig.tight_layout()
    return fig


def _summary(result: Result) -> str:
    return (f"best loss {result.best_loss:.4g} at step {result.best_step + 1} of {len(result.history)}; "
            f"{result.seconds:.1f} s on {result.device}")


# -- animation ----------------------------------------------------------------------------------

def animation_frames(result: Result, recorder: Recorder, side: int = GIF_SIDE) -> list[Image.Image]:
    """The recorded frames at one even size (longer side ``side``), each labelled with its step, then the result."""
    w, h = result.image.size
    scale = min(1.0, side / max(w, h))
    size = (max(2, round(w * scale) // 2 * 2), max(2, round(h * scale) // 2 * 2))  # even: video codecs need it
    total = len(result.history)
    steps = [s for s in recorder.frame_steps if s in recorder.images] or sorted(recorder.images)
    frames = [_label(recorder.images[s].resize(size, Image.Resampling.LANCZOS), f"step {s + 1}/{total}") for s in steps]
    return frames + [_label(result.image.resize(size, Image.Resampling.LANCZOS), "result")]


def _label(image: Image.Image, text: str) -> Image.Image:
    """``image`` with ``text`` in white on a dark band along its bottom edge."""
    image = image.convert("RGB")
    band = max(12, image.height // 12)
    font = ImageFont.load_default(size=band - 4)
    draw = ImageDraw.Draw(image, "RGBA")
    draw.rectangle((0, image.height - band, image.width, image.height), fill=(0, 0, 0, 150))
    if isinstance(font, ImageFont.FreeTypeFont):
        draw.text((4, image.height - band / 2), text, fill="white", font=font, anchor="lm")
    else:  # Pillow built without FreeType: the small bitmap font, which knows no anchors
        draw.text((4, image.height - band + 1), text, fill="white", font=font)
    return image


def _write_gif(frames: list[Image.Image], path: Path) -> None:
    durations = [FRAME_MS] * (len(frames) - 1) + [LAST_FRAME_MS]
    with atomic_path(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0,
                       optimize=True)


def _write_video(frames: list[Image.Image], path: Path) -> bool:
    """progress.mp4 when imageio-ffmpeg is installed (the ``video`` extra); False when it is not."""
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (the codec binary)
        import numpy as np
    except ImportError:
        return False
    hold = [frames[-1]] * max(1, LAST_FRAME_MS * VIDEO_FPS // 1000)
    with atomic_path(path) as tmp:
        writer = imageio.get_writer(tmp, format="FFMPEG", fps=VIDEO_FPS, codec="libx264", macro_block_size=2,
                                    pixelformat="yuv420p", ffmpeg_log_level="error")
        try:
            for frame in [*frames[:-1], *hold]:
                writer.append_data(np.asarray(frame))
        finally:
            writer.close()
    return True


# -- the folder ---------------------------------------------------------------------------------

def write_report(result: Result, folder: str | os.PathLike, recorder: Recorder | None = None, *,
                 snapshots: int = SNAPSHOTS, per_row: int = PER_ROW, video: bool = True,
                 gif_side: int = GIF_SIDE) -> Path:
    """Write the report of ``result`` into ``folder`` (created if needed); returns its ``index.html``.

    ``recorder`` is the :class:`Recorder` that was the run's callback; without one there are no
    snapshots and no animation. ``video=False`` skips ``progress.mp4``; ``gif_side`` caps the
    animation's longer side (it is never larger than the result). Each file is written to a
    temporary name and renamed, so a crash never leaves half a picture.
    """
    if snapshots < 1 or per_row < 1 or gif_side < 16:
        raise SettingsError(f"write_report needs snapshots >= 1, per_row >= 1 and gif_side >= 16, "
                            f"got {snapshots}, {per_row} and {gif_side}")
    if importlib.util.find_spec("matplotlib") is None:
        raise OutputError("the report's figures need matplotlib: pip install 'painterly[report]'")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []

    def figure(name: str, fig: Figure) -> None:
        with atomic_path(out / name) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, facecolor="white")
        written.append(name)

    if _input_tiles(result):
        figure("inputs.png", inputs_figure(result))
    if recorder is not None and recorder.images:
        figure("snapshots.png", snapshots_figure(result, recorder, snapshots, per_row))
        frames = animation_frames(result, recorder, gif_side)
        _write_gif(frames, out / "progress.gif")
        written.append("progress.gif")
        if video and _write_video(frames, out / "progress.mp4"):
            written.append("progress.mp4")
    figure("result.png", result_figure(result))
    figure("losses.png", losses_figure(result.history, title=f"losses: {_summary(result)}"))
    with atomic_path(out / "run.json") as tmp:
        tmp.write_text(json.dumps(result.record(), indent=1) + "\n")
    written.append("run.json")
    with atomic_path(out / "index.html") as tmp:
        tmp.write_text(_page(result, written, recorder), encoding="utf-8")
    for stale in set(ARTIFACTS) - {*written, "index.html"}:  # left by an earlier report in this folder
        with contextlib.suppress(FileNotFoundError):
            (out / stale).unlink()
    return out / "index.html"


def _page(result: Result, files: list[str], recorder: Recorder | None) -> str:
    """index.html: every picture by relative link, the run's numbers and the settings table."""
    from ..engine.settings import Settings

    esc = html.escape
    sections = []

    def picture(name: str, heading: str, note: str = "") -> None:
        if name in files:
            caption = f"<p>{esc(note)}</p>" if note else ""
            sections.append(f'<h2>{esc(heading)}</h2>{caption}<img src="{name}" alt="{esc(heading)}">')

    picture("inputs.png", "Inputs")
    picture("snapshots.png", "Snapshots", "The image as the optimization went, titled by step.")
    if "progress.gif" in files:
        video = ('<video src="progress.mp4" controls loop muted playsinline></video>'
                 if "progress.mp4" in files else "")
        sections.append(f'<h2>Animation</h2><img src="progress.gif" alt="the run, animated">{video}')
    elif recorder is None:
        sections.append("<p>No snapshots: pass a <code>painterly.output.report.Recorder</code> to stylize as the "
                        "callback to get the grid and the animation.</p>")
    picture("result.png", "Result", "Content, style and result. The result is the image with the lowest loss.")
    picture("losses.png", "Losses", "Weighted losses per step; dashed lines mark a new scale or optimizer.")
    record = result.record()
    run_rows = [("steps run", len(result.history)), ("best step", result.best_step + 1),
                ("best loss", f"{result.best_loss:.6g}"), ("stopped early", result.stopped),
                ("seconds (whole call)", f"{result.seconds:.2f}"), ("seconds of setup", f"{result.seconds_setup:.2f}"),
                ("device", result.device), ("precision", result.precision), ("result size", "x".join(
                    map(str, result.image.size))), *record["versions"].items()]
    sections.append("<h2>Run</h2>" + _table(run_rows) + '<p>The whole record: <a href="run.json">run.json</a></p>')
    helps = {f.name: f.metadata.get("help", "") for f in dataclasses.fields(Settings)}
    settings_rows = [(name, _show(value), helps.get(name, "")) for name, value in record["settings"].items()]
    sections.append("<h2>Settings</h2>" + _table(settings_rows, ("setting", "value", "meaning")))
    return PAGE.format(title=esc(f"painterly report: {_summary(result)}"), body="\n".join(sections))


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value)) or "(equal)"
    return repr(value) if value == "" else str(value)


def _table(rows: Sequence[Sequence[Any]], head: Sequence[str] = ()) -> str:
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    top = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>" if head else ""
    return f"<table>{top}{cells}</table>"


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; max-width: 1240px; margin: 2em auto; padding: 0 1em; color: #222; }}
img, video {{ max-width: 100%; height: auto; display: block; margin: .5em 0 1.5em; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border-bottom: 1px solid #ddd; padding: .25em .8em .25em 0; text-align: left; vertical-align: top; }}
td:first-child {{ font-family: ui-monospace, monospace; white-space: nowrap; }}
</style>
</head>
<body>
<h1>{title}</h1>
{body}
</body>
</html>
"""
