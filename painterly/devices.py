"""Choosing the device and the precision a run uses."""

from __future__ import annotations

import torch

from .errors import SettingsError


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA, then Apple MPS, then the CPU; a named device that is absent is an error."""
    cuda = torch.cuda.is_available()
    mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise SettingsError("device 'cuda' was asked for, but this torch sees no CUDA GPU; use --device cpu or auto")
    if name == "mps" and not mps:
        raise SettingsError("device 'mps' was asked for, but Apple's MPS is not available here; use --device cpu or auto")
    return torch.device(name)


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 convolutions natively (AVX512-BF16 or AMX).

    Without it, oneDNN emulates bf16 and a convolution is tens of times slower than in fp32.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def pick_precision(name: str, device: torch.device) -> str:
    """``auto`` -> bf16 on CUDA GPUs that support it and on CPUs with native bf16, else fp32."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32"
