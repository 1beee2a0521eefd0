"""``--data PATH`` and ``--label-column``: a command's inputs from the user's files, else from the model's own split.

The files are read by :func:`explain.data.load` (a folder of images with ImageFolder labels, one image,
``.npy``, ``.npz``, ``.csv``, ``.parquet``), imported only when ``--data`` is given. Importing this module
imports nothing heavy (``--help`` reads :func:`add_data`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from explain.cli._args import UsageError

DATA_HELP = (
    "inputs from your files instead of the model's own split: a folder of images (labels from one subfolder "
    "per class, named as the model's classes), one image, .npy, .npz (x, optional y), or .csv / .parquet with "
    "a header naming the model's features (default: the model's own {split})"
)
HOW_TO_LABEL = (
    "put the images in one subfolder per class (named as the model's classes or 0..K-1), give an .npz with "
    "arrays x and y, or name the label column of a .csv / .parquet with --label-column"
)
_SHOWN_SKIPS = 3


@dataclasses.dataclass(frozen=True)
class Inputs:
    """A command's inputs.

    Attributes:
      x: ``(N, *input_spec.shape)``.
      labels: ``(N,)`` or ``None`` (``--data`` without labels).
      class_names: the model's, else the data's, else ``None``.
      ids: per row, a file or ``"row i"`` (``--data``), else ``None``.
      source: what the inputs are, for messages ("--data rows.csv", "the test split of shapes_cnn").
    """

    x: Any
    labels: Any
    class_names: tuple[str, ...] | None
    ids: tuple[str, ...] | None
    source: str


def data_path(text: str) -> Path:
    """A ``type=`` validator: an existing file or folder (its contents are checked once the model is loaded)."""
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file or folder {text!r}")
    return path


def add_data(parser: argparse.ArgumentParser, *, split: str = "test split", labels: str = "") -> None:
    """``--data PATH`` and ``--label-column COLUMN``; ``labels`` says what the labels are used for."""
    parser.add_argument("--data", type=data_path, metavar="PATH", help=DATA_HELP.format(split=split))
    parser.add_argument(
        "--label-column",
        metavar="COLUMN",
        help=f"the label column of a --data .csv / .parquet{f' ({labels})' if labels else ''}; other columns are "
        "matched to the model's features by name (default: none, no labels from a table)",
    )


def check_data_args(args: argparse.Namespace) -> None:
    """Before anything is loaded: ``--label-column`` only with ``--data``."""
    if args.label_column is not None and args.data is None:
        raise UsageError("--label-column needs --data (the model's own splits carry their labels)")


def report_skipped(skipped: tuple[tuple[str, str], ...], source: Any) -> None:
    """The count of files that could not be used, and the first reasons, on stderr."""
    if not skipped:
        return
    print(f"--data {source}: skipped {len(skipped)} file(s) that could not be used:", file=sys.stderr)
    for path, reason in skipped[:_SHOWN_SKIPS]:
        print(f"  {path}: {reason}", file=sys.stderr)
    if len(skipped) > _SHOWN_SKIPS:
        print(f"  ... and {len(skipped) - _SHOWN_SKIPS} more", file=sys.stderr)


def load_inputs(
    args: argparse.Namespace,
    bundle: Any,
    *,
    command: str,
    limit: int | None = None,
    split: str = "test",
    need_labels: str | None = None,
) -> Inputs:
    """The first ``limit`` inputs (all when ``None``): from ``args.data`` when given, else ``bundle``'s ``split``.

    ``need_labels``, when given, names what needs labels (e.g. "--target loss"): data without labels is then
    refused with a :class:`UsageError` saying how to give them. The model's own split always has labels.
    """
    if args.data is None:
        own = bundle.split(split, command=command)
        return Inputs(own.x[:limit], own.y[:limit], bundle.class_names, None, f"the {split} split of {bundle.name}")
    from explain import data as data_lib

    data = data_lib.load(args.data, bundle, label_column=args.label_column, limit=limit)
    report_skipped(data.skipped, args.data)
    if need_labels is not None and data.labels is None:
        raise UsageError(f"{need_labels} needs labels and --data {str(args.data)!r} has none: {HOW_TO_LABEL}")
    class_names = bundle.class_names or data.class_names
    return Inputs(data.x, data.labels, class_names, data.ids, f"--data {args.data}")
