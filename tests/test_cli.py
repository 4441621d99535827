"""The command line through ``painterly.cli.main([...])``: every option group, every bad input.

A bad input must end in a non-zero exit code, exactly one line on stderr starting with
``painterly: error:``, no traceback, and no output file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from painterly.cli.options import EXIT_INTERRUPTED
from painterly.engine.settings import DEFAULT, TUTORIAL, Settings
from painterly.output import metadata


def _ok(result: tuple[int, str, str]) -> str:
    code, _out, err = result
    assert code == 0, err
    assert "Traceback" not in err
    return err


def _history(path: Path) -> dict:
    return json.loads(path.read_text())


def _settings(path: Path) -> Settings:
    return Settings.from_dict(_history(path)["settings"])


# -- working runs -------------------------------------------------------------------------------


def test_basic_run_writes_the_result(cli, tmp_path: Path, content_path: Path, style_path: Path,
                                     fast_args: list[str]) -> None:
    out = tmp_path / "out.png"
    err = _ok(cli([content_path, style_path, "-o", out, *fast_args]))
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size == (48, 32)
    assert f"wrote {out}" in err
    assert "chelsea.png" in err and "great_wave.png" in err
    record = metadata.read(out)  # the image says how it was made
    assert record["settings"]["size"] == 48 and record["preset"] == "default"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_weights_layers_adam_noise_seed_history_and_jpeg(cli, tmp_path: Path, content_path: Path,
                                                          style_path: Path) -> None:
    out, hist = tmp_path / "out.jpg", tmp_path / "run.json"
    _ok(cli([
        content_path, style_path, "-o", out, "--history", hist,
        "--size", "40", "--steps", "3", "--start-size", "0", "--device", "cpu", "--precision", "fp32",
        "--content-weight", "10", "--style-weight", "2.5", "--tv-weight", "0.5",
        "--content-layers", "block2_conv2", "--content-layer-weights", "1",
        "--style-layers", "block1_conv1", "block2_conv1", "--style-layer-weights", "0.25", "0.75",
        "--optimizer", "adam", "--lr", "2", "--init", "noise", "--seed", "3",
    ]))
    s = _settings(hist)
    assert (s.size, s.steps, s.start_size) == (40, 3, 0)
    assert (s.content_weight, s.style_weight, s.tv_weight) == (10.0, 2.5, 0.5)
    assert s.content_layers == ("block2_conv2",) and s.content_layer_weights == (1.0,)
    assert s.style_layers == ("block1_conv1", "block2_conv1") and s.style_layer_weights == (0.25, 0.75)
    assert (s.optimizer, s.lr, s.init, s.seed) == ("adam", 2.0, "noise", 3)
    assert s.precision == "fp32" and json.loads(hist.read_text())["machine"]["device"] == "cpu"
    # Options not given keep the preset's values.
    assert s.adam_eps == DEFAULT.adam_eps and s.pooling == DEFAULT.pooling
    with Image.open(out) as img:
        assert img.format == "JPEG" and img.size == (40, 27)
    assert metadata.read(out)["settings"]["seed"] == 3


def test_history_json(cli, tmp_path: Path, content_path: Path, style_path: Path, fast_args: list[str]) -> None:
    out, hist = tmp_path / "out.png", tmp_path / "history.json"
    _ok(cli([content_path, style_path, "-o", out, "--history", hist, *fast_args, "--tv-weight", "1",
             "--init", "content"]))
    record = _history(hist)
    assert record["settings"]["init"] == "content"
    assert record["history"][0]["content"] == 0  # started from the content itself
    assert {"settings", "history", "best", "seconds_total", "image_size", "versions"} <= set(record)
    assert record["image_size"] == [48, 32]
    assert set(record["versions"]) >= {"painterly", "torch", "python"}
    assert len(record["history"]) == 2
    for i, entry in enumerate(record["history"]):
        assert entry["step"] == i
        assert {"total", "style", "content", "tv", "seconds"} <= set(entry)
        assert entry["tv"] > 0
    assert record["best"]["total"] == min(e["total"] for e in record["history"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.json", "out.png"]


def test_lbfgs_init_style_and_webp(cli, tmp_path: Path, content_path: Path, style_path: Path,
                                   fast_args: list[str]) -> None:
    out, hist = tmp_path / "out.webp", tmp_path / "h.json"
    _ok(cli([content_path, style_path, "-o", out, "--history", hist, *fast_args,
             "--optimizer", "lbfgs", "--lr", "0.5", "--init", "style"]))
    s = _settings(hist)
    assert (s.optimizer, s.lr, s.init) == ("lbfgs", 0.5, "style")
    assert _history(hist)["history"][0]["optimizer"] == "lbfgs"
    with Image.open(out) as img:
        assert img.format == "WEBP" and img.size == (48, 32)


def test_init_from_a_file_and_tiff(cli, tmp_path: Path, content_path: Path, style_path: Path,
                                   fast_args: list[str]) -> None:
    start = tmp_path / "start.png"
    Image.new("RGB", (30, 20), (90, 140, 10)).save(start)
    out = tmp_path / "out.tiff"
    _ok(cli([content_path, style_path, "-o", out, *fast_args, "--steps", "1", "--init", start]))
    with Image.open(out) as img:
        assert img.format == "TIFF"
        # One step: the only evaluated image, the best, is the start image resized.
        assert np.array_equal(np.asarray(img.convert("RGB")), np.full((32, 48, 3), (90, 140, 10), np.uint8))


def test_preset_tutorial_with_overrides(cli, tmp_path: Path, content_path: Path, style_path: Path) -> None:
    out, hist = tmp_path / "out.png", tmp_path / "h.json"
    _ok(cli([content_path, style_path, "-o", out, "--history", hist, "--preset", "tutorial",
             "--size", "32", "--steps", "1", "--device", "cpu", "--style-layers", "block1_conv1",
             "--content-layers", "block1_conv2"]))
    expected = TUTORIAL.replace(size=32, steps=1, style_layers=("block1_conv1",), content_layers=("block1_conv2",))
    assert _settings(hist) == expected
    assert json.loads(hist.read_text())["machine"]["device"] == "cpu"  # the machine's, beside the picture's
    assert metadata.read(out)["preset"] == "tutorial"


def test_multi_scale_from_the_command_line(cli, tmp_path: Path, content_path: Path, style_path: Path,
                                           fast_args: list[str]) -> None:
    out, hist = tmp_path / "out.png", tmp_path / "h.json"
    _ok(cli([content_path, style_path, "-o", out, "--history", hist, *fast_args,
             "--start-size", "32", "--steps", "1"]))
    sizes = [e["size"][0] for e in _history(hist)["history"]]
    assert sizes == [34, 48]
    assert Image.open(out).size == (48, 32)


def test_quiet_prints_nothing(cli, tmp_path: Path, content_path: Path, style_path: Path,
                              fast_args: list[str]) -> None:
    out = tmp_path / "out.png"
    code, stdout, stderr = cli([content_path, style_path, "-o", out, *fast_args, "--steps", "1", "--quiet"])
    assert code == 0 and stdout == "" and stderr == ""
    assert out.is_file()


def test_demo_at_a_tiny_size(cli, tmp_path: Path) -> None:
    out = tmp_path / "demo.png"
    err = _ok(cli(["--size", "48", "--steps", "2", "-o", out, "--device", "cpu", "--precision", "fp32"]))
    assert out.is_file() and max(Image.open(out).size) == 48
    assert str(out) in err
    assert "green_sea_turtle" in err and "great_wave" in err
    assert "CC BY-SA 3.0" in err  # the turtle photo's licence travels with the result


def test_ctrl_c_writes_the_best_image_so_far(cli, tmp_path: Path, content_path: Path, style_path: Path,
                                             fast_args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from painterly.engine import objective

    original = objective.Objective.__call__
    calls = {"n": 0}

    def interrupt_on_third(self, image):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, image)

    monkeypatch.setattr(objective.Objective, "__call__", interrupt_on_third)
    out, hist = tmp_path / "out.png", tmp_path / "h.json"
    code, _, err = cli([content_path, style_path, "-o", out, "--history", hist, *fast_args, "--steps", "10"])
    assert code == EXIT_INTERRUPTED == 130
    assert calls["n"] == 3
    assert out.is_file() and Image.open(out).size == (48, 32)
    assert "stopped" in err and str(out) in err
    record = _history(hist)
    assert record["stopped"] is True and len(record["history"]) == 2


# -- bad inputs ---------------------------------------------------------------------------------


def _one_error_line(code: int, stderr: str) -> str:
    assert code != 0
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("painterly: error:")
    return lines[0]


@pytest.mark.parametrize(("which", "name", "words"), [
    ("content", "missing", "not found"),
    ("content", "folder", "folder"),
    ("content", "not_an_image", "not an image"),
    ("style", "truncated_png", "truncated"),
    ("style", "truncated_jpg", "truncated"),
    ("content", "too_small", "too small"),
    ("content", "bomb", "too large"),
    ("style", "huge_header", "too large"),
])
def test_bad_image_files(cli, tmp_path: Path, broken: dict[str, Path], content_path: Path, style_path: Path,
                         fast_args: list[str], which: str, name: str, words: str) -> None:
    content, style = (broken[name], style_path) if which == "content" else (content_path, broken[name])
    out = tmp_path / "out.png"
    line = _one_error_line(*cli([content, style, "-o", out, *fast_args])[::2])
    assert words in line and str(broken[name]) in line
    assert not out.exists()


@pytest.mark.parametrize(("args", "words"), [
    (["--style-layers", "block1_conv9"], "did you mean 'block1_conv"),
    (["--content-layers", "blok5_conv2"], "did you mean 'block5_conv2'"),
    (["--size", "0"], "size"),
    (["--size", "-5"], "size"),
    (["--steps", "0"], "steps"),
    (["--steps", "-1"], "steps"),
    (["--style-weight", "nan"], "style-weight"),
    (["--content-weight", "-1"], "--content-weight"),
    (["--tv-weight", "inf"], "--tv-weight"),
    (["--style-layer-weights", "1", "2", "3"], "--style-layer-weights"),
    (["--colour", "luminence"], "did you mean 'luminance'"),
    (["--strength", "1.5"], "strength must be between 0"),
    (["--optimizer", "sgd"], "optimizer"),
    (["--precision", "fp16"], "precision"),
    (["--preset", "tutorail"], "did you mean 'tutorial'"),
    (["--size", "big"], "size"),
    (["--bogus"], "unrecognized"),
    (["--history", "run.txt"], "json"),
])
def test_bad_options(cli, tmp_path: Path, content_path: Path, style_path: Path, fast_args: list[str],
                     args: list[str], words: str) -> None:
    out = tmp_path / "out.png"
    line = _one_error_line(*cli([content_path, style_path, "-o", out, *fast_args, *args])[::2])
    assert words in line
    assert list(tmp_path.iterdir()) == []


def test_missing_output_folder(cli, tmp_path: Path, content_path: Path, style_path: Path,
                               fast_args: list[str]) -> None:
    out = tmp_path / "nowhere" / "out.png"
    line = _one_error_line(*cli([content_path, style_path, "-o", out, *fast_args])[::2])
    assert "folder does not exist" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("ext", [".bmp", ".gif", ".txt", ""])
def test_unknown_output_extension(cli, tmp_path: Path, content_path: Path, style_path: Path,
                                  fast_args: list[str], ext: str) -> None:
    out = tmp_path / f"out{ext}"
    line = _one_error_line(*cli([content_path, style_path, "-o", out, *fast_args])[::2])
    assert ("cannot write" in line or "has no extension" in line) and ".png" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("target", ["content", "style"])
def test_output_would_overwrite_an_input(cli, tmp_path: Path, content_path: Path, style_path: Path,
                                         fast_args: list[str], target: str) -> None:
    content, style = tmp_path / "content.png", tmp_path / "style.png"
    content.write_bytes(content_path.read_bytes())
    style.write_bytes(style_path.read_bytes())
    victim = content if target == "content" else style
    before = victim.read_bytes()
    line = _one_error_line(*cli([content, style, "-o", victim, *fast_args])[::2])
    assert "also an input" in line
    assert victim.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["content.png", "style.png"]


def test_history_would_overwrite_an_input(cli, tmp_path: Path, content_path: Path, style_path: Path,
                                          fast_args: list[str]) -> None:
    content = tmp_path / "content.json"  # a content image with a .json name, as the history file
    Image.open(content_path).save(content, format="PNG")
    before = content.read_bytes()
    line = _one_error_line(*cli([content, style_path, "-o", tmp_path / "o.png", "--history", content,
                                 *fast_args])[::2])
    assert "overwrite" in line and content.read_bytes() == before


def test_output_would_overwrite_the_init_image(cli, tmp_path: Path, content_path: Path, style_path: Path,
                                               fast_args: list[str]) -> None:
    start = tmp_path / "start.png"
    Image.new("RGB", (48, 32), (1, 2, 3)).save(start)
    before = start.read_bytes()
    code, _, err = cli([content_path, style_path, "--init", start, "-o", start, *fast_args, "--steps", "1"])
    assert start.read_bytes() == before
    line = _one_error_line(code, err)
    assert "also an input" in line


@pytest.mark.parametrize("command", [[], ["video"], ["batch"], ["info"], ["serve"]])
def test_help_lists_every_option(cli, command: list[str]) -> None:
    # Help text comes from the settings fields; one literal "%" there once made --help a traceback.
    code, out, err = cli([*command, "--help"])
    assert code == 0, err
    assert out.startswith("usage:")
    if command in ([], ["video"]):
        assert "--max-memory" in out and "90%" in out


def test_missing_pieces(cli, tmp_path: Path, content_path: Path, style_path: Path) -> None:
    line = _one_error_line(*cli([content_path, style_path])[::2])
    assert "-o" in line
    line = _one_error_line(*cli([content_path, "-o", tmp_path / "o.png"])[::2])
    assert "style" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_cuda(cli, tmp_path: Path, content_path: Path, style_path: Path,
                                        fast_args: list[str]) -> None:
    out = tmp_path / "out.png"
    code, _, err = cli([content_path, style_path, "-o", out, *fast_args, "--device", "cuda"])
    assert code != 0 and not out.exists()
    assert err.splitlines()[-1].startswith("painterly: error:") and "cuda" in err
    _one_error_line(code, err)  # fails: "painterly: chelsea.png in the style of ..." comes first


def test_missing_init_file(cli, tmp_path: Path, content_path: Path, style_path: Path,
                           fast_args: list[str]) -> None:
    out = tmp_path / "out.png"
    code, _, err = cli([content_path, style_path, "-o", out, *fast_args, "--init", tmp_path / "nope.png"])
    assert code != 0 and not out.exists()
    assert "not found" in err.splitlines()[-1]
    _one_error_line(code, err)


def test_again_takes_the_machine_settings_of_this_machine(cli, tmp_path: Path, content_path: Path,
                                                          style_path: Path, fast_args: list[str]) -> None:
    from painterly.output import metadata

    first = tmp_path / "first.png"
    _ok(cli([content_path, style_path, "-o", first, *fast_args, "--steps", "1"]))
    record = metadata.read(first)
    assert "device" not in record["settings"] and record["machine"]["device"] == "cpu"  # fast_args says so
    # As if made on a GPU server, by a version that kept the machine's settings among the picture's.
    record["settings"].update(device="cuda", threads=64, cuda_graphs="on")
    record["machine"].update(device="cuda", threads=64)
    Image.open(first).save(first, **metadata.save_params("PNG", record))
    again = tmp_path / "again.png"
    _ok(cli([first, "--again", "-o", again]))
    made = metadata.read(again)
    assert "device" not in made["settings"] and made["settings"]["steps"] == 1
    assert made["machine"]["device"] == "auto" and made["machine"]["threads"] == 0
