"""From a request's form to what a run needs, in the order that keeps a request cheap to refuse.

1. counts and settings (no file read yet);
2. every file's header: bytes, format, pixels, the request's pixels in all (no pixels decoded);
3. the plan from the content's size, checked against the work budget;
4. off the event loop, in a pool of ``--decode-workers`` threads of its own: one image at a time
   decoded and at once shrunk to the size the run uses, so a request holds at most one full-size
   image, and at most that many requests decode at once. (A pool of its own also bounds the memory
   the C allocator keeps for reuse: it keeps freed blocks per thread, and the request threads are many.)
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import UploadFile
from PIL import Image
from starlette.concurrency import run_in_threadpool

from ..engine.plan import Plan
from ..engine.settings import Settings
from ..engine.validate import check_mask_count
from ..errors import ImageError
from .budget import check_plan
from .checks import (
    ApiError,
    Upload,
    check_header,
    check_request_pixels,
    decode_masks,
    decode_shrunk,
    display_name,
    parse_settings,
)

if TYPE_CHECKING:
    from .config import WebConfig


@dataclass
class Inputs:
    """A checked request: settings, plan and the working copies of its images (name, image)."""

    preset: str
    settings: Settings
    plan: Plan
    content: tuple[str, Image.Image]
    styles: list[tuple[str, Image.Image]]
    masks: list[tuple[str, Image.Image]] | None


class Intake:
    """Checks requests for one app: its limits, the precision plans are made for, the decode limit."""

    def __init__(self, config: WebConfig, precision: str) -> None:
        self.config, self.precision = config, precision
        self._decoding = ThreadPoolExecutor(config.decode_workers, thread_name_prefix="painterly-decode")

    def close(self) -> None:
        self._decoding.shutdown(wait=True, cancel_futures=True)

    def plan(self, settings: Settings, content_size: tuple[int, int]) -> Plan:
        """The run's plan, checked against the budget (``ApiError`` 422 if it passes a limit)."""
        precision = self.precision if settings.precision == "auto" else settings.precision
        return check_plan(settings, content_size, precision, self.config)

    async def read(self, content: UploadFile, style: list[UploadFile], mask: list[UploadFile] | None,
                   settings_text: str) -> Inputs:
        config = self.config
        check_counts(len(style), len(mask) if mask is not None else None, config)
        preset, settings = parse_settings(settings_text, len(style), config)
        many = len(style) > 1
        uploads = [_upload(content, "content", "content image")]
        uploads += [_upload(s, "style", f"style image {i + 1}" if many else "style image") for i, s in enumerate(style)]
        uploads += [_upload(m, "mask", f"mask {i + 1}") for i, m in enumerate(mask or [])]
        for upload, given in zip(uploads, [content, *style, *(mask or [])]):
            await run_in_threadpool(check_header, upload, given.size, config)
        check_request_pixels(uploads, config)
        plan = self.plan(settings, uploads[0].size)
        loop = asyncio.get_running_loop()
        images = await loop.run_in_executor(self._decoding, _decode, uploads, settings, plan, len(style))
        content_in, styles_in, masks_in = images
        return Inputs(preset, settings, plan, content_in, styles_in, masks_in)


def check_counts(n_styles: int, n_masks: int | None, config: WebConfig) -> None:
    """Refuse more styles than the server allows, and masks that are not one per style."""
    if n_styles > config.max_styles:
        raise ApiError(422, f"at most {config.max_styles} style images per run, got {n_styles}", "style")
    if n_masks is not None:
        try:
            check_mask_count(n_masks, n_styles, otherwise=", or none")
        except ImageError as exc:
            raise ApiError(422, str(exc), "mask") from None


def _upload(given: UploadFile, field: str, what: str) -> Upload:
    return Upload(given.file, display_name(given.filename, what), field, what)


def _decode(uploads: list[Upload], settings: Settings, plan: Plan, n_styles: int):
    """The working copies: content at ``size``, styles at the largest style size of the plan, masks at the content's."""
    style_size = max(s.style_size for s in plan.scales)
    content = decode_shrunk(uploads[0], settings.size)
    styles = [(u.name, decode_shrunk(u, style_size)) for u in uploads[1:1 + n_styles]]
    mask_uploads = uploads[1 + n_styles:]
    masks = None
    if mask_uploads:
        masks = list(zip([u.name for u in mask_uploads], decode_masks(mask_uploads, content.size, plan)))
    return (uploads[0].name, content), styles, masks
