"""Cost of the global sensitivity ranking as a ratio to one forward pass, measured in one run.

Target (issue 4): ``rank`` with 200 bootstraps over 10,000 rows costs at most
10x one forward pass over the same rows. Measured for the one-backward-pass
methods (``grad`` + ``gxi`` share it); IG costs ``steps`` backward passes by
construction and is reported for information. Compile time is reported
separately (first call). Run: ``.venv/bin/python benchmarks/sensitivity_bench.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from explain import sensitivity  # noqa: E402
from explain.sensitivity import global_, local  # noqa: E402
from models import load  # noqa: E402


def timed_interleaved(fns: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """``{name: (first call s, median s)}``; the calls alternate so that load from other processes hits all alike."""
    first = {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        first[name] = time.perf_counter() - t0
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - t0)
    return {name: (first[name], float(np.median(times[name]))) for name in fns}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--bootstraps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--ig", action="store_true", help="also time IG (50 steps)")
    args = parser.parse_args()

    m = load("friedman1_mlp").model
    # Friedman #1 inputs are uniform on [0, 1]^10; the shipped splits hold 6,000 rows, so draw 10,000 more alike.
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(args.rows, 10)).astype(np.float32))
    key = jax.random.key(0)
    fwd = jax.jit(m.apply)

    def run_rank(methods=("grad", "gxi")):
        r = sensitivity.rank(m, x, key=key, methods=methods, n_bootstrap=args.bootstraps)
        return r[methods[0]].scores

    fn, aux, _ = local.resolve_target(m, x, None, None)
    scores = jnp.abs(local.row_gradients(m, x, fn, aux, batch=local.DEFAULT_BATCH)[1])
    stacked = jnp.concatenate([scores, scores], axis=1)
    fns = {
        "forward (jit apply)": lambda: fwd(m.params, x),
        "gradient pass (grad+gxi)": lambda: local.row_gradients(m, x, fn, aux, batch=local.DEFAULT_BATCH),
        f"bootstrap means ({args.bootstraps} x 2 methods)": lambda: global_.bootstrap_means(
            stacked, n_bootstrap=args.bootstraps, key=key
        ),
        "rank(grad, gxi) end to end": run_rank,
    }
    if args.ig:
        fns["rank(grad, gxi, ig) end to end"] = lambda: run_rank(("grad", "gxi", "ig"))
    rows = timed_interleaved(fns, args.repeats)
    base = rows["forward (jit apply)"][1]
    print(f"friedman1_mlp, {args.rows} rows, {args.bootstraps} bootstraps, device {jax.devices()[0].device_kind}")
    print(f"{'what':<36} {'first call s':>12} {'median ms':>10} {'x forward':>10}")
    for name, (first, med) in rows.items():
        print(f"{name:<36} {first:>12.3f} {med * 1e3:>10.2f} {med / base:>10.1f}")
    ratio = rows["rank(grad, gxi) end to end"][1] / base
    print(f"\nratio rank(grad, gxi, {args.bootstraps} bootstraps) / forward = {ratio:.1f} (target <= 10)")


if __name__ == "__main__":
    main()
