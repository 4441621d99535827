"""The image says how it was made: the record round-trips through ``painterly info`` in every output
format, ``--again`` reproduces a seeded run pixel for pixel, and damaged or missing records fail in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from painterly.cli import main
from painterly.engine.settings import preset
from painterly.errors import ImageError
from painterly.output import metadata

DATA = Path(__file__).parent / "data"
CONTENT = DATA / "content" / "green_sea_turtle.png"
STYLE = DATA / "styles" / "great_wave.png"
#: A run of a second: tiny, two steps, the network cut at block2, CPU fp32 (the same numbers everywhere).
TINY = {"size": 48, "steps": 2, "precision": "fp32", "content_layers": ("block2_conv2",),
        "style_layers": ("block1_conv1", "block2_conv1")}
TINY_ARGS = ["--size", "48", "--steps", "2", "--device", "cpu", "--precision", "fp32", "--content-layers",
             "block2_conv2", "--style-layers", "block1_conv1", "block2_conv1", "-q"]


def info_json(path: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["info", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("ext", ["png", "jpg", "webp", "tiff"])
def test_record_round_trips_through_info(ext, tmp_path, capsys):
    out = tmp_path / f"painted.{ext}"
    assert main([str(CONTENT), str(STYLE), "-o", str(out), "--preset", "draft", *TINY_ARGS]) == 0
    with Image.open(out) as img:
        assert img.size == (48, 36)
    record = info_json(out, capsys)
    expected = preset("draft").replace(**TINY).to_dict()
    assert record["settings"] == expected
    assert record["preset"] == "draft"
    assert record["content"] == str(CONTENT.resolve()) and record["styles"] == [str(STYLE.resolve())]
    assert record["versions"]["painterly"] and record["best"]["step"] >= 0
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "made by painterly" in text and "steps: 2" in text and "great_wave.png" in text


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF"])
def test_save_params_and_read_agree(fmt, tmp_path):
    record = {"settings": {"init": "fünf <ünicode> \"quoted\".png"}, "styles": ["a", "b"], "n": 1.5}
    path = tmp_path / f"x.{fmt.lower()}"
    Image.new("RGB", (8, 8), (10, 20, 30)).save(path, format=fmt, **metadata.save_params(fmt, record))
    assert metadata.read(path) == record


def test_again_reproduces_a_seeded_run_exactly(tmp_path, capsys):
    first, again = tmp_path / "first.png", tmp_path / "again.png"
    args = ["--preset", "tutorial", "--init", "noise", "--seed", "7", *TINY_ARGS, "--steps", "3"]
    assert main([str(CONTENT), str(STYLE), "-o", str(first), *args]) == 0
    assert main([str(first), "--again", "-o", str(again), "-q"]) == 0
    with Image.open(first) as a, Image.open(again) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))
    from painterly.engine.settings import picture_settings

    # The picture's settings are carried; the machine's are this machine's own (device auto).
    assert (picture_settings(info_json(again, capsys)["settings"])
            == picture_settings(info_json(first, capsys)["settings"]))


def test_again_needs_an_output(tmp_path, capsys):
    first = tmp_path / "first.png"
    assert main([str(CONTENT), str(STYLE), "-o", str(first), *TINY_ARGS]) == 0
    capsys.readouterr()
    assert main([str(first), "--again"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "-o" in err


def test_info_on_an_image_painterly_did_not_make(tmp_path, capsys):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    assert main(["info", str(plain)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "carries no painterly settings" in err
    assert main(["info", str(tmp_path / "missing.png")]) == 1
    assert "not found" in capsys.readouterr().err


def test_damaged_record_is_reported(tmp_path):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(metadata.KEY, "{not json")
    damaged = tmp_path / "damaged.png"
    Image.new("RGB", (8, 8)).save(damaged, pnginfo=info)
    with pytest.raises(ImageError, match="damaged"):
        metadata.read(damaged)
