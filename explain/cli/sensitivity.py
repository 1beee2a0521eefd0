"""``python -m explain sensitivity``: the ranked feature table of a tabular model, with intervals.

Examples::

    python -m explain sensitivity --model friedman1_mlp --method vanilla_gradient --top 10 --out results.csv --plot bars.png
    python -m explain sensitivity --model path/to/my_models.py:make --data rows.csv --method gradient_x_input
"""

from __future__ import annotations

import argparse
import dataclasses
import io
from pathlib import Path

import numpy as np

from explain.cli import _args
from explain.io import atomic_write_bytes

OUT_SUFFIXES = (".csv", ".json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from explain.sensitivity.local import BASELINES, METHODS

    _args.add_model(parser, example="friedman1_mlp, breast_cancer_mlp or my_models.py:make (a tabular model)")
    parser.add_argument(
        "--method", choices=METHODS, default=METHODS[0], help=f"gradient ranking to show (default {METHODS[0]})"
    )
    parser.add_argument("--top", type=int, default=10, help="features to print (default 10)")
    parser.add_argument("--out", type=Path, help="write the full table to .csv or .json")
    parser.add_argument("--plot", type=Path, nargs="?", const=Path("sensitivity.png"), help="bar chart PNG path")
    parser.add_argument(
        "--target",
        choices=("output", "loss", "loss:ce", "loss:cw", "loss:dlr", "loss:mse"),
        default="output",
        help="model output (default) or a loss vs labels: the model's own (loss), or a named kind (loss:cw ...)",
    )
    parser.add_argument("--data", type=Path, help="CSV with a header; columns matched to the model's features by name")
    parser.add_argument("--label-column", help="label column of --data (needed for --target loss)")
    parser.add_argument(
        "--split", choices=("train", "val", "test"), default="test", help="the model's own split (default test)"
    )
    parser.add_argument("--rows", type=int, help="use the first ROWS rows only (at least 2)")
    parser.add_argument("--n-bootstrap", type=int, default=200, help="bootstrap resamples of the rows (default 200)")
    parser.add_argument("--top-k", type=int, default=5, help="k of the rank-stability share (default 5)")
    parser.add_argument(
        "--permutation-samples", type=int, default=5,
        help="permutations per feature for permutation importance; 0 skips it (default 5)",
    )  # fmt: skip
    parser.add_argument("--steps", type=int, default=50, help="integrated_gradients steps (default 50)")
    parser.add_argument(
        "--baseline", choices=BASELINES, default=BASELINES[0],
        help="integrated_gradients baseline: the training split's feature means (default) or zero",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the explicit PRNG key")
    _args.add_memory_budget(parser)


def check_args(args: argparse.Namespace) -> None:
    """Every option checked before loading a model or computing anything; ``SystemExit`` names the bad one."""
    if args.out is not None and args.out.suffix.lower() not in OUT_SUFFIXES:
        raise SystemExit(f"--out must end in .csv or .json; got {str(args.out)!r}")
    if args.plot is not None and args.plot.suffix.lower() != ".png":
        raise SystemExit(f"--plot must end in .png; got {str(args.plot)!r}")
    minimums = {"--top": 1, "--n-bootstrap": 1, "--top-k": 1, "--permutation-samples": 0, "--steps": 1, "--rows": 2}
    for flag, low in minimums.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None and value < low:
            raise SystemExit(f"{flag} must be >= {low}; got {value}")
    if args.label_column is not None and args.data is None:
        raise SystemExit("--label-column needs --data (the model's own splits carry their labels)")


def plot_bars(result, method: str, top: int, path: Path) -> None:
    """Horizontal bars of ``method``'s top features with their intervals as error bars, written atomically."""
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

    from explain import sensitivity, specs
    from explain.sensitivity.global_ import PERMUTATION

    bundle = specs.resolve(args.model)
    spec = bundle.model.input_spec
    if not spec.is_tabular:
        raise SystemExit(f"--model must be a tabular model (rows of features); {args.model!r} takes {spec.describe()}")
    # vanilla_gradient and gradient_x_input share one backward pass, so both are always computed.
    methods = tuple(dict.fromkeys([args.method, "vanilla_gradient", "gradient_x_input"]))
    ig = "integrated_gradients" in methods
    mean_baseline = ig and args.baseline == "mean"
    references = None
    if mean_baseline:
        train = getattr(bundle.dataset, "train", None)
        if train is None or not hasattr(train, "x"):
            raise SystemExit(
                f"--baseline mean takes the feature means of the training split, and {args.model!r} comes with "
                "no dataset.train.x; pass --baseline zero or return a bundle with .dataset from the factory"
            )
        references = np.asarray(train.x)
    if args.data is not None:
        x, labels = sensitivity.read_csv(args.data, bundle.model, label_column=args.label_column)
    else:
        split = bundle.split(args.split, command="sensitivity")
        x, labels = split.x, split.y
    if args.rows is not None:
        x, labels = x[: args.rows], None if labels is None else labels[: args.rows]
    result = sensitivity.rank(
        bundle.model, x, key=jax.random.key(args.seed), target=None if args.target == "output" else args.target,
        labels=labels, methods=methods, n_bootstrap=args.n_bootstrap, top_k=args.top_k,
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
        plot_bars(result, args.method, args.top, args.plot)
        print(f"wrote {args.plot}")
    return 0
