"""Fitting vecsift to a Ray cluster: how many actors, what each reserves, and the ``map_batches`` call."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import ray
from ray.data import ActorPoolStrategy, Dataset

from vecsift.errors import UsageError, positive_int
from vecsift.models.resolve import DEFAULT_MODEL
from vecsift.ray.embed_batches import EmbedBatches

#: rows per ``map_batches`` call: enough for vecsift to sort by length and pack, small enough to stream
CPU_ROWS_PER_CALL = 256
GPU_ROWS_PER_CALL = 1024
#: logical CPUs a node keeps free of embedding actors, so read and write tasks (which ask for one by default)
#: are never starved; the actor's threads still use every core
CPUS_LEFT_FOR_IO = 1.0


@dataclass(frozen=True)
class ActorPlan:
    """What ``map_batches`` asks of the cluster for embedding."""

    actors: int
    #: logical CPUs and GPUs each actor reserves (fractional CPUs leave room for readers and writers)
    cpus_per_actor: float
    gpus_per_actor: float
    #: vecsift worker threads inside each CPU actor (None: the engine's default)
    workers: int | None
    #: rows handed to one call of the embedding actor
    rows_per_call: int

    def map_batches_options(self) -> dict[str, Any]:
        return {"compute": ActorPoolStrategy(size=self.actors), "num_cpus": self.cpus_per_actor,
                "num_gpus": self.gpus_per_actor, "batch_size": self.rows_per_call}


def plan_actors(kind: str = "cpu", *, actors: int | None = None, workers: int | None = None,
                rows_per_call: int | None = None) -> ActorPlan:
    """A plan for the connected cluster: one actor per GPU (``kind="cuda"``), or one actor per CPU node running
    vecsift's worker pool over that node's cores. ``actors``/``workers`` override the counts."""
    for name, value in (("actors", actors), ("workers", workers), ("rows_per_call", rows_per_call)):
        if value is not None:
            positive_int(name, value)
    if not ray.is_initialized():
        raise UsageError("Ray is not initialized: call ray.init() (or pass --address) before planning actors")
    resources = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    if kind == "cuda":
        gpus = int(sum(r.get("GPU", 0) for r in resources))
        if gpus == 0:
            raise UsageError("the Ray cluster has no GPUs; use kind='cpu' (--backend cpu)")
        return ActorPlan(actors or gpus, 1.0, 1.0, workers, rows_per_call or GPU_ROWS_PER_CALL)
    if kind != "cpu":
        raise UsageError(f"Ray actors run kind 'cpu' or 'cuda', got {kind!r}")
    node_cpus = [r["CPU"] for r in resources if r.get("CPU", 0) > 0]
    if not node_cpus:
        raise UsageError("the Ray cluster has no CPUs")
    actors = actors or len(node_cpus)
    per_node = math.ceil(actors / len(node_cpus))
    smallest = min(node_cpus)
    return ActorPlan(actors, _cpus_per_actor(smallest, per_node), 0.0, workers or max(1, int(smallest) // per_node),
                     rows_per_call or CPU_ROWS_PER_CALL)


def _cpus_per_actor(node_cpus: float, actors_per_node: int) -> float:
    """What each actor reserves so that :data:`CPUS_LEFT_FOR_IO` stays free (half the node on a 1-CPU node)."""
    free = node_cpus - CPUS_LEFT_FOR_IO if node_cpus > CPUS_LEFT_FOR_IO else node_cpus / 2
    return round(free / actors_per_node, 3)


def embed_dataset(
    dataset: Dataset,
    model: str = DEFAULT_MODEL,
    *,
    text_column: str = "text",
    embedding_column: str = "embedding",
    id_column: str | None = "id",
    kind: str = "cpu",
    plan: ActorPlan | None = None,
    **engine: Any,
) -> Dataset:
    """``dataset`` with ``embedding_column`` added (``fixed_size_list<float32>[dim]``), lazily, as Ray Data does.
    ``engine``: :class:`vecsift.Embedder`'s other options (``driver``, ``precision``, ``batch_size``,
    ``max_tokens``); the plan decides ``workers``."""
    plan = plan or plan_actors(kind)
    options = {"model": model, "text_column": text_column, "embedding_column": embedding_column,
               "id_column": id_column, "kind": kind, "workers": plan.workers, **engine}
    return dataset.map_batches(EmbedBatches, fn_constructor_kwargs=options, batch_format="pyarrow",
                               **plan.map_batches_options())
