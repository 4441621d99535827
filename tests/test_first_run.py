"""A first run without surprises (issue 35), each through the command line: a run planned far beyond
the usual is announced and, on a terminal, asked for; a stop at a coarse scale says the image was
enlarged and where the checkpoint is; ``painterly video`` refuses a missing extra before any work;
``painterly --help`` lists every command; the running ETA follows this run's own steps.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from painterly.cli import paint as cli_module
from painterly.cli.options import COMMANDS, EXIT_INTERRUPTED
from painterly.cli.paint import UNUSUAL_MEMORY, UNUSUAL_SECONDS
from painterly.engine.checkpoint import path_for

#: A tiny run whose plan needs over 80% of the memory it may use: the process's base (torch, the
#: weights: 1.2 GB planned) against --max-memory 1.2 GiB. Real, and done in a second.
MOSTLY_MEMORY = ["--max-memory", "1.2"]
#: Three scales, 32, 64 and 128 px, from the 64x43 test photo.
THREE_SCALES = ["--size", "128", "--start-size", "32", "--scale-factor", "2"]


def _interrupt_on_call(monkeypatch: pytest.MonkeyPatch, n: int) -> dict[str, int]:
    """Make the ``n``-th evaluation of the objective (the ``n``-th step) raise KeyboardInterrupt, as Ctrl-C does."""
    from painterly.engine import objective

    original = objective.Objective.__call__
    calls = {"n": 0}

    def interrupt(self, image):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return original(self, image)

    monkeypatch.setattr(objective.Objective, "__call__", interrupt)
    return calls


def _hidden_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# -- 2. a run planned far beyond the usual ----------------------------------------------------------


def test_a_run_planned_for_hours_is_announced_and_goes_on_in_a_script(cli, tmp_path: Path, content_path: Path,
                                                                       style_path: Path, fast_args: list[str],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """100000 steps are hours by the plan: one warning with the plan's figure before the first step;
    with no terminal to ask on (a script, CI) the run starts."""
    assert not cli_module.interactive()  # pytest captures stderr: no terminal
    _interrupt_on_call(monkeypatch, 3)
    out = tmp_path / "out.png"
    code, _, err = cli([content_path, style_path, "-o", out, *fast_args, "--steps", "100000"])
    lines = err.splitlines()
    assert code == EXIT_INTERRUPTED and out.is_file(), err
    warning = lines[0]
    hours = float(re.search(r"planned at about ([\d.]+) h,", warning).group(1))  # type: ignore[union-attr]
    assert hours > UNUSUAL_SECONDS / 3600, warning
    assert warning.startswith("painterly: warning:") and "far beyond a usual run" in warning
    assert "GiB" not in warning  # the memory is usual: only the time is said
    assert lines[1].startswith("painterly: ") and "[y/N]" not in err  # then the plan, and the run
    assert "stopped at step 2 of 100000" in err


def test_a_usual_run_is_not_warned(cli, tmp_path: Path, content_path: Path, style_path: Path,
                                   fast_args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_module, "interactive", lambda: True)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # a question would read "no" here
    code, _, err = cli([content_path, style_path, "-o", tmp_path / "out.png", *fast_args])
    assert code == 0 and "warning" not in err and "[y/N]" not in err, err


@pytest.mark.parametrize("answer", ["n\n", "\n", "", "whatever\n"])
def test_on_a_terminal_only_yes_starts_it(cli, tmp_path: Path, content_path: Path, style_path: Path,
                                          fast_args: list[str], monkeypatch: pytest.MonkeyPatch,
                                          answer: str) -> None:
    monkeypatch.setattr(cli_module, "interactive", lambda: True)
    monkeypatch.setattr(sys, "stdin", io.StringIO(answer))
    out = tmp_path / "out.png"
    code, _, err = cli([content_path, style_path, "-o", out, *fast_args, *MOSTLY_MEMORY])
    warning, question = err.splitlines()[0], err.splitlines()[1]
    assert code == 1 and "Traceback" not in err, err
    assert f"of the 1.2 GiB of memory allowed, far beyond a usual run (over 1 h or {UNUSUAL_MEMORY:.0%}" in warning
    assert question.startswith("painterly: start it? [y/N] painterly: error: not started")
    assert "nothing was written" in question and len(err.splitlines()) == 2
    assert list(tmp_path.iterdir()) == []  # no image, no checkpoint


@pytest.mark.parametrize("answer", ["y\n", "yes\n", "Y\n"])
def test_on_a_terminal_yes_starts_it(cli, tmp_path: Path, content_path: Path, style_path: Path,
                                     fast_args: list[str], monkeypatch: pytest.MonkeyPatch, answer: str) -> None:
    monkeypatch.setattr(cli_module, "interactive", lambda: True)
    monkeypatch.setattr(sys, "stdin", io.StringIO(answer))
    out = tmp_path / "out.png"
    code, _, err = cli([content_path, style_path, "-o", out, *fast_args, *MOSTLY_MEMORY])
    assert code == 0 and out.is_file() and "start it? [y/N]" in err, err
    assert "painterly: done in" in err


def test_yes_starts_it_without_asking(cli, tmp_path: Path, content_path: Path, style_path: Path,
                                      fast_args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    class NoOneThere(io.StringIO):
        def readline(self, *args):  # type: ignore[override]
            raise AssertionError("--yes asks nothing")

    monkeypatch.setattr(cli_module, "interactive", lambda: True)
    monkeypatch.setattr(sys, "stdin", NoOneThere())
    out = tmp_path / "out.png"
    code, _, err = cli([content_path, style_path, "-o", out, *fast_args, *MOSTLY_MEMORY, "--yes"])
    assert code == 0 and out.is_file(), err
    assert "far beyond a usual run" in err and "[y/N]" not in err  # said, not asked


def test_a_real_terminal_is_asked(tmp_path: Path, content_path: Path, style_path: Path,
                                  fast_args: list[str]) -> None:
    """In a pseudo-terminal (stdin and stderr a TTY), the question is asked and "n" refuses the run."""
    import pty

    out = tmp_path / "out.png"
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "painterly", str(content_path), str(style_path), "-o", str(out), *fast_args,
         *MOSTLY_MEMORY], stdin=terminal, stderr=terminal, stdout=subprocess.DEVNULL, close_fds=True)
    os.close(terminal)
    said = b""
    deadline = time.monotonic() + 120
    while b"[y/N]" not in said and time.monotonic() < deadline:
        try:
            said += os.read(controller, 4096)
        except OSError:  # the process ended and closed the terminal
            break
    assert b"[y/N]" in said, said
    os.write(controller, b"n\n")
    code = process.wait(timeout=60)
    os.close(controller)
    assert code == 1 and not out.exists() and not path_for(out).exists()


# -- 2b and 6. a stop says what it wrote and where the checkpoint is ---------------------------------


def test_ctrl_c_at_a_coarse_scale_says_the_image_was_enlarged_and_where_the_checkpoint_is(
        cli, tmp_path: Path, content_path: Path, style_path: Path, fast_args: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    argv = [content_path, style_path, "-o", tmp_path / "out.png", *fast_args, *THREE_SCALES, "--steps", "3"]
    _interrupt_on_call(monkeypatch, 2)  # the second step of the first scale (32x22)
    code, _, err = cli(argv)
    out = tmp_path / "out.png"
    assert code == EXIT_INTERRUPTED, err
    assert Image.open(out).size == (128, 86)
    stop, where = err.splitlines()[-2:]
    assert stop.startswith("painterly: stopped at step 1 of 9; wrote the best image so far to ")
    assert "enlarged from 32x22 px (scale 1 of 3, where it stopped) to 128x86" in stop
    checkpoint = path_for(out)
    assert where.startswith(f"painterly: the checkpoint is {checkpoint} (") and " MB)" in where
    assert "the same command with --resume goes on from there; delete that file" in where
    assert checkpoint.is_file() and _hidden_files(tmp_path) == [checkpoint.name]

    monkeypatch.undo()
    code, _, err = cli([*argv, "--resume"])
    assert code == 0 and "resuming at scale 1 of 3, step 2" in err, err
    assert _hidden_files(tmp_path) == []  # the run that used it finished: the checkpoint is gone


def test_a_finished_run_leaves_no_checkpoint(cli, tmp_path: Path, content_path: Path, style_path: Path,
                                             fast_args: list[str]) -> None:
    """Checkpoints are written at each scale's end; the finished run removes them, and one an earlier
    stopped run left for the same output."""
    out = tmp_path / "out.png"
    path_for(out).write_bytes(b"an earlier stopped run's")
    code, _, err = cli([content_path, style_path, "-o", out, *fast_args, *THREE_SCALES, "--steps", "2"])
    assert code == 0, err
    assert _hidden_files(tmp_path) == [] and "checkpoint" not in err


def test_sigint_in_a_real_process_says_enlarged_from_and_names_the_checkpoint(
        tmp_path: Path, content_path: Path, style_path: Path, fast_args: list[str]) -> None:
    out = tmp_path / "out.png"
    argv = [sys.executable, "-m", "painterly", str(content_path), str(style_path), "-o", str(out), *fast_args,
            *THREE_SCALES, "--steps", "20", "--scale-steps-decay", "4", "--patience", "0",  # 20, 80, 320 steps
            "--threads", "1"]
    # A test run started in the background by a shell (`nohup ... &`) ignores SIGINT, and so would the
    # child, which Python then leaves without its KeyboardInterrupt handler: give it the default back.
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not path_for(out).exists():  # the first scale has ended
        time.sleep(0.05)
    assert path_for(out).exists(), "the first scale did not end in 4 minutes"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == EXIT_INTERRUPTED and "Traceback" not in err, err
    # Stopped in the second scale, or in its set-up or first step (then the first scale's image stands).
    assert re.search(r"enlarged from (32x22|64x43) px \(scale [12] of 3, where it stopped\) to 128x86", err), err
    assert f"the checkpoint is {path_for(out)} (" in err and path_for(out).is_file()
    assert Image.open(out).size == (128, 86)


def test_ctrl_c_in_the_first_step_writes_nothing(cli, tmp_path: Path, content_path: Path, style_path: Path,
                                                fast_args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped before any step was whole, there is nothing to write (it once said the loss was not finite)."""
    _interrupt_on_call(monkeypatch, 1)
    code, _, err = cli([content_path, style_path, "-o", tmp_path / "out.png", *fast_args])
    assert code == EXIT_INTERRUPTED
    assert err == "painterly: interrupted before the first step; nothing was written\n"
    assert list(tmp_path.iterdir()) == []


# -- 3. painterly video without the video extra -----------------------------------------------------


@pytest.fixture
def frames(tmp_path: Path, content_path: Path) -> Path:
    """A folder of three numbered frames."""
    folder = tmp_path / "frames"
    folder.mkdir()
    photo = Image.open(content_path).convert("RGB")
    for i in range(3):
        photo.rotate(i).save(folder / f"frame_{i + 1:03d}.png")
    return folder


@pytest.mark.parametrize(("missing", "output", "named"), [
    (["cv2"], "painted", "OpenCV (the optical flow)"),
    (["cv2"], "painted.mp4", "OpenCV (the optical flow)"),
    (["av"], "painted.mp4", "PyAV (video files)"),
    (["cv2", "av"], "painted.mp4", "OpenCV (the optical flow) and PyAV (video files)"),
])
def test_video_without_its_extra_refuses_before_any_work(cli, tmp_path: Path, frames: Path, style_path: Path,
                                                         fast_args: list[str], monkeypatch: pytest.MonkeyPatch,
                                                         missing: list[str], output: str, named: str) -> None:
    from painterly.engine import objective

    for module in missing:
        monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    painted = []
    monkeypatch.setattr(objective.Objective, "__call__", lambda self, image: painted.append(1))
    before = sorted(tmp_path.rglob("*"))
    code, out, err = cli(["video", frames, style_path, "-o", tmp_path / output, *fast_args])
    assert code == 1 and out == "" and err.count("\n") == 1, err
    assert err == f"painterly: error: painterly video needs {named}, not installed: pip install 'painterly[video]'\n"
    assert painted == [] and sorted(tmp_path.rglob("*")) == before  # no work folder, no output


def test_frames_in_and_out_need_no_pyav(monkeypatch: pytest.MonkeyPatch) -> None:
    from painterly.cli.video import check_extras

    pytest.importorskip("cv2")
    monkeypatch.setitem(sys.modules, "av", None)
    check_extras(video_files=False)  # a folder of frames in, a folder out: no error
    with pytest.raises(Exception, match="PyAV"):
        check_extras(video_files=True)


# -- 4. painterly --help lists every command --------------------------------------------------------


def test_help_lists_every_command(cli) -> None:
    code, out, err = cli(["--help"])
    assert code == 0, err
    commands = out[out.index("Other commands"):].splitlines()[1:]
    assert [line.split()[1] for line in commands] == list(COMMANDS) == ["info", "serve", "batch", "video"]
    for line, (name, (arguments, what)) in zip(commands, COMMANDS.items()):
        assert line.startswith(f"  painterly {name} {arguments}".rstrip()) and line.endswith(what)
    for name in COMMANDS:  # and each is a command with its own help
        code, out, err = cli([name, "--help"])
        assert code == 0 and out.startswith(f"usage: painterly {name}"), err


# -- 7. the running ETA follows this run's own steps ------------------------------------------------


class FakeClock:
    """A clock that moves only when a step is taken, by what a loaded machine would take."""

    def __init__(self, per_step: float, per_pixel: float) -> None:
        self.now, self.per_step, self.per_pixel = 1000.0, per_step, per_pixel

    def step_seconds(self, size: tuple[int, int]) -> float:
        return self.per_step + self.per_pixel * size[0] * size[1]

    def __call__(self) -> float:
        return self.now


def test_the_eta_follows_the_measured_steps_on_a_loaded_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default preset at 512 px, on a machine whose steps each wait 1.5 s more than the plan says
    (busy cores: the threads wait on each other at every layer). The plan's figure is the ETA until
    three steps are timed; from the second scale on, the measured prices predict what is left."""
    from painterly.engine.plan import SECONDS_PER_COST, make_plan
    from painterly.engine.progress import Tracker
    from painterly.engine.settings import DEFAULT

    plan = make_plan(DEFAULT.replace(precision="fp32"), (512, 341), "fp32")
    prior = SECONDS_PER_COST[("cpu", "fp32")]
    clock = FakeClock(per_step=1.5, per_pixel=4e-6)
    events: list = []
    tracker = Tracker(plan, "lbfgs", events.append, prior, clock=clock)
    steps = [s for s in plan.scales for _ in range(s.steps)]
    for scale in plan.scales:
        report = tracker.reporter(scale.index, lambda x: x)
        for i in range(scale.steps):
            clock.now += clock.step_seconds(scale.size)
            report(i, {"total": 1.0}, torch.zeros(1))
    truth = [sum(clock.step_seconds(s.size) for s in steps[k + 1:]) for k in range(len(steps))]

    for k in range(tracker.MEASURED_STEPS):  # the first step is not timed; then two more on the plan's figure
        scale = steps[k]
        done = k + 1 - sum(s.steps for s in plan.scales[:scale.index])
        assert events[k].eta == pytest.approx(prior * (plan.total_cost - plan.cost_done(scale.index, done)))
    second = plan.scales[0].steps
    for k in range(second, len(steps)):
        assert events[k].eta == pytest.approx(truth[k], rel=1e-6), (k, events[k].eta, truth[k])
    # One rate from the first scale would have said nearly twice what was left (1.9x with the default's
    # 24/14/10 steps and its network cut at block4_conv2).
    timed = steps[1:second]
    one_rate = sum(clock.step_seconds(s.size) for s in timed) / sum(s.cost / s.steps for s in timed)
    assert one_rate * (plan.total_cost - plan.cost_done(1, 0)) > 1.5 * truth[second - 1]


def test_the_progress_line_eta_comes_from_the_runs_own_steps(cli, tmp_path: Path, content_path: Path,
                                                             style_path: Path, fast_args: list[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The same through ``painterly``: a clock that moves by what each step costs on this (fake)
    machine, far more per pixel than the plan says. The printed ETA is the plan's figure for the first
    steps, then what is left to the second, once steps of two sizes have run."""
    from painterly.engine import objective
    from painterly.engine.plan import SECONDS_PER_COST, make_plan
    from painterly.engine.settings import DEFAULT

    clock = FakeClock(per_step=0.5, per_pixel=0.02)
    monkeypatch.setattr(time, "perf_counter", clock)
    monkeypatch.setattr(time, "monotonic", clock)  # a progress line every step
    original = objective.Objective.__call__

    def step(self, image):
        clock.now += clock.step_seconds((image.shape[-1], image.shape[-2]))
        return original(self, image)

    monkeypatch.setattr(objective.Objective, "__call__", step)
    sizes = ["--size", "64", "--start-size", "32", "--scale-factor", "2", "--steps", "6"]
    code, _, err = cli([content_path, style_path, "-o", tmp_path / "out.png", *fast_args, *sizes])
    assert code == 0, err
    lines = re.findall(r"scale (\d)/2 step (\d+)/12 .*ETA (\d+):(\d\d)\n", err)
    assert [int(k) for _, k, _, _ in lines] == list(range(1, 13)), err
    eta = [int(m) * 60 + int(s) for _, _, m, s in lines]
    layers = {"content_layers": ("block2_conv2",), "style_layers": ("block1_conv1", "block2_conv1")}  # fast_args'
    plan = make_plan(DEFAULT.replace(size=64, start_size=32, scale_factor=2.0, steps=6, **layers), (64, 43), "fp32")
    per_step = [clock.step_seconds(s.size) for s in plan.scales for _ in range(s.steps)]
    truth = [sum(per_step[k + 1:]) for k in range(12)]
    prior = SECONDS_PER_COST[("cpu", "fp32")]
    for k in range(3):  # the plan's figure (seconds here) until three steps are timed (the first is not)
        assert eta[k] == round(prior * (plan.total_cost - plan.cost_done(0, k + 1))), (k, eta)
    assert eta[3] > 60  # then the measured steps' (of one size: one rate for both parts)
    for k in range(6, 12):  # steps of both sizes timed: what is left, to the second
        assert abs(eta[k] - truth[k]) <= 1, (k, eta[k], truth[k])
    assert truth[0] > 300  # (so the plan's figure, a second, is far from it)
