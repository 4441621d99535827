"""Cluster benchmark: a tiled step on Ray workers beside the single-process tiled step, and a model of more workers.

    python benchmarks/cluster.py                         # 2048x2048 in tiles of 512 px, 1 and 2 local workers
    python benchmarks/cluster.py --size 256 --tile 64 --steps 2 --out /tmp/cluster   # a quick check that it runs

It measures, on this machine, for the same image, objective and start:

* the single-process tiled step (``painterly.engine.optimize.run_scale`` over a ``TiledGradient``): seconds a step;
* the same scale on a local Ray cluster (``RayTiles``) with 1 and 2 workers: seconds a step, and the bytes a
  step moves between the driver and the workers and between workers (halos), against the image's own bytes;

and from those figures writes a model of the step time with 4, 16 and 64 workers, at this size and at
8192x8192 (see :func:`model`). On a machine of two cores, two local workers share the cores one process
had: the figures show what spreading costs (the driver's part, serialization, halos computed twice), not
what more machines gain; the model says that. Results go to ``benchmarks/results-cluster.json`` and
``.md`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTENT = ROOT / "painterly" / "examples" / "content" / "green_sea_turtle.jpg"
STYLE = ROOT / "painterly" / "examples" / "styles" / "great_wave.jpg"
#: What the model assumes of a cluster's network: bytes a second into one node, and seconds a round trip.
BANDWIDTH = 1.25e9  # 10 Gbit/s
LATENCY = 0.5e-3
#: Round trips between the driver and the workers in a step (sums, the TV value, dot products, the largest step).
ROUND_TRIPS = 4
#: Tiles of the modelled 8192x8192 scale (the planner's choice for it in 8 GiB, fp32).
BIG_TILE = 512


def setup(size: int, tile: int, precision: str):
    """The objective's tiled gradient at ``size`` (longer side) and the start image (the photo)."""
    import torch
    from PIL import Image

    from painterly import DEFAULT
    from painterly.engine.images import fit_size
    from painterly.engine.objective import build_objective
    from painterly.engine.plan import make_plan
    from painterly.engine.run import build_network, prepare_images
    from painterly.engine.tiles import TiledGradient, TiledMeasure

    settings = DEFAULT.replace(size=size, start_size=0, precision=precision)
    content = Image.open(CONTENT).convert("RGB")
    w, h = fit_size(content.size, size)
    scale = make_plan(settings, content.size, precision, None, tile).scales[-1]
    device, dtype = torch.device("cpu"), torch.float64 if precision == "fp64" else torch.float32
    net = build_network(settings, device, precision)
    content_t, style_ts, _ = prepare_images(content, [Image.open(STYLE).convert("RGB")], settings.colour, scale,
                                            device, dtype)
    objective = build_objective(net, settings, content_t, style_ts, measure=TiledMeasure(tile))
    return settings, TiledGradient(objective, (w, h), tile), content_t


def timed(run_steps) -> tuple[float, int]:
    """Seconds a step (the first step, which warms caches and, on a cluster, sends the start, left out)."""
    marks: list[float] = []

    def report(i, losses, image) -> bool:
        marks.append(time.perf_counter())
        return False

    run_steps(report)
    gaps = [b - a for a, b in zip(marks, marks[1:])]
    return (sum(gaps) / len(gaps) if gaps else math.nan), len(marks)


def measure(size: int, tile: int, steps: int, precision: str, workers: tuple[int, ...]) -> dict:
    import ray

    from painterly.engine.optimize import run_scale
    from painterly.workers.tiles_ray import RayTiles

    settings, tiled, start = setup(size, tile, precision)
    single, _ = timed(lambda report: run_scale(tiled.objective, start, settings, steps, report, gradient=tiled))
    out = {"size": list(start.shape[-2:][::-1]), "tile": tile, "tiles": len(tiled.tiles), "halo": tiled.halo,
           "precision": precision, "steps": steps, "single_seconds_per_step": single,
           "outer_pixels": sum((t.outer[1] - t.outer[0]) * (t.outer[3] - t.outer[2]) for t in tiled.tiles),
           "image_bytes": start.numel() * start.element_size(), "cluster": []}
    cpus = os.cpu_count() or 2
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        for n in workers:
            with RayTiles("auto", workers=n, threads=max(1, cpus // n), device="cpu") as cluster:
                seconds, _ = timed(lambda report, c=cluster: c.run_scale(tiled, start, settings, steps, report,
                                                                         None, precision))
                out["cluster"].append({"workers": n, "seconds_per_step": seconds, **cluster.traffic})
    finally:
        ray.shutdown()
    return out


def model(measured: dict, workers: tuple[int, ...] = (4, 16, 64)) -> list[dict]:
    """Step time with ``workers`` CPU nodes like this one, from the measured figures:

    * compute: the single-process tiled step's seconds per outer pixel (tile and halo) times the outer
      pixels of the most tiles one worker holds (whole tiles);
    * the driver's part: the 1-worker cluster step less the single-process step (the loss from the
      totals, L-BFGS's scalars, serialization, the calls), taken as fixed;
    * bytes: each worker sends its sums and gets their gradients (the 1-worker figure, per worker, through
      the driver's link), and the halos the workers exchange (from the tiles' geometry,
      :func:`painterly.engine.shards.halo_bytes`; each worker's share through its own link), at :data:`BANDWIDTH`,
      plus :data:`ROUND_TRIPS` round trips at :data:`LATENCY`.

    At this size, and at 8192x8192 in tiles of :data:`BIG_TILE` px (the seconds per outer pixel as
    measured)."""
    from painterly.engine.shards import halo_bytes, share_out
    from painterly.engine.tiles import make_tiles

    one = next(c for c in measured["cluster"] if c["workers"] == 1)
    element = 8 if measured["precision"] == "fp64" else 4
    per_outer = measured["single_seconds_per_step"] / measured["outer_pixels"]
    driver_part = max(0.0, one["seconds_per_step"] - measured["single_seconds_per_step"])
    w, h = measured["size"]
    rows = []
    for width, height, tile in ((w, h, measured["tile"]), (8192, 8192, BIG_TILE)):
        tiles = math.ceil(width / tile) * math.ceil(height / tile)
        if tile == measured["tile"] and (width, height) == (w, h):
            outer = measured["outer_pixels"] / measured["tiles"]  # a tile with its halo (edge tiles have less)
        else:
            outer = min(width, tile + 2 * measured["halo"]) * min(height, tile + 2 * measured["halo"])
        for n in workers:
            compute = per_outer * outer * math.ceil(tiles / n)
            halos = halo_bytes(share_out(make_tiles(height, width, tile, measured["halo"]), n, height, width)[2],
                               element)
            moved = n * one["driver_bytes_per_step"] + halos
            network = max(n * one["driver_bytes_per_step"], halos / n) / BANDWIDTH + ROUND_TRIPS * LATENCY
            rows.append({"size": [width, height], "workers": n, "tiles": tiles, "compute_seconds": compute,
                         "driver_seconds": driver_part, "network_seconds": network,
                         "step_seconds": compute + driver_part + network, "bytes_per_step": moved,
                         "halo_bytes_per_step": halos, "image_bytes": width * height * 3 * element,
                         "single_step_seconds": per_outer * outer * tiles})
    return rows


def write(measured: dict, rows: list[dict], out: Path) -> None:
    record = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
              "measured": measured, "model": rows,
              "model_assumes": {"bandwidth_bytes_per_s": BANDWIDTH, "latency_s": LATENCY, "round_trips": ROUND_TRIPS}}
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    w, h = measured["size"]
    lines = [f"# Cluster: {w}x{h}, {measured['tiles']} tiles of {measured['tile']} px, {measured['precision']}", "",
             f"Measured on {record['machine']['cores']} cores ({record['machine']['cpu']}): seconds a step, and "
             "bytes a step moves against the image's own.", "",
             "| run | s/step | driver bytes/step | halo bytes/step | moved / image |", "|---|---:|---:|---:|---:|",
             f"| one process, tiled | {measured['single_seconds_per_step']:.2f} | - | - | - |"]
    for c in measured["cluster"]:
        moved = c["driver_bytes_per_step"] + c["halo_bytes_per_step"]
        lines.append(f"| Ray, {c['workers']} worker{'s' if c['workers'] > 1 else ''} | {c['seconds_per_step']:.2f} | "
                     f"{c['driver_bytes_per_step']:,.0f} | {c['halo_bytes_per_step']:,.0f} | "
                     f"{moved / measured['image_bytes']:.3f} |")
    lines += ["", "Two local workers share this machine's cores with each other and the driver: they show what "
              "spreading costs, not what more machines gain. The model below (see `model` in "
              "benchmarks/cluster.py) prices more nodes like this one from the figures above, on a 10 Gbit/s "
              "network.", "", "| size | workers | tiles | compute s | driver s | network s | step s | "
              "one process s | bytes/step | image bytes |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['size'][0]}x{r['size'][1]} | {r['workers']} | {r['tiles']} | {r['compute_seconds']:.2f} | "
                     f"{r['driver_seconds']:.2f} | {r['network_seconds']:.3f} | {r['step_seconds']:.2f} | "
                     f"{r['single_step_seconds']:.2f} | {r['bytes_per_step']:,.0f} | {r['image_bytes']:,} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--steps", type=int, default=4, help="steps a run (the first is not timed)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp64", "bf16"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results-cluster",
                        help="where the results go (.json and .md are added)")
    args = parser.parse_args()
    from painterly.engine.devices import setup_process

    setup_process(0)
    measured = measure(args.size, args.tile, args.steps, args.precision, tuple(args.workers))
    rows = model(measured) if any(c["workers"] == 1 for c in measured["cluster"]) else []
    write(measured, rows, args.out)
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
