"""From an attribution map to per-pixel relevance, and from pixels to the units a metric removes.

Attributions are shaped like the input, ``(N, H, W, C)`` for images. Every metric
that scores pixels (localisation, deletion, ROAD) first reduces the channels:

* ``reduce="sum_abs"`` (default): ``R_hw = Σ_c |a_hwc|``, how much the pixel matters
  whatever the sign: the convention of the localisation literature (Arras et al. 2022
  score positive relevance; a magnitude map is its own positive part).
* ``reduce="sum"``: ``R_hw = Σ_c a_hwc``, signed: what a pixel adds to the output,
  the right quantity where a metric compares sums of attributions with output
  differences (faithfulness correlation).

Tabular attributions ``(N, F)`` keep one value per feature (``|a|`` or ``a``).
Faithfulness metrics may remove ``patch × patch`` blocks instead of pixels; a block's
relevance is the sum of its pixels' (blocks at the right and bottom edges may be smaller).
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, Shaped

from explain.checks import check_choice, check_int

Reduce = Literal["sum_abs", "sum"]
REDUCTIONS: tuple[str, ...] = ("sum_abs", "sum")


def check_reduce(reduce: str) -> str:
    """``reduce`` if it is one of :data:`REDUCTIONS`, else ``ValueError`` listing them."""
    return check_choice("reduce", reduce, REDUCTIONS)


def reduce_channels(attributions: Float[Array, " n *features"], *, image: bool, reduce: str) -> jax.Array:
    """Pure: ``(N, H, W, C) -> (N, H, W)`` for images (``image=True``), ``(N, F) -> (N, F)`` otherwise."""
    a = jnp.abs(attributions) if reduce == "sum_abs" else attributions
    return a.sum(axis=-1) if image else a


def pixel_relevance(
    attributions: Shaped[ArrayLike, " n h w c"], *, reduce: Reduce = "sum_abs"
) -> Float[Array, " n h w"]:
    """Per-pixel relevance of image attributions: ``Σ_c |a|`` (``reduce="sum_abs"``) or ``Σ_c a`` (``"sum"``).

    Args:
      attributions: ``(N, H, W, C)``, e.g. ``Attribution.values``.
      reduce: ``"sum_abs"`` or ``"sum"`` (module docstring).

    Returns:
      ``(N, H, W)``.

    Raises:
      ValueError: not a 4-D array, or an unknown ``reduce``.

    Example:
      >>> r = pixel_relevance(explain.integrated_gradients(m, x).values)
    """
    check_reduce(reduce)
    a = jnp.asarray(attributions)
    if a.ndim != 4:
        raise ValueError(f"expected image attributions of shape (N, H, W, C), got shape {tuple(a.shape)}")
    return reduce_channels(a, image=True, reduce=reduce)


def unit_ids(shape: tuple[int, ...], patch: int) -> tuple[np.ndarray, int]:
    """``(ids, U)``: the unit each pixel (or feature) belongs to, and the number of units.

    Images ``(H, W, C)``: ``ids`` is ``(H, W)`` with ``ids[i, j] = (i // p) · ⌈W/p⌉ + j // p``;
    tabular ``(F,)``: ``ids = arange(F)`` (``patch`` must be 1).
    """
    patch = check_int("patch", patch)
    if len(shape) != 3:
        if patch != 1:
            raise ValueError(f"expected patch=1 for inputs of shape {shape}; patches need images (H, W, C)")
        return np.arange(int(np.prod(shape)), dtype=np.int32), int(np.prod(shape))
    h, w = shape[:2]
    if patch > min(h, w):
        raise ValueError(f"expected patch <= {min(h, w)} for images of {h}x{w}, got {patch}")
    cols = -(-w // patch)
    ids = (np.arange(h)[:, None] // patch) * cols + np.arange(w)[None, :] // patch
    return ids.astype(np.int32), int(-(-h // patch) * cols)


def unit_relevance(
    relevance: Float[Array, " n *pixels"], ids: Int[Array, " *pixels"], n_units: int
) -> Float[Array, " n u"]:
    """Pure: relevance summed per unit, ``(N, *pixels) -> (N, U)``."""
    flat = relevance.reshape(relevance.shape[0], -1)
    return jax.vmap(lambda r: jax.ops.segment_sum(r, ids.reshape(-1), num_segments=n_units))(flat)


def ranks(values: Float[Array, " n u"], *, descending: bool = True) -> Int[Array, " n u"]:
    """Pure: each unit's 0-based rank per row (0 = largest with ``descending``); ties keep their order of position."""
    order = jnp.argsort(-values if descending else values, axis=1, stable=True)
    # The inverse permutation by a scatter: one sort instead of two.
    positions = jnp.broadcast_to(jnp.arange(values.shape[1]), values.shape)
    return jnp.zeros(values.shape, jnp.int32).at[jnp.arange(values.shape[0])[:, None], order].set(positions)
