"""Scheduling: spreading batches over backends and worker threads, in batch or streaming form."""

from vecsift.scheduling.distributed import embed_distributed
from vecsift.scheduling.stream import EmbeddingStream, embed_stream
from vecsift.scheduling.threads import default_workers
from vecsift.scheduling.workers import GPU_CLAIM_UNITS, RING_SIZE

__all__ = ["GPU_CLAIM_UNITS", "RING_SIZE", "EmbeddingStream", "default_workers", "embed_distributed", "embed_stream"]
