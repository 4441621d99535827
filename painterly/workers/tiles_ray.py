"""One picture's tiled scales on a Ray cluster (the ``ray`` extra): :class:`RayTiles`.

Each worker is a Ray actor that builds the network once and holds one :class:`painterly.engine.shards.Shard`
per tiled scale: its tiles' pixels and L-BFGS slice stay in it. The driver (:mod:`painterly.engine.cluster`)
sends each actor its start pixels once per scale, then per step only the terms' gradients in the
statistics and a few scalars; halo pieces go from actor to actor as object references, without the
driver fetching them. Each actor's state at a step's start is kept as an object reference the driver
holds and never fetches (it stays in the object store of the actor's node); when an actor dies mid-step,
a replacement is given those references and the step is done again. Ray is imported inside the
functions: painterly does not need it otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..engine.cluster import WorkerLost, check_cluster, describe_workers, nbytes, run_sharded, traffic_of
from ..engine.optimize import ScaleOutcome, StepReport
from ..engine.plan import Plan
from ..engine.settings import Settings
from ..engine.shards import Shard, ShardSpec
from ..engine.tiles import TiledGradient
from .ray_pool import actor_resources, connect, import_ray

#: Seconds to wait for an actor's answer when checking whether it is alive.
PING_SECONDS = 30.0


class ShardActor:
    """What runs inside each Ray actor: the network, built once per settings' cut and precision, and
    the shard of the scale being painted."""

    def __init__(self, threads: int) -> None:
        from ..engine.devices import setup_process
        from ..engine.run import Engine

        setup_process(threads)
        self.engine = Engine()
        self.shard: Shard | None = None

    def load(self, spec: ShardSpec) -> int:
        from ..engine.devices import pick_device
        from ..engine.objective import Objective

        device = pick_device(spec.device)
        net = self.engine.network(spec.settings, device, spec.precision)
        objective = Objective(net, [], torch.bfloat16 if spec.precision == "bf16" else None)
        layers = spec.layers
        self.shard = Shard(spec, lambda piece: objective.features(piece, layers), device)
        return spec.index

    def call(self, method: str, returns: int | None, *args: Any) -> Any:
        assert self.shard is not None, "load a shard first"
        value = getattr(self.shard, method)(*args)
        return value[0] if returns == 1 else value

    def ping(self) -> bool:
        return True


class RayShards:
    """A :class:`painterly.engine.cluster.ShardPool` of Ray actors, one per shard, each with ``cpus`` CPUs
    and ``gpus`` GPUs. Counts the bytes it sends by value and fetches (``traffic``)."""

    def __init__(self, ray: Any, cpus: int, gpus: float) -> None:
        self.ray, self.cpus = ray, cpus
        self.actor_class = ray.remote(num_cpus=cpus, num_gpus=gpus)(ShardActor)
        self.actors: list[Any] = []
        self.specs: list[Any] = []  # object references of each shard's spec
        self.traffic = {"sent": 0, "fetched": 0}
        self.replaced = 0

    def start(self, specs: Sequence[ShardSpec]) -> None:
        while len(self.actors) < len(specs):
            self.actors.append(self.actor_class.remote(self.cpus))
        self.traffic["sent"] += sum(nbytes(spec) for spec in specs)
        self.specs = [self.ray.put(spec) for spec in specs]
        try:
            self.get([actor.load.remote(spec) for actor, spec in zip(self.actors, self.specs)])
        except WorkerLost:  # one died since the last scale: its replacement loads its spec
            self.replace_lost()

    def call(self, shard: int, method: str, *args: Any, returns: int | None = None) -> Any:
        ref_type = self.ray.ObjectRef
        self.traffic["sent"] += nbytes([a for a in args if not isinstance(a, ref_type)])
        handle = self.actors[shard].call.options(num_returns=returns or 1).remote(method, returns, *args)
        return [handle] if returns == 1 else handle

    def get(self, handles: Sequence[Any]) -> list[Any]:
        from ray.exceptions import RayActorError, RayError

        try:
            values = self.ray.get(list(handles))
        except RayActorError:
            raise WorkerLost("a Ray actor died") from None
        except RayError:
            if self._dead():
                raise WorkerLost("a Ray actor died") from None
            raise
        self.traffic["fetched"] += nbytes(values)
        return values

    def _dead(self) -> list[int]:
        from ray.exceptions import GetTimeoutError, RayError

        dead = []
        for k, actor in enumerate(self.actors):
            try:
                self.ray.get(actor.ping.remote(), timeout=PING_SECONDS)
            except (RayError, GetTimeoutError):
                dead.append(k)
        return dead

    def replace_lost(self) -> list[int]:
        """A new actor for each dead one, given its shard's spec (the driver restores its state)."""
        lost = self._dead()
        for k in lost:
            self.ray.kill(self.actors[k])
            self.actors[k] = self.actor_class.remote(self.cpus)
            self.replaced += 1
        if lost:
            self.get([self.actors[k].load.remote(self.specs[k]) for k in lost])
        return lost

    def halo_bytes(self) -> int:
        return sum(self.get([self.call(k, "sent") for k in range(len(self.specs))]))

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors, self.specs = [], []


class RayTiles:
    """Paint the tiled scales of a run on a Ray cluster: ``painterly.stylize(..., cluster=RayTiles("auto"))``.

    ``address``: ``auto`` (``RAY_ADDRESS``, a cluster running here, else a new local one) or
    ``host:port``; joined here, so an unreachable address fails before any work. ``workers``: actors
    (default: one per GPU, else one per node); ``threads``: CPUs each (default: the cluster's shared
    out). ``device``: where each actor computes (``auto``: its GPU if it has one). ``traffic``: what
    the last tiled scale moved per step (see :func:`painterly.engine.cluster.traffic_of`). Close it (or use
    it in a ``with``) to stop the actors.
    """

    def __init__(self, address: str = "auto", workers: int | None = None, threads: int | None = None,
                 device: str = "auto") -> None:
        ray = import_ray()
        self.shutdown = connect(address)
        self.ray, self.device = ray, device
        gpus = int(ray.cluster_resources().get("GPU", 0))
        node_cpus = [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
        self.workers, cpus, per_gpu = actor_resources(node_cpus, gpus, workers, threads)
        self.pool = RayShards(ray, cpus, per_gpu)
        self.traffic: dict[str, float] = {}

    def run_scale(self, gradient: TiledGradient, start: torch.Tensor, settings: Settings, steps: int,
                  report: StepReport, history: int | None, precision: str) -> ScaleOutcome:
        check_cluster(settings)
        self.pool.traffic = {"sent": 0, "fetched": 0}
        outcome = run_sharded(self.pool, gradient, start, settings, steps, report, history, precision,
                              self.workers, self.device)
        self.traffic = traffic_of(self.pool.traffic, self.pool.halo_bytes(), outcome.steps_run, start)
        return outcome

    def describe(self, plan: Plan, precision: str = "fp32") -> list[str]:
        """The plan's tiled scales as this cluster shares them out (see :func:`describe_workers`)."""
        return describe_workers(plan, self.workers, precision)

    def close(self) -> None:
        self.pool.close()
        if self.shutdown:
            self.ray.shutdown()

    def __enter__(self) -> RayTiles:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
