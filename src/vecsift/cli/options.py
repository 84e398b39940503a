"""Command-line option helpers shared by every subcommand."""

from __future__ import annotations

import argparse

from vecsift.backend.loader import DRIVERS, KINDS
from vecsift.backend.precision import AUTO, PRECISIONS
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


def add_engine_options(parser: argparse.ArgumentParser, precision: str) -> None:
    """The engine's options, with choices taken from the loader's and the precision module's tables: one
    list of each, wherever it is offered. ``--backend`` is ``load_backend``'s ``kind`` (``args.kind``)."""
    add_model_option(parser)
    parser.add_argument("--backend", dest="kind", metavar="KIND", default="cpu", choices=KINDS,
                        help=f"hardware, one of {', '.join(KINDS)} (default: cpu; auto: the GPU when one is usable)")
    parser.add_argument("--driver", default=None, choices=DRIVERS,
                        help="compute driver (default: the fastest available for the precision)")
    parser.add_argument("--precision", default=precision, choices=(AUTO, *PRECISIONS),
                        help=f"{AUTO}: bf16 where it runs fast in hardware (AMX / AVX-512 BF16 CPUs whose bf16 "
                             f"GEMMs beat fp32's, GPUs) and passes a probe against fp32, else fp32; bf16 and int8 on "
                             f"CPU, bf16 and fp16 on CUDA (torch driver) (default: {precision})")
