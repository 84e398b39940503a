"""The ``vecsift`` command line."""

from vecsift.cli.main import main

__all__ = ["main"]
