"""The command line's entry point: ``painterly`` paints (:mod:`painterly.cli.paint`); ``info``, ``serve``,
``batch`` and ``video`` (:data:`~painterly.cli.options.COMMANDS`) each have a module of their own.

Options are built from the fields of :class:`~painterly.engine.settings.Settings` (the picture) and
:class:`~painterly.engine.settings.Machine` (where it is computed) in :mod:`painterly.cli.options`.
Errors end in one line on stderr and a non-zero exit; no traceback, no half-written file.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from ..errors import PainterlyError
from .options import COMMANDS, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, Parser, flags_in
from .paint import paint_main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "info":
            return _info(argv[1:])
        if argv and argv[0] == "serve":
            from ..web.server import serve_main

            return serve_main(argv[1:])
        if argv and argv[0] == "batch":
            from .batch import batch_main

            return batch_main(argv[1:])
        if argv and argv[0] == "video":
            from .video import main as video_main

            return video_main(argv[1:])
        return paint_main(argv)
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
    from ..output import metadata

    parser = Parser(prog="painterly info", description="Print the settings painterly embedded in an image.")
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


__all__ = ["main"]
