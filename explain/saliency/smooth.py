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
from explain.saliency.gradient import vanilla_gradient_core
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
    sigma = noise_scale(np.asarray(x), noise_level, model.input_spec.value_range, np)
    if noise_level > 0 and not (sigma > 0).all():
        bad = np.flatnonzero(~(sigma > 0)).tolist()
        raise ValueError(
            f"noise_level={noise_level:g} gives sigma = 0 for sample(s) {bad[:8]}: they are constant and model "
            f"{model.name!r} declares no input_spec.value_range to take the range from; declare one "
            "(InputSpec(value_range=(lo, hi))) or use noise_level=0"
        )
    return sigma


def noise_scale(x: Any, noise_level: Any, value_range: tuple[float, float] | None, xp: Any = jnp) -> Any:
    """:func:`noise_sigma` without its check: on the host in float64 (``xp=np``), or traceable per row
    (``xp=jnp``, ``noise_level`` may be traced) in ``x``'s dtype."""
    n, host = x.shape[0], xp is np
    if value_range is not None:
        width = xp.full((n,), float(value_range[1]) - float(value_range[0]), np.float64 if host else x.dtype)
    else:
        flat = x.reshape(n, -1)
        width = (flat.max(axis=1) - flat.min(axis=1)).astype(np.float64 if host else x.dtype)
    return ((noise_level if host else jnp.asarray(noise_level, x.dtype)) * width).astype(x.dtype)


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
    c, n = idx.shape[0], x.shape[0]

    def noise(s, i):
        return jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, s), i), x.shape[1:], x.dtype)

    eps = jax.vmap(lambda s: jax.vmap(lambda i: noise(s, i))(row_ids))(idx)  # (c, N, ...)
    xs = x[None] + sigma.reshape((1, n) + (1,) * (x.ndim - 1)).astype(x.dtype) * eps
    a = _method_values(fn, params, xs.reshape((c * n, *x.shape[1:])), target.tile(c), method=method, options=options)
    a = a.reshape((c, n, *a.shape[1:]))  # the wrapped method's values at the c noisy copies
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
        centre = _method_values(fn, params, x, target, method=method, options=options)
    else:  # the mean and the raw second moment need no centring
        centre = jnp.zeros((x.shape[0],), x.dtype)
    s1, s2 = noise_chunk(
        fn, params, x, target, row_ids, sigma, centre, jnp.arange(n_samples), jnp.ones((n_samples,), x.dtype),
        key=key, method=method, options=options,
    )  # fmt: skip
    return Attribution(_statistic(statistic, s1 / n_samples, s2 / n_samples), _NAMES[statistic], target.name)


def _statistic(statistic: str, mean: Any, sq: Any) -> Any:
    """The requested statistic from the (centred for ``"variance"``) first and second moments; traceable."""
    if statistic == "mean":
        return mean
    if statistic == "square":
        return sq
    return jnp.maximum(sq - mean**2, 0.0)


def _method_values(fn: Callable, params: Any, x: jax.Array, target: BoundTarget, *, method: Callable, options: tuple):
    return method(fn, params, x, target, **dict(options)).values


_noise_chunk = jax.jit(noise_chunk, static_argnums=0, static_argnames=("method", "options"))
_centre = jax.jit(_method_values, static_argnums=0, static_argnames=("method", "options"))


def wrapped(model: Model, method: str, method_options: Mapping[str, Any] | None) -> tuple[Any, dict, tuple]:
    """``(registry entry, options, core options as sorted items)`` of the wrapped method, checked on the host.

    Raises:
      ValueError: unknown method or options, a method without a pure core or with randomness of its own,
      a model the method cannot explain.
    """
    from explain.saliency import registry  # the registry lists this module's methods too

    info = registry.get(method)
    options = info.check_options(dict(method_options or {}))
    if info.core is None or info.needs_key:
        raise ValueError(f"the noise tunnel wraps deterministic methods with a pure core; {method!r} is not one")
    info.check_model(model)
    return info, options, tuple(sorted(info.core_options(model, options).items()))


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

    Args (others: :mod:`explain.saliency`):
      key: PRNG key (required): same key, same result.
      statistic: ``"mean"`` (SmoothGrad), ``"square"`` (SmoothGrad²) or ``"variance"`` (VarGrad).
      method: the wrapped method, a name of :data:`explain.saliency.registry.METHODS` with a pure core
        and no randomness of its own (default ``"vanilla_gradient"``).
      method_options: the wrapped method's options (validated against its signature).
      n_samples: noise samples per input (default 25, as PAIR).
      noise_level: σ as a fraction of the declared ``input_spec.value_range`` width, or of each
        sample's ``max - min`` when none is declared (default 0.15, as PAIR); see :func:`noise_sigma`.

    Returns:
      :class:`Attribution` shaped like the wrapped method's values.

    Raises:
      ValueError: ``n_samples < 1``, ``noise_level < 0``, ``σ = 0`` with ``noise_level > 0``
      (:func:`noise_sigma`), unknown statistic, those of :func:`wrapped`, a missing or malformed key.
    """
    check_choice("statistic", statistic, STATISTICS)
    n_samples = check_int("n_samples", n_samples)
    noise_level = check_float("noise_level", noise_level)
    key = check_key(key, what="SmoothGrad")
    # Every check of the method and its options before prepare(), whose predicted-class forward pass compiles.
    m = as_model(model)
    info, options, core_options = wrapped(m, method, method_options)
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


def core_options(model: Model, options: Mapping[str, Any]) -> dict[str, Any]:
    """The registry's ``core_options`` hook of the three statistics: the wrapped method's core and options.

    Raises:
      ValueError: as :func:`wrapped`, or a wrapped method on ``model.tap`` (the statistic's core
      is given ``model.apply``; call :func:`noise_tunnel_core` with the tap instead).
    """
    info, _, inner = wrapped(model, options["method"], options["method_options"])
    if info.uses_tap:
        raise ValueError(
            f"the SmoothGrad cores take model.apply; {options['method']!r} needs model.tap: "
            "call noise_tunnel_core with model.tap"
        )
    return {
        "n_samples": options["n_samples"],
        "noise_level": options["noise_level"],
        "value_range": model.input_spec.value_range,
        "method": info.core,
        "options": inner,
    }


def cost(model: Model, options: Mapping[str, Any]) -> int:
    """Model rows one sample costs in one core call: ``n_samples`` times the wrapped method's."""
    info, inner, _ = wrapped(model, options["method"], options["method_options"])
    return int(options["n_samples"]) * info.rows_per_sample(model, inner)


def _statistic_method(statistic: Statistic) -> tuple[Callable[..., Attribution], Callable[..., Attribution]]:
    """The public method of one statistic (:func:`noise_tunnel` less its ``statistic``) and its pure core.

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

    def core(
        apply: Callable,
        params: Any,
        x: Float[Array, " n *features"],
        target: BoundTarget,
        *,
        key: jax.Array,
        row_ids: Int[Array, " n"] | None = None,
        n_samples: int = 25,
        noise_level: float = 0.15,
        value_range: tuple[float, float] | None = None,
        method: Callable = vanilla_gradient_core,
        options: tuple = (),
    ) -> Attribution:
        sigma = noise_scale(x, noise_level, value_range)
        return noise_tunnel_core(
            apply, params, x, target, key=key, sigma=sigma, row_ids=row_ids, method=method, options=options,
            statistic=statistic, n_samples=n_samples,
        )  # fmt: skip

    name = _NAMES[statistic]
    what = {"mean": "the mean map", "square": "the mean squared map", "variance": "the variance of the map"}[statistic]
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"{name}: {what} under noise. Arguments as :func:`noise_tunnel`."
    core.__name__ = core.__qualname__ = f"{name}_core"
    core.__doc__ = (
        f"Pure {name}: :func:`noise_tunnel_core` of ``method`` (a core, with ``options`` as sorted items) "
        "at σ from ``noise_level`` and ``value_range`` (each row's ``max - min`` when ``None``; unchecked: "
        "a constant row gets no noise)."
    )
    return fn, core


smoothgrad, smoothgrad_core = _statistic_method("mean")
smoothgrad_sq, smoothgrad_sq_core = _statistic_method("square")
vargrad, vargrad_core = _statistic_method("variance")
