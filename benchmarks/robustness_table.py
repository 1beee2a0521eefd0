"""Robust accuracy per attack and the standard suite's time: ``python benchmarks/robustness_table.py``.

On the first ``--n`` (default 256) test images of a shipped classifier (attack labels =
the model's predictions, accuracy against the ground truth), at each ε of ``--eps``:

* FGSM and PGD-20 (cross-entropy, 1 random start), each run alone;
* APGD-CE and APGD-DLR (100 steps), each run alone;
* Square (L∞, 1,000 queries, CW margin), alone;
* the standard suite (APGD-CE, APGD-T over the 9 best other classes, Square 5,000 queries),
  in sequence on the points still robust, with its wall time per attack and in all.

Prints one table (robust accuracy, and seconds of each attack including compilation on its
first ε) and the suite's sanity checks. The suite must reach a robust accuracy no higher than
PGD-20's; its time at one ε on 256 images is the cost figure of issue 11 (target < 10 minutes
on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import sys
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import models  # noqa: E402
from explain import adversarial  # noqa: E402
from explain.adversarial.evaluation import evaluate_robustness, format_report  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="shapes_cnn")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--eps", default="2/255,8/255", help="comma-separated ε, fractions allowed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-suite", action="store_true")
    args = ap.parse_args(argv)
    eps = [float(Fraction(e)) for e in args.eps.split(",")]
    b = models.load(args.model)
    x, y = np.asarray(b.dataset.test.x[: args.n]), np.asarray(b.dataset.test.y[: args.n])
    key = jax.random.key(args.seed)
    attacks = {
        "FGSM": lambda e: adversarial.fgsm(b.model, x, eps=e),
        "PGD-20": lambda e: adversarial.pgd(b.model, x, eps=e, key=key, steps=20),
        "APGD-CE-100": lambda e: adversarial.apgd(b.model, x, eps=e, key=key, steps=100),
        "APGD-DLR-100": lambda e: adversarial.apgd(b.model, x, eps=e, key=key, steps=100, loss="dlr"),
        "Square-1000": lambda e: adversarial.square(b.model, x, eps=e, key=key, queries=1000),
    }
    print(f"{args.model}, first {len(x)} test images, labels = predictions, accuracy against ground truth")
    clean = float(np.mean(np.argmax(np.asarray(b.model.apply(b.model.params, x)), 1) == y))
    print(f"clean accuracy {clean:.4f}")
    print(f"{'attack':<16}" + "".join(f"{f'ε={e * 255:g}/255':>14}{'s':>8}" for e in eps))
    for name, run in attacks.items():
        cells = []
        for e in eps:
            t0 = time.perf_counter()
            r = run(e)
            acc = float(np.mean(np.argmax(np.asarray(r.outputs_adv), 1) == y))
            cells.append(f"{acc:>14.4f}{time.perf_counter() - t0:>8.1f}")
        print(f"{name:<16}" + "".join(cells), flush=True)
    if args.skip_suite:
        return 0
    for e in eps:
        t0 = time.perf_counter()
        rep = evaluate_robustness(b.model, x, labels=y, eps=[e], key=key, suite="standard")
        seconds = time.perf_counter() - t0
        r = rep.suite_results[0]
        steps = ", ".join(f"{a} {acc:.4f} ({t:.0f}s)" for a, acc, t in zip(r.attacks, r.robust_after, r.seconds))
        print(
            f"{'standard suite':<16} ε={e * 255:g}/255: {r.robust_accuracy:.4f} in {seconds:.0f}s "
            f"(checks included); after {steps}"
        )
        print(format_report(rep).split("sanity checks:")[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
