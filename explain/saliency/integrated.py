"""Integrated Gradients, its adaptive-step variant, quadrature rules and baselines.

IG attributes ``F(x) - F(x')`` to input features by integrating the gradient
along the straight path from a baseline ``x'`` to ``x``:

    IG_i(x) = (x_i - x'_i) · ∫₀¹ ∂F(x' + α(x - x'))/∂x_i dα ≈ (x_i - x'_i) · Σ_k w_k ∂F(x' + α_k(x - x'))/∂x_i

Completeness (``Σ_i IG_i = F(x) - F(x')``) holds for the exact integral; the
quadrature error is reported per sample as ``convergence_delta``, as Captum does.

All steps run as rows of a few compiled calls: the ``(step, sample)`` rows of one
chunk go through one backward pass, and a Python loop runs over chunks of steps
(:func:`explain.chunking.accumulate`, last chunk padded with zero weight).

References:
  Sundararajan, Taly, Yan. Axiomatic Attribution for Deep Networks. ICML 2017.
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

Rule = Literal["gauss_legendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"]
RULES: tuple[str, ...] = ("gauss_legendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")
_RULE_ALIASES = {"gausslegendre": "gauss_legendre"}  # Captum's spelling
BaselineKind = Literal["zero", "constant", "blur", "uniform"]
BASELINES: tuple[str, ...] = ("zero", "constant", "blur", "uniform")


# ----------------------------------------------------------------------------- quadrature


def check_rule(rule: str, steps: Any) -> tuple[str, int]:
    """Validates ``(rule, steps)`` before any compilation; returns the canonical rule name."""
    rule = _RULE_ALIASES.get(rule, rule)
    common.check_choice("rule", rule, RULES)
    steps = common.check_int("steps", steps, minimum=2 if rule == "riemann_trapezoid" else 1)
    return rule, steps


def quadrature(rule: Rule, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``α_k`` in [0, 1] and weights ``w_k`` (summing to 1) of a rule with ``steps`` points.

    Gauss–Legendre (Captum's default) maps ``numpy.polynomial.legendre.leggauss``
    from [-1, 1] to [0, 1]; it is exact for polynomials of degree ``2·steps - 1``.
    The Riemann rules use ``steps`` equal cells (trapezoid: ``steps`` points
    including both ends), as ``captum.attr._utils.approximation_methods``.
    """
    rule, steps = check_rule(rule, steps)
    if rule == "gauss_legendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1.0) / 2.0, weights / 2.0
    if rule == "riemann_trapezoid":
        alphas = np.linspace(0.0, 1.0, steps)
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] *= 0.5
        return alphas, weights
    offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[rule]
    return (np.arange(steps) + offset) / steps, np.full(steps, 1.0 / steps)


# ----------------------------------------------------------------------------- baselines


def gaussian_blur(x: jax.Array, sigma: jax.Array | float) -> jax.Array:
    """Gaussian blur of images ``(N, H, W, C)`` with std ``sigma`` pixels, separable, differentiable in ``sigma``.

    Each axis is a matrix product with a row-normalised Gaussian kernel, so
    borders average over the pixels that exist and ``sigma → 0`` is the identity.
    """

    def kernel(size: int) -> jax.Array:
        d = jnp.arange(size, dtype=x.dtype)
        d2 = (d[:, None] - d[None, :]) ** 2
        s = jnp.maximum(jnp.asarray(sigma, x.dtype), 1e-3)
        k = jnp.exp(-d2 / (2.0 * s**2))
        return k / k.sum(axis=1, keepdims=True)

    y = jnp.einsum("ih,nhwc->niwc", kernel(x.shape[1]), x)
    return jnp.einsum("jw,niwc->nijc", kernel(x.shape[2]), y)


def make_baseline(
    model: Model,
    x: jax.Array,
    baseline: BaselineKind | Any = "zero",
    *,
    key: jax.Array | None = None,
    value: float | None = None,
    blur_sigma: float | None = None,
) -> jax.Array:
    """A baseline ``x'`` shaped like ``x (N, ...)``.

    Args:
      baseline: ``"zero"``; ``"constant"`` (``value``, default the middle of the
        declared input range, else 0); ``"blur"`` (``x`` blurred with std
        ``blur_sigma`` pixels, default ``max(H, W) / 8``; images only);
        ``"uniform"`` (uniform noise over the declared range, else [0, 1]; needs
        ``key``); or an array shaped like ``x`` or like one sample (broadcast).

    Raises:
      ValueError: unknown kind, wrong shape, missing key, blur on non-images.
    """
    if isinstance(baseline, str):
        common.check_choice("baseline", baseline, BASELINES)
        if baseline == "zero":
            return jnp.zeros_like(x)
        if baseline == "constant":
            lo, hi = model.input_spec.value_range or (0.0, 0.0)
            v = (lo + hi) / 2.0 if value is None else common.check_float("baseline_value", value, minimum=-np.inf)
            return jnp.full_like(x, v)
        if baseline == "blur":
            h, w, _ = common.check_image(model, what="baseline='blur'")
            sigma = max(h, w) / 8.0 if blur_sigma is None else common.check_float("blur_sigma", blur_sigma)
            return gaussian_blur(x, sigma)
        key = common.check_key(key, what="baseline='uniform'")
        lo, hi = common.value_range(model)
        return jax.random.uniform(key, x.shape, x.dtype, lo, hi)
    arr = np.asarray(baseline) if not isinstance(baseline, jax.Array) else baseline
    if tuple(arr.shape) not in (tuple(x.shape), tuple(x.shape[1:])):
        raise ValueError(
            f"expected baseline of shape {tuple(x.shape)} (like x) or {tuple(x.shape[1:])} (one sample, broadcast), "
            f"got {tuple(arr.shape)}; or pass one of {list(BASELINES)}"
        )
    if not np.isfinite(np.asarray(arr)).all():
        raise ValueError("expected a finite baseline, got NaN or inf")
    return jnp.broadcast_to(jnp.asarray(arr, x.dtype), x.shape)


# ----------------------------------------------------------------------------- compiled pieces


@functools.cache
def _path_chunk(apply: Callable, fn: TargetFn | None):
    """Jitted ``Σ_k w_k ∇F(x' + α_k(x - x'))`` over one chunk of ``c`` nodes: ``(N, ...)`` or ``(N, K, ...)``."""

    def chunk(params, x, baseline, aux, nodes, mask):
        alphas, w = nodes[:, 0], nodes[:, 1] * mask  # (c,), (c,)
        a = alphas.reshape((alphas.shape[0],) + (1,) * x.ndim).astype(x.dtype)
        g, _ = common.grad_stack(apply, fn, params, baseline[None] + a * (x - baseline)[None], aux)  # (c, N, [K,] ...)
        return common.weighted_sum(w, g)

    return jax.jit(chunk)


@functools.cache
def endpoints(apply: Callable, fn: TargetFn | None):
    """Jitted ``F(x) - F(x')``: ``(N,)`` or ``(N, K)``."""

    def run(params, x, baseline, aux):
        n = x.shape[0]
        t = common.target_values(apply, fn, params, jnp.concatenate([x, baseline]), common.tile_aux(aux, 2))
        return t[:n] - t[n:]

    return jax.jit(run)


def path_integral(
    r: common.Resolved, baseline: jax.Array, alphas: np.ndarray, weights: np.ndarray, per_chunk: int
) -> tuple[jax.Array, jax.Array]:
    """``(IG values, convergence delta)`` for nodes/weights, ``per_chunk`` steps (× N rows) per compiled call.

    The chunk is clamped to the number of steps by :func:`explain.chunking.accumulate`,
    so callers that must not recompile keep ``per_chunk <= len(alphas)``.
    """
    x = r.x
    # Host array: slicing it per chunk costs no device op, so a new step count compiles nothing but
    # (at most) the one chunk shape.
    nodes = np.stack([alphas, weights], axis=1).astype(np.dtype(x.dtype))  # (S, 2)
    run = functools.partial(_path_chunk(r.model.apply, r.fn), r.model.params, x, baseline, r.aux)
    avg_grad = chunking.accumulate(run, nodes, per_chunk)
    values = common.expand_like(x - baseline, avg_grad) * avg_grad
    diff = endpoints(r.model.apply, r.fn)(r.model.params, x, baseline, r.aux)
    delta = values.reshape(values.shape[: diff.ndim] + (-1,)).sum(-1) - diff
    return values, delta


# ----------------------------------------------------------------------------- public


def integrated_gradients(
    model: Model | Any,
    x: Any,
    *,
    target: Any = None,
    labels: Any = None,
    baseline: BaselineKind | Any = "zero",
    steps: int = 50,
    rule: Rule = "gauss_legendre",
    internal_batch_size: int | None = None,
    memory_budget: int | None = None,
    key: jax.Array | None = None,
    baseline_value: float | None = None,
    blur_sigma: float | None = None,
) -> Attribution:
    """Integrated Gradients along the straight path from a baseline, batched and chunked.

    ``IG(x) = (x - x') ⊙ Σ_k w_k ∇F(x' + α_k (x - x'))`` with the nodes and
    weights of ``rule`` (:func:`quadrature`).

    Args:
      model: a :class:`~explain.model.Model` (contract in :mod:`explain.model`) or a bundle.
      x: ``(N, *input_shape)``.
      target: see :mod:`explain.targets`, or ``"all"`` for every class in one call
        (values ``(N, K, *input_shape)``). A predicted-class target is frozen at ``x``.
      labels: ``(N,)`` when ``target="loss"``.
      baseline: ``"zero"`` (default), ``"constant"``, ``"blur"``, ``"uniform"`` or an
        array; see :func:`make_baseline`.
      steps: quadrature points (default 50, as Captum).
      rule: ``"gauss_legendre"`` (default, as Captum) or ``"riemann_left|right|middle|trapezoid"``.
      internal_batch_size: model rows (steps × samples) per compiled call, as Captum;
        default from ``memory_budget``.
      memory_budget: bytes of working set per compiled call (default 256 MiB).
      key: PRNG key, only for ``baseline="uniform"``.
      baseline_value, blur_sigma: options of the ``"constant"`` and ``"blur"`` baselines.

    Returns:
      :class:`Attribution` with ``values`` shaped like ``x``, ``convergence_delta``
      ``Σ values - (F(x) - F(x'))`` per sample and ``steps`` per sample.

    Raises:
      ValueError / TypeError: before compilation, for a bad ``x``, target, baseline
      shape or kind, rule, ``steps < 1``, or a missing key.

    Example:
      >>> a = integrated_gradients(m, x, target=y, steps=64)
      >>> a.values.shape == x.shape, float(abs(a.convergence_delta).max())

    References:
      Sundararajan, Taly, Yan. Axiomatic Attribution for Deep Networks. ICML 2017.
    """
    rule, steps = check_rule(rule, steps)
    common.check_chunking(internal_batch_size, memory_budget)
    r = common.resolve(model, x, target, labels, freeze=False)
    base = make_baseline(r.model, r.x, baseline, key=key, value=baseline_value, blur_sigma=blur_sigma)
    r = common.freeze_pred(r)
    per_chunk = common.draws_per_chunk(r, memory_budget, internal_batch_size)
    alphas, weights = quadrature(rule, steps)
    values, delta = path_integral(r, base, alphas, weights, per_chunk)
    n_steps = jnp.full((r.x.shape[0],), steps, jnp.int32)
    return Attribution(values, "integrated_gradients", r.name, convergence_delta=delta, steps=n_steps)


def integrated_gradients_adaptive(
    model: Model | Any,
    x: Any,
    *,
    tolerance: float = 1e-3,
    start_steps: int = 16,
    max_steps: int = 4096,
    target: Any = None,
    labels: Any = None,
    baseline: BaselineKind | Any = "zero",
    rule: Rule = "gauss_legendre",
    internal_batch_size: int | None = None,
    memory_budget: int | None = None,
    key: jax.Array | None = None,
    baseline_value: float | None = None,
    blur_sigma: float | None = None,
) -> Attribution:
    """Integrated Gradients that doubles its steps until every sample's completeness error is small.

    Starting at ``start_steps``, the samples whose ``|δ| > tolerance · (1 + |F(x) - F(x')|)``
    (a mixed absolute/relative test, as ``numpy.isclose``) are recomputed with
    twice the steps, until all pass or ``max_steps`` is reached. Each sample keeps
    the result of the first step count that passed (or of ``max_steps``).

    Args:
      tolerance: ``> 0``; see above.
      start_steps, max_steps: ``1 <= start_steps <= max_steps``.
      internal_batch_size: model rows per compiled call; the steps per call are fixed once
        (:func:`adaptive_chunk`) and sub-batches padded, so doubling does not recompile.
      (others as :func:`integrated_gradients`; ``target="all"`` is not supported)

    Returns:
      :class:`Attribution` whose ``steps (N,)`` are the steps each sample used
      and ``convergence_delta (N,)`` its final error.
    """
    tolerance = common.check_float("tolerance", tolerance)
    if tolerance == 0:
        raise ValueError("expected tolerance > 0, got 0")
    rule, start_steps = check_rule(rule, start_steps)
    max_steps = common.check_int("max_steps", max_steps, minimum=start_steps)
    common.check_chunking(internal_batch_size, memory_budget)
    r = common.resolve(model, x, target, labels, allow_all=False, freeze=False)
    base = make_baseline(r.model, r.x, baseline, key=key, value=baseline_value, blur_sigma=blur_sigma)
    r = common.freeze_pred(r)
    n = r.x.shape[0]
    per_chunk = adaptive_chunk(common.draws_per_chunk(r, memory_budget, internal_batch_size), start_steps)
    scale = 1.0 + np.abs(np.asarray(endpoints(r.model.apply, r.fn)(r.model.params, r.x, base, r.aux)))
    values, delta = np.zeros(r.x.shape, r.x.dtype), np.zeros((n,), r.x.dtype)
    used = np.zeros((n,), np.int32)
    todo = np.arange(n)
    steps = start_steps
    while todo.size:
        # Only unconverged samples are recomputed, padded (repeating the first) to a bucket size, and
        # every round uses the same steps per call, so the compiled shapes are (bucket, per_chunk):
        # at most 1 + log2(N / _MIN_BUCKET) of them however many times the steps double.
        idx = np.concatenate([todo, np.full(_bucket(todo.size, n) - todo.size, todo[0])])
        sub = common.Resolved(r.model, r.x[idx], r.fn, common.take_aux(r.aux, idx), r.name)
        v, d = path_integral(sub, base[idx], *quadrature(rule, steps), per_chunk)
        v, d = np.asarray(v)[: todo.size], np.asarray(d)[: todo.size]
        values[todo], delta[todo], used[todo] = v, d, steps
        todo = todo[np.abs(d) > tolerance * scale[todo]]
        if steps >= max_steps:
            break
        steps = min(2 * steps, max_steps)
    return Attribution(
        jnp.asarray(values),
        "integrated_gradients_adaptive",
        r.name,
        convergence_delta=jnp.asarray(delta),
        steps=jnp.asarray(used),
    )


_MIN_BUCKET = 8  # below this many samples a compile costs more than the padded rows


def _bucket(todo: int, n: int) -> int:
    """Padded sub-batch size for ``todo`` of ``n`` samples: the next power of two, at least ``min(n, 8)``."""
    return min(n, max(_MIN_BUCKET, 1 << (todo - 1).bit_length()))


def adaptive_chunk(cap: int, start_steps: int) -> int:
    """Steps per compiled call for every round of the adaptive loop, fixed once.

    At most ``start_steps`` (so :func:`explain.chunking.accumulate` never clamps it
    and the chunk shape never changes) and at most ``cap`` (the memory bound). The
    largest divisor of ``start_steps`` within that is preferred, since it divides
    every doubled step count and no chunk is padded, unless it is under half the cap.
    """
    cap = max(1, min(cap, start_steps))
    divisor = max(d for d in range(1, cap + 1) if start_steps % d == 0)
    return divisor if 2 * divisor >= cap else cap
