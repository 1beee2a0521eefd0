"""``python -m explain robustness``: accuracy against ε per attack, a CSV, a PNG plot and sanity checks.

Examples::

    python -m explain robustness --model shapes_cnn --attack fgsm,pgd --eps 0,1/255,2/255,4/255,8/255,16/255
    python -m explain robustness --model path/to/my_models.py:make_bundle --eps 0,8/255 --memory-budget 64M
"""

from __future__ import annotations

import argparse
import sys
import time
from fractions import Fraction
from pathlib import Path

import jax

from explain.adversarial.attacks import AttackConfig
from explain.adversarial.evaluation import LABEL_CHOICES, evaluate_robustness, format_report, plot, write_csv
from explain.cli import _args

ATTACKS = ("fgsm", "bim", "pgd")


def parse_eps(text: str) -> list[float]:
    """``"0,1/255,0.1"`` -> ``[0.0, 0.0039…, 0.1]``."""
    try:
        values = [float(Fraction(t.strip())) for t in text.split(",") if t.strip()]
    except (ValueError, ZeroDivisionError, OverflowError):
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of numbers or fractions like 8/255, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one eps")
    if min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected eps >= 0, got {min(values)!r}")
    return values


def parse_attacks(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in ATTACKS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown attack(s) {bad}; expected a comma-separated subset of {list(ATTACKS)}"
        )
    return names


def attack_configs(names: list[str], *, norm: str, steps: int, restarts: int) -> dict[str, AttackConfig]:
    """The name -> config table (the only one: the command line is the edge)."""
    table = {
        "fgsm": AttackConfig("fgsm", norm=norm, steps=1, random_start=False),
        "bim": AttackConfig("pgd", norm=norm, steps=steps, random_start=False),
        "pgd": AttackConfig("pgd", norm=norm, steps=steps, random_start=True, restarts=restarts),
    }
    return {n: table[n] for n in names}


def add_arguments(p: argparse.ArgumentParser) -> None:
    _args.add_model(p, example="shapes_cnn or my_models.py:make_bundle (a classifier with a test split)")
    p.add_argument("--attack", type=parse_attacks, default=["fgsm", "pgd"], help="comma-separated: fgsm,bim,pgd")
    p.add_argument(
        "--eps", type=parse_eps, default=parse_eps("0,1/255,2/255,4/255,8/255,16/255"), help="comma-separated ε grid"
    )
    p.add_argument("--norm", choices=("linf", "l2"), default="linf")
    p.add_argument("--steps", type=int, default=20, help="iterations of BIM/PGD (default 20)")
    p.add_argument("--restarts", type=int, default=1, help="PGD random restarts (worst case kept)")
    p.add_argument("--n", type=int, default=512, help="test images to evaluate (the first N)")
    p.add_argument(
        "--label-source",
        choices=LABEL_CHOICES,
        default="predictions",
        help="what the attacks move away from: the model's predictions (default, no label leaking) or the true labels",
    )
    p.add_argument("--seed", type=int, default=0)
    _args.add_memory_budget(p)
    p.add_argument("--out", type=Path, default=None, help="output folder (default robustness/MODEL)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a sanity check fails")


def run(args: argparse.Namespace) -> int:
    from explain import specs

    if args.steps < 1 or args.restarts < 1 or args.n < 1:
        print("error: --steps, --restarts and --n must be >= 1", file=sys.stderr)
        return 2
    bundle = specs.resolve(args.model)
    if bundle.model.output_kind != "classification":
        print(f"error: {args.model} is a regression model; robustness here needs a classifier", file=sys.stderr)
        return 2
    test = bundle.split("test", command="robustness")
    x, y = test.x[: args.n], test.y[: args.n]
    out = args.out or Path("robustness") / bundle.stem
    configs = attack_configs(args.attack, norm=args.norm, steps=args.steps, restarts=args.restarts)
    t0 = time.perf_counter()
    report = evaluate_robustness(
        bundle.model,
        x,
        labels=y,
        attacks=configs,
        eps=args.eps,
        key=jax.random.key(args.seed),
        label_source=args.label_source,
        memory_budget=args.memory_budget,
        show_progress=True,
    )
    seconds = time.perf_counter() - t0
    csv_path = write_csv(report, out / "robustness.csv")
    png_path = plot(report, out / "robustness.png")
    print(format_report(report))
    for c in report.failed:
        print(f"WARNING: sanity check {c.name} failed: {c.detail}", file=sys.stderr)
    print(f"{len(x)} images, {seconds:.1f}s -> {csv_path}, {png_path}")
    return 1 if (args.strict and report.failed) else 0
