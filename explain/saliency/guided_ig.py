"""Guided Integrated Gradients: an adaptive path that first moves the features with the smallest gradient.

At each of ``steps`` steps, the point ``x`` (starting at the baseline) must
reach L1 distance ``L1(x', x_in) · (1 - (k+1)/steps)`` from the input. It gets
there by repeatedly moving the ``fraction`` of features with the smallest
``|∂F/∂x|`` towards the input, never letting a feature lag more than
``max_dist`` (in path fraction α) behind or run ahead of the straight line.
The attribution accumulates ``(x_new - x_old) ⊙ ∇F(x)``, so it is a path
integral and ``Σ GuidedIG ≈ F(x_in) - F(x')`` (``convergence_delta``).

The steps are sequential (each depends on the last gradient), so they run in
one compiled ``lax.fori_loop``; each step is one backward pass over a chunk of
rows, and the per-sample feature selection is a ``vmap``-ed ``lax.while_loop``.
:func:`guided_integrated_gradients_core` is pure; the wrapper runs :func:`guided_path`
over chunks of rows within the memory budget (rows are independent, so chunking
changes nothing).
This follows PAIR's reference ``guided_ig.py`` line by line (defaults
``steps=25``, ``fraction=0.25``, ``max_dist=0.02``); Captum has no Guided IG.

References:
  Kapishnikov, Venugopalan, Avci, Wedin, Terry, Bolukbasi. Guided Integrated
  Gradients: An Adaptive Path Method for Removing Noise. CVPR 2021.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from explain import chunking
from explain.arrays import Batch
from explain.checks import check_float, check_int
from explain.gradients import prepare, target_and_grad
from explain.model import Model, as_model
from explain.saliency import _common as common
from explain.saliency.attribution import Attribution
from explain.saliency.integrated import BaselineKind, check_baseline, make_baseline
from explain.targets import BoundTarget

_EPS = 1e-9  # PAIR's EPSILON for "l1 target reached"
_MAX_INNER = 128  # feature-selection rounds per step; each moves >= `fraction` of the remaining features


def _step_one(x, grad, x_in, x_base, l1_total, k, steps, fraction, max_dist):
    """One step for one sample (flattened features ``(D,)``): returns ``(x_new, Δattr)``."""
    alpha = (k + 1.0) / steps
    a_min, a_max = jnp.maximum(alpha - max_dist, 0.0), jnp.minimum(alpha + max_dist, 1.0)
    diff = x_in - x_base
    x_min, x_max = x_base + diff * a_min, x_base + diff * a_max
    l1_target = l1_total * (1.0 - alpha)

    def cond(state):
        _, _, gamma, done, it = state
        return (~done) & (gamma > 1.0) & (it < _MAX_INNER)

    def body(state):
        x, attr, _, _, it = state
        x_old = x
        x_alpha = jnp.where(diff != 0, (x - x_base) / jnp.where(diff != 0, diff, 1.0), a_max)
        x = jnp.where(x_alpha < a_min, x_min, x)
        l1_cur = jnp.abs(x - x_in).sum()
        close = jnp.abs(l1_target - l1_cur) <= jnp.maximum(
            _EPS * jnp.maximum(jnp.abs(l1_target), jnp.abs(l1_cur)), _EPS
        )
        g = jnp.where(x == x_max, jnp.inf, jnp.abs(grad))
        threshold = jnp.quantile(g, fraction, method="lower")
        s = (g <= threshold) & jnp.isfinite(g)
        l1_s = (jnp.abs(x - x_max) * s).sum()
        gamma = jnp.where(l1_s > 0, (l1_cur - l1_target) / jnp.where(l1_s > 0, l1_s, 1.0), jnp.inf)
        moved = jnp.where(gamma > 1.0, x_max, x + (x_max - x) * gamma)
        x = jnp.where(close, x, jnp.where(s, moved, x))
        return x, attr + (x - x_old) * grad, gamma, close, it + 1

    init = (x, jnp.zeros_like(x), jnp.asarray(jnp.inf, x.dtype), jnp.asarray(False), 0)
    x, dattr, *_ = jax.lax.while_loop(cond, body, init)
    return x, dattr


def check_options(steps: Any, fraction: Any, max_dist: Any) -> tuple[int, float, float]:
    """Validated ``(steps >= 1, fraction in (0, 1], max_dist in [0, 1])``, before any compilation."""
    steps = check_int("steps", steps)
    fraction = check_float("fraction", fraction, maximum=1.0)
    if fraction == 0:
        raise ValueError("expected fraction in (0, 1], got 0")
    return steps, fraction, check_float("max_dist", max_dist, maximum=1.0)


def guided_path(
    apply: Callable,
    params: Any,
    x: Float[Array, " n *features"],
    target: BoundTarget,
    baseline: Float[Array, " n *features"],
    *,
    steps: Any = 25,
    fraction: Any = 0.25,
    max_dist: Any = 0.02,
) -> Float[Array, " n *features"]:
    """Pure: the Guided IG values ``Σ_k (x_{k+1} - x_k) ⊙ ∇F(x_k)`` along the guided path from ``baseline`` to ``x``.

    ``steps``, ``fraction`` and ``max_dist`` may be traced: a new value compiles nothing new.
    """
    n, shape = x.shape[0], x.shape[1:]
    xi, xb = x.reshape(n, -1), baseline.astype(x.dtype).reshape(n, -1)  # (N, D)
    l1_total = jnp.abs(xi - xb).sum(axis=1)
    fraction, max_dist = jnp.asarray(fraction, x.dtype), jnp.asarray(max_dist, x.dtype)
    step_one = jax.vmap(_step_one, in_axes=(0, 0, 0, 0, 0, None, None, None, None))

    def step(k, state):
        cur, attr = state
        _, g, _ = target_and_grad(apply, params, cur.reshape((n, *shape)), target)
        cur, dattr = step_one(cur, g.reshape(n, -1), xi, xb, l1_total, k, steps, fraction, max_dist)
        return cur, attr + dattr

    _, attr = jax.lax.fori_loop(0, steps, step, (xb, jnp.zeros_like(xb)))
    return attr.reshape(x.shape)


def guided_integrated_gradients_core(
    apply: Callable,
    params: Any,
    x: Float[Array, " n *features"],
    target: BoundTarget,
    *,
    baseline: Float[Array, " n *features"] | None = None,
    steps: int | Int[Array, " "] = 25,
    fraction: float | Float[Array, " "] = 0.25,
    max_dist: float | Float[Array, " "] = 0.02,
) -> Attribution:
    """Pure Guided IG: values, ``convergence_delta`` and ``steps``; ``baseline`` defaults to zeros.

    The target must be one value per sample (not ``"all"``): the path follows its gradient.
    """
    baseline = jnp.zeros_like(x) if baseline is None else baseline.astype(x.dtype)
    values = guided_path(apply, params, x, target, baseline, steps=steps, fraction=fraction, max_dist=max_dist)
    diff = common.endpoints(apply, params, x, target, baseline)
    delta = values.reshape(x.shape[0], -1).sum(-1) - diff
    n_steps = jnp.full((x.shape[0],), steps, jnp.int32)
    return Attribution(values, "guided_integrated_gradients", target.name, delta, n_steps)


# Every option is traced: another steps / fraction / max_dist reuses the compiled loop.
_guided_path = jax.jit(guided_path, static_argnums=0)


def guided_integrated_gradients(
    model: Model | Any,
    x: Batch,
    *,
    target: Any = None,
    labels: Any = None,
    baseline: BaselineKind | Any = "zero",
    steps: int = 25,
    fraction: float = 0.25,
    max_dist: float = 0.02,
    key: jax.Array | None = None,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> Attribution:
    """Guided IG (module docstring has the algorithm); defaults as PAIR.

    Args (others: :mod:`explain.saliency`; ``target="all"`` is refused: the path follows its gradient):
      baseline: as :func:`explain.saliency.integrated.make_baseline` (default zeros, as PAIR).
      steps: ``>= 1`` path steps.
      fraction: in (0, 1], share of features moved per selection round.
      max_dist: in [0, 1], how far (in α) a feature may deviate from the straight path.
      key: only for ``baseline="uniform"``.

    Returns:
      :class:`Attribution` with ``convergence_delta = Σ values - (F(x) - F(x'))`` and ``steps`` per sample.

    Example:
      >>> a = guided_integrated_gradients(m, x, target=y, steps=32)
    """
    steps, fraction, max_dist = check_options(steps, fraction, max_dist)
    chunking.check_budget(memory_budget)
    check_baseline(as_model(model), x, baseline, key=key)
    p = prepare(model, x, target=target, labels=labels, allow_all=False, memory_budget=memory_budget)
    base = make_baseline(p.model, p.x, baseline, key=key)
    values = common.run_rows(
        _guided_path, p, base, memory_budget=memory_budget, show_progress=show_progress,
        steps=steps, fraction=fraction, max_dist=max_dist,
    )  # fmt: skip
    delta = common.delta(p, values, base, memory_budget)
    n_steps = jnp.full((p.n,), steps, jnp.int32)
    return Attribution(jax.device_put(values), "guided_integrated_gradients", p.target.name, delta, n_steps)
