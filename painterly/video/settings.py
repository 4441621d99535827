"""What a video run adds to the picture's settings (:class:`VideoSettings`), and the checks of a
video's settings and frames."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..engine.validate import MAX_PASSES, SWITCHES, choice, finite_nonneg, whole_at_least, whole_between
from ..errors import ImageError, SettingsError, closest

#: OpenCV's DIS optical flow presets, least effort first.
FLOW_PRESETS = ("ultrafast", "fast", "medium")
#: Earlier frames the long-term terms compare with (Ruder et al.'s J = {1, 2, 4}).
LONG_TERM_OFFSETS = (1, 2, 4)


def _opt(help: str, **extra: Any) -> dict[str, Any]:
    return {"help": help, **extra}


@dataclass(frozen=True)
class VideoSettings:
    """What a video run adds to :class:`~painterly.engine.settings.Settings` (which paints each frame)."""

    temporal_weight: float = field(default=1e-2, metadata=_opt(
        "weight of the temporal loss (masked mean squared difference to the warped previous output, 0..255 levels)"))
    frame_steps: int = field(default=30, metadata=_opt(
        "steps for each frame after the first, at full size, from the warped previous output"))
    long_term: str = field(default="off", metadata=_opt(
        "also hold each frame to frames t-2 and t-4 where t-1 cannot see", choices=SWITCHES))
    flow: str = field(default="medium", metadata=_opt("DIS optical flow effort", choices=FLOW_PRESETS))
    passes: int = field(default=1, metadata=_opt(
        "passes over the clip: after the first, alternately backward and forward, frame_steps each, every frame "
        "held to the neighbour painted just before it in that pass (Ruder et al.'s multi-pass)"))

    def __post_init__(self) -> None:
        check_video(self)

    @property
    def offsets(self) -> tuple[int, ...]:
        """The earlier frames each frame is compared with: 1 back, and 2 and 4 back with long-term terms."""
        return LONG_TERM_OFFSETS if self.long_term == "on" else (1,)

    def replace(self, **changes: Any) -> VideoSettings:
        unknown = [k for k in changes if k not in {f.name for f in dataclasses.fields(self)}]
        if unknown:
            names = [f.name for f in dataclasses.fields(self)]
            raise SettingsError(f"unknown video setting '{unknown[0]}'{closest(unknown[0], names)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_video(v: VideoSettings) -> None:
    """Every field of :class:`~painterly.video.paint.VideoSettings`."""
    finite_nonneg("temporal_weight", v.temporal_weight)
    whole_at_least("frame_steps", v.frame_steps, 1)
    whole_between("passes", v.passes, 1, MAX_PASSES)
    choice("long_term", v.long_term, SWITCHES)
    choice("flow", v.flow, FLOW_PRESETS)


def check_frames(sizes: Sequence[tuple[int, int]]) -> None:
    """A clip's frames, by their sizes (w, h): at least one, all of one size."""
    if not sizes:
        raise ImageError("no frames to paint")
    for i, size in enumerate(sizes):
        if size != sizes[0]:
            raise ImageError(f"frames differ in size: frame 1 is {sizes[0][0]}x{sizes[0][1]}, frame {i + 1} is "
                             f"{size[0]}x{size[1]}")
