"""Options every command shares: ``--model`` (a spec, see :mod:`explain.specs`) and ``--memory-budget``."""

from __future__ import annotations

import argparse
import re

from explain import specs

_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}


def parse_bytes(text: str) -> int:
    """``"268435456"``, ``"256M"``, ``"256MiB"`` or ``"1G"`` -> bytes (binary units; a positive whole number)."""
    m = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)(?:i?[bB])?\s*", text)
    if m is None or int(m.group(1)) < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive number of bytes such as 268435456, 256M or 1G, got {text!r}"
        )
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def add_model(
    parser: argparse.ArgumentParser, *, example: str, default: str | None = None, required: bool = True
) -> None:
    """``--model``: resolved by :func:`explain.specs.resolve`."""
    default_text = f" (default {default})" if default else ""
    parser.add_argument(
        "--model",
        default=default,
        required=required and default is None,
        metavar="SPEC",
        help=f"{specs.HELP}; e.g. {example}{default_text}",
    )


def add_memory_budget(parser: argparse.ArgumentParser) -> None:
    from explain.chunking import MEMORY_BUDGET

    parser.add_argument(
        "--memory-budget",
        type=parse_bytes,
        default=None,
        metavar="BYTES",
        help=f"working set per compiled call, e.g. 64M or 1G (default {MEMORY_BUDGET // 2**20}M)",
    )
