"""Permutation importance: the model-agnostic reference for the gradient rankings.

Feature ``k`` is shuffled across rows (breaking its link to the target while
keeping its distribution) and the change of the per-row target is recorded:

    Δᵢₖ = mean_r [ t(x⁽ʳ'ᵏ⁾ᵢ) - t(xᵢ) ]        (a loss target: the loss increase, Breiman 2001)
    Δᵢₖ = mean_r | t(x⁽ʳ'ᵏ⁾ᵢ) - t(xᵢ) |      (any other target: the prediction change)

where ``x⁽ʳ'ᵏ⁾`` is ``x`` with column ``k`` permuted by the ``r``-th random
permutation, ``r = 0 .. n_samples - 1`` (``n_samples`` random permutations per
feature; sklearn calls them ``n_repeats``). Importance is ``mean_i Δᵢₖ``; keeping
the per-row ``Δ`` lets the same bootstrap as the gradient rankings give it an interval.

Permutation ``(r, k)`` is drawn on the host from its own stream of the explicit ``key``
(:func:`~explain.sensitivity.data.host_generator`), so results never depend on the memory
budget; forward passes run over chunks of rows × features. A row keeps its own label.

References:
  Breiman. Random Forests. Machine Learning 45, 2001 (section 10).
  scikit-learn: ``sklearn.inspection.permutation_importance``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from explain import checks, chunking
from explain.gradients import Prepared
from explain.sensitivity.data import host_generator, key_words
from explain.targets import BoundTarget

KINDS: tuple[str, ...] = ("auto", "increase", "abs_change")


def resolve_kind(kind: str, target_name: str) -> str:
    """``"auto"`` -> ``"increase"`` for loss targets, else ``"abs_change"``."""
    if checks.check_choice("permutation kind", kind, KINDS) == "auto":
        return "increase" if target_name.startswith("loss") else "abs_change"
    return kind


def permutation(key: jax.Array, sample: int, feature: int, n: int) -> np.ndarray:
    """The row permutation ``(n,)`` that shuffles ``feature`` in draw ``sample``: its own host stream of ``key``."""
    return host_generator(key, sample, feature).permutation(n)


def shuffled_columns(key: jax.Array, sample: int, x: np.ndarray) -> np.ndarray:
    """``(N, F)``: column ``k`` is column ``k`` of ``x`` permuted by :func:`permutation` ``(key, sample, k)``."""
    n, f = x.shape
    out = np.empty_like(x)
    for k in range(f):
        out[:, k] = x[permutation(key, sample, k, n), k]
    return out


# ----------------------------------------------------------------------------- pure cores


def target_values_core(
    apply: Callable, params: Any, x: Float[Array, " n f"], target: BoundTarget
) -> Float[Array, " n"]:
    """Pure: the target at each row, ``(N,)``."""
    return target(apply(params, x))


def permutation_chunk(
    apply: Callable,
    params: Any,
    x: Float[Array, " n f"],
    shuffled: Float[Array, " n f"],
    base: Float[Array, " n"],
    target: BoundTarget,
    features: Int[Array, " c"],
    weights: Float[Array, " c"],
    *,
    kind: str,
) -> Float[Array, " n f"]:
    """Pure: ``Σ_c w_c e_{k_c} Δ_{·k_c}``, the effects ``(N, F)`` of shuffling features ``k_c`` (one forward per feature).

    Row ``i`` with feature ``k`` replaced by ``shuffled[i, k]``; ``base`` is ``t(x)``.
    Features not in the chunk (and padding, ``w = 0``) contribute 0, so chunks add up.
    """
    n, f = x.shape
    c = features.shape[0]
    mask = jax.nn.one_hot(features, f, dtype=bool)  # (c, F)
    pts = jnp.where(mask[:, None, :], shuffled.astype(x.dtype)[None], x[None])  # (c, N, F)
    t = target.tile(c)(apply(params, pts.reshape(c * n, f))).reshape(c, n)
    d = t - base[None].astype(t.dtype)
    if kind == "abs_change":
        d = jnp.abs(d)
    return jnp.einsum("c,ck,cn->nk", weights.astype(d.dtype), mask.astype(d.dtype), d)


_target_values = jax.jit(target_values_core, static_argnums=0)
_permutation_chunk = jax.jit(permutation_chunk, static_argnums=0, static_argnames="kind")


# ----------------------------------------------------------------------------- chunked run


def permutation_rows(
    p: Prepared,
    *,
    n_samples: int,
    key: jax.Array,
    kind: str,
    memory_budget: int | None = None,
    show_progress: bool = False,
    base: Float[np.ndarray, " n"] | None = None,
) -> np.ndarray:
    """Per-row permutation effects ``Δ (N, F)`` (see module doc), averaged over ``n_samples`` permutations per feature.

    Args:
      p: a prepared tabular batch (its target frozen once).
      kind: ``"increase"`` or ``"abs_change"``.
      base: the target values ``t(x)`` ``(N,)`` when a gradient pass already has them; else one forward pass.

    Returns:
      A host array ``(N, F)`` in the dtype of ``x``.
    """
    x = np.asarray(p.x)
    n, f = x.shape
    key = np.asarray(key_words(key), np.uint32)  # the key's data once, not once per (sample, feature) stream
    apply, params = p.model.apply, p.model.params
    rows = chunking.FORWARD_ROWS_PER_ROW * chunking.rows_per_chunk(p.model, memory_budget=memory_budget, dtype=x.dtype)
    if base is None:
        base = chunking.map_rows(functools.partial(_target_values, apply, params), x, p.target, batch=rows)
    batch, per_call = chunking.plan(n, rows, f)
    run = functools.partial(_permutation_chunk, apply, params, kind=kind)
    features = np.arange(f, dtype=np.int32)  # host: sliced per chunk without device work
    total = np.zeros((n, f), np.float64)
    for sample in range(n_samples):
        shuffled = shuffled_columns(key, sample, x)
        total += chunking.map_rows(
            run, x, shuffled, base, p.target, batch=batch, draws=features, per_call=per_call,
            show_progress=show_progress, desc=f"permutations {sample + 1}/{n_samples}",
        )  # fmt: skip
    return (total / n_samples).astype(x.dtype)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two score vectors (average ranks for ties); NaN when either is constant."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a), np.asarray(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)
