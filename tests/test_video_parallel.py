"""painterly video in parallel: chunks of frames at once, then the later passes in parallel halves,
on the batch pools (in this process, local worker processes, and a real Ray cluster)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("av")
pytest.importorskip("cv2")

from test_video import PHOTO, VIDEO_ARGS, generated_frames, read_back  # noqa: E402

from painterly.video.paint import paint_video, temporal_errors  # noqa: E402
from painterly.video.parallel import paint_video_parallel, stages_of  # noqa: E402
from painterly.video.settings import VideoSettings  # noqa: E402
from painterly.workers.local import InlinePool, LocalPool  # noqa: E402

STYLE = PHOTO.parent.parent / "styles" / "great_wave.jpg"


@pytest.fixture
def frames_dir(tmp_path) -> Path:
    """The six generated frames as a folder of PNGs."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, img in enumerate(generated_frames(), 1):
        img.save(folder / f"shot_{i:03d}.png")
    return folder


class CountingPool(InlinePool):
    """Works one after the other in this process, counted by kind, as if ``size`` workers took them."""

    def __init__(self, size: int = 2) -> None:
        super().__init__()
        self.size = size
        self.kinds: list[str] = []

    def submit(self, work) -> None:
        self.kinds.append(type(work).__name__)
        super().submit(work)


def test_stages_cut_the_clip_into_chunks_then_halves() -> None:
    stages = stages_of(7, 3, 3)
    assert [(s.name, s.frames) for s in stages] == [
        ("chunk 1", (0, 1)), ("chunk 2", (2, 3, 4)), ("chunk 3", (5, 6)),
        ("pass 2 even", (0, 2, 4, 6)), ("pass 2 odd", (1, 3, 5)),
        ("pass 3 even", (0, 2, 4, 6)), ("pass 3 odd", (1, 3, 5))]
    assert [s.name for s in stages_of(2, 8, 1)] == ["chunk 1", "chunk 2"]  # never more chunks than frames
    assert [s.name for s in stages_of(1, 2, 4)] == ["chunk 1"]  # one frame: nothing to refine


def test_parallel_passes_smooth_the_seam_and_stay_steady(fast) -> None:
    import painterly

    frames = generated_frames(6, (48, 32))
    style = Image.open(STYLE)
    settings = fast.replace(steps=8, optimizer="lbfgs")
    video = VideoSettings(frame_steps=6, temporal_weight=1e6)
    one = paint_video_parallel(frames, style, CountingPool(2), settings, video)
    pool = CountingPool(2)
    events = []
    three = paint_video_parallel(frames, style, pool, settings, video.replace(passes=3), callback=events.append)
    assert not three.stopped and len(three.images) == 6 and three.images[0].size == (48, 32)
    assert pool.kinds == ["ChunkWork"] * 2 + ["RefineWork"] * 12
    # Chunks 0-2 and 3-5: each chunk's first frame is a whole run, then two passes of 6 steps each.
    assert [f.steps for f in three.frames] == [8 + 12, 6 + 12, 6 + 12, 8 + 12, 6 + 12, 6 + 12]
    assert {k for k in three.frames[2].losses if k.startswith("temporal")} == {"temporal", "temporal_next"}
    assert events[-1].eta == 0 and max(e.pass_index for e in events) == 2
    seam = 2  # errors[t - 1] compares frame t with frame t - 1: the seam is between frames 2 and 3
    assert three.temporal_error == pytest.approx(np.mean(temporal_errors(three.images, frames)), rel=1e-4)
    assert three.frames[3].temporal_error < one.frames[3].temporal_error / 2  # the seam is smoothed
    assert temporal_errors(one.images, frames)[seam] > 3 * np.mean(np.delete(temporal_errors(one.images, frames), seam))
    sequential = paint_video(frames, style, settings, video)
    independent = [painterly.stylize(f, style, settings).image for f in frames]
    alone = np.mean(temporal_errors(independent, frames))
    assert three.temporal_error < alone / 3
    assert three.temporal_error < 2 * sequential.temporal_error
    # ... and painted as strongly: the style loss no worse than the sequential run's.
    assert np.mean([f.losses["style"] for f in three.frames]) < 1.2 * np.mean([f.losses["style"] for f in
                                                                                sequential.frames])


def test_a_stopped_parallel_run_goes_on_from_the_stages_it_finished(fast) -> None:
    frames = generated_frames(4, (48, 32))
    style = Image.open(STYLE)
    video = VideoSettings(frame_steps=1, passes=2)
    kept: dict[str, list] = {}
    stopped = paint_video_parallel(frames, style, CountingPool(2), fast, video, callback=lambda e: True,
                                   on_stage=lambda stage, done: kept.update({stage.name: done}))
    assert stopped.stopped and list(kept) == ["chunk 1"]  # stopped after the first work came back
    painted = [None] * 4
    for frame in kept["chunk 1"]:
        painted[frame.index] = frame
    pool = CountingPool(2)
    result = paint_video_parallel(frames, style, pool, fast, video, finished=list(kept), painted=painted,
                                  on_stage=lambda stage, done: kept.update({stage.name: done}))
    assert not result.stopped and pool.kinds == ["ChunkWork", "RefineWork", "RefineWork", "RefineWork", "RefineWork"]
    assert list(kept) == ["chunk 1", "chunk 2", "pass 2 even", "pass 2 odd"]
    assert [f.index for f in result.frames] == [0, 1, 2, 3]


def test_a_failed_work_fails_the_clip_in_one_line(fast) -> None:
    from painterly.errors import PainterlyError

    frames = generated_frames(2, (48, 32))
    with pytest.raises(PainterlyError, match="chunk 1: .*weights"):
        paint_video_parallel(frames, Image.open(STYLE), CountingPool(1), fast.replace(weights="/no/such.bin"),
                             VideoSettings(frame_steps=1))


def test_ray_video_matches_local_workers(ray_cluster, fast) -> None:
    from painterly.workers.ray_pool import RayPool

    frames = generated_frames(4, (48, 32))
    style = Image.open(STYLE)
    video = VideoSettings(frame_steps=2, passes=2)
    on_ray = paint_video_parallel(frames, style, RayPool(2, 1), fast, video)
    local = paint_video_parallel(frames, style, LocalPool(2, 1), fast, video)
    assert not on_ray.stopped and [f.steps for f in on_ray.frames] == [f.steps for f in local.frames]
    for a, b in zip(on_ray.images, local.images):  # the same works, one thread each: the same pixels
        assert np.abs(np.asarray(a, int) - np.asarray(b, int)).max() <= 1


def test_cli_video_on_workers_stops_and_resumes(cli, fast_args, frames_dir, style_path, tmp_path, monkeypatch) -> None:
    from painterly.cli import video as video_cli

    out = tmp_path / "painted.mp4"
    work = tmp_path / "painted.mp4.painterly-work"
    real_call = video_cli.FrameBar.__call__

    def interrupt_in_pass_2(self, event):
        if event.pass_index == 1:
            raise KeyboardInterrupt  # as Ctrl-C would, while the later pass runs
        return real_call(self, event)

    monkeypatch.setattr(video_cli.FrameBar, "__call__", interrupt_in_pass_2)
    argv = ["video", frames_dir, style_path, "-o", out, *fast_args, *[a for a in VIDEO_ARGS if a != "-q"],
            "--passes", "2", "--workers", "2"]
    code, _, err = cli(argv)
    assert code == 130 and "chunk 1" in err and "chunk 2" in err and "--resume" in err and not out.exists()
    stages = [json.loads(line)["stage"] for line in (work / "stages.jsonl").read_text().splitlines()]
    assert sorted(stages) == ["chunk 1", "chunk 2"]
    assert sorted(p.name for p in work.glob("*.png")) == [f"frame_00000{i}.png" for i in range(1, 7)]

    code, _, err = cli([*argv[:-2], "--workers", "3", "--resume"])  # cut otherwise: refused
    assert code == 1 and "chunks" in err

    monkeypatch.setattr(video_cli.FrameBar, "__call__", real_call)
    history = tmp_path / "run.json"
    code, _, err = cli([*argv, "--resume", "--history", history])
    assert code == 0, err
    assert read_back(out)[:2] == (6, (48, 32)) and not work.exists()
    record = json.loads(history.read_text())
    assert record["chunks"] == 2 and len(record["frame_stats"]) == 6 and record["temporal_error"] > 0


def test_cli_video_bad_worker_count(cli, fast_args, frames_dir, style_path, tmp_path) -> None:
    code, _, err = cli(["video", frames_dir, style_path, "-o", tmp_path / "o.mp4", *fast_args, "--workers", "0"])
    assert code == 1 and err.count("\n") == 1 and "--workers must be at least 1, got 0" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]
