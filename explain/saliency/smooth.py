"""SmoothGrad, SmoothGrad² and VarGrad: gradient statistics under Gaussian input noise.

With ``g_s = ∂F/∂x (x + ε_s)``, ``ε_s ~ N(0, σ² I)`` and ``σ = noise_level · (hi - lo)``,
``[lo, hi]`` the model's declared ``input_spec.value_range`` (the "fraction of the input
range" of the paper; one σ for every sample and feature) or, when no range is declared,
each sample's own ``[min x, max x]`` (PAIR's ``stdev_spread`` convention; beware that on
tabular rows it mixes the units of different features):

* SmoothGrad:  ``(1/n) Σ_s g_s``
* SmoothGrad²: ``(1/n) Σ_s g_s²`` (PAIR's ``magnitude=True``)
* VarGrad:     ``(1/n) Σ_s g_s² - ((1/n) Σ_s g_s)²``

VarGrad is accumulated centred on the noise-free gradient ``g_0 = ∂F/∂x (x)``,
``Var = (1/n) Σ_s (g_s - g_0)² - ((1/n) Σ_s (g_s - g_0))²``, which is the same
quantity without the float32 cancellation of ``E[g²] - E[g]²`` when the noise
barely moves the gradient; it is clamped at 0 for the last rounding error.

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
import numpy as np

from explain import chunking
from explain.model import Model
from explain.saliency import _common as common
from explain.saliency.attribution import Attribution
from explain.targets import TargetFn

Statistic = Literal["mean", "square", "variance"]
STATISTICS: tuple[str, ...] = ("mean", "square", "variance")
_NAMES = {"mean": "smoothgrad", "square": "smoothgrad_sq", "variance": "vargrad"}


def _statistic(apply: Callable, fn: TargetFn | None, times_input: bool, params, xs: jax.Array, aux) -> jax.Array:
    """``g (c, N, [K,] ...)`` at the stacked points ``xs (c, N, ...)``, times the point for Gradient × Input."""
    g, _ = common.grad_stack(apply, fn, params, xs, aux)
    return g * (xs[:, :, None] if g.ndim == xs.ndim + 1 else xs) if times_input else g


@functools.cache
def _centre(apply: Callable, fn: TargetFn | None, times_input: bool):
    """Jitted noise-free statistic ``g_0 (N, [K,] ...)`` that VarGrad is centred on."""
    return jax.jit(lambda params, x, aux: _statistic(apply, fn, times_input, params, x[None], aux)[0])


@functools.cache
def _noise_chunk(apply: Callable, fn: TargetFn | None, times_input: bool):
    """Jitted ``(Σ_s m_s (g_s - g_0), Σ_s m_s (g_s - g_0)²)`` over one chunk of sample indices ``s`` with mask ``m``."""

    def chunk(params, x, sigma, aux, key, centre, idx, mask):
        n = x.shape[0]
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(idx)
        eps = jax.vmap(lambda k: jax.random.normal(k, x.shape, x.dtype))(keys)  # (c, N, ...)
        xs = x[None] + sigma.reshape((1, n) + (1,) * (x.ndim - 1)).astype(x.dtype) * eps
        d = _statistic(apply, fn, times_input, params, xs, aux) - centre[None]
        return common.weighted_sum(mask, d), common.weighted_sum(mask, d * d)

    return jax.jit(chunk)


def noise_sigma(model: Model, x: np.ndarray, noise_level: float) -> np.ndarray:
    """``σ (N,)``: ``noise_level`` times the declared value range's width, else each sample's ``max - min``.

    Raises:
      ValueError: ``σ = 0`` for some sample while ``noise_level > 0`` (a constant input and no
      declared range), where the "noise" would silently be none.
    """
    n = x.shape[0]
    if model.input_spec.value_range is not None:
        lo, hi = model.input_spec.value_range
        width = np.full((n,), float(hi) - float(lo))
    else:
        flat = x.reshape(n, -1)
        width = (flat.max(axis=1) - flat.min(axis=1)).astype(np.float64)
    sigma = noise_level * width
    if noise_level > 0 and not (sigma > 0).all():
        bad = np.flatnonzero(~(sigma > 0)).tolist()
        raise ValueError(
            f"noise_level={noise_level:g} gives sigma = 0 for sample(s) {bad[:8]}: they are constant and model "
            f"{model.name!r} declares no input_spec.value_range to take the range from; declare one "
            "(InputSpec(value_range=(lo, hi))) or use noise_level=0"
        )
    return sigma


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
      noise_level: σ as a fraction of the declared ``input_spec.value_range`` width, or of each
        sample's ``max - min`` when none is declared (default 0.15, as PAIR); see :func:`noise_sigma`.
      times_input: smooth Gradient × (noisy) Input instead of the gradient.
      internal_batch_size: model rows (samples × inputs) per compiled call; default from ``memory_budget``.
      memory_budget: bytes of working set per compiled call (default 256 MiB).

    Returns:
      :class:`Attribution` shaped like ``x`` (``(N, K, ...)`` for ``"all"``).

    Raises:
      ValueError: ``n_samples < 1``, ``noise_level < 0``, ``σ = 0`` with ``noise_level > 0``
      (:func:`noise_sigma`), unknown statistic, missing or malformed key.
    """
    common.check_choice("statistic", statistic, STATISTICS)
    n_samples = common.check_int("n_samples", n_samples)
    noise_level = common.check_float("noise_level (sigma)", noise_level)
    common.check_chunking(internal_batch_size, memory_budget)
    key = common.check_key(key, what="SmoothGrad")
    r = common.resolve(model, x, target, labels, freeze=False)
    sigma = jnp.asarray(noise_sigma(r.model, np.asarray(r.x), noise_level), r.x.dtype)  # (N,), host-side: no compile
    r = common.freeze_pred(r)
    per_chunk = common.draws_per_chunk(r, memory_budget, internal_batch_size)
    if statistic == "variance":
        centre = _centre(r.model.apply, r.fn, times_input)(r.model.params, r.x, r.aux)
    else:  # the mean and the raw second moment need no centring
        centre = jnp.zeros((), r.x.dtype)
    run = functools.partial(
        _noise_chunk(r.model.apply, r.fn, times_input), r.model.params, r.x, sigma, r.aux, key, centre
    )
    idx = jnp.arange(n_samples, dtype=jnp.int32)
    s1, s2 = chunking.accumulate(run, idx, per_chunk)
    mean, sq = s1 / n_samples, s2 / n_samples  # centred moments for "variance", raw ones otherwise
    values = {"mean": mean, "square": sq, "variance": jnp.maximum(sq - mean**2, 0.0)}[statistic]
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
