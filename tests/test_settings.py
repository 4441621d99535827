"""Settings: presets, the tutorial's exact values, validation, round-trips, the multi-scale plan."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import pytest

from painterly.engine.network import CONV_LAYERS
from painterly.engine.settings import (
    DEFAULT,
    FIELD_NAMES,
    MACHINE_FIELDS,
    PRESETS,
    TUTORIAL,
    TUTORIAL_STYLE_LAYERS,
    Machine,
    Settings,
    preset,
)
from painterly.errors import SettingsError


def test_presets_exist_and_are_settings() -> None:
    assert set(PRESETS) >= {"default", "tutorial", "quality", "draft"}
    for name, value in PRESETS.items():
        assert isinstance(value, Settings)
        assert preset(name) is value
    assert preset("default") is DEFAULT and preset("tutorial") is TUTORIAL


def test_tutorial_preset_is_the_tutorial() -> None:
    t = preset("tutorial")
    assert t.size == 512
    assert t.content_layers == ("block5_conv2",)
    assert t.style_layers == ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")
    assert t.style_layers == TUTORIAL_STYLE_LAYERS
    assert t.content_layer_weights == () and t.style_layer_weights == ()  # equal, 1/n
    assert t.content_weight == 1e3 and t.style_weight == 1e-2
    assert t.optimizer == "adam"
    assert (t.lr, t.adam_beta1, t.adam_beta2, t.adam_eps) == (5.0, 0.99, 0.999, 0.1)
    assert t.steps == 1000
    assert t.start_size == 0 and t.scale_sizes() == [512]
    assert t.init == "content"
    assert t.tv_weight == 0
    assert t.precision == "fp32"
    assert t.pooling == "max" and t.colour == "none" and t.ema == 0 and t.patience == 0


def test_other_presets_are_sane() -> None:
    assert DEFAULT.optimizer == "lbfgs" and DEFAULT.start_size < DEFAULT.size
    assert preset("quality").steps > DEFAULT.steps
    assert preset("draft").size < DEFAULT.size and preset("draft").steps < DEFAULT.steps


def test_unknown_preset_suggests_the_closest() -> None:
    with pytest.raises(SettingsError, match="did you mean 'tutorial'"):
        preset("tutorail")


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT.size = 5  # type: ignore[misc]


def test_replace_returns_a_validated_copy() -> None:
    s = DEFAULT.replace(size=256, steps=3)
    assert (s.size, s.steps) == (256, 3) and DEFAULT.size == 512
    with pytest.raises(SettingsError, match="did you mean 'steps'"):
        DEFAULT.replace(stpes=3)
    with pytest.raises(SettingsError, match="size"):
        DEFAULT.replace(size=0)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"size": 0}, "size"),
        ({"size": -5}, "size"),
        ({"size": 16}, "size"),
        ({"size": 100_000}, "size"),
        ({"size": 64.0}, "size"),
        ({"size": True}, "size"),
        ({"steps": 0}, "steps"),
        ({"steps": -1}, "steps"),
        ({"start_size": -1}, "start_size"),
        ({"start_size": 8}, "start_size"),
        ({"style_weight": float("nan")}, "style_weight"),
        ({"content_weight": -1.0}, "content_weight"),
        ({"tv_weight": float("inf")}, "tv_weight"),
        ({"style_weight": float("-inf")}, "style_weight"),
        ({"content_weight": "1e3"}, "content_weight"),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"adam_beta1": 1.0}, "adam_beta1"),
        ({"adam_eps": -0.1}, "adam_eps"),
        ({"ema": 1.0}, "ema"),
        ({"scale_factor": 1.0}, "scale_factor"),
        ({"patience": -1}, "patience"),
        ({"seed": -1}, "seed"),
        ({"style_scale": 0.0}, "style_scale"),
        ({"style_scale": 100.0}, "style_scale"),
        ({"init": ""}, "init"),
        ({"style_blend_weights": (0.0, 0.0)}, "style_blend_weights"),
        ({"style_blend_weights": (1.0, float("nan"))}, "style_blend_weights"),
        ({"content_layers": (), "style_layers": ()}, "both be empty"),
    ],
)
def test_bad_values_raise_settings_error_naming_the_field(changes: dict, words: str) -> None:
    with pytest.raises(SettingsError, match=words):
        Settings(**changes)


def test_error_message_shows_the_value() -> None:
    with pytest.raises(SettingsError, match=r"got -3"):
        Settings(steps=-3)
    with pytest.raises(SettingsError, match=r"got nan"):
        Settings(style_weight=float("nan"))


@pytest.mark.parametrize(
    ("field", "typo", "suggestion"),
    [
        ("style_layers", ("blok1_conv1",), "block1_conv1"),
        ("style_layers", ("block5_conv5",), "block5_conv4"),
        ("content_layers", ("block4_conv22",), "block4_conv2"),
    ],
)
def test_unknown_layer_suggests_the_closest(field: str, typo: tuple, suggestion: str) -> None:
    with pytest.raises(SettingsError, match=f"unknown layer '{typo[0]}'.*did you mean '{suggestion}'"):
        Settings(**{field: typo})


@pytest.mark.parametrize(
    ("field", "value", "suggestion"),
    [("optimizer", "adma", "adam"), ("optimizer", "lbgfs", "lbfgs"), ("device", "cpuu", "cpu"),
     ("precision", "fp23", "fp32"), ("colour", "luminence", "luminance"), ("pooling", "average", None),
     ("cuda_graphs", "of", "off")],
)
def test_unknown_choice_lists_the_choices(field: str, value: str, suggestion: str | None) -> None:
    kind = Machine if field in MACHINE_FIELDS else Settings
    with pytest.raises(SettingsError, match=f"unknown {field} '{value}'") as info:
        kind(**{field: value})
    assert "choose one of" in str(info.value)
    if suggestion:
        assert f"did you mean '{suggestion}'" in str(info.value)


def test_layer_weights_must_match_the_layers() -> None:
    with pytest.raises(SettingsError, match="style_layer_weights has 2 values but there are 5 style_layers"):
        Settings(style_layer_weights=(1.0, 2.0))
    with pytest.raises(SettingsError, match="content_layer_weights has 2 values but there are 1"):
        Settings(content_layer_weights=(1.0, 2.0))
    with pytest.raises(SettingsError, match="content_layer_weights"):
        Settings(content_layer_weights=(-1.0,))
    ok = Settings(style_layers=("block1_conv1", "block2_conv1"), style_layer_weights=(0.25, 0.75))
    assert ok.style_layer_weights == (0.25, 0.75)


def test_one_side_of_the_loss_may_be_empty() -> None:
    assert Settings(content_layers=()).content_layers == ()
    assert Settings(style_layers=()).style_layers == ()


def test_every_conv_layer_is_accepted() -> None:
    assert Settings(style_layers=CONV_LAYERS).style_layers == CONV_LAYERS


def test_lists_become_tuples() -> None:
    s = Settings(style_layers=["block1_conv1"], style_blend_weights=[1, 2])  # type: ignore[arg-type]
    assert s.style_layers == ("block1_conv1",) and s.style_blend_weights == (1, 2)
    hash(s)  # frozen and made of tuples: hashable


def test_to_dict_from_dict_round_trip() -> None:
    weights = tuple(float(i) for i in range(1, len(DEFAULT.style_layers) + 1))
    for original in [*PRESETS.values(), DEFAULT.replace(style_layer_weights=weights, seed=7)]:
        data = original.to_dict()
        assert set(data) == set(FIELD_NAMES)
        assert isinstance(data["style_layers"], list)
        again = Settings.from_dict(json.loads(json.dumps(data)))
        assert again == original


def test_from_dict_keeps_defaults_and_rejects_unknown_names() -> None:
    assert Settings.from_dict({"size": 300}) == Settings(size=300)
    with pytest.raises(SettingsError, match="unknown setting 'colour_mode'"):
        Settings.from_dict({"colour_mode": "luminance"})
    with pytest.raises(SettingsError):
        Settings.from_dict({"size": "large"})


def test_single_scale_plan() -> None:
    s = Settings(size=300, steps=7)
    assert s.scale_sizes() == [300] and s.scale_steps() == [7]
    assert Settings(size=300, start_size=300).scale_sizes() == [300]
    assert Settings(size=300, start_size=400).scale_sizes() == [300]


def test_scale_sizes_shrink_by_the_factor_down_to_start_size() -> None:
    s = Settings(size=1024, start_size=128, scale_factor=2)
    assert s.scale_sizes() == [128, 256, 512, 1024]
    s = Settings(size=1000, start_size=200)
    sizes = s.scale_sizes()
    assert sizes[-1] == 1000 and sizes[0] >= 200
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    for small, big in itertools.pairwise(sizes):
        assert big / small == pytest.approx(math.sqrt(2), rel=0.01)
    assert sizes[0] / math.sqrt(2) < 200  # no further scale fits above start_size


def test_scale_sizes_reach_start_size_despite_float_rounding() -> None:
    # 512 / sqrt(2)^4 is 128 exactly but 127.99999999999997 in floats: the 128 px scale must stay.
    assert Settings(size=512, start_size=128).scale_sizes() == [128, 181, 256, 362, 512]
    assert DEFAULT.scale_sizes()[0] == DEFAULT.start_size == 362


def test_scale_steps_decay_per_scale() -> None:
    s = Settings(size=1024, start_size=128, scale_factor=2, steps=100, scale_steps_decay=0.5)
    assert s.scale_steps() == [100, 50, 25, 12]
    s = Settings(size=1024, start_size=128, scale_factor=2, steps=1, scale_steps_decay=0.1)
    assert s.scale_steps() == [1, 1, 1, 1]  # never zero steps at a scale
    assert len(DEFAULT.scale_steps()) == len(DEFAULT.scale_sizes())


def test_min_scale_steps_floors_the_finer_scales() -> None:
    s = Settings(size=1024, start_size=128, scale_factor=2, steps=100, scale_steps_decay=0.5, min_scale_steps=20)
    assert s.scale_steps() == [100, 50, 25, 20]
    # Never more than ``steps`` because of the floor.
    assert s.replace(steps=8).scale_steps() == [8, 8, 8, 8]
    # The default preset gives its finest scale real work at every size.
    for size in (256, 512, 1024, 2048):
        assert DEFAULT.replace(size=size).scale_steps()[-1] >= 10
    with pytest.raises(SettingsError, match="min_scale_steps"):
        Settings(min_scale_steps=0)


def test_init_mode_and_init_file_are_two_fields() -> None:
    from painterly.engine.settings import DEFAULT

    started = DEFAULT.replace(init="start.png")  # a path as init (the CLI's --init, older records)
    assert (started.init, started.init_file) == ("file", "start.png")
    assert Settings.from_dict({"init": "old.png"}).init_file == "old.png"
    assert DEFAULT.replace(init_file="a.png").init == "file"
    assert started.replace(init="noise").init_file == ""  # a mode drops the file
    with pytest.raises(SettingsError, match="init file needs init_file"):
        DEFAULT.replace(init="file")
    with pytest.raises(SettingsError, match="init_file is used only with init file"):
        DEFAULT.replace(init="noise", init_file="a.png")


def test_machine_settings_are_apart_from_the_picture() -> None:
    from painterly.output.record import same_work

    assert not set(DEFAULT.to_dict()) & set(MACHINE_FIELDS) and set(Machine().to_dict()) == set(MACHINE_FIELDS)
    with pytest.raises(SettingsError, match=r"device is a machine setting.*machine=Machine\(device=\.\.\.\)"):
        DEFAULT.replace(device="cuda")
    with pytest.raises(SettingsError, match="unknown machine setting 'thread'.*did you mean 'threads'"):
        Machine().replace(thread=2)
    # A record made before the split kept the machine's settings among the picture's: read as the picture.
    old = {**DEFAULT.to_dict(), "device": "cuda", "threads": 8, "tile_size": 512, "max_memory": 20.0}
    assert Settings.from_dict(old) == DEFAULT
    record = {"settings": old, "inputs": {"content": "x"}}
    assert same_work(record, DEFAULT.to_dict(), {"content": "x"})  # made on a GPU: the same picture
    assert not same_work(record, DEFAULT.replace(steps=3).to_dict(), {"content": "x"})
