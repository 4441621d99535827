"""painterly's speed benchmark: every figure in the README's performance section comes from here.

    python benchmarks/bench.py                 # everything (about 35 minutes on a 2-core CPU)
    python benchmarks/bench.py --only steps    # one part: steps, quality, compile, presets, memory, cudagraph;
                                               # the other parts' figures in results.json are kept

It measures, side by side in one run (wall-clock seconds, medians of --repeat runs):

* ``steps``: the bare network step (VGG19 forward to block5_conv2 + backward to the image) and
  painterly's full step (losses, optimizer, clamping, callback) for Adam and L-BFGS, at 256 and
  512 px, in fp32 and in bf16 where the CPU computes bf16 natively; the three are measured in turn
  over --rounds rounds so that a slow spell of a shared machine does not fall on one of them only.
  These short runs' L-BFGS holds few curvature pairs; the extra cost of a full history (100 pairs),
  measured on its own, is added for a last column;
* ``quality``: time to quality. The ``tutorial`` preset runs 1000 steps at 256 px on the demo pair;
  the loss L of its output (the 8-bit image it returns, judged again under the tutorial's loss in fp32)
  is the yardstick. Each faster configuration optimizes the same objective (the tutorial's weights and
  layers) and is stopped as soon as its image, judged the same way, scores <= L (the clock is
  paused while judging). Reported with its ratio to the tutorial's time;
* ``compile``: the bare step at 256 px eager and under ``torch.compile`` (compile time apart);
* ``presets``: wall time of the demo (``painterly`` with no arguments) and of the default and quality
  presets at 512 px on the demo pair, from the command line, in a fresh process each (--repeat-presets runs);
* ``memory``: peak resident memory (and, on a GPU, peak GPU memory) of the default preset's last
  scale at 512, 1024 and 2048 px: a one-scale run of as many steps as that scale runs, so that L-BFGS
  holds as many curvature pairs as in a real run (each in a fresh process);
* ``cudagraph`` (CUDA only): the bare step eager against the same step captured once in a CUDA graph
  and replayed, at 256 and 512 px in fp32 and bf16.

``--as-avx2`` runs the chosen parts as a CPU with AVX2 only would (the common laptop): it reruns itself with
torch's kernels (``ATEN_CPU_CAPABILITY``) and oneDNN's (``ONEDNN_MAX_CPU_ISA``) capped at AVX2, so that
native bf16 is gone too and ``auto`` runs fp32; its figures go to ``results-avx2.*``.

Results go to ``benchmarks/results.json`` and ``benchmarks/results.md`` (the table the README quotes);
``bash benchmarks/gpu.sh`` runs the CUDA tests and every part on a GPU into ``results-cuda.*``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import painterly
from painterly import TUTORIAL, Machine, stylize
from painterly.engine.devices import cpu_has_fast_bf16, keep_freed_memory, large_blocks_from_heap, pick_device
from painterly.engine.images import open_image, resize_longer, to_tensor
from painterly.engine.objective import build_objective
from painterly.engine.optimize import PixelLBFGS, capture_graph
from painterly.engine.run import build_network
from painterly.samples import SAMPLES, demo_paths

HERE = Path(__file__).parent
PARTS = ("steps", "quality", "compile", "presets", "memory", "cudagraph", "profile")
#: The environment of a CPU without AVX-512 or native bf16, for ``--as-avx2`` (child processes inherit it).
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
STYLE_LAYERS = TUTORIAL.style_layers
LAYERS = (*STYLE_LAYERS, "block5_conv2")


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": cpu_has_fast_bf16(),
        "isa_cap": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "versions": {"painterly": painterly.__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
    }


def demo_pair(size: int):
    content_path, style_path = demo_paths()
    return resize_longer(open_image(content_path), size), resize_longer(open_image(style_path), size)


def bare_pass(net, image: torch.Tensor, precision: str, cache: bool = True) -> None:
    """``net`` forward to the tapped layers, then backward to ``image`` from all-ones gradients given in
    the maps' own dtype and channels-last layout: the network's passes and nothing else."""
    with torch.autocast(image.device.type, dtype=torch.bfloat16, enabled=precision == "bf16", cache_enabled=cache):
        feats = net(image.contiguous(memory_format=torch.channels_last), LAYERS)
    maps = list(feats.values())
    torch.autograd.backward(maps, [torch.ones_like(f) for f in maps])


def bare_step(net, size: int, precision: str, repeat: int, device: torch.device) -> float:
    """Median seconds of ``net`` (eager or compiled) forward to block5_conv2 + backward to the image.

    No losses and no optimizer: the floor that painterly's full step is compared with.
    """
    image = (torch.rand(1, 3, size * 3 // 4, size, device=device) * 255).requires_grad_(True)
    times = []
    for i in range(repeat + 1):
        start = time.perf_counter()
        bare_pass(net, image, precision)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first is warm-up (and, compiled, the compilation)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def tutorial_network(device: torch.device, precision: str = "fp32"):
    """VGG19 cut where the tutorial's layers end, as painterly builds it for ``precision``."""
    return build_network(TUTORIAL, device, precision)


def full_step(size: int, precision: str, optimizer: str, repeat: int, device: torch.device) -> float:
    """Median seconds per step of a real run (losses, optimizer, clamp, a callback)."""
    content, style = demo_pair(size)
    settings = TUTORIAL.replace(size=size, steps=repeat + 1, optimizer=optimizer, precision=precision,
                                lr=5.0 if optimizer == "adam" else 1.0)
    result = stylize(content, style, settings, device=str(device), callback=lambda event: None)
    seconds = [h["seconds"] for h in result.history]
    return statistics.median(b - a for a, b in zip(seconds, seconds[1:]))


def lbfgs_overhead(size: int, pairs: int, repeat: int, device: torch.device) -> float:
    """Median seconds of one PixelLBFGS step on a trivial loss once it holds ``pairs`` curvature pairs.

    A short run's L-BFGS steps hold few pairs; a long one's hold up to the history size (100), and
    the pairs' bookkeeping and the direction grow with them. The difference between the two is added
    to the measured step to give the step with a full history.
    """
    shape = (1, 3, size * 3 // 4, size)
    curvature = torch.rand(shape, device=device) + 0.5
    x = torch.zeros(shape, device=device, requires_grad=True)
    optimizer = PixelLBFGS([x], history_size=pairs, max_step=1e-3)  # tiny steps: never converges

    def closure():
        x.grad = curvature * (x.detach() - 100.0)
        return x.detach().sum()

    times = []
    for i in range(pairs + 1 + repeat):
        start = time.perf_counter()
        optimizer.step(closure)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i > pairs:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def part_steps(repeat: int, rounds: int, device: torch.device) -> list[dict]:
    """Bare and full steps, interleaved over ``rounds`` rounds so that a slow spell of a shared
    machine falls on all three measurements alike; each figure is the median of its rounds' medians."""
    precisions = ["fp32"] + (["bf16"] if device.type == "cuda" or cpu_has_fast_bf16() else [])
    rows = []
    for size in (256, 512):
        for precision in precisions:
            net = tutorial_network(device, precision)
            samples: dict[str, list[float]] = {"bare": [], "adam": [], "lbfgs": []}
            for _ in range(rounds):
                samples["bare"].append(bare_step(net, size, precision, repeat, device))
                for optimizer in ("adam", "lbfgs"):
                    samples[optimizer].append(full_step(size, precision, optimizer, repeat, device))
            row = {"size": size, "precision": precision, **{k: statistics.median(v) for k, v in samples.items()}}
            for optimizer in ("adam", "lbfgs"):
                row[f"{optimizer}_ratio"] = row[optimizer] / row["bare"]
            # The measured L-BFGS steps held at most `repeat` pairs; a long run holds 100.
            row["lbfgs_full_history"] = row["lbfgs"] + (lbfgs_overhead(size, 100, repeat, device)
                                                        - lbfgs_overhead(size, repeat, repeat, device))
            row["lbfgs_full_history_ratio"] = row["lbfgs_full_history"] / row["bare"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def judge(objective, image) -> float:
    """The loss of a finished image (PIL, as the user gets it) under ``objective``, in fp32."""
    with torch.no_grad():
        return objective(to_tensor(image, torch.device("cpu"))).floats()["total"]


#: The watcher judges each step's image once the optimizer's own loss is within 3% of the target.
JUDGE_BAND = 1.03


def time_to(settings, content, style, referee, target: float | None = None, machine: Machine | None = None):
    """Run ``settings``; stop as soon as a final-scale image scores <= ``target`` under ``referee``.

    Each step's image is judged as the user would get it (8-bit, fp32 loss) once the optimizer's own
    loss is within JUDGE_BAND of the target; the clock is paused while judging, so the seconds are
    the run's own. Returns (seconds to get there or None, the loss of that image (or of the returned
    image if none got there), steps at the final scale, wall seconds of the whole call, the result).
    """
    final = len(settings.scale_sizes()) - 1
    start = time.perf_counter()
    judging = [0.0]
    reached: dict = {}
    steps = [0]

    def watch(event):
        if event.scale != final:
            return False
        steps[0] += 1
        if target is None or event.losses["total"] > target * JUDGE_BAND:
            return False
        paused = time.perf_counter()
        elapsed = paused - start - judging[0]
        loss = judge(referee, event.image())
        judging[0] += time.perf_counter() - paused
        if loss <= target:
            reached.update(seconds=elapsed, loss=loss)
            return True
        return False

    result = stylize(content, style, settings, machine=machine, callback=watch)
    wall = time.perf_counter() - start - judging[0]
    judged = reached["loss"] if reached else judge(referee, result.image)
    return reached.get("seconds"), judged, steps[0], wall, result


def warm_up(settings, content, style, machine: Machine) -> None:
    """On CUDA, a two-step run of ``settings`` first, so that every configuration finds cuDNN's
    kernels for its sizes already chosen (otherwise the first run at a size pays for the autotuning,
    and the configurations that share the tutorial's 256 px would get it free)."""
    if machine.device.startswith("cuda"):
        stylize(content, style, settings.replace(steps=2), machine=machine)


def tutorial_objective(content, style):
    """The tutorial's loss at 256 px in fp32 on the CPU, to judge every configuration's output."""
    settings = TUTORIAL.replace(size=256, precision="fp32")
    net = build_network(settings, torch.device("cpu"))
    c, s = to_tensor(content, torch.device("cpu")), to_tensor(style, torch.device("cpu"))
    return build_objective(net, settings, c, [s])


def part_quality(device: torch.device, tutorial_steps: int) -> dict:
    content, style = demo_pair(256)
    base = TUTORIAL.replace(size=256)
    machine = Machine(device=str(device))
    referee = tutorial_objective(content, style)
    warm_up(base, content, style, machine)
    _, yardstick, _, tutorial_seconds, result = time_to(base.replace(steps=tutorial_steps), content, style, referee,
                                                        machine=machine)
    print(json.dumps({"tutorial_seconds": tutorial_seconds, "yardstick": yardstick,
                      "tutorial_best_loss": result.best_loss}), flush=True)
    lbfgs = base.replace(optimizer="lbfgs", lr=1.0, steps=1000)
    configs = {
        "lbfgs, one scale, fp32": lbfgs,
        # 200 steps at 128 px, then up to 400 at 256 px.
        "lbfgs, 128 -> 256, fp32": lbfgs.replace(start_size=128, scale_factor=2.0, steps=200, scale_steps_decay=2.0),
        # 60 steps at 64 px, 120 at 128 px, then up to 240 at 256 px. Of the schedules tried (60-400
        # coarse steps, starting at 32, 64 or 128 px), a short run at 64 px and twice that at 128 px
        # cost the least in all: the coarse scales settle the large forms cheaply, but the last scale
        # still needs 100-140 steps, however long the coarse ones run.
        "lbfgs, 64 -> 128 -> 256, fp32": lbfgs.replace(start_size=64, scale_factor=2.0, steps=60,
                                                       scale_steps_decay=2.0),
    }
    if device.type == "cuda" or cpu_has_fast_bf16():
        for name in list(configs):
            configs[name.replace("fp32", "bf16")] = configs[name].replace(precision="bf16")
    rows = []
    for name, settings in configs.items():
        warm_up(settings, content, style, machine)
        seconds, judged, steps, _, _ = time_to(settings, content, style, referee, yardstick, machine)
        row = {"config": name, "seconds_to_L": seconds, "steps": steps, "judged_loss": judged,
               "reached": seconds is not None,
               "ratio": None if seconds is None else seconds / tutorial_seconds}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"tutorial_steps": tutorial_steps, "tutorial_seconds": tutorial_seconds, "yardstick": yardstick,
            "configs": rows}


def part_compile(repeat: int, device: torch.device) -> dict:
    """The bare step at 256 px, eager against ``torch.compile`` (compile time reported apart)."""
    net = tutorial_network(device)
    eager = bare_step(net, 256, "fp32", repeat, device)
    start = time.perf_counter()
    compiled = torch.compile(net)
    row = {"size": 256, "eager": eager}
    row["compiled"] = bare_step(compiled, 256, "fp32", repeat, device)
    # The first (warm-up) call compiles: what it took beyond one ordinary step.
    row["compile_seconds"] = time.perf_counter() - start - row["compiled"] * (repeat + 1)
    row["eager_again"] = bare_step(net, 256, "fp32", repeat, device)
    row["ratio"] = row["compiled"] / ((row["eager"] + row["eager_again"]) / 2)
    print(json.dumps(row), flush=True)
    return row


def part_presets(repeat: int, device: torch.device, precisions: list[str]) -> list[dict]:
    """The demo and the default at 512 px as whole commands, in each of ``precisions`` (``fp32`` is what a
    CPU without native bf16 runs: the common laptop), measured in turn ``repeat`` times. The demo pair is
    512x384 at 512 px; the time grows with the pixels, so the default also runs on a square photo (the
    astronaut, 512x512: a third more pixels)."""
    import tempfile

    content, style = demo_paths()
    square = SAMPLES / "content" / "astronaut.jpg"
    commands = {
        "demo (painterly, no arguments)": [],
        "default preset, 512 px": [str(content), str(style), "--size", "512"],
        "default preset, 512 px, square photo (512x512)": [str(square), str(style), "--size", "512"],
        "quality preset, 512 px": [str(content), str(style), "--size", "512", "--preset", "quality"],
    }
    runs = [(name, args, precision) for name, args in commands.items() for precision in precisions]
    times: dict[int, list[float]] = {i: [] for i in range(len(runs))}
    for _ in range(repeat):
        for i, (name, args, precision) in enumerate(runs):  # in turn, so a slow spell is shared
            with tempfile.TemporaryDirectory() as tmp:
                out = ["-o", str(Path(tmp) / "out.png"), "-q", "--device", str(device), "--precision", precision]
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "painterly", *args, *out], check=True)
                times[i].append(time.perf_counter() - start)
    rows = []
    for i, (name, _, precision) in enumerate(runs):
        row = {"run": name, "precision": precision, "seconds": statistics.median(times[i]), "all": times[i]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


#: How the profile sorts torch's operators: the network's passes, the style term's eigen-solves, the
#: matrix products of the Grams and covariances; everything else is the optimizer, losses and Python.
PROFILE_GROUPS = {
    "network (convolutions, ReLU, pooling; forward and backward)": ("conv", "relu", "threshold", "max_pool",
                                                                    "avg_pool"),
    "style term eigen-solves": ("eigh", "eigvalsh"),
    "Grams, covariances, matches (matrix products)": ("bmm", "mm", "matmul", "addmm", "addmv", "mv", "dot"),
}


def part_profile(device: torch.device, precision: str, size: int) -> dict:
    """Where a default run's time goes: torch's profiler over one whole run at ``size`` (its overhead is
    small at these sizes), each operator's own time sorted into :data:`PROFILE_GROUPS`, and each scale's
    wall time and steps from the run's history."""
    from torch.profiler import ProfilerActivity, profile

    content, style = (open_image(p) for p in demo_paths())
    settings = painterly.DEFAULT.replace(size=size, precision=precision)
    stylize(content, style, settings.replace(size=128, start_size=0, steps=2), device=str(device))  # warm up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        result = stylize(content, style, settings, device=str(device))
        wall = time.perf_counter() - start
    groups = dict.fromkeys(PROFILE_GROUPS, 0.0)
    total = 0.0
    for event in prof.key_averages():
        seconds = event.self_cpu_time_total / 1e6
        total += seconds
        name = event.key.lower()
        for group, keys in PROFILE_GROUPS.items():
            if any(k in name for k in keys):
                groups[group] += seconds
                break
    scales: dict[int, dict] = {}
    previous = 0.0
    for row in result.history:
        scale = scales.setdefault(row["scale"], {"size": row["size"], "steps": 0, "seconds": 0.0})
        scale["steps"] += 1
        scale["seconds"] += row["seconds"] - previous
        previous = row["seconds"]
    out = {"size": size, "precision": precision, "wall_seconds": round(wall, 2),
           "setup_seconds": round(result.seconds_setup, 2), "operator_seconds": round(total, 2),
           "groups": {k: round(v, 2) for k, v in groups.items()},
           "scales": [{**v, "seconds": round(v["seconds"], 2)} for v in scales.values()]}
    print(json.dumps(out), flush=True)
    return out


MEMORY_PROBE = """
import resource, sys, torch, painterly
from painterly.engine.images import open_image
from painterly.samples import demo_paths
c, s = [open_image(p) for p in demo_paths()]
size, device = int(sys.argv[1]), sys.argv[2]
steps = painterly.DEFAULT.replace(size=size).scale_steps()[-1]
r = painterly.stylize(c, s, size=size, steps=steps, start_size=0, device=device)
gpu = torch.cuda.max_memory_allocated() if device.startswith("cuda") else 0
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, gpu, steps, r.image.size[0], r.image.size[1])
"""


def part_memory(device: torch.device) -> list[dict]:
    rows = []
    for size in (512, 1024, 2048):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(size), str(device)],
                             capture_output=True, text=True, check=True)
        peak, gpu, steps, w, h = map(int, out.stdout.split()[-5:])
        row = {"size": size, "image": [w, h], "steps": steps, "peak_rss_gib": peak / 2**30,
               "seconds": time.perf_counter() - start}
        if device.type == "cuda":
            row["peak_gpu_gib"] = gpu / 2**30
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def graph_step(net, size: int, precision: str, repeat: int, device: torch.device) -> float:
    """Median seconds of the bare step captured once in a CUDA graph and replayed."""
    image = (torch.rand(1, 3, size * 3 // 4, size, device=device) * 255).requires_grad_(True)

    def step() -> None:  # autocast's cache of cast weights must be off while capturing
        image.grad = None
        bare_pass(net, image, precision, cache=False)

    graph, _ = capture_graph(step, device, warmup=3)
    times = []
    for i in range(repeat + 1):
        start = time.perf_counter()
        graph.replay()
        torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def part_cudagraph(repeat: int, device: torch.device) -> list[dict]:
    rows = []
    for size in (256, 512):
        for precision in ("fp32", "bf16"):
            net = tutorial_network(device, precision)
            eager = statistics.median(bare_step(net, size, precision, repeat, device) for _ in range(3))
            graph = statistics.median(graph_step(net, size, precision, repeat, device) for _ in range(3))
            row = {"size": size, "precision": precision, "eager": eager, "graph": graph, "ratio": graph / eager}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['versions']['torch']}, "
             f"CPU capability {m['cpu_capability']}, native bf16: {m['native_bf16']}, CUDA: {m['cuda']}"
             + (f" (CUDA {m['cuda_version']}, cuDNN {m['cudnn_version']})" if m.get("cuda") else "")
             + (f"; kernels capped at {m['isa_cap']} (--as-avx2)" if m.get("isa_cap") else "") + ".", ""]
    if "steps" in results:
        lines += ["| size | precision | bare step (s) | Adam step (s) | ratio | L-BFGS step (s) | ratio | "
                  "L-BFGS step, 100 pairs held (s) | ratio |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in results["steps"]:
            full = (f" {r['lbfgs_full_history']:.4g} | {r['lbfgs_full_history_ratio']:.2f} |"
                    if "lbfgs_full_history" in r else " | |")
            lines.append(f"| {r['size']} | {r['precision']} | {r['bare']:.4g} | {r['adam']:.4g} | "
                         f"{r['adam_ratio']:.2f} | {r['lbfgs']:.4g} | {r['lbfgs_ratio']:.2f} |" + full)
        lines.append("")
    if "quality" in results:
        q = results["quality"]
        lines += [f"Time to quality at 256 px: the tutorial preset ({q['tutorial_steps']} Adam steps) took "
                  f"{q['tutorial_seconds']:.1f} s; its best loss L = {q['yardstick']:.4g}.", "",
                  "| configuration | seconds to reach L | steps at 256 px | its image's loss, judged in fp32 | "
                  "fraction of the tutorial's time |",
                  "|---|---|---|---|---|"]
        for r in q["configs"]:
            secs = "not reached" if not r["reached"] else f"{r['seconds_to_L']:.1f}"
            ratio = "" if not r["reached"] else f"1/{1 / r['ratio']:.1f}"
            lines.append(f"| {r['config']} | {secs} | {r['steps']} | {r['judged_loss']:.4g} | {ratio} |")
        lines.append("")
    if "compile" in results:
        c = results["compile"]
        lines += [f"torch.compile, bare step at {c['size']} px: eager {c['eager']:.3f} s, compiled "
                  f"{c['compiled']:.3f} s (ratio {c['ratio']:.2f}), after {c['compile_seconds']:.0f} s of compiling.",
                  ""]
    if "presets" in results:
        lines += ["| run (fresh process, whole command) | precision | median seconds |", "|---|---|---|"]
        for r in results["presets"]:
            lines.append(f"| {r['run']} | {r.get('precision', 'auto')} | {r['seconds']:.1f} |")
        lines.append("")
    if "profile" in results:
        p = results["profile"]
        lines += [f"Where the time goes: one default run at {p['size']} px in {p['precision']}, "
                  f"{p['wall_seconds']:.1f} s (setting up the scales: {p['setup_seconds']:.1f} s), "
                  f"{p['operator_seconds']:.1f} s in torch's operators:", "",
                  "| operators | seconds | share of the run |", "|---|---|---|"]
        for group, seconds in p["groups"].items():
            lines.append(f"| {group} | {seconds:.1f} | {seconds / p['wall_seconds']:.0%} |")
        lines += ["", "| scale | size | steps | seconds | seconds a step |", "|---|---|---|---|---|"]
        for i, scale in enumerate(p["scales"]):
            size = "x".join(str(v) for v in scale["size"])
            lines.append(f"| {i + 1} | {size} | {scale['steps']} | {scale['seconds']:.1f} | "
                         f"{scale['seconds'] / max(1, scale['steps']):.2f} |")
        lines.append("")
    if "memory" in results:
        gpu = any("peak_gpu_gib" in r for r in results["memory"])
        lines += ["| longer side | image | steps | peak memory (GiB) |" + (" peak GPU memory (GiB) |" if gpu else ""),
                  "|---|---|---|---|" + ("---|" if gpu else "")]
        for r in results["memory"]:
            lines.append(f"| {r['size']} | {r['image'][0]}x{r['image'][1]} | {r.get('steps', 2)} | "
                         f"{r['peak_rss_gib']:.2f} |"
                         + (f" {r.get('peak_gpu_gib', float('nan')):.2f} |" if gpu else ""))
        lines.append("")
    if results.get("cudagraph"):
        lines += ["| size | precision | bare step, eager (ms) | replayed CUDA graph (ms) | ratio |",
                  "|---|---|---|---|---|"]
        for r in results["cudagraph"]:
            lines.append(f"| {r['size']} | {r['precision']} | {r['eager'] * 1000:.2f} | {r['graph'] * 1000:.2f} | "
                         f"{r['ratio']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=PARTS, action="append")
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions per step measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the step measurements")
    parser.add_argument("--tutorial-steps", type=int, default=1000)
    parser.add_argument("--repeat-presets", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precisions", nargs="+", default=["auto", "fp32"],
                        help="precisions of the presets part (fp32: a CPU without native bf16)")
    parser.add_argument("--profile-precision", default="fp32", help="precision of the profile part")
    parser.add_argument("--profile-size", type=int, default=512)
    parser.add_argument("--out", type=Path, default=None, help="results file stem, in benchmarks/ unless it names a "
                        "folder (default results, or results-avx2 with --as-avx2)")
    parser.add_argument("--as-avx2", action="store_true",
                        help="cap torch's and oneDNN's kernels at AVX2 (no AVX-512, no native bf16): a laptop CPU")
    args = parser.parse_args()
    if args.as_avx2 and any(os.environ.get(name) != value for name, value in AVX2_ENV.items()):
        # The caps are read when torch loads: run again in a process that has them from the start.
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **AVX2_ENV})
    if args.out is None:
        args.out = HERE / ("results-avx2" if args.as_avx2 else "results")
    elif args.out.parent == Path():
        args.out = HERE / args.out
    device = pick_device(args.device)
    if device.type == "cpu":
        keep_freed_memory()  # as painterly's runs do, so that the bare step has the same allocator
        large_blocks_from_heap(True)  # as their untiled scales do
    parts = args.only or list(PARTS)
    # With --only, the other parts' earlier figures are kept, each with the command that made it.
    json_path = args.out.with_suffix(".json")
    results: dict = json.loads(json_path.read_text()) if args.only and json_path.exists() else {}
    results["machine"] = machine()
    command = " ".join(["python", *sys.argv])
    results.setdefault("commands", {}).update({part: command for part in parts})
    results.pop("command", None)
    print(json.dumps(results["machine"]), flush=True)
    if "steps" in parts:
        results["steps"] = part_steps(args.repeat, args.rounds, device)
    if "quality" in parts:
        results["quality"] = part_quality(device, args.tutorial_steps)
    if "compile" in parts:
        results["compile"] = part_compile(args.repeat, device)
    if "presets" in parts:
        results["presets"] = part_presets(args.repeat_presets, device, args.precisions)
    if "memory" in parts:
        results["memory"] = part_memory(device)
    if "cudagraph" in parts and device.type == "cuda":
        results["cudagraph"] = part_cudagraph(args.repeat, device)
    if "profile" in parts:
        results["profile"] = part_profile(device, args.profile_precision, args.profile_size)
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    table = markdown(results)
    commands = sorted(set(results["commands"].values()))
    args.out.with_suffix(".md").write_text("".join(f"Command: `{c}`\n" for c in commands) + f"\n{table}\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
