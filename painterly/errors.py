"""Exceptions raised by painterly.

The core raises these with the offending value and what was expected; only the CLI (and the web
app) turn them into one line for a person. Every exception a user can cause derives from
:class:`PainterlyError`, so callers can catch one type.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PainterlyError(Exception):
    """Base class of every error a user of painterly can cause."""


class SettingsError(PainterlyError, ValueError):
    """A setting has a value that is out of range or of the wrong kind."""


class ImageError(PainterlyError):
    """An input image is missing, unreadable, corrupt, too small or too large."""


class WeightsError(PainterlyError):
    """The VGG19 weights file is missing, truncated or not the expected file."""


class OutputError(PainterlyError):
    """An output path cannot be written (missing folder, unknown format, would overwrite an input)."""


def closest(name: str, valid: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the nearest valid name, or ``""`` if none is close."""
    match = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""
