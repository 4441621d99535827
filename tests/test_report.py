"""The report: Recorder (which steps it renders, what it keeps) and every file write_report writes.

Most checks feed a synthetic 100-step run (solid-colour images, so tiles can be counted); one tiny
real run goes through ``painterly.cli.main([... '--report', DIR])``.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image

from painterly import DEFAULT, Progress, Result, stylize
from painterly.cli import main
from painterly.output.report import (
    DPI,
    GIF_SIDE,
    PER_ROW,
    TILE_INCHES,
    Recorder,
    phase_changes,
    spread_steps,
    write_report,
)

pytest.importorskip("matplotlib")  # the report extra

DATA = Path(__file__).parent / "data"
CONTENT = DATA / "content" / "green_sea_turtle.png"
STYLE = DATA / "styles" / "great_wave.png"
HAS_VIDEO = all(importlib.util.find_spec(m) for m in ("imageio", "imageio_ffmpeg"))


# -- a synthetic run ------------------------------------------------------------------------------

def colour_of(step: int) -> tuple[int, int, int]:
    """A saturated colour per step (never gray, never white), so tiles stand out from titles."""
    return [(220, 40, 40), (40, 160, 40), (40, 60, 220), (200, 40, 200), (230, 150, 20)][step % 5]


def solid(size: tuple[int, int], rgb: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", size, rgb)


class Feed:
    """Plays a run of ``scales`` x ``per_scale`` steps into a callback; counts image renders."""

    def __init__(self, per_scale: int = 50, sizes=((48, 36), (64, 48))) -> None:
        self.per_scale, self.sizes, self.renders = per_scale, sizes, 0
        self.total = per_scale * len(sizes)

    def to_rgb(self, x: torch.Tensor) -> torch.Tensor:
        self.renders += 1
        return x

    def events(self):
        step = 0
        for scale, (w, h) in enumerate(self.sizes):
            for _ in range(self.per_scale):
                image = torch.tensor(colour_of(step), dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, h, w)
                losses = {"total": 1e6 / (step + 1), "style": 9e5 / (step + 1), "content": 1e5, "tv": 0.0}
                yield Progress(step, self.total, scale, len(self.sizes), (w, h), losses, step * 0.1, 1.0,
                               image, self.to_rgb)
                step += 1

    def run(self, callback) -> list[Progress]:
        events = list(self.events())
        for event in events:
            assert not callback(event), "a recorder must never stop the run"
        return events

    def result(self, optimizer_switch_at: int | None = None) -> Result:
        history = []
        for e in self.events():
            optimizer = "lbfgs" if optimizer_switch_at is not None and e.step >= optimizer_switch_at else "adam"
            history.append({"step": e.step, **e.losses, "seconds": e.elapsed, "scale": e.scale,
                            "size": list(e.size), "optimizer": optimizer})
        return Result(image=solid(self.sizes[-1], (20, 200, 200)), history=history, best_step=self.total - 1,
                      best_loss=history[-1]["total"], seconds=12.5, seconds_setup=0.5,
                      settings=DEFAULT.replace(steps=self.per_scale, size=64, start_size=48), device="cpu",
                      precision="fp32", content=solid((64, 48), (230, 120, 30)),
                      styles=[solid((60, 44), (30, 90, 220))])


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A 100-step, two-scale run recorded and reported, with an optimizer change at step 70."""
    feed = Feed()
    recorder = Recorder()
    feed.run(recorder)
    result = feed.result(optimizer_switch_at=70)
    folder = tmp_path_factory.mktemp("report")
    index = write_report(result, folder, recorder)
    return {"feed": feed, "recorder": recorder, "result": result, "folder": folder, "index": index}


# -- tile and page checks -------------------------------------------------------------------------

def coloured_runs(mask_1d: np.ndarray) -> int:
    """How many separate stretches of True there are."""
    padded = np.concatenate([[False], mask_1d, [False]]).astype(np.int8)
    return int((np.diff(padded) == 1).sum())


def tile_grid(path: Path) -> tuple[int, int]:
    """(columns, rows) of coloured pictures in a figure: titles are black text, tiles are saturated."""
    arr = np.asarray(Image.open(path).convert("RGB")).astype(int)
    coloured = (arr.max(axis=2) - arr.min(axis=2)) > 60
    return coloured_runs(coloured.any(axis=0)), coloured_runs(coloured.any(axis=1))


def page_links(index: Path) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]*)"', index.read_text(encoding="utf-8"))


def check_links(index: Path) -> list[str]:
    links = page_links(index)
    assert links
    for link in links:
        assert "://" not in link and not link.startswith(("/", "data:")), f"not a relative link: {link}"
        assert (index.parent / link).is_file(), f"index.html links a missing file: {link}"
    return links


# -- spread_steps and Recorder --------------------------------------------------------------------

def test_spread_steps_is_even_and_ends_with_the_last_step():
    assert spread_steps(1000, 10) == list(range(99, 1000, 100))  # the tutorial's "every 100 iterations"
    assert spread_steps(100, 30)[-1] == 99 and len(spread_steps(100, 30)) == 30
    gaps = np.diff(spread_steps(100, 30))
    assert gaps.min() >= 3 and gaps.max() <= 4
    assert spread_steps(4, 10) == [0, 1, 2, 3]  # a short run: every step
    assert spread_steps(1, 10) == [0]


def test_recorder_renders_only_the_steps_it_keeps():
    feed = Feed(per_scale=500)  # 1000 steps
    recorder = Recorder()
    feed.run(recorder)
    kept = set(recorder.grid_steps) | set(recorder.frame_steps)
    assert feed.renders == len(kept) == len(recorder.images)
    assert feed.renders <= recorder.snapshots + recorder.frames
    assert feed.renders / feed.total <= 0.04  # a few dozen renders for 1000 steps
    assert recorder.grid_steps == spread_steps(1000, 10)
    assert len(recorder.frame_steps) >= 20
    assert recorder.seconds >= 0


def test_recorder_keeps_small_copies_and_replans_for_a_new_run():
    recorder = Recorder(snapshots=4, frames=0, side=32)
    Feed(per_scale=10, sizes=((64, 48),)).run(recorder)
    assert sorted(recorder.images) == [2, 4, 7, 9]
    assert all(max(img.size) <= 32 and img.mode == "RGB" for img in recorder.images.values())
    Feed(per_scale=3, sizes=((64, 48),)).run(recorder)  # the same recorder, a second run
    assert recorder.total_steps == 3 and sorted(recorder.images) == [0, 1, 2]


def test_recorder_rejects_bad_counts():
    from painterly.errors import SettingsError

    with pytest.raises(SettingsError, match="snapshots"):
        Recorder(snapshots=0)


# -- the folder, from the synthetic run ------------------------------------------------------------

def test_report_writes_every_file(synthetic):
    folder = synthetic["folder"]
    names = {"inputs.png", "snapshots.png", "progress.gif", "result.png", "losses.png", "run.json", "index.html"}
    if HAS_VIDEO:
        names.add("progress.mp4")
    assert {p.name for p in folder.iterdir()} == names  # and no temporary files left behind
    assert synthetic["index"] == folder / "index.html"
    for name in names - {"run.json", "index.html", "progress.mp4"}:
        with Image.open(folder / name) as img:
            img.load()


def test_snapshots_grid_is_ten_tiles_in_rows_of_five(synthetic):
    path = synthetic["folder"] / "snapshots.png"
    assert tile_grid(path) == (5, 2)
    with Image.open(path) as img:
        assert img.width == round(PER_ROW * TILE_INCHES * DPI)


def test_snapshots_layout_follows_the_arguments(synthetic, tmp_path):
    write_report(synthetic["result"], tmp_path, synthetic["recorder"], snapshots=6, per_row=3, video=False,
                 gif_side=32)
    assert tile_grid(tmp_path / "snapshots.png") == (3, 2)
    assert not (tmp_path / "progress.mp4").exists()
    with Image.open(tmp_path / "progress.gif") as gif:
        assert gif.size == (32, 24)


def test_inputs_and_result_figures_show_each_picture(synthetic):
    assert tile_grid(synthetic["folder"] / "inputs.png") == (2, 1)  # content | style
    assert tile_grid(synthetic["folder"] / "result.png") == (3, 1)  # content | style | result


def test_animation_has_a_frame_per_recorded_step_and_the_result(synthetic):
    recorder = synthetic["recorder"]
    with Image.open(synthetic["folder"] / "progress.gif") as gif:
        assert gif.n_frames == len(recorder.frame_steps) + 1 >= 20
        assert gif.size == (64, 48)  # the result's size (smaller than GIF_SIDE), even sides
        assert max(gif.size) <= GIF_SIDE
        assert gif.info.get("loop") == 0
        expected = [colour_of(step) for step in recorder.frame_steps] + [(20, 200, 200)]  # then the result
        for i, colour in enumerate(expected):
            gif.seek(i)
            corner = np.asarray(gif.convert("RGB"))[5, 5].astype(int)  # above the step label
            assert np.abs(corner - colour).max() <= 8, f"frame {i}"


@pytest.mark.skipif(not HAS_VIDEO, reason="imageio-ffmpeg is not installed")
def test_video_has_the_frames(synthetic):
    import imageio.v2 as imageio

    reader = imageio.get_reader(synthetic["folder"] / "progress.mp4")
    try:
        assert reader.count_frames() >= len(synthetic["recorder"].frame_steps)
        assert reader.get_meta_data()["size"] == (64, 48)
    finally:
        reader.close()


def test_losses_figure_and_phase_changes(synthetic):
    with Image.open(synthetic["folder"] / "losses.png") as img:
        assert img.size == (8 * DPI, round(4.5 * DPI))
    changes = phase_changes(synthetic["result"].history)
    assert [step for step, _ in changes] == [50, 70]
    assert "scale 2: 64x48" in changes[0][1] and "adam -> lbfgs" in changes[1][1]


def test_run_json_is_the_record(synthetic):
    record = json.loads((synthetic["folder"] / "run.json").read_text())
    assert record == json.loads(json.dumps(synthetic["result"].record()))
    assert len(record["history"]) == 100


def test_index_links_only_files_that_exist(synthetic):
    links = check_links(synthetic["index"])
    assert {"inputs.png", "snapshots.png", "progress.gif", "result.png", "losses.png", "run.json"} <= set(links)
    text = synthetic["index"].read_text()
    assert "<table>" in text and "style_weight" in text and "content_layers" in text


def test_report_without_a_recorder_skips_the_snapshots_and_clears_old_ones(synthetic, tmp_path):
    write_report(synthetic["result"], tmp_path, synthetic["recorder"])
    write_report(synthetic["result"], tmp_path)  # the same folder, no recorder this time
    assert not (tmp_path / "snapshots.png").exists() and not (tmp_path / "progress.gif").exists()
    links = check_links(tmp_path / "index.html")
    assert "snapshots.png" not in links and "Recorder" in (tmp_path / "index.html").read_text()


def test_page_escapes_setting_values(synthetic, tmp_path):
    result = synthetic["result"]
    odd = Result(**{**result.__dict__, "settings": result.settings.replace(init="<b>odd</b>.png")})
    write_report(odd, tmp_path)
    text = (tmp_path / "index.html").read_text()
    assert "<b>odd" not in text and "&lt;b&gt;odd" in text


def test_result_displays_inline(synthetic):
    result = synthetic["result"]
    with Image.open(io.BytesIO(result._repr_png_())) as img:
        assert img.format == "PNG" and img.size == result.image.size
        assert np.array_equal(np.asarray(img.convert("RGB")), np.asarray(result.image))


# -- real runs -----------------------------------------------------------------------------------

def test_real_run_renders_only_the_kept_steps():
    """The snapshot cost, counted: Progress.image runs once per kept step, not once per step."""
    recorder = Recorder(snapshots=4, frames=5)
    with mock.patch.object(Progress, "image", autospec=True, side_effect=Progress.image) as image:
        result = stylize(Image.open(CONTENT), Image.open(STYLE), DEFAULT, size=32, steps=12, start_size=0,
                         patience=0, device="cpu", precision="fp32", callback=recorder)
    assert len(result.history) == 12
    assert image.call_count == len(set(recorder.grid_steps) | set(recorder.frame_steps)) == len(recorder.images) == 7
    assert all(img.size == result.image.size for img in recorder.images.values())


def test_cli_report_from_a_real_run(tmp_path):
    out, report = tmp_path / "out.png", tmp_path / "report"
    code = main([str(CONTENT), str(STYLE), "-o", str(out), "--preset", "tutorial", "--size", "48", "--steps", "6",
                 "--device", "cpu", "--precision", "fp32", "--report", str(report), "-q"])
    assert code == 0 and out.is_file()
    check_links(report / "index.html")
    with Image.open(report / "progress.gif") as gif:
        assert gif.n_frames == 6 + 1 and gif.size == (48, 36)
    with Image.open(report / "snapshots.png") as img:
        assert img.width == round(PER_ROW * TILE_INCHES * DPI)
    with Image.open(report / "result.png") as img, Image.open(report / "inputs.png") as inputs:
        assert img.width == round(3 * TILE_INCHES * DPI) and inputs.width == round(2 * TILE_INCHES * DPI)
    record = json.loads((report / "run.json").read_text())
    assert len(record["history"]) == 6 and record["settings"]["optimizer"] == "adam"


def test_report_without_matplotlib_says_what_to_install(synthetic, tmp_path):
    from painterly.errors import OutputError

    real = importlib.util.find_spec
    hidden = mock.patch("importlib.util.find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    with hidden, pytest.raises(OutputError, match=r"painterly\[report\]"):
        write_report(synthetic["result"], tmp_path, synthetic["recorder"])
    assert not any(tmp_path.iterdir())
