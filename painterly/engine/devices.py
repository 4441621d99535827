"""Choosing the device and the precision a run uses, and how the CPU allocator keeps freed memory."""

from __future__ import annotations

import ctypes
import os
import platform

import torch

from ..errors import SettingsError


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA, then Apple MPS, then the CPU; a named device that is absent is an error."""
    cuda = torch.cuda.is_available()
    mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise SettingsError("device 'cuda' was asked for, but this torch sees no CUDA GPU; use --device cpu or auto")
    if name == "mps" and not mps:
        raise SettingsError("device 'mps' was asked for, but Apple's MPS is not available here; "
                            "use --device cpu or auto")
    return torch.device(name)


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 convolutions natively (AVX512-BF16 or AMX).

    Without it, oneDNN emulates bf16 and a convolution is tens of times slower than in fp32.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def storage_dtype(precision: str) -> torch.dtype:
    """The dtype images, targets and weights are kept in for ``precision``: float64 for fp64, else
    float32 (bf16 runs cast under autocast)."""
    return torch.float64 if precision == "fp64" else torch.float32


def pick_precision(name: str, device: torch.device) -> str:
    """``auto`` -> bf16 on CUDA GPUs that support it and on CPUs with native bf16, else fp32."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32"


#: glibc's ``mallopt`` parameters (``malloc.h``) and the values painterly sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_MMAP_THRESHOLD = 32 << 20  # glibc's largest: blocks up to 32 MiB come from the heap
_TRIM_THRESHOLD = 1 << 30  # free memory at the heap's top is handed back only beyond 1 GiB
_MMAP_MAX = 65536  # glibc's default: how many blocks may be mapped at once (0: none, all from the heap)
#: The most pixels of an untiled scale that takes its large blocks from the heap. Larger images
#: fragment it: peak memory rose 19-21% (a default step at 1024x768 in fp32: 2.65 -> 3.15 GiB, at
#: 1448x1086 4.62 -> 5.59 GiB; 2-core AMD EPYC), past the plan's estimate (2.98 and 4.85 GiB). Up to
#: 512x512 it rose 1-5% and stayed under it (1.51 GiB of 1.8 planned).
HEAP_MAX_PIXELS = 512 * 512
_allocator_tuned: list[bool] = []


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed blocks for reuse instead of handing them back to the system.

    Each step allocates and frees the same feature maps and gradients (megabytes each). With glibc's
    defaults the freed memory at the top of the heap is trimmed and blocks beyond its adaptive
    threshold are mapped afresh, so the next step takes page faults on all of it again: about 12,000
    per step at 256 px (4-5% of a bf16 step) and 20,000-26,000 at 512 px. Blocks up to 32 MiB now
    come from the heap, and the heap keeps up to 1 GiB of free memory at its top. Peak memory stays
    within a few percent; the process holds on to what it freed between steps rather than returning it.

    Once per process; a no-op (False) where the C library is not glibc.
    """
    if _allocator_tuned:
        return _allocator_tuned[0]
    done = False
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        try:
            mallopt = ctypes.CDLL(None).mallopt
            done = (bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD))
                    and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)))
        except (OSError, AttributeError):
            done = False
    _allocator_tuned.append(done)
    return done


def release_freed_memory() -> None:
    """Hand the memory the allocator keeps for reuse back to the system (glibc's ``malloc_trim``).
    Called between scales, whose maps have other sizes: what the last scale freed would otherwise
    stay resident, up to :data:`_TRIM_THRESHOLD` and more where the heap is fragmented. A no-op where
    the allocator was not tuned."""
    _tuned_glibc("malloc_trim", 0)


def large_blocks_from_heap(on: bool) -> None:
    """Take even blocks over 32 MiB from the heap (``on``), or map each afresh as glibc does (off).

    glibc maps every block over 32 MiB on its own and unmaps it when freed, so keeping freed memory
    (:func:`keep_freed_memory`) does not reach them: at 512 px in fp32 block1's maps and their
    gradients are 48-64 MiB each, and a default run on a 512x512 photo took 2.4-3.3 million page
    faults (about 10 GiB faulted in and zeroed). From the heap they are reused, step after step: 0.5
    million faults, the same pixels and the same peak memory within 5%, and the whole command up to a
    tenth sooner on a 2-core AVX2 CPU (``benchmarks/revisions.py``). The engine turns it on for
    untiled scales of at most :data:`HEAP_MAX_PIXELS` only: larger ones fragment the heap past the
    memory plan, and a tiled scale's plan was measured with mapped blocks and runs near its budget.
    A no-op where the allocator was not tuned."""
    _tuned_glibc("mallopt", _M_MMAP_MAX, 0 if on else _MMAP_MAX)


def _tuned_glibc(function: str, *args: int) -> None:
    """glibc's ``function(*args)``, where :func:`keep_freed_memory` tuned the allocator; else nothing."""
    if _allocator_tuned and _allocator_tuned[0]:
        try:
            getattr(ctypes.CDLL(None), function)(*args)
        except (OSError, AttributeError):
            pass


def setup_process(threads: int = 0) -> None:
    """What a program's entry point (the CLI, the web server, a batch worker) sets once for the whole
    process: torch's CPU threads (0: leave torch's choice, one per core) and the allocator
    (:func:`keep_freed_memory`). Library calls such as :func:`painterly.stylize` never do this."""
    if threads:
        torch.set_num_threads(threads)
    keep_freed_memory()


def free_memory(device: torch.device) -> int:
    """Bytes free for a run on ``device``: the GPU's free memory on CUDA, else the system's available
    memory (``MemAvailable``; the physical memory where that cannot be read)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def memory_budget(max_memory: float, device: torch.device) -> int:
    """The bytes a run may plan for: ``max_memory`` GiB, or (0) a safe share of what is free (three
    quarters on the CPU, where the system and other programs need the rest; 90% of a GPU's)."""
    if max_memory > 0:
        return int(max_memory * 2**30)
    return int(free_memory(device) * (0.9 if device.type == "cuda" else 0.75))
