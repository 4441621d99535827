"""Print-size benchmark: tiled steps beside untiled ones, and print-size runs within a memory budget.

    python benchmarks/tiles.py --part steps      # 1024 and 2048 px: step time and peak RSS, tiled vs untiled
    python benchmarks/tiles.py --part match      # 1024 px default run, tiled vs untiled: pixel difference
    python benchmarks/tiles.py --part exact      # the same in fp32 (relative Gram); bf16 vs fp32 untiled
    python benchmarks/tiles.py --part budget     # 2048 px default run in 3.6 GiB: peak RSS against the budget
    python benchmarks/tiles.py --part big        # 4096x4096 default run in 8 GiB (CLI): time, peak RSS, picture
    python benchmarks/tiles.py --part big --stop-after 7200   # the same in legs: stop, then resume next time
    python benchmarks/tiles.py --part huge       # 8192x8192: the plan in 16 GiB and a few full-size steps

Every configuration runs in a fresh process (its own peak RSS, nothing cached from another), one
after the other in one invocation, so they are compared on the same machine at the same time.
Results go to ``benchmarks/tiles/`` (``results.json``, ``results.md``, the 4096 px picture scaled
down and a 1:1 crop). The turtle photo and the Great Wave are the bundled example images
(``painterly/examples``), upsampled for sizes beyond their own.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "tiles"
CONTENT = ROOT / "painterly" / "examples" / "content" / "green_sea_turtle.jpg"
STYLE = ROOT / "painterly" / "examples" / "styles" / "great_wave.jpg"


def worker(spec: dict) -> dict:
    """One configuration, in this process: a run of ``spec['settings']`` overrides on the default preset."""
    import numpy as np
    from PIL import Image

    from painterly import DEFAULT, Machine, stylize
    from painterly.engine.devices import setup_process
    from painterly.engine.settings import split_fields

    setup_process(0)
    picture, machine = split_fields(spec["settings"])
    settings = DEFAULT.replace(**picture)
    marks: list[float] = []

    def callback(progress) -> None:
        marks.append(time.perf_counter())

    started = time.perf_counter()
    photo = ROOT / "painterly" / "examples" / "content" / spec["content"] if "content" in spec else CONTENT
    content = Image.open(photo)
    if spec.get("exact"):  # both sides fixed, as --size WxH does: the photo cropped to the shape
        from painterly.engine.prints import fit_exactly

        content = fit_exactly(content, tuple(spec["exact"]))
    result = stylize(content, Image.open(STYLE), settings, machine=Machine(**machine), callback=callback)
    seconds = time.perf_counter() - started
    assert result.plan is not None
    last = result.plan.scales[-1]
    last_steps = [h for h in result.history if h["scale"] == len(result.plan.scales) - 1]
    step_times = [b - a for a, b in zip(marks[-len(last_steps):], marks[-len(last_steps) + 1:])]
    out = {
        "name": spec["name"],
        "settings": spec["settings"],
        "seconds": round(seconds, 2),
        "setup_seconds": round(result.seconds_setup, 2),
        "last_scale": {"size": list(last.size), "tile": last.tile, "tiles": last.tiles, "history": last.history,
                       "steps_run": len(last_steps), "planned_gib": round(last.peak_bytes / 2**30, 2)},
        "median_step_seconds": round(statistics.median(step_times), 3) if step_times else None,
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30, 2),
        "precision": result.precision,
        "best_loss": result.best_loss,
        "plan_cost": result.plan.total_cost,
        "cpu": _cpu(),
    }
    if spec.get("save"):
        path = OUT / spec["save"]
        path.parent.mkdir(parents=True, exist_ok=True)
        result.image.save(path)
        out["image"] = str(path.relative_to(ROOT))
    if spec.get("pixels"):
        np.save(OUT / spec["pixels"], np.asarray(result.image))
    return out


def run(spec: dict, timeout: float) -> dict:
    """``spec`` in a fresh process; its result, or what went wrong."""
    argv = [sys.executable, __file__, "--worker", json.dumps(spec)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"name": spec["name"], "error": f"over {timeout:.0f} s"}
    if done.returncode:
        return {"name": spec["name"], "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def part_steps(rounds: int) -> list[dict]:
    results = []
    for size in (1024, 2048):
        for round_ in range(rounds):
            for name, tile in (("untiled", -1), ("tiled 1024", 1024), ("tiled 512", 512)):
                if tile >= size:
                    continue
                results.append(run({"name": f"{size} px {name} (round {round_ + 1})", "settings": {
                    "size": size, "start_size": 0, "steps": 6, "patience": 0, "tile_size": tile}}, 1800))
                print(json.dumps(results[-1]), flush=True)
    return results


def _compare(name: str, runs: list[tuple[str, dict]]) -> list[dict]:
    """Two runs at 1024 px and the difference of their pictures in levels of 255."""
    import numpy as np

    results = []
    for i, (label, settings) in enumerate(runs):
        results.append(run({"name": f"1024 px {label}", "settings": {"size": 1024, **settings},
                            "pixels": f"compare_{i}.npy"}, 3600))
        print(json.dumps(results[-1]), flush=True)
    a, b = (np.load(OUT / f"compare_{i}.npy").astype(int) for i in (0, 1))
    difference = np.abs(a - b)
    results.append({"name": name, "max_level_difference": int(difference.max()),
                    "mean_level_difference": round(float(difference.mean()), 4),
                    "share_over_1": round(float((difference > 1).mean()), 6)})
    for i in (0, 1):
        (OUT / f"compare_{i}.npy").unlink()
    return results


def part_match() -> list[dict]:
    """The same seeded run tiled and untiled, with the default preset (bf16, the moments term)."""
    return _compare("1024 px default (bf16): tiled vs untiled",
                    [("default, untiled", {"tile_size": -1}), ("default, tiled 512", {"tile_size": 512})])


def part_exact() -> list[dict]:
    """The same in fp32 with the relative Gram; and the default untiled in bf16 against fp32: how far
    the precision alone moves a run (the noise floor of the default's comparison)."""
    relative = {"precision": "fp32", "style_loss": "relative"}
    return [*_compare("1024 px fp32, relative Gram: tiled vs untiled",
                      [("fp32 relative, untiled", {**relative, "tile_size": -1}),
                       ("fp32 relative, tiled 512", {**relative, "tile_size": 512})]),
            *_compare("1024 px default untiled: bf16 vs fp32 (the noise floor)",
                      [("default bf16, untiled", {"tile_size": -1}),
                       ("default fp32, untiled", {"precision": "fp32", "tile_size": -1})])]


def part_budget() -> list[dict]:
    """A whole multi-scale default run at 2048x2048 in a 3.6 GiB budget: its last scales tiled, the peak
    against the budget."""
    result = run({"name": "2048 px default in 3.6 GiB", "content": "astronaut.jpg",
                  "settings": {"size": 2048, "max_memory": 3.6}}, 3600)
    print(json.dumps(result), flush=True)
    return [result]


def part_big(stop_after: float | None) -> list[dict]:
    """A whole 4096x4096 default-preset run in an 8 GiB budget, through the CLI as a user runs it.

    On a CPU without native bf16 the run takes hours, so it may be done in legs: ``--stop-after
    SECONDS`` stops a leg as a scheduler would (SIGTERM: the CLI writes the best image and keeps its
    checkpoint) and the next invocation goes on with ``--resume``. Each leg's time, peak RSS and CPU
    are kept in ``big-legs.json``; the result is the sum of the times and the largest peak. Once the
    run is done, the part only reports it again (delete ``run4096`` to run it anew).
    """
    import signal

    folder = OUT / "run4096"
    folder.mkdir(parents=True, exist_ok=True)
    output, history = folder / "print_4096.png", folder / "history.json"
    legs_file = folder / "big-legs.json"
    legs = json.loads(legs_file.read_text()) if legs_file.exists() else []
    if not legs or legs[-1]["status"] != "done":
        argv = [sys.executable, "-m", "painterly", str(CONTENT), str(STYLE), "-o", str(output), "--size",
                "4096x4096", "--max-memory", "8", "--history", str(history)]
        if legs and legs[-1]["status"] == "stopped":
            argv.append("--resume")
        log = (folder / f"leg{len(legs) + 1}.log").open("w")
        started = time.perf_counter()
        child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        peaks: dict[str, float] = {}
        watcher = threading.Thread(target=_watch_scales, args=(child, Path(log.name), peaks), daemon=True)
        watcher.start()
        try:
            child.wait(timeout=stop_after)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGTERM)
            child.wait()
        watcher.join()
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 2**30
        steps = json.loads(history.read_text())["history"] if history.exists() else []
        legs.append({"leg": len(legs) + 1, "seconds": round(seconds, 1), "peak_rss_gib": round(peak, 2),
                     "cpu": _cpu(), "status": "done" if child.returncode == 0 else "stopped"
                     if child.returncode == 130 else f"failed ({child.returncode})", "steps_so_far": len(steps),
                     "scale_reached": max((h["scale"] + 1 for h in steps), default=None),  # 1-based, as the CLI
                     "scale_peaks_gib": peaks})
        legs_file.write_text(json.dumps(legs, indent=1))
    result = _big_result(legs, output, history)
    print(json.dumps(result), flush=True)
    return [result]


def _watch_scales(child: subprocess.Popen, log: Path, peaks: dict[str, float]) -> None:
    """Each scale's peak RSS of the running CLI, keyed by the scale its progress line shows (so a
    scale's peak includes the setting up of the next one): the kernel's high-water mark (VmHWM),
    read every half second and reset (``clear_refs``) whenever the scale changes."""
    status, clear = Path(f"/proc/{child.pid}/status"), Path(f"/proc/{child.pid}/clear_refs")
    current = "setup"

    def high_water() -> float | None:
        try:
            line = next(x for x in status.read_text().splitlines() if x.startswith("VmHWM:"))
        except (OSError, StopIteration):
            return None
        return int(line.split()[1]) / 2**20  # KiB to GiB

    while child.poll() is None:
        try:
            with log.open("rb") as f:
                f.seek(max(0, f.seek(0, 2) - 400))  # the last 400 bytes: the latest progress line
                tail = f.read().decode(errors="replace").replace("\r", "\n")
        except OSError:
            tail = ""
        shown = [word.split("/")[0] for line in tail.splitlines() for word in line.split()[2:3]
                 if line.startswith("[") and "/" in word]
        scale = shown[-1] if shown else current
        peak = high_water()
        if peak is not None:
            peaks[current] = round(max(peaks.get(current, 0.0), peak), 2)
            if scale != current:
                try:
                    clear.write_text("5")  # the high-water mark starts again from the current RSS
                except OSError:
                    pass
                current = scale
        time.sleep(0.5)


def _big_result(legs: list[dict], output: Path, history: Path) -> dict:
    """The big part's result from its legs: times summed, the largest peak, the plan's last scale and
    peak (what the CLI planned), and once done the pictures and each scale's seconds."""
    from PIL import Image

    from painterly import DEFAULT
    from painterly.engine.plan import SECONDS_PER_COST, make_plan

    record = json.loads(history.read_text())  # the CLI writes it when a leg ends, stopped or done
    precision = record["precision"]  # what the default's auto picked for the run
    plan = make_plan(DEFAULT.replace(size=4096), (4096, 4096), precision, 8 * 2**30)
    last = plan.scales[-1]
    # Named after the planner's fp32 figure it ran under (calibrated on tiled runs); the run made under
    # the estimate before keeps its own entry in results.json beside it.
    result: dict = {"name": "4096x4096 default in 8 GiB (CLI), calibrated estimate", "legs": legs,
                    "seconds": round(sum(leg["seconds"] for leg in legs), 1),
                    "peak_rss_gib": max(leg["peak_rss_gib"] for leg in legs), "status": legs[-1]["status"],
                    "planned_gib": round(plan.peak_bytes / 2**30, 2), "precision": precision,
                    "last_scale": {"size": list(last.size), "tile": last.tile, "tiles": last.tiles,
                                   "history": last.history},
                    "planned_minutes": round(plan.seconds(SECONDS_PER_COST[("cpu", precision)]) / 60, 1)}
    if legs[-1]["status"] == "done":
        full = Image.open(output)
        small = full.resize((1024, round(1024 * full.height / full.width)), Image.Resampling.LANCZOS)
        small.save(OUT / "print_4096_small.jpg", quality=90)
        w, h = full.size
        full.crop((w // 2 - 384, h // 2 - 256, w // 2 + 384, h // 2 + 256)).save(OUT / "print_4096_crop.png")
        result["image"] = "benchmarks/tiles/print_4096_small.jpg"
        result["scale_seconds"] = _scale_seconds(record["history"])
    return result


def _cpu() -> str:
    """The CPU's model and whether it computes bf16 natively (what decides the default's precision)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line for line in info.splitlines() if line.startswith("flags")), "")
    native = [f for f in ("avx512_bf16", "amx_bf16") if f" {f}" in flags]
    return f"{model} ({', '.join(native) if native else 'no native bf16'})"


def _scale_seconds(steps: list[dict]) -> list[float]:
    """Seconds spent in each scale, from the history's per-step clock (restarted by each leg)."""
    spent: dict[int, float] = {}
    last = 0.0
    for h in steps:
        step = h["seconds"] - last if h["seconds"] >= last else h["seconds"]  # a new leg's clock starts at 0
        spent[h["scale"]] = spent.get(h["scale"], 0.0) + step
        last = h["seconds"]
    return [round(spent[k], 1) for k in sorted(spent)]


def part_huge(steps: int) -> list[dict]:
    import torch

    from painterly import DEFAULT
    from painterly.engine.devices import pick_precision
    from painterly.engine.plan import make_plan

    precision = pick_precision(DEFAULT.precision, torch.device("cpu"))
    plan = make_plan(DEFAULT.replace(size=8192), (8192, 8192), precision, 16 * 2**30)
    # The steps run in the tiles the whole run's last scale would use, so that their time extrapolates.
    result = run({"name": f"8192x8192: {steps} full-size steps in 16 GiB", "exact": [8192, 8192], "settings": {
        "size": 8192, "start_size": 0, "steps": steps, "patience": 0, "max_memory": 16.0,
        "tile_size": plan.scales[-1].tile}}, 4 * 3600)
    if result.get("median_step_seconds"):
        last = plan.scales[-1]
        seconds_per_cost = result["median_step_seconds"] / (last.cost / last.steps)
        result["whole_default_run_hours"] = round(plan.total_cost * seconds_per_cost / 3600, 2)
        result["plan"] = plan.describe().splitlines()
    print(json.dumps(result), flush=True)
    return [result]


def write(results: dict[str, list[dict]]) -> None:
    OUT.mkdir(exist_ok=True)
    path = OUT / "results.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    for part, entries in results.items():
        if part in ("big", "huge"):  # hours-long runs: a new result replaces only the entry of its own name
            names = {r["name"] for r in entries}
            entries = [r for r in old.get(part, []) if r["name"] not in names] + entries
        old[part] = entries
    old["machine"] = {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()}
    path.write_text(json.dumps(old, indent=1))
    lines = ["| configuration | seconds | median step s | last scale | peak RSS GiB (planned) |",
             "|---|---|---|---|---|"]
    for part in ("steps", "match", "exact", "budget", "big", "huge"):
        for r in old.get(part, []):
            if "error" in r:
                lines.append(f"| {r['name']} | failed: {r['error']} | | | |")
            elif "legs" in r:
                last = r.get("last_scale")
                shape = f"{last['size'][0]}x{last['size'][1]} {last['tiles']} tiles of {last['tile']}, " \
                    f"{last['history']} pairs" if last else "4096x4096"
                lines.append(f"| {r['name']} | {r['seconds']} ({len(r['legs'])} leg(s), {r['status']}) | | "
                             f"{shape} | {r['peak_rss_gib']} ({r.get('planned_gib', '?')}) |")
            elif "max_level_difference" in r:
                lines.append(f"| {r['name']} | max {r['max_level_difference']} levels, "
                             f"mean {r['mean_level_difference']}, {r['share_over_1'] * 100:.4f}% over 1 | | | |")
            else:
                last = r["last_scale"]
                tiled = f"{last['tiles']} tiles of {last['tile']}" if last["tile"] else "untiled"
                size = f"{last['size'][0]}x{last['size'][1]}"
                lines.append(f"| {r['name']} | {r['seconds']} | {r['median_step_seconds']} | {size} {tiled}, "
                             f"{last['history']} pairs | {r['peak_rss_gib']} ({last['planned_gib']}) |")
    (OUT / "results.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("steps", "match", "exact", "budget", "big", "huge"), action="append")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--huge-steps", type=int, default=3)
    parser.add_argument("--stop-after", type=float, help="big: stop this leg after so many seconds (resumed next time)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    OUT.mkdir(exist_ok=True)
    for part in args.part or ["steps", "match", "exact", "budget", "big", "huge"]:
        results = {"steps": lambda: part_steps(args.rounds), "match": part_match, "exact": part_exact,
                   "budget": part_budget, "big": lambda: part_big(args.stop_after),
                   "huge": lambda: part_huge(args.huge_steps)}[part]()
        write({part: results})


if __name__ == "__main__":
    main()
