"""``python -m explain robustness``: accuracy against ε per attack, a CSV, a PNG plot and sanity checks.

Examples::

    python -m explain robustness --model shapes_cnn --attack fgsm,pgd --eps 0,1/255,2/255,4/255,8/255,16/255
    python -m explain robustness --model shapes_cnn_robust --suite standard --eps 8/255 --n 256
    python -m explain robustness --model shapes_cnn --attack pgd,apgd-ce,apgd-dlr,square --loss cw --eps 8/255
    python -m explain robustness --model path/to/my_models.py:make_bundle --eps 0,8/255 --memory-budget 64M
    python -m explain robustness --model shapes_cnn --data labelled_images/ --eps 0,8/255 --n 64

Writes ``robustness.csv`` (one row per attack and ε), ``robustness.png`` and
``robustness.json``: the table, the checks, the suite's per-attack breakdown, and
every setting with the model's weights hash (sha256 of its parameters in Flax's
msgpack), the seed and the library versions, enough to re-run to the same numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from fractions import Fraction
from importlib import metadata
from pathlib import Path
from typing import Any

from explain.cli import _args, _choices, _inputs
from explain.io import atomic_write_text

ATTACKS = ("fgsm", "bim", "pgd", "apgd-ce", "apgd-dlr", "apgd-t", "square")
LOSSES = ("ce", "cw", "dlr")
DEFAULT_EPS = "0,1/255,2/255,4/255,8/255,16/255"
DEFAULT_OUT = Path("robustness")  # the outputs go to DEFAULT_OUT / the model's name


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


def attack_configs(
    names: list[str], *, norm: str, steps: int, restarts: int, loss: str = "ce", queries: int = 1000
) -> dict[str, Any]:
    """The name -> :class:`~explain.adversarial.attacks.AttackConfig` table (the only one: the command line
    is the edge); ``loss`` is FGSM/BIM/PGD's."""
    from explain.adversarial.attacks import AttackConfig

    table = {
        "fgsm": AttackConfig("fgsm", norm=norm, steps=1, random_start=False, loss=loss),
        "bim": AttackConfig("pgd", norm=norm, steps=steps, random_start=False, loss=loss),
        "pgd": AttackConfig("pgd", norm=norm, steps=steps, random_start=True, restarts=restarts, loss=loss),
        "apgd-ce": AttackConfig("apgd", norm=norm, steps=steps, restarts=restarts),
        "apgd-dlr": AttackConfig("apgd", norm=norm, steps=steps, restarts=restarts, loss="dlr"),
        "apgd-t": AttackConfig("apgd", norm=norm, steps=steps, restarts=restarts, loss="dlr_targeted"),
        "square": AttackConfig("square", norm=norm, steps=queries, loss="cw"),
    }
    return {n: table[n] for n in names}


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("jax", "jaxlib", "flax", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def write_json(report, path: Path, *, args: argparse.Namespace, configs: dict, sha256: str, seconds: float) -> Path:
    """Everything needed to re-run the evaluation to the same numbers, and its results (atomic write)."""
    import jax

    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("func", "run")}
    doc = {
        "model": report.model,
        "model_sha256": sha256,
        "command": "python -m explain robustness " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else None,
        "settings": settings,
        "attacks": {name: dataclasses.asdict(c) for name, c in configs.items()},
        "versions": versions(),
        "backend": jax.default_backend(),
        "seconds": seconds,
        "clean_accuracy": report.clean_accuracy,
        "chance": report.chance,
        "label_source": report.label_source,
        "suite": report.suite,
        "rows": [dataclasses.asdict(r) for r in report.rows],
        "suite_results": [
            {
                "eps": r.eps,
                "robust_accuracy": r.robust_accuracy,
                "attacks": [
                    {"name": a, "robust_after": acc, "attacked": n, "seconds": t}
                    for a, acc, n, t in zip(r.attacks, r.robust_after, r.attacked, r.seconds)
                ],
                "broken_by": list(r.broken_by),
            }
            for r in report.suite_results
        ],
        "checks": [dataclasses.asdict(c) for c in report.checks],
    }
    return atomic_write_text(path, json.dumps(doc, indent=1, default=float) + "\n")


def add_arguments(p: argparse.ArgumentParser) -> None:
    _args.add_model(p, example="shapes_cnn or my_models.py:make_bundle (a classifier with a test split)")
    _inputs.add_data(p, labels="the true classes; robustness measures accuracy against them")
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--attack",
        type=parse_attacks,
        default=None,
        help=f"comma-separated subset of {','.join(ATTACKS)} (default: fgsm,pgd)",
    )
    which.add_argument(
        "--suite",
        choices=_choices.SUITES,
        default=None,
        help="an AutoAttack-grade suite instead of --attack: attacks in sequence on the points still robust "
        "(default: none, --attack runs)",
    )
    p.add_argument("--loss", choices=LOSSES, default="ce", help="the loss FGSM, BIM and PGD ascend")
    p.add_argument("--queries", type=_args.at_least(1), default=1000, help="Square's queries per image")
    p.add_argument("--eps", type=parse_eps, default=DEFAULT_EPS, help="comma-separated ε grid (fractions allowed)")
    p.add_argument("--norm", choices=("linf", "l2"), default="linf", help="the threat model's norm")
    p.add_argument("--steps", type=_args.at_least(1), default=20, help="iterations of BIM/PGD/APGD")
    p.add_argument("--restarts", type=_args.at_least(1), default=1, help="PGD random restarts (worst case kept)")
    p.add_argument("--n", type=_args.at_least(1), default=512, help="inputs to evaluate: the first N")
    p.add_argument(
        "--label-source",
        choices=_choices.LABEL_CHOICES,
        default="predictions",
        help="what the attacks move away from: the model's predictions (no label leaking) or the true labels",
    )
    p.add_argument("--seed", type=int, default=0, help="PRNG seed of the attacks")
    _args.add_memory_budget(p)
    p.add_argument(
        "--out",
        type=_args.out_folder,
        default=None,
        help=f"output folder, created when missing (default: {DEFAULT_OUT}/MODEL)",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when a sanity check fails")


def run(args: argparse.Namespace) -> int:
    _inputs.check_data_args(args)
    if args.out is None:
        _args.checked(_args.out_folder, str(DEFAULT_OUT), "--out")
    import jax

    from explain import io, specs
    from explain.adversarial.evaluation import evaluate_robustness, format_report, plot, write_csv

    bundle = specs.resolve(args.model)
    if bundle.model.output_kind != "classification":
        raise _args.UsageError(f"{args.model} is a regression model; robustness here needs a classifier")
    inputs = _inputs.load_inputs(
        args, bundle, command="robustness", limit=args.n, need_labels="robustness (accuracy against true labels)"
    )
    x, y = inputs.x, inputs.labels
    out = args.out or DEFAULT_OUT / bundle.stem
    if args.suite:
        from explain.adversarial.suite import suite_attacks

        configs, which = suite_attacks(args.suite, args.norm), dict(suite=args.suite, norm=args.norm)
    else:
        configs = attack_configs(
            args.attack or ["fgsm", "pgd"], norm=args.norm, steps=args.steps, restarts=args.restarts,
            loss=args.loss, queries=args.queries,
        )  # fmt: skip
        which = dict(attacks=configs)
    t0 = time.perf_counter()
    report = evaluate_robustness(
        bundle.model,
        x,
        labels=y,
        eps=args.eps,
        key=jax.random.key(args.seed),
        label_source=args.label_source,
        memory_budget=args.memory_budget,
        show_progress=True,
        **which,
    )
    seconds = time.perf_counter() - t0
    csv_path = write_csv(report, out / "robustness.csv")
    png_path = plot(report, out / "robustness.png")
    json_path = write_json(
        report, out / "robustness.json", args=args, configs=configs, sha256=io.params_sha256(bundle.model.params),
        seconds=seconds,
    )  # fmt: skip
    print(format_report(report))
    for c in report.failed:
        print(f"WARNING: sanity check {c.name} failed: {c.detail}", file=sys.stderr)
    print(f"{len(x)} images of {inputs.source}, {seconds:.1f}s -> {csv_path}, {png_path}, {json_path}")
    return 1 if (args.strict and report.failed) else 0
