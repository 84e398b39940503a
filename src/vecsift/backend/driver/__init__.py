"""Drivers: hardware-specific implementations of the compute primitives."""

from vecsift.backend.driver.base import Driver
from vecsift.backend.driver.numpy_driver import NumpyDriver

__all__ = ["Driver", "NumpyDriver"]
