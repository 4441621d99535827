"""The web studio: ``painterly serve`` (FastAPI + uvicorn, the optional ``web`` extra).

- :mod:`~painterly.web.server`: the app factory (:func:`~painterly.web.server.create_app`) and the command;
- the routes, a module per group: ``routes/pages`` (the page, the API reference), ``routes/catalog``
  (settings, examples), ``routes/runs`` (start, list, plan, state), ``routes/media`` (images, inputs,
  live events), ``routes/actions`` (cancel, rerun, delete); each reaches the app's state through
  :mod:`~painterly.web.studio`, and :mod:`~painterly.web.schemas` holds the shapes of the JSON;
- what a request sends: :mod:`~painterly.web.intake`, :mod:`~painterly.web.checks`,
  :mod:`~painterly.web.budget`, :mod:`~painterly.web.origin`, within :mod:`~painterly.web.config`'s limits;
- the runs: :mod:`~painterly.web.jobs` (the queue) over :mod:`~painterly.web.job`, :mod:`~painterly.web.line`,
  :mod:`~painterly.web.worker`, :mod:`~painterly.web.events`, :mod:`~painterly.web.retention`,
  :mod:`~painterly.web.recovery`, :mod:`~painterly.web.run_files` and :mod:`~painterly.web.store`;
- ``static/``: the page.

Nothing here is imported by the core.
"""

from __future__ import annotations

from ..errors import PainterlyError


class MissingExtra(PainterlyError, ImportError):
    """FastAPI, uvicorn or python-multipart is not installed."""
