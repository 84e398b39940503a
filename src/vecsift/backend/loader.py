"""`load_backend` and `detect_backends`: from a model name to ready backends."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from types import ModuleType

from vecsift.backend.arch import ARCHITECTURES
from vecsift.backend.contract import EmbedBackend
from vecsift.backend.driver.base import Driver
from vecsift.backend.driver.numpy_driver import NumpyDriver
from vecsift.backend.generic import GenericBackend
from vecsift.backend.precision import AUTO, PROBE_TEXTS, SUPPORT, PrecisionChoice, check_supported, choose_precision
from vecsift.errors import BackendError
from vecsift.interrupts import interrupts_held
from vecsift.models.arch_config import arch_config
from vecsift.models.config import ModelFiles, load_model_files
from vecsift.models.resolve import DEFAULT_MODEL
from vecsift.models.weights import SafetensorsWeights
from vecsift.tokenizer import tokenizer_for

#: hardware kinds: ``auto`` is the GPU when one is usable, else the CPU (what :func:`detect_backends` picks first)
KINDS = ("auto", "cpu", "cuda")
DRIVERS = ("numpy", "torch")


def torch_installed() -> bool:
    """Whether the optional torch dependency can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def import_torch() -> ModuleType:
    """torch, imported with SIGINT and SIGTERM held back until the import is done (a signal handled inside
    torch's native import code aborts the interpreter: :mod:`vecsift.interrupts`); held back, it arrives a
    moment later as an ordinary KeyboardInterrupt, and the command exits 130 or 143 as at any other moment."""
    if "torch" in sys.modules:
        import torch

        return torch
    with interrupts_held():
        import torch
    return torch


def supported() -> dict[tuple[str, str], tuple[str, ...]]:
    """(kind, driver) → precisions, for the drivers importable here."""
    return {combo: precisions for combo, precisions in SUPPORT.items() if combo[1] != "torch" or torch_installed()}


def default_driver(kind: str, precision: str) -> str:
    """The rule for ``driver=None``: the fastest driver here for that kind and precision.

    CUDA and every reduced precision: torch (the only driver that has them). CPU fp32:
    torch when it is installed (fused attention and GELU, MKL GEMMs: ~1.45× the NumPy driver on the
    development machine, see benchmarks/RESULTS.md), else NumPy.
    """
    if kind == "cuda" or precision != "fp32":
        return "torch"
    return "torch" if torch_installed() else "numpy"


def resolve_kind(kind: str) -> str:
    """``kind`` checked; ``auto`` becomes ``cuda`` when a CUDA device is usable, else ``cpu``."""
    if kind not in KINDS:
        raise BackendError(f"unknown backend kind {kind!r}; choose one of {list(KINDS)}")
    if kind == "auto":
        return "cuda" if cuda_available() else "cpu"
    return kind


def _pick_driver(kind: str, driver: str | None, precision: str, device: str) -> Driver:
    name = driver or default_driver(kind, precision)
    if (kind, name, precision) == ("cpu", "numpy", "fp32") and device in ("auto", "cpu"):
        return NumpyDriver()  # decided without importing torch
    if name not in DRIVERS or (name == "torch" and not torch_installed()):
        hint = " (install the torch extra: pip install 'vecsift[torch]')" if name == "torch" else ""
        raise BackendError(f"no driver {name!r} for kind {kind!r}{hint}; drivers: {list(DRIVERS)}")
    check_supported(kind, name, precision)
    if name == "numpy":
        if device not in ("auto", "cpu"):
            raise BackendError(f"device {device!r} is not available for kind {kind!r}; use 'auto' or 'cpu'")
        return NumpyDriver()
    import_torch()
    from vecsift.backend.driver.torch import TorchDriver

    target = device if device != "auto" else kind
    if torch_device_type(target) != kind:
        raise BackendError(f"device {device!r} does not match kind {kind!r}")
    return TorchDriver(target, precision)


def torch_device_type(device: str) -> str:
    torch = import_torch()
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
    """A backend for ``model`` on ``kind`` hardware (``auto``: the GPU when one is usable, else the CPU).

    ``model`` is a local directory, the bundled ``all-MiniLM-L6-v2`` or a hub id
    from the local cache. The architecture comes from config.json's ``model_type``.
    ``precision="auto"``: see :mod:`vecsift.backend.precision` (the choice and its reason are in
    ``describe()``).
    """
    kind = resolve_kind(kind)
    files = load_model_files(model)
    config = arch_config(files)  # an unsupported model_type or a bad config fails before the weights are read
    choice = None
    if precision == AUTO:
        choice = auto_precision(kind, model, files, driver)
        precision = choice.precision
    chosen = _pick_driver(kind, driver, precision, device)
    weights = SafetensorsWeights(files.weights_path)
    arch = ARCHITECTURES[files.model_type](files, config, weights, chosen)
    return GenericBackend(chosen, arch, chosen.is_gpu, weights, precision_choice=choice)


def auto_precision(kind: str, model: str, files: ModelFiles | None = None,
                   driver: str | None = None) -> PrecisionChoice:
    """What ``precision="auto"`` runs ``model`` in on ``kind`` (with ``driver``, when one is asked for) here,
    probed once per machine and model."""
    kind = resolve_kind(kind)
    if driver == "numpy":
        return PrecisionChoice("fp32", "the NumPy driver runs fp32 only")
    files = files or load_model_files(model)
    weights = files.weights_path.stat()
    model_key = f"{files.directory}|{weights.st_size}|{weights.st_mtime_ns}"

    def probe(candidate: str) -> float:
        reference = load_backend(kind, model, precision="fp32", driver="torch")
        tokenizer = tokenizer_for(files)
        encodings = tokenizer.encode(list(PROBE_TEXTS))
        fp32 = reference.embed_batch(encodings)
        reduced = load_backend(kind, model, precision=candidate).embed_batch(encodings)
        return float((fp32 * reduced).sum(axis=1).min())

    def bf16_speedup() -> float:
        import_torch()
        from vecsift.backend.driver.torch import ops

        return ops.bf16_gemm_speedup()

    return choose_precision(kind, torch_installed(), model_key, probe, bf16_speedup)


def cuda_available() -> bool:
    """Whether torch is installed and sees a CUDA device (torch is imported only if installed)."""
    if not torch_installed():
        return False
    return bool(import_torch().cuda.is_available())


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
