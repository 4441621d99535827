"""One run of the studio while it is queued or running (:class:`Job`), and the states a run can be in.

Its ETA comes from the run's plan: seconds per unit of the plan's cost, measured from the end of the
first step (which also pays for the warm-up) to the latest, times the cost left; after the first
step alone there is none.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.plan import Plan
from ..engine.result import Progress
from ..engine.settings import Settings

ACTIVE = ("queued", "running")
FINISHED = ("done", "failed", "cancelled", "interrupted")

#: A subscriber to a run's events: its event loop and the inbox that loop reads.
Listener = tuple[asyncio.AbstractEventLoop, asyncio.Queue]


@dataclass(eq=False)
class Job:
    """A queued or running run: its state, its plan and who listens to it. Guarded by the line's lock."""

    id: str
    folder: Path
    settings: Settings
    preset: str
    plan: Plan
    inputs: dict[str, Any]  # content, styles, masks: display names
    created: float = field(default_factory=time.time)
    status: str = "queued"
    started: float | None = None
    finished: float | None = None
    step: int = 0  # steps done
    scale: int = 0
    size: tuple[int, int] | None = None
    elapsed: float = 0.0
    eta: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    preview: bytes | None = None  # the latest image while running, PNG
    image_version: int = 0
    result: dict[str, Any] | None = None
    disk_bytes: int = 0
    rerun_of: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    listeners: list[Listener] = field(default_factory=list)
    last_render: float = 0.0
    last_saved: float = 0.0
    scale_start: int = 0  # global step at which the current scale began
    first: tuple[float, float] | None = None  # (elapsed, cost done) after the first step
    rate: float | None = None  # seconds per unit of plan cost since the first step
    interruptible: bool = False  # the worker is inside the paint call: Interrupted may be raised there
    stop_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_state(cls, state: dict[str, Any], folder: Path, plan: Plan) -> Job:
        """A stored run (:meth:`state`) in memory again, to be queued."""
        return cls(state["id"], folder, Settings.from_dict(state["settings"]), state["preset"], plan, state["inputs"],
                   created=state["created"], disk_bytes=state.get("disk_bytes", 0), rerun_of=state.get("rerun_of"))

    def state(self) -> dict[str, Any]:
        """What the store keeps (and the API shows, less ``position`` and ``expires``)."""
        plan = self.plan
        return {
            "id": self.id, "status": self.status, "created": self.created, "started": self.started,
            "finished": self.finished, "step": self.step, "total_steps": plan.total_steps, "scale": self.scale,
            "scales": len(plan.scales), "size": list(self.size) if self.size else None, "elapsed": self.elapsed,
            "eta": self.eta, "losses": self.history[-1] if self.history else None, "history": self.history,
            "error": self.error, "image_version": self.image_version, "preset": self.preset,
            "settings": self.settings.to_dict(), "inputs": self.inputs, "result": self.result,
            "disk_bytes": self.disk_bytes, "rerun_of": self.rerun_of,
            "plan": {"total_steps": plan.total_steps, "peak_bytes": plan.peak_bytes,
                     "content_size": list(plan.content_size),
                     "scales": [{"size": list(s.size), "steps": s.steps, "style_size": s.style_size}
                                for s in plan.scales]},
        }

    def progress(self) -> dict[str, Any]:
        """A ``progress`` event's data: where the run is, its ETA and its latest losses."""
        return {"step": self.step, "total_steps": self.plan.total_steps, "scale": self.scale,
                "scales": len(self.plan.scales), "size": list(self.size) if self.size else None,
                "elapsed": self.elapsed, "eta": self.eta, "losses": self.history[-1] if self.history else None}

    def eta_after(self, event: Progress) -> float | None:
        """Seconds left after ``event``: the plan's cost left at the rate measured since the first step
        (which also pays for warm-up, and would double the first estimates if it were counted); None
        after the first step, which alone cannot tell the rate."""
        if len(self.plan.scales) != event.scales:  # the engine planned differently: trust its estimate
            return round(event.eta, 3)
        done = self.plan.cost_done(event.scale, event.step - self.scale_start + 1)
        if self.first is None:
            self.first = (event.elapsed, done)
        first_elapsed, first_done = self.first
        if done <= first_done:  # one step measures only the warm-up: no estimate until the second
            return None
        self.rate = (event.elapsed - first_elapsed) / (done - first_done)
        return round(max(0.0, self.rate * (self.plan.total_cost - done)), 3)
