"""What recording snapshots costs: the same run with and without a report.Recorder, side by side.

    python benchmarks/snapshot_overhead.py                       # 128 px, 100 steps, default preset
    python benchmarks/snapshot_overhead.py --size 384 --steps 200 --device cuda

Runs alternate (plain, recorded, plain, ...) so a busy machine slows both alike; each time is the
median of ``--repeats`` runs. Prints the wall time of each, the overhead in percent, and the time
the Recorder itself measured inside its callback (its whole cost, free of run-to-run noise).
"""

from __future__ import annotations

import argparse
import statistics
import time

from PIL import Image

import painterly
from painterly.output.report import Recorder
from painterly.samples import demo_paths


def timed_run(content: Image.Image, style: Image.Image, settings: painterly.Settings, recorder: Recorder | None,
              machine: painterly.Machine):
    started = time.perf_counter()
    result = painterly.stylize(content, style, settings, machine=machine, callback=recorder)
    return time.perf_counter() - started, len(result.history)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    content_path, style_path = demo_paths()
    content, style = Image.open(content_path).convert("RGB"), Image.open(style_path).convert("RGB")
    # One scale, no early stopping: both runs do exactly the same steps.
    settings = painterly.preset(args.preset).replace(size=args.size, steps=args.steps, start_size=0, patience=0)
    machine = painterly.Machine(device=args.device)
    timed_run(content, style, settings.replace(steps=2), None, machine)  # warm up: weights, kernels, caches

    plain, recorded, inside, renders = [], [], [], 0
    for _ in range(args.repeats):
        seconds, steps = timed_run(content, style, settings, None, machine)
        plain.append(seconds)
        recorder = Recorder()
        seconds, steps_recorded = timed_run(content, style, settings, recorder, machine)
        assert steps == steps_recorded == args.steps, (steps, steps_recorded)
        recorded.append(seconds)
        inside.append(recorder.seconds)
        renders = len(recorder.images)

    base, with_recorder, cost = (statistics.median(x) for x in (plain, recorded, inside))
    print(f"{args.preset} preset, {settings.optimizer}, {args.size} px, {args.steps} steps, device {args.device}, "
          f"median of {args.repeats}")
    print(f"{'plain run':>24s} {'with Recorder':>14s} {'overhead':>9s} {'Recorder callback':>18s} {'renders':>8s}")
    print(f"{base:23.2f}s {with_recorder:13.2f}s {100 * (with_recorder - base) / base:8.2f}% "
          f"{cost:9.3f}s ({100 * cost / base:.2f}%) {renders:8d}")


if __name__ == "__main__":
    main()
