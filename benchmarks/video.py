"""Video benchmark: seconds per frame, the share of flow and temporal term, and flicker measured.

On a clip generated from the bundled photos, it paints every frame with the same settings:
independently (each frame a fresh :func:`painterly.stylize` run from its photo), as ``painterly
video`` does (:func:`painterly.video.paint.paint_video`), and with ``--parallel N`` also as ``painterly
video --workers N --passes P`` does (:func:`painterly.video.parallel.paint_video_parallel` on N local
worker processes). Two clips (``--clip``):

* ``pan``: a slow pan over the turtle photo that zooms in a little (one motion everywhere);
* ``parallax``: a camera moving past a near subject: the cat, cut out as an ellipse, crosses the
  coffee photo far behind it, faster than the background and turning a little, so that its edges
  hide and uncover background every frame (occlusions, disocclusions and motion boundaries, the
  cases the flow's reliability mask exists for). Made here from the bundled photos (see their
  ``CREDITS.md``), so it is as freely licensed as they are.

It reports

* seconds per frame (first frame, later frames) at each size;
* the share of a later frame's time spent on optical flow, masks and warping, and on the temporal
  term's forward and backward passes (timed on its own, times the steps the frame ran);
* the temporal error (masked mean squared difference of each output frame to its warped
  predecessor, :func:`painterly.video.paint.temporal_errors`) of both, and their style losses (the
  weighted style term of each kept frame at full size), so the steadiness is compared at equal style;
* a side-by-side GIF (independent left, painterly video right) in ``--out``.

    python benchmarks/video.py --sizes 256 512 --frames 8 --out docs/video
    python benchmarks/video.py --clip parallax --sizes 256 --frames 8 --parallel 2 --passes 3

Needs the ``video`` extra. The figures depend on the machine; say which one and the command.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

import painterly
from painterly.engine.run import Engine
from painterly.video.paint import paint_video, temporal_errors
from painterly.video.settings import VideoSettings
from painterly.video.temporal import TemporalTerm

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "painterly" / "examples" / "content" / "green_sea_turtle.jpg"
STYLE = ROOT / "painterly" / "examples" / "styles" / "great_wave.jpg"
NEAR = ROOT / "painterly" / "examples" / "content" / "chelsea.jpg"
FAR = ROOT / "painterly" / "examples" / "content" / "coffee.jpg"


def pan_clip(n: int, longer: int, photo: Path = PHOTO) -> list[Image.Image]:
    """``n`` frames (3:2, longer side ``longer``, even sides) panning right over ``photo`` and zooming in
    a little: the view moves 1% of the photo's width a frame and shrinks 0.5% a frame."""
    img = Image.open(photo).convert("RGB")
    w0 = img.width * 0.7
    size = (longer - longer % 2, (longer * 2 // 3) - (longer * 2 // 3) % 2)
    frames = []
    for i in range(n):
        w = w0 * (1 - 0.005 * i)
        h = w * 2 / 3
        x = img.width * 0.05 + img.width * 0.01 * i
        y = (img.height - h) / 2
        frames.append(img.resize(size, Image.LANCZOS, box=(x, y, x + w, y + h)))
    return frames


def parallax_clip(n: int, longer: int) -> list[Image.Image]:
    """``n`` frames (3:2, longer side ``longer``) of a near subject crossing a far background.

    The background (the coffee photo) pans 0.6% of its width a frame; the subject (the cat's face, an
    ellipse with a soft edge) moves 4% of the frame's width a frame from left to right, grows 1.5% a
    frame and turns 1.5 degrees a frame, so its outline hides and uncovers background every frame.
    """
    from PIL import ImageFilter

    far, near = Image.open(FAR).convert("RGB"), Image.open(NEAR).convert("RGB")
    size = (longer - longer % 2, (longer * 2 // 3) - (longer * 2 // 3) % 2)
    w, h = size
    face = near.crop((near.width * 0.25, near.height * 0.05, near.width * 0.75, near.height * 0.75))
    frames = []
    for i in range(n):
        view_w = far.width * 0.8
        x = far.width * 0.02 + far.width * 0.006 * i
        y = (far.height - view_w * 2 / 3) / 2
        frame = far.resize(size, Image.LANCZOS, box=(x, y, x + view_w, y + view_w * 2 / 3))
        side = round(h * 0.55 * (1 + 0.015 * i))
        subject = face.resize((side, round(side * face.height / face.width)), Image.LANCZOS).rotate(
            1.5 * i, Image.BICUBIC, expand=False)
        mask = Image.new("L", subject.size, 0)
        ImageDraw.Draw(mask).ellipse((0, 0, subject.width - 1, subject.height - 1), fill=255)
        mask = mask.filter(ImageFilter.GaussianBlur(max(1, side // 60)))
        left = round(w * (0.12 + 0.04 * i))
        top = round(h * 0.2)
        frame.paste(subject, (left, top), mask)
        frames.append(frame)
    return frames


CLIPS = {"pan": pan_clip, "parallax": parallax_clip}


def term_seconds(size: tuple[int, int], steps: int, repeat: int = 20) -> float:
    """Seconds the temporal term's forward and backward take over ``steps`` steps at ``size``."""
    w, h = size
    term = TemporalTerm(torch.rand(1, 3, h, w) * 255, (torch.rand(1, 1, h, w) > 0.1).float(), 1.0)
    image = (torch.rand(1, 3, h, w) * 255).requires_grad_(True)
    for _ in range(3):
        term(image, {}).backward()
    t0 = time.perf_counter()
    for _ in range(repeat):
        image.grad = None
        term(image, {}).backward()
    return (time.perf_counter() - t0) / repeat * steps


def side_by_side(left: list[Image.Image], right: list[Image.Image], path: Path, fps: float = 8.0,
                 right_label: str = "painterly video", left_label: str = "each frame alone") -> Path:
    """A looping GIF of ``left`` and ``right`` next to each other, each labelled."""
    w, h = left[0].size
    frames = []
    for a, b in zip(left, right):
        canvas = Image.new("RGB", (2 * w + 8, h + 18), "white")
        canvas.paste(a, (0, 18))
        canvas.paste(b, (w + 8, 18))
        draw = ImageDraw.Draw(canvas)
        draw.text((4, 3), left_label, fill="black")
        draw.text((w + 12, 3), right_label, fill="black")
        frames.append(canvas)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0, optimize=True)
    return path


def run(size: int, n_frames: int, settings: painterly.Settings, video: VideoSettings, out: Path | None,
        clip: str = "pan", parallel: int = 0, passes: int = 3) -> dict:
    frames = CLIPS[clip](n_frames, size)
    style = Image.open(STYLE).convert("RGB")
    engine = Engine()
    painterly.stylize(frames[0], style, settings.replace(size=max(frames[0].size), steps=2, start_size=0),
                      engine=engine)  # warm-up: the network loaded, caches filled

    t0 = time.perf_counter()
    alone = [painterly.stylize(f, style, settings.replace(size=max(f.size)), engine=engine) for f in frames]
    alone_seconds = (time.perf_counter() - t0) / n_frames
    result = paint_video(frames, style, settings, video, engine=engine)
    later = result.frames[1:]

    frame_seconds = statistics.mean(f.seconds for f in later)
    flow_seconds = statistics.mean(f.flow_seconds for f in later)
    term = term_seconds(frames[0].size, round(statistics.mean(f.steps for f in later)))
    errors_alone = temporal_errors([r.image for r in alone], frames, video.flow)
    row = {
        "clip": clip,
        "size": list(frames[0].size),
        "frames": n_frames,
        "seconds_per_frame_alone": alone_seconds,
        "seconds_first_frame": result.frames[0].seconds,
        "seconds_later_frame": frame_seconds,
        "steps_later_frame": statistics.mean(f.steps for f in later),
        "flow_share": flow_seconds / frame_seconds,
        "term_share": term / frame_seconds,
        "temporal_error_alone": statistics.mean(errors_alone),
        "temporal_error_video": result.temporal_error,
        "temporal_error_content": result.content_error,
        "style_alone": statistics.mean(r.history[r.best_step]["style"] for r in alone[1:]),
        "style_video": statistics.mean(f.losses["style"] for f in later),
    }
    row["error_ratio"] = row["temporal_error_video"] / row["temporal_error_alone"]
    row["style_ratio"] = row["style_video"] / row["style_alone"]
    if out is not None:
        side_by_side([r.image for r in alone], result.images, out / f"{clip}_{size}px.gif")
    if parallel:
        row.update(run_parallel(frames, style, settings, video, parallel, passes, out, f"{clip}_{size}px"))
    return row


def run_parallel(frames: list[Image.Image], style: Image.Image, settings: painterly.Settings, video: VideoSettings,
                 workers: int, passes: int, out: Path | None, name: str) -> dict:
    """The clip painted as ``painterly video --workers N --passes P`` does, on N local worker processes
    sharing this machine's threads; its GIF shows the clip beside the painting."""
    from painterly.video.parallel import paint_video_parallel
    from painterly.workers.local import LocalPool

    t0 = time.perf_counter()
    pool = LocalPool(workers, max(1, torch.get_num_threads() // workers))
    spread = paint_video_parallel(frames, style, pool, settings, video.replace(passes=passes))
    if out is not None:
        side_by_side(frames, spread.images, out / f"{name}_parallel.gif",
                     right_label=f"--workers {workers} --passes {passes}", left_label="the clip")
    return {"parallel_workers": workers, "parallel_passes": passes,
            "seconds_per_frame_parallel": (time.perf_counter() - t0) / len(frames),
            "temporal_error_parallel": spread.temporal_error,
            "style_parallel": statistics.mean(f.losses["style"] for f in spread.frames[1:])}


def table(rows: list[dict]) -> str:
    lines = [
        ("| clip | size | s/frame alone | s first frame | s later frame (steps) | flow share | temporal term share "
         "| temporal error alone | video | ratio | content frames | style loss ratio (video/alone) |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.get('clip', 'pan')} | {r['size'][0]}x{r['size'][1]} | {r['seconds_per_frame_alone']:.1f} "
            f"| {r['seconds_first_frame']:.1f} "
            f"| {r['seconds_later_frame']:.1f} ({r['steps_later_frame']:.0f}) | {r['flow_share']:.1%} "
            f"| {r['term_share']:.1%} | {r['temporal_error_alone']:.1f} | {r['temporal_error_video']:.1f} "
            f"| {r['error_ratio']:.2f} | {r['temporal_error_content']:.1f} | {r['style_ratio']:.2f} |")
    parallel = [r for r in rows if r.get("parallel_workers")]
    if parallel:
        lines += ["", "| clip | size | workers x passes | s/frame | temporal error | ratio to alone "
                      "| style loss ratio |", "|---|---|---|---|---|---|---|"]
        for r in parallel:
            lines.append(
                f"| {r['clip']} | {r['size'][0]}x{r['size'][1]} | {r['parallel_workers']} x {r['parallel_passes']} "
                f"| {r['seconds_per_frame_parallel']:.1f} | {r['temporal_error_parallel']:.1f} "
                f"| {r['temporal_error_parallel'] / r['temporal_error_alone']:.2f} "
                f"| {r['style_parallel'] / r['style_alone']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--clip", choices=sorted(CLIPS), action="append", help="clips to paint (default: pan)")
    parser.add_argument("--parallel", type=int, default=0, metavar="N",
                        help="also paint in parallel on N local workers (painterly video --workers N)")
    parser.add_argument("--passes", type=int, default=3, help="passes of the parallel run")
    parser.add_argument("--rerun-parallel", action="store_true",
                        help="run the parallel part again for every row of --json that has one (the other "
                             "figures kept)")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--temporal-weight", type=float, default=None)
    parser.add_argument("--frame-steps", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="folder for the side-by-side GIFs")
    parser.add_argument("--json", type=Path, default=None, help="write the rows as JSON")
    args = parser.parse_args()
    settings = painterly.preset(args.preset)
    video = VideoSettings()
    if args.temporal_weight is not None:
        video = video.replace(temporal_weight=args.temporal_weight)
    if args.frame_steps is not None:
        video = video.replace(frame_steps=args.frame_steps)
    if args.rerun_parallel:
        return rerun_parallel(args.json, settings, video, args.out)
    rows = []
    for clip in args.clip or ["pan"]:
        for size in args.sizes:
            rows.append(run(size, args.frames, settings, video, args.out, clip, args.parallel, args.passes))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; "
          f"preset {args.preset}, {video}")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "video": video.to_dict(), "preset": args.preset}, indent=1))


def rerun_parallel(path: Path, settings: painterly.Settings, video: VideoSettings, out: Path | None) -> None:
    """The parallel part of each row of ``path`` again (after a change to it), the other figures kept."""
    data = json.loads(path.read_text())
    style = Image.open(STYLE).convert("RGB")
    for row in data["rows"]:
        if row.get("parallel_workers"):
            frames = CLIPS[row["clip"]](row["frames"], row["size"][0])
            row.update(run_parallel(frames, style, settings, video, row["parallel_workers"], row["parallel_passes"],
                                    out, f"{row['clip']}_{row['size'][0]}px"))
            print(json.dumps(row), flush=True)
    print(table(data["rows"]))
    path.write_text(json.dumps(data, indent=1))


if __name__ == "__main__":
    main()
