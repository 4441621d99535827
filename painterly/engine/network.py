"""VGG19 (the original ImageNet weights as published for Keras), frozen, with named layer taps.

The network takes RGB images in 0..255, shape (N, 3, H, W), does Keras' "caffe" preprocessing
itself (RGB -> BGR, subtract the ImageNet means) and returns a dict of post-ReLU feature maps keyed by
Keras layer names (``block5_conv2``). It is cut after the deepest requested layer and its weights
never take gradients.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn import functional as F

# Number of 3x3 convolutions in each of VGG19's five blocks.
BLOCKS = (2, 2, 4, 4, 4)
CONV_LAYERS = tuple(f"block{b}_conv{c}" for b, n in enumerate(BLOCKS, 1) for c in range(1, n + 1))
#: Keras' ImageNet means, in the network's BGR channel order.
BGR_MEANS = (103.939, 116.779, 123.68)


def conv_shapes() -> dict[str, tuple[int, int]]:
    """(out, in) channels of every conv layer, by name."""
    widths = (64, 128, 256, 512, 512)
    shapes, channels = {}, 3
    for b, n in enumerate(BLOCKS, 1):
        for c in range(1, n + 1):
            shapes[f"block{b}_conv{c}"] = (widths[b - 1], channels)
            channels = widths[b - 1]
    return shapes


class VGG19(nn.Module):
    """Frozen VGG19 feature extractor returning ``{layer_name: (N, C, h, w)}``.

    ``weights`` maps each conv layer name to ``(weight (out, in, 3, 3), bias (out,))`` with the input
    channels in BGR order, as Keras stores them.
    """

    means: torch.Tensor  # (1, 3, 1, 1) float64, a buffer

    def __init__(self, weights: dict[str, tuple[torch.Tensor, torch.Tensor]], pooling: str = "max") -> None:
        super().__init__()
        self.convs = nn.ModuleDict()
        for name, (out_ch, in_ch) in conv_shapes().items():
            if name not in weights:
                break  # a network cut short: only the layers it was given
            conv = nn.utils.skip_init(nn.Conv2d, in_ch, out_ch, 3, padding=1)  # no random init: overwritten next
            w, b = weights[name]
            conv.weight.data.copy_(w)
            conv.bias.data.copy_(b)
            self.convs[name] = conv
        self.pooling = pooling
        self.register_buffer("means", torch.tensor(BGR_MEANS, dtype=torch.float64).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def preprocess(self, rgb: torch.Tensor) -> torch.Tensor:
        """RGB 0..255 -> BGR minus the ImageNet means (Keras ``preprocess_input``, caffe mode)."""
        return rgb.flip(1) - self.means.to(rgb.dtype)

    def forward(self, rgb: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """Feature maps of ``layers`` for RGB images (N, 3, H, W) in 0..255."""
        wanted = set(layers)
        missing = wanted - set(self.convs)
        if missing:
            raise KeyError(f"layers not in this network: {sorted(missing)}")
        x = self.preprocess(rgb)
        out: dict[str, torch.Tensor] = {}
        for name, conv in self.convs.items():
            if name.endswith("_conv1") and name != "block1_conv1":
                x = self._pool(x)
            x = F.relu(conv(x))
            if name in wanted:
                out[name] = x
                if len(out) == len(wanted):
                    break  # cut after the deepest requested layer
        return out

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        if self.pooling == "avg":
            return F.avg_pool2d(x, 2, 2)
        return F.max_pool2d(x, 2, 2)


def work_per_pixel(layers: Iterable[str]) -> int:
    """Multiply-adds per input pixel of a forward pass cut after the deepest of ``layers`` (each 3x3 conv
    costs 9 x in x out at its block's resolution, a quarter of the previous block's): what a step's
    arithmetic grows with, besides the pixels."""
    last = CONV_LAYERS.index(deepest(layers))
    total = 0
    for name, (out_ch, in_ch) in list(conv_shapes().items())[: last + 1]:
        block = int(name[5])
        total += 9 * in_ch * out_ch // 4 ** (block - 1)
    return total


def deepest(layers: Iterable[str]) -> str:
    """The deepest of ``layers`` in network order."""
    return max(layers, key=CONV_LAYERS.index)
