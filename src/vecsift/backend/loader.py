"""`load_backend` and `detect_backends`: from a model name to ready backends."""

from __future__ import annotations

import importlib.util
import warnings

from vecsift.backend.arch import ARCHITECTURES
from vecsift.backend.contract import EmbedBackend
from vecsift.backend.driver.base import Driver
from vecsift.backend.driver.numpy_driver import NumpyDriver
from vecsift.backend.generic import GenericBackend
from vecsift.errors import BackendError, ModelLoadError
from vecsift.models.config import load_model_files
from vecsift.models.resolve import DEFAULT_MODEL
from vecsift.models.weights import SafetensorsWeights

#: (kind, driver) → precisions that combination supports
SUPPORTED = {("cpu", "numpy"): ("fp32",)}
KINDS = ("auto", "cpu", "cuda")


def _pick_driver(kind: str, driver: str | None, precision: str) -> Driver:
    if kind not in KINDS:
        raise BackendError(f"unknown backend kind {kind!r}; choose one of {list(KINDS)}")
    if kind == "cuda":
        raise BackendError(
            "kind='cuda' needs a GPU driver (torch), which this version of vecsift does not provide yet; "
            f"supported (kind, driver): {sorted(SUPPORTED)}"
        )
    name = driver or "numpy"  # the only CPU driver so far, so also the fastest available
    if ("cpu", name) not in SUPPORTED:
        raise BackendError(
            f"unknown driver {driver!r} for kind {kind!r}; supported (kind, driver): {sorted(SUPPORTED)}"
        )
    if precision not in SUPPORTED[("cpu", name)]:
        combos = ", ".join(f"{k}/{d}: {list(p)}" for (k, d), p in SUPPORTED.items())
        raise BackendError(f"precision {precision!r} is not supported by the {name} driver; supported: {combos}")
    return NumpyDriver()


def load_backend(
    kind: str = "cpu",
    model: str = DEFAULT_MODEL,
    device: str = "auto",
    driver: str | None = None,
    precision: str = "fp32",
) -> EmbedBackend:
    """A backend for ``model`` on ``kind`` hardware.

    ``model`` is a local directory, the bundled ``all-MiniLM-L6-v2`` or a hub id
    from the local cache. The architecture comes from config.json's ``model_type``.
    """
    if device not in ("auto", "cpu"):
        raise BackendError(f"device {device!r} is not available for kind {kind!r}; use 'auto' or 'cpu'")
    chosen = _pick_driver(kind, driver, precision)
    files = load_model_files(model)
    arch_class = ARCHITECTURES.get(files.model_type)
    if arch_class is None:
        raise ModelLoadError(
            f"model_type {files.model_type!r} in {files.directory / 'config.json'} is not supported; "
            f"supported: {sorted(ARCHITECTURES)}"
        )
    weights = SafetensorsWeights(files.weights_path)
    arch = arch_class(files, weights, chosen)
    return GenericBackend(chosen, arch, arch.max_positions, chosen.is_gpu, weights)


def cuda_available() -> bool:
    """Whether torch is installed and sees a CUDA device (torch is imported only if installed)."""
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def detect_backends(model: str = DEFAULT_MODEL, precision: str | None = None) -> list[EmbedBackend]:
    """Every backend worth running here: GPU ones first, CPU only when no GPU loaded (as ripvec does).

    A GPU that is present but cannot be used is reported with a warning, not hidden.
    """
    backends: list[EmbedBackend] = []
    if cuda_available():
        try:
            backends.append(load_backend("cuda", model, precision=precision or "fp32"))
        except BackendError as err:
            warnings.warn(f"a CUDA device is present but no CUDA backend could be loaded: {err}", stacklevel=2)
    if not backends:
        backends.append(load_backend("cpu", model, precision=precision or "fp32"))
    return backends
