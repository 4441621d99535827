"""What the studio does with the runs it finds at start (after :meth:`~painterly.web.store.Store.recover`).

A run whose server was killed while it ran (no shutdown, so no result written) gets its last saved
image as the result, with the run's settings embedded like any other result's. Queued runs are
planned again, to be queued again; one that can no longer be (inputs gone, settings no longer valid)
is marked failed, saying why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from PIL import Image

from ..engine.plan import Plan
from ..engine.settings import Settings
from .job import Job
from .run_files import CONTENT_FILE, PREVIEW_FILE, RESULT_FILE, save_stopped, stopped_record
from .store import Store, folder_bytes

log = logging.getLogger(__name__)

#: Settings and the content image's size -> the run's plan, checked against the server's limits.
Planner = Callable[[Settings, tuple[int, int]], Plan]


def keep_previews(store: Store) -> None:
    """Make the last saved image of each run :meth:`Store.recover` marked interrupted its result."""
    for state in store.interrupted:
        keep_preview(store, state)


def keep_preview(store: Store, state: dict[str, Any]) -> None:
    folder = store.folder_of(state["id"])
    preview = folder / PREVIEW_FILE
    if not preview.is_file() or (folder / RESULT_FILE).is_file():
        return
    try:
        with Image.open(preview) as image:
            save_stopped(Settings.from_dict(state["settings"]), folder, image,
                         stopped_record(folder, state["inputs"], state["preset"]))
        preview.unlink()
    except Exception:  # a damaged preview: the run keeps it as it is
        log.exception("run %s: the interrupted image could not be kept with its settings", state["id"])
        return
    state["disk_bytes"] = folder_bytes(folder)
    store.save(state)


def requeued(store: Store, queued: list[dict[str, Any]], planner: Planner) -> list[Job]:
    """The queued runs as jobs again, oldest first; those that cannot be are marked failed."""
    jobs = []
    for state in queued:
        folder = store.folder_of(state["id"])
        try:
            with Image.open(folder / CONTENT_FILE) as content:
                size = content.size
            jobs.append(Job.from_state(state, folder, planner(Settings.from_dict(state["settings"]), size)))
        except Exception as exc:  # inputs gone or settings no longer valid: say so, do not crash the start
            state.update(status="failed", finished=time.time(), error=f"could not be queued again ({exc})")
            store.save(state)
    return jobs
