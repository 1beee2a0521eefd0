"""Complexity: how concentrated is a map? Sparseness (Gini index) and entropy of ``|a|``.

Pure array functions of ``relevance (N, *features)``: every value after the batch axis is
one feature (pass :func:`~explain.metrics.pixel_relevance` for one value per pixel). Both
use magnitudes ``|a|`` and return ``(N,)``; ``NaN`` for an all-zero map, which has no
distribution to measure.

References:
  Chalasani, Chen, Chowdhury, Wu, Jha. Concise Explanations of Neural Networks using
  Adversarial Training. ICML 2020 (Gini sparseness).
  Hurley, Rickard. Comparing Measures of Sparsity. IEEE Trans. Inf. Theory 2009 (the Gini index).
  Bhatt, Weller, Moura. Evaluating and Aggregating Feature-based Model Explanations. IJCAI 2020 (entropy).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Shaped


def _check(relevance: Any) -> jax.Array:
    """``|relevance|`` as ``(N, D)`` floats, or a ``ValueError`` naming what was expected."""
    r = np.asarray(relevance)
    if r.dtype.kind not in "fiu":
        raise TypeError(f"expected numeric relevance, got dtype {r.dtype}")
    if r.ndim < 2 or r.shape[0] == 0 or r[0].size < 2:
        raise ValueError(
            f"expected relevance of shape (N, *features) with N >= 1 and at least 2 features, got {r.shape}"
        )
    if not np.isfinite(r).all():
        raise ValueError("expected finite relevance, got NaN or inf")
    flat = r.reshape(r.shape[0], -1)
    return jnp.abs(jnp.asarray(flat) if flat.dtype.kind == "f" else jnp.asarray(flat, jnp.float32))


@jax.jit
def _gini(a: jax.Array) -> jax.Array:
    s = jnp.sort(a, axis=1)
    n = a.shape[1]
    i = jnp.arange(1, n + 1, dtype=a.dtype)
    total = jnp.sum(s, axis=1)
    num = jnp.sum((2 * i - n - 1) * s, axis=1)
    return jnp.where(total > 0, num / (n * jnp.where(total > 0, total, 1)), jnp.nan)


def sparseness(relevance: Shaped[ArrayLike, " n *features"]) -> Float[Array, " n"]:
    """Gini index of ``|a|``: ``Σ_i (2i - D - 1) a_(i) / (D Σ_i a_i)``, ``a_(1) <= ... <= a_(D)`` sorted.

    0 for a constant map, ``(D - 1) / D`` for a one-hot map. Higher is sparser (Chalasani et al. 2020).

    Args:
      relevance: ``(N, *features)``, at least 2 features.

    Returns:
      ``(N,)`` in ``[0, 1)``; ``NaN`` for an all-zero map.

    Raises:
      ValueError / TypeError: fewer than 2 features, non-numeric or non-finite values.

    Example:
      >>> sparseness(pixel_relevance(a.values))
    """
    return _gini(_check(relevance))


@jax.jit
def _entropy(a: jax.Array) -> jax.Array:
    total = jnp.sum(a, axis=1, keepdims=True)
    p = a / jnp.where(total > 0, total, 1)
    h = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1)), 0), axis=1)
    return jnp.where(total[:, 0] > 0, h, jnp.nan)


def entropy(relevance: Shaped[ArrayLike, " n *features"]) -> Float[Array, " n"]:
    """Shannon entropy of ``|a|`` normalised to a distribution: ``-Σ_i p_i log p_i``, ``p = |a| / Σ|a|`` (nats).

    ``log D`` for a constant map, 0 for a one-hot map. Lower is more concentrated (Bhatt et al.
    2020's complexity). Arguments, returns and errors as :func:`sparseness` (values in ``[0, log D]``).
    """
    return _entropy(_check(relevance))
