"""Command-line option helpers shared by every subcommand."""

from __future__ import annotations

import argparse

from vecsift.models.resolve import DEFAULT_MODEL


def positive_int(value: str) -> int:
    """An argparse type: an integer ≥ 1, with a message that names the value (not this function)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {number}")
    return number


def add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "-m", default=DEFAULT_MODEL,
                        help="model directory, bundled name or hub id (default: %(default)s)")
