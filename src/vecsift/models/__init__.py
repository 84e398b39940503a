"""Finding models and reading their files: resolution, configuration, weights."""

from vecsift.models.config import ModelFiles, load_model_files
from vecsift.models.resolve import DEFAULT_MODEL, bundled_model_dir, resolve_model_dir
from vecsift.models.weights import SafetensorsWeights

__all__ = [
    "DEFAULT_MODEL",
    "ModelFiles",
    "SafetensorsWeights",
    "bundled_model_dir",
    "load_model_files",
    "resolve_model_dir",
]
