"""``painterly video IN STYLE [STYLE ...] -o OUT``: paint a clip without flicker.

IN is a video file (mp4, mov, webm, gif, ...) or a folder of numbered frames; OUT an H.264 video
(``.mp4``, ``.mov``, ``.mkv``: the source's frame rate, its audio for the painted stretch) or a folder
(a name without an extension) of PNGs. Finished frames are kept in a work folder beside OUT
(``OUT.painterly-work``) as they are painted; Ctrl-C stops, ``--resume`` continues. The output
appears only when complete: the video is encoded to a temporary name and renamed, the folder is
the work folder renamed. Errors end in one line on stderr and a non-zero exit.

``--workers N`` (local processes) or ``--ray auto|ADDRESS`` paints the clip as a batch of works
(:mod:`painterly.video.parallel`): chunks of frames at once, then the later passes in parallel halves;
the work folder then keeps each finished stage (``stages.jsonl``), and ``--resume`` goes on from there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..engine.settings import flag_name, preset
from ..errors import OutputError, SettingsError
from ..video.files import Selection, check_selection, check_video_output, frame_name
from ..video.paint import FrameResult, paint_video
from ..video.settings import VideoSettings
from .options import (
    EXIT_INTERRUPTED,
    Parser,
    add_pool_options,
    add_settings_options,
    check_workers,
    help_text,
    machine_from_args,
    settings_from_args,
)
from .progress import FrameBar

#: The work folder beside the output: OUT.painterly-work.
WORK_SUFFIX = ".painterly-work"
RUN_FILE = "run.json"  # what the work folder was started with: a resume must match it
FRAMES_FILE = "frames.jsonl"  # one line of stats per finished frame
STAGES_FILE = "stages.jsonl"  # in parallel: one line per finished stage (its name and its frames' stats)
RECORD_FILE = "painterly-video.json"  # the run record, in a folder output


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="painterly video",
                     description="Paint a video or a folder of frames in the style of one or more artworks, "
                                 "without flicker (Ruder et al.'s temporal loss on DIS optical flow).")
    parser.add_argument("input", help="a video file (mp4, mov, webm, gif, ...) or a folder of numbered frames")
    parser.add_argument("styles", nargs="+", metavar="style", help="one or more artworks")
    parser.add_argument("-o", "--output", required=True,
                        help="an .mp4/.mov/.mkv file (H.264) or a folder for PNG frames (a name without extension)")
    parser.add_argument("--start", default="",
                        help="first frame to paint: a frame number (0-based) or a time (2.5s, 1:05)")
    parser.add_argument("--end", default="", help="stop before this frame number or time (default: the end)")
    parser.add_argument("--every", type=int, default=1, metavar="N",
                        help="paint every N-th frame (the video keeps its length)")
    parser.add_argument("--fps", type=Fraction, default=None, help="frame rate of a frames folder (default 24)")
    parser.add_argument("--resume", action="store_true", help="continue a stopped run from its work folder")
    parser.add_argument("--keep-frames", action="store_true", help="keep the work folder of PNGs after writing a video")
    parser.add_argument("--history", metavar="FILE.json",
                        help="write the run record (settings, per-frame losses and errors)")
    add_pool_options(parser, preset_help="starting settings for every frame",
                     workers_help="paint in parallel: N local processes (or N Ray actors with --ray), the clip cut "
                     "into N chunks, later passes in parallel halves", ray_help="paint in parallel on a Ray cluster")
    group = parser.add_argument_group("video settings")
    defaults = VideoSettings()
    for f in dataclasses.fields(VideoSettings):
        kwargs: dict[str, Any] = {"dest": f"video_{f.name}", "default": None,
                                  "help": f"{help_text(f.metadata['help'])} (default: {getattr(defaults, f.name)})"}
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        else:
            kwargs["type"] = type(getattr(defaults, f.name))
        group.add_argument(flag_name(f.name), **kwargs)
    add_settings_options(parser)
    return parser


def main(argv: list[str]) -> int:
    """Run ``painterly video``; returns the exit code."""
    from ..engine.devices import setup_process
    from ..engine.images import open_image
    from ..video.files import read_clip

    args, settings, machine, video, selection, kind = _read_command_line(argv)
    source, output = Path(args.input), Path(args.output)
    styles = [open_image(s) for s in args.styles]
    clip = read_clip(source, settings.size, selection, args.fps)
    settings = settings.replace(size=max(clip.size))
    work = output.parent / (output.name + WORK_SUFFIX)
    run = {"input": str(source.resolve()), "styles": [str(Path(s).resolve()) for s in args.styles],
           "selection": dataclasses.asdict(selection), "frames": len(clip.frames), "size": list(clip.size),
           "settings": settings.to_dict(), "video": video.to_dict()}
    pool = None
    if args.workers is not None or args.ray is not None:
        from ..workers.local import open_pool

        pool = open_pool(args.workers, machine.threads or None, args.ray)
    try:
        if pool is not None:
            run["chunks"] = pool.size  # a resume must cut the clip the same way
        finished = _open_work(work, run, args.resume, len(clip.frames))
    except BaseException:
        if pool is not None:
            pool.close()
        raise
    setup_process(machine.threads)
    bar = FrameBar(sys.stderr, enabled=not args.quiet)
    bar.say(f"painterly video: {len(clip.frames)} frames of {source.name} at {clip.size[0]}x{clip.size[1]}, "
            f"{float(clip.fps):.3g} fps, in the style of {', '.join(Path(s).name for s in args.styles)}"
            + (f"; resuming after frame {len(finished)}" if finished else ""))
    try:
        if pool is not None:
            result = _paint_parallel(clip.frames, styles, settings, video, machine, pool, work, bar)
        else:
            result = paint_video(clip.frames, styles, settings, video, machine=machine, finished=finished,
                                 callback=bar, on_frame=lambda frame: _keep(frame, work))
    except KeyboardInterrupt:
        result = None
    finally:
        bar.close()
    if result is None or result.stopped:
        bar.say(_stopped(result, work, len(clip.frames), parallel=pool is not None))
        return EXIT_INTERRUPTED
    _finish(args, kind, run, clip, result, work, first=0 if pool is not None else len(finished), say=bar.say)
    return 0


def _read_command_line(argv: list[str]):
    """The parsed command line, the picture's, machine's and video's settings, the frames selected,
    and the kind of output (``video`` or ``frames``); every mistake found before any work."""
    args = build_parser().parse_args(argv)
    settings = settings_from_args(args, preset(args.preset))
    machine = machine_from_args(args)
    video = VideoSettings(**{f.name: getattr(args, f"video_{f.name}") for f in dataclasses.fields(VideoSettings)
                             if getattr(args, f"video_{f.name}") is not None})
    selection = Selection(args.start, args.end, args.every)
    check_selection(selection)
    source = Path(args.input)
    kind = _check_output(Path(args.output), [source, *map(Path, args.styles)])
    check_extras(video_files=kind == "video" or not source.is_dir())
    if args.fps is not None and args.fps <= 0:
        raise SettingsError(f"--fps must be > 0, got {args.fps}")
    if args.history and Path(args.history).suffix.lower() != ".json":
        raise OutputError(f"--history must name a .json file, got {args.history}")
    check_workers(args)
    return args, settings, machine, video, selection, kind


def _keep(frame: FrameResult, work: Path) -> None:
    """A finished frame's PNG and stats in the work folder, for ``--resume``."""
    from ..engine.images import save_image

    save_image(frame.image, work / frame_name(frame.index + 1))
    with open(work / FRAMES_FILE, "a") as handle:
        handle.write(json.dumps(frame.stats()) + "\n")


def _stopped(result: Any, work: Path, n_frames: int, parallel: bool) -> str:
    """What a stopped run says: how far it got and how to go on."""
    if parallel:
        stages = [line["stage"] for line in _read_lines(work / STAGES_FILE)]
        return (f"painterly video: stopped after {len(stages)} stages ({', '.join(stages) or 'none'}); their frames "
                f"are kept in {work}; run the same command with --resume to continue")
    done = len(result.frames) if result else len(_read_stats(work))
    return (f"painterly video: stopped after {done} of {n_frames} frames; they are kept in {work}; "
            f"run the same command with --resume to continue")


def _finish(args: argparse.Namespace, kind: str, run: dict[str, Any], clip: Any, result: Any, work: Path,
            first: int, say: Any) -> None:
    """Write the video (or frames) and the history, and say how it went; ``first`` is the first frame
    this run painted (the ones before it were painted before a resume)."""
    output, source = Path(args.output), Path(args.input)
    from ..output.record import make_video_record

    record = make_video_record(run, output, str(clip.fps), result)
    _write_output(kind, output, work, result, clip, source, record, args.keep_frames)
    if args.history:
        from ..engine.images import atomic_path

        with atomic_path(args.history) as tmp:
            tmp.write_text(json.dumps(record, indent=1) + "\n")
    painted = result.frames[first:]
    per_frame = sum(f.seconds for f in painted) / max(len(painted), 1)
    say(f"painterly video: done in {result.seconds:.1f} s ({per_frame:.1f} s a frame); temporal error "
        f"{result.temporal_error:.1f} (the content frames: {result.content_error:.1f}); wrote {output}")


def check_extras(video_files: bool) -> None:
    """Refuse, before any work, a run the ``video`` extra is missing for: OpenCV computes the optical
    flow of every clip, PyAV reads and writes ``video_files`` (a frames folder in and out needs none)."""
    import importlib

    needed = {"cv2": "OpenCV (the optical flow)", **({"av": "PyAV (video files)"} if video_files else {})}
    missing = []
    for module, what in needed.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(what)
    if missing:
        raise SettingsError(f"painterly video needs {' and '.join(missing)}, not installed: "
                            "pip install 'painterly[video]'")


def _check_output(output: Path, inputs: list[Path]) -> str:
    """``"video"`` or ``"folder"``; refuses an unknown extension, a missing parent, an input, a full folder."""
    kind = check_video_output(output)
    parent = output.resolve().parent
    if not parent.is_dir():
        raise OutputError(f"output folder does not exist: {output.parent}")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder is not writable: {output.parent}")
    for source in inputs:
        if source.exists() and output.exists() and output.resolve() == source.resolve():
            raise OutputError(f"output {output} is also an input; choose another name (inputs are never overwritten)")
        if kind == "folder" and source.exists() and output.resolve() in source.resolve().parents:
            raise OutputError(f"output folder {output} holds an input; choose another name")
    if kind == "folder" and output.exists() and any(output.iterdir()):
        raise OutputError(f"output folder {output} already holds files; choose a new or empty folder")
    if kind == "video" and output.is_dir():
        raise OutputError(f"output {output} is a folder, expected a video file name such as painted.mp4")
    return kind


def _open_work(work: Path, run: dict[str, Any], resume: bool, n_frames: int) -> list[FrameResult]:
    """Make the work folder, or reopen it with ``--resume``; the frames it already holds."""
    if work.exists() and not resume:
        raise OutputError(f"{work} holds an earlier run's frames: add --resume to continue it, or delete the folder")
    if not work.exists():
        work.mkdir()
        (work / RUN_FILE).write_text(json.dumps(run, indent=1) + "\n")
        return []
    try:
        earlier = json.loads((work / RUN_FILE).read_text())
    except (OSError, ValueError):
        raise OutputError(f"{work} is not a painterly work folder (no readable {RUN_FILE}); delete it") from None
    changed = [k for k in run if earlier.get(k) != run[k]]
    if changed:
        raise SettingsError(f"--resume: the run in {work} was started with different {', '.join(changed)}; "
                            f"use the same command, or delete the folder to start over")
    from ..engine.images import open_image

    finished: list[FrameResult] = []
    for stats in _read_stats(work)[:n_frames]:
        path = work / frame_name(stats["index"] + 1)
        if stats["index"] != len(finished) or not path.is_file():
            break
        finished.append(FrameResult(image=open_image(path), **stats))
    return finished


def _paint_parallel(frames, styles, settings, video: VideoSettings, machine: Any, pool: Any, work: Path, bar: Any):
    """:func:`painterly.video.parallel.paint_video_parallel`, its finished stages kept in ``work``."""
    from ..engine.images import open_image, save_image
    from ..video.parallel import paint_video_parallel

    lines = _read_lines(work / STAGES_FILE)
    latest: dict[int, dict[str, Any]] = {}
    for line in lines:
        latest.update({stats["index"]: stats for stats in line["frames"]})
    painted: list[FrameResult | None] = [None] * len(frames)
    for index, stats in latest.items():
        painted[index] = FrameResult(image=open_image(work / frame_name(index + 1)), **stats)

    def keep(stage: Any, done: list[FrameResult]) -> None:
        for frame in done:  # the frames first, then the line that says they are whole
            save_image(frame.image, work / frame_name(frame.index + 1))
        with open(work / STAGES_FILE, "a") as handle:
            handle.write(json.dumps({"stage": stage.name, "frames": [f.stats() for f in done]}) + "\n")

    return paint_video_parallel(frames, styles, pool, settings, video, machine=machine, chunks=pool.size,
                                finished=[line["stage"] for line in lines], painted=painted, on_stage=keep,
                                callback=bar)


def _read_lines(path: Path) -> list[dict[str, Any]]:
    """A JSON-lines file's lines up to the first one cut short by a crash (none if it is missing)."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            break
    return out


def _read_stats(work: Path) -> list[dict[str, Any]]:
    """The finished frames' stats, one line each (a line cut short by a crash ends them)."""
    return _read_lines(work / FRAMES_FILE)


def _write_output(kind: str, output: Path, work: Path, result, clip, source: Path, record: dict[str, Any],
                  keep_frames: bool) -> None:
    if kind == "video":
        from ..video.files import write_video

        span = (clip.times[0], clip.times[-1] + 1 / float(clip.fps)) if clip.times else None
        write_video(result.images, output, clip.fps, audio_from=source if clip.audio else None, audio_span=span)
        if not keep_frames:
            shutil.rmtree(work)
        return
    if len(result.frames) > 1 and record["video"]["passes"] > 1:  # the work folder holds the first pass
        from ..engine.images import save_image

        for frame in result.frames:
            save_image(frame.image, work / frame_name(frame.index + 1))
    (work / RECORD_FILE).write_text(json.dumps(record, indent=1) + "\n")
    for name in (RUN_FILE, FRAMES_FILE, STAGES_FILE):
        (work / name).unlink(missing_ok=True)
    if output.exists():
        output.rmdir()  # checked empty before the run
    os.replace(work, output)


