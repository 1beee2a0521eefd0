"""``python -m explain sensitivity``: the ranked feature table of a tabular model, with intervals.

Example::

    python -m explain sensitivity --model friedman1_mlp --method grad --top 10 --out results.csv --plot bars.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

METHODS = ("grad", "gxi", "ig")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a shipped tabular model, e.g. friedman1_mlp, breast_cancer_mlp")
    parser.add_argument("--method", choices=METHODS, default="grad", help="gradient ranking to show (default grad)")
    parser.add_argument("--top", type=int, default=10, help="features to print (default 10)")
    parser.add_argument("--out", type=Path, help="write the full table to .csv or .json")
    parser.add_argument("--plot", type=Path, nargs="?", const=Path("sensitivity.png"), help="bar chart PNG path")
    parser.add_argument(
        "--target", choices=("output", "loss"), default="output", help="model output (default) or loss vs labels"
    )
    parser.add_argument("--data", type=Path, help="CSV with a header; columns matched to the model's features by name")
    parser.add_argument("--label-column", help="label column of --data (needed for --target loss)")
    parser.add_argument(
        "--split", choices=("train", "val", "test"), default="test", help="shipped split (default test)"
    )
    parser.add_argument("--rows", type=int, help="use the first ROWS rows only")
    parser.add_argument("--bootstraps", type=int, default=200)
    parser.add_argument("--top-k", type=int, default=5, help="k of the rank-stability share (default 5)")
    parser.add_argument("--repeats", type=int, default=5, help="permutation-importance shuffles; 0 skips it")
    parser.add_argument("--ig-steps", type=int, default=50)
    parser.add_argument("--ig-baseline", choices=("mean", "zero"), default="mean")
    parser.add_argument("--seed", type=int, default=0, help="seed of the explicit PRNG key")


def plot_bars(result, method: str, top: int, path: Path) -> None:
    """Horizontal bars of ``method``'s top features with their intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = result[method]
    order = r.order()[:top][::-1]  # best at the top
    names = [result.feature_names[i] for i in order]
    err = np.stack([r.scores[order] - r.lower[order], r.upper[order] - r.scores[order]])
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(order) + 1.2))
    ax.barh(names, r.scores[order], xerr=np.clip(err, 0, None), color="#4c78a8", ecolor="#333333", capsize=3)
    level = round(100 * result.settings["ci"])
    ax.set_xlabel(f"{r.description}, {level}% bootstrap interval")
    ax.set_title(f"{result.settings['model']}: {result.settings['target']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    import jax

    from explain import sensitivity
    from models import registry

    if args.model not in registry.TABULAR_MODELS:
        raise SystemExit(f"--model must be a tabular model, one of {list(registry.TABULAR_MODELS)}; got {args.model!r}")
    bundle = registry.load(args.model)
    if args.data is not None:
        x, labels = sensitivity.read_csv(args.data, bundle.model, label_column=args.label_column)
    else:
        split = getattr(bundle.dataset, args.split)
        x, labels = split.x, split.y
    if args.rows is not None:
        x, labels = x[: args.rows], None if labels is None else labels[: args.rows]
    methods = tuple(dict.fromkeys([args.method, *METHODS[:2]]))  # grad and gxi share one backward pass
    result = sensitivity.rank(
        bundle.model,
        x,
        key=jax.random.key(args.seed),
        target="loss" if args.target == "loss" else None,
        labels=labels,
        methods=methods,
        n_bootstrap=args.bootstraps,
        top_k=args.top_k,
        permutation_repeats=args.repeats,
        ig_baseline=args.ig_baseline,
        ig_steps=args.ig_steps,
    )
    print(result.table(args.method, top=args.top))
    if args.repeats:
        print("\n" + result.table("permutation", top=args.top))
    if args.out is not None:
        result.save(args.out)
        print(f"\nwrote {args.out}")
    if args.plot is not None:
        plot_bars(result, args.method, args.top, args.plot)
        print(f"wrote {args.plot}")
    return 0
