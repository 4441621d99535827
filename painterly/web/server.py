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
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import re
import signal
import socket
import sys
import threading
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated, Any

from .. import samples
from ..settings import DEVICES, INITS, MIN_SIZE, PRESETS, Settings
from . import MissingExtra

_MISSING = [name for name, found in (("fastapi", find_spec("fastapi")), ("uvicorn", find_spec("uvicorn")),
                                     ("python-multipart", find_spec("python_multipart") or find_spec("multipart")))
            if not found]  # all of them named at once, not the first one import happens to meet
if _MISSING:
    raise MissingExtra(f"the web studio needs FastAPI, uvicorn and python-multipart ({', '.join(_MISSING)} "
                       f"{'is' if len(_MISSING) == 1 else 'are'} missing): pip install 'painterly[web]'")
try:
    import uvicorn
    from fastapi import FastAPI, File, Form, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
    from fastapi.staticfiles import StaticFiles
    from pydantic import BaseModel, Field
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError as exc:
    raise MissingExtra(f"the web studio needs FastAPI, uvicorn and python-multipart ({exc.name} is missing): "
                       "pip install 'painterly[web]'") from exc

from .budget import plan_summary  # noqa: E402
from .checks import REFUSED, ApiError, BodyLimit, apply_changes, parse_json, parse_settings, safe_text  # noqa: E402
from .intake import Intake, check_counts  # noqa: E402
from .jobs import ACTIVE, FINISHED, JobQueue, QueueFull, StorageFull  # noqa: E402
from .origin import SameOrigin, normal_origin  # noqa: E402
from .store import DataFolderBusy, Store, default_data_folder  # noqa: E402

STATIC = Path(__file__).parent / "static"
#: Room in a request body for the settings and the multipart framing, besides the images.
FORM_OVERHEAD = 256 * 1024
#: Help of a field as the page shows it, where the CLI's would offer what the web refuses.
WEB_HELP = {"init": "what the painting starts from: content (the photo), palette (the photo in the "
                   "artwork's colours, dark kept dark), noise or style"}


def _opt(help: str, **extra: Any) -> dict[str, Any]:
    return {"help": help, **extra}


@dataclass(frozen=True)
class WebConfig:
    """The server's own settings (``painterly serve --help`` lists them)."""

    host: str = field(default="127.0.0.1", metadata=_opt("address to listen on (0.0.0.0: every network)"))
    port: int = field(default=8000, metadata=_opt("port to listen on (0: any free port)"))
    data: str = field(default="", metadata=_opt(
        "folder for the studio's database and runs (empty: $XDG_DATA_HOME/painterly/studio or "
        "~/.local/share/painterly/studio)"))
    allow_origin: tuple[str, ...] = field(default=(), metadata=_opt(
        "another origin allowed to use the studio, e.g. https://studio.example (repeat for more)", multiple=True))
    max_upload_mb: float = field(default=20.0, metadata=_opt("largest accepted image file, in MB"))
    max_pixels: int = field(default=25_000_000, metadata=_opt("largest accepted image, in pixels (w x h)"))
    max_request_pixels: int = field(default=60_000_000, metadata=_opt("most pixels of all images of one request"))
    decode_workers: int = field(default=2, metadata=_opt("requests whose images are decoded at the same time"))
    max_styles: int = field(default=5, metadata=_opt("most style images in one run"))
    max_size: int = field(default=1024, metadata=_opt("largest result a run may ask for (longer side, px)"))
    max_steps: int = field(default=2000, metadata=_opt("most steps a run may ask for per scale"))
    max_total_steps: int = field(default=4000, metadata=_opt("most steps of a run over all its scales"))
    max_scales: int = field(default=8, metadata=_opt("most scales of a coarse-to-fine run"))
    max_style_size: int = field(default=2048, metadata=_opt(
        "largest style image a run may resize to (longer side, px)"))
    max_memory_mb: float = field(default=8192.0, metadata=_opt("largest estimated peak memory of a run, in MB"))
    job_ttl: float = field(default=0.0, metadata=_opt("seconds a finished run is kept (0: until deleted)"))
    max_disk_mb: float = field(default=2048.0, metadata=_opt(
        "disk space all runs may use, in MB (past it, the oldest finished runs are deleted)"))
    max_queued: int = field(default=20, metadata=_opt("most runs waiting at once"))
    preview_interval: float = field(default=0.3, metadata=_opt("seconds between renders of the live image"))
    device: str = field(default="auto", metadata=_opt("device the runs use", choices=DEVICES))
    threads: int = field(default=0, metadata=_opt("CPU threads for the runs (0: all cores)"))

    def data_folder(self) -> Path:
        return Path(self.data).expanduser() if self.data else default_data_folder()


class ErrorOut(BaseModel):
    detail: str
    field: str | None = None


class JobOut(BaseModel):
    """A run's state. ``position`` is 1 for the next to run (queued runs only)."""

    id: str
    status: str
    position: int | None
    created: float
    started: float | None
    finished: float | None
    expires: float | None
    step: int
    total_steps: int
    scale: int
    scales: int
    size: list[int] | None
    elapsed: float
    eta: float | None
    losses: dict[str, Any] | None
    history: list[dict[str, Any]]
    error: str | None
    image_version: int
    preset: str
    settings: dict[str, Any]
    inputs: dict[str, Any]
    result: dict[str, Any] | None
    plan: dict[str, Any]
    rerun_of: str | None


class PlanIn(BaseModel):
    """A run's settings (the JSON text ``POST /api/jobs`` takes), its content image's size and number of artworks."""

    settings: str = "{}"
    width: int = Field(ge=1, le=1_000_000)
    height: int = Field(ge=1, le=1_000_000)
    styles: int = Field(default=1, ge=1, le=1000)


class RerunIn(BaseModel):
    """Changes to the stored run's settings, as JSON text: ``{"strength": 0.7}``."""

    settings: str = "{}"


ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (403, 404, 409, 413, 415, 422, 503,
                                                                                  507)}


def create_app(config: WebConfig | None = None) -> FastAPI:
    """The web studio app over the data folder of ``config`` (runs of earlier starts included)."""
    from ..devices import pick_device, pick_precision

    config = config or WebConfig()
    store = Store(config.data_folder())
    device = pick_device(config.device).type
    intake = Intake(config, pick_precision("auto", pick_device(config.device)))
    jobs = JobQueue(store, ttl=config.job_ttl, max_disk_bytes=int(config.max_disk_mb * 2**20),
                    max_queued=config.max_queued, preview_interval=config.preview_interval,
                    device=config.device, threads=config.threads, planner=intake.plan)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(jobs.recover)
        yield
        await run_in_threadpool(jobs.close)
        await run_in_threadpool(intake.close)

    app = FastAPI(title="painterly studio", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Neural style transfer: upload a photo and artworks, follow the run live.")
    app.state.jobs, app.state.config, app.state.intake = jobs, config, intake
    file_limit = int(config.max_upload_mb * 2**20)
    app.add_middleware(BodyLimit, limit=file_limit * (2 * config.max_styles + 1) + FORM_OVERHEAD)  # masks too
    app.add_middleware(SameOrigin, allowed_origins=config.allow_origin)  # outermost: refused before anything
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def find(job_id: str) -> dict[str, Any]:
        job = jobs.snapshot(job_id)
        if job is None:
            raise ApiError(404, "no such run (it may have been deleted)", "id")
        return job

    def stored(path: Path) -> FileResponse:
        if not path.is_file():  # deleted between the look-up and now
            raise ApiError(404, "no such run (it may have been deleted)", "id")
        return FileResponse(path, media_type="image/png")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    @app.get("/docs", include_in_schema=False)
    def docs() -> FileResponse:
        return FileResponse(STATIC / "api.html", headers=PAGE_HEADERS)

    @app.get("/api/settings", summary="The settings a run takes, with defaults, help, choices and presets")
    def get_settings() -> dict[str, Any]:
        return settings_schema(config)

    @app.get("/api/examples", summary="The bundled example images")
    def get_examples() -> dict[str, Any]:
        listing = {kind: [{"name": name, "url": f"/api/examples/{name}"} for name in found]
                   for kind, found in (("content", samples.contents()), ("styles", samples.styles()))}
        return {**listing, "credits": samples.TURTLE_CREDIT}

    @app.get("/api/examples/{name}", summary="One bundled example image (JPEG)", responses=ERRORS)
    def get_example(name: str) -> FileResponse:
        found = {**samples.styles(), **samples.contents()}
        if name not in found:
            raise ApiError(404, f"no example called {name!r}", "name")
        return FileResponse(found[name], media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.post("/api/jobs", status_code=202, summary="Start a run (it waits in line if another is running)",
              responses=ERRORS)
    async def post_job(
        content: Annotated[UploadFile, File(description="the photo to paint (PNG, JPEG, WebP, GIF, BMP, TIFF)")],
        style: Annotated[list[UploadFile], File(description="one or more artworks")],
        settings: Annotated[str, Form(description='JSON: {"preset": "draft", "size": 256, ...}')] = "{}",
        mask: Annotated[list[UploadFile] | None, File(
            description="optional: one grayscale mask per style, in the same order (white: that style applies)"
        )] = None,
    ) -> dict[str, Any]:
        given = await intake.read(content, style, mask, settings)
        return await _queue(given.settings, given.preset, given.plan, given.content, given.styles, given.masks)

    async def _queue(settings, preset, plan, content, styles, masks, rerun_of=None) -> dict[str, Any]:
        try:
            job_id = await run_in_threadpool(jobs.submit, settings, preset, plan, content, styles, masks, rerun_of)
        except QueueFull as exc:
            error = ApiError(503, str(exc))
            error.headers = {"Retry-After": str(jobs.retry_after())}
            raise error from None
        except StorageFull as exc:
            raise ApiError(507, str(exc)) from None
        snapshot = find(job_id)
        return {"id": job_id, "status": snapshot["status"], "position": snapshot["position"],
                "url": f"/api/jobs/{job_id}", "plan": snapshot["plan"]}

    @app.get("/api/jobs", summary="The newest runs, newest first (without loss histories), a page at a time",
             responses=ERRORS)
    def list_jobs(limit: int = 50, offset: int = 0, status: str = "") -> dict[str, Any]:
        """``status``: only runs in these states (comma-separated, e.g. ``done,interrupted``);
        ``total``: how many runs match, for paging with ``offset``."""
        statuses = tuple(s for s in status.split(",") if s)
        unknown = [s for s in statuses if s not in (*ACTIVE, *FINISHED)]
        if unknown:
            raise ApiError(422, f"status takes {', '.join((*ACTIVE, *FINISHED))}, got {unknown[0][:40]!r}", "status")
        page, total = jobs.recent_page(max(1, min(limit, 200)), max(0, offset), statuses)
        return {"jobs": page, "total": total}

    @app.post("/api/plan", summary="What a run would cost, and whether this server would take it", responses=ERRORS)
    def post_plan(request: PlanIn) -> dict[str, Any]:
        """The same checks as ``POST /api/jobs`` on the settings, the content image's size and the
        number of artworks, without the images: ``refused`` is ``{"detail", "field"}`` or null."""
        try:
            check_counts(request.styles, None, config)
            preset, settings = parse_settings(request.settings, request.styles, config)
            plan = intake.plan(settings, (request.width, request.height))
        except ApiError as exc:
            return {"preset": None, "plan": None, "seconds": None,
                    "refused": {"detail": safe_text(str(exc.detail)), "field": exc.field and safe_text(exc.field)}}
        precision = intake.precision if settings.precision == "auto" else settings.precision
        return {"preset": preset, "plan": plan_summary(plan), "seconds": jobs.estimate_seconds(plan, device, precision),
                "refused": None}

    @app.get("/api/jobs/{job_id}", response_model=JobOut, summary="A run's state", responses=ERRORS)
    def get_job(job_id: str) -> dict[str, Any]:
        return find(job_id)

    @app.get("/api/jobs/{job_id}/image", summary="The current or final image (PNG)", responses=ERRORS)
    def get_image(job_id: str, download: bool = False) -> Response:
        job = find(job_id)
        png = jobs.image(job_id)
        if png is None:
            raise ApiError(404, "no image yet: the run has not made its first step", "id")
        headers = {"Cache-Control": "no-store"}
        if download:
            stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(job["inputs"]["content"]).stem)[:40] or "result"
            headers["Content-Disposition"] = f'attachment; filename="painterly-{stem}.png"'
        return Response(png, media_type="image/png", headers=headers)

    @app.get("/api/jobs/{job_id}/content", summary="The run's content image, as the run uses it", responses=ERRORS)
    def get_content(job_id: str) -> FileResponse:
        find(job_id)
        return stored(jobs.input_path(job_id, None))

    @app.get("/api/jobs/{job_id}/styles/{index}", summary="The run's style image number index (from 0)",
             responses=ERRORS)
    def get_style(job_id: str, index: int) -> FileResponse:
        names = find(job_id)["inputs"]["styles"]
        if not 0 <= index < len(names):
            raise ApiError(404, f"this run has {len(names)} style images", "index")
        return stored(jobs.input_path(job_id, index))

    @app.get("/api/jobs/{job_id}/masks/{index}", summary="The run's mask number index (from 0), grayscale",
             responses=ERRORS)
    def get_mask(job_id: str, index: int) -> FileResponse:
        names = find(job_id)["inputs"]["masks"]
        if not 0 <= index < len(names):
            raise ApiError(404, f"this run has {len(names)} masks", "index")
        return stored(jobs.mask_path(job_id, index))

    @app.get("/api/jobs/{job_id}/events", summary="Live progress (server-sent events)", responses=ERRORS,
             response_class=StreamingResponse)
    def get_events(job_id: str) -> StreamingResponse:
        """Events: ``status`` (the whole state, first and on every change), ``progress`` (each step),
        ``image`` (a new image: fetch ``/image?v=<version>``). The stream ends with a final status."""
        find(job_id)
        return StreamingResponse(jobs.stream(job_id), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.post("/api/jobs/{job_id}/cancel", summary="Cancel a queued or running run (its files are kept)",
              response_model=JobOut, responses=ERRORS)
    def cancel_job(job_id: str) -> dict[str, Any]:
        job = find(job_id)
        if not jobs.cancel(job_id) and job["status"] not in ("cancelled",):
            raise ApiError(409, f"the run is {job['status']} already; there is nothing to cancel", "id")
        return find(job_id)

    @app.post("/api/jobs/{job_id}/rerun", status_code=202, summary="Run a stored run again, as a new run",
              responses=ERRORS)
    async def rerun_job(job_id: str, changes: RerunIn | None = None) -> dict[str, Any]:
        """With a body ``{"settings": {"strength": 0.7}}``, the new run has those settings changed
        (checked as a new run's are)."""
        find(job_id)
        given = await run_in_threadpool(jobs.rerun_inputs, job_id)
        if given is None:
            raise ApiError(404, "no such run (it may have been deleted)", "id")
        if changes is not None and changes.settings:
            data = parse_json(changes.settings)
            given["settings"] = apply_changes(given["settings"], data, len(given["styles"]), config)
        plan = intake.plan(given["settings"], given["content"][1].size)  # today's limits apply
        return await _queue(given["settings"], given["preset"], plan, given["content"], given["styles"],
                            given["masks"], rerun_of=job_id)

    @app.delete("/api/jobs/{job_id}", status_code=204, summary="Delete a finished run and its files",
                responses={**ERRORS, 204: {"description": "deleted"}})
    def delete_job(job_id: str) -> Response:
        job = find(job_id)
        if job["status"] in ACTIVE:
            raise ApiError(409, f"the run is {job['status']}; cancel it first (POST /api/jobs/{{id}}/cancel)", "id")
        deleted = jobs.delete(job_id)
        if deleted is None:
            raise ApiError(404, "no such run (it may have been deleted)", "id")
        if not deleted:
            raise ApiError(409, "the run is still stopping; try again in a moment", "id")
        return Response(status_code=204)

    return app


#: The page may only load what the server itself serves.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


# -- answers ----------------------------------------------------------------------------------


def settings_schema(config: WebConfig) -> dict[str, Any]:
    """The Settings fields a request may set (type, default, help, group, choices), presets, limits."""
    hints = typing.get_type_hints(Settings)
    defaults = Settings().to_dict()
    fields = [
        {"name": f.name, "type": _type_name(hints[f.name]), "default": defaults[f.name],
         "help": WEB_HELP.get(f.name, f.metadata["help"]), "group": f.metadata["group"],
         "choices": list(INITS if f.name == "init" else f.metadata.get("choices", ())) or None}
        for f in dataclasses.fields(Settings) if f.name not in REFUSED
    ]
    limits = {name: getattr(config, name) for name in (
        "max_size", "max_steps", "max_total_steps", "max_scales", "max_style_size", "max_memory_mb", "max_styles",
        "max_upload_mb", "max_pixels", "max_request_pixels")}
    return {"fields": fields, "presets": {name: p.to_dict() for name, p in PRESETS.items()},
            "default_preset": "default", "limits": {**limits, "min_size": MIN_SIZE}, "refused": REFUSED}


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


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is tuple:
        return f"list[{typing.get_args(hint)[0].__name__}]"
    return hint.__name__


def _version() -> str:
    from .. import __version__

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
