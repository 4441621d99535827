"""Regenerate the README's pictures: the demo run, reported into ``docs/report/``.

    python examples/readme_pictures.py             # a few minutes on a laptop CPU

Runs what ``painterly`` with no arguments runs (the ``demo`` preset, the
turtle painted as the Great Wave) with a Recorder, then ``write_report`` without the video. To keep
the repository light the animation is smaller and shorter than a report's default and the figures
are stored with 256 colours. The result is derived from a CC BY-SA 3.0 photo, so the folder also
gets a CREDITS.md saying so.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

import painterly
from painterly.engine.images import open_image
from painterly.output.report import Recorder, write_report
from painterly.samples import TURTLE_CREDIT, demo_paths

OUT = Path(__file__).resolve().parent.parent / "docs" / "report"
BUDGET_BYTES = 1_500_000  # what the pictures may weigh in the repository, all together
FRAMES = 20
GIF_SIDE = 224
CREDITS = f"""# Credits

These pictures come from `examples/readme_pictures.py`: painterly's demo run.

- Content photo: {TURTLE_CREDIT}. The pictures made from it (`inputs.png`, `snapshots.png`,
  `progress.gif`, `result.png`) are adaptations and are shared under the same licence,
  CC BY-SA 3.0 (https://creativecommons.org/licenses/by-sa/3.0/).
- Style: The Great Wave off Kanagawa, Katsushika Hokusai, c. 1831; public domain (PD-Art).

See `painterly/examples/CREDITS.md` for the sources.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"report folder (default: {OUT})")
    args = parser.parse_args()

    content_path, style_path = demo_paths()
    settings = painterly.preset("demo")
    recorder = Recorder(frames=FRAMES)
    result = painterly.stylize(open_image(content_path), open_image(style_path), settings, callback=recorder)
    index = write_report(result, args.out, recorder, video=False, gif_side=GIF_SIDE)
    for figure in args.out.glob("*.png"):
        shrink(figure)
    (args.out / "CREDITS.md").write_text(CREDITS, encoding="utf-8")

    pictures = sorted(p for p in args.out.iterdir() if p.suffix in (".png", ".gif"))
    weight = sum(p.stat().st_size for p in pictures)
    for p in pictures:
        print(f"{p.stat().st_size / 1e3:8.0f} kB  {p}")
    print(f"{weight / 1e6:.2f} MB of pictures; {len(result.history)} steps in {result.seconds:.0f} s; open {index}")
    if weight > BUDGET_BYTES:
        raise SystemExit(f"the pictures weigh {weight / 1e6:.2f} MB, over the {BUDGET_BYTES / 1e6:.1f} MB budget")


def shrink(png: Path) -> None:
    """Store a figure with an adaptive 256-colour palette: about a third of the bytes, hardly visible."""
    with Image.open(png) as img:
        small = img.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(png, format="PNG", optimize=True)


if __name__ == "__main__":
    main()
