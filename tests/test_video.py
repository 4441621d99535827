"""painterly video: the temporal term, reading and writing clips, the frame loop, resume and bad input.

The clips are generated here: six 64x44 frames panning and zooming over a bundled photo, as an
H.264 mp4 with an AAC tone, and as a folder of PNGs. Runs use the tests' FAST settings (48 px,
shallow layers) with 2 steps for the first frame and 1 for the others.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

av = pytest.importorskip("av")
pytest.importorskip("cv2")

from painterly.video.files import Selection, parse_position, read_clip, write_video  # noqa: E402
from painterly.video.paint import paint_video, temporal_errors  # noqa: E402
from painterly.video.settings import VideoSettings  # noqa: E402
from painterly.video.temporal import TemporalTerm, long_term_masks, temporal_error  # noqa: E402

PHOTO = Path(__file__).parents[1] / "painterly" / "examples" / "content" / "chelsea.jpg"
FPS = 12
#: The tutorial preset under the FAST changes (the default preset's layer weights would not fit their two layers).
VIDEO_ARGS = ["--preset", "tutorial", "--steps", "2", "--frame-steps", "1", "-q"]


def generated_frames(n: int = 6, size: tuple[int, int] = (64, 44)) -> list[Image.Image]:
    """A pan to the right that zooms in a little: frame i is a crop of the photo, resized."""
    photo = Image.open(PHOTO).convert("RGB")
    frames = []
    for i in range(n):
        w, h = 300 - 8 * i, 200 - 8 * i * 2 // 3
        x, y = 20 + 9 * i, 30 + 2 * i
        frames.append(photo.crop((x, y, x + w, y + h)).resize(size, Image.LANCZOS))
    return frames


def encode(frames: list[Image.Image], path: Path, fps: int = FPS, audio_seconds: float = 0.0) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "yuv420p"
        audio = container.add_stream("aac", rate=16000) if audio_seconds else None
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_image(img)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if audio is not None:
            t = np.arange(int(16000 * audio_seconds)) / 16000
            tone = av.AudioFrame.from_ndarray((0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None],
                                              format="fltp", layout="mono")
            tone.sample_rate = 16000
            for packet in [*audio.encode(tone), *audio.encode()]:
                container.mux(packet)
    return path


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="module")
def mp4(clip_dir) -> Path:
    """Six frames at 12 fps with half a second of a 440 Hz tone."""
    return encode(generated_frames(), clip_dir / "pan.mp4", audio_seconds=0.5)


@pytest.fixture(scope="module")
def frames_dir(clip_dir) -> Path:
    folder = clip_dir / "frames"
    folder.mkdir()
    for i, img in enumerate(generated_frames(), 1):
        img.save(folder / f"shot_{i:03d}.png")
    return folder


def read_back(path: Path) -> tuple[int, tuple[int, int], Fraction, list[str]]:
    """(frames, (w, h), frame rate, stream kinds) of a video file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        kinds = [s.type for s in container.streams]
        frames = [f.to_image() for f in container.decode(stream)]
        return len(frames), frames[0].size, Fraction(stream.average_rate), kinds


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# -- the temporal term -------------------------------------------------------------------------


def term_on(h=6, w=8, masked_rows=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(1, 3, h, w, generator=g, dtype=torch.float64) * 255
    mask = torch.ones(1, 1, h, w, dtype=torch.float64)
    mask[..., :masked_rows, :] = 0
    return TemporalTerm(target, mask, weight=3.0)


def test_temporal_term_is_the_masked_mean_squared_difference():
    term = term_on()
    image = term.target + 2.0
    # 4 per reliable value, over D = 3 * 6 * 8 values of which 3 * 4 * 8 are reliable.
    assert term(image, {}).item() == pytest.approx(4.0 * 32 / 48)
    assert term(term.target.clone(), {}).item() == 0.0
    assert term.name == "temporal" and term.layers == () and term.weight == 3.0


def test_temporal_term_gradient_is_nonzero_and_points_toward_the_warp():
    term = term_on()
    g = torch.Generator().manual_seed(1)
    image = (torch.rand(1, 3, 6, 8, generator=g, dtype=torch.float64) * 255).requires_grad_(True)
    term(image, {}).backward()
    grad = image.grad
    reliable = term.mask.expand_as(grad).bool()
    assert torch.all(grad[reliable] != 0) and torch.all(grad[~reliable] == 0)
    toward = term.target - image.detach()
    # A step down the gradient moves every reliable pixel toward the warped previous output ...
    assert torch.all((-grad * toward)[reliable] > 0)
    # ... and the gradient is exactly 2 c (image - target) / D.
    assert torch.allclose(grad, 2 * term.mask * -toward / image.numel())
    assert torch.autograd.gradcheck(lambda x: term(x, {}), (image.detach().clone().requires_grad_(True),))


def test_temporal_term_for_size_keeps_its_meaning():
    term = term_on(h=16, w=24, masked_rows=8)
    small = term.for_size((12, 8))
    assert small.target.shape == (1, 3, 8, 12) and small.mask.shape == (1, 1, 8, 12)
    assert small.weight == term.weight and small.name == term.name
    assert small.mask[..., :3, :].max() == 0 and small.mask[..., 5:, :].min() == 1
    assert term.for_size((24, 16)) is term


def test_temporal_term_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="mask"):
        TemporalTerm(torch.zeros(1, 3, 4, 4), torch.ones(1, 1, 4, 5))


def test_long_term_masks_hold_each_pixel_to_the_nearest_frame_that_sees_it():
    m1 = torch.tensor([[[[1.0, 0.0, 0.0, 1.0]]]])
    m2 = torch.tensor([[[[1.0, 1.0, 0.0, 0.0]]]])
    m4 = torch.tensor([[[[1.0, 1.0, 1.0, 0.0]]]])
    c1, c2, c4 = long_term_masks([m1, m2, m4])
    assert c1.flatten().tolist() == [1, 0, 0, 1]
    assert c2.flatten().tolist() == [0, 1, 0, 0]
    assert c4.flatten().tolist() == [0, 0, 1, 0]


def test_temporal_error_is_masked_mean_squared_difference():
    frame = torch.full((1, 3, 2, 2), 10.0)
    warped = torch.full((1, 3, 2, 2), 13.0)
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert temporal_error(frame, warped, mask) == pytest.approx(9.0)
    assert temporal_error(frame, warped, torch.zeros_like(mask)) == 0.0


# -- reading and writing -------------------------------------------------------------------------


def test_read_clip_from_mp4_and_frames_folder(mp4, frames_dir):
    clip = read_clip(mp4, 64)
    assert len(clip.frames) == 6 and clip.size == (64, 44) and clip.fps == FPS and clip.audio
    folder = read_clip(frames_dir, 33)  # an odd size: both sides are made even for H.264
    assert len(folder.frames) == 6 and folder.size == (32, 22) and folder.fps == 24 and not folder.audio


def test_selection_by_frame_number_and_time(mp4, frames_dir):
    clip = read_clip(mp4, 64, Selection(start="1", end="0.3s", every=2))  # frames 1, 2, 3 -> 1, 3
    assert clip.source_indices == [1, 3] and clip.fps == Fraction(FPS, 2)
    clip = read_clip(frames_dir, 64, Selection(start="0:00.1", every=3), fps=Fraction(10))
    assert clip.source_indices == [1, 4] and clip.fps == Fraction(10, 3)
    assert parse_position("1:05", "--start") == ("time", 65.0)
    assert parse_position("12", "--start") == ("frame", 12.0)


def test_read_gif(clip_dir):
    path = clip_dir / "pan.gif"
    frames = generated_frames(4)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    clip = read_clip(path, 64)
    assert len(clip.frames) == 4 and clip.size == (64, 44) and clip.fps == 10


def test_write_video_roundtrip_keeps_count_size_rate_and_audio(mp4, tmp_path):
    clip = read_clip(mp4, 64)
    out = write_video(clip.frames, tmp_path / "copy.mp4", clip.fps, audio_from=mp4, audio_span=(0.0, 0.5))
    assert read_back(out) == (6, (64, 44), Fraction(FPS), ["video", "audio"])
    assert leftovers(tmp_path, set()) == ["copy.mp4"]  # no temporary file left behind
    back = read_clip(out, 64).frames
    assert np.abs(np.asarray(back[3], float) - np.asarray(clip.frames[3], float)).mean() < 4  # crf 18


# -- the frame loop ------------------------------------------------------------------------------


def test_paint_video_is_steadier_than_independent_frames(fast):
    import painterly
    from painterly.engine.run import Engine

    frames = generated_frames(4, (48, 32))
    style = Image.open(Path(PHOTO).parent.parent / "styles" / "great_wave.jpg")
    settings = fast.replace(steps=8, optimizer="lbfgs")
    engine = Engine()
    events = []
    result = paint_video(frames, style, settings, VideoSettings(frame_steps=6, temporal_weight=1e6),
                         engine=engine, callback=events.append)
    assert not result.stopped and len(result.images) == 4 and result.images[0].size == (48, 32)
    assert [f.steps for f in result.frames] == [8, 6, 6, 6]
    assert all("temporal" in f.losses for f in result.frames[1:]) and "temporal" not in result.frames[0].losses
    assert [e.frame for e in events if e.done] == [0, 1, 2, 3] and events[-1].eta == 0
    independent = [painterly.stylize(f, style, settings, engine=engine) for f in frames]
    alone = np.mean(temporal_errors([r.image for r in independent], frames))
    assert result.temporal_error == pytest.approx(np.mean(temporal_errors(result.images, frames)), rel=1e-4)
    assert result.temporal_error < alone / 3
    # ... and as painted: the style loss of the later frames is no worse than painting each alone.
    style_alone = np.mean([r.history[r.best_step]["style"] for r in independent[1:]])
    assert np.mean([f.losses["style"] for f in result.frames[1:]]) < 1.1 * style_alone


def test_paint_video_long_term_terms(fast):
    frames = generated_frames(5, (48, 32))
    style = Image.open(Path(PHOTO).parent.parent / "styles" / "great_wave.jpg")
    result = paint_video(frames, style, fast, VideoSettings(frame_steps=1, long_term="on"))
    names = [sorted(k for k in f.losses if k.startswith("temporal")) for f in result.frames]
    assert names == [[], ["temporal"], ["temporal", "temporal_2"], ["temporal", "temporal_2"],
                     ["temporal", "temporal_2", "temporal_4"]]


def test_video_settings_are_checked():
    from painterly.errors import SettingsError

    with pytest.raises(SettingsError, match="frame_steps"):
        VideoSettings(frame_steps=0)
    with pytest.raises(SettingsError, match="did you mean 'medium'"):
        VideoSettings(flow="medum")
    with pytest.raises(SettingsError, match="temporal_weight"):
        VideoSettings(temporal_weight=float("nan"))


# -- the command line ----------------------------------------------------------------------------


def test_cli_video_to_mp4_with_audio(cli, fast_args, mp4, style_path, tmp_path):
    out = tmp_path / "painted.mp4"
    code, _, err = cli(["video", mp4, style_path, "-o", out, *fast_args, *VIDEO_ARGS,
                        "--history", tmp_path / "run.json"])
    assert code == 0, err
    assert read_back(out) == (6, (48, 32), Fraction(FPS), ["video", "audio"])
    record = json.loads((tmp_path / "run.json").read_text())
    assert len(record["frame_stats"]) == 6 and record["temporal_error"] > 0
    assert leftovers(tmp_path, set()) == ["painted.mp4", "run.json"]  # the work folder is gone


def test_cli_video_frames_folder_to_folder(cli, fast_args, frames_dir, style_path, tmp_path):
    out = tmp_path / "painted"
    code, _, err = cli(["video", frames_dir, style_path, "-o", out, *fast_args, *VIDEO_ARGS, "--every", "2",
                        "--passes", "2"])
    assert code == 0, err
    record = json.loads((out / "painterly-video.json").read_text())
    assert [f["steps"] for f in record["frame_stats"]] == [2 + 1, 1 + 1, 1]  # pass 2 backward from frame 3
    assert leftovers(out, set()) == ["frame_000001.png", "frame_000002.png", "frame_000003.png",
                                     "painterly-video.json"]
    assert Image.open(out / "frame_000002.png").size == (48, 32)
    assert leftovers(tmp_path, set()) == ["painted"]


def test_cli_video_progress_bar_counts_frames(cli, fast_args, frames_dir, style_path, tmp_path):
    code, _, err = cli(["video", frames_dir, style_path, "-o", tmp_path / "p.mp4", *fast_args,
                        *[a for a in VIDEO_ARGS if a != "-q"], "--end", "3"])
    assert code == 0, err
    assert "frame 3/3 (100%)" in err and "ETA" in err and "temporal error" in err
    assert read_back(tmp_path / "p.mp4")[:2] == (3, (48, 32))


def test_cli_video_ctrl_c_keeps_frames_and_resume_finishes(cli, fast_args, mp4, style_path, tmp_path, monkeypatch):
    from painterly.cli import video as video_cli

    out = tmp_path / "painted.mp4"
    work = tmp_path / "painted.mp4.painterly-work"
    real_call = video_cli.FrameBar.__call__

    def interrupt_during_frame_4(self, event):
        if event.frame == 3:
            raise KeyboardInterrupt  # inside the optimizer's loop, as Ctrl-C would
        return real_call(self, event)

    monkeypatch.setattr(video_cli.FrameBar, "__call__", interrupt_during_frame_4)
    argv = ["video", mp4, style_path, "-o", out, *fast_args, *[a for a in VIDEO_ARGS if a != "-q"]]
    code, _, err = cli(argv)
    assert code == 130 and "--resume" in err and not out.exists()
    assert sorted(p.name for p in work.glob("*.png")) == [f"frame_00000{i}.png" for i in (1, 2, 3)]
    first_three = [Image.open(work / f"frame_00000{i}.png").tobytes() for i in (1, 2, 3)]

    code, _, err = cli(argv)  # without --resume the earlier frames are not silently thrown away
    assert code == 1 and "--resume" in err

    monkeypatch.setattr(video_cli.FrameBar, "__call__", real_call)
    painted = []
    real_paint = video_cli.paint_video
    monkeypatch.setattr(video_cli, "paint_video",
                        lambda *a, **k: painted.append(len(k["finished"])) or real_paint(*a, **k))
    code, _, err = cli([*argv, "--resume", "--keep-frames"])
    assert code == 0, err
    assert painted == [3] and read_back(out)[:2] == (6, (48, 32))
    assert [Image.open(work / f"frame_00000{i}.png").tobytes() for i in (1, 2, 3)] == first_three


def test_cli_video_resume_with_other_settings_is_refused(cli, fast_args, mp4, style_path, tmp_path):
    out = tmp_path / "painted.mp4"
    (tmp_path / "painted.mp4.painterly-work").mkdir()
    (tmp_path / "painted.mp4.painterly-work" / "run.json").write_text(json.dumps({"frames": 99}))
    code, _, err = cli(["video", mp4, style_path, "-o", out, *fast_args, *VIDEO_ARGS, "--resume"])
    assert code == 1 and "started with different" in err and err.count("\n") == 1


def bad_inputs(tmp: Path, mp4: Path, frames_dir: Path) -> dict[str, tuple[list, str]]:
    not_video = tmp / "notes.mp4"
    not_video.write_text("not a video\n")
    empty = tmp / "empty"
    empty.mkdir()
    mixed = tmp / "mixed"
    mixed.mkdir()
    for i, img in enumerate(generated_frames(3), 1):
        (img if i != 2 else img.resize((60, 44))).save(mixed / f"f{i}.png")
    gap = tmp / "gap"
    gap.mkdir()
    for i in (1, 2, 4):
        generated_frames(1)[0].save(gap / f"f{i}.png")
    return {
        "not a video": ([not_video], "not a video"),
        "missing": ([tmp / "missing.mp4"], "not found"),
        "zero frames (folder)": ([empty], "holds no frames"),
        "zero frames (range)": ([mp4, "--start", "50"], "no frames to paint"),
        "mixed sizes": ([mixed], "frames differ in size"),
        "gap": ([gap], "gap in the frame numbers"),
        "start after end": ([mp4, "--start", "1s", "--end", "0.5s"], "is not before --end"),
        "bad start": ([mp4, "--start", "soon"], "frame number"),
        "bad every": ([mp4, "--every", "0"], "--every"),
        "output extension": ([mp4, "-o", tmp / "out.png"], "cannot write '.png' video"),
        "output is the input": ([frames_dir, "-o", frames_dir], "also an input"),
        "output folder missing": ([mp4, "-o", tmp / "nowhere" / "x.mp4"], "does not exist"),
        "bad video setting": ([mp4, "--temporal-weight", "-1"], "temporal_weight"),
        "bad passes": ([mp4, "--passes", "0"], "passes"),
        "bad history": ([mp4, "--history", tmp / "run.txt"], ".json"),
    }


CASES = ["not a video", "missing", "zero frames (folder)", "zero frames (range)", "mixed sizes", "gap",
         "start after end", "bad start", "bad every", "output extension", "output is the input",
         "output folder missing", "bad video setting", "bad passes", "bad history"]


@pytest.mark.parametrize("case", CASES)
def test_cli_video_bad_input_is_one_line_and_writes_nothing(case, cli, fast_args, mp4, frames_dir, style_path,
                                                              tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    args, message = bad_inputs(work, mp4, frames_dir)[case]
    before = set(work.iterdir())
    source, *rest = args
    output = [] if "-o" in rest else ["-o", work / "out.mp4"]
    code, out, err = cli(["video", source, style_path, *output, *rest, *fast_args, *VIDEO_ARGS])
    assert code != 0
    assert err.startswith("painterly: error: ") and err.count("\n") == 1 and message in err, err
    assert "Traceback" not in err and out == ""
    assert set(work.iterdir()) == before  # no output, no work folder, no temporary file


def test_paint_video_multi_pass(fast):
    frames = generated_frames(4, (48, 32))
    style = Image.open(Path(PHOTO).parent.parent / "styles" / "great_wave.jpg")
    events = []
    result = paint_video(frames, style, fast.replace(steps=3), VideoSettings(frame_steps=2, passes=3),
                         callback=events.append)
    assert not result.stopped
    # Pass 2 runs backward from frame 4, pass 3 forward from frame 1; each pass's first frame keeps its paint.
    assert [f.steps for f in result.frames] == [3 + 2, 2 + 2 + 2, 2 + 2 + 2, 2 + 2]
    done = [(e.pass_index, e.frame) for e in events if e.done]
    assert done == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 2), (1, 1), (1, 0), (2, 1), (2, 2), (2, 3)]
    assert all(f.temporal_error is not None for f in result.frames[1:]) and events[-1].eta == 0
    assert result.temporal_error == pytest.approx(np.mean(temporal_errors(result.images, frames)), rel=1e-4)


def test_webm_with_opus_audio_into_mov_reencodes_the_audio(tmp_path):
    frames = generated_frames(4)
    source = tmp_path / "clip.webm"
    with av.open(str(source), "w") as container:
        video = container.add_stream("libvpx", rate=FPS)
        video.width, video.height = frames[0].size
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("libopus", rate=48000)
        for img in frames:
            for packet in video.encode(av.VideoFrame.from_image(img)):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        t = np.arange(24000) / 48000
        tone = av.AudioFrame.from_ndarray((0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None],
                                          format="flt", layout="mono")
        tone.sample_rate = 48000
        for packet in [*audio.encode(tone), *audio.encode()]:
            container.mux(packet)
    clip = read_clip(source, 64)
    assert len(clip.frames) == 4 and clip.audio
    out = write_video(clip.frames, tmp_path / "out.mov", clip.fps, audio_from=source, audio_span=(0.0, 4 / FPS))
    assert read_back(out)[:2] == (4, (64, 44))
    with av.open(str(out)) as container:  # .mov takes no Opus: the audio was re-encoded as AAC
        assert container.streams.audio[0].codec_context.name == "aac"
        assert sum(f.samples for f in container.decode(audio=0)) > 0
