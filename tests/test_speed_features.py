"""Each speed feature gives the results it claims (timings live in benchmarks/bench.py, not here)."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from painterly import TUTORIAL, stylize
from painterly.engine.devices import pick_precision
from painterly.engine.images import fit_size
from painterly.engine.run import build_network

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def pair():
    return Image.open(DATA / "content" / "chelsea.png"), Image.open(DATA / "styles" / "starry_night.png")


def test_bf16_reaches_the_fp32_loss_within_2_percent(pair):
    # bf16 runs the network in bfloat16 with Grams and losses in fp32; the losses it reports and the
    # image it reaches must stay within 2% of fp32 at the same number of steps.
    base = TUTORIAL.replace(size=48, steps=4)
    fp32 = stylize(*pair, base.replace(precision="fp32"))
    bf16 = stylize(*pair, base.replace(precision="bf16"))
    assert bf16.precision == "bf16"
    for a, b in zip(fp32.history, bf16.history):
        assert b["total"] == pytest.approx(a["total"], rel=0.02)


def test_auto_precision_is_fp32_or_bf16_by_hardware():
    assert pick_precision("auto", torch.device("cpu")) in ("fp32", "bf16")
    assert pick_precision("fp32", torch.device("cpu")) == "fp32"
    assert pick_precision("bf16", torch.device("cpu")) == "bf16"


def test_multiscale_ends_at_the_requested_size(pair):
    result = stylize(*pair, size=64, steps=2, start_size=32, patience=0)
    assert result.image.size == fit_size(pair[0].size, 64)
    sizes = [tuple(h["size"]) for h in result.history]
    assert sizes[0] != sizes[-1]
    assert [max(s) for s in dict.fromkeys(sizes)] == [32, 45, 64]  # x sqrt(2) per scale
    assert sizes[-1] == result.image.size
    assert len({h["scale"] for h in result.history}) == 3


def test_early_stop_is_honoured(pair):
    # With a huge min_improvement no step counts as an improvement, so the run stops after
    # `patience` steps past the first one.
    result = stylize(*pair, size=48, steps=50, start_size=0, patience=3, min_improvement=0.99)
    assert len(result.history) == 4
    full = stylize(*pair, size=48, steps=6, start_size=0, patience=0)
    assert len(full.history) == 6


def test_network_is_frozen_and_cut_after_the_deepest_layer():
    settings = TUTORIAL.replace(content_layers=("block2_conv2",), style_layers=("block1_conv1", "block2_conv1"))
    net = build_network(settings, torch.device("cpu"))
    assert list(net.convs) == ["block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2"]
    assert not any(p.requires_grad for p in net.parameters())
    assert next(net.parameters()).is_contiguous(memory_format=torch.channels_last)


_FAULTS = """
import ctypes, resource, sys
from painterly.engine.devices import keep_freed_memory, large_blocks_from_heap
tuned = keep_freed_memory() if sys.argv[1] in ("tuned", "heap") else None
large_blocks_from_heap(sys.argv[1] == "heap")
size = int(sys.argv[2]) << 20
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def step():  # a step's worth of maps: allocated, written, freed
    blocks = [libc.malloc(size) for _ in range(3)]
    for b in blocks:
        ctypes.memset(b, 1, size)
    for b in blocks:
        libc.free(b)
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(tuned, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 10)
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_freed_memory_is_reused_without_page_faults():
    # glibc hands the freed maps at the heap's top back to the system after every step and faults
    # them in again on the next (one fault per 4 KiB page); keep_freed_memory (called by every CPU
    # run) keeps them, so steps after the first few take no page faults. The blocks come straight
    # from malloc, so that no Python object lands between them and the heap's top.
    (flag, tuned), (_, untuned) = _faults("tuned", 20), _faults("default", 20)
    assert flag == "True"
    assert untuned > 10_000 and tuned < 100, (untuned, tuned)


def _faults(mode: str, megabytes: int) -> tuple[str, int]:
    """(whether the allocator was tuned, page faults per step) of steps of three ``megabytes`` blocks."""
    out = subprocess.run([sys.executable, "-c", _FAULTS, mode, str(megabytes)], capture_output=True, text=True,
                         check=True)
    tuned, per_step = out.stdout.split()
    return tuned, int(per_step)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_maps_over_32_mib_are_reused_from_the_heap_in_untiled_scales():
    # glibc maps each block over 32 MiB on its own and unmaps it when freed (block1's maps at 512 px
    # in fp32 are 50-64 MiB): keeping freed memory does not reach them, the heap does.
    (_, mapped), (_, heap) = _faults("tuned", 48), _faults("heap", 48)
    assert mapped > 10_000 and heap < 100, (mapped, heap)


def test_the_engine_takes_large_blocks_from_the_heap_in_small_untiled_scales_only(pair, monkeypatch):
    calls: list[bool] = []
    monkeypatch.setattr("painterly.engine.run.large_blocks_from_heap", calls.append)
    result = stylize(*pair, TUTORIAL.replace(size=96, start_size=48, steps=1, min_scale_steps=1), device="cpu",
                     tile_size=64)
    assert [h["size"] for h in result.history][0] != list(result.image.size)
    assert calls == [True, False, False, False]  # 48 px whole, 68 and 96 px in tiles of 64, then back to mapping
    calls.clear()
    monkeypatch.setattr("painterly.engine.run.HEAP_MAX_PIXELS", 48 * 32)  # larger images fragment the heap
    stylize(*pair, TUTORIAL.replace(size=96, start_size=48, steps=1, min_scale_steps=1), device="cpu")
    assert calls == [True, False, False, False]  # 48x32 from the heap, 68 and 96 px whole but mapped


def test_the_cli_keeps_freed_memory_and_the_library_leaves_the_process_alone(pair, tmp_path, monkeypatch):
    # The allocator and the thread count belong to the program's entry point, not to stylize().
    calls = []
    monkeypatch.setattr("painterly.engine.devices.keep_freed_memory", lambda: calls.append(1))
    threads = torch.get_num_threads()
    stylize(*pair, TUTORIAL.replace(size=48, steps=1), device="cpu", threads=1)
    assert calls == [] and torch.get_num_threads() == threads
    from painterly.cli import main
    from painterly.samples import demo_paths

    content, style = demo_paths()
    out = tmp_path / "out.png"
    assert main([str(content), str(style), "-o", str(out), "--size", "48", "--steps", "1", "-q"]) == 0
    assert calls == [1] and out.is_file()
