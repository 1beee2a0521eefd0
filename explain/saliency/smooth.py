"""SmoothGrad, SmoothGrad² and VarGrad: gradient statistics under Gaussian input noise.

With ``g_s = ∂F/∂x (x + ε_s)``, ``ε_s ~ N(0, σ² I)``, ``σ = noise_level · (max x - min x)``
per sample (PAIR's ``stdev_spread``):

* SmoothGrad:  ``(1/n) Σ_s g_s``
* SmoothGrad²: ``(1/n) Σ_s g_s²`` (PAIR's ``magnitude=True``)
* VarGrad:     ``(1/n) Σ_s g_s² - ((1/n) Σ_s g_s)²``

Noise sample ``s`` uses ``jax.random.fold_in(key, s)``, so the result depends on
the key only, not on how samples are chunked. Many samples run per compiled
call: a chunk of ``c`` samples is ``c · N`` rows through one backward pass.

References:
  Smilkov, Thorat, Kim, Viégas, Wattenberg. SmoothGrad: removing noise by adding noise. 2017.
  Adebayo et al. Local Explanation Methods for Deep Neural Networks Lack Sensitivity to
  Parameter Values (VarGrad). ICLR workshop 2018.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp

from explain import chunking
from explain.model import Model
from explain.saliency import _common as common
from explain.saliency.attribution import Attribution
from explain.targets import TargetFn

Statistic = Literal["mean", "square", "variance"]
STATISTICS: tuple[str, ...] = ("mean", "square", "variance")
_NAMES = {"mean": "smoothgrad", "square": "smoothgrad_sq", "variance": "vargrad"}


@functools.cache
def _noise_chunk(apply: Callable, fn: TargetFn | None, times_input: bool):
    """Jitted ``(Σ_s m_s g_s, Σ_s m_s g_s²)`` over one chunk of sample indices ``s`` with mask ``m``."""

    def chunk(params, x, sigma, aux, key, idx, mask):
        c, n = idx.shape[0], x.shape[0]
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(idx)
        eps = jax.vmap(lambda k: jax.random.normal(k, x.shape, x.dtype))(keys)  # (c, N, ...)
        xs = x[None] + sigma.reshape((1, n) + (1,) * (x.ndim - 1)) * eps
        g, _ = common.grad_rows(apply, fn, params, xs.reshape((c * n, *x.shape[1:])), common.tile_aux(aux, c))
        g = g.reshape((c, n, *g.shape[1:]))
        if times_input:
            g = g * (xs[:, :, None] if g.ndim == xs.ndim + 1 else xs)
        w = mask.astype(g.dtype)
        return jnp.tensordot(w, g, axes=1), jnp.tensordot(w, g * g, axes=1)

    return jax.jit(chunk)


def noise_tunnel(
    model: Model | Any,
    x: Any,
    *,
    key: jax.Array,
    statistic: Statistic = "mean",
    target: Any = None,
    labels: Any = None,
    n_samples: int = 25,
    noise_level: float = 0.15,
    times_input: bool = False,
    internal_batch_size: int | None = None,
    memory_budget: int | None = None,
) -> Attribution:
    """Gradient statistics over noisy copies of ``x`` (module docstring has the math).

    Args:
      model: a :class:`~explain.model.Model` (contract in :mod:`explain.model`) or a bundle.
      x: ``(N, *input_shape)``.
      key: PRNG key (required): same key, same result.
      statistic: ``"mean"`` (SmoothGrad), ``"square"`` (SmoothGrad²) or ``"variance"`` (VarGrad).
      target: see :mod:`explain.targets`, or ``"all"``. A predicted class is frozen at ``x``.
      n_samples: noise samples per input (default 25, as PAIR).
      noise_level: σ as a fraction of each sample's value range ``max - min`` (default 0.15, as PAIR).
      times_input: smooth Gradient × (noisy) Input instead of the gradient.
      internal_batch_size: model rows (samples × inputs) per compiled call; default from ``memory_budget``.

    Returns:
      :class:`Attribution` shaped like ``x`` (``(N, K, ...)`` for ``"all"``).

    Raises:
      ValueError: ``n_samples < 1``, ``noise_level < 0``, unknown statistic, missing key.
    """
    common.check_choice("statistic", statistic, STATISTICS)
    n_samples = common.check_int("n_samples", n_samples)
    noise_level = common.check_float("noise_level (sigma)", noise_level)
    if internal_batch_size is not None:
        common.check_int("internal_batch_size", internal_batch_size)
    key = common.check_key(key, what="SmoothGrad")
    r = common.resolve(model, x, target, labels)
    rows = common.rows_per_chunk(
        r.model, memory_budget=memory_budget, internal_batch_size=internal_batch_size, all_classes=r.fn is None
    )
    xs = r.x.reshape(r.x.shape[0], -1)
    sigma = noise_level * (xs.max(axis=1) - xs.min(axis=1))  # (N,)
    run = functools.partial(_noise_chunk(r.model.apply, r.fn, times_input), r.model.params, r.x, sigma, r.aux, key)
    idx = jnp.arange(n_samples, dtype=jnp.int32)
    s1, s2 = chunking.accumulate(run, idx, max(1, rows // r.x.shape[0]))
    mean, sq = s1 / n_samples, s2 / n_samples
    values = {"mean": mean, "square": sq, "variance": sq - mean**2}[statistic]
    return Attribution(values, _NAMES[statistic], r.name)


def smoothgrad(model: Model | Any, x: Any, *, key: jax.Array, **options: Any) -> Attribution:
    """SmoothGrad: the mean gradient under noise. Options as :func:`noise_tunnel`."""
    return noise_tunnel(model, x, key=key, statistic="mean", **options)


def smoothgrad_sq(model: Model | Any, x: Any, *, key: jax.Array, **options: Any) -> Attribution:
    """SmoothGrad²: the mean squared gradient under noise. Options as :func:`noise_tunnel`."""
    return noise_tunnel(model, x, key=key, statistic="square", **options)


def vargrad(model: Model | Any, x: Any, *, key: jax.Array, **options: Any) -> Attribution:
    """VarGrad: the variance of the gradient under noise. Options as :func:`noise_tunnel`."""
    return noise_tunnel(model, x, key=key, statistic="variance", **options)
