"""Explanations under attack: how much a saliency map moves between clean and adversarial inputs.

For each ε, the map ``S(x)`` of a chosen method is compared with
``S(x_adv)`` per example by

* top-k overlap ``|top_k(S(x)) ∩ top_k(S(x_adv))| / k`` (1: the same k most
  salient features; the expected overlap of two random maps is ``k/d``), and
* Spearman's rank correlation ρ over all features (Pearson of the ranks).

A map is the magnitude of a registry method's attribution of each input's own
predicted class (``target="pred"``), summed over the channel axis of images.

References:
  Ghorbani, Abid, Zou (2019), Interpretation of neural networks is fragile.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

from explain.adversarial import attacks as A
from explain.adversarial.attacks import Host
from explain.adversarial.sweep import Budgets, bind, check_config, check_eps, sweep_batch
from explain.arrays import Batch
from explain.checks import check_int
from explain.model import Model, as_model
from explain.results import Result
from explain.saliency import registry

SaliencyFn = Callable[[Model, Any], Any]
PGD10 = A.AttackConfig("pgd", steps=10)
_METHOD_KEY = 1_000_003  # fold_in constant of the saliency method's own key (random methods)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SaliencyShift(Result):
    """Per ε (axis 0) and example (axis 1): ``topk_overlap``, ``spearman`` and attack ``success`` ``(E, N)``.

    ``eps`` ``(E,)``, ``k`` and ``method`` are static.
    """

    topk_overlap: Float[Host, " e n"]
    spearman: Float[Host, " e n"]
    success: Bool[Host, " e n"]
    eps: tuple[float, ...] = dataclasses.field(metadata=dict(static=True))
    k: int = dataclasses.field(metadata=dict(static=True))
    method: str = dataclasses.field(default="", metadata=dict(static=True))

    def summary(self) -> list[dict]:
        return [
            {"eps": e, "topk_overlap": float(o.mean()), "spearman": float(s.mean()), "attack_success": float(a.mean())}
            for e, o, s, a in zip(self.eps, self.topk_overlap, self.spearman, self.success)
        ]


def _ranks(v: jax.Array) -> jax.Array:
    return jnp.argsort(jnp.argsort(v, axis=1), axis=1).astype(jnp.float32)


@jax.jit
def _topk_overlap(a: jax.Array, b: jax.Array, k: jax.Array) -> jax.Array:
    d = a.shape[1]
    ta, tb = _ranks(a) >= d - k, _ranks(b) >= d - k
    return jnp.sum(ta & tb, axis=1) / k


@jax.jit
def _spearman(a: jax.Array, b: jax.Array) -> jax.Array:
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(axis=1, keepdims=True), rb - rb.mean(axis=1, keepdims=True)
    return jnp.sum(ra * rb, axis=1) / jnp.sqrt(jnp.sum(ra * ra, axis=1) * jnp.sum(rb * rb, axis=1))


def topk_overlap(a: Float[ArrayLike, " n d"], b: Float[ArrayLike, " n d"], k: int) -> Float[Array, " n"]:
    """``|top_k(a_i) ∩ top_k(b_i)| / k`` per row of ``(N, d)`` maps."""
    return _topk_overlap(jnp.asarray(a), jnp.asarray(b), jnp.asarray(k, jnp.float32))


def spearman(a: Float[ArrayLike, " n d"], b: Float[ArrayLike, " n d"]) -> Float[Array, " n"]:
    """Spearman's ρ per row of ``(N, d)`` maps (ties broken by position)."""
    return _spearman(jnp.asarray(a), jnp.asarray(b))


def _check_method(method: Any, model: Model) -> str | SaliencyFn:
    if isinstance(method, str):
        info = registry.get(method)  # unknown names raise, listing the known ones
        info.check_model(model)
        return method
    if not callable(method):
        raise TypeError(
            f"expected method to be a saliency method name (e.g. 'vanilla_gradient') or a callable "
            f"(model, x) -> maps, got {type(method).__name__}"
        )
    return method


def saliency_under_attack(
    model: Model | Any,
    x: Batch,
    *,
    eps: Budgets,
    key: jax.Array | None,
    method: str | SaliencyFn = "vanilla_gradient",
    config: A.AttackConfig = PGD10,
    k: int | None = None,
    labels: Any = None,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> SaliencyShift:
    """Compares ``method``'s maps on clean and adversarial inputs at every ε.

    Args:
      x: ``(N, *input_spec.shape)`` clean inputs.
      eps: the ε grid; key, config, labels, memory_budget, show_progress: as
        :func:`~explain.adversarial.sweep.sweep`.
      method: a saliency method's name in :mod:`explain.saliency.registry` (default
        ``"vanilla_gradient"``: Simonyan et al.'s ``|∂ logit_pred / ∂x|``), run with
        ``target="pred"``, the clean ``x`` as references and one key for clean and
        adversarial maps; or a callable ``(model, x (N, ...)) -> maps (N, ...)``.
      k: features in the top-k, default 10% of the map's features.

    Returns:
      :class:`SaliencyShift`.

    Raises:
      ValueError / TypeError: an unknown method, ``k`` out of range, and the sweep's errors,
      all before the attack runs.
    """
    model = as_model(model)
    method = _check_method(method, model)
    eps_list = check_eps(eps, sequence=True)
    config = check_config(config, key)
    k = None if k is None else check_int("k", k)
    b = bind(model, x, labels=labels, memory_budget=memory_budget)
    method_key = None if key is None else jax.random.fold_in(key, _METHOD_KEY)

    def maps(xs) -> jax.Array:
        if callable(method):
            m = jnp.asarray(method(model, xs))
        else:
            a = registry.call(
                method, model, xs, target="pred", key=method_key, references=b.x,
                memory_budget=memory_budget, show_progress=show_progress,
            ).values  # fmt: skip
            m = jnp.abs(a).sum(axis=-1) if a.ndim == 4 else jnp.abs(a)
        return m.reshape(b.n, -1)

    clean = maps(b.x)  # before the attack: a bad k is refused before the expensive part
    d = clean.shape[1]
    k = max(1, d // 10) if k is None else k
    if not 1 <= k <= d:
        raise ValueError(f"expected 1 <= k <= {d} (features in the map), got {k}")
    s = sweep_batch(
        b, eps_list, config=config, key=key, memory_budget=memory_budget, show_progress=show_progress
    )  # fmt: skip
    over, rho = [], []
    for r in s.results:
        adv = maps(r.x_adv)
        over.append(topk_overlap(clean, adv, k))
        rho.append(spearman(clean, adv))
    succ = jnp.stack([r.success for r in s.results])
    return SaliencyShift(
        topk_overlap=jnp.stack(over),
        spearman=jnp.stack(rho),
        success=succ,
        eps=s.eps,
        k=k,
        method=method if isinstance(method, str) else getattr(method, "__name__", "custom"),
    )
