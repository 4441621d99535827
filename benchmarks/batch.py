"""The batch benchmark: 8 jobs (the four example photos in two styles) at 256 px, default preset.

    python benchmarks/batch.py                       # the preset's steps (a few minutes per part on 2 cores)
    python benchmarks/batch.py --steps 12 --min-scale-steps 4    # shorter jobs, for a busy machine

Parts, each from scratch into its own folder (nothing skipped), wall-clock seconds:

Every part runs once per round, the parts in turn (``--rounds``), so that a busy spell of a shared
machine does not fall on one part only; the tables give medians and each round.

* ``separate``: eight ``painterly CONTENT STYLE -o OUT`` commands, one after the other: each loads
  torch and VGG19 and computes its style targets again;
* ``batch-1``: one ``painterly batch ... --workers 1`` command: one process loads the network once
  and reuses the style targets across jobs;
* ``local-1``, ``local-2`` and ``ray-2``: :func:`painterly.batch.run.run_batch` in this process
  with one and two local worker processes against two Ray actors on a local cluster of this machine's CPUs (started
  before the clock; the actors' start-up is timed, as the local processes' is). The Ray overhead per
  job is (ray-2 - local-2) / jobs; the steady figure leaves start-up out (seconds per job from the
  first finished picture to the last).

Writes ``benchmarks/results-batch.json`` and ``benchmarks/results-batch.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "painterly" / "examples"
CONTENTS = sorted((EXAMPLES / "content").glob("*.jpg"))
STYLES = [EXAMPLES / "styles" / "great_wave.jpg", EXAMPLES / "styles" / "starry_night.jpg"]
HERE = Path(__file__).resolve().parent


def settings_args(args: argparse.Namespace) -> list[str]:
    extra = ["--size", str(args.size)]
    if args.steps:
        extra += ["--steps", str(args.steps)]
    if args.min_scale_steps:
        extra += ["--min-scale-steps", str(args.min_scale_steps)]
    return extra


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def separate(work: Path, extra: list[str]) -> float:
    painterly = [sys.executable, "-m", "painterly"]
    return sum(timed([*painterly, str(c), str(s), "-o", str(work / f"{c.stem}-{s.stem}.png"), "-q", *extra])
               for c in CONTENTS for s in STYLES)


def batch_command(work: Path, extra: list[str], workers: int) -> float:
    return timed([sys.executable, "-m", "painterly", "batch", "--contents", *map(str, CONTENTS), "--styles",
                  *map(str, STYLES), "-o", str(work), "-q", "--workers", str(workers), *extra])


def in_process(work: Path, extra: list[str], make_pool, steady: list[float]) -> float:
    from painterly.batch.jobs import make_folders
    from painterly.batch.run import run_batch
    from painterly.cli.batch import build_parser, plan_jobs

    args = build_parser().parse_args(["--contents", *map(str, CONTENTS), "--styles", *map(str, STYLES),
                                      "-o", str(work), *extra])
    jobs = plan_jobs(args)
    make_folders(jobs)
    painted: list[tuple[float, int]] = []  # (time, pictures painted) at each finished job

    def note(event) -> None:
        if event.finished is not None and event.finished.status == "done":
            painted.append((time.perf_counter(), event.painted))

    start = time.perf_counter()
    summary = run_batch(jobs, make_pool(), work / "results.jsonl", on_progress=note)
    seconds = time.perf_counter() - start
    assert summary.painted == len(jobs), summary
    (t0, n0), (t1, n1) = painted[0], painted[-1]
    steady.append((t1 - t0) / (n1 - n0))  # seconds per job once the first picture is out (start-up left out)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=0, help="steps (0: the default preset's)")
    parser.add_argument("--min-scale-steps", type=int, default=0, help="(0: the default preset's)")
    parser.add_argument("--only", nargs="+", default=["separate", "batch-1", "local-1", "local-2", "ray-2"])
    parser.add_argument("--rounds", type=int, default=3, help="every part once per round, in turn; medians")
    args = parser.parse_args()
    extra = settings_args(args)
    jobs = len(CONTENTS) * len(STYLES)
    runs: dict[str, list[float]] = {part: [] for part in args.only}
    steady: dict[str, list[float]] = {part: [] for part in args.only if part not in ("separate", "batch-1")}
    root = Path(tempfile.mkdtemp(prefix="painterly-batch-bench-"))
    try:
        for round_ in range(args.rounds):
            for part in args.only:
                work = root / f"{part}-{round_}"
                work.mkdir()
                runs[part].append(run_part(part, work, extra, steady.get(part, [])))
                print(f"round {round_ + 1}: {part}: {runs[part][-1]:.1f} s for {jobs} jobs", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    write(runs, steady, jobs, extra)


def run_part(part: str, work: Path, extra: list[str], steady: list[float]) -> float:
    if part == "separate":
        return separate(work, extra)
    if part == "batch-1":
        return batch_command(work, extra, 1)
    if part.startswith("local-"):
        from painterly.workers.local import LocalPool

        return in_process(work, extra, lambda: LocalPool(int(part.split("-")[1])), steady)
    if part == "ray-2":
        import ray

        from painterly.workers.ray_pool import RayPool

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        try:
            return in_process(work, extra, lambda: RayPool(2), steady)
        finally:
            ray.shutdown()
    raise SystemExit(f"unknown part {part}")


def write(runs: dict[str, list[float]], steady: dict[str, list[float]], jobs: int, extra: list[str]) -> None:
    import torch

    seconds = {part: statistics.median(values) for part, values in runs.items()}
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    per_job = {part: statistics.median(values) for part, values in steady.items() if values}
    data = {"jobs": jobs, "settings": extra, "runs": runs, "median_seconds": seconds,
            "steady_seconds_per_job": per_job, "machine": machine,
            "command": "python benchmarks/batch.py " + " ".join(sys.argv[1:])}
    (HERE / "results-batch.json").write_text(json.dumps(data, indent=1) + "\n")
    rows = ["| run | median seconds (each round) | per job | jobs per hour | steady s per job (after the first "
            "picture) |", "|---|---|---|---|---|"]
    for part, s in seconds.items():
        each = ", ".join(f"{v:.1f}" for v in runs[part])
        after = f"{per_job[part]:.2f}" if part in per_job else "-"
        rows.append(f"| {part} | {s:.1f} ({each}) | {s / jobs:.2f} | {jobs * 3600 / s:.0f} | {after} |")
    notes = []
    if "separate" in seconds and "batch-1" in seconds:
        notes.append(f"- one batch (1 worker) against separate commands: "
                     f"{seconds['separate'] / seconds['batch-1']:.2f}x faster per job (target 1.3x)")
    if "local-2" in seconds and "local-1" in seconds:
        notes.append(f"- 2 local workers against 1: {seconds['local-1'] / seconds['local-2']:.2f}x the jobs per hour")
    if "local-2" in seconds and "ray-2" in seconds:
        overhead = (seconds["ray-2"] - seconds["local-2"]) / jobs
        notes.append(f"- Ray 2 actors against 2 local workers: {seconds['ray-2'] / seconds['local-2'] - 1:+.1%} "
                     f"time (target within 5%), {overhead:+.2f} s per job over the whole batch")
        if "ray-2" in per_job and "local-2" in per_job:
            notes.append(f"- once running (after the first picture): Ray {per_job['ray-2']:.2f} s per job, local "
                         f"{per_job['local-2']:.2f} s: {per_job['ray-2'] - per_job['local-2']:+.2f} s per job "
                         f"({per_job['ray-2'] / per_job['local-2'] - 1:+.1%})")
    text = (f"# Batch benchmark\n\n`{data['command']}` ({jobs} jobs: 4 photos x 2 styles, default preset, "
            f"{' '.join(extra)}), on {machine}.\n\n" + "\n".join(rows) + "\n\n" + "\n".join(notes) + "\n")
    (HERE / "results-batch.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
