"""``python -m explain robustness``: accuracy against ε per attack, a CSV, a PNG plot and sanity checks.

Example::

    python -m explain robustness --model shapes_cnn --attack fgsm,pgd --eps 0,1/255,2/255,4/255,8/255,16/255
"""

from __future__ import annotations

import argparse
import sys
import time
from fractions import Fraction
from pathlib import Path

import jax

from explain.adversarial.attacks import AttackConfig
from explain.adversarial.evaluation import evaluate_robustness, format_report, plot, write_csv

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
    p.add_argument("--model", required=True, help="a shipped classification model, e.g. shapes_cnn")
    p.add_argument("--attack", type=parse_attacks, default=["fgsm", "pgd"], help="comma-separated: fgsm,bim,pgd")
    p.add_argument(
        "--eps", type=parse_eps, default=parse_eps("0,1/255,2/255,4/255,8/255,16/255"), help="comma-separated ε grid"
    )
    p.add_argument("--norm", choices=("linf", "l2"), default="linf")
    p.add_argument("--steps", type=int, default=20, help="iterations of BIM/PGD (default 20)")
    p.add_argument("--restarts", type=int, default=1, help="PGD random restarts (worst case kept)")
    p.add_argument("--n", type=int, default=512, help="test images to evaluate (the first N)")
    p.add_argument(
        "--labels",
        choices=("predictions", "ground-truth"),
        default="predictions",
        help="labels the attacks move away from",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="output folder (default robustness/MODEL)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a sanity check fails")


def run(args: argparse.Namespace) -> int:
    import models  # the edge: names become objects here

    if args.steps < 1 or args.restarts < 1 or args.n < 1 or (args.batch_size is not None and args.batch_size < 1):
        print("error: --steps, --restarts, --n and --batch-size must be >= 1", file=sys.stderr)
        return 2
    if args.model not in models.SPECS:
        print(f"error: unknown model {args.model!r}; expected one of {sorted(models.SPECS)}", file=sys.stderr)
        return 2
    bundle = models.load(args.model)
    if bundle.model.output_kind != "classification":
        print(f"error: {args.model} is a regression model; robustness here needs a classifier", file=sys.stderr)
        return 2
    test = bundle.dataset.test
    x, y = test.x[: args.n], test.y[: args.n]
    out = args.out or Path("robustness") / args.model
    configs = attack_configs(args.attack, norm=args.norm, steps=args.steps, restarts=args.restarts)
    t0 = time.perf_counter()
    report = evaluate_robustness(
        bundle.model,
        x,
        y,
        attacks=configs,
        eps=args.eps,
        key=jax.random.key(args.seed),
        label_source="labels" if args.labels == "ground-truth" else "predictions",
        batch_size=args.batch_size,
        progress=True,
    )
    seconds = time.perf_counter() - t0
    csv_path = write_csv(report, out / "robustness.csv")
    png_path = plot(report, out / "robustness.png")
    print(format_report(report))
    for c in report.failed:
        print(f"WARNING: sanity check {c.name} failed: {c.detail}", file=sys.stderr)
    print(f"{len(x)} images, {seconds:.1f}s -> {csv_path}, {png_path}")
    return 1 if (args.strict and report.failed) else 0
