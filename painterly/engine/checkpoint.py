"""Checkpoints of a long run: where it stands (scale, steps done in it, the image, the history so far),
written at each scale's end and when the run is stopped, so ``--resume`` goes on from there.

A checkpoint names the run it belongs to by its settings and the SHA-256 digests of its inputs
(:func:`painterly.output.record.input_digests`); resuming with anything else is refused. It lives beside the
output as a hidden file, is written atomically, and is removed once the result is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import SettingsError
from .images import atomic_path

FORMAT = 1


@dataclass
class Checkpoint:
    """A run as it stands: continue at ``scale`` (0-based) after ``steps_done`` of its steps, from ``image``
    ((1, 3, h, w) RGB 0..255, float32, at that scale's size or the one before it)."""

    scale: int
    steps_done: int
    image: torch.Tensor
    history: list[dict[str, Any]] = field(default_factory=list)


def path_for(output: str | os.PathLike) -> Path:
    """Where the checkpoint of the run writing ``output`` is kept."""
    out = Path(output)
    return out.with_name(f".{out.name}.checkpoint.pt")


def save(path: Path, checkpoint: Checkpoint, run: dict[str, Any]) -> None:
    """Write ``checkpoint`` of the run ``run`` (its settings and input digests), atomically."""
    data = {"format": FORMAT, "run": run, "scale": checkpoint.scale, "steps_done": checkpoint.steps_done,
            "image": checkpoint.image.detach().cpu().float(), "history": checkpoint.history}
    with atomic_path(path) as tmp:
        torch.save(data, tmp)


def load(path: Path, run: dict[str, Any], scales: int) -> Checkpoint:
    """The checkpoint at ``path`` if it belongs to ``run``; :class:`SettingsError` saying why not otherwise."""
    if not path.exists():
        raise SettingsError(f"--resume: there is no checkpoint for this output ({path.name} is not in "
                            f"{path.parent}); run without --resume to start")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- a truncated or foreign file: say so in one line
        raise SettingsError(f"--resume: {path.name} is not a painterly checkpoint ({type(exc).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SettingsError(f"--resume: {path.name} is not a painterly checkpoint of this version")
    theirs = data.get("run", {})
    if theirs.get("inputs") != run["inputs"]:
        raise SettingsError("--resume: the checkpoint is of another run (different photo or artworks); "
                            "run without --resume to start afresh")
    if theirs.get("settings") != run["settings"]:
        changed = sorted(k for k in run["settings"] if theirs.get("settings", {}).get(k) != run["settings"][k])
        raise SettingsError(f"--resume: the checkpoint is of a run with other settings ({', '.join(changed)}); "
                            "resume with the same options, or run without --resume")
    if not 0 <= data["scale"] < scales:
        raise SettingsError("--resume: the checkpoint's run had already finished; run without --resume")
    return Checkpoint(int(data["scale"]), int(data["steps_done"]), data["image"], list(data["history"]))
