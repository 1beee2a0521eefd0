"""Building blocks shared by the saliency cores: stacked gradients, weighted sums, chunked runs.

Cores differentiate only through :func:`explain.gradients.target_and_grad`;
wrappers prepare with :func:`explain.gradients.prepare` and chunk with
:func:`explain.chunking.map_rows`. Nothing outside ``explain.saliency`` imports this module.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from explain import chunking
from explain.gradients import Prepared, target_and_grad
from explain.model import Model
from explain.saliency.attribution import Attribution
from explain.targets import BoundTarget


def grad_stack(apply: Callable, params: Any, pts: jax.Array, target: BoundTarget) -> tuple[jax.Array, jax.Array]:
    """Gradients at a stack of batches ``pts (c, N, ...)`` as ``c · N`` rows of one backward pass.

    Returns ``(g (c, N, [K,] ...), t (c, N[, K]))``; ``target`` is bound to one batch of ``N``.
    """
    c, n = pts.shape[:2]
    t, g, _ = target_and_grad(apply, params, pts.reshape((c * n, *pts.shape[2:])), target.tile(c))
    return g.reshape((c, n, *g.shape[1:])), t.reshape((c, n, *t.shape[1:]))


def values_stack(apply: Callable, params: Any, pts: jax.Array, target: BoundTarget) -> jax.Array:
    """Target values at ``pts (c, N, ...)``: ``(c, N[, K])``."""
    c, n = pts.shape[:2]
    t = target.tile(c)(apply(params, pts.reshape((c * n, *pts.shape[2:]))))
    return t.reshape((c, n, *t.shape[1:]))


def weighted_sum(w: jax.Array, a: jax.Array) -> jax.Array:
    """``Σ_s w_s a_s`` over the leading (draw/step) axis; padded draws carry ``w_s = 0``."""
    return jnp.tensordot(w.astype(a.dtype), a, axes=1)


def expand_like(v: jax.Array, g: jax.Array) -> jax.Array:
    """Inserts the class axis of ``g (N, K, ...)`` into ``v (N, ...)`` when ``g`` has one more axis."""
    return v[:, None] if g.ndim == v.ndim + 1 else v


def endpoints(apply: Callable, params: Any, x: jax.Array, target: BoundTarget, baseline: jax.Array) -> jax.Array:
    """``F(x) - F(x')``: ``(N,)`` or ``(N, K)``."""
    t = values_stack(apply, params, jnp.stack([x, baseline.astype(x.dtype)]), target)
    return t[0] - t[1]


_endpoints = jax.jit(endpoints, static_argnums=0)


def rows(p: Prepared, memory_budget: int | None, *, forward_only: bool = False) -> int:
    """Model rows per compiled call for ``p`` (``K`` backward passes per row for ``target="all"``)."""
    factor = 1 if forward_only or not p.target.all_outputs else p.model.num_outputs
    return chunking.rows_per_chunk(p.model, memory_budget=memory_budget, factor=factor, dtype=p.x.dtype)


def run_rows(
    core: Callable,
    p: Prepared,
    *arrays: Any,
    memory_budget: int | None,
    show_progress: bool = False,
    uses_tap: bool = False,
    **static: Any,
) -> Any:
    """``core(apply, params, x, target, *arrays, **static)`` (jitted) over chunks of rows; host results.

    ``uses_tap``: the core takes ``model.tap`` instead of ``model.apply``.
    """
    fn = functools.partial(core, p.model.tap if uses_tap else p.model.apply, p.model.params, **static)
    return chunking.map_rows(fn, p.x, p.target, *arrays, batch=rows(p, memory_budget), show_progress=show_progress)


def run_draws(
    chunk_fn: Callable,
    p: Prepared,
    draws: Any,
    *arrays: Any,
    memory_budget: int | None,
    show_progress: bool = False,
    rows_per_draw: int = 1,
    **static: Any,
) -> Any:
    """``Σ_draws chunk_fn(apply, params, x, target, *arrays, draws, weights, **static)`` per chunk of rows.

    Rows per call are split between samples and draws by :func:`explain.chunking.plan`;
    ``rows_per_draw`` counts model rows one draw of one sample costs.
    """
    n_draws = jax.tree_util.tree_leaves(draws)[0].shape[0]
    batch, per_call = chunking.plan(p.n, max(1, rows(p, memory_budget) // rows_per_draw), n_draws)
    fn = functools.partial(chunk_fn, p.model.apply, p.model.params, **static)
    return chunking.map_rows(
        fn, p.x, p.target, *arrays, batch=batch, draws=draws, per_call=per_call, show_progress=show_progress
    )


def endpoint_diff(p: Prepared, baseline: Any, memory_budget: int | None) -> np.ndarray:
    """``F(x) - F(x')`` per sample on the host, chunked: ``(N,)`` or ``(N, K)``."""
    return chunking.map_rows(
        functools.partial(_endpoints, p.model.apply, p.model.params),
        p.x,
        p.target,
        baseline,
        batch=rows(p, memory_budget, forward_only=True),
    )


def delta(p: Prepared, values: Any, baseline: Any, memory_budget: int | None) -> jax.Array:
    """Completeness error ``Σ values - (F(x) - F(x'))`` per sample: ``(N,)`` or ``(N, K)``."""
    diff = endpoint_diff(p, baseline, memory_budget)
    return jnp.asarray(values.reshape((*diff.shape, -1)).sum(-1) - diff)


def to_attribution(a: Attribution) -> Attribution:
    """Host arrays from a chunked run as the device arrays of an :class:`Attribution` (no copy on CPU)."""
    return chunking.to_device(a)


def check_image(model: Model, *, what: str) -> tuple[int, int, int]:
    """``(H, W, C)`` of an image model, else a ``ValueError`` naming the method."""
    shape = model.input_spec.shape
    if len(shape) != 3:
        raise ValueError(
            f"{what} needs image inputs of shape (N, H, W, C); model {model.name!r} takes (N, {', '.join(map(str, shape))})"
        )
    return shape  # type: ignore[return-value]


def value_range(model: Model) -> tuple[float, float]:
    """The declared input range, or ``(0, 1)`` when none is declared."""
    return model.input_spec.value_range or (0.0, 1.0)
