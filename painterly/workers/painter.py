"""What a worker paints, and how: a :class:`Work` (settings and the input files' bytes, never a path,
so the same work runs in a local process or on a Ray node without a shared disk), the
:class:`Painter` that paints it with one engine, and the events a pool reports back.

A pool (:class:`~painterly.workers.local.LocalPool`, :class:`~painterly.workers.local.InlinePool` or
:class:`~painterly.workers.ray_pool.RayPool`) has three calls: ``submit(work)``, ``wait(timeout)``
returning events, ``close()``; a worker that dies is reported as a lost job. Batch and video both
hand their work to these pools.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import PainterlyError


@dataclass(frozen=True)
class Work:
    """What a worker needs to paint one job: settings and the input files' bytes."""

    job: int
    settings: Any  # Settings
    preset: str
    content: bytes
    styles: tuple[bytes, ...]
    record_extra: dict[str, Any]  # the input paths and digests, for the record
    format: str  # Pillow format of the output
    machine: Any = None  # Machine: device, memory and tiles for the worker (None: its defaults)


@dataclass(frozen=True)
class Painted:
    """A finished job: the encoded image (record embedded) and what the results file says of it."""

    job: int
    data: bytes
    best_loss: float
    seconds: float


#: Events a pool reports: ("step", job, step, steps), ("done", job, Painted), ("failed", job, message),
#: ("lost", job, message): the worker died (the driver retries the job elsewhere).
Event = tuple[str, int, Any, Any]


class Pool(Protocol):
    size: int

    def submit(self, work: Work) -> None: ...
    def wait(self, timeout: float) -> list[Event]: ...
    def close(self) -> None: ...

class Painter:
    """Paints works one after the other with one :class:`~painterly.engine.run.Engine`: the network is
    loaded once and style targets are reused across jobs."""

    def __init__(self) -> None:
        from ..engine.run import Engine

        self.engine = Engine()

    def paint(self, work: Any, callback: Callable[[Any], Any] | None = None) -> Event:
        """Run ``work``; a ``done`` event, or ``failed`` with one line saying why.

        A :class:`Work` is one picture of a batch. Any other work (a video's chunk of frames or one
        frame's refinement, :mod:`painterly.video.parallel`) runs itself on this painter's engine:
        ``work.run(engine, callback)`` returns its ``done`` event, so that the same pools carry it.
        """
        try:
            if isinstance(work, Work):
                return self._picture(work, callback)
            return work.run(self.engine, callback)
        except PainterlyError as exc:
            return ("failed", work.job, str(exc), None)
        except Exception as exc:  # noqa: BLE001 -- a bug or an exhausted machine fails this job, not the batch
            return ("failed", work.job, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", None)

    def _picture(self, work: Work, callback: Callable[[Any], Any] | None) -> Event:
        from ..engine.run import stylize
        from ..output.record import make_record

        content = decode(work.content)
        styles = [decode(s) for s in work.styles]
        result = stylize(content, styles, work.settings, machine=work.machine, callback=callback, engine=self.engine)
        record = make_record(result, preset=work.preset, extra=work.record_extra)
        data = encode(result.image, work.format, record)
        return ("done", work.job, Painted(work.job, data, result.best_loss, result.seconds), None)


def decode(data: bytes):
    """An input file's bytes as an upright RGB PIL image (the driver has checked the file already)."""
    from PIL import Image, ImageOps

    from ..engine.images import to_rgb

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return to_rgb(ImageOps.exif_transpose(img))


def encode(image, fmt: str, record: dict[str, Any]) -> bytes:
    """``image`` in format ``fmt`` with ``record`` embedded, as :func:`painterly.output.record.write_outputs`
    would write it."""
    from ..output import metadata

    params = metadata.save_params(fmt, record)
    if fmt == "JPEG":
        params.setdefault("quality", 95)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()
