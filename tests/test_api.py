"""The public API: stylize() on tiny images, its Result and record, callbacks, inputs, overrides."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import painterly
from painterly import Progress, Result, SettingsError, stylize
from painterly.engine.images import fit_size
from painterly.engine.settings import DEFAULT, TUTORIAL, Settings
from painterly.errors import ImageError

DATA = Path(__file__).parent / "data"
SEEDED = DATA / "seeded_run.json"


def _pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img)


@pytest.fixture(scope="module")
def images() -> tuple[Image.Image, Image.Image]:
    return (Image.open(DATA / "content/chelsea.png").convert("RGB"),
            Image.open(DATA / "styles/great_wave.png").convert("RGB"))


@pytest.fixture(scope="module")
def fast_settings(fast: Settings) -> Settings:
    return fast


@pytest.fixture(scope="module")
def fast_result(images, fast_settings: Settings) -> Result:
    """One 48 px, 2-step run, shared by the tests that only read its result."""
    return stylize(*images, fast_settings)


# -- the stored run -------------------------------------------------------------------------------


def test_seeded_run_matches_stored_values(images) -> None:
    ref = json.loads(SEEDED.read_text())
    content = Image.open(DATA / ref["content"]).convert("RGB")
    style = Image.open(DATA / ref["style"]).convert("RGB")
    result = stylize(content, style, TUTORIAL, **ref["changes"])  # its device="cpu" goes to the machine
    assert len(result.history) == len(ref["history"])
    for got, want in zip(result.history, ref["history"]):
        for key in ("total", "style", "content", "tv"):
            assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), (got["step"], key)
    assert result.best_step == ref["best_step"]
    assert list(result.image.size) == ref["image_size"]
    assert _pixels(result.image).mean() == pytest.approx(ref["image_mean"], abs=0.5)


def test_seeded_run_is_deterministic(images, fast_settings: Settings) -> None:
    settings = fast_settings.replace(init="noise", seed=5)
    first, second = stylize(*images, settings), stylize(*images, settings)
    assert np.array_equal(_pixels(first.image), _pixels(second.image))
    def strip(history: list[dict]) -> list[dict]:
        return [{k: v for k, v in e.items() if k != "seconds"} for e in history]

    assert strip(first.history) == strip(second.history)
    assert first.best_step == second.best_step and first.best_loss == second.best_loss


# -- the result -----------------------------------------------------------------------------------


def test_result_fields(images, fast_settings: Settings, fast_result: Result) -> None:
    content = images[0]
    r = fast_result
    assert isinstance(r.image, Image.Image) and r.image.mode == "RGB"
    assert r.image.size == fit_size(content.size, fast_settings.size) == (48, 32)
    assert len(r.history) == fast_settings.steps
    assert [h["step"] for h in r.history] == list(range(fast_settings.steps))
    assert 0 <= r.best_step < fast_settings.steps
    assert r.best_loss == min(h["total"] for h in r.history)
    assert r.history[r.best_step]["total"] == r.best_loss
    assert r.settings == fast_settings
    assert r.device == "cpu" and r.precision == "fp32"
    assert r.stopped is False
    assert r.seconds >= r.seconds_setup >= 0
    assert r.content is not None and len(r.styles) == 1


def test_history_entries(fast_result: Result) -> None:
    for entry in fast_result.history:
        assert {"step", "total", "style", "content", "tv", "seconds"} <= set(entry)
        assert entry["total"] == pytest.approx(entry["style"] + entry["content"] + entry["tv"], rel=1e-6)
        assert entry["size"] == [48, 32] and entry["scale"] == 0
    seconds = [e["seconds"] for e in fast_result.history]
    assert seconds == sorted(seconds)


def test_record(fast_result: Result) -> None:
    rec = fast_result.record()
    assert {"settings", "history", "best", "seconds_total", "image_size", "versions"} <= set(rec)
    assert rec["settings"] == fast_result.settings.to_dict()
    assert Settings.from_dict(rec["settings"]) == fast_result.settings
    assert rec["best"] == {"step": fast_result.best_step, "total": fast_result.best_loss}
    assert rec["image_size"] == [48, 32]
    assert rec["versions"]["painterly"] == painterly.__version__
    assert rec["versions"]["torch"] == torch.__version__
    assert rec["versions"]["python"].count(".") == 2
    for entry in rec["history"]:
        assert {"step", "total", "style", "content", "tv", "seconds"} <= set(entry)
    assert json.loads(json.dumps(rec)) == rec  # JSON-ready as it is


def test_result_shows_in_jupyter(fast_result: Result) -> None:
    png = fast_result._repr_png_()
    assert Image.open(io.BytesIO(png)).size == fast_result.image.size


# -- inputs ------------------------------------------------------------------------------------


def test_pil_numpy_and_tensor_inputs_give_the_same_result(images, fast_settings: Settings,
                                                          fast_result: Result) -> None:
    content, style = images
    arr_c, arr_s = np.asarray(content), np.asarray(style)
    from_numpy = stylize(arr_c, arr_s, fast_settings)

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.copy()).permute(2, 0, 1).float() / 255

    from_tensor = stylize(tensor(arr_c), tensor(arr_s)[None], fast_settings)
    for other in (from_numpy, from_tensor):
        assert np.array_equal(_pixels(other.image), _pixels(fast_result.image))
        assert [h["total"] for h in other.history] == [h["total"] for h in fast_result.history]


def test_a_list_of_one_style_is_one_style(images, fast_settings: Settings, fast_result: Result) -> None:
    content, style = images
    listed = stylize(content, [style], fast_settings.replace(steps=1))
    assert listed.history[0]["total"] == fast_result.history[0]["total"]


def test_bad_inputs(images, fast_settings: Settings) -> None:
    content, style = images
    with pytest.raises(ImageError, match="style"):
        stylize(content, [], fast_settings)
    with pytest.raises(ImageError, match="content image"):
        stylize(np.zeros((8, 8, 3), np.uint8), style, fast_settings)
    with pytest.raises(ImageError, match="image not found: no-such-photo.png"):
        stylize("no-such-photo.png", style, fast_settings)  # a path is read, and a missing one said so
    with pytest.raises(SettingsError, match="style_blend_weights"):
        stylize(content, [style, style], fast_settings.replace(style_blend_weights=(1.0, 2.0, 3.0)))
    with pytest.raises(ImageError, match="not found"):
        stylize(content, style, fast_settings.replace(init="no_such_start.png"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda(images, fast_settings: Settings) -> None:
    with pytest.raises(SettingsError, match="cuda"):
        stylize(*images, fast_settings, device="cuda")


# -- settings and overrides -----------------------------------------------------------------------


def test_overrides_keyword(images, fast_settings: Settings) -> None:
    r = stylize(*images, fast_settings, steps=1, size=32)
    assert r.settings == fast_settings.replace(steps=1, size=32)
    assert len(r.history) == 1 and r.image.size == (32, 22)  # 21.5 rounds to even


def test_overrides_without_settings_start_from_the_default_preset(images, fast_changes: dict) -> None:
    r = stylize(*images, **{**fast_changes, "steps": 1})
    assert r.settings == DEFAULT.replace(**{**fast_changes, "steps": 1})
    assert r.settings.optimizer == DEFAULT.optimizer and r.history[0]["optimizer"] == DEFAULT.optimizer


@pytest.mark.parametrize(("overrides", "words"), [
    ({"stpes": 2}, "did you mean 'steps'"),
    ({"steps": 0}, "steps"),
    ({"style_weight": float("nan")}, "style_weight"),
    ({"style_layers": ("block9_conv1",)}, "unknown layer"),
])
def test_bad_overrides(images, fast_settings: Settings, overrides: dict, words: str) -> None:
    with pytest.raises(SettingsError, match=words):
        stylize(*images, fast_settings, **overrides)


# -- multi-scale ------------------------------------------------------------------------------------


def test_multi_scale_ends_at_the_requested_size(images, fast_settings: Settings) -> None:
    settings = fast_settings.replace(size=48, start_size=32, steps=2, scale_steps_decay=0.5)
    assert settings.scale_sizes() == [34, 48] and settings.scale_steps() == [2, 1]
    r = stylize(*images, settings)
    assert r.image.size == fit_size(images[0].size, 48)
    assert len(r.history) == 3
    assert [h["scale"] for h in r.history] == [0, 0, 1]
    widths = [h["size"][0] for h in r.history]
    assert widths == sorted(widths) and widths[0] < widths[-1] == 48
    assert [h["step"] for h in r.history] == [0, 1, 2]
    assert r.best_step == 2  # the only step of the last scale


# -- callback ------------------------------------------------------------------------------------


def test_callback_receives_progress(images, fast_settings: Settings) -> None:
    events: list[Progress] = []
    stylize(*images, fast_settings.replace(steps=3), callback=events.append)
    assert [e.step for e in events] == [0, 1, 2]
    e = events[-1]
    assert isinstance(e, Progress)
    assert e.total_steps == 3 and e.scale == 0 and e.scales == 1 and e.size == (48, 32)
    assert set(e.losses) == {"total", "style", "content", "tv"}
    assert e.elapsed >= 0 and e.eta >= 0
    picture = e.image()
    assert isinstance(picture, Image.Image) and picture.size == (48, 32)


def test_callback_returning_true_stops(images, fast_settings: Settings) -> None:
    calls: list[int] = []

    def stop_at_second(event: Progress) -> bool:
        calls.append(event.step)
        return event.step == 1

    r = stylize(*images, fast_settings.replace(steps=5), callback=stop_at_second)
    assert r.stopped is True
    assert calls == [0, 1] and len(r.history) == 2
    assert r.image.size == (48, 32)
    assert r.record()["stopped"] is True


def test_init_image_argument(images, fast_settings: Settings) -> None:
    content, style = images
    start = Image.fromarray(np.full((20, 30, 3), 77, np.uint8))  # another size: resized to fit
    r = stylize(content, style, fast_settings.replace(steps=1), init_image=start)
    assert np.array_equal(_pixels(r.image), np.full((32, 48, 3), 77, np.uint8))  # the only evaluated image


def test_paths_are_read(images, fast_settings: Settings) -> None:
    from painterly.samples import demo_paths

    content, style = demo_paths()
    r = stylize(str(content), style, fast_settings.replace(steps=1))
    assert max(r.image.size) == fast_settings.size


def test_ctrl_c_reports_the_right_best_step(images, fast_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from painterly.engine import objective

    original = objective.Objective.__call__
    calls = {"n": 0}

    def interrupt_on_fourth(self, image):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(self, image)

    monkeypatch.setattr(objective.Objective, "__call__", interrupt_on_fourth)
    r = stylize(*images, fast_settings.replace(steps=10, init="noise"))
    assert r.stopped and len(r.history) == 3
    assert r.history[r.best_step]["total"] == r.best_loss
