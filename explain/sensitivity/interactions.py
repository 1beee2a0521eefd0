"""Pairwise feature interactions from second derivatives.

The interaction of features ``i`` and ``j`` over a dataset is

    Iᵢⱼ = mean_n |∂²t(xₙ)/∂xᵢ∂xⱼ| · σᵢ σⱼ

with ``σ`` the features' standard deviations over the rows (so units do not
decide the rank, as for the gradient ranking). A pure additive model
``Σₖ gₖ(xₖ)`` has ``Iᵢⱼ = 0`` for ``i ≠ j``; Friedman #1's ``10 sin(π x₀ x₁)``
makes ``(0, 1)`` the only interacting pair.

Hessian columns ``Hₙ eⱼ`` come from Hessian-vector products, forward over reverse
(:func:`explain.gradients.target_hvp`, Pearlmutter 1994), for all rows of a chunk in one
pass; rows and directions are chunked within ``memory_budget``, so memory grows with neither ``N`` nor ``F``.

References:
  Pearlmutter. Fast Exact Multiplication by the Hessian. Neural Computation 6, 1994.
  Friedman. Multivariate Adaptive Regression Splines. Annals of Statistics 19, 1991.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from explain import chunking, gradients
from explain.gradients import Prepared, target_hvp
from explain.model import Model
from explain.sensitivity.data import feature_names
from explain.sensitivity.local import Rows, check_inputs
from explain.sensitivity.result import Interactions
from explain.targets import BoundTarget

# ----------------------------------------------------------------------------- pure cores


def hessian_columns(
    apply: Callable, params: Any, x: Float[Array, " n f"], target: BoundTarget, columns: Int[Array, " c"]
) -> Float[Array, " c n f"]:
    """Pure: columns ``Hₙ e_{j_c}`` ``(c, N, F)`` of every row's Hessian ``Hₙ = ∂²tₙ/∂xₙ²``, one HVP per column."""
    e = jax.nn.one_hot(columns, x.shape[1], dtype=x.dtype)  # (c, F)
    return jax.vmap(lambda d: target_hvp(apply, params, x, jnp.broadcast_to(d, x.shape), target))(e)


def hessians_chunk(
    apply: Callable,
    params: Any,
    x: Float[Array, " n f"],
    target: BoundTarget,
    columns: Int[Array, " c"],
    weights: Float[Array, " c"],
) -> Float[Array, " n f f"]:
    """Pure: ``Σ_c w_c Hₙ e_{j_c} e_{j_c}ᵀ``, the columns ``j_c`` of each ``Hₙ`` in place (others 0): ``(N, F, F)``."""
    cols = hessian_columns(apply, params, x, target, columns)
    e = jax.nn.one_hot(columns, x.shape[1], dtype=x.dtype)
    return jnp.einsum("c,cj,cni->nij", weights.astype(x.dtype), e, cols)


def hessians_core(apply: Callable, params: Any, x: Float[Array, " n f"], target: BoundTarget) -> Float[Array, " n f f"]:
    """Pure: every row's Hessian ``∂²tₙ/∂xₙ²`` ``(N, F, F)``, ``F`` HVPs in one call."""
    f = x.shape[1]
    return hessians_chunk(apply, params, x, target, jnp.arange(f), jnp.ones((f,), x.dtype))


def abs_hessian_sum(
    apply: Callable,
    params: Any,
    x: Float[Array, " n f"],
    target: BoundTarget,
    row_weights: Float[Array, " n"],
    columns: Int[Array, " c"],
    weights: Float[Array, " c"],
) -> Float[Array, " f f"]:
    """Pure: ``Σₙ vₙ |Hₙ|`` restricted to columns ``j_c`` (weighted by ``w_c``), ``(F, F)``: additive over chunks."""
    cols = jnp.abs(hessian_columns(apply, params, x, target, columns))  # (c, N, F)
    e = jax.nn.one_hot(columns, x.shape[1], dtype=x.dtype)
    per_col = jnp.einsum("n,cni->ci", row_weights.astype(x.dtype), cols)  # (c, F)
    return jnp.einsum("c,cj,ci->ij", weights.astype(x.dtype), e, per_col)


_hessians_chunk = jax.jit(hessians_chunk, static_argnums=0)
_abs_hessian_sum = jax.jit(abs_hessian_sum, static_argnums=0)


# ----------------------------------------------------------------------------- chunked runs


def _plan(p: Prepared, memory_budget: int | None, *, out_per_row: int = 0) -> tuple[int, int]:
    """``(rows, directions)`` per call: HVP rows within the budget, less ``out_per_row`` output floats per row."""
    rows = chunking.rows_per_chunk(p.model, memory_budget=memory_budget, factor=chunking.HVP_FACTOR, dtype=p.x.dtype)
    if out_per_row:
        rows = max(1, min(rows, chunking.check_budget(memory_budget) // (out_per_row * p.x.dtype.itemsize)))
    return chunking.plan(p.n, rows, p.x.shape[1])


def abs_hessian_total(p: Prepared, *, memory_budget: int | None, show_progress: bool = False) -> np.ndarray:
    """``Σₙ |Hₙ|`` ``(F, F)`` of a prepared tabular batch, chunked over rows × directions."""
    f = p.x.shape[1]
    batch, per_call = _plan(p, memory_budget)
    run = functools.partial(_abs_hessian_sum, p.model.apply, p.model.params)
    columns = np.arange(f, dtype=np.int32)
    n_calls = -(-p.n // batch) * -(-f // per_call)
    with chunking.progress(n_calls, enabled=show_progress, desc="Hessians") as bar:

        def rows(items: tuple, row_w: jax.Array) -> jax.Array:
            x, target = items
            return chunking.accumulate(lambda c, w: run(x, target, row_w, c, w), columns, per_call, bar=bar)

        return np.asarray(chunking.accumulate(rows, (p.x, p.target), batch))


# ----------------------------------------------------------------------------- public


def row_hessians(
    model: Model | Any,
    x: Rows,
    *,
    target: Any = None,
    labels: Any = None,
    names: Sequence[str] | None = None,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> Float[Array, " n f f"]:
    """Per-row Hessians ``∂²tₙ/∂xₙ²`` of a tabular model: ``(N, F, F)``, one HVP per column.

    Args: as :func:`interactions` (any ``N >= 1``).

    Returns:
      ``(N, F, F)``, symmetric up to rounding.
    """
    model, x, *_ = check_inputs(model, x, names=names, memory_budget=memory_budget)
    p = gradients.prepare(model, x, target=target, labels=labels, memory_budget=memory_budget)
    f = x.shape[1]
    batch, per_call = _plan(p, memory_budget, out_per_row=f * f)
    h = chunking.map_rows(
        functools.partial(_hessians_chunk, p.model.apply, p.model.params), p.x, p.target, batch=batch,
        draws=np.arange(f, dtype=np.int32), per_call=per_call, show_progress=show_progress, desc="Hessians",
    )  # fmt: skip
    return jnp.asarray(h)


def interactions(
    model: Model | Any,
    x: Rows,
    *,
    target: Any = None,
    labels: Any = None,
    names: Sequence[str] | None = None,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> Interactions:
    """Pairwise interaction strengths ``mean |∂²t/∂xᵢ∂xⱼ| · σᵢσⱼ`` over rows, and the top pairs.

    Args:
      model, x, target, labels, names, memory_budget, show_progress: as
        :func:`~explain.sensitivity.local.local_sensitivity`, with ``N >= 2`` rows; rows and Hessian
        directions are chunked within ``memory_budget``.

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
    model, x, sigma, *_ = check_inputs(
        model, x, names=names, memory_budget=memory_budget, statistics="an interaction ranking"
    )
    n = x.shape[0]
    p = gradients.prepare(model, x, target=target, labels=labels, memory_budget=memory_budget)
    total = abs_hessian_total(p, memory_budget=memory_budget, show_progress=show_progress)
    matrix = np.asarray(total, np.float64) / n * np.outer(sigma, sigma)
    matrix = (matrix + matrix.T) / 2.0  # exact symmetry; the HVP columns agree to rounding
    scale = "feature standard deviation over the rows given"
    settings = dict(model=model.name, target=p.target.name, n_rows=int(n), scale=scale, feature_std=sigma.tolist())
    return Interactions(feature_names(model), jnp.asarray(matrix.astype(x.dtype)), settings)
