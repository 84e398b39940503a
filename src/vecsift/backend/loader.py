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

KINDS = ("auto", "cpu", "cuda")


def torch_installed() -> bool:
    """Whether the optional torch dependency can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def supported() -> dict[tuple[str, str], tuple[str, ...]]:
    """(kind, driver) → precisions, for the drivers importable here."""
    table: dict[tuple[str, str], tuple[str, ...]] = {("cpu", "numpy"): ("fp32",)}
    if torch_installed():
        from vecsift.backend.driver.torch_driver import PRECISIONS as TORCH

        table.update({("cpu", "torch"): TORCH["cpu"], ("cuda", "torch"): TORCH["cuda"]})
    return table


def default_driver(kind: str, precision: str) -> str:
    """The rule for ``driver=None``: the fastest driver here for that kind and precision.

    CUDA and every reduced precision: torch (the only driver that has them). CPU fp32:
    torch when it is installed (fused attention and GELU, MKL GEMMs: ~1.45× the NumPy driver on the
    development machine, see benchmarks/RESULTS.md), else NumPy.
    """
    if kind == "cuda" or precision != "fp32":
        return "torch"
    return "torch" if torch_installed() else "numpy"


def _pick_driver(kind: str, driver: str | None, precision: str, device: str) -> Driver:
    if kind not in KINDS:
        raise BackendError(f"unknown backend kind {kind!r}; choose one of {list(KINDS)}")
    kind = "cpu" if kind == "auto" else kind
    name = driver or default_driver(kind, precision)
    if (kind, name, precision) == ("cpu", "numpy", "fp32") and device in ("auto", "cpu"):
        return NumpyDriver()  # decided without `supported()`, which imports torch when it is installed
    table = supported()
    combos = ", ".join(f"{k}/{d}: {list(p)}" for (k, d), p in table.items())
    if (kind, name) not in table:
        hint = " (install the torch extra: pip install 'vecsift[torch]')" if name == "torch" or kind == "cuda" else ""
        raise BackendError(f"no driver {name!r} for kind {kind!r}{hint}; supported: {combos}")
    if precision not in table[(kind, name)]:
        raise BackendError(f"precision {precision!r} is not supported by the {name} driver on {kind}; "
                           f"supported: {combos}")
    if name == "numpy":
        if device not in ("auto", "cpu"):
            raise BackendError(f"device {device!r} is not available for kind {kind!r}; use 'auto' or 'cpu'")
        return NumpyDriver()
    from vecsift.backend.driver.torch_driver import TorchDriver

    target = device if device != "auto" else kind
    if torch_device_type(target) != kind:
        raise BackendError(f"device {device!r} does not match kind {kind!r}")
    return TorchDriver(target, precision)


def torch_device_type(device: str) -> str:
    import torch

    try:
        return torch.device(device).type
    except RuntimeError as err:
        raise BackendError(f"device {device!r} is not a valid torch device: {err}") from err


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
    chosen = _pick_driver(kind, driver, precision, device)
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
    if not torch_installed():
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
