"""``painterly CONTENT STYLE [STYLE ...] -o OUT.png [options]``: one picture, or the demo with no
arguments. Checks every input and output before the first step, prints the plan and an honest ETA,
and on Ctrl-C keeps the best image so far (and the checkpoint, for ``--resume``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine.settings import PRESETS, Machine, Settings, preset
from ..errors import OutputError, SettingsError
from .options import (
    EXIT_INTERRUPTED,
    RAY_ADDRESS_HELP,
    HelpFormatter,
    Parser,
    add_settings_options,
    commands_help,
    finite_float,
    help_text,
    machine_from_args,
    settings_from_args,
    version_string,
)
from .progress import ProgressBar

if TYPE_CHECKING:
    from ..engine.plan import Plan
    from ..engine.result import Result


DEMO_OUTPUT = "painterly-demo.png"


#: A run planned past either figure is far beyond the usual: the CLI says so before the first step
#: and, on a terminal, asks before starting it (``--yes``: not asked; in a script it goes on).
UNUSUAL_SECONDS = 3600


UNUSUAL_MEMORY = 0.8  # of the memory the run may use


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="painterly",
        description="Paint a photo in the style of one or more artworks (Gatys neural style transfer). "
        "With no arguments: the demo, the tutorial's turtle painted as Hokusai's Great Wave.",
        epilog=commands_help(),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("content", nargs="?", help="the photo to paint")
    parser.add_argument("styles", nargs="*", metavar="style", help="one or more artworks")
    parser.add_argument("-o", "--output", help="where to write the result (.png, .jpg, .webp, .tiff)")
    parser.add_argument("--preset", default="default",
                        help=f"starting settings ({', '.join(PRESETS)}); flags change them")
    parser.add_argument("--version", action="version", version=f"painterly {version_string()}")
    parser.add_argument("--history", metavar="FILE.json", help="also write the run record: settings, losses per step")
    parser.add_argument("--report", metavar="DIR", help="also write a report folder: pictures, animation, index.html")
    parser.add_argument("--again", action="store_true",
                        help="paint with the settings recorded in an image: painterly OLD.png --again -o NEW.png")
    parser.add_argument("--mask", nargs="+", metavar="FILE",
                        help="one grayscale mask per artwork: each paints where its mask is white")
    parser.add_argument("--mask-labels", metavar="FILE", help="an image whose colours mark the region of each artwork")
    parser.add_argument("--mask-colours", nargs="+", metavar="COLOUR",
                        help="the label colour of each artwork, in order (#ff0000, red, 255,0,0)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    parser.add_argument("--ray", metavar="auto|ADDRESS",
                        help=f"paint the tiled scales on a Ray cluster, their tiles spread over its workers: "
                             f"{RAY_ADDRESS_HELP}")
    prints = parser.add_argument_group("print settings")
    prints.add_argument("--print-size", metavar="WxH{cm,mm,in}",
                        help="size of the print at --dpi (30x20cm, 12x8in); the photo is cropped to its shape")
    prints.add_argument("--dpi", type=finite_float, metavar="N",
                        help="dots per inch, written into the file (with --print-size: 300)")
    prints.add_argument("--bit-depth", type=int, choices=(8, 16), default=8,
                        help="bits per channel: 16 for prints, in .png or .tiff")
    prints.add_argument("--resume", action="store_true",
                        help="go on with a stopped run from its checkpoint beside the output (same inputs, options)")
    parser.add_argument("--yes", action="store_true",
                        help=help_text(f"start a run planned far beyond the usual (over {UNUSUAL_SECONDS // 3600} "
                                       f"h, or {UNUSUAL_MEMORY:.0%} of the memory allowed) without asking"))
    add_settings_options(parser)
    return parser


def stop_on_sigterm() -> None:
    """SIGTERM (a scheduler's or a cluster's stop) ends a run as Ctrl-C does: the best image so far
    is written and the checkpoint kept, so ``--resume`` goes on from there."""
    import signal
    import threading

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)


def paint_main(argv: list[str]) -> int:
    """``painterly CONTENT STYLE ... -o OUT``; returns the exit code."""
    from ..engine.devices import memory_budget, pick_device, pick_precision, setup_process
    from ..engine.images import check_output
    from ..engine.plan import make_plan

    stop_on_sigterm()
    args, base, demo = _read_command_line(argv)
    settings, machine = settings_from_args(args, base), machine_from_args(args)
    setup_process(machine.threads)
    inputs = tuple([args.content, *args.styles, *(args.mask or []), *([args.mask_labels] if args.mask_labels else []),
                    *([settings.init_file] if settings.init_file else [])])
    output = check_output(args.output, inputs)
    _check_side_outputs(args, inputs, output)
    exact, dpi = _print_size(args)
    if exact:
        settings = settings.replace(size=max(exact))
    if args.bit_depth == 16 and output.suffix.lower() not in (".png", ".tif", ".tiff"):
        raise SettingsError(f"--bit-depth 16 writes .png or .tiff files, not {output.suffix or 'no suffix'}")
    content, styles, masks = _open_inputs(args, exact)
    device = pick_device(machine.device)
    precision = pick_precision(settings.precision, device)
    budget = memory_budget(machine.max_memory, device)
    cluster = _cluster(args.ray, settings)
    try:
        plan = make_plan(settings, content.size, precision, budget, machine.tile_size,
                         cluster.workers if cluster is not None else None)
        guess = plan.estimate_seconds(device.type, precision)
        if not args.resume:  # a resumed run was started, and warned about, before
            _confirm_unusual(plan, guess, budget, asked=not args.yes and interactive())
        workers = [f"painterly: {line}" for line in cluster.describe(plan, precision)] if cluster is not None else []
        # Said with the first step, so that an error found while setting up stays the only line.
        bar = ProgressBar(sys.stderr, enabled=not args.quiet,
                          intro="\n".join(_intro(args, settings, plan, budget, guess, content.size, workers)))
        try:
            return _paint(args, settings, machine, plan, (content, styles, masks), output, dpi, bar, demo, cluster)
        finally:
            bar.close()
    finally:
        if cluster is not None:
            cluster.close()


def _read_command_line(argv: list[str]) -> tuple[argparse.Namespace, Settings, bool]:
    """The parsed command line with the photo, artworks and output filled in (by ``--again`` from an
    image's record, by the demo when no photo is given), the settings it starts from, and whether it
    is the demo."""
    from ..output import metadata

    args = build_parser().parse_args(argv)
    demo = args.content is None
    if args.again:
        if args.content is None:
            raise SettingsError("--again needs the image painterly made: painterly OLD.png --again -o NEW.png")
        record = metadata.read(args.content)
        # The picture's settings (a record made before Machine existed holds the machine's too, dropped
        # here); the machine's (device, threads, memory...) are this machine's own.
        base = Settings.from_dict(record["settings"])
        args.preset = record.get("preset", "unknown") + " (via --again)"
        args.content, args.styles = record["content"], list(record["styles"])
        args.mask = args.mask or record.get("masks")
        if not args.output:
            raise SettingsError("--again needs -o/--output for the new image")
    else:
        base = preset(args.preset)
    if demo:
        from ..samples import demo_paths

        content_path, style_path = demo_paths()
        args.content, args.styles = str(content_path), [str(style_path)]
        args.output = args.output or DEMO_OUTPUT
        if args.preset == "default":
            args.preset, base = "demo", preset("demo")
    if not args.styles:
        raise SettingsError("give a content image and at least one style image: painterly CONTENT STYLE -o OUT.png")
    if not args.output:
        raise SettingsError("say where the result goes with -o/--output, e.g. -o painted.png")
    return args, base, demo


def _print_size(args: argparse.Namespace) -> tuple[tuple[int, int] | None, float | None]:
    """The exact size in px (``--size WxH`` or ``--print-size`` at ``--dpi``) if one is asked for,
    and the DPI to write into the file."""
    from ..engine.prints import print_pixels
    from ..engine.validate import check_dpi

    exact = args.size if isinstance(args.size, tuple) else None
    if args.print_size:
        if exact:
            raise SettingsError("give either --size WxH or --print-size, not both")
        exact = print_pixels(args.print_size, args.dpi or 300)
    dpi = check_dpi(args.dpi) if args.dpi is not None else (300.0 if args.print_size else None)
    return exact, dpi


def _open_inputs(args: argparse.Namespace, exact: tuple[int, int] | None):
    """The photo, the artworks and the masks, opened; cropped to the print's shape at ``exact``."""
    from ..engine.images import open_image
    from ..engine.prints import fit_exactly

    content = open_image(args.content)
    styles = [open_image(s) for s in args.styles]
    masks = _masks(args, len(styles))
    if exact:  # the photo (and its masks) cropped to the print's shape, at its exact size
        content = fit_exactly(content, exact)
        masks = [fit_exactly(m, exact) for m in masks] if masks else masks
    return content, styles, masks


def _intro(args: argparse.Namespace, settings: Settings, plan: Plan, budget: int, guess: float | None,
           photo: tuple[int, int], workers: list[str]) -> list[str]:
    """What the run will be, said before its first step: inputs, preset, size, scales, steps, memory,
    the time the plan expects, the tiles of tiled scales, the cluster's ``workers`` and their share,
    and any change of size."""
    intro = [f"painterly: {Path(args.content).name} in the style of {', '.join(Path(s).name for s in args.styles)}; "
             f"preset {args.preset}, {settings.optimizer}, result {plan.size[0]}x{plan.size[1]}, "
             f"{len(plan.scales)} scale{'s' if len(plan.scales) > 1 else ''}, up to {plan.total_steps} steps, "
             f"about {plan.peak_bytes / 2**30:.1f} GiB of {budget / 2**30:.1f} allowed"
             + (f", roughly {_duration(guess)} on a CPU like the one measured" if guess else "")]
    if any(s.tile for s in plan.scales):
        intro += [f"painterly: plan: {line}" for line in plan.describe().splitlines() if "tiles of" in line]
    return intro + workers + _size_notes(photo, plan.size, settings.size)


def _paint(args: argparse.Namespace, settings: Settings, machine: Machine, plan: Plan, images: tuple,
           output: Path, dpi: float | None, bar: ProgressBar, demo: bool, cluster: Any = None) -> int:
    """Run the picture (resumed from its checkpoint with ``--resume``), write it and what was asked
    besides, and say how it went; the exit code."""
    from ..engine import checkpoint
    from ..engine.run import stylize
    from ..output.record import input_digests, make_record, write_outputs

    content, styles, masks = images
    say = _Say(quiet=args.quiet)
    run_key = {"settings": settings.to_dict(), "inputs": input_digests(args.content, args.styles, args.mask)}
    saved = checkpoint.path_for(output)
    recorder = None
    if args.report:
        from ..output.report import Recorder

        recorder = Recorder()
    resume = checkpoint.load(saved, run_key, len(plan.scales)) if args.resume else None
    if resume is not None:
        say(f"painterly: resuming at scale {resume.scale + 1} of {len(plan.scales)}, step {resume.steps_done + 1} "
            f"of it, from {saved.name}")
    result = stylize(content, styles, settings, machine=machine, callback=bar if recorder is None else
                     _both(bar, recorder), masks=masks, resume=resume,
                     on_checkpoint=lambda state: checkpoint.save(saved, state, run_key), cluster=cluster)
    bar.close()
    record = make_record(result, content=args.content, styles=args.styles, masks=args.mask, preset=args.preset,
                         inputs=run_key["inputs"])  # the files as they were read before the run
    write_outputs(result, output, record, history=args.history, report=args.report, recorder=recorder,
                  dpi=dpi, bit_depth=args.bit_depth)
    if not result.stopped:
        saved.unlink(missing_ok=True)
    extras = "".join(f"; {what} {where}" for what, where in (("history", args.history), ("report", args.report))
                     if where)
    if result.stopped:
        for line in _stopped(result, plan, output, extras, saved):
            say(line)
        return EXIT_INTERRUPTED
    step, of = result.best_step_of_scale
    scale_note = f" of the last scale's {of}" if len(plan.scales) > 1 else f" of {of}"
    say(f"painterly: done in {result.seconds:.1f} s, {len(result.history)} steps (best loss {result.best_loss:.4g} "
        f"at step {step}{scale_note}); wrote {output}{extras}")
    if demo:
        say("painterly: the turtle photo is \"Green Sea Turtle grazing seagrass\" by P. Lindgren, CC BY-SA 3.0; "
            "share the result under the same licence")
    return 0


def _cluster(address: str | None, settings: Settings):
    """The Ray cluster ``--ray`` names, joined (None without ``--ray``); settings it cannot paint are
    refused first, before anything starts."""
    if not address:
        return None
    from ..engine.cluster import check_cluster
    from ..workers.tiles_ray import RayTiles

    check_cluster(settings)
    return RayTiles(address)


def interactive() -> bool:
    """True when a person is at the terminal to answer a question: stdin and stderr are terminals."""
    try:
        return sys.stdin is not None and sys.stdin.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


def _confirm_unusual(plan: Plan, guess: float | None, budget: int, asked: bool) -> None:
    """Say so when the run is planned far beyond the usual (:data:`UNUSUAL_SECONDS`,
    :data:`UNUSUAL_MEMORY`); when ``asked``, start it only if the answer on stdin is yes."""
    far = []
    if guess is not None and guess > UNUSUAL_SECONDS:
        far.append(f"about {_duration(guess)}")
    if plan.peak_bytes > UNUSUAL_MEMORY * budget:
        far.append(f"{plan.peak_bytes / 2**30:.1f} of the {budget / 2**30:.1f} GiB of memory allowed")
    if not far:
        return
    print(f"painterly: warning: this run is planned at {' and '.join(far)}, far beyond a usual run (over "
          f"{UNUSUAL_SECONDS // 3600} h or {UNUSUAL_MEMORY:.0%} of the memory allowed); a smaller --size is "
          "quicker and lighter", file=sys.stderr)
    if not asked:
        return
    print("painterly: start it? [y/N] ", end="", file=sys.stderr, flush=True)
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise SettingsError("not started (answer y, or give --yes, to start it); nothing was written")


def _stopped(result: Result, plan: Plan, output: Path, extras: str, saved: Path) -> list[str]:
    """What a stopped run says: where its image went (and, stopped at a coarse scale, that it was
    enlarged from that scale's size), and where its checkpoint is."""
    scale = plan.scales[result.scale_reached]
    enlarged = "" if result.scale_reached == len(plan.scales) - 1 else (
        f", enlarged from {scale.size[0]}x{scale.size[1]} px (scale {result.scale_reached + 1} of "
        f"{len(plan.scales)}, where it stopped) to {plan.size[0]}x{plan.size[1]}, so it looks soft")
    lines = [f"painterly: stopped at step {len(result.history)} of {plan.total_steps}; wrote the best image so far "
             f"to {output}{enlarged}{extras}"]
    if saved.exists():
        lines.append(f"painterly: the checkpoint is {saved} ({saved.stat().st_size / 1e6:.1f} MB): the same command "
                     "with --resume goes on from there; delete that file if you will not resume")
    return lines


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _size_notes(photo: tuple[int, int], result: tuple[int, int], size: int) -> list[str]:
    """What a new user would not expect about the result's size, said before the run."""
    notes = []
    if max(result) > max(photo):
        notes.append(f"painterly: note: the photo is {photo[0]}x{photo[1]}; it is enlarged to {result[0]}x{result[1]} "
                     f"(--size sets the longer side)")
    if max(result) >= 4 * min(result):
        notes.append(f"painterly: note: the result is {result[0]}x{result[1]}: --size {size} is its longer side and "
                     "the photo's shape is kept")
    return notes


def _check_side_outputs(args: argparse.Namespace, inputs: tuple[str, ...], output: Path) -> None:
    if args.history:
        hist = Path(args.history)
        if hist.suffix.lower() != ".json":
            raise OutputError(f"--history must name a .json file, got {hist.name}")
        if not hist.resolve().parent.is_dir():
            raise OutputError(f"history folder does not exist: {hist.parent}")
        if hist.resolve() in {Path(p).resolve() for p in inputs} or hist.resolve() == output.resolve():
            raise OutputError(f"--history {hist} would overwrite an input or the output")
    if args.report:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise OutputError("--report draws its figures with matplotlib: pip install 'painterly[report]'")
        report = Path(args.report)
        if report.exists() and not report.is_dir():
            raise OutputError(f"--report must be a folder, but {report} is a file")
        if not report.resolve().parent.is_dir():
            raise OutputError(f"the folder that would hold the report does not exist: {report.parent}")


def _masks(args: argparse.Namespace, n_styles: int):
    from ..engine.images import open_image
    from ..engine.masks import masks_from_labels
    from ..engine.validate import check_mask_count

    if args.mask and args.mask_labels:
        raise SettingsError("use either --mask or --mask-labels, not both")
    if args.mask:
        check_mask_count(len(args.mask), n_styles, noun="--mask file")
        return [open_image(m) for m in args.mask]
    if args.mask_labels:
        if not args.mask_colours or len(args.mask_colours) != n_styles:
            raise SettingsError(f"--mask-labels needs --mask-colours with one colour per style ({n_styles})")
        return masks_from_labels(open_image(args.mask_labels), args.mask_colours)
    if args.mask_colours:
        raise SettingsError("--mask-colours needs --mask-labels")
    return None


def _both(first, second):
    """A callback that calls two; either may ask to stop."""
    return lambda event: bool(first(event)) | bool(second(event))


class _Say:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def __call__(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr)


