"""``python -m explain sensitivity``: the ranked feature table of a tabular model, with intervals.

Example::

    python -m explain sensitivity --model friedman1_mlp --method grad --top 10 --out results.csv --plot bars.png
"""

from __future__ import annotations

import argparse
import dataclasses
import io
from pathlib import Path

import numpy as np

from explain.io import atomic_write_bytes

OUT_SUFFIXES = (".csv", ".json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from explain.sensitivity.local import METHODS

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
    parser.add_argument("--rows", type=int, help="use the first ROWS rows only (at least 2)")
    parser.add_argument("--bootstraps", type=int, default=200)
    parser.add_argument("--top-k", type=int, default=5, help="k of the rank-stability share (default 5)")
    parser.add_argument("--repeats", type=int, default=5, help="permutation-importance shuffles; 0 skips it")
    parser.add_argument("--ig-steps", type=int, default=50)
    parser.add_argument(
        "--ig-baseline",
        choices=("mean", "zero"),
        default="mean",
        help="IG baseline: the training split's feature means (default) or zero",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the explicit PRNG key")


def check_args(args: argparse.Namespace) -> None:
    """Every option checked before loading a model or computing anything; ``SystemExit`` names the bad one."""
    if args.out is not None and args.out.suffix.lower() not in OUT_SUFFIXES:
        raise SystemExit(f"--out must end in .csv or .json; got {str(args.out)!r}")
    if args.plot is not None and args.plot.suffix.lower() != ".png":
        raise SystemExit(f"--plot must end in .png; got {str(args.plot)!r}")
    minimums = {"--top": 1, "--bootstraps": 1, "--top-k": 1, "--repeats": 0, "--ig-steps": 1, "--rows": 2}
    for flag, low in minimums.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None and value < low:
            raise SystemExit(f"{flag} must be >= {low}; got {value}")
    if args.label_column is not None and args.data is None:
        raise SystemExit("--label-column needs --data (the shipped splits carry their labels)")


def plot_bars(result, method: str, top: int, path: Path) -> None:
    """Horizontal bars of ``method``'s top features with their intervals as error bars, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = result[method]
    order = r.order()[:top][::-1]  # best at the top
    names = [result.feature_names[i] for i in order]
    err = np.stack([r.scores[order] - r.lower[order], r.upper[order] - r.scores[order]])
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(order) + 1.2))
    try:
        ax.barh(names, r.scores[order], xerr=np.clip(err, 0, None), color="#4c78a8", ecolor="#333333", capsize=3)
        level = round(100 * result.settings["ci"])
        ax.set_xlabel(f"{r.description}, {level}% bootstrap interval")
        ax.set_title(f"{result.settings['model']}: {result.settings['target']}")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def run(args: argparse.Namespace) -> int:
    check_args(args)
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
    # grad and gxi share one backward pass, so both are always computed.
    methods = tuple(dict.fromkeys([args.method, "grad", "gxi"]))
    reference = np.asarray(bundle.dataset.train.x).mean(axis=0) if args.ig_baseline == "mean" else None
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
        reference=reference if "ig" in methods else None,
        ig_steps=args.ig_steps,
    )
    if "ig" in methods:
        source = "the training split's feature means" if reference is not None else "zero"
        settings = {**result.settings, "ig_baseline_source": source}
        result = dataclasses.replace(result, settings=settings)
        print(f"IG baseline: {source}")
    shown = [args.method, "permutation"] if args.repeats else args.method
    print(result.table(shown, top=args.top))
    if args.out is not None:
        result.save(args.out)
        print(f"\nwrote {args.out}")
    if args.plot is not None:
        plot_bars(result, args.method, args.top, args.plot)
        print(f"wrote {args.plot}")
    return 0
