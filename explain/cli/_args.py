"""What every command shares: the help format, argument validators, ``--model``, ``--memory-budget``, output paths.

Importing this module must not import JAX (``--help`` answers from it): names come from
:mod:`explain.cli._choices` and :func:`explain.specs.shipped_names`, everything heavy is imported by a
command's ``run``.

Bad arguments are reported the argparse way, ``python -m explain COMMAND: error: ...`` and exit status 2:
a ``type=`` validator raises :class:`argparse.ArgumentTypeError` while parsing; a check that needs several
arguments, or the loaded model, raises :class:`UsageError`, which :func:`explain.__main__.main` hands to the
command's ``parser.error``.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

from explain import specs
from explain.cli import _choices


class UsageError(ValueError):
    """A bad argument found after parsing (possibly only once the model or the data is loaded); one line."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Every default shown as ``(default: X)``; options defaulting to ``None`` or ``False`` say what that means
    in their own words instead of ``(default: None)``. The description (the module's examples) is kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def checked(validate: Callable[[str], Any], value: str, flag: str) -> Any:
    """``validate(value)`` outside argparse (a computed default): its error as a :class:`UsageError` naming ``flag``."""
    try:
        return validate(value)
    except argparse.ArgumentTypeError as e:
        raise UsageError(f"argument {flag}: {e}") from None


_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}


def parse_bytes(text: str) -> int:
    """``"268435456"``, ``"256M"``, ``"256MiB"`` or ``"1G"`` -> bytes (binary units; a positive whole number)."""
    m = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)(?:i?[bB])?\s*", text)
    if m is None or int(m.group(1)) < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive number of bytes such as 268435456, 256M or 1G, got {text!r}"
        )
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def at_least(low: int) -> Callable[[str], int]:
    """A ``type=`` validator: a whole number ``>= low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {value}")
        return value

    parse.__name__ = f"int >= {low}"
    return parse


def positive_float(text: str) -> float:
    """A ``type=`` validator: a finite number ``> 0``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}") from None
    if not 0.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def names_from(choices: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """A ``type=`` validator: a comma-separated, non-empty subset of ``choices`` (order kept, repeats dropped)."""

    def parse(text: str) -> tuple[str, ...]:
        names = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
        bad = [n for n in names if n not in choices]
        if bad or not names:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated subset of {','.join(choices)}, got {text!r}"
                + (f" (unknown: {', '.join(bad)})" if bad else "")
            )
        return names

    parse.__name__ = "names"
    return parse


def unit_interval(text: str) -> float:
    """A ``type=`` validator: a number in ``[0, 1]`` (a fraction such as ``3/5`` too)."""
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value:g}")
    return value


def _writable_folder(folder: Path, text: str) -> None:
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{str(folder)!r} (the folder of {text!r}) does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write into folder {str(folder)!r} (of {text!r}): permission denied")


def out_file(*suffixes: str) -> Callable[[str], Path]:
    """A ``type=`` validator for an output file: one of ``suffixes`` (any case), not an existing folder,
    in a folder that exists and is writable. Checked while parsing, so before anything is loaded."""
    wanted = " or ".join(suffixes)

    def parse(text: str) -> Path:
        path = Path(text).expanduser()
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{text!r} is a folder; expected a file name ending in {wanted}")
        if path.suffix.lower() not in suffixes:
            raise argparse.ArgumentTypeError(f"expected a file name ending in {wanted}, got {text!r}")
        _writable_folder(path.parent, text)
        return path

    parse.__name__ = f"{wanted} path"
    return parse


def out_folder(text: str) -> Path:
    """A ``type=`` validator for an output folder, created (with its parents) when missing: not an existing
    file, and its nearest existing ancestor a writable folder."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file; expected a folder (created when missing)")
    existing = next(p for p in (path, *path.parents) if p.exists())  # ends at "/" or "." at the latest
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{str(existing)!r} (on the way to {text!r}) is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot create {text!r}: folder {str(existing)!r} is not writable")
    return path


def model_help(example: str) -> str:
    """The ``--model`` help: the spec forms and the shipped names (read without importing JAX)."""
    names = specs.shipped_names()
    shipped = f"shipped: {', '.join(names)}" if names else "no shipped models installed"
    return f"{specs.HELP}; {shipped}; e.g. {example}"


def add_model(
    parser: argparse.ArgumentParser, *, example: str, default: str | None = None, required: bool = True
) -> argparse.Action:
    """``--model``: resolved by :func:`explain.specs.resolve` in ``run``."""
    return parser.add_argument(
        "--model", default=default, required=required and default is None, metavar="SPEC", help=model_help(example)
    )


def add_memory_budget(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--memory-budget",
        type=parse_bytes,
        default=None,
        metavar="BYTES",
        help=f"working set per compiled call, e.g. 64M or 1G (default: {_choices.MEMORY_BUDGET // 2**20}M)",
    )


def require_image(model: Any, spec: str, command: str) -> None:
    """:class:`UsageError` unless ``model`` takes images ``(N, H, W, C)``."""
    if len(model.input_spec.shape) != 3:
        raise UsageError(
            f"{command} needs an image model (inputs (N, H, W, C)); model {spec!r} takes {model.input_spec.describe()}"
        )


def require_tabular(model: Any, spec: str, command: str) -> None:
    """:class:`UsageError` unless ``model`` takes rows of features ``(N, F)``."""
    if len(model.input_spec.shape) != 1:
        raise UsageError(
            f"{command} needs a tabular model (rows of features, (N, F)); model {spec!r} takes "
            f"{model.input_spec.describe()}"
        )
