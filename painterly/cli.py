"""The command line: ``painterly CONTENT STYLE [STYLE ...] -o OUT.png [options]``.

Options are built from the fields of :class:`~painterly.settings.Settings` (the picture) and
:class:`~painterly.settings.Machine` (where it is computed); ``painterly`` with no
arguments runs the demo. Other commands (:data:`COMMANDS`): ``info``, ``serve``, ``batch``, ``video``.
Errors end in one line on stderr and a non-zero exit; no traceback, no half-written file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .errors import ImageError, OutputError, PainterlyError, SettingsError
from .settings import DEFAULT, PRESETS, Machine, Settings, preset

if TYPE_CHECKING:
    from .api import Result
    from .plan import Plan

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEMO_OUTPUT = "painterly-demo.png"
#: Flags whose name differs from the field's (kept short or matching the peers' names).
FLAG_NAMES = {"style_blend_weights": "--style-weights"}
#: The commands besides painting, as ``painterly --help`` lists them: name -> (arguments, what it does).
COMMANDS = {
    "info": ("IMAGE", "how an image was made: the settings it holds"),
    "serve": ("", "the web studio, in a browser"),
    "batch": ("MANIFEST -o DIR", "a manifest's pictures, or photos x artworks"),
    "video": ("IN STYLE -o OUT", "a video or frames folder, without flicker"),
}
#: A run planned past either figure is far beyond the usual: the CLI says so before the first step
#: and, on a terminal, asks before starting it (``--yes``: not asked; in a script it goes on).
UNUSUAL_SECONDS = 3600
UNUSUAL_MEMORY = 0.8  # of the memory the run may use


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's help, except that a text of several lines (the list of commands) keeps its lines."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "\n".join(indent + line for line in text.splitlines())
        return super()._fill_text(text, width, indent)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line, without the usage block, with a
    "did you mean" for a mistyped choice."""

    def error(self, message: str) -> typing.NoReturn:
        import re

        from .errors import closest

        bad = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if bad:
            choices = re.findall(r"'([^']*)'", bad.group(2))
            message = message.replace(bad.group(0), f"invalid choice: '{bad.group(1)}'"
                                      f"{closest(bad.group(1), choices)} (choose from {', '.join(choices)})")
        self.exit(EXIT_USAGE, f"painterly: error: {message} (see painterly --help)\n")


def flags_in(message: str) -> str:
    """A core error message with setting names (``style_blend_weights``) spelled as their flags."""
    import re

    names = {f.name for cls in (Settings, Machine) for f in dataclasses.fields(cls) if "_" in f.name}
    return re.sub(r"\b[a-z0-9]+(?:_[a-z0-9]+)+\b", lambda m: flag_name(m.group(0)) if m.group(0) in names
                  else m.group(0), message)


def _version() -> str:
    from . import __version__

    return __version__


def flag_name(field_name: str) -> str:
    return FLAG_NAMES.get(field_name, "--" + field_name.replace("_", "-"))


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes a number, not {text!r}") from None
    if value != value:  # NaN: argparse would accept it
        raise argparse.ArgumentTypeError(f"NaN is not a number: {text}")
    return value


def _size_value(text: str) -> int | tuple[int, int]:
    """``--size``: the longer side (N), or WxH for an exact size (the photo is cropped to its shape)."""
    from .prints import parse_pixels

    exact = parse_pixels(text)
    if exact is not None:
        return exact
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes the longer side in px (512) or WIDTHxHEIGHT (1920x1080), "
                                         f"not {text!r}") from None


def add_settings_options(parser: argparse.ArgumentParser) -> None:
    """One option per :class:`Settings` and :class:`Machine` field, grouped, defaulting to None (the
    preset, or the machine's default, decides)."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for cls, defaults in ((Settings, DEFAULT), (Machine, Machine())):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            group = groups.setdefault(f.metadata["group"],
                                      parser.add_argument_group(f"{f.metadata['group']} settings"))
            group.add_argument(flag_name(f.name), **_option(f, hints[f.name], getattr(defaults, f.name)))


def _option(f: dataclasses.Field, hint: Any, default: Any) -> dict[str, Any]:
    """argparse's keywords for the settings field ``f`` of type ``hint``."""
    meta = f.metadata
    text = help_text(meta["help"])
    which = "default preset" if f.metadata["group"] != "machine" else "default"
    kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": f"{text} ({which}: {_show(default)})"}
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        kwargs.update(nargs="*", type=_finite_float if item is float else str, metavar="X")
    elif f.name == "size":
        kwargs.update(type=_size_value, metavar="N|WxH")
        kwargs["help"] = f"{text}, or WxH for exactly that size ({which}: {_show(default)})"
    elif hint is int:
        kwargs.update(type=int, metavar="N")
    elif hint is float:
        kwargs.update(type=_finite_float, metavar="X")
    else:
        kwargs.update(type=str, metavar=meta.get("metavar", "NAME"))
        if "choices" in meta:
            kwargs.update(choices=meta["choices"], metavar="{" + ",".join(meta["choices"]) + "}")
    return kwargs


def help_text(text: str) -> str:
    """A settings field's help as argparse wants it: a literal ``%`` doubled (argparse formats help with %)."""
    return text.replace("%", "%%")


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(map(_show, value)) or "equal"
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value) if value == "" else str(value)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="painterly",
        description="Paint a photo in the style of one or more artworks (Gatys neural style transfer). "
        "With no arguments: the demo, the tutorial's turtle painted as Hokusai's Great Wave.",
        epilog=_commands_help(),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("content", nargs="?", help="the photo to paint")
    parser.add_argument("styles", nargs="*", metavar="style", help="one or more artworks")
    parser.add_argument("-o", "--output", help="where to write the result (.png, .jpg, .webp, .tiff)")
    parser.add_argument("--preset", default="default",
                        help=f"starting settings ({', '.join(PRESETS)}); flags change them")
    parser.add_argument("--version", action="version", version=f"painterly {_version()}")
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
                        help="paint the tiled scales on a Ray cluster, their tiles spread over its workers: auto "
                             "(RAY_ADDRESS, a running cluster, or a new local one) or host:port")
    prints = parser.add_argument_group("print settings")
    prints.add_argument("--print-size", metavar="WxH{cm,mm,in}",
                        help="size of the print at --dpi (30x20cm, 12x8in); the photo is cropped to its shape")
    prints.add_argument("--dpi", type=_finite_float, metavar="N",
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


def _commands_help() -> str:
    """The list of :data:`COMMANDS` that ends ``painterly --help``, one line each."""
    usages = {name: f"painterly {name} {arguments}".rstrip() for name, (arguments, _) in COMMANDS.items()}
    width = max(map(len, usages.values()))
    lines = [f"  {usages[name].ljust(width)}  {what}" for name, (_, what) in COMMANDS.items()]
    return "\n".join(["Other commands (each with its own --help):", *lines])


def settings_from_args(args: argparse.Namespace, base: Settings) -> Settings:
    """The preset (or ``base``) with every picture option given on the command line applied."""
    changes = {f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)
               if getattr(args, f.name) is not None}
    if isinstance(changes.get("size"), tuple):
        changes["size"] = max(changes["size"])  # the exact size (args.size) is the CLI's to crop to
    return base.replace(**changes)


def machine_from_args(args: argparse.Namespace) -> Machine:
    """This machine's settings: the defaults with every machine option given on the command line."""
    return Machine(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Machine)
                      if getattr(args, f.name) is not None})


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "info":
            return _info(argv[1:])
        if argv and argv[0] == "serve":
            from .web.server import serve_main

            return serve_main(argv[1:])
        if argv and argv[0] == "batch":
            from .batch import batch_main

            return batch_main(argv[1:])
        if argv and argv[0] == "video":
            from .video import video_main

            return video_main(argv[1:])
        return _paint(argv)
    except SystemExit as exc:  # argparse: --help, or a bad command line already reported in one line
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except PainterlyError as exc:
        # Painting takes settings as flags; batch manifests and grids name them as fields.
        subcommand = bool(argv) and argv[0] in COMMANDS
        print(f"painterly: error: {exc if subcommand else flags_in(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("painterly: interrupted before the first step; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:  # a disk that filled up or a file that vanished while writing
        print(f"painterly: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_ERROR
    except MemoryError:
        print("painterly: error: out of memory; try a smaller --size", file=sys.stderr)
        return EXIT_ERROR


def _info(argv: list[str]) -> int:
    from . import metadata

    parser = _Parser(prog="painterly info", description="Print the settings painterly embedded in an image.")
    parser.add_argument("image")
    parser.add_argument("--json", action="store_true", help="print the whole record as JSON")
    args = parser.parse_args(argv)
    record = metadata.read(args.image)
    if args.json:
        print(json.dumps(record, indent=2))
        return 0
    print(f"{args.image}: made by painterly {record.get('versions', {}).get('painterly', '?')}")
    for key in ("content", "styles", "preset"):
        if key in record:
            print(f"  {key}: {record[key]}")
    for name, value in record.get("settings", {}).items():
        print(f"  {name}: {value}")
    return 0


def _stop_on_sigterm() -> None:
    """SIGTERM (a scheduler's or a cluster's stop) ends a run as Ctrl-C does: the best image so far
    is written and the checkpoint kept, so ``--resume`` goes on from there."""
    import signal
    import threading

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)


def _paint(argv: list[str]) -> int:
    from . import metadata

    _stop_on_sigterm()
    parser = build_parser()
    args = parser.parse_args(argv)
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
        from .samples import demo_paths

        content_path, style_path = demo_paths()
        args.content, args.styles = str(content_path), [str(style_path)]
        args.output = args.output or DEMO_OUTPUT
        if args.preset == "default":
            args.preset, base = "demo", preset("demo")
    if not args.styles:
        raise SettingsError("give a content image and at least one style image: painterly CONTENT STYLE -o OUT.png")
    if not args.output:
        raise SettingsError("say where the result goes with -o/--output, e.g. -o painted.png")
    settings = settings_from_args(args, base)
    machine = machine_from_args(args)
    from .devices import setup_process

    setup_process(machine.threads)

    inputs = tuple([args.content, *args.styles, *(args.mask or []), *([args.mask_labels] if args.mask_labels else []),
                    *([settings.init_file] if settings.init_file else [])])
    from .images import check_output, open_image

    output = check_output(args.output, inputs)
    _check_side_outputs(args, inputs, output)

    from .prints import fit_exactly, print_pixels
    from .validate import check_dpi

    exact = args.size if isinstance(args.size, tuple) else None
    if args.print_size:
        if exact:
            raise SettingsError("give either --size WxH or --print-size, not both")
        exact = print_pixels(args.print_size, args.dpi or 300)
    dpi = check_dpi(args.dpi) if args.dpi is not None else (300.0 if args.print_size else None)
    if exact:
        settings = settings.replace(size=max(exact))
    if args.bit_depth == 16 and output.suffix.lower() not in (".png", ".tif", ".tiff"):
        raise SettingsError(f"--bit-depth 16 writes .png or .tiff files, not {output.suffix or 'no suffix'}")

    say = _Say(quiet=args.quiet)
    content = open_image(args.content)
    styles = [open_image(s) for s in args.styles]
    masks = _masks(args, len(styles))
    if exact:  # the photo (and its masks) cropped to the print's shape, at its exact size
        content = fit_exactly(content, exact)
        masks = [fit_exactly(m, exact) for m in masks] if masks else masks
    from . import checkpoint
    from .record import input_digests

    run_key = {"settings": settings.to_dict(), "inputs": input_digests(args.content, args.styles, args.mask)}
    saved = checkpoint.path_for(output)
    from .api import stylize
    from .devices import memory_budget, pick_device, pick_precision
    from .plan import make_plan

    device = pick_device(machine.device)
    precision = pick_precision(settings.precision, device)
    budget = memory_budget(machine.max_memory, device)
    cluster = _cluster(args.ray, settings)
    plan = make_plan(settings, content.size, precision, budget, machine.tile_size,
                     cluster.workers if cluster is not None else None)
    # Said with the first step, so that an error found while setting up stays the only line.
    guess = plan.estimate_seconds(device.type, precision)
    intro = [f"painterly: {Path(args.content).name} in the style of {', '.join(Path(s).name for s in args.styles)}; "
             f"preset {args.preset}, {settings.optimizer}, result {plan.size[0]}x{plan.size[1]}, "
             f"{len(plan.scales)} scale{'s' if len(plan.scales) > 1 else ''}, up to {plan.total_steps} steps, "
             f"about {plan.peak_bytes / 2**30:.1f} GiB of {budget / 2**30:.1f} allowed"
             + (f", roughly {_duration(guess)} on a CPU like the one measured" if guess else "")]
    if any(s.tile for s in plan.scales):
        intro += [f"painterly: plan: {line}" for line in plan.describe().splitlines() if "tiles of" in line]
    intro += [f"painterly: {line}" for line in cluster.describe(plan, precision)] if cluster is not None else []
    intro += _size_notes(content.size, plan.size, settings.size)
    if not args.resume:  # a resumed run was started, and warned about, before
        _confirm_unusual(plan, guess, budget, asked=not args.yes and interactive())
    bar = ProgressBar(sys.stderr, enabled=not args.quiet, intro="\n".join(intro))
    recorder = None
    if args.report:
        from .report import Recorder

        recorder = Recorder()
    callback = bar if recorder is None else _both(bar, recorder)
    resume = checkpoint.load(saved, run_key, len(plan.scales)) if args.resume else None
    if resume is not None:
        say(f"painterly: resuming at scale {resume.scale + 1} of {len(plan.scales)}, step {resume.steps_done + 1} "
            f"of it, from {saved.name}")
    try:
        result = stylize(content, styles, settings, machine=machine, callback=callback, masks=masks, resume=resume,
                         on_checkpoint=lambda state: checkpoint.save(saved, state, run_key), cluster=cluster)
    finally:
        if cluster is not None:
            cluster.close()
    bar.close()
    from .record import make_record, write_outputs

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
    from .cluster import check_cluster
    from .tiles_ray import RayTiles

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
    from .images import open_image
    from .masks import masks_from_labels
    from .validate import check_mask_count

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


class ProgressBar:
    """Turns :class:`~painterly.api.Progress` events into one line that fits the terminal: the scale,
    a bar, the step, the loss and each term by name, elapsed time and the ETA (from the plan)."""

    def __init__(self, stream: TextIO, enabled: bool = True, width: int = 20, intro: str = "") -> None:
        self.stream, self.enabled, self.width, self.intro = stream, enabled, width, intro
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.last_print = 0.0

    def __call__(self, event) -> None:
        if not self.enabled:
            return
        if self.intro:
            self.stream.write(self.intro + "\n")
            self.intro = ""
        line = self.line(event, self.columns() - 1 if self.tty else 200)
        if self.tty:
            self.stream.write("\r" + line.ljust(self.columns() - 1))
            self.stream.flush()
        elif time.monotonic() - self.last_print > 5 or event.step + 1 == event.total_steps:
            self.last_print = time.monotonic()
            self.stream.write(line + "\n")

    @staticmethod
    def columns() -> int:
        import shutil

        return max(40, shutil.get_terminal_size((100, 24)).columns)

    def line(self, event, columns: int) -> str:
        """The progress line, at most ``columns`` characters: the least useful parts go first."""
        done = event.step + 1
        filled = int(done / max(event.total_steps, 1) * self.width)
        bar = "[" + "#" * filled + "-" * (self.width - filled) + "]"
        scale = f"scale {event.scale + 1}/{event.scales} " if event.scales > 1 else ""
        terms = " ".join(f"{k} {v:.2e}" for k, v in event.losses.items() if k != "total" and v)
        core = f"{scale}step {done}/{event.total_steps} loss {event.losses['total']:.3e}"
        clock = f"{_clock(event.elapsed)}, ETA {_clock(event.eta)}"
        for parts in ((bar, core, f"({terms})", clock), (bar, core, clock), (core, clock), (core,)):
            text = " ".join(p for p in parts if p and p != "()")
            if len(text) <= columns:
                return text
        return core[:columns]

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


# ImageError and friends are imported for callers that catch them from here.
__all__ = ["ImageError", "ProgressBar", "build_parser", "main"]
