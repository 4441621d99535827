"""VGG19: layer names, the output dict, post-ReLU maps, the cut, frozen weights, preprocessing."""

from __future__ import annotations

import pytest
import torch

from painterly.engine.network import BGR_MEANS, BLOCKS, CONV_LAYERS, VGG19, conv_shapes, deepest
from painterly.engine.weights import load_weights

WIDTHS = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}


@pytest.fixture(scope="module")
def vgg() -> VGG19:
    return VGG19(load_weights(""))


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    """A random (1, 3, 32, 32) RGB image in 0..255."""
    return torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255


def test_conv_layer_names() -> None:
    assert len(CONV_LAYERS) == 16 == sum(BLOCKS)
    assert CONV_LAYERS[:3] == ("block1_conv1", "block1_conv2", "block2_conv1")
    assert CONV_LAYERS[-1] == "block5_conv4"
    assert [n for n in CONV_LAYERS if n.startswith("block3")] == [f"block3_conv{i}" for i in range(1, 5)]
    assert len(set(CONV_LAYERS)) == 16


def test_conv_shapes_chain_channels() -> None:
    shapes = conv_shapes()
    assert list(shapes) == list(CONV_LAYERS)
    assert shapes["block1_conv1"] == (64, 3)
    assert shapes["block2_conv1"] == (128, 64)
    assert shapes["block5_conv1"] == (512, 512)
    previous = 3
    for name, (out_ch, in_ch) in shapes.items():
        assert in_ch == previous and out_ch == WIDTHS[int(name[5])]
        previous = out_ch


def test_output_keys_and_shapes(vgg: VGG19, image: torch.Tensor) -> None:
    out = vgg(image, CONV_LAYERS)
    assert list(out) == list(CONV_LAYERS)
    for name, maps in out.items():
        block = int(name[5])
        side = 32 // 2 ** (block - 1)  # each block after the first starts with a 2x2 pooling
        assert maps.shape == (1, WIDTHS[block], side, side), name
        assert maps.dtype == torch.float32


def test_output_has_only_the_requested_layers(vgg: VGG19, image: torch.Tensor) -> None:
    out = vgg(image, ["block4_conv1", "block1_conv1"])
    assert set(out) == {"block4_conv1", "block1_conv1"}
    assert out["block4_conv1"].shape == (1, 512, 4, 4)


def test_non_square_image_halves_each_side(vgg: VGG19) -> None:
    out = vgg(torch.rand(1, 3, 48, 32) * 255, ["block3_conv1"])
    assert out["block3_conv1"].shape == (1, 256, 12, 8)


def test_maps_are_post_relu(vgg: VGG19, image: torch.Tensor) -> None:
    for name, maps in vgg(image, CONV_LAYERS).items():
        assert maps.min() >= 0, name
        assert (maps == 0).any(), name  # ReLU clipped something: these are not pre-activation maps


def test_first_layer_is_relu_of_conv_of_preprocessed(vgg: VGG19, image: torch.Tensor) -> None:
    conv = vgg.convs["block1_conv1"]
    expected = torch.relu(torch.nn.functional.conv2d(vgg.preprocess(image), conv.weight, conv.bias, padding=1))
    assert torch.allclose(vgg(image, ["block1_conv1"])["block1_conv1"], expected)


def _count_conv_calls(net: VGG19) -> tuple[list[str], list]:
    called: list[str] = []
    hooks = [conv.register_forward_hook(lambda _m, _i, _o, n=name: called.append(n))
             for name, conv in net.convs.items()]
    return called, hooks


def test_forward_stops_after_the_deepest_requested_layer(vgg: VGG19, image: torch.Tensor) -> None:
    called, hooks = _count_conv_calls(vgg)
    try:
        vgg(image, ["block1_conv1", "block1_conv2"])
        assert called == ["block1_conv1", "block1_conv2"]
        called.clear()
        vgg(image, ["block3_conv2"])
        assert called == list(CONV_LAYERS[: CONV_LAYERS.index("block3_conv2") + 1])
    finally:
        for hook in hooks:
            hook.remove()


def test_network_built_from_partial_weights(image: torch.Tensor) -> None:
    weights = load_weights("")
    partial = {name: weights[name] for name in CONV_LAYERS[:4]}  # up to block2_conv2
    net = VGG19(partial)
    assert list(net.convs) == list(CONV_LAYERS[:4])
    called, _ = _count_conv_calls(net)
    out = net(image, ["block1_conv2"])
    assert called == ["block1_conv1", "block1_conv2"]  # block2 exists but is not run
    full = VGG19(weights)
    assert torch.equal(out["block1_conv2"], full(image, ["block1_conv2"])["block1_conv2"])
    with pytest.raises(KeyError, match="block3_conv1"):
        net(image, ["block3_conv1"])


def test_deepest() -> None:
    assert deepest(["block1_conv1", "block5_conv2", "block3_conv1"]) == "block5_conv2"
    assert deepest(["block2_conv2", "block2_conv1"]) == "block2_conv2"


def test_weights_are_frozen_but_input_gradient_flows(vgg: VGG19, image: torch.Tensor) -> None:
    assert not any(p.requires_grad for p in vgg.parameters())
    assert not vgg.training
    x = image.clone().requires_grad_()
    vgg(x, ["block2_conv1"])["block2_conv1"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in vgg.parameters())


def test_preprocessing_is_bgr_minus_means(vgg: VGG19) -> None:
    rgb = torch.tensor([10.0, 20.0, 30.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    pre = vgg.preprocess(rgb)
    hand = torch.tensor([30 - 103.939, 20 - 116.779, 10 - 123.68]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert torch.allclose(pre, hand)
    assert BGR_MEANS == (103.939, 116.779, 123.68)


def test_preprocessing_keeps_float64(vgg: VGG19) -> None:
    net = VGG19({name: load_weights("")[name] for name in CONV_LAYERS[:1]}).double()
    rgb = torch.full((1, 3, 2, 2), 100.0, dtype=torch.float64)
    pre = net.preprocess(rgb)
    assert pre.dtype == torch.float64
    # The means buffer is made in float32, so in fp64 they carry float32 rounding (~3e-6).
    assert pre[0, :, 0, 0].tolist() == pytest.approx([100 - 103.939, 100 - 116.779, 100 - 123.68], abs=1e-5)


def test_average_pooling_differs_from_max(image: torch.Tensor) -> None:
    weights = load_weights("")
    partial = {name: weights[name] for name in CONV_LAYERS[:3]}
    avg = VGG19(partial, pooling="avg")(image, ["block2_conv1"])["block2_conv1"]
    mx = VGG19(partial, pooling="max")(image, ["block2_conv1"])["block2_conv1"]
    assert avg.shape == mx.shape == (1, 128, 16, 16)
    assert not torch.allclose(avg, mx)
