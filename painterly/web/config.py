"""The studio server's own settings (:class:`WebConfig`): address, data folder, limits on what a
request may send and what a run may ask for. ``painterly serve``'s options are built from its fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.settings import DEVICES
from .store import default_data_folder


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
