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

The tunnel wraps any deterministic method of the registry (Captum's NoiseTunnel,
PAIR's SmoothGrad wrapper), as optax's ``chain`` wraps transforms: the
gradient by default, or Integrated Gradients, Guided Backprop, Grad-CAM, ...
Noise for sample ``s`` of row ``i`` uses ``fold_in(fold_in(key, s), i)``, so the
result depends on the key only, never on how rows or samples are chunked. Many
samples run per compiled call: ``c`` samples of ``N`` rows are ``c · N`` rows of
one call of the wrapped method's core.

References:
  Smilkov, Thorat, Kim, Viégas, Wattenberg. SmoothGrad: removing noise by adding noise. 2017.
  Adebayo et al. Local Explanation Methods for Deep Neural Networks Lack Sensitivity to
  Parameter Values (VarGrad). ICLR workshop 2018.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from explain import chunking
from explain.arrays import Batch
from explain.checks import check_choice, check_float, check_int, check_key
from explain.gradients import prepare
from explain.model import Model, as_model
from explain.saliency import _common as common
from explain.saliency.attribution import Attribution
from explain.targets import BoundTarget

Statistic = Literal["mean", "square", "variance"]
STATISTICS: tuple[str, ...] = ("mean", "square", "variance")
_NAMES = {"mean": "smoothgrad", "square": "smoothgrad_sq", "variance": "vargrad"}


def noise_sigma(model: Model, x: np.ndarray | Array, noise_level: float) -> np.ndarray:
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
        flat = np.asarray(x).reshape(n, -1)
        width = (flat.max(axis=1) - flat.min(axis=1)).astype(np.float64)
    sigma = noise_level * width
    if noise_level > 0 and not (sigma > 0).all():
        bad = np.flatnonzero(~(sigma > 0)).tolist()
        raise ValueError(
            f"noise_level={noise_level:g} gives sigma = 0 for sample(s) {bad[:8]}: they are constant and model "
            f"{model.name!r} declares no input_spec.value_range to take the range from; declare one "
            "(InputSpec(value_range=(lo, hi))) or use noise_level=0"
        )
    return sigma.astype(np.asarray(x).dtype)


def _noisy_values(fn, params, x, target, row_ids, sigma, key, idx, method, options) -> jax.Array:
    """The wrapped method's values at ``c`` noisy copies of ``x``: ``(c, N, [K,] ...)``."""
    c, n = idx.shape[0], x.shape[0]

    def one(s, i):
        return jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, s), i), x.shape[1:], x.dtype)

    eps = jax.vmap(lambda s: jax.vmap(lambda i: one(s, i))(row_ids))(idx)  # (c, N, ...)
    xs = x[None] + sigma.reshape((1, n) + (1,) * (x.ndim - 1)).astype(x.dtype) * eps
    a = method(fn, params, xs.reshape((c * n, *x.shape[1:])), target.tile(c), **dict(options)).values
    return a.reshape((c, n, *a.shape[1:]))


def noise_chunk(
    fn: Callable,
    params: Any,
    x: jax.Array,
    target: BoundTarget,
    row_ids: jax.Array,
    sigma: jax.Array,
    centre: jax.Array,
    idx: jax.Array,
    mask: jax.Array,
    *,
    key: jax.Array,
    method: Callable,
    options: tuple = (),
) -> tuple[jax.Array, jax.Array]:
    """Pure: ``(Σ_s m_s d_s, Σ_s m_s d_s²)`` with ``d_s = a(x + σ ε_s) - centre`` over ``c`` noise samples."""
    a = _noisy_values(fn, params, x, target, row_ids, sigma, key, idx, method, options)
    d = a - centre.reshape((1, *centre.shape, *(1,) * (a.ndim - 1 - centre.ndim)))
    return common.weighted_sum(mask, d), common.weighted_sum(mask, d * d)


def noise_tunnel_core(
    fn: Callable,
    params: Any,
    x: Float[Array, " n *features"],
    target: BoundTarget,
    *,
    key: jax.Array,
    sigma: Float[Array, " n"],
    row_ids: Int[Array, " n"] | None = None,
    method: Callable,
    options: tuple = (),
    statistic: Statistic = "mean",
    n_samples: int = 25,
) -> Attribution:
    """Pure: every noise sample in one call. ``fn`` is what ``method`` takes (the apply, or the tap).

    ``row_ids`` (default ``arange(N)``) name each row's noise stream, so a row gets the
    same noise in any batch it is part of.
    """
    row_ids = jnp.arange(x.shape[0]) if row_ids is None else row_ids
    if statistic == "variance":
        centre = method(fn, params, x, target, **dict(options)).values
    else:  # the mean and the raw second moment need no centring
        centre = jnp.zeros((x.shape[0],), x.dtype)
    s1, s2 = noise_chunk(
        fn, params, x, target, row_ids, sigma, centre, jnp.arange(n_samples), jnp.ones((n_samples,), x.dtype),
        key=key, method=method, options=options,
    )  # fmt: skip
    return Attribution(_statistic(statistic, s1 / n_samples, s2 / n_samples), _NAMES[statistic], target.name)


def _statistic(statistic: str, mean: Any, sq: Any) -> Any:
    """The requested statistic from the (centred for ``"variance"``) first and second moments.

    Traceable (``jnp``, only the requested branch): the pure core calls it under ``jax.jit``.
    """
    if statistic == "mean":
        return mean
    if statistic == "square":
        return sq
    return jnp.maximum(sq - mean**2, 0.0)


def _method_values(fn: Callable, params: Any, x: jax.Array, target: BoundTarget, *, method: Callable, options: tuple):
    return method(fn, params, x, target, **dict(options)).values


_noise_chunk = jax.jit(noise_chunk, static_argnums=0, static_argnames=("method", "options"))
_centre = jax.jit(_method_values, static_argnums=0, static_argnames=("method", "options"))


def noise_tunnel(
    model: Model | Any,
    x: Batch,
    *,
    key: jax.Array,
    statistic: Statistic = "mean",
    method: str = "vanilla_gradient",
    method_options: Mapping[str, Any] | None = None,
    target: Any = None,
    labels: Any = None,
    n_samples: int = 25,
    noise_level: float = 0.15,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> Attribution:
    """A statistic of any deterministic method's maps over noisy copies of ``x`` (module docstring has the math).

    Args:
      model: a :class:`~explain.model.Model` (contract in :mod:`explain.model`) or a bundle.
      x: ``(N, *input_shape)``.
      key: PRNG key (required): same key, same result.
      statistic: ``"mean"`` (SmoothGrad), ``"square"`` (SmoothGrad²) or ``"variance"`` (VarGrad).
      method: the wrapped method, a name of :data:`explain.saliency.registry.METHODS` with a pure core
        and no randomness of its own (default ``"vanilla_gradient"``).
      method_options: the wrapped method's options (validated against its signature).
      target: see :mod:`explain.targets`, or ``"all"`` where the method supports it. A predicted
        class is frozen at ``x``.
      n_samples: noise samples per input (default 25, as PAIR).
      noise_level: σ as a fraction of the declared ``input_spec.value_range`` width, or of each
        sample's ``max - min`` when none is declared (default 0.15, as PAIR); see :func:`noise_sigma`.
      memory_budget: bytes per compiled call (default :data:`explain.chunking.MEMORY_BUDGET`).
      show_progress: a progress bar for long calls.

    Returns:
      :class:`Attribution` shaped like the wrapped method's values.

    Raises:
      ValueError: ``n_samples < 1``, ``noise_level < 0``, ``σ = 0`` with ``noise_level > 0``
      (:func:`noise_sigma`), unknown statistic or method, a random method, bad method options,
      a missing or malformed key.

    References:
      Smilkov et al. SmoothGrad: removing noise by adding noise. 2017.
    """
    from explain.saliency import registry  # the registry lists this module's methods too

    check_choice("statistic", statistic, STATISTICS)
    n_samples = check_int("n_samples", n_samples)
    noise_level = check_float("noise_level", noise_level)
    key = check_key(key, what="SmoothGrad")
    info = registry.get(method)
    options = info.check_options(dict(method_options or {}))
    if info.core is None or info.needs_key:
        raise ValueError(f"the noise tunnel wraps deterministic methods with a pure core; {method!r} is not one")
    # Every check of the method and its options before prepare(), whose predicted-class forward pass compiles.
    m = as_model(model)
    info.check_model(m)
    core_options = tuple(sorted(info.core_options(m, options).items()))
    p = prepare(m, x, target=target, labels=labels, allow_all=info.supports_all, memory_budget=memory_budget)
    fn = p.model.tap if info.uses_tap else p.model.apply
    sigma = noise_sigma(p.model, p.x, noise_level)
    rows = max(1, common.rows(p, memory_budget) // info.rows_per_sample(p.model, options))
    if statistic == "variance":
        run = functools.partial(_centre, fn, p.model.params, method=info.core, options=core_options)
        centre = chunking.map_rows(run, p.x, p.target, batch=rows)
    else:  # the mean and the raw second moment need no centring
        centre = np.zeros((p.n,), p.x.dtype)
    batch, per_call = chunking.plan(p.n, rows, n_samples)
    run = functools.partial(_noise_chunk, fn, p.model.params, key=key, method=info.core, options=core_options)
    s1, s2 = chunking.map_rows(
        run, p.x, p.target, np.arange(p.n), sigma, np.asarray(centre), batch=batch,
        draws=np.arange(n_samples), per_call=per_call, show_progress=show_progress,
    )  # fmt: skip
    values = _statistic(statistic, s1 / n_samples, s2 / n_samples)
    return Attribution(jnp.asarray(values), _NAMES[statistic], p.target.name)


def _statistic_method(statistic: Statistic, doc: str) -> Callable[..., Attribution]:
    """The public method of one statistic: :func:`noise_tunnel` less its ``statistic``, named ``_NAMES[statistic]``.

    One signature for the three methods; the registry reads their options and defaults from it.
    """

    def fn(
        model: Model | Any,
        x: Batch,
        *,
        key: jax.Array,
        target: Any = None,
        labels: Any = None,
        n_samples: int = 25,
        noise_level: float = 0.15,
        method: str = "vanilla_gradient",
        method_options: Mapping[str, Any] | None = None,
        memory_budget: int | None = None,
        show_progress: bool = False,
    ) -> Attribution:
        return noise_tunnel(
            model, x, key=key, statistic=statistic, method=method, method_options=method_options, target=target,
            labels=labels, n_samples=n_samples, noise_level=noise_level, memory_budget=memory_budget,
            show_progress=show_progress,
        )  # fmt: skip

    fn.__name__ = fn.__qualname__ = _NAMES[statistic]
    fn.__doc__ = doc
    return fn


smoothgrad = _statistic_method("mean", "SmoothGrad: the mean map under noise. Arguments as :func:`noise_tunnel`.")
smoothgrad_sq = _statistic_method(
    "square", "SmoothGrad²: the mean squared map under noise. Arguments as :func:`noise_tunnel`."
)
vargrad = _statistic_method(
    "variance", "VarGrad: the variance of the map under noise. Arguments as :func:`noise_tunnel`."
)
