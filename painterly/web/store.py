"""The studio's memory: one SQLite file and one folder per run, in the data folder.

``DATA/studio.sqlite3`` holds a row per run (its id, status, times and the rest of its state as
JSON); ``DATA/runs/<id>/`` holds its files (inputs, ``preview.png`` while running, ``result.png``).
A run's folder is named by its id, which the server makes (:func:`secrets.token_urlsafe`), never by
anything a request sends. :meth:`Store.recover` runs once at start: a run that was going when the
server stopped becomes ``interrupted``, queued runs are handed back to be queued again, and what a
killed server left behind (half-written files, folders of runs that were never recorded) is removed.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..engine.images import atomic_path

DB_FILE = "studio.sqlite3"
RUNS_DIR = "runs"
LOCK_FILE = "studio.lock"
SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    status TEXT NOT NULL,
    finished REAL,
    disk_bytes INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created);
"""


class DataFolderBusy(Exception):
    """Another studio is using the same data folder."""


def default_data_folder() -> Path:
    """``$XDG_DATA_HOME/painterly/studio``, or ``~/.local/share/painterly/studio``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "painterly" / "studio"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, so a kill never leaves half a file under its name."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def is_partial(path: Path) -> bool:
    """Whether ``path`` is the temporary file of an unfinished write (:func:`painterly.engine.images.atomic_path`)."""
    return path.name.startswith(".") and ".part." in path.name


class Store:
    """Rows of runs in SQLite, and their folders. Safe to call from several threads."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.runs = self.folder / RUNS_DIR
        self.runs.mkdir(parents=True, exist_ok=True)
        self.interrupted: list[dict[str, Any]] = []  # marked by the last recover()
        self._lock_handle = open(self.folder / LOCK_FILE, "w")
        try:
            fcntl.flock(self._lock_handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_handle.close()
            raise DataFolderBusy(f"another painterly studio is using the data folder {self.folder}") from None
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.folder / DB_FILE, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def folder_of(self, run_id: str) -> Path:
        return self.runs / run_id

    def save(self, state: dict[str, Any]) -> None:
        """Insert or replace one run's row (``state`` is what :meth:`load` gives back)."""
        row = (state["id"], state["created"], state["status"], state.get("finished"), state.get("disk_bytes", 0),
               json.dumps(state, separators=(",", ":")))
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO runs (id, created, status, finished, disk_bytes, state) "
                             "VALUES (?, ?, ?, ?, ?, ?)", row)

    def load(self, run_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT state FROM runs WHERE id = ?", (run_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def recent(self, limit: int, offset: int = 0, statuses: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """The ``limit`` newest runs after the ``offset`` newest, newest first; only those in ``statuses`` if given."""
        where, values = _status_filter(statuses)
        with self._lock:
            rows = self._db.execute(f"SELECT state FROM runs {where} ORDER BY created DESC LIMIT ? OFFSET ?",
                                    (*values, limit, offset)).fetchall()
        return [json.loads(state) for (state,) in rows]

    def count(self, statuses: tuple[str, ...] = ()) -> int:
        """How many runs there are (in ``statuses``, if given)."""
        where, values = _status_filter(statuses)
        with self._lock:
            return self._db.execute(f"SELECT COUNT(*) FROM runs {where}", values).fetchone()[0]

    def finished(self, statuses: tuple[str, ...]) -> list[tuple[str, float, int]]:
        """(id, finished, disk_bytes) of the runs in ``statuses``, oldest finished first."""
        marks = ",".join("?" * len(statuses))
        with self._lock:
            return self._db.execute(f"SELECT id, COALESCE(finished, created), disk_bytes FROM runs "
                                    f"WHERE status IN ({marks}) ORDER BY 2", statuses).fetchall()

    def disk_bytes(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COALESCE(SUM(disk_bytes), 0) FROM runs").fetchone()[0]

    def delete(self, run_id: str) -> None:
        """Forget a run and delete its folder."""
        with self._lock:
            self._db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        shutil.rmtree(self.folder_of(run_id), ignore_errors=True)

    def recover(self, when: float) -> list[dict[str, Any]]:
        """At start: mark runs that were going as interrupted, clean leftovers; returns the queued runs,
        oldest first. The runs it marked are in :attr:`interrupted` afterwards."""
        with self._lock:
            rows = self._db.execute("SELECT state FROM runs ORDER BY created").fetchall()
        known, queued = set(), []
        self.interrupted = []
        for (text,) in rows:
            state = json.loads(text)
            known.add(state["id"])
            if state["status"] == "running":
                state.update(status="interrupted", finished=when, eta=None,
                             error="the server stopped during this run; rerun it to start again")
                self.save(state)
                self.interrupted.append(state)
            elif state["status"] == "queued":
                queued.append(state)
        for path in list(self.runs.iterdir()):
            if path.name not in known:  # made by a server killed before it recorded the run
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
                continue
            for partial in filter(is_partial, path.iterdir()):
                partial.unlink(missing_ok=True)
        return queued

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._lock_handle.close()  # releases the flock


def _status_filter(statuses: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    if not statuses:
        return "", ()
    return f"WHERE status IN ({','.join('?' * len(statuses))})", statuses


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in _files(folder))


def _files(folder: Path) -> Iterator[Path]:
    if folder.is_dir():
        yield from (p for p in folder.iterdir() if p.is_file() and not is_partial(p))
