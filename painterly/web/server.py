"""The web studio's HTTP side: :func:`create_app` (FastAPI) and ``painterly serve`` (:func:`serve_main`).

The page (``static/``) and any other client use the same JSON API, described at ``/docs`` (a page
of the studio's own, offline) and ``/openapi.json``. What a request sends is checked in
:mod:`painterly.web.intake` and :mod:`painterly.web.checks` within the limits of :class:`WebConfig`
and the work budget of :mod:`painterly.web.budget`; runs are kept in the data folder
(:mod:`painterly.web.store`). Only the studio's own address may use it (:mod:`painterly.web.origin`).
A refused request gets a 4xx answer ``{"detail": "...", "field": "..."}`` naming the form field or
setting; a full queue's 503 says when to try again (``Retry-After``). ``POST /api/plan`` answers
what a run would take (its plan, memory and time) and whether it would be refused, with the same
checks as ``POST /api/jobs`` but without the images, so the page can show it before Start.

The routes live in :mod:`painterly.web.routes`, a module per group, one router each (:data:`ROUTERS`,
the route table); they reach the app's state (limits, queue, intake) through :class:`~painterly.web.studio.Studio`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator, Sequence
from importlib.util import find_spec
from typing import Any

from . import MissingExtra

_MISSING = [name for name, found in (("fastapi", find_spec("fastapi")), ("uvicorn", find_spec("uvicorn")),
                                     ("python-multipart", find_spec("python_multipart") or find_spec("multipart")))
            if not found]  # all of them named at once, not the first one import happens to meet
if _MISSING:
    raise MissingExtra(f"the web studio needs FastAPI, uvicorn and python-multipart ({', '.join(_MISSING)} "
                       f"{'is' if len(_MISSING) == 1 else 'are'} missing): pip install 'painterly[web]'")
try:
    import uvicorn
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError as exc:
    raise MissingExtra(f"the web studio needs FastAPI, uvicorn and python-multipart ({exc.name} is missing): "
                       "pip install 'painterly[web]'") from exc

from ..engine.run import stylize  # noqa: E402
from .checks import REFUSED, BodyLimit, safe_text  # noqa: E402
from .config import WebConfig  # noqa: E402
from .jobs import JobQueue  # noqa: E402
from .origin import SameOrigin, normal_origin  # noqa: E402
from .routes import actions, catalog, media, pages, runs  # noqa: E402
from .routes.pages import STATIC  # noqa: E402
from .store import DataFolderBusy  # noqa: E402
from .studio import Studio  # noqa: E402
from .worker import Paint  # noqa: E402

__all__ = ["REFUSED", "WebConfig", "create_app", "parse_config", "serve_main"]

#: Room in a request body for the settings and the multipart framing, besides the images.
FORM_OVERHEAD = 256 * 1024
#: The route table: each module's routes, in the order ``/openapi.json`` and ``/docs`` list them.
ROUTERS = (pages.router, catalog.router, runs.router, media.router, actions.router)


def create_app(config: WebConfig | None = None, *, paint: Paint = stylize) -> FastAPI:
    """The web studio app over the data folder of ``config`` (runs of earlier starts included).

    ``paint`` paints each run (:func:`painterly.stylize`; a test may give one that stalls or fails).
    """
    config = config or WebConfig()
    studio = Studio.open(config, paint)
    app = FastAPI(title="painterly studio", version=_version(), lifespan=_lifespan, docs_url=None, redoc_url=None,
                  description="Neural style transfer: upload a photo and artworks, follow the run live.")
    app.state.studio = studio
    app.state.jobs, app.state.config, app.state.intake = studio.jobs, config, studio.intake
    file_limit = int(config.max_upload_mb * 2**20)
    app.add_middleware(BodyLimit, limit=file_limit * (2 * config.max_styles + 1) + FORM_OVERHEAD)  # masks too
    app.add_middleware(SameOrigin, allowed_origins=config.allow_origin)  # outermost: refused before anything
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for router in ROUTERS:
        app.include_router(router)
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    studio: Studio = app.state.studio
    await run_in_threadpool(studio.jobs.recover)
    yield
    await run_in_threadpool(studio.jobs.close)
    await run_in_threadpool(studio.intake.close)


# -- answers ----------------------------------------------------------------------------------


async def _http_error(request, exc: StarletteHTTPException) -> JSONResponse:
    field = getattr(exc, "field", None)
    return JSONResponse({"detail": safe_text(str(exc.detail)), "field": field and safe_text(field)},
                        exc.status_code, headers=getattr(exc, "headers", None))


async def _validation_error(request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    where = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    field = where[0] if where else None
    detail = f"{field} is missing" if first.get("type") == "missing" else f"{field}: {first.get('msg')}"
    return JSONResponse({"detail": safe_text(detail), "field": field and safe_text(field)}, 422)


def _version() -> str:
    from ..version import __version__

    return __version__


# -- the command ------------------------------------------------------------------------------


def parse_config(argv: Sequence[str]) -> WebConfig:
    """``painterly serve``'s arguments -> :class:`WebConfig` (argparse exits on bad ones)."""
    parser = argparse.ArgumentParser(prog="painterly serve", description="Start the web studio.")
    for f in dataclasses.fields(WebConfig):
        flag, help = "--" + f.name.replace("_", "-"), f.metadata["help"]
        if f.metadata.get("multiple"):
            parser.add_argument(flag, dest=f.name, action="append", type=_origin, default=[], metavar="URL", help=help)
            continue
        parser.add_argument(flag, dest=f.name, type=type(f.default), default=f.default,
                            choices=f.metadata.get("choices"), help=f"{help} (default: %(default)s)")
    values = vars(parser.parse_args(list(argv)))
    return WebConfig(**{**values, "allow_origin": tuple(values["allow_origin"])})


def _origin(text: str) -> str:
    try:
        return normal_origin(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def serve_main(argv: Sequence[str]) -> int:
    """``painterly serve [--host H] [--port P] [--data DIR] ...``: print the address, serve until Ctrl-C."""
    config = parse_config(argv)
    try:
        app = create_app(config)
    except (DataFolderBusy, OSError) as exc:
        print(f"painterly: error: {exc}", file=sys.stderr)
        return 1
    try:
        sock = _listen(config.host, config.port)
    except OSError as exc:
        app.state.jobs.close()
        print(f"painterly: error: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    host, port = sock.getsockname()[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/"
    server = _Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    server.jobs = app.state.jobs
    # uvicorn stops on SIGTERM as on Ctrl-C, then raises the signal again under the handler it found:
    # this one makes that a clean stop (exit 0, "stopped") rather than death by the signal.
    sigterm = signal.signal(signal.SIGTERM, _stopped_by_signal)
    by_signal = False
    try:
        print(f"painterly studio: {url}  (API docs: {url}docs; runs kept in {config.data_folder()}; Ctrl-C to stop)",
              flush=True)
        if host not in ("127.0.0.1", "::1"):
            print("painterly: warning: the studio is reachable from other machines; it has no login", flush=True)
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C (and SIGTERM, above) once it has shut down cleanly
        by_signal = True
    finally:
        signal.signal(signal.SIGTERM, sigterm)
        with contextlib.suppress(Exception):
            app.state.jobs.close()  # in case Ctrl-C came before uvicorn ran the app's shutdown
    print("painterly studio: stopped", flush=True)
    if by_signal:
        _exit_now(0)
    return 0


def _exit_now(code: int) -> None:
    """End the process without the interpreter's teardown, which takes 0.5-1 s once torch is loaded
    (the runs are saved and the store is closed by now; a stop asked for by a signal ends here)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _stopped_by_signal(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class _Server(uvicorn.Server):
    """uvicorn's server, which on Ctrl-C or SIGTERM first ends the live streams: uvicorn waits for open
    connections to close before it stops, and a page's event stream would hold it for the whole grace
    period, then be cancelled with a traceback."""

    jobs: JobQueue

    def handle_exit(self, sig: int, frame: Any) -> None:
        threading.Thread(target=self.jobs.end_streams, name="painterly-stop", daemon=True).start()  # no lock here
        super().handle_exit(sig, frame)


def _listen(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock
