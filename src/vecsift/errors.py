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


def is_int(value: object) -> bool:
    """Whether ``value`` is an integer in the JSON and API sense: an ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(name: str, value: object) -> int:
    """``value`` if it is an integer ≥ 1 (bools refused), else a :class:`UsageError` naming ``name``."""
    if not is_int(value) or value < 1:
        raise UsageError(f"{name} must be a positive integer, got {value!r}")
    return value


class SearchIndexError(VecsiftError):
    """A search index cannot be used as asked (not built yet, busy, wrong location, unwritable)."""


class IndexCorruptError(SearchIndexError):
    """An index file is damaged, truncated or not vecsift's: rebuild it (``vecsift index --rebuild``)."""


class IndexBusyError(SearchIndexError):
    """Another process is writing the index and the caller chose not to wait."""
