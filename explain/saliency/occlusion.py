"""Occlusion: the drop in the target when a sliding window is replaced by a baseline value.

For windows ``W_k`` (a box of ``window`` over the per-sample shape, moved by
``strides``), each feature gets the mean drop over the windows covering it:

    A_i = Σ_{k: i ∈ W_k} (F(x) - F(x with W_k := b)) / |{k: i ∈ W_k}|

No gradients: the non-gradient reference the gradient maps are compared with.
All windows are batched: a chunk of ``c`` windows is ``c · N`` rows through one
forward pass, with a Python loop over equal chunks.

References:
  Zeiler, Fergus. Visualizing and Understanding Convolutional Networks. ECCV 2014.
  (Captum: ``captum.attr.Occlusion``.)
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from explain import chunking
from explain.model import Model, as_model
from explain.saliency import _common as common
from explain.saliency.attribution import Attribution
from explain.targets import TargetFn


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
        common.check_int(name, b)
        if b > s:
            raise ValueError(f"expected {name} {box} to fit the input {shape}")
    return tuple(int(b) for b in box)


def window_masks(shape: tuple[int, ...], window: tuple[int, ...], strides: tuple[int, ...]) -> np.ndarray:
    """``(n_windows, *shape)`` boolean masks; the last position on each axis is clamped so edges are covered."""
    starts = []
    for s, w, st in zip(shape, window, strides):
        pos = list(range(0, s - w + 1, st))
        if pos[-1] != s - w:
            pos.append(s - w)
        starts.append(pos)
    masks = np.zeros((int(np.prod([len(p) for p in starts])), *shape), bool)
    for k, corner in enumerate(itertools.product(*starts)):
        masks[(k, *(slice(c, c + w) for c, w in zip(corner, window)))] = True
    return masks


@functools.cache
def _occlusion_chunk(apply: Callable, fn: TargetFn | None):
    """Jitted ``Σ_k m_k (F(x) - F(x_k)) ⊗ mask_k`` over one chunk of windows."""

    def chunk(params, x, fx, value, aux, masks, weights):
        c = masks.shape[0]
        mk = masks[:, None].astype(x.dtype)  # (c, 1, ...)
        t = common.values_stack(apply, fn, params, x[None] * (1 - mk) + value * mk, aux)  # (c, N, [K])
        drop = (fx[None] - t) * weights.reshape((c,) + (1,) * (t.ndim - 1))
        mflat = mk[:, 0].reshape(c, -1)  # (c, D)
        out = jnp.einsum("cn...,cd->n...d", drop, mflat)  # (N, [K,] D)
        return out.reshape((*out.shape[:-1], *x.shape[1:]))

    return jax.jit(chunk)


def occlusion(
    model: Model | Any,
    x: Any,
    *,
    target: Any = None,
    labels: Any = None,
    window: int | Sequence[int] | None = None,
    strides: int | Sequence[int] | None = None,
    baseline_value: float = 0.0,
    internal_batch_size: int | None = None,
    memory_budget: int | None = None,
) -> Attribution:
    """Mean target drop per feature under sliding-window occlusion (module docstring has the math).

    Args:
      model: a :class:`~explain.model.Model` (contract in :mod:`explain.model`) or a bundle.
      x: ``(N, *input_shape)``.
      target: see :mod:`explain.targets`, or ``"all"``.
      window: box size per axis; for images ``(h, w)`` covers all channels; an int is square.
        Default ``max(1, H // 8)`` for images, 1 feature for tabular inputs.
      strides: step per axis (default half the window, at least 1).
      baseline_value: the value occluded features take (default 0, as Captum).
      internal_batch_size: model rows (windows × samples) per compiled call.
      memory_budget: bytes of working set per compiled call (default 256 MiB).

    Returns:
      :class:`Attribution` shaped like ``x``.

    Raises:
      ValueError / TypeError: a window or stride that is not a positive int per axis or does not fit the
      input, a non-finite ``baseline_value``, a bad ``internal_batch_size`` or ``memory_budget``.
    """
    m = as_model(model)
    shape = m.input_spec.shape
    default = (max(1, shape[0] // 8), max(1, shape[1] // 8), shape[2]) if len(shape) == 3 else (1,) * len(shape)
    window = _box("window", window, shape, default)
    half = tuple(max(1, w // 2) for w in window)
    if len(shape) == 3 and strides is None:
        half = (*half[:2], shape[2])
    strides = _box("strides", strides, shape, half)
    value = common.check_float("baseline_value", baseline_value, minimum=-np.inf)
    common.check_chunking(internal_batch_size, memory_budget)
    r = common.resolve(m, x, target, labels)
    masks = window_masks(shape, window, strides)
    per_chunk = common.draws_per_chunk(r, memory_budget, internal_batch_size, all_classes=False)  # forward only
    fx = common.compiled_forward(r.model.apply)(r.model.params, r.x)
    fx = fx if r.fn is None else r.fn(fx, r.aux)
    run = functools.partial(
        _occlusion_chunk(r.model.apply, r.fn), r.model.params, r.x, fx, jnp.asarray(value, r.x.dtype), r.aux
    )
    total = chunking.accumulate(run, jnp.asarray(masks), per_chunk)
    count = jnp.asarray(masks.sum(0), r.x.dtype)  # (...) windows per feature, >= 1 by construction
    return Attribution(total / count, "occlusion", r.name)
