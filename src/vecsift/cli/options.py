"""Command-line option helpers shared by every subcommand."""

from __future__ import annotations

import argparse

from vecsift.models.resolve import DEFAULT_MODEL


def int_at_least(minimum: int):
    """An argparse type: an integer ≥ ``minimum``, with a message that names the value (not this function)."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer ≥ {minimum}, got {value!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be ≥ {minimum}, got {number}")
        return number

    return parse


positive_int = int_at_least(1)
#: truncation lengths: room for the two special tokens at least (the library's own rule)
token_limit = int_at_least(2)


def add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "-m", default=DEFAULT_MODEL,
                        help="model directory, bundled name or hub id (default: %(default)s)")
