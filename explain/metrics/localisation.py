"""Localisation: does the map point at the object? Scores of a relevance map against a ground-truth mask.

Pure array functions of ``relevance (N, H, W)`` (or image attributions ``(N, H, W, C)``,
reduced over channels by ``reduce``, :mod:`explain.metrics.relevance`) and a boolean
``mask (N, H, W)``; each returns ``(N,)``, higher is better. Every mask must hold at
least one pixel (and :func:`mask_auc` at least one pixel outside). Ties among relevance
values are broken by position (row-major) where a ranking is needed, except in
:func:`mask_auc`, which averages them.

A map that draws the object's outline can fall just outside an anti-aliased mask;
:func:`grow` widens a mask by a few pixels to measure how much of a shortfall that explains.

References:
  Arras, Osman, Samek. CLEVR-XAI: A benchmark dataset for the ground truth evaluation of
  neural network explanations. Information Fusion 2022 (relevance mass and rank accuracy).
  Zhang, Bargal, Lin, Brandt, Shen, Sclaroff. Top-down Neural Attention by Excitation
  Backprop. IJCV 2018 (pointing game).
  Theiner, Müller-Budack, Ewerth. Interpretable Semantic Photo Geolocation. WACV 2022
  (top-k intersection, as in Quantus).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Shaped

from explain.checks import check_int, check_optional_int
from explain.metrics.relevance import Reduce, check_reduce, ranks, reduce_channels


def _check(relevance: Any, mask: Any, *, reduce: str, need_outside: bool = False) -> tuple[jax.Array, jax.Array]:
    """``(relevance (N, H, W), mask (N, H, W) bool)`` or a ``ValueError`` naming what was expected."""
    check_reduce(reduce)
    m = np.asarray(mask)
    if m.dtype != np.bool_:
        raise TypeError(f"expected mask as a bool array (N, H, W), got dtype {m.dtype}")
    if m.ndim != 3:
        raise ValueError(f"expected mask of shape (N, H, W), got shape {m.shape}")
    r = np.asarray(relevance)
    if r.dtype.kind not in "fiu":
        raise TypeError(f"expected numeric relevance, got dtype {r.dtype}")
    if r.shape[:3] != m.shape or r.ndim not in (3, 4):
        raise ValueError(f"expected relevance of shape {m.shape} or {m.shape} + (C,) like the mask, got {r.shape}")
    if not np.isfinite(r).all():
        raise ValueError("expected finite relevance, got NaN or inf")
    area = m.reshape(m.shape[0], -1).sum(axis=1)
    if (area == 0).any():
        raise ValueError(
            f"expected every mask to hold at least one pixel; sample(s) {np.flatnonzero(area == 0)[:8].tolist()} are empty"
        )
    if need_outside and (area == m[0].size).any():
        full = np.flatnonzero(area == m[0].size)[:8].tolist()
        raise ValueError(f"expected every mask to leave at least one pixel outside; sample(s) {full} cover the image")
    rel = jnp.asarray(r) if r.dtype.kind == "f" else jnp.asarray(r, jnp.float32)
    if r.ndim == 4:
        rel = reduce_channels(rel, image=True, reduce=reduce)
    return rel, jnp.asarray(m)


def _flat(a: jax.Array) -> jax.Array:
    return a.reshape(a.shape[0], -1)


@jax.jit
def _mass(r: jax.Array, m: jax.Array) -> jax.Array:
    pos = jnp.maximum(_flat(r), 0)
    inside = jnp.sum(jnp.where(_flat(m), pos, 0), axis=1)
    total = jnp.sum(pos, axis=1)
    return jnp.where(total > 0, inside / jnp.where(total > 0, total, 1), jnp.nan)


def relevance_mass(
    relevance: Shaped[ArrayLike, " n h w *c"], mask: Bool[ArrayLike, " n h w"], *, reduce: Reduce = "sum_abs"
) -> Float[Array, " n"]:
    """Relevance mass accuracy: ``Σ_{p ∈ mask} R⁺_p / Σ_p R⁺_p``, the share of positive relevance inside the mask.

    ``R⁺ = max(R, 0)`` (Arras et al. score positive relevance; with the default
    ``reduce="sum_abs"`` every value already is). A uniform random map scores the mask's area
    fraction in expectation; the mask itself scores 1. ``NaN`` where a map has no positive relevance.

    Args:
      relevance: ``(N, H, W)``, or ``(N, H, W, C)`` attributions reduced over channels by ``reduce``.
      mask: ``(N, H, W)`` bool, the object.
      reduce: ``"sum_abs"`` or ``"sum"`` (only for 4-D input).

    Returns:
      ``(N,)`` in ``[0, 1]``.

    Raises:
      ValueError / TypeError: shapes that disagree, a non-bool mask, an empty mask, non-finite relevance.

    Example:
      >>> relevance_mass(explain.grad_cam(m, x).values, split.mask).mean()
    """
    return _mass(*_check(relevance, mask, reduce=reduce))


@functools.partial(jax.jit, static_argnames="k")
def _top_k_share(r: jax.Array, m: jax.Array, k: jax.Array | None = None) -> jax.Array:
    m = _flat(m)
    size = jnp.sum(m, axis=1) if k is None else jnp.full((m.shape[0],), k)
    top = ranks(_flat(r)) < size[:, None]
    return jnp.sum(top & m, axis=1) / size


def relevance_rank(
    relevance: Shaped[ArrayLike, " n h w *c"], mask: Bool[ArrayLike, " n h w"], *, reduce: Reduce = "sum_abs"
) -> Float[Array, " n"]:
    """Relevance rank accuracy: the share of the ``K = |mask|`` most relevant pixels that lie inside the mask.

    ``|top_K(R) ∩ mask| / K`` (Arras et al. 2022; ties broken by position). The mask itself
    scores 1; a uniform random map the mask's area fraction in expectation. Arguments as
    :func:`relevance_mass`.
    """
    return _top_k_share(*_check(relevance, mask, reduce=reduce))


def top_k_intersection(
    relevance: Shaped[ArrayLike, " n h w *c"],
    mask: Bool[ArrayLike, " n h w"],
    *,
    k: int | None = None,
    reduce: Reduce = "sum_abs",
) -> Float[Array, " n"]:
    """Top-k intersection: ``|top_k(R) ∩ mask| / k``, the share of the ``k`` most relevant pixels inside the mask.

    ``k`` is the same for every sample (Theiner et al. 2022; Quantus' ``TopKIntersection``),
    so a small object caps the score at ``|mask| / k``. ``k=None`` takes each mask's own size,
    which is :func:`relevance_rank`. Arguments as :func:`relevance_mass`.

    Raises:
      ValueError: also for ``k`` outside ``[1, H · W]``.
    """
    r, m = _check(relevance, mask, reduce=reduce)
    k = check_optional_int("k", k)
    if k is not None and k > m[0].size:
        raise ValueError(f"expected k <= {m[0].size} (the pixels of one map), got {k}")
    return _top_k_share(r, m, k)


@jax.jit
def _pointing(r: jax.Array, m: jax.Array) -> jax.Array:
    best = jnp.argmax(_flat(r), axis=1)
    return jnp.take_along_axis(_flat(m), best[:, None], axis=1)[:, 0].astype(r.dtype)


def pointing_game(
    relevance: Shaped[ArrayLike, " n h w *c"],
    mask: Bool[ArrayLike, " n h w"],
    *,
    tolerance: int = 0,
    reduce: Reduce = "sum_abs",
) -> Float[Array, " n"]:
    """Pointing game: 1 where the map's maximum lies within ``tolerance`` pixels of the mask, else 0.

    The hit test is ``argmax R ∈ grow(mask, tolerance)`` (Zhang et al. 2018 use 15 px at
    ImageNet scale; ties at the maximum go to the first in row-major order). The mask itself
    scores 1. Arguments as :func:`relevance_mass`.

    Returns:
      ``(N,)`` of 0.0 and 1.0: its mean is the hit rate.
    """
    r, m = _check(relevance, mask, reduce=reduce)
    tolerance = check_int("tolerance", tolerance, minimum=0)
    return _pointing(r, grow(m, tolerance) if tolerance else m)


@jax.jit
def _auc(r: jax.Array, m: jax.Array) -> jax.Array:
    r, m = _flat(r), _flat(m)

    def one(v, pos):
        s = jnp.sort(v)
        below = jnp.searchsorted(s, v, side="left")
        upto = jnp.searchsorted(s, v, side="right")
        rank = (below + upto + 1) / 2  # 1-based rank, ties averaged
        p = jnp.sum(pos, dtype=jnp.float32)  # float: P · Q overflows int32 on large images
        q = v.shape[0] - p
        return (jnp.sum(jnp.where(pos, rank, 0)) - p * (p + 1) / 2) / (p * q)

    return jax.vmap(one)(r.astype(jnp.float32), m)


def mask_auc(
    relevance: Shaped[ArrayLike, " n h w *c"], mask: Bool[ArrayLike, " n h w"], *, reduce: Reduce = "sum_abs"
) -> Float[Array, " n"]:
    """ROC AUC of the relevance as a detector of mask pixels: ``P(R_in > R_out) + ½ P(R_in = R_out)``.

    Rank-based (Mann-Whitney U over ``P`` pixels inside and ``Q`` outside, ties averaged):
    ``(Σ_{p ∈ mask} rank_p - P(P+1)/2) / (P Q)``. The mask itself scores 1, its inverse 0,
    a constant map 0.5. Arguments as :func:`relevance_mass` (every mask must also leave a pixel outside).
    """
    return _auc(*_check(relevance, mask, reduce=reduce, need_outside=True))


@functools.partial(jax.jit, static_argnames="pixels")
def _grow(m: jax.Array, pixels: int) -> jax.Array:
    off = np.arange(-pixels, pixels + 1)
    disk = (off[:, None] ** 2 + off[None, :] ** 2 <= pixels**2).astype(np.float32)  # (2p+1, 2p+1)
    hit = jax.lax.conv_general_dilated(
        m[:, None].astype(jnp.float32), jnp.asarray(disk)[None, None], (1, 1), "SAME"
    )  # (N, 1, H, W): how many mask pixels lie within the disk
    return hit[:, 0] > 0.5


def grow(mask: Bool[ArrayLike, " n h w"], pixels: int) -> Bool[Array, " n h w"]:
    """The mask widened by ``pixels``: every pixel within Euclidean distance ``pixels`` of a mask pixel.

    ``pixels=1`` adds the 4-neighbours (a cross), ``2`` a disk of radius 2, and so on (the
    distance the pointing game's tolerance is measured in).

    Args:
      mask: ``(N, H, W)`` bool.
      pixels: ``>= 0``.

    Returns:
      ``(N, H, W)`` bool, a superset of ``mask``.
    """
    m = np.asarray(mask)
    if m.dtype != np.bool_ or m.ndim != 3:
        raise ValueError(f"expected mask as a bool array (N, H, W), got {m.dtype} of shape {m.shape}")
    pixels = check_int("pixels", pixels, minimum=0)
    return jnp.asarray(m) if pixels == 0 else _grow(jnp.asarray(m), pixels)
