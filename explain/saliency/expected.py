"""Expected Gradients / GradientSHAP: Integrated Gradients averaged over baselines from a reference set.

With baselines ``b`` drawn from a reference set ``R`` and ``α ~ U(0, 1)``:

    EG(x) = E_{b ~ R, α ~ U(0,1)} [ (x - b) ⊙ ∇F(b + α (x - b)) ]

a Monte-Carlo estimate of IG averaged over the baseline distribution, whose
completeness is ``Σ EG = F(x) - E_b F(b)`` (reported as ``convergence_delta``
against the drawn baselines and, with ``stdevs > 0``, the drawn noisy inputs:
``Σ EG - mean_s (F(x_s) - F(b_s))``). GradientSHAP (Captum) is the same estimator with
optional Gaussian noise on ``x`` (``stdevs``) and Captum's defaults.

Draw ``s`` uses ``jax.random.fold_in(key, s)``, so results do not depend on
chunking. A chunk of ``c`` draws is ``c · N`` rows through one backward pass.

References:
  Erion, Janizek, Sturmfels, Lundberg, Lee. Improving performance of deep learning
  models with axiomatic attribution priors and expected gradients. Nat. Mach. Intell. 2021.
  Lundberg, Lee. A Unified Approach to Interpreting Model Predictions (SHAP). NeurIPS 2017.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from explain import chunking
from explain.model import Model
from explain.saliency import _common as common
from explain.saliency.attribution import Attribution
from explain.targets import TargetFn


@functools.cache
def _draw_chunk(apply: Callable, fn: TargetFn | None):
    """Jitted ``(Σ_s m_s (x_s - b_s) ⊙ ∇F(b_s + α_s (x_s - b_s)), Σ_s m_s F(b_s), Σ_s m_s F(x_s))`` over a
    chunk of draws, ``x_s`` the (noisy) input of draw ``s``."""

    def chunk(params, x, refs, stdev, aux, key, idx, mask):
        c, n = idx.shape[0], x.shape[0]

        def draw(i):
            k1, k2, k3 = jax.random.split(jax.random.fold_in(key, i), 3)
            b = refs[jax.random.randint(k1, (n,), 0, refs.shape[0])]  # (N, ...)
            alpha = jax.random.uniform(k2, (n,) + (1,) * (x.ndim - 1), x.dtype)
            xn = x + stdev * jax.random.normal(k3, x.shape, x.dtype)
            return b, alpha, xn

        b, alpha, xn = jax.vmap(draw)(idx)  # (c, N, ...) each
        g, _ = common.grad_stack(apply, fn, params, b + alpha * (xn - b), aux)
        diff = xn - b
        attr = (diff[:, :, None] if g.ndim == diff.ndim + 1 else diff) * g
        ends = common.values_stack(apply, fn, params, jnp.concatenate([b, xn]), aux)  # (2c, N[, K]): F(b), F(x_s)
        return common.weighted_sum(mask, attr), common.weighted_sum(mask, ends[:c]), common.weighted_sum(mask, ends[c:])

    return jax.jit(chunk)


def expected_gradients(
    model: Model | Any,
    x: Any,
    *,
    references: Any,
    key: jax.Array,
    target: Any = None,
    labels: Any = None,
    n_samples: int = 50,
    stdevs: float = 0.0,
    internal_batch_size: int | None = None,
    memory_budget: int | None = None,
) -> Attribution:
    """Expected Gradients: IG averaged over baselines drawn from ``references`` (module docstring has the math).

    Args:
      model: a :class:`~explain.model.Model` (contract in :mod:`explain.model`) or a bundle.
      x: ``(N, *input_shape)``.
      references: ``(M, *input_shape)`` reference set the baselines are drawn from (e.g. training images).
      key: PRNG key (required): same key, same result.
      target: see :mod:`explain.targets`, or ``"all"``. A predicted class is frozen at ``x``.
      n_samples: draws (baseline, α) per input (default 50).
      stdevs: std of Gaussian noise added to ``x`` per draw (GradientSHAP; default 0).
      internal_batch_size: model rows (draws × inputs) per compiled call; default from ``memory_budget``.
      memory_budget: bytes of working set per compiled call (default 256 MiB).

    Returns:
      :class:`Attribution` shaped like ``x``; ``convergence_delta = Σ values - mean_s (F(x_s) - F(b_s))``,
      ``x_s`` the noisy input of draw ``s`` (``x`` itself when ``stdevs = 0``).

    Raises:
      ValueError: references of the wrong shape, ``n_samples < 1``, ``stdevs < 0``, missing key.
    """
    n_samples = common.check_int("n_samples", n_samples)
    stdevs = common.check_float("stdevs", stdevs)
    common.check_chunking(internal_batch_size, memory_budget)
    key = common.check_key(key, what="Expected Gradients")
    r = common.resolve(model, x, target, labels, freeze=False)
    refs = r.model.input_spec.validate(references, name="references", check_range=False)
    r = common.freeze_pred(r)
    per_chunk = common.draws_per_chunk(r, memory_budget, internal_batch_size)
    run = functools.partial(
        _draw_chunk(r.model.apply, r.fn), r.model.params, r.x, refs.astype(r.x.dtype), stdevs, r.aux, key
    )
    # Each draw's rows run 3 forward passes (the interpolated point, b_s, x_s), 1 backward.
    s_attr, s_fb, s_fx = chunking.accumulate(run, jnp.arange(n_samples, dtype=jnp.int32), per_chunk)
    values = s_attr / n_samples
    delta = values.reshape((*s_fx.shape, -1)).sum(-1) - (s_fx - s_fb) / n_samples
    steps = jnp.full((r.x.shape[0],), n_samples, jnp.int32)
    return Attribution(values, "expected_gradients", r.name, convergence_delta=delta, steps=steps)


def gradient_shap(model: Model | Any, x: Any, *, references: Any, key: jax.Array, **options: Any) -> Attribution:
    """GradientSHAP with Captum's defaults (``n_samples=5``, ``stdevs=0``); see :func:`expected_gradients`."""
    options.setdefault("n_samples", 5)
    a = expected_gradients(model, x, references=references, key=key, **options)
    return Attribution(a.values, "gradient_shap", a.target_name, a.convergence_delta, a.steps)
