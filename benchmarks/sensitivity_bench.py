"""Cost of the global sensitivity ranking as a ratio to one forward pass, measured in one run.

Target (issue 4): ``rank`` with 200 bootstraps over 10,000 rows costs at most
10x one forward pass over the same rows. Measured for the one-backward-pass
methods (``vanilla_gradient`` + ``gradient_x_input`` share it); IG costs ``steps``
backward passes by construction and is reported for information (``--ig``).
Compile time is reported separately (first call). Run:
``.venv/bin/python benchmarks/sensitivity_bench.py``.

The bootstrap candidates (drawing ``B x N`` row indices, counting them, one
matmul) are timed interleaved in the same run: threefry bits on the device (the
previous implementation), NumPy PCG64 ``integers(dtype=uint16)`` (Lemire) with
``np.bincount`` on the host, and PCG64 raw words (uint16 or uint32, the top
range redrawn) counted on the device in one call; then the shipped
:func:`explain.sensitivity.global_.bootstrap_means` (PCG64 uint32 words counted on the device in
``PIPELINE_DEPTH`` asynchronous calls, the host drawing the next chunk while the device counts one).
Only public names of ``explain`` are used: the candidates' counting is this file's own.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from explain import sensitivity  # noqa: E402
from explain.gradients import prepare, target_and_grad  # noqa: E402
from explain.sensitivity import global_  # noqa: E402
from models import load  # noqa: E402

GRADIENT_METHODS = ("vanilla_gradient", "gradient_x_input")
_forward = jax.jit(lambda apply, params, x: apply(params, x), static_argnums=0)
_grad = jax.jit(target_and_grad, static_argnums=0)  # the public chain-rule primitive


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


@functools.partial(jax.jit, static_argnames=("n",))
def threefry_indices(keys: jax.Array, n: int) -> jax.Array:
    """The previous draw: 32 threefry bits per row, modulo N (bias below N / 2^32)."""
    return (jax.vmap(lambda k: jax.random.bits(k, (n,), jnp.uint32))(keys) % n).astype(jnp.int32)


@jax.jit
def scatter_means(idx: jax.Array, scores: jax.Array) -> jax.Array:
    c, n = idx.shape
    flat = (idx + n * jnp.arange(c, dtype=jnp.int32)[:, None]).ravel()
    counts = jnp.zeros((c * n,), scores.dtype).at[flat].add(1.0).reshape(c, n)
    return counts @ scores / n


@jax.jit
def counts_matmul(counts: jax.Array, scores: jax.Array) -> jax.Array:
    return counts.astype(scores.dtype) @ scores / scores.shape[0]


def boot_threefry(scores: jax.Array, b: int, key: jax.Array) -> jax.Array:
    return scatter_means(threefry_indices(jax.random.split(key, b), scores.shape[0]), scores)


def boot_integers_bincount(scores: jax.Array, b: int, key: jax.Array) -> jax.Array:
    n = scores.shape[0]
    idx = global_.bootstrap_generator(key).integers(0, n, size=(b, n), dtype=np.uint16)
    flat = idx.astype(np.intp)
    flat += np.arange(b)[:, None] * n
    return counts_matmul(np.bincount(flat.ravel(), minlength=b * n).reshape(b, n), scores)


def boot_words(scores: jax.Array, b: int, key: jax.Array, dtype: type) -> jax.Array:
    n = scores.shape[0]
    words = global_.uniform_words(global_.bootstrap_generator(key), (b, n), n, dtype)
    return scatter_means(jnp.asarray((words % dtype(n)).astype(np.int32)), scores)


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

    def fwd(params, x):
        return _forward(m.apply, params, x)

    references = load("friedman1_mlp").dataset.train.x

    def run_rank(methods=GRADIENT_METHODS):
        refs = references if "integrated_gradients" in methods else None
        r = sensitivity.rank(m, x, key=key, methods=methods, n_bootstrap=args.bootstraps, references=refs)
        return r[methods[0]].scores

    p = prepare(m, x)  # the default target (output 0 of the regression model), bound once

    def gradient_pass():
        return _grad(m.apply, m.params, p.x, p.target)[1]

    scores = jnp.abs(gradient_pass())
    stacked = jnp.concatenate([scores, scores], axis=1)
    fns = {
        "forward (jit apply)": lambda: fwd(m.params, x),
        "gradient pass (one, unchunked; warm)": gradient_pass,
        "boot: threefry + device count (before)": lambda: boot_threefry(stacked, args.bootstraps, key),
        "boot: PCG64 integers u16 + bincount": lambda: boot_integers_bincount(stacked, args.bootstraps, key),
        "boot: PCG64 words u32 + device count": lambda: boot_words(stacked, args.bootstraps, key, np.uint32),
        "boot: PCG64 words u16 + device count": lambda: boot_words(stacked, args.bootstraps, key, np.uint16),
        "boot: bootstrap_means (shipped)": lambda: global_.bootstrap_means(
            stacked, n_bootstrap=args.bootstraps, key=key
        ),
        "rank(vanilla_gradient, gradient_x_input)": run_rank,
    }
    if args.ig:
        fns["rank(+ integrated_gradients)"] = lambda: run_rank((*GRADIENT_METHODS, "integrated_gradients"))
    rows = timed_interleaved(fns, args.repeats)
    base = rows["forward (jit apply)"][1]
    print(f"friedman1_mlp, {args.rows} rows, {args.bootstraps} bootstraps, device {jax.devices()[0].device_kind}")
    print(f"{'what':<40} {'first call s':>12} {'median ms':>10} {'x forward':>10}")
    for name, (first, med) in rows.items():
        print(f"{name:<40} {first:>12.3f} {med * 1e3:>10.2f} {med / base:>10.1f}")
    ratio = rows["rank(vanilla_gradient, gradient_x_input)"][1] / base
    what = f"rank(vanilla_gradient, gradient_x_input, {args.bootstraps} bootstraps)"
    print(f"\nratio {what} / forward = {ratio:.1f} (target <= 10)")


if __name__ == "__main__":
    main()
