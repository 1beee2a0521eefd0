"""Permutation importance: the model-agnostic reference for the gradient rankings.

Feature ``k`` is shuffled across rows (breaking its link to the target while
keeping its distribution) and the change of the per-row target is recorded:

    Δᵢₖ = mean_r [ t(x⁽ʳ'ᵏ⁾ᵢ) - t(xᵢ) ]        (a loss target: the loss increase, Breiman 2001)
    Δᵢₖ = mean_r | t(x⁽ʳ'ᵏ⁾ᵢ) - t(xᵢ) |      (any other target: the prediction change)

where ``x⁽ʳ'ᵏ⁾`` is ``x`` with column ``k`` permuted by the ``r``-th random
permutation. Importance is ``mean_i Δᵢₖ``; keeping the per-row ``Δ`` lets the
same bootstrap as the gradient rankings give it an interval. Forward passes
only: all ``(repeat, feature)`` pairs of a chunk run in one compiled call.

References:
  Breiman. Random Forests. Machine Learning 45, 2001 (section 10).
  scikit-learn: ``sklearn.inspection.permutation_importance``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from explain import chunking
from explain.model import Model
from explain.saliency import _common
from explain.targets import TargetFn

Kind = Literal["auto", "increase", "abs_change"]
KINDS: tuple[str, ...] = ("auto", "increase", "abs_change")
MEMORY_BUDGET = 128 * 2**20


@functools.cache
def _compiled_shuffled(apply: Callable, target_fn: TargetFn):
    """Jitted target values with one column shuffled, for a chunk of ``(key, feature)`` pairs: ``(C, N)``."""

    def run(params, x, aux, keys, feats):
        n, f = x.shape

        def one(key, feat):
            perm = jax.random.permutation(key, n)
            mask = jax.nn.one_hot(feat, f, dtype=bool)[None, :]  # (1, F)
            return target_fn(apply(params, jnp.where(mask, x[perm], x)), aux)

        return jax.vmap(one)(keys, feats)

    return jax.jit(run)


def resolve_kind(kind: Kind, target_name: str) -> str:
    """``"auto"`` -> ``"increase"`` for loss targets, else ``"abs_change"``."""
    if kind not in KINDS:
        raise ValueError(f"unknown permutation kind {kind!r}; expected one of {list(KINDS)}")
    if kind == "auto":
        return "increase" if target_name.startswith("loss") else "abs_change"
    return kind


def permutation_rows(
    model: Model,
    x: jax.Array,
    fn: TargetFn,
    aux: Any,
    *,
    n_repeats: int,
    key: jax.Array,
    kind: str,
    memory_budget: int = MEMORY_BUDGET,
) -> jax.Array:
    """Per-row permutation effects ``Δ (N, F)`` (see module doc), averaged over ``n_repeats`` shuffles.

    Args:
      x: ``(N, F)`` validated rows; ``fn, aux``: a resolved target.
      kind: ``"increase"`` or ``"abs_change"``.
    """
    n, f = x.shape
    pairs = n_repeats * f
    keys = jax.random.split(key, pairs)  # pair p = (repeat p // F, feature p % F)
    feats = jnp.tile(jnp.arange(f, dtype=jnp.int32), n_repeats)
    # Working set per pair: the shuffled copy, its activations (~ a few rows' worth) and the output.
    chunk = chunking.chunk_size_for(pairs, n * (4 * f + 256) * x.dtype.itemsize, memory_budget)
    run = functools.partial(_compiled_shuffled(model.apply, fn), model.params, x, aux)
    shuffled = chunking.map_batches(run, keys, feats, batch=chunk)  # (R·F, N)
    base = fn(_common.compiled_forward(model.apply)(model.params, x), aux)  # (N,)
    diff = shuffled - base[None, :]
    if kind == "abs_change":
        diff = jnp.abs(diff)
    return diff.reshape(n_repeats, f, n).mean(axis=0).T  # (N, F)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two score vectors (average ranks for ties)."""
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)
