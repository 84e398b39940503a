"""Typed errors: every failure vecsift reports derives from :class:`VecsiftError`.

Callers can catch one base class, or the specific kind when they want to react
differently to bad input, a broken model directory or a failing backend.
"""

from __future__ import annotations


class VecsiftError(Exception):
    """Base class of every error vecsift raises on purpose."""


class EncodingError(VecsiftError, ValueError):
    """A tokenized input is malformed or does not fit the model (ids, lengths, mask)."""


class ModelLoadError(VecsiftError):
    """A model could not be found, read or understood (files, config, tensors)."""


class BackendError(VecsiftError):
    """A backend cannot be built or used as asked (device, driver, precision, cloning)."""


class UsageError(VecsiftError, ValueError):
    """An argument is out of range or of the wrong kind (batch size, worker count, paths)."""
