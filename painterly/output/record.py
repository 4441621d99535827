"""One record of a run and one writer of its outputs, for the CLI, the web studio and batch workers.

The record says how an image was made: the settings, the preset it started from, the inputs (paths
for display, SHA-256 digests to recognise them), the best step and the versions. It is embedded in
the image (:mod:`painterly.output.metadata`), read back by ``painterly info`` and ``--again``, and compared
by batch resume (:func:`same_work`). :func:`write_outputs` writes the image, the history JSON and the
report, each atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine.images import atomic_path, output_format, save_image

if TYPE_CHECKING:
    from ..engine.result import Result
    from .report import Recorder

#: Record keys that say what was computed; two records that agree on them describe the same work.
WORK_KEYS = ("settings", "inputs")


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_record(
    result: Result,
    *,
    content: str | os.PathLike | None = None,
    styles: Sequence[str | os.PathLike] = (),
    masks: Sequence[str | os.PathLike] | None = None,
    preset: str | None = None,
    extra: dict[str, Any] | None = None,
    inputs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The record of ``result``; ``content``, ``styles`` and ``masks`` are the input files, if any, and
    ``inputs`` their :func:`input_digests` where the caller has them already (else they are read)."""
    record: dict[str, Any] = {"settings": result.settings.to_dict()}
    if preset is not None:
        record["preset"] = preset
    if content is not None:
        record["content"] = str(Path(content).resolve())
        record["styles"] = [str(Path(s).resolve()) for s in styles]
        record["masks"] = [str(Path(m).resolve()) for m in masks] if masks else None
        record["inputs"] = inputs if inputs is not None else input_digests(content, styles, masks)
    full = result.record()
    record["best"] = full["best"]
    record["stopped"] = result.stopped
    record["machine"] = full["machine"]  # where it was made; --again and batch resume take their own
    record["image_size"] = full["image_size"]
    record["versions"] = full["versions"]
    if extra:
        record.update(extra)
    return record


def make_video_record(run: dict[str, Any], output: str | os.PathLike, fps: str, result: Any) -> dict[str, Any]:
    """The record of a video run: ``run`` (its inputs, frames selected, settings; what a resume must
    match), where it was written, its frame rate, and the result's errors and per-frame stats."""
    from ..engine.result import versions

    return {**run, "output": str(Path(output).resolve()), "fps": fps, "seconds": result.seconds,
            "temporal_error": result.temporal_error, "content_error": result.content_error,
            "frame_stats": [f.stats() for f in result.frames], "versions": versions()}


def input_digests(content: str | os.PathLike, styles: Sequence[str | os.PathLike],
                  masks: Sequence[str | os.PathLike] | None = None) -> dict[str, Any]:
    """The digests of a run's input files, by role."""
    return {"content": file_digest(content), "styles": [file_digest(s) for s in styles],
            "masks": [file_digest(m) for m in masks] if masks else None}


def same_work(record: dict[str, Any], settings: dict[str, Any], inputs: dict[str, Any]) -> bool:
    """Whether ``record`` (read from an image) was made with ``settings`` (``Settings.to_dict()``) from
    inputs with these digests, and finished (not stopped early). Machine settings (device, threads,
    ...: :data:`painterly.engine.settings.MACHINE_FIELDS`) are not compared: the picture is the same."""
    from ..engine.settings import picture_settings

    made_with = record.get("settings")
    return (isinstance(made_with, dict) and picture_settings(made_with) == picture_settings(settings)
            and record.get("inputs") == inputs and not record.get("stopped"))


def write_outputs(
    result: Result,
    output: str | os.PathLike,
    record: dict[str, Any],
    *,
    history: str | os.PathLike | None = None,
    report: str | os.PathLike | None = None,
    recorder: Recorder | None = None,
    dpi: float | None = None,
    bit_depth: int = 8,
) -> Path:
    """Write the image with ``record`` embedded, and the history JSON and report folder if asked.

    Each file is written to a temporary name and renamed: a crash leaves the old file or none.
    ``dpi`` is written into the file; ``bit_depth`` 16 writes 16-bit samples (PNG or TIFF).
    """
    from . import metadata

    out = Path(output)
    if bit_depth == 16:
        from ..engine.prints import save16

        save16(result.rgb16, out, json.dumps(record, separators=(",", ":")), metadata.KEY, dpi)
    else:
        params = metadata.save_params(output_format(out), record)
        if dpi and output_format(out) in ("PNG", "JPEG", "TIFF"):
            params["dpi"] = (dpi, dpi)
        save_image(result.image, out, **params)
    if history is not None:
        write_json(Path(history), result.record())
    if report is not None:
        from .report import write_report

        write_report(result, report, recorder)
    return out


def write_json(path: Path, data: dict[str, Any]) -> None:
    """``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")
