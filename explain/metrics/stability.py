"""Stability of explanations: how much a map moves when the input barely does.

Both metrics draw ``n_samples`` perturbations ``δ ~ U[-radius, radius]^D`` per sample
(the L∞ ball; the perturbed input is clipped to the model's declared value range, so
the ball is intersected with the valid inputs), run the saliency method on ``x + δ``
and keep the worst case:

* :func:`max_sensitivity`: ``max_δ ‖a(x + δ) - a(x)‖ / ‖a(x)‖`` (Yeh et al. 2019, with
  Captum's normalisation by the map's norm; a zero map divides by 1).
* :func:`local_lipschitz`: ``max_δ ‖a(x + δ) - a(x)‖₂ / ‖δ‖₂`` (Alvarez-Melis & Jaakkola
  2018, estimated by sampling as Quantus does rather than by their Bayesian optimisation).

Lower is more stable. The method's target is frozen at ``x`` (a predicted class stays the
class predicted at ``x``), so a perturbation that flips the prediction still explains the
same class. A random method (SmoothGrad, Expected Gradients) gets the same key at ``x`` and
at every ``x + δ`` (common random numbers): the metric measures the map's response to the
input, not the method's own sampling noise. Each perturbation is one call of the method on
the whole batch (chunked by the method within the memory budget), so memory does not grow
with ``n_samples``.

Not called "robustness" to keep it apart from adversarial robustness (:mod:`explain.adversarial`).

References:
  Yeh, Hsieh, Suggala, Inouye, Ravikumar. On the (In)fidelity and Sensitivity of Explanations. NeurIPS 2019.
  Alvarez-Melis, Jaakkola. On the Robustness of Interpretability Methods. ICML workshop 2018.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from explain import chunking
from explain.arrays import Batch
from explain.checks import check_choice, check_float, check_int
from explain.metrics._common import check_method, frozen_target
from explain.model import Model, as_model
from explain.saliency import registry

Norm = Literal["l2", "linf"]
NORMS: tuple[str, ...] = ("l2", "linf")


@dataclasses.dataclass(frozen=True)
class _Setup:
    """A validated stability run: the method, its call arguments at ``x``, and the frozen target."""

    model: Model
    x: np.ndarray | jax.Array
    call: Callable[[Any], np.ndarray]
    key: jax.Array
    radius: float
    n_samples: int


def _setup(
    model: Model | Any,
    x: Batch,
    *,
    method: str,
    options: Mapping[str, Any] | None,
    key: Any,
    target: Any,
    labels: Any,
    radius: float,
    n_samples: int,
    memory_budget: int | None,
    what: str,
) -> _Setup:
    m = as_model(model)
    opts, key = check_method(m, method, options, key, what=what)
    radius = check_float("radius", radius)
    n_samples = check_int("n_samples", n_samples)
    chunking.check_budget(memory_budget)
    xv = m.input_spec.validate(x, check_range=False)  # prepare and the method warn about the range
    method_target, method_labels = frozen_target(m, xv, target, labels, memory_budget), labels
    method_key = jax.random.fold_in(key, 1)

    def call(points: Any) -> np.ndarray:
        a = registry.call(
            method, m, points, target=method_target, labels=method_labels, key=method_key, references=xv,
            memory_budget=memory_budget, **opts,
        )  # fmt: skip
        return np.asarray(a.values, np.float64)

    return _Setup(m, xv, call, jax.random.fold_in(key, 0), radius, n_samples)


def _perturbed(s: _Setup) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(δ, a(x + δ))`` per draw, ``δ`` already clipped to the value range (float64, ``(N, ...)``)."""
    x = np.asarray(s.x, np.float64)
    for i in range(s.n_samples):
        noise = jax.random.uniform(jax.random.fold_in(s.key, i), x.shape, minval=-s.radius, maxval=s.radius)
        moved = x + np.asarray(noise, np.float64)
        if s.model.input_spec.value_range is not None:
            moved = np.clip(moved, *s.model.input_spec.value_range)
        yield moved - x, s.call(moved.astype(s.x.dtype))


def _norm(v: np.ndarray, norm: str) -> np.ndarray:
    flat = np.abs(v.reshape(v.shape[0], -1))
    return flat.max(axis=1) if norm == "linf" else np.sqrt((flat * flat).sum(axis=1))


def max_sensitivity(
    model: Model | Any,
    x: Batch,
    *,
    method: str,
    key: jax.Array,
    options: Mapping[str, Any] | None = None,
    target: Any = None,
    labels: Any = None,
    radius: float = 0.02,
    n_samples: int = 10,
    norm: Norm = "l2",
    memory_budget: int | None = None,
) -> Float[Array, " n"]:
    """Max-sensitivity: ``max_δ ‖a(x + δ) - a(x)‖ / ‖a(x)‖`` over ``δ ~ U[-radius, radius]^D`` (module docstring).

    Args:
      model: a :class:`~explain.model.Model` or a bundle.
      x: ``(N, *input_shape)``.
      method: a saliency method's registry name (:data:`explain.saliency.METHODS`).
      key: PRNG key for the perturbations (and the method's own draws).
      options: the method's options (e.g. ``{"steps": 32}``), checked against its signature.
      target, labels: what the method explains (:mod:`explain.targets`), frozen at ``x``.
      radius: half-width of the L∞ ball, in input units (Captum's default 0.02).
      n_samples: perturbations per sample (Captum's default 10).
      norm: ``"l2"`` (Frobenius over all features, Captum's default) or ``"linf"``.
      memory_budget: bytes per compiled call of the method.

    Returns:
      ``(N,)`` sensitivities, 0 for a map that does not move.

    Raises:
      ValueError / TypeError: before any work: unknown method or option, a method the model
      cannot run, missing key, non-positive ``n_samples``, negative ``radius``, unknown ``norm``, bad ``x``.

    Example:
      >>> max_sensitivity(m, x, method="smoothgrad", options={"n_samples": 16}, key=jax.random.key(0))

    References:
      Yeh et al. NeurIPS 2019; Captum ``captum.metrics.sensitivity_max``.
    """
    check_choice("norm", norm, NORMS)
    s = _setup(
        model, x, method=method, options=options, key=key, target=target, labels=labels, radius=radius,
        n_samples=n_samples, memory_budget=memory_budget, what="max_sensitivity",
    )  # fmt: skip
    a0 = s.call(s.x)
    scale = _norm(a0, norm)
    scale = np.where(scale == 0, 1.0, scale)
    worst = np.zeros(a0.shape[0])
    for _, a in _perturbed(s):
        worst = np.maximum(worst, _norm(a - a0, norm) / scale)
    return jnp.asarray(worst.astype(s.x.dtype))


def local_lipschitz(
    model: Model | Any,
    x: Batch,
    *,
    method: str,
    key: jax.Array,
    options: Mapping[str, Any] | None = None,
    target: Any = None,
    labels: Any = None,
    radius: float = 0.02,
    n_samples: int = 10,
    memory_budget: int | None = None,
) -> Float[Array, " n"]:
    """Local Lipschitz estimate: ``max_δ ‖a(x + δ) - a(x)‖₂ / ‖δ‖₂`` over ``δ ~ U[-radius, radius]^D``.

    Arguments, errors as :func:`max_sensitivity` (no ``norm``: both norms are L2, as the paper).
    A draw whose ``δ`` is clipped to nothing (``x`` on the range's boundary) counts 0.

    Returns:
      ``(N,)`` estimates, in attribution units per input unit.

    References:
      Alvarez-Melis, Jaakkola 2018 (module docstring).
    """
    s = _setup(
        model, x, method=method, options=options, key=key, target=target, labels=labels, radius=radius,
        n_samples=n_samples, memory_budget=memory_budget, what="local_lipschitz",
    )  # fmt: skip
    a0 = s.call(s.x)
    worst = np.zeros(a0.shape[0])
    for delta, a in _perturbed(s):
        step = _norm(delta, "l2")
        ratio = np.where(step > 0, _norm(a - a0, "l2") / np.where(step > 0, step, 1.0), 0.0)
        worst = np.maximum(worst, ratio)
    return jnp.asarray(worst.astype(s.x.dtype))
