"""Scheduling: spreading batches over backends and worker threads."""

from vecsift.scheduling.distributed import default_workers, embed_distributed

__all__ = ["default_workers", "embed_distributed"]
