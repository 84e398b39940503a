"""Architectures: each model family's forward pass, written once over Driver primitives."""

from vecsift.backend.arch.base import ModelArch
from vecsift.backend.arch.classic_bert import ClassicBert
from vecsift.backend.arch.modern_bert import ModernBert

#: config.json ``model_type`` → architecture (the same keys as ``vecsift.models.arch_config.ARCH_CONFIGS``)
ARCHITECTURES: dict[str, type[ModelArch]] = {"bert": ClassicBert, "modernbert": ModernBert}

__all__ = ["ARCHITECTURES", "ClassicBert", "ModelArch", "ModernBert"]
