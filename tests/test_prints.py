"""Print conveniences and long runs: sizes at a DPI, exact sizes, 16-bit PNG and TIFF with the record
and DPI inside, checkpoints and --resume, and the bad values of each in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from painterly import TUTORIAL, stylize
from painterly.cli.options import EXIT_INTERRUPTED
from painterly.engine.checkpoint import Checkpoint, load, path_for, save
from painterly.engine.prints import fit_exactly, print_pixels, save16
from painterly.errors import SettingsError
from painterly.output import metadata


def _one_error_line(code: int, stderr: str) -> str:
    assert code != 0 and "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_print_sizes_in_cm_mm_and_inches() -> None:
    assert print_pixels("30x20cm", 300) == (3543, 2362)
    assert print_pixels("12 x 8 in", 100) == (1200, 800)
    assert print_pixels("300x200mm", 254) == (3000, 2000)
    for bad in ("30x20", "30cm", "axbcm", "30x20ft"):
        with pytest.raises(SettingsError, match="takes WIDTHxHEIGHT with a unit"):
            print_pixels(bad, 300)
    with pytest.raises(SettingsError, match="--dpi must be between 30 and 2400"):
        print_pixels("10x10cm", 5000)


def test_fit_exactly_crops_about_the_centre() -> None:
    img = Image.new("RGB", (300, 100))
    img.paste((255, 0, 0), (100, 0, 200, 100))  # a red middle third
    out = fit_exactly(img, (50, 50))
    assert out.size == (50, 50)
    assert np.asarray(out)[..., 0].mean() > 250  # only the middle is left
    assert fit_exactly(Image.new("RGB", (64, 43)), (80, 40)).size == (80, 40)


def test_the_largest_print_is_accepted_as_the_runs_photo() -> None:
    from painterly.engine.images import from_any
    from painterly.engine.validate import MAX_SIZE

    photo = Image.new("RGB", (MAX_SIZE, MAX_SIZE))  # what --size 8192x8192 hands the run (fit_exactly's output)
    assert from_any(photo, "content image").size == (MAX_SIZE, MAX_SIZE)


@pytest.mark.parametrize("suffix", [".png", ".tiff"])
def test_16_bit_files_keep_every_sample_the_record_and_the_dpi(tmp_path: Path, suffix: str) -> None:
    import cv2

    rng = np.random.default_rng(0)
    rgb16 = rng.integers(0, 65536, (37, 53, 3), dtype=np.uint16)
    path = tmp_path / f"out{suffix}"
    save16(rgb16, path, '{"settings":{"size":53}}', metadata.KEY, 300)
    back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and (back[..., ::-1] == rgb16).all()  # OpenCV reads BGR
    assert metadata.read(path) == {"settings": {"size": 53}}
    with Image.open(path) as img:
        assert img.size == (53, 37)
        assert [round(d) for d in img.info["dpi"]] == [300, 300]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left


def test_exact_and_print_sizes_from_the_command_line(cli, tmp_path: Path, content_path: Path, style_path: Path,
                                                     fast_args: list[str]) -> None:
    exact = tmp_path / "exact.png"
    code, _, err = cli([content_path, style_path, "-o", exact, *fast_args, "--size", "80x40"])
    assert code == 0, err
    assert Image.open(exact).size == (80, 40)
    printed = tmp_path / "print.tiff"
    code, _, err = cli([content_path, style_path, "-o", printed, *fast_args, "--print-size", "2x1in", "--dpi", "40",
                        "--bit-depth", "16"])
    assert code == 0, err
    with Image.open(printed) as img:
        assert img.size == (80, 40) and [round(d) for d in img.info["dpi"]] == [40, 40]
    assert metadata.read(printed)["settings"]["size"] == 80


@pytest.mark.parametrize("args,words", [
    (["--print-size", "30x20"], "--print-size takes WIDTHxHEIGHT with a unit"),
    (["--print-size", "3x2in", "--dpi", "10"], "--dpi must be between 30 and 2400"),
    (["--print-size", "3x2in", "--size", "80x40"], "either --size WxH or --print-size"),
    (["--bit-depth", "16"], "--bit-depth 16 writes .png or .tiff files"),
    (["--max-memory", "-2"], "--max-memory must be a positive number"),
    (["--max-memory", "lots"], "argument --max-memory: takes a number, not 'lots'"),
    (["--tile-size", "100"], "--tile-size must be a multiple of 16"),
    (["--size", "80y40"], "takes the longer side in px"),
    (["--resume"], "--resume: there is no checkpoint for this output"),
])
def test_bad_print_and_memory_options(cli, tmp_path: Path, content_path: Path, style_path: Path,
                                      fast_args: list[str], args: list[str], words: str) -> None:
    out = tmp_path / "out.jpg"
    code, _, err = cli([content_path, style_path, "-o", out, *fast_args, *args])
    assert words in _one_error_line(code, err)
    assert list(tmp_path.iterdir()) == []


# -- checkpoints -----------------------------------------------------------------------------------


def _settings(fast_changes: dict):
    return TUTORIAL.replace(**{**fast_changes, "size": 64, "start_size": 32, "steps": 3, "scale_factor": 2.0})


def test_a_run_resumed_from_a_scale_end_paints_the_uninterrupted_picture(content_img, style_img, fast_changes) -> None:
    settings = _settings(fast_changes)
    whole = stylize(content_img, style_img, settings)
    saved: list[Checkpoint] = []
    first = stylize(content_img, style_img, settings, on_checkpoint=saved.append,
                    callback=lambda p: p.scale == 1)  # stopped at the first step of the second scale
    assert first.stopped and [c.scale for c in saved] == [1, 1] and saved[0].steps_done == 0
    resumed = stylize(content_img, style_img, settings, resume=saved[0])
    assert not resumed.stopped
    assert np.array_equal(np.asarray(resumed.image), np.asarray(whole.image))
    assert len(resumed.history) == len(whole.history)


def test_checkpoints_of_another_run_are_refused(tmp_path: Path) -> None:
    path = path_for(tmp_path / "out.png")
    assert path.name == ".out.png.checkpoint.pt"
    run = {"settings": {"size": 64}, "inputs": {"content": "a"}}
    save(path, Checkpoint(1, 0, torch.zeros(1, 3, 8, 8)), run)
    assert load(path, run, 2).scale == 1
    with pytest.raises(SettingsError, match="another run"):
        load(path, {**run, "inputs": {"content": "b"}}, 2)
    with pytest.raises(SettingsError, match=r"other settings \(size\)"):
        load(path, {**run, "settings": {"size": 32}}, 2)
    with pytest.raises(SettingsError, match="already finished"):
        load(path, run, 1)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(SettingsError, match="not a painterly checkpoint"):
        load(path, run, 2)


def test_resume_from_the_command_line(cli, tmp_path: Path, content_path: Path, style_path: Path,
                                      fast_args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from painterly.engine import objective

    out = tmp_path / "out.png"
    argv = [content_path, style_path, "-o", out, *fast_args, "--size", "64", "--start-size", "32",
            "--scale-factor", "2", "--steps", "3"]
    original = objective.Objective.__call__
    calls = {"n": 0}

    def interrupt_on_fifth(self, image):
        calls["n"] += 1
        if calls["n"] == 5:  # the second step of the second scale
            raise KeyboardInterrupt
        return original(self, image)

    monkeypatch.setattr(objective.Objective, "__call__", interrupt_on_fifth)
    code, _, err = cli(argv)
    assert code == EXIT_INTERRUPTED and "--resume goes on from there" in err
    assert path_for(out).exists()
    monkeypatch.setattr(objective.Objective, "__call__", original)
    code, _, err = cli([*argv, "--steps", "4", "--resume"])
    assert "other settings (steps)" in _one_error_line(code, err)
    code, _, err = cli([*argv, "--resume"])
    assert code == 0, err
    assert "resuming at scale 2 of 2, step 2" in err
    assert not path_for(out).exists() and Image.open(out).size == (64, 43)


def test_sigterm_writes_the_best_image_and_keeps_the_checkpoint(tmp_path: Path, content_path: Path,
                                                                style_path: Path, fast_args: list[str]) -> None:
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out.png"
    argv = [sys.executable, "-m", "painterly", str(content_path), str(style_path), "-o", str(out), *fast_args,
            "--size", "64", "--start-size", "32", "--scale-factor", "2", "--steps", "400", "--patience", "0"]
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not path_for(out).exists():  # the first scale has ended
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == EXIT_INTERRUPTED, err
    assert "stopped at step" in err and "--resume" in err and "Traceback" not in err
    assert Image.open(out).size == (64, 43) and path_for(out).exists()


def test_a_resumed_run_measures_its_rate_from_its_own_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Steps run before a resume are done: the ETA after a resume counts only what is left, at the
    rate of the steps this run timed (the first resumed 4096 px run said 26 min with 2 hours left)."""
    from painterly.engine.plan import make_plan
    from painterly.engine.progress import Tracker

    plan = make_plan(TUTORIAL.replace(size=256, start_size=128, scale_factor=2.0, steps=10), (256, 256))
    first, second = plan.scales
    assert first.steps > 3
    clock = [0.0]
    events: list = []
    tracker = Tracker(plan, "lbfgs", events.append, clock=lambda: clock[0])
    rate = 1e-3  # seconds per unit of cost, what the machine does

    before = first.steps - 3  # the checkpoint was written with 3 steps of the first scale left
    report = tracker.reporter(0, lambda x: x, before)
    for i in range(3):
        clock[0] += rate * first.cost / first.steps
        report(i, {"total": 1.0}, torch.zeros(1))
    report = tracker.reporter(1, lambda x: x)
    clock[0] += rate * second.cost / second.steps
    report(0, {"total": 1.0}, torch.zeros(1))
    left = second.cost * (second.steps - 1) / second.steps
    assert events[-1].eta == pytest.approx(left * rate)


def test_the_eta_times_tiled_steps_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiled steps cost what this machine makes them cost (0.8x to 1.9x an untiled step's per pixel,
    by machine): once one has run, the ETA of the tiled scales comes from them."""
    from painterly.engine.plan import make_plan
    from painterly.engine.progress import Tracker

    settings = TUTORIAL.replace(size=512, start_size=256, scale_factor=2.0, steps=4)
    plan = make_plan(settings, (512, 512), tile_size=0, budget=int(1.5 * 2**30))
    untiled, tiled = plan.scales
    assert not untiled.tile and tiled.tile, plan.describe()
    clock = [0.0]
    events: list = []
    tracker = Tracker(plan, "lbfgs", events.append, clock=lambda: clock[0])
    rate = 1e-3
    report = tracker.reporter(0, lambda x: x)
    for i in range(untiled.steps):
        clock[0] += rate * untiled.cost / untiled.steps
        report(i, {"total": 1.0}, torch.zeros(1))
    assert events[-1].eta == pytest.approx(rate * tiled.cost)  # nothing tiled timed yet: the untiled rate
    report = tracker.reporter(1, lambda x: x)
    for i in range(3):
        clock[0] += 2 * rate * tiled.cost / tiled.steps  # tiled steps cost twice as much here
        report(i, {"total": 1.0}, torch.zeros(1))
    measured = (rate + 3 * 2 * rate) / 4  # one tiled step's worth of the untiled rate, then three measured
    assert events[-1].eta == pytest.approx(measured * tiled.cost * (tiled.steps - 3) / tiled.steps)
