"""Pairwise feature interactions from second derivatives.

The interaction of features ``i`` and ``j`` over a dataset is

    Iᵢⱼ = mean_n |∂²t(xₙ)/∂xᵢ∂xⱼ| · σᵢ σⱼ

with ``σ`` the features' standard deviations over the rows (so units do not
decide the rank, as for the gradient ranking). A pure additive model
``Σₖ gₖ(xₖ)`` has ``Iᵢⱼ = 0`` for ``i ≠ j``; Friedman #1's ``10 sin(π x₀ x₁)``
makes ``(0, 1)`` the only interacting pair.

Hessian columns come from Hessian-vector products, forward over reverse
(``jax.jvp`` of the per-row gradient, Pearlmutter 1994): ``Hₙ eⱼ`` for all rows
in one pass. ``mode="hessian"`` takes all ``F`` directions in one compiled
call (small ``F``); ``mode="hvp"`` takes ``directions`` at a time, bounding
memory for wide tables. Rows are chunked with :func:`explain.chunking.accumulate`.

References:
  Pearlmutter. Fast Exact Multiplication by the Hessian. Neural Computation 6, 1994.
  Friedman. Multivariate Adaptive Regression Splines. Annals of Statistics 19, 1991.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from explain import checks, chunking, gradients
from explain.model import Model
from explain.sensitivity import local
from explain.sensitivity.data import check_rows_for_statistics, check_tabular, feature_names
from explain.sensitivity.result import Interactions
from explain.targets import TargetFn

Mode = Literal["auto", "hessian", "hvp"]
MODES: tuple[str, ...] = ("auto", "hessian", "hvp")
FULL_HESSIAN_MAX_FEATURES = 64


@functools.cache
def _compiled_abs_block(apply: Callable, target_fn: TargetFn):
    """Jitted ``Σₙ wₙ |Hₙ dᶜ|`` for directions ``d (C, F)``: ``(C, F)``, the rows ``c`` of ``Σₙ wₙ |Hₙ|``."""

    def run(params, x, aux, w, dirs):
        cols = jax.vmap(lambda d: gradients.target_hvp(apply, target_fn, params, x, jnp.broadcast_to(d, x.shape), aux))(
            dirs
        )
        return jnp.einsum("n,cnf->cf", w.astype(x.dtype), jnp.abs(cols))

    return jax.jit(run)


@functools.cache
def _compiled_hessians(apply: Callable, target_fn: TargetFn):
    def run(params, x, aux):
        eye = jnp.eye(x.shape[1], dtype=x.dtype)
        cols = jax.vmap(lambda d: gradients.target_hvp(apply, target_fn, params, x, jnp.broadcast_to(d, x.shape), aux))(
            eye
        )
        return jnp.moveaxis(cols, 0, 2)  # (F, N, F) -> (N, F, F); symmetric, so column order is immaterial

    return jax.jit(run)


def row_hessians(model: Model | Any, x: Any, *, target: Any = None, labels: Any = None) -> jax.Array:
    """Per-row Hessians ``∂²tₙ/∂xₙ²`` of a tabular model: ``(N, F, F)``, ``F`` HVPs in one compiled call.

    Args: as :func:`interactions`.
    """
    model, x = check_tabular(model, x)
    fn, aux, _ = local.resolve_target(model, x, target, labels)
    return _compiled_hessians(model.apply, fn)(model.params, x, aux)


def _take_rows(aux: Any, idx: jax.Array, n: int) -> Any:
    return aux[idx] if local.per_row_aux(aux, n) else aux


def interactions(
    model: Model | Any,
    x: Any,
    *,
    target: Any = None,
    labels: Any = None,
    names: Sequence[str] | None = None,
    mode: Mode = "auto",
    directions: int = 8,
    batch_size: int = 1024,
) -> Interactions:
    """Pairwise interaction strengths ``mean |∂²t/∂xᵢ∂xⱼ| · σᵢσⱼ`` over rows, and the top pairs.

    Args:
      model: a tabular :class:`~explain.model.Model` (contract in :mod:`explain.model`) or a bundle.
      x: ``(N, F)`` rows (``N >= 2``), or a DataFrame matched by column name.
      target, labels: see :mod:`explain.targets`.
      names: column names of an array ``x``.
      mode: ``"hessian"`` (all directions per call), ``"hvp"`` (``directions`` per call) or
        ``"auto"`` (``"hessian"`` up to 64 features).
      directions: Hessian-vector products per compiled call in ``"hvp"`` mode.
      batch_size: rows per compiled call.

    Returns:
      :class:`~explain.sensitivity.result.Interactions` with the ``(F, F)`` matrix; ``top_pairs(k)``.

    Raises:
      ValueError / TypeError: before compilation, for bad rows (or fewer than 2), names, target or options.

    Warns:
      RuntimeWarning: a feature is constant over the rows (its interactions are then 0).

    Example:
      >>> inter = interactions(m, x)
      >>> inter.top_pairs(3)
    """
    checks.check_choice("mode", mode, MODES)
    directions = checks.check_int("directions", directions)
    batch_size = checks.check_int("batch_size", batch_size)
    model, x = check_tabular(model, x, names=names)
    n, f = x.shape
    sigma = check_rows_for_statistics(x, model, what="an interaction ranking").astype(np.float64)
    fn, aux, target_name = local.resolve_target(model, x, target, labels)
    if mode == "auto":
        mode = "hessian" if f <= FULL_HESSIAN_MAX_FEATURES else "hvp"
    per_call = f if mode == "hessian" else min(directions, f)
    eye = jnp.eye(f, dtype=x.dtype)
    run = _compiled_abs_block(model.apply, fn)

    def rows(idx: jax.Array, w: jax.Array) -> jax.Array:  # Σₙ wₙ |Hₙ| over one chunk of rows: (F, F)
        xb, ab = x[idx], _take_rows(aux, idx, n)
        blocks = []
        for start, stop in chunking.chunk_bounds(f, per_call):
            # Zero directions pad the last block so every call has the same shape (their columns are dropped).
            d = jnp.concatenate([eye[start:stop], jnp.zeros((per_call - (stop - start), f), x.dtype)])
            blocks.append(run(model.params, xb, ab, w, d)[: stop - start])
        return jnp.concatenate(blocks)

    total = chunking.accumulate(rows, jnp.arange(n), batch_size)
    matrix = np.asarray(total, np.float64) / n * np.outer(sigma, sigma)
    matrix = (matrix + matrix.T) / 2.0  # exact symmetry; the HVP columns agree to rounding
    settings = {
        "model": model.name,
        "target": target_name,
        "n_rows": int(n),
        "mode": mode,
        "directions_per_call": per_call,
        "scale": "feature standard deviation over the rows given",
        "feature_std": sigma.tolist(),
    }
    return Interactions(feature_names(model), matrix, settings)
