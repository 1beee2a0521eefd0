"""Occlusion: the drop in the target when a sliding window is replaced by a baseline value.

For windows ``W_k`` (a box of ``window`` over the per-sample shape, moved by
``strides``), each feature gets the mean drop over the windows covering it:

    A_i = Σ_{k: i ∈ W_k} (F(x) - F(x with W_k := b)) / |{k: i ∈ W_k}|

No gradients: the non-gradient reference the gradient maps are compared with.
The windows are the draws: a chunk of ``c`` windows of ``N`` samples is ``c · N``
rows through one forward pass, chunked over samples × windows within the memory
budget (:func:`explain.chunking.map_rows`). A window travels as its corner (one
int per axis) and its mask is built inside the compiled call, so nothing of size
``windows × features`` is ever materialised; the per-feature window counts are
an outer product of per-axis counts.

References:
  Zeiler, Fergus. Visualizing and Understanding Convolutional Networks. ECCV 2014.
  (Captum: ``captum.attr.Occlusion``.)
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from explain import chunking
from explain.arrays import Batch
from explain.checks import check_float, check_int
from explain.gradients import prepare
from explain.model import Model, as_model
from explain.saliency import _common as common
from explain.saliency.attribution import Attribution
from explain.targets import BoundTarget


def _box(
    name: str, value: int | Sequence[int] | None, shape: tuple[int, ...], default: tuple[int, ...]
) -> tuple[int, ...]:
    """A window/stride over the per-sample ``shape``; images may omit the channel axis (all channels)."""
    if value is None:
        return default
    box = (
        (value,) * (len(shape) - 1 if len(shape) == 3 else len(shape))
        if isinstance(value, (int, np.integer))
        else tuple(value)
    )
    if len(shape) == 3 and len(box) == 2:
        box = (*box, shape[2])
    if len(box) != len(shape):
        raise ValueError(
            f"expected {name} with {len(shape)} entries (or 2 for (h, w) on images), got {value!r} for input {shape}"
        )
    for b, s in zip(box, shape):
        check_int(name, b)
        if b > s:
            raise ValueError(f"expected {name} {box} to fit the input {shape}")
    return tuple(int(b) for b in box)


def resolve_window(
    shape: tuple[int, ...], window: int | Sequence[int] | None = None, strides: int | Sequence[int] | None = None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Full per-axis ``(window, strides)`` over the per-sample ``shape``, with the defaults of :func:`occlusion`."""
    shape = tuple(int(s) for s in shape)
    default = (max(1, shape[0] // 8), max(1, shape[1] // 8), shape[2]) if len(shape) == 3 else (1,) * len(shape)
    window = _box("window", window, shape, default)
    half = tuple(max(1, w // 2) for w in window)
    if len(shape) == 3 and strides is None:
        half = (*half[:2], shape[2])
    return window, _box("strides", strides, shape, half)


def window_starts(shape: tuple[int, ...], window: tuple[int, ...], strides: tuple[int, ...]) -> list[list[int]]:
    """Window starts per axis; the last position on each axis is clamped so edges are covered."""
    starts = []
    for s, w, st in zip(shape, window, strides):
        pos = list(range(0, s - w + 1, st))
        if pos[-1] != s - w:
            pos.append(s - w)
        starts.append(pos)
    return starts


def window_corners(shape: tuple[int, ...], window: tuple[int, ...], strides: tuple[int, ...]) -> np.ndarray:
    """``(n_windows, ndim)`` int32 corners of every window (row-major over the axes)."""
    starts = window_starts(shape, window, strides)
    return np.asarray(list(itertools.product(*starts)), np.int32).reshape(-1, len(shape))


def n_windows(shape: tuple[int, ...], window: tuple[int, ...], strides: tuple[int, ...]) -> int:
    """How many windows (model rows per sample) an occlusion of ``shape`` costs."""
    return math.prod(len(p) for p in window_starts(shape, window, strides))


def window_counts(shape: tuple[int, ...], window: tuple[int, ...], strides: tuple[int, ...]) -> np.ndarray:
    """Windows covering each feature, ``shape``: the outer product of per-axis counts (``>= 1``)."""
    count = np.ones((), np.int64)
    for s, w, pos in zip(shape, window, window_starts(shape, window, strides)):
        axis = np.zeros((s,), np.int64)
        for p in pos:
            axis[p : p + w] += 1
        count = np.multiply.outer(count, axis)
    return count


def window_masks(shape: tuple[int, ...], window: tuple[int, ...], strides: tuple[int, ...]) -> np.ndarray:
    """``(n_windows, *shape)`` boolean masks (for inspection; the method builds them per chunk on the device)."""
    return np.asarray(_masks(jnp.asarray(window_corners(shape, window, strides)), window, tuple(shape)))


def _masks(corners: jax.Array, window: tuple[int, ...], shape: tuple[int, ...]) -> jax.Array:
    """``(c, *shape)`` boolean masks of the windows with ``corners (c, ndim)``."""
    mask = jnp.ones((corners.shape[0],) + (1,) * len(shape), bool)
    for a, (s, w) in enumerate(zip(shape, window)):
        i = jnp.arange(s)
        inside = (i[None] >= corners[:, a : a + 1]) & (i[None] < corners[:, a : a + 1] + w)  # (c, s)
        mask = mask & inside.reshape((corners.shape[0],) + (1,) * a + (s,) + (1,) * (len(shape) - a - 1))
    return mask


def occlusion_chunk(
    apply: Callable,
    params: Any,
    x: Float[Array, " n *features"],
    target: BoundTarget,
    fx: Float[Array, " n *k"],
    corners: Int[Array, " c d"],
    weights: Float[Array, " c"],
    *,
    window: tuple[int, ...],
    baseline_value: Any = 0.0,
) -> jax.Array:
    """Pure: ``Σ_k m_k (F(x) - F(x with W_k := b)) ⊗ mask_k`` over ``c`` windows; additive over chunks.

    ``fx`` is ``F(x)`` (``(N,)``, or ``(N, K)`` for ``target="all"``). Returns ``(N, [K,] ...)``.
    """
    c, shape = corners.shape[0], x.shape[1:]
    mk = _masks(corners, window, shape)  # (c, ...)
    pts = jnp.where(mk[:, None], jnp.asarray(baseline_value, x.dtype), x[None])  # (c, N, ...)
    t = common.values_stack(apply, params, pts, target)  # (c, N[, K])
    drop = (fx[None] - t) * weights.astype(t.dtype).reshape((c,) + (1,) * (t.ndim - 1))
    out = jnp.einsum("cn...,cd->n...d", drop, mk.reshape(c, -1).astype(x.dtype))  # (N, [K,] D)
    return out.reshape((*out.shape[:-1], *shape))


def _target_values(apply: Callable, params: Any, x: jax.Array, target: BoundTarget) -> jax.Array:
    return target(apply(params, x))


def occlusion_core(
    apply: Callable,
    params: Any,
    x: Float[Array, " n *features"],
    target: BoundTarget,
    *,
    window: int | tuple[int, ...] | None = None,
    strides: int | tuple[int, ...] | None = None,
    baseline_value: float | Float[Array, " "] = 0.0,
) -> Attribution:
    """Pure occlusion with every window in one call; ``window``/``strides`` as :func:`occlusion` (static)."""
    shape = tuple(x.shape[1:])
    window, strides = resolve_window(shape, window, strides)
    corners = jnp.asarray(window_corners(shape, window, strides))
    fx = _target_values(apply, params, x, target)
    ones = jnp.ones((corners.shape[0],), x.dtype)
    total = occlusion_chunk(apply, params, x, target, fx, corners, ones, window=window, baseline_value=baseline_value)
    return Attribution(total / jnp.asarray(window_counts(shape, window, strides), x.dtype), "occlusion", target.name)


_occlusion_chunk = jax.jit(occlusion_chunk, static_argnums=0, static_argnames="window")
_values = jax.jit(_target_values, static_argnums=0)


def occlusion(
    model: Model | Any,
    x: Batch,
    *,
    target: Any = None,
    labels: Any = None,
    window: int | Sequence[int] | None = None,
    strides: int | Sequence[int] | None = None,
    baseline_value: float = 0.0,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> Attribution:
    """Mean target drop per feature under sliding-window occlusion (module docstring has the math).

    Args (others: :mod:`explain.saliency`):
      window: box size per axis; for images ``(h, w)`` covers all channels; an int is square.
        Default ``max(1, H // 8)`` for images, 1 feature for tabular inputs.
      strides: step per axis (default half the window, at least 1).
      baseline_value: the value occluded features take (default 0, as Captum).

    Raises:
      ValueError / TypeError: before compilation, also for a window or stride that is not a positive
      int per axis or does not fit the input, a non-finite ``baseline_value``.

    Example:
      >>> a = occlusion(m, x, target=y, window=(8, 8), strides=(4, 4))
    """
    m = as_model(model)
    shape = tuple(m.input_spec.shape)
    window, strides = resolve_window(shape, window, strides)
    value = check_float("baseline_value", baseline_value, minimum=-np.inf)
    chunking.check_budget(memory_budget)
    p = prepare(m, x, target=target, labels=labels, allow_all=True, memory_budget=memory_budget)
    fn = functools.partial(_values, p.model.apply, p.model.params)
    fx = chunking.map_rows(fn, p.x, p.target, batch=common.rows(p, memory_budget, forward_only=True))
    corners = window_corners(shape, window, strides)  # host: sliced per chunk, compiles nothing new
    total = common.run_draws(
        _occlusion_chunk, p, corners, fx, memory_budget=memory_budget, show_progress=show_progress,
        window=window, baseline_value=value,
    )  # fmt: skip
    count = window_counts(shape, window, strides).astype(total.dtype)
    return Attribution(jnp.asarray(total / count), "occlusion", p.target.name)
