"""The command line's shared vocabulary: exit codes, the parser that reports in one line, one option
per settings field (built from :class:`~painterly.engine.settings.Settings` and
:class:`~painterly.engine.settings.Machine`), the pool options batch and video share, and reading
them back."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from ..engine.settings import DEFAULT, Machine, Settings, flag_name

EXIT_ERROR = 1


EXIT_USAGE = 2


EXIT_INTERRUPTED = 130


#: Flags whose name differs from the field's (kept short or matching the peers' names).
#: The commands besides painting, as ``painterly --help`` lists them: name -> (arguments, what it does).
COMMANDS = {
    "info": ("IMAGE", "how an image was made: the settings it holds"),
    "serve": ("", "the web studio, in a browser"),
    "batch": ("MANIFEST -o DIR", "a manifest's pictures, or photos x artworks"),
    "video": ("IN STYLE -o OUT", "a video or frames folder, without flicker"),
}


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help, except that a text of several lines (the list of commands) keeps its lines."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "\n".join(indent + line for line in text.splitlines())
        return super()._fill_text(text, width, indent)


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line, without the usage block, with a
    "did you mean" for a mistyped choice."""

    def error(self, message: str) -> typing.NoReturn:
        import re

        from ..errors import closest

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


def version_string() -> str:
    from ..version import __version__

    return __version__


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes a number, not {text!r}") from None
    if value != value:  # NaN: argparse would accept it
        raise argparse.ArgumentTypeError(f"NaN is not a number: {text}")
    return value


def size_value(text: str) -> int | tuple[int, int]:
    """``--size``: the longer side (N), or WxH for an exact size (the photo is cropped to its shape)."""
    from ..engine.prints import parse_pixels

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
        kwargs.update(nargs="*", type=finite_float if item is float else str, metavar="X")
    elif f.name == "size":
        kwargs.update(type=size_value, metavar="N|WxH")
        kwargs["help"] = f"{text}, or WxH for exactly that size ({which}: {_show(default)})"
    elif hint is int:
        kwargs.update(type=int, metavar="N")
    elif hint is float:
        kwargs.update(type=finite_float, metavar="X")
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


def commands_help() -> str:
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


#: What ``--ray`` takes, the same for every command that runs on a cluster.
RAY_ADDRESS_HELP = "auto (RAY_ADDRESS, a running cluster, or a new local one) or host:port"


def add_pool_options(parser: argparse.ArgumentParser, *, preset_help: str, workers_help: str, ray_help: str) -> None:
    """``--preset``, ``-q``, ``--workers`` and ``--ray``: the options of the commands that hand work to a
    pool of workers (:mod:`painterly.workers`). ``ray_help`` says what runs on the cluster; the
    address it takes is :data:`RAY_ADDRESS_HELP` for all of them."""
    parser.add_argument("--preset", default="default", help=preset_help)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    parser.add_argument("--workers", type=int, metavar="N", help=workers_help)
    parser.add_argument("--ray", metavar="auto|ADDRESS", help=f"{ray_help}: {RAY_ADDRESS_HELP}")


def check_workers(args: argparse.Namespace) -> None:
    """``--workers`` is at least 1 where it is given."""
    from ..errors import SettingsError

    if args.workers is not None and args.workers < 1:
        raise SettingsError(f"--workers must be at least 1, got {args.workers}")
