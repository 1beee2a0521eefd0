"""Shared plumbing for the saliency methods: target resolution, gradient rows, checks, chunk sizing.

Every method resolves its target here (so ``target="all"`` and a frozen
predicted class mean the same thing everywhere) and differentiates through
:func:`grad_rows`, built on :func:`explain.gradients.target_and_grad`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from explain import chunking, gradients
from explain import targets as targets_lib

# Generic checks moved to explain/checks.py; re-exported so `_common.check_*` keeps working.
from explain.checks import (  # noqa: F401
    check_choice,
    check_float,
    check_int,
    check_key,
    check_memory_budget,
    check_optional_int,
)
from explain.model import Model, as_model
from explain.targets import TargetFn

ALL = "all"
# Working-set budget for one compiled chunk (activations kept for the backward pass). With
# shapes_cnn (64x64x3) the estimate gives 88 rows per chunk; IG with 300 steps on 32 images
# then peaks at ~0.7 GB RSS for the whole process (benchmarks/saliency_bench.py measures it).
DEFAULT_MEMORY_BUDGET = 256 * 2**20


class Resolved(NamedTuple):
    """A validated batch and its target. ``fn is None`` means every output (``target="all"``)."""

    model: Model
    x: jax.Array
    fn: TargetFn | None
    aux: Any
    name: str


@functools.cache
def _pred_to_index() -> dict[TargetFn, tuple[TargetFn, str]]:
    return {
        targets_lib.class_score("pred", s).fn: (targets_lib.class_score(0, s).fn, f"{s}[pred]")
        for s in ("logit", "prob", "log_prob")
    }


@functools.cache
def compiled_forward(apply: Callable):
    return jax.jit(apply)


def resolve(
    model: Any, x: Any, target: Any, labels: Any = None, *, allow_all: bool = True, freeze: bool = True
) -> Resolved:
    """Validates ``x`` and resolves ``target``; nothing is compiled unless ``freeze`` (see :func:`freeze_pred`).

    Methods with checks of their own pass ``freeze=False`` and call :func:`freeze_pred`
    after them, so every bad input raises before any compilation.
    """
    model = as_model(model)
    if isinstance(target, str) and target == ALL:
        if not allow_all:
            raise ValueError("target='all' is not supported by this method; pass a class index, 'pred' or 'loss'")
        return Resolved(model, model.input_spec.validate(x), None, None, ALL)
    r = Resolved(*gradients.prepare(model, x, target, labels))
    return freeze_pred(r) if freeze else r


def freeze_pred(r: Resolved) -> Resolved:
    """Replaces a predicted-class target by the class predicted at ``x`` (one compiled forward pass).

    Along an integration path or under noise the argmax may change, and
    explaining a moving target breaks completeness; Captum likewise fixes the
    target before integrating.
    """
    table = _pred_to_index()
    if r.fn not in table:
        return r
    by_index, name = table[r.fn]
    aux = jnp.argmax(compiled_forward(r.model.apply)(r.model.params, r.x), axis=1).astype(jnp.int32)
    return Resolved(r.model, r.x, by_index, aux, name)


def grad_rows(apply: Callable, fn: TargetFn | None, params: Any, x: jax.Array, aux: Any) -> tuple[jax.Array, jax.Array]:
    """Pure: gradients of a batch of rows ``x (R, ...)`` and the target values.

    Returns ``(∂t/∂x (R, ...), t (R,))``; with ``fn is None`` every output's
    gradient ``(R, K, ...)`` and the outputs ``(R, K)``: one forward pass and
    ``K`` backward passes, the vjp vmapped over one-hot cotangents.
    """
    if fn is not None:
        t, g, _ = gradients.target_and_grad(apply, fn, params, x, aux)
        return g, t
    out, vjp = jax.vjp(lambda x: apply(params, x), x)
    return all_classes_vjp(vjp, out), out


def all_classes_vjp(vjp: Callable, out: jax.Array) -> jax.Array:
    """``∂out_k/∂(input of vjp)`` for every class ``k``: ``(R, K, ...)`` from ``K`` vmapped backward passes.

    ``vjp`` is the pullback of a function with outputs ``out (R, K)`` that
    returns a single cotangent; one forward pass is shared by all classes.
    """
    k = out.shape[1]
    cot = jnp.broadcast_to(jnp.eye(k, dtype=out.dtype)[:, None, :], (k, *out.shape))  # (K, R, K)
    (g,) = jax.vmap(vjp)(cot)  # (K, R, ...)
    return jnp.moveaxis(g, 0, 1)


def grad_stack(
    apply: Callable, fn: TargetFn | None, params: Any, pts: jax.Array, aux: Any
) -> tuple[jax.Array, jax.Array]:
    """Pure: :func:`grad_rows` of a stack of batches ``pts (c, N, ...)`` as ``c · N`` rows of one backward pass.

    Returns ``(g (c, N, [K,] ...), t (c, N[, K]))``; ``aux`` is the per-sample
    target data of one batch (tiled over the ``c`` copies).
    """
    c, n = pts.shape[:2]
    g, t = grad_rows(apply, fn, params, pts.reshape((c * n, *pts.shape[2:])), tile_aux(aux, c))
    return g.reshape((c, n, *g.shape[1:])), t.reshape((c, n, *t.shape[1:]))


def values_stack(apply: Callable, fn: TargetFn | None, params: Any, pts: jax.Array, aux: Any) -> jax.Array:
    """Pure: :func:`target_values` of ``pts (c, N, ...)`` as ``c · N`` rows: ``(c, N[, K])``."""
    c, n = pts.shape[:2]
    t = target_values(apply, fn, params, pts.reshape((c * n, *pts.shape[2:])), tile_aux(aux, c))
    return t.reshape((c, n, *t.shape[1:]))


def weighted_sum(w: jax.Array, a: jax.Array) -> jax.Array:
    """``Σ_s w_s a_s`` over the leading (draw/step) axis; padded draws carry ``w_s = 0``."""
    return jnp.tensordot(w.astype(a.dtype), a, axes=1)


def target_values(apply: Callable, fn: TargetFn | None, params: Any, x: jax.Array, aux: Any) -> jax.Array:
    """Pure: ``(R,)`` target values, or the outputs ``(R, K)`` for ``target="all"``."""
    out = apply(params, x)
    return out if fn is None else fn(out, aux)


def tile_aux(aux: Any, reps: int) -> Any:
    """Repeats per-sample target data for ``reps`` copies of the batch laid out ``(reps, N)`` row-major."""
    return jax.tree_util.tree_map(
        lambda a: jnp.tile(a, (reps,) + (1,) * (a.ndim - 1)) if getattr(a, "ndim", 0) else a, aux
    )


def expand_like(v: jax.Array, g: jax.Array) -> jax.Array:
    """Inserts the class axis of ``g (N, K, ...)`` into ``v (N, ...)`` when ``g`` has one more axis."""
    return v[:, None] if g.ndim == v.ndim + 1 else v


# Models without a tap expose no activation shapes; assume this many activations per input
# feature (a conv net with 32-64 channels at input resolution over a few layers), so the
# default chunk errs on the small side instead of assuming a linear model.
_NO_TAP_ACTIVATIONS_PER_FEATURE = 64


def rows_per_chunk(
    model: Model,
    *,
    memory_budget: int | None,
    internal_batch_size: int | None,
    all_classes: bool,
    dtype: Any = jnp.float32,
) -> int:
    """How many model rows one compiled call may take.

    ``internal_batch_size`` (as Captum) wins; otherwise the budget divided by an
    estimate of one row's working set in ``dtype``: every tappable activation kept
    for the backward pass (x3 for its cotangent and temporaries) plus the input
    (x4: interpolated point, gradient, accumulators), times ``K`` for ``target="all"``.
    A model without a tap is assumed to hold ``64`` activations per input feature.
    """
    if internal_batch_size is not None:
        return check_int("internal_batch_size", internal_batch_size)
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else check_memory_budget(memory_budget)
    itemsize = np.dtype(dtype).itemsize
    features = math.prod(model.input_spec.shape)
    shapes = model.layer_shapes if model.tap is not None else {}
    acts = sum(math.prod(s) for s in shapes.values()) or _NO_TAP_ACTIVATIONS_PER_FEATURE * features
    per_row = itemsize * (3 * acts + 4 * features)
    if all_classes:
        per_row *= model.num_outputs
    return max(1, budget // per_row)


def chunk_rows(
    r: Resolved, memory_budget: int | None, internal_batch_size: int | None, *, all_classes: bool | None = None
) -> int:
    """:func:`rows_per_chunk` for a resolved batch, in its dtype.

    ``all_classes`` defaults to ``r.fn is None`` (``K`` backward passes per row for
    ``target="all"``); a forward-only method passes ``False``.
    """
    return rows_per_chunk(
        r.model,
        memory_budget=memory_budget,
        internal_batch_size=internal_batch_size,
        all_classes=r.fn is None if all_classes is None else all_classes,
        dtype=r.x.dtype,
    )


def draws_per_chunk(
    r: Resolved, memory_budget: int | None, internal_batch_size: int | None, *, all_classes: bool | None = None
) -> int:
    """Draws (steps, samples, windows) per compiled call: :func:`chunk_rows` shared by the ``N`` inputs, at least 1."""
    return max(1, chunk_rows(r, memory_budget, internal_batch_size, all_classes=all_classes) // r.x.shape[0])


def map_rows(fn: Callable, x: jax.Array, aux: Any, *arrays: jax.Array, batch: int) -> Any:
    """``fn(x_chunk, aux_chunk, *array_chunks)`` over chunks of ``batch`` samples, concatenated.

    :func:`explain.chunking.map_batches` with the per-sample target data
    ``aux`` sliced alongside (scalars pass through); every chunk has the same
    shape, so a jitted ``fn`` compiles once.
    """
    idx = jnp.arange(x.shape[0])
    return chunking.map_batches(lambda i, xc, *rest: fn(xc, take_aux(aux, i), *rest), idx, x, *arrays, batch=batch)


# ----------------------------------------------------------------------------- checks (all before compilation)


def check_chunking(internal_batch_size: Any, memory_budget: Any) -> None:
    """Validates the two chunking options every batched method takes."""
    check_optional_int("internal_batch_size", internal_batch_size)
    check_memory_budget(memory_budget)


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


def take_aux(aux: Any, idx: np.ndarray) -> Any:
    """The per-sample target data of the samples ``idx``."""
    return jax.tree_util.tree_map(lambda a: a[idx] if getattr(a, "ndim", 0) else a, aux)
