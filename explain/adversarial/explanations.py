"""Explanations under attack: how much a saliency map moves between clean and adversarial inputs.

For each ε, the map ``S(x)`` of a chosen method is compared with
``S(x_adv)`` per example by

* top-k overlap ``|top_k(S(x)) ∩ top_k(S(x_adv))| / k`` (1: the same k most
  salient features; the expected overlap of two random maps is ``k/d``), and
* Spearman's rank correlation ρ over all features (Pearson of the ranks).

References:
  Ghorbani, Abid, Zou (2019), Interpretation of neural networks is fragile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from explain.adversarial import attacks as A
from explain.adversarial.sweep import sweep
from explain.gradients import input_gradients
from explain.model import Model, as_model

SaliencyFn = Callable[[Model, jax.Array], jax.Array]
PGD10 = A.AttackConfig("pgd", steps=10)


class SaliencyShift(NamedTuple):
    """Per ε (axis 0) and example (axis 1): ``topk_overlap`` and ``spearman`` ``(E, N)``; ``eps`` ``(E,)``; ``k``."""

    eps: tuple[float, ...]
    k: int
    topk_overlap: np.ndarray
    spearman: np.ndarray
    success: np.ndarray

    def summary(self) -> list[dict]:
        return [
            {"eps": e, "topk_overlap": float(o.mean()), "spearman": float(s.mean()), "attack_success": float(a.mean())}
            for e, o, s, a in zip(self.eps, self.topk_overlap, self.spearman, self.success)
        ]


def gradient_saliency(model: Model, x: jax.Array) -> jax.Array:
    """Simonyan et al. (2014): ``|∂ logit_pred / ∂x|``, summed over the channel axis of images."""
    g = jnp.abs(input_gradients(model, x, target="pred").values)
    return g.sum(axis=-1) if g.ndim == 4 else g


def _ranks(v: jax.Array) -> jax.Array:
    return jnp.argsort(jnp.argsort(v, axis=1), axis=1).astype(jnp.float32)


def topk_overlap(a: jax.Array, b: jax.Array, k: int) -> jax.Array:
    """``|top_k(a_i) ∩ top_k(b_i)| / k`` per row of ``(N, d)`` maps."""
    d = a.shape[1]
    ta, tb = _ranks(a) >= d - k, _ranks(b) >= d - k
    return jnp.sum(ta & tb, axis=1) / k


def spearman(a: jax.Array, b: jax.Array) -> jax.Array:
    """Spearman's ρ per row of ``(N, d)`` maps (ties broken by position)."""
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(axis=1, keepdims=True), rb - rb.mean(axis=1, keepdims=True)
    return jnp.sum(ra * rb, axis=1) / jnp.sqrt(jnp.sum(ra * ra, axis=1) * jnp.sum(rb * rb, axis=1))


def saliency_under_attack(
    model: Model | Any,
    x: Any,
    eps: Sequence[float],
    *,
    key: jax.Array,
    method: SaliencyFn = gradient_saliency,
    config: A.AttackConfig = PGD10,
    k: int | None = None,
    labels: Any = None,
    batch_size: int | None = None,
) -> SaliencyShift:
    """Compares ``method``'s maps on clean and adversarial inputs at every ε.

    Args:
      x: ``(N, *input_spec.shape)`` clean inputs.
      eps: the ε grid; key, config, labels: as :func:`~explain.adversarial.sweep.sweep`.
      method: ``(model, x (N, ...)) -> maps (N, ...)``; default :func:`gradient_saliency`.
      k: features in the top-k, default 10% of the map's features.

    Returns:
      :class:`SaliencyShift`.
    """
    model = as_model(model)
    if not callable(method):
        raise TypeError(f"expected method to be a callable (model, x) -> maps, got {type(method).__name__}")
    s = sweep(model, x, eps, config=config, key=key, labels=labels, batch_size=batch_size)
    x = model.input_spec.validate(x)
    clean = method(model, x).reshape(x.shape[0], -1)
    d = clean.shape[1]
    k = k or max(1, d // 10)
    if not 1 <= k <= d:
        raise ValueError(f"expected 1 <= k <= {d} (features in the map), got {k}")
    over, rho = [], []
    for r in s.results:
        adv = method(model, r.clipped).reshape(x.shape[0], -1)
        over.append(np.asarray(topk_overlap(clean, adv, k)))
        rho.append(np.asarray(spearman(clean, adv)))
    succ = np.stack([np.asarray(r.success) for r in s.results])
    return SaliencyShift(s.eps, k, np.stack(over), np.stack(rho), succ)
