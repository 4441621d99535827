"""Two revisions of painterly side by side: whole commands, alternating, on one machine.

``python benchmarks/revisions.py BASE [--photos P ...] [--artwork A] [--preset default] [--rounds 3]``

Checks ``BASE`` (a commit, tag or branch) out into a temporary git worktree, then runs the same
``python -m painterly PHOTO ARTWORK -o OUT -q --preset PRESET --size 512`` from that worktree and from
this one in turn, round after round, so that a shared machine's drift in speed falls on both alike.
Each command is a fresh process, as a user runs it. Reported per photo: the median seconds of each
revision, the ratio of this tree's to the base's (with each round's own ratio), the page faults and
peak memory of each process (``os.wait4``), and whether the two revisions painted the same pixels.
Writes ``benchmarks/<out>.md`` and ``.json``. Never run two of these (or any torch process) at once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from quality import art_path, photo_path  # noqa: E402  (benchmarks/ is the script's own folder)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def timed(tree: Path, photo: Path, artwork: Path, preset: str, size: int, out: Path) -> dict:
    """One whole command run from ``tree`` (``python -m painterly`` imports the package from its
    working directory): its seconds, minor page faults and peak resident memory."""
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "painterly", str(photo), str(artwork), "-o", str(out), "-q",
               "--preset", preset, "--size", str(size)]
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=tree)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: Popen must not wait again
    if proc.returncode:
        raise SystemExit(f"revisions: {' '.join(command)} failed in {tree} (exit {proc.returncode})")
    return {"seconds": round(seconds, 2), "faults": usage.ru_minflt, "peak_mib": round(usage.ru_maxrss / 1024)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base", help="the revision to compare this working tree with (a commit, tag or branch)")
    parser.add_argument("--photos", nargs="+", default=["green_sea_turtle", "astronaut"],
                        help="photos (bundled or the quality benchmark's), by name")
    parser.add_argument("--artwork", default="great_wave")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="results-revisions", help="file name under benchmarks/, no suffix")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="painterly-revisions-"))
    base_tree = work / "base"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base_tree), args.base],
                   check=True)
    base_commit = subprocess.run(["git", "-C", str(base_tree), "rev-parse", "--short", "HEAD"], check=True,
                                 capture_output=True, text=True).stdout.strip()
    trees = {"base": base_tree, "this": ROOT}
    artwork = art_path(args.artwork)
    runs: dict[str, dict[str, list[dict]]] = {p: {"base": [], "this": []} for p in args.photos}
    same: dict[str, bool] = {}
    try:
        for round_ in range(args.rounds):
            for photo in args.photos:
                pictures = {}
                for name, tree in trees.items():
                    out = work / f"{photo}-{name}.png"
                    row = timed(tree, photo_path(photo), artwork, args.preset, args.size, out)
                    runs[photo][name].append(row)
                    pictures[name] = np.asarray(Image.open(out))
                    print(json.dumps({"round": round_ + 1, "photo": photo, "revision": name, **row}), flush=True)
                same[photo] = same.get(photo, True) and bool(np.array_equal(pictures["base"], pictures["this"]))
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_tree)], check=False)
        shutil.rmtree(work, ignore_errors=True)

    command = " ".join(["python", "benchmarks/revisions.py", *(argv if argv is not None else sys.argv[1:])])
    results = {"command": command, "base": args.base, "base_commit": base_commit, "preset": args.preset,
               "size": args.size, "artwork": args.artwork, "runs": runs, "same_pixels": same}
    lines = [f"Command: `{command}`", "",
             f"This working tree against {args.base} ({base_commit}): `{args.preset}` preset at {args.size} px on "
             f"{args.artwork}, whole commands in turn, {args.rounds} rounds.", "",
             "| photo | base: median s | this: median s | ratio | each round's ratio | page faults (base / this) "
             "| peak MiB (base / this) | same pixels |",
             "|---|---|---|---|---|---|---|---|"]
    for photo, by in runs.items():
        b, t = ([r["seconds"] for r in by[k]] for k in ("base", "this"))
        ratios = ", ".join(f"{y / x:.2f}" for x, y in zip(b, t))
        faults = (f"{statistics.median(r['faults'] for r in by['base']):,.0f} / "
                  f"{statistics.median(r['faults'] for r in by['this']):,.0f}")
        peaks = f"{max(r['peak_mib'] for r in by['base'])} / {max(r['peak_mib'] for r in by['this'])}"
        lines.append(f"| {photo} | {statistics.median(b):.1f} | {statistics.median(t):.1f} | "
                     f"{statistics.median(t) / statistics.median(b):.2f} | {ratios} | {faults} | {peaks} | "
                     f"{'yes' if same[photo] else 'no'} |")
    (HERE / f"{args.out}.json").write_text(json.dumps(results, indent=1) + "\n")
    (HERE / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
