"""vecsift on Ray Data: the same engine, the same vectors, on every actor of a Ray cluster.

``ds.map_batches(EmbedBatches, ...)`` turns a text column into a fixed-size float32 embedding column;
:func:`embed_dataset` applies it with defaults that fit the cluster (one actor per node on CPUs, each
running vecsift's worker pool; one actor per GPU). Needs the ``vecsift[ray]`` extra.
"""

from vecsift.ray.dataset import ActorPlan, embed_dataset, plan_actors
from vecsift.ray.embed_batches import EmbedBatches

__all__ = ["ActorPlan", "EmbedBatches", "embed_dataset", "plan_actors"]
