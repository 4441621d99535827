"""The web studio: ``painterly serve`` (FastAPI + uvicorn, the optional ``web`` extra).

:mod:`painterly.web.server` holds the app factory and the command, :mod:`painterly.web.checks` the
checks on what a request sends, :mod:`painterly.web.jobs` the job queue, ``static/`` the page.
Nothing here is imported by the core.
"""

from __future__ import annotations

from ..errors import PainterlyError


class MissingExtra(PainterlyError, ImportError):
    """FastAPI, uvicorn or python-multipart is not installed."""
