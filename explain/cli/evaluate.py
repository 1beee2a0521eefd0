"""``python -m explain evaluate``: which map can I trust? Explanation-quality metrics per saliency method.

Examples (the default metrics for every method on 256 test images of ``shapes``, with its object masks;
a few methods and metrics; your own images, which carry no masks)::

    python -m explain evaluate --model shapes_cnn --n 256
    python -m explain evaluate --model shapes_cnn --n 64 --methods integrated_gradients smoothgrad grad_cam --metrics deletion_auc relevance_mass pointing_game
    python -m explain evaluate --model digits_cnn --metrics deletion_auc insertion_auc max_sensitivity --out report/
    python -m explain evaluate --model shapes_cnn --data my_images/ --n 32 --methods vanilla_gradient grad_cam

Prints one table (a row per method, a column per metric with ↑ "higher is better" or ↓ "lower is
better" in its header, then the maps' seconds per batch and their cost as a multiple of one forward
pass) and writes ``evaluate.csv``, ``evaluate.json`` and the ``evaluate.png`` report card (each
column coloured by rank) to ``--out``. The maps explain the predicted class (a regression model's
output). Localisation metrics
need object masks: the model's own test split's ``mask`` when it has one (``shapes``), never with
``--data``; without masks they are left out and the table says so. The same ``--seed`` gives the
same numbers (the dashboard's "Which map to trust" page computes them the same way).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from explain.cli import _args, _choices, _inputs

DEFAULT_OUT = Path("evaluate")  # the outputs go to DEFAULT_OUT / the model's name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _args.add_model(parser, example="shapes_cnn or my_models.py:make_bundle")
    _inputs.add_data(parser)
    parser.add_argument("--n", type=_args.at_least(1), default=256, help="inputs to evaluate: the first N")
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=_choices.SALIENCY_METHODS,
        default=None,
        metavar="METHOD",
        help=f"saliency methods, one row each (default: every one the model can run of "
        f"{', '.join(_choices.SALIENCY_METHODS)})",
    )
    parser.add_argument(
        "--metrics",
        nargs="+",
        choices=_choices.METRICS,
        default=None,
        metavar="METRIC",
        help=f"metrics, one column each, of {', '.join(_choices.METRICS)} (default: {', '.join(_choices.DEFAULT_METRICS)}; "
        "stability and randomisation rerun each method, about 10x its cost)",
    )
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed of the methods and the metrics")
    _args.add_memory_budget(parser)
    parser.add_argument(
        "--out",
        type=_args.out_folder,
        default=None,
        help=f"output folder, created when missing (default: {DEFAULT_OUT}/MODEL)",
    )


def run(args: argparse.Namespace) -> int:
    _inputs.check_data_args(args)
    if args.out is None:
        _args.checked(_args.out_folder, str(DEFAULT_OUT), "--out")
    import jax
    import numpy as np

    from explain import specs
    from explain.metrics import report as report_lib
    from explain.saliency import registry

    bundle = specs.resolve(args.model)
    model = bundle.model
    for name in args.methods or ():
        try:
            registry.get(name).check_model(model)  # e.g. Grad-CAM on a model without layers
        except ValueError as e:
            raise _args.UsageError(str(e)) from None
    inputs = _inputs.load_inputs(args, bundle, command="evaluate", limit=args.n)
    n = len(inputs.x)
    if n < args.n:
        print(f"evaluating all {n} inputs of {inputs.source} (--n {args.n})", file=sys.stderr)
    masks = None
    if args.data is None:
        own = getattr(bundle.split("test", command="evaluate"), "mask", None)
        masks = None if own is None else np.asarray(own[:n], bool)
    report = report_lib.evaluate(
        model,
        np.asarray(inputs.x, np.float32),
        methods=args.methods,
        metrics=args.metrics,
        masks=masks,
        key=jax.random.key(args.seed),
        memory_budget=args.memory_budget,
        show_progress=True,
    )
    report = _named(report, bundle.name, args.seed)
    print(format_table(report, source=inputs.source))
    paths = report_lib.write(report, args.out or DEFAULT_OUT / bundle.stem)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _named(report, name: str, seed: int):
    """The report under the spec's name and the command's seed (what the files and the card show)."""
    import dataclasses

    return dataclasses.replace(report, model=name, seed=seed)


def format_table(report, *, source: str) -> str:
    """The table for the terminal, with what the last two columns mean and the metrics left out."""
    import pandas

    frame = report.to_frame().rename(columns={"seconds": "s/batch (↓)", "cost": "cost × fwd (↓)"})
    with pandas.option_context("display.width", 250, "display.max_columns", None):
        table = frame.to_string(float_format=lambda v: f"{v:.4g}")
    lines = [
        f"{report.model}: {report.n} inputs from {source}, seed {report.seed}",
        table,
        f"s/batch: seconds for the maps of all {report.n} inputs, compilation excluded; "
        "cost × fwd: that over one forward pass of them",
    ]
    lines += [f"left out {name}: {why}" for name, why in report.skipped.items()]
    return "\n".join(lines)
