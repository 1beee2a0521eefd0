"""Checks and building blocks shared by the metrics that run the model (faithfulness, stability).

Checks that run before anything compiles, small pure functions called inside a metric's
own ``jax.jit``, and the target's value at ``x``. Nothing outside ``explain.metrics`` imports it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from explain import chunking
from explain import targets as targets_lib
from explain.checks import check_choice, check_finite_array, check_key
from explain.gradients import Prepared, prepare
from explain.model import Model
from explain.saliency import registry
from explain.targets import BoundTarget

SCORES = ("prob", "logit", "log_prob")  # the values of explain.targets.Score
_CLASS_TARGET_HINT = "None, 'pred', a class index or (N,) class indices"


def _is_class_target(target: Any) -> bool:
    if target is None or (isinstance(target, str) and target == "pred"):
        return True
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        return True
    return hasattr(target, "shape") and not callable(target) and np.issubdtype(np.asarray(target).dtype, np.integer)


def scored_target(model: Model, target: Any, score: str | None, *, default: str) -> Any:
    """The target a metric scores: a class target gets its ``score`` (``default`` when ``None``).

    Class targets (``None``, ``"pred"``, an int, ``(N,)`` ints) on a classifier become
    ``class_score(target, score)``; any other target (a loss, a callable, a
    :class:`~explain.targets.Target`, a regression output) is scored as it is and
    takes no ``score``.
    """
    if score is not None:
        check_choice("score", score, SCORES)
    if model.output_kind == "classification" and _is_class_target(target):
        cls = "pred" if target is None else target
        return targets_lib.class_score(cls, score or default)
    if score is not None:
        raise ValueError(
            f"score={score!r} applies to class targets ({_CLASS_TARGET_HINT}) of a classifier; "
            f"got target {target!r} on a {model.output_kind} model (leave score=None)"
        )
    return target


def bind(
    model: Model, x: Any, *, target: Any, labels: Any, score: str | None, default: str, memory_budget: int | None
) -> Prepared:
    """Binds the scored target to ``x`` (validated again: cheap) with a predicted class frozen at ``x``."""
    chunking.check_budget(memory_budget)
    return prepare(
        model,
        x,
        target=scored_target(model, target, score, default=default),
        labels=labels,
        memory_budget=memory_budget,
    )


def check_image(model: Model, *, what: str) -> tuple[int, int, int]:
    """``(H, W, C)`` of an image model, else a ``ValueError`` naming the metric."""
    shape = tuple(model.input_spec.shape)
    if len(shape) != 3:
        raise ValueError(
            f"{what} needs image inputs of shape (N, H, W, C); model {model.name!r} takes (N, {', '.join(map(str, shape))})"
        )
    return shape  # type: ignore[return-value]


def check_attributions(attributions: Any, x: Any) -> np.ndarray:
    """``attributions`` (an array or an :class:`~explain.saliency.Attribution`) shaped like ``x``, finite, on the host."""
    values = getattr(attributions, "values", attributions)
    arr = check_finite_array("attributions", values)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"expected numeric attributions, got dtype {arr.dtype}")
    if tuple(arr.shape) != tuple(x.shape):
        hint = " (target='all' maps have a class axis: pick one class)" if arr.ndim == x.ndim + 1 else ""
        raise ValueError(f"expected attributions shaped like x {tuple(x.shape)}, got {tuple(arr.shape)}{hint}")
    return arr.astype(x.dtype, copy=False)


def check_baseline(baseline: Any, x: Any) -> np.ndarray:
    """``"zero"``, a number, one sample ``(*input_shape)`` or ``(N, *input_shape)`` as a read-only ``(N, ...)`` view."""
    if isinstance(baseline, str):
        check_choice("baseline", baseline, ("zero",))
        value = np.zeros((), x.dtype)
    else:
        value = check_finite_array("baseline", baseline)
        if value.dtype.kind not in "fiub":
            raise TypeError(f"expected a numeric baseline, got dtype {value.dtype}")
    if value.shape not in ((), tuple(x.shape[1:]), tuple(x.shape)):
        raise ValueError(
            f"expected baseline 'zero', a number, one sample {tuple(x.shape[1:])} or one per sample "
            f"{tuple(x.shape)}, got shape {value.shape}"
        )
    # A broadcast view: chunks copy their own rows, nothing of size N × features is allocated.
    return np.broadcast_to(value.astype(x.dtype, copy=False), x.shape)


def forward_rows(model: Model, dtype: Any, memory_budget: int | None) -> int:
    """Model rows per compiled forward-only call, inputs of ``dtype``."""
    return chunking.FORWARD_ROWS_PER_ROW * chunking.rows_per_chunk(model, memory_budget=memory_budget, dtype=dtype)


def map_draws(
    chunk: Callable,
    p: Prepared,
    *arrays: Any,
    draws: Any,
    memory_budget: int | None,
    show_progress: bool = False,
    desc: str = "chunks",
    **static: Any,
) -> Any:
    """``chunk(apply, params, x, target, *arrays, draw_chunk, weights, **static)`` over every sample and draw.

    ``draws``: an array (or a tuple of arrays) with leading axis ``S``. :func:`forward_rows` per call are
    split between samples and draws by :func:`explain.chunking.plan`; results on the host, as
    :func:`explain.chunking.map_rows` (which sums ``chunk``'s values over the draw chunks).
    """
    n_draws = jax.tree_util.tree_leaves(draws)[0].shape[0]
    batch, per_call = chunking.plan(p.n, forward_rows(p.model, p.x.dtype, memory_budget), n_draws)
    fn = functools.partial(chunk, p.model.apply, p.model.params, **static)
    return chunking.map_rows(
        fn, p.x, p.target, *arrays, batch=batch, draws=draws, per_call=per_call, show_progress=show_progress, desc=desc
    )


def stacked_scores(apply: Callable, params: Any, pts: jax.Array, target: BoundTarget) -> jax.Array:
    """Pure: the target at a stack of batches ``pts (c, N, ...)``: ``(c, N)`` from ``c · N`` rows of one forward pass."""
    c, n = pts.shape[:2]
    t = target.tile(c)(apply(params, pts.reshape((c * n, *pts.shape[2:]))))
    return t.reshape((c, n))


def _scores(apply: Callable, params: Any, x: jax.Array, target: BoundTarget) -> jax.Array:
    return target(apply(params, x))


_scores_jit = jax.jit(_scores, static_argnums=0)


def scores_at(p: Prepared, memory_budget: int | None) -> np.ndarray:
    """The target at ``x`` itself, ``(N,)``, chunked."""
    fn = functools.partial(_scores_jit, p.model.apply, p.model.params)
    return chunking.map_rows(fn, p.x, p.target, batch=forward_rows(p.model, p.x.dtype, memory_budget))


def scatter_columns(values: jax.Array, columns: jax.Array, weights: jax.Array, n_columns: int) -> jax.Array:
    """Pure: draws' values ``(c, N, ...)`` placed in their columns ``(N, n_columns, ...)``, padding weighted out.

    Summing these over draw chunks (what :func:`explain.chunking.map_rows` does with draws)
    assembles the per-draw table without a device array growing with the number of draws.
    """
    onehot = jax.nn.one_hot(columns, n_columns, dtype=values.dtype) * weights.astype(values.dtype)[:, None]
    return jnp.einsum("cs,cn...->ns...", onehot, values)


def draw_keys(key: jax.Array, ids: jax.Array, draws: jax.Array) -> jax.Array:
    """Pure: one key per (draw, sample), ``(c, N)``, from the sample's index in the whole batch.

    Folding in global indices makes every random draw independent of how the batch is chunked.
    """
    per_draw = jax.vmap(lambda d: jax.random.fold_in(key, d))(draws)
    return jax.vmap(lambda k: jax.vmap(lambda i: jax.random.fold_in(k, i))(ids))(per_draw)


def check_method(model: Model, method: str, options: Any, key: Any, *, what: str) -> tuple[dict[str, Any], jax.Array]:
    """``(options, key)`` for metrics that rerun a registry ``method``: all checked before any work."""
    info = registry.get(method)
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"expected options as a mapping of {method}'s options, got {type(options).__name__}")
    opts = dict(options or {})
    info.check_options(opts)
    info.check_model(model)
    return opts, check_key(key, what=what)


def frozen_target(model: Model, x: Any, target: Any, labels: Any, memory_budget: int | None) -> Any:
    """A class target as the classes ``model`` chooses at ``x``, so reruns on other inputs or weights
    explain the same class; any other target as it is."""
    p = prepare(model, x, target=target, labels=labels, memory_budget=memory_budget)
    if p.target.fn in targets_lib.FROZEN.values():
        return targets_lib.Target(p.target.fn, p.target.name, classes=np.asarray(p.target.aux), needs="classes")
    return target
