"""Render the README gallery: the bundled images with each creative control, into docs/gallery/.

    python examples/gallery.py            # everything (about 15 minutes on a 2-core CPU)
    python examples/gallery.py --size 256 # smaller and faster

Each picture is a strip (inputs | result) saved as JPEG. ``sizes.json`` records the final
style / content loss ratio of the same pair at 256, 512 and 1024 px, to show that one set of
settings behaves the same at every size.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw

import painterly
from painterly.engine.images import open_image
from painterly.samples import contents, styles

OUT = Path(__file__).resolve().parent.parent / "docs" / "gallery"


def strip(images: list[Image.Image], titles: list[str], height: int = 256) -> Image.Image:
    """Images side by side at one height, each with a title underneath."""
    scaled = [im.resize((max(1, round(im.width * height / im.height)), height), Image.LANCZOS) for im in images]
    pad, text_h = 8, 22
    canvas = Image.new("RGB", (sum(im.width for im in scaled) + pad * (len(scaled) + 1), height + text_h + pad * 2),
                       "white")
    draw = ImageDraw.Draw(canvas)
    x = pad
    for im, title in zip(scaled, titles):
        canvas.paste(im, (x, pad))
        draw.text((x, height + pad + 4), title, fill=(30, 30, 30))
        x += im.width + pad
    return canvas


def half_masks(content: Image.Image) -> list[Image.Image]:
    """Left half for the first style, right half for the second."""
    w, h = content.size
    left = Image.new("L", (w, h), 0)
    ImageDraw.Draw(left).rectangle([0, 0, w // 2, h], fill=255)
    right = Image.eval(left, lambda v: 255 - v)
    return [left, right]


def render(name: str, content: Image.Image, style_list: list[Image.Image], titles: list[str], size: int,
           masks: list[Image.Image] | None = None, **options) -> dict:
    start = time.perf_counter()
    result = painterly.stylize(content, style_list, size=size, masks=masks, **options)
    picture = strip([content, *style_list, result.image], [*titles, f"result: {name}"])
    picture.save(OUT / f"{name}.jpg", quality=88)
    last = result.history[-1]
    info = {"name": name, "seconds": round(time.perf_counter() - start, 1), "options": options,
            "style_content_ratio": last["style"] / max(last["content"], 1e-12)}
    print(json.dumps(info), flush=True)
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--only", help="render just the entries whose name contains this")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    c = {k: open_image(p) for k, p in contents().items()}
    s = {k: open_image(p) for k, p in styles().items()}
    jobs = [
        ("single", c["chelsea"], [s["starry_night"]], ["chelsea", "starry night"], {}),
        ("blend", c["chelsea"], [s["starry_night"], s["great_wave"]], ["chelsea", "starry night 0.5", "wave 0.5"],
         {"style_blend_weights": (0.5, 0.5)}),
        ("colour-none", c["green_sea_turtle"], [s["composition_vii"]], ["turtle", "composition VII"], {}),
        ("colour-luminance", c["green_sea_turtle"], [s["composition_vii"]], ["turtle", "composition VII"],
         {"colour": "luminance"}),
        ("colour-histogram", c["green_sea_turtle"], [s["composition_vii"]], ["turtle", "composition VII"],
         {"colour": "histogram"}),
        ("mask", c["astronaut"], [s["starry_night"], s["great_wave"]], ["astronaut", "left: starry", "right: wave"],
         {"masks": half_masks(c["astronaut"])}),
        ("style-scale-0.5", c["coffee"], [s["shipwreck_minotaur"]], ["coffee", "Turner"], {"style_scale": 0.5}),
        ("style-scale-1", c["coffee"], [s["shipwreck_minotaur"]], ["coffee", "Turner"], {"style_scale": 1.0}),
        ("style-scale-2", c["coffee"], [s["shipwreck_minotaur"]], ["coffee", "Turner"], {"style_scale": 2.0}),
    ]
    for name, content, style_list, titles, options in jobs:
        if args.only and args.only not in name:
            continue
        render(name, content, style_list, titles, args.size, **options)
    if not args.only or "size" in args.only:
        ratios = {}
        for size in (256, 512, 1024):
            info = render(f"size-{size}", c["chelsea"], [s["great_wave"]], ["chelsea", "great wave"], size)
            ratios[size] = info["style_content_ratio"]
        spread = max(ratios.values()) / min(ratios.values())
        (OUT / "sizes.json").write_text(json.dumps({"style_content_ratio": ratios, "max_over_min": spread},
                                                   indent=1) + "\n")
        print(f"style/content ratio across sizes: {ratios}, max/min {spread:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
