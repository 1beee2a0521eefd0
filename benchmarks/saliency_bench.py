"""Saliency benchmarks, measured in one run (printed, never asserted).

    .venv/bin/python benchmarks/saliency_bench.py [--n 32] [--skip-methods]

1. ``target="all"`` against stacking the K single-class calls (vanilla gradient and IG).
2. Peak memory of IG with 300 steps on 32 ``shapes`` images: max RSS of a fresh
   subprocess (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), default chunking.
3. Each method's run time as a ratio to one forward pass on the same batch
   (compile time reported separately).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _timed(fn, repeats: int = 3) -> tuple[float, float]:
    """``(first call incl. compile, best of ``repeats`` warm calls)`` in seconds."""
    import jax

    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return first, best


def _rss_child(n: int, steps: int) -> None:
    import resource

    from explain.saliency import integrated_gradients
    from models import load

    b = load("shapes_cnn")
    x = b.dataset.test.x[:n]
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    a = integrated_gradients(b, x, steps=steps)
    a.values.block_until_ready()
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - t0,
                "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "rss_before_mb": base / 1024,
                "max_abs_delta": float(abs(a.convergence_delta).max()),
            }
        )
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--skip-methods", action="store_true")
    p.add_argument("--only-all", action="store_true", help="only the interleaved target='all' ratio (section 1)")
    p.add_argument("--repeats", type=int, default=15, help="interleaved rounds for the target='all' ratio")
    p.add_argument("--completeness", action="store_true", help="IG completeness on 256 images, adaptive steps")
    p.add_argument("--rss-child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.rss_child:
        return _rss_child(*args.rss_child)

    import jax
    import jax.numpy as jnp

    from explain.saliency import integrated_gradients, registry, vanilla_gradient
    from models import load

    b = load("shapes_cnn")
    x = jnp.asarray(b.dataset.test.x[: args.n])
    k = b.model.num_outputs
    print(f"device {jax.devices()[0].platform}, batch {args.n} shapes images, K={k}")

    # 1. target="all" vs K single-class calls
    for label, fn in [
        ("vanilla_gradient", lambda t: vanilla_gradient(b, x, target=t).values),
        ("integrated_gradients(steps=16)", lambda t: integrated_gradients(b, x, target=t, steps=16).values),
    ]:
        # interleaved, best of --repeats each: the machine is shared, so single timings are noisy
        jax.block_until_ready((fn("all"), [fn(c) for c in range(k)]))
        t_all = t_one = float("inf")
        for _ in range(args.repeats):
            t_all = min(t_all, _timed(lambda fn=fn: fn("all"), repeats=1)[0])
            t_one = min(t_one, _timed(lambda fn=fn: [fn(c) for c in range(k)], repeats=1)[0])
        print(
            f"[all] {label}: target='all' {t_all:.3f} s vs {k} single calls {t_one:.3f} s -> ratio {t_all / t_one:.2f}"
        )

    if args.only_all:
        return None

    # 2. IG 300 steps, 32 images, peak RSS in a fresh process
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", "32", "300"], capture_output=True, text=True, check=True, cwd=ROOT
    )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"[rss] IG 300 steps x 32 images (default chunking): max RSS {r['max_rss_mb']:.0f} MB "
        f"(after imports+load {r['rss_before_mb']:.0f} MB), {r['seconds']:.1f} s, max |delta| {r['max_abs_delta']:.2e}"
    )

    if args.completeness:
        import numpy as np

        from explain.saliency import integrated_gradients_adaptive

        x256 = b.dataset.test.x[:256]
        first, best = _timed(lambda: integrated_gradients(b, x256, steps=64).values, repeats=1)
        a = integrated_gradients(b, x256, steps=64)
        d = np.asarray(a.convergence_delta)
        rel = np.abs(d) / np.abs(np.asarray(a.values).reshape(256, -1).sum(1) - d)
        print(
            f"[ig] 256 images, 64 Gauss-Legendre steps: median relative completeness error {np.median(rel):.4%}, "
            f"max {rel.max():.3%}; run {best:.1f} s"
        )
        ad = integrated_gradients_adaptive(b, x256[:32], tolerance=1e-3)
        steps, d = np.asarray(ad.steps), np.asarray(ad.convergence_delta)
        ok = np.abs(d) <= 1e-3 * (1 + np.abs(np.asarray(ad.values).reshape(32, -1).sum(1) - d))
        used = {int(k): int(c) for k, c in zip(*np.unique(steps, return_counts=True))}
        print(f"[ig] adaptive tol 1e-3 on 32 images: {ok.sum()}/32 within tolerance; samples per step count {used}")
    if args.skip_methods:
        return
    # 3. per-method cost ratio to forward
    fwd = jax.jit(b.model.apply)
    _, t_fwd = _timed(lambda: fwd(b.model.params, x))
    print(f"[cost] forward: {t_fwd * 1e3:.1f} ms")
    refs = jnp.asarray(b.dataset.test.x[args.n : args.n + 64])
    for name in registry.METHODS:
        run = lambda name=name: registry.call(name, b, x, key=jax.random.key(0), references=refs).values  # noqa: E731
        first, best = _timed(run, repeats=1)
        print(
            f"[cost] {name:32s} {best / t_fwd:8.1f}x forward   (run {best:.2f} s, first call incl. compile {first:.2f} s)"
        )


if __name__ == "__main__":
    main()
