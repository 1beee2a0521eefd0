"""``python -m explain export``: a model as a :mod:`jax.export` artifact folder, loadable without its code.

The folder (see :mod:`explain.exported`) holds ``model.stablehlo`` (the function and its VJPs), ``params.npz``,
``data.npz`` (the first ``--samples`` test rows, when the model comes with data) and ``model.json``. Every
command takes the folder as ``--model``; methods that need the model's layers (Grad-CAM, Guided Backprop,
layer gradients, gradient flow) refuse it, saying why.

Examples (a shipped model; a user's factory with gradients only; then the artifact as any command's model)::

    python -m explain export --model shapes_cnn --out artifacts/shapes_cnn
    python -m explain export --model path/to/my_models.py:make_bundle --out artifacts/mine --vjp-order 1
    python -m explain saliency --model artifacts/shapes_cnn --methods vanilla_gradient integrated_gradients
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from explain.cli import _args

_SAMPLES = 8  # explain.exported.SAMPLES, repeated so that --help imports no JAX
_METADATA = "model.json"  # explain.exported.METADATA, likewise


def empty_out_folder(text: str) -> Path:
    """A ``type=`` validator: :func:`explain.cli._args.out_folder` that is also empty (an artifact is never
    written over another folder's files), checked while parsing, before the model is loaded."""
    path = _args.out_folder(text)
    if path.is_dir() and any(path.iterdir()):
        what = "an artifact" if (path / _METADATA).is_file() else "files"
        raise argparse.ArgumentTypeError(f"{text!r} is not empty (it holds {what}); expected a new or empty folder")
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _args.add_model(parser, example="shapes_cnn or my_models.py:make_bundle")
    parser.add_argument(
        "--out",
        type=empty_out_folder,
        required=True,
        metavar="DIR",
        help="the artifact folder: new or empty (created when missing)",
    )
    parser.add_argument(
        "--vjp-order",
        type=_args.at_least(1),
        default=2,
        metavar="N",
        help="reverse-mode derivative levels serialized with the function: 1 for gradients, "
        "2 also for Hessian-vector products (sensitivity interactions)",
    )
    parser.add_argument(
        "--samples",
        type=_args.at_least(0),
        default=_SAMPLES,
        metavar="N",
        help="rows of the model's test split kept in data.npz, the commands' inputs without --data; 0 for none",
    )


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1024:.0f} KiB" if n_bytes < 2**20 else f"{n_bytes / 2**20:.1f} MiB"


def run(args: argparse.Namespace) -> int:
    from explain import exported

    t0 = time.perf_counter()
    out = exported.export(args.model, args.out, vjp_order=args.vjp_order, samples=args.samples)
    seconds = time.perf_counter() - t0
    meta = exported.read_metadata(out / exported.METADATA)
    files = ", ".join(f"{name} ({_size(entry['bytes'])})" for name, entry in meta["files"].items())
    print(f"exported {meta['name']!r} in {seconds:.1f} s", file=sys.stderr)
    print(f"wrote {out}: {files}, {exported.METADATA}; use it as --model {out}")
    return 0
