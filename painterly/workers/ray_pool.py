"""The Ray backend of ``painterly batch``: the same jobs on a Ray cluster (the ``ray`` extra).

One actor per worker holds a :class:`~painterly.workers.painter.Painter` (its network and style targets)
and sets torch's threads to the CPUs Ray gave it; on a cluster with GPUs each actor asks for one.
The driver ships each job's input bytes to an actor and gets the encoded picture back (no shared
disk is assumed). Ray does not retry an actor's method when the actor dies, so the pool reports the
job as lost, the driver gives the job to the next free actor, and a replacement starts when needed.
Ray is imported inside the functions: painterly does not need it otherwise.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from ..errors import SettingsError
from .painter import Event, Painter

#: Seconds to wait for a named cluster's port before calling it unreachable.
CONNECT_TIMEOUT = 3.0
#: Seconds between asking the actors how far their jobs are.
STEP_POLL_SECONDS = 0.5
#: What ray.init is told wherever it is called: painterly prints its own progress.
QUIET = {"logging_level": "ERROR", "log_to_driver": False}


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SettingsError("--ray needs Ray, which is not installed: pip install 'painterly[ray]'") from None
    return ray


def connect(address: str) -> bool:
    """Join the cluster ``address`` names: ``auto`` (``RAY_ADDRESS``, a cluster running on this
    machine, else a new local one) or ``host:port`` / ``ray://host:port``. True when this call
    started Ray in this process (the pool shuts it down); an unreachable address is a
    :class:`SettingsError`, found before any work starts."""
    ray = import_ray()
    if address != "auto":
        check_reachable(address)
    elif os.environ.get("RAY_ADDRESS") and not ray.is_initialized():
        check_reachable(os.environ["RAY_ADDRESS"])
    if ray.is_initialized():
        return False
    try:
        # address=None: RAY_ADDRESS, else a cluster already running here, else a new one.
        ray.init(address=None if address == "auto" else address, **QUIET)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise SettingsError(f"cannot join the Ray cluster at {address}: {str(exc).splitlines()[0]}") from None
    return True


def check_reachable(address: str) -> None:
    """Something listens at ``address`` (``[ray://]host:port``); else one line saying what to do."""
    bare = address.removeprefix("ray://")
    host, _, port = bare.rpartition(":")
    if not host or not port.isdigit():
        raise SettingsError(f"--ray takes auto or host:port (such as 127.0.0.1:6379), got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SettingsError(f"cannot reach the Ray cluster at {address} ({reason}); start one with "
                            f"'ray start --head' and give its address, or use --ray auto") from None


def cpus_per_actor(node_cpus: list[int], actors: int) -> int:
    """The most CPUs each of ``actors`` actors can have with all of them fitting on the nodes."""
    for cpus in range(max(node_cpus, default=0), 0, -1):
        if sum(n // cpus for n in node_cpus) >= actors:
            return cpus
    raise SettingsError(f"the Ray cluster has {sum(node_cpus)} CPUs: too few for {actors} workers; "
                        f"use --workers {max(1, sum(node_cpus))} or fewer")


def actor_resources(node_cpus: list[int], gpus: int, workers: int | None,
                    threads: int | None) -> tuple[int, int, float]:
    """(actors, CPUs each, GPUs each) on a cluster whose live nodes have ``node_cpus`` CPUs and which
    has ``gpus`` GPUs: one actor per GPU (one GPU each), else one per node, unless ``workers`` says;
    the CPUs shared out so that every actor fits on some node, unless ``threads`` says."""
    actors = workers or gpus or max(1, sum(1 for c in node_cpus if c))
    if threads and sum(c // threads for c in node_cpus) < actors:
        raise SettingsError(f"{actors} Ray workers of {threads} threads do not fit on the cluster's nodes "
                            f"({', '.join(map(str, node_cpus))} CPUs)")
    cpus = threads or cpus_per_actor(node_cpus, actors)
    per_gpu = 0.0 if not gpus else 1.0 if gpus >= actors else gpus / actors  # more actors than GPUs: they share
    return actors, cpus, per_gpu


class PainterActor:
    """What runs inside each Ray actor (made remote by :class:`RayPool`, with a second thread so that
    :meth:`progress` answers while :meth:`paint` runs)."""

    def __init__(self, threads: int) -> None:
        from ..engine.devices import setup_process

        setup_process(threads)
        self.painter = Painter()
        self.step: tuple[int, int] | None = None

    def paint(self, work: Any) -> Event:
        self.step = None
        return self.painter.paint(work, self._note)

    def _note(self, progress: Any) -> None:
        self.step = (progress.step + 1, progress.total_steps)

    def progress(self) -> tuple[int, int] | None:
        """(step, steps) of the job running now, or None."""
        return self.step


class RayPool:
    """``workers`` actors (default: one per GPU, else one per node), each with ``threads`` CPUs
    (default: the cluster's CPUs shared out so that all of them fit)."""

    def __init__(self, workers: int | None = None, threads: int | None = None, shutdown: bool = False) -> None:
        ray = import_ray()
        self.ray, self.shutdown = ray, shutdown
        gpus = int(ray.cluster_resources().get("GPU", 0))
        node_cpus = [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
        self.size, self.cpus, self.gpus = actor_resources(node_cpus, gpus, workers, threads)
        self.actor_class = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_concurrency=2)(PainterActor)
        self.actors: list[Any] = []  # started as jobs arrive: a batch with nothing to do starts none
        self.idle: list[Any] = []
        self.in_flight: dict[Any, tuple[Any, int]] = {}  # object ref -> (actor, job)
        self.asked: dict[Any, int] = {}  # progress() ref -> job
        self.last_asked = 0.0

    def submit(self, work: Any) -> None:
        if self.idle:
            actor = self.idle.pop()
        else:
            actor = self.actor_class.remote(self.cpus)
            self.actors.append(actor)
        self.in_flight[actor.paint.remote(work)] = (actor, work.job)

    def wait(self, timeout: float) -> list[Event]:
        refs = list(self.in_flight)
        if not refs:
            time.sleep(timeout)
            return []
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        return [*self._steps(), *(self._collect(ref) for ref in ready)]

    def _steps(self) -> list[Event]:
        """The running jobs' steps, asked for about once a second and collected without waiting."""
        from ray.exceptions import RayError

        events: list[Event] = []
        if self.asked:
            answered, _ = self.ray.wait(list(self.asked), num_returns=len(self.asked), timeout=0)
            for ref in answered:
                job = self.asked.pop(ref)
                try:
                    step = self.ray.get(ref)
                except RayError:  # the actor died: its job is reported lost by _collect
                    continue
                if step is not None:
                    events.append(("step", job, step[0], step[1]))
        if not self.asked and time.monotonic() - self.last_asked > STEP_POLL_SECONDS:
            self.last_asked = time.monotonic()
            self.asked = {actor.progress.remote(): job for actor, job in self.in_flight.values()}
        return events

    def _collect(self, ref: Any) -> Event:
        from ray.exceptions import RayActorError, RayError

        actor, job = self.in_flight.pop(ref)
        try:
            event = self.ray.get(ref)
        except RayActorError:
            self.actors.remove(actor)  # the next job starts a replacement
            return ("lost", job, "the Ray actor running it died", None)
        except RayError as exc:
            self.idle.append(actor)
            return ("failed", job, f"Ray: {str(exc).strip().splitlines()[0]}", None)
        self.idle.append(actor)
        return event

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors, self.idle, self.in_flight = [], [], {}
        if self.shutdown:
            self.ray.shutdown()
