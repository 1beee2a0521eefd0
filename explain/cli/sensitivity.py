"""``python -m explain sensitivity``: the ranked feature table of a tabular model, with intervals.

Examples::

    python -m explain sensitivity --model friedman1_mlp --method vanilla_gradient --top 10 --out results.csv --plot bars.png
    python -m explain sensitivity --model path/to/my_models.py:make --data rows.csv --method gradient_x_input
    python -m explain sensitivity --model breast_cancer_mlp --data rows.parquet --label-column label --target loss
"""

from __future__ import annotations

import argparse
import dataclasses
import io
from pathlib import Path

from explain.cli import _args, _choices, _inputs
from explain.io import atomic_write_bytes

OUT_SUFFIXES = (".csv", ".json")
PLOT_PATH = "sensitivity.png"
TOP_K = 5


TARGETS = ("output", "loss", "loss:ce", "loss:cw", "loss:dlr", "loss:mse")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    methods, baselines = _choices.SENSITIVITY_METHODS, _choices.SENSITIVITY_BASELINES
    _args.add_model(parser, example="friedman1_mlp, breast_cancer_mlp or my_models.py:make (a tabular model)")
    parser.add_argument("--method", choices=methods, default=methods[0], help="gradient ranking to show")
    parser.add_argument("--top", type=_args.at_least(1), default=10, help="features to print")
    parser.add_argument(
        "--out", type=_args.out_file(*OUT_SUFFIXES), help="write the full table to .csv or .json (default: print only)"
    )
    parser.add_argument(
        "--plot", type=_args.out_file(".png"), nargs="?", const=PLOT_PATH, default=None,
        help=f"bar chart PNG path, {PLOT_PATH} when given without one (default: no chart)",
    )  # fmt: skip
    parser.add_argument(
        "--target",
        choices=TARGETS,
        default="output",
        help="model output or a loss vs labels: the model's own (loss), or a named kind (loss:cw ...)",
    )
    _inputs.add_data(parser, split="split chosen by --split", labels="needed for --target loss")
    parser.add_argument("--split", choices=("train", "val", "test"), default="test", help="the model's own split")
    parser.add_argument(
        "--rows", type=_args.at_least(2), help="use the first ROWS rows only, at least 2 (default: all rows)"
    )
    parser.add_argument("--n-bootstrap", type=_args.at_least(1), default=200, help="bootstrap resamples of the rows")
    parser.add_argument(
        "--top-k",
        type=_args.at_least(1),
        default=None,
        help=f"k of the rank-stability share, at most the number of features (default: {TOP_K}, or every feature "
        "when the model has fewer)",
    )
    parser.add_argument(
        "--permutation-samples", type=_args.at_least(0), default=5,
        help="permutations per feature for permutation importance; 0 skips it",
    )  # fmt: skip
    parser.add_argument("--steps", type=_args.at_least(1), default=50, help="integrated_gradients steps")
    parser.add_argument(
        "--baseline", choices=baselines, default=baselines[0],
        help="integrated_gradients baseline: the training split's feature means or zero",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the explicit PRNG key")
    _args.add_memory_budget(parser)


def check_args(args: argparse.Namespace) -> None:
    """The checks that span several options, before loading a model or computing anything."""
    _inputs.check_data_args(args)
    if args.plot == PLOT_PATH:  # argparse does not pass a const through type=
        _args.checked(_args.out_file(".png"), PLOT_PATH, "--plot")


def plot_bars(result, method: str, top: int, path: Path) -> None:
    """Horizontal bars of ``method``'s top features with their intervals as error bars, written atomically."""
    import numpy as np
    from matplotlib.figure import Figure  # the object-oriented API: no backend, no pyplot state

    r = result[method]
    scores, lower, upper = (np.asarray(a) for a in (r.scores, r.lower, r.upper))
    order = r.order()[:top][::-1]  # best at the top
    names = [result.feature_names[i] for i in order]
    err = np.stack([scores[order] - lower[order], upper[order] - scores[order]])
    fig = Figure(figsize=(7, 0.35 * len(order) + 1.2))
    ax = fig.subplots()
    ax.barh(names, scores[order], xerr=np.clip(err, 0, None), color="#4c78a8", ecolor="#333333", capsize=3)
    level = round(100 * result.settings["ci"])
    ax.set_xlabel(f"{r.description}, {level}% bootstrap interval")
    ax.set_title(f"{result.settings['model']}: {result.settings['target']}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    atomic_write_bytes(path, buf.getvalue())


def run(args: argparse.Namespace) -> int:
    check_args(args)
    import jax
    import numpy as np

    from explain import sensitivity, specs
    from explain.sensitivity.global_ import PERMUTATION

    bundle = specs.resolve(args.model)
    _args.require_tabular(bundle.model, args.model, "sensitivity")
    features = bundle.model.input_spec.shape[0]
    if args.top_k is not None and args.top_k > features:
        raise _args.UsageError(f"--top-k {args.top_k} exceeds the {features} features of model {args.model!r}")
    top_k = min(TOP_K, features) if args.top_k is None else args.top_k
    # vanilla_gradient and gradient_x_input share one backward pass, so both are always computed.
    methods = tuple(dict.fromkeys([args.method, "vanilla_gradient", "gradient_x_input"]))
    ig = "integrated_gradients" in methods
    mean_baseline = ig and args.baseline == "mean"
    references = None
    if mean_baseline:
        train = getattr(bundle.dataset, "train", None)
        if train is None or not hasattr(train, "x"):
            raise _args.UsageError(
                f"--baseline mean takes the feature means of the training split, and {args.model!r} comes with "
                "no dataset.train.x; pass --baseline zero or return a bundle with .dataset from the factory"
            )
        references = np.asarray(train.x)
    need_labels = None if args.target == "output" else f"--target {args.target}"
    inputs = _inputs.load_inputs(
        args, bundle, command="sensitivity", limit=args.rows, split=args.split, need_labels=need_labels
    )
    if len(inputs.x) < 2:
        raise _args.UsageError(
            f"sensitivity needs at least 2 rows for its intervals; {inputs.source} has {len(inputs.x)}"
        )
    result = sensitivity.rank(
        bundle.model, inputs.x, key=jax.random.key(args.seed), target=None if args.target == "output" else args.target,
        labels=inputs.labels, methods=methods, n_bootstrap=args.n_bootstrap, top_k=top_k,
        permutation_samples=args.permutation_samples, baseline=args.baseline, references=references,
        steps=args.steps, memory_budget=args.memory_budget, show_progress=True,
    )  # fmt: skip
    if ig:
        source = "the training split's feature means" if mean_baseline else "zero"
        result = dataclasses.replace(result, settings={**result.settings, "baseline_source": source})
        print(f"integrated_gradients baseline: {source}")
    shown = [args.method, PERMUTATION] if args.permutation_samples else args.method
    print(result.table(shown, top=args.top))
    if args.out is not None:
        result.save(args.out)
        print(f"\nwrote {args.out}")
    if args.plot is not None:
        plot_bars(result, args.method, args.top, Path(args.plot))
        print(f"wrote {args.plot}")
    return 0
