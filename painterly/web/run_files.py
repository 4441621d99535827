"""A run's folder: the names of its files, and how they are written, read and recorded.

``content.png``, ``style-0.png`` ..., ``mask-0.png`` ... (if masked) are the inputs as the run uses
them; ``preview.png`` is the latest image while it runs; ``result.png`` is the image at the end, with
the run's settings and record embedded (a stopped run's too: the image it got to).
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

from PIL import Image

from ..engine.images import save_image
from ..engine.settings import Settings
from ..output.metadata import save_params
from ..output.record import input_digests
from .store import write_atomic

CONTENT_FILE = "content.png"
RESULT_FILE = "result.png"
PREVIEW_FILE = "preview.png"

#: An input as a request gave it: (display name, image).
Named = tuple[str, Image.Image]


def style_file(index: int) -> str:
    return f"style-{index}.png"


def mask_file(index: int) -> str:
    return f"mask-{index}.png"


def png_bytes(image: Image.Image, level: int = 1) -> bytes:
    """``image`` as PNG; level 1 suits previews, which are replaced within a second."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=level)
    return buffer.getvalue()


def load_image(path: Path, mode: str = "RGB") -> Image.Image:
    with Image.open(path) as img:
        return img.convert(mode)


def write_inputs(folder: Path, content: Named, styles: list[Named], masks: list[Named] | None) -> dict[str, Any]:
    """Make ``folder`` with the run's input images; returns their display names. Nothing is left on failure."""
    folder.mkdir()
    try:
        write_atomic(folder / CONTENT_FILE, png_bytes(content[1], 6))
        for i, (_, image) in enumerate(styles):
            write_atomic(folder / style_file(i), png_bytes(image, 6))
        for i, (_, image) in enumerate(masks or []):
            write_atomic(folder / mask_file(i), png_bytes(image, 6))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return {"content": content[0], "styles": [n for n, _ in styles], "masks": [n for n, _ in masks or []]}


def load_inputs(folder: Path, inputs: dict[str, Any]) -> tuple[Image.Image, list[Image.Image],
                                                                list[Image.Image] | None]:
    """The run's content, styles and masks (None if unmasked) from its folder; ``inputs`` holds their names."""
    content = load_image(folder / CONTENT_FILE)
    styles = [load_image(folder / style_file(i)) for i in range(len(inputs["styles"]))]
    masks = [load_image(folder / mask_file(i), "L") for i in range(len(inputs["masks"]))] or None
    return content, styles, masks


def named_inputs(folder: Path, inputs: dict[str, Any]) -> dict[str, Any]:
    """The run's inputs with their display names: ``content``, ``styles``, ``masks`` (None if unmasked)."""
    content, styles, masks = load_inputs(folder, inputs)
    return {"content": (inputs["content"], content), "styles": list(zip(inputs["styles"], styles)),
            "masks": list(zip(inputs["masks"], masks)) if masks else None}


def stored_image(folder: Path) -> bytes | None:
    """The run's final PNG, else its latest preview, else None."""
    for name in (RESULT_FILE, PREVIEW_FILE):
        try:
            return (folder / name).read_bytes()
        except FileNotFoundError:
            continue
    return None


def input_names(folder: Path, inputs: dict[str, Any]) -> dict[str, Any]:
    """What a run record says of the inputs: their display names, not the server's paths, and the
    digests of the images as the run used them (:mod:`painterly.output.record`)."""
    return {"content": inputs["content"], "styles": inputs["styles"], "masks": inputs["masks"] or None,
            "inputs": input_digests(folder / CONTENT_FILE,
                                    [folder / style_file(i) for i in range(len(inputs["styles"]))],
                                    [folder / mask_file(i) for i in range(len(inputs["masks"]))] or None),
            "made_with": "painterly serve"}


def stopped_record(folder: Path, inputs: dict[str, Any], preset: str) -> dict[str, Any]:
    """The record of a run stopped before its end (no Result to build one from)."""
    return {"preset": preset, **input_names(folder, inputs), "stopped": True}


def save_stopped(settings: Settings, folder: Path, image: Image.Image, record: dict[str, Any]) -> None:
    """The image a stopped run got to, as its result, with its settings embedded like a finished run's."""
    record = {"settings": settings.to_dict(), **record}
    save_image(image.convert("RGB"), folder / RESULT_FILE, **save_params("PNG", record))
