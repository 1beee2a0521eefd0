"""Gradient cost as a ratio to the forward pass, per shipped model: ``python benchmarks/gradient_cost.py``.

For each model at batch 32 (override with --batch): compile time of the
forward and of the input gradient, then the median of --repeats timed calls
of each after warm-up, and their ratio, all measured in one run. Reverse
mode should cost a small constant times the forward pass (about 3× in FLOPs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import models  # noqa: E402
from benchmarks._timing import call_seconds, median_seconds  # noqa: E402
from explain.gradients import prepare, target_and_grad  # noqa: E402

# Compiled here once per model (the apply function is static). The forward pass is this module's own
# function, not explain.gradients.forward_outputs: prepare() has already compiled that one for the same
# shape (freezing the predicted class), and its compile time would read as ~0.
_forward = jax.jit(lambda apply, params, x: apply(params, x), static_argnums=0)
_grad = jax.jit(target_and_grad, static_argnums=0)  # the public chain-rule primitive


def measure(name: str, batch: int, repeats: int) -> dict:
    bundle = models.load(name)
    p = prepare(bundle.model, np.asarray(bundle.dataset.test.x[:batch]))  # target: the predicted class, frozen
    model, x = p.model, jax.device_put(p.x)

    def fwd():
        return _forward(model.apply, model.params, x)

    def grad():
        return _grad(model.apply, model.params, x, p.target)

    fwd_compile = call_seconds(fwd)
    grad_compile = call_seconds(grad)
    f = median_seconds(fwd, repeats)
    g = median_seconds(grad, repeats)
    return {
        "model": name,
        "forward_ms": f * 1e3,
        "grad_ms": g * 1e3,
        "ratio": g / f,
        "compile_fwd_s": fwd_compile,
        "compile_grad_s": grad_compile,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--models", default=",".join(sorted(models.SPECS)))
    args = parser.parse_args()
    print(f"device: {jax.devices()[0].device_kind}, batch {args.batch}, median of {args.repeats}")
    print(
        f"{'model':<20} {'forward ms':>11} {'grad ms':>9} {'grad/fwd':>9} {'compile fwd s':>14} {'compile grad s':>15}"
    )
    for name in args.models.split(","):
        r = measure(name, args.batch, args.repeats)
        print(
            f"{r['model']:<20} {r['forward_ms']:>11.3f} {r['grad_ms']:>9.3f} {r['ratio']:>9.2f} {r['compile_fwd_s']:>14.2f} {r['compile_grad_s']:>15.2f}"
        )


if __name__ == "__main__":
    main()
