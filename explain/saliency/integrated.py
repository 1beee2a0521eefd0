"""Integrated Gradients, its adaptive-step variant, quadrature rules and baselines.

IG attributes ``F(x) - F(x')`` to input features by integrating the gradient
along the straight path from a baseline ``x'`` to ``x``:

    IG_i(x) = (x_i - x'_i) · ∫₀¹ ∂F(x' + α(x - x'))/∂x_i dα ≈ (x_i - x'_i) · Σ_k w_k ∂F(x' + α_k(x - x'))/∂x_i

Completeness (``Σ_i IG_i = F(x) - F(x')``) holds for the exact integral; the
quadrature error is reported per sample as ``convergence_delta``, as Captum does.

:func:`integrated_gradients_core` is the pure function (all steps in one call,
usable inside ``jax.jit``/``jax.vmap``); the public wrapper runs the same
:func:`path_chunk` over chunks of samples × steps within the memory budget
(:func:`explain.chunking.map_rows`, last chunk padded with zero weight), so
memory does not grow with ``N`` or ``steps``.

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
from jaxtyping import Array, Float

from explain import chunking
from explain.arrays import Batch
from explain.checks import check_choice, check_float, check_int, check_key
from explain.gradients import Prepared, prepare
from explain.model import Model, as_model
from explain.saliency import _common as common
from explain.saliency.attribution import Attribution
from explain.targets import BoundTarget

Rule = Literal["gauss_legendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"]
RULES: tuple[str, ...] = ("gauss_legendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")
_RULE_ALIASES = {"gausslegendre": "gauss_legendre"}  # Captum's spelling
BaselineKind = Literal["zero", "constant", "blur", "uniform"]
BASELINES: tuple[str, ...] = ("zero", "constant", "blur", "uniform")
# Gauss–Legendre nodes come from a dense eigenproblem (O(steps²) memory); beyond this many steps the
# quadrature error is far below float32 resolution anyway.
MAX_STEPS = 10_000


# ----------------------------------------------------------------------------- quadrature


def check_rule(rule: str, steps: Any, *, name: str = "steps") -> tuple[str, int]:
    """Validates ``(rule, steps)`` before any compilation; returns the canonical rule name.

    ``name`` is the argument named in errors (``start_steps``, ``max_steps`` for the adaptive variant).
    """
    rule = _RULE_ALIASES.get(rule, rule)
    check_choice("rule", rule, RULES)
    steps = check_int(name, steps, minimum=2 if rule == "riemann_trapezoid" else 1)
    if steps > MAX_STEPS:
        raise ValueError(f"expected {name} <= {MAX_STEPS}, got {steps}")
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


blur = jax.jit(gaussian_blur)  # compiled once; Blur IG uses it too


def check_baseline(
    model: Model,
    x: Any,
    baseline: BaselineKind | Any = "zero",
    *,
    key: jax.Array | None = None,
    value: float | None = None,
    blur_sigma: float | None = None,
) -> None:
    """The checks of :func:`make_baseline`, on the host and before anything is compiled.

    Wrappers call it before :func:`explain.gradients.prepare` (whose predicted-class
    forward pass compiles), so a bad baseline fails first. ``x`` is the user's batch;
    an array baseline is compared with ``(N, *input_spec.shape)`` (a malformed ``x``
    is left to :func:`~explain.gradients.prepare`).

    Raises:
      ValueError: unknown kind, wrong shape, NaN/inf, missing key, blur on non-images.
    """
    if isinstance(baseline, str):
        check_choice("baseline", baseline, BASELINES)
        if baseline == "constant" and value is not None:
            check_float("baseline_value", value, minimum=-np.inf)
        elif baseline == "blur":
            common.check_image(model, what="baseline='blur'")
            if blur_sigma is not None:
                check_float("blur_sigma", blur_sigma)
        elif baseline == "uniform":
            check_key(key, what="baseline='uniform'")
        return
    spec = tuple(model.input_spec.shape)
    shape = tuple(np.shape(x))
    n = shape[0] if len(shape) == len(spec) + 1 else "N"
    arr = np.asarray(baseline) if not isinstance(baseline, jax.Array) else baseline
    if tuple(arr.shape) not in ((n, *spec), spec):
        expect = f"({n}, {', '.join(map(str, spec))})"
        raise ValueError(
            f"expected baseline of shape {expect} (like x) or {spec} (one sample, broadcast), "
            f"got {tuple(arr.shape)}; or pass one of {list(BASELINES)}"
        )
    if not np.isfinite(np.asarray(arr)).all():
        raise ValueError("expected a finite baseline, got NaN or inf")


def make_baseline(
    model: Model,
    x: Float[Array, " n *features"] | np.ndarray,
    baseline: BaselineKind | Any = "zero",
    *,
    key: jax.Array | None = None,
    value: float | None = None,
    blur_sigma: float | None = None,
) -> np.ndarray:
    """A baseline ``x'`` shaped like ``x (N, ...)``, as a host array (``zero``/``constant``/one sample: a broadcast view).

    Args:
      baseline: ``"zero"``; ``"constant"`` (``value``, default the middle of the
        declared input range, else 0); ``"blur"`` (``x`` blurred with std
        ``blur_sigma`` pixels, default ``max(H, W) / 8``; images only);
        ``"uniform"`` (uniform noise over the declared range, else [0, 1]; needs
        ``key``); or an array shaped like ``x`` or like one sample (broadcast).

    Raises:
      ValueError: as :func:`check_baseline`.
    """
    check_baseline(model, x, baseline, key=key, value=value, blur_sigma=blur_sigma)
    if isinstance(baseline, str):
        if baseline == "zero":
            return np.broadcast_to(np.zeros((), x.dtype), x.shape)
        if baseline == "constant":
            lo, hi = model.input_spec.value_range or (0.0, 0.0)
            v = (lo + hi) / 2.0 if value is None else float(value)
            return np.broadcast_to(np.asarray(v, x.dtype), x.shape)
        if baseline == "blur":
            h, w, _ = model.input_spec.shape
            sigma = max(h, w) / 8.0 if blur_sigma is None else float(blur_sigma)
            return np.asarray(blur(jnp.asarray(x), sigma))
        lo, hi = common.value_range(model)
        return np.asarray(jax.random.uniform(key, x.shape, x.dtype, lo, hi))
    return np.broadcast_to(np.asarray(baseline, x.dtype), x.shape)


# ----------------------------------------------------------------------------- pure pieces


def path_chunk(
    apply: Callable,
    params: Any,
    x: Float[Array, " n *features"],
    target: BoundTarget,
    baseline: Float[Array, " n *features"],
    nodes: Float[Array, " c 2"],
    mask: Float[Array, " c"],
) -> jax.Array:
    """Pure: ``(x - x') ⊙ Σ_k m_k w_k ∇F(x' + α_k (x - x'))`` over ``c`` nodes ``(α_k, w_k)``: additive over node chunks.

    Returns ``(N, ...)`` or ``(N, K, ...)`` for ``target="all"``.
    """
    baseline = baseline.astype(x.dtype)
    alphas, w = nodes[:, 0], nodes[:, 1] * mask  # (c,), (c,)
    a = alphas.reshape((alphas.shape[0],) + (1,) * x.ndim).astype(x.dtype)
    g, _ = common.grad_stack(apply, params, baseline[None] + a * (x - baseline)[None], target)  # (c, N, [K,] ...)
    s = common.weighted_sum(w, g)
    return common.expand_like(x - baseline, s) * s


def integrated_gradients_core(
    apply: Callable,
    params: Any,
    x: Float[Array, " n *features"],
    target: BoundTarget,
    *,
    baseline: Float[Array, " n *features"] | None = None,
    steps: int = 50,
    rule: Rule = "gauss_legendre",
) -> Attribution:
    """Pure IG with every step in one call: values, ``convergence_delta`` and ``steps``.

    ``baseline`` defaults to zeros; the wrapper builds the other kinds with :func:`make_baseline`.
    """
    baseline = jnp.zeros_like(x) if baseline is None else baseline
    alphas, weights = quadrature(rule, steps)
    nodes = jnp.asarray(np.stack([alphas, weights], axis=1), x.dtype)
    values = path_chunk(apply, params, x, target, baseline, nodes, jnp.ones((steps,), x.dtype))
    diff = common.endpoints(apply, params, x, target, baseline)
    delta = values.reshape((*diff.shape, -1)).sum(-1) - diff
    return Attribution(values, "integrated_gradients", target.name, delta, jnp.full((x.shape[0],), steps, jnp.int32))


_path_chunk = jax.jit(path_chunk, static_argnums=0)


def path_integral(
    p: Prepared,
    baseline: Any,
    rule: Rule,
    steps: int,
    *,
    memory_budget: int | None,
    show_progress: bool = False,
) -> tuple[np.ndarray, jax.Array]:
    """``(IG values, convergence delta)`` of a prepared batch, chunked over samples × steps."""
    alphas, weights = quadrature(rule, steps)
    # Host array: slicing it per chunk costs no device op, so a new step count compiles nothing new.
    nodes = np.stack([alphas, weights], axis=1).astype(p.x.dtype)  # (S, 2)
    values = common.run_draws(_path_chunk, p, nodes, baseline, memory_budget=memory_budget, show_progress=show_progress)
    return values, common.delta(p, values, baseline, memory_budget)


# ----------------------------------------------------------------------------- public


def integrated_gradients(
    model: Model | Any,
    x: Batch,
    *,
    target: Any = None,
    labels: Any = None,
    baseline: BaselineKind | Any = "zero",
    steps: int = 50,
    rule: Rule = "gauss_legendre",
    key: jax.Array | None = None,
    baseline_value: float | None = None,
    blur_sigma: float | None = None,
    memory_budget: int | None = None,
    show_progress: bool = False,
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
      steps: quadrature points, ``1 <= steps <= 10000`` (default 50, as Captum).
      rule: ``"gauss_legendre"`` (default, as Captum) or ``"riemann_left|right|middle|trapezoid"``.
      key: PRNG key, only for ``baseline="uniform"``.
      baseline_value, blur_sigma: options of the ``"constant"`` and ``"blur"`` baselines.
      memory_budget: bytes per compiled call (default :data:`explain.chunking.MEMORY_BUDGET`);
        samples and steps are chunked within it, so memory does not grow with ``N`` or ``steps``.
      show_progress: a progress bar for long calls.

    Returns:
      :class:`Attribution` with ``values`` shaped like ``x``, ``convergence_delta``
      ``Σ values - (F(x) - F(x'))`` per sample and ``steps`` per sample.

    Raises:
      ValueError / TypeError: before compilation, for a bad ``x``, target, baseline
      shape or kind, rule, ``steps`` out of range, or a missing key.

    Example:
      >>> a = integrated_gradients(m, x, target=y, steps=64)
      >>> a.values.shape == x.shape, float(abs(a.convergence_delta).max())

    References:
      Sundararajan, Taly, Yan. Axiomatic Attribution for Deep Networks. ICML 2017.
    """
    rule, steps = check_rule(rule, steps)
    check_baseline(as_model(model), x, baseline, key=key, value=baseline_value, blur_sigma=blur_sigma)
    p = prepare(model, x, target=target, labels=labels, allow_all=True, memory_budget=memory_budget)
    base = make_baseline(p.model, p.x, baseline, key=key, value=baseline_value, blur_sigma=blur_sigma)
    values, delta = path_integral(p, base, rule, steps, memory_budget=memory_budget, show_progress=show_progress)
    n_steps = jnp.full((p.n,), steps, jnp.int32)
    return Attribution(jax.device_put(values), "integrated_gradients", p.target.name, delta, n_steps)


def integrated_gradients_adaptive(
    model: Model | Any,
    x: Batch,
    *,
    target: Any = None,
    labels: Any = None,
    tolerance: float = 1e-3,
    start_steps: int = 16,
    max_steps: int = 4096,
    baseline: BaselineKind | Any = "zero",
    rule: Rule = "gauss_legendre",
    key: jax.Array | None = None,
    baseline_value: float | None = None,
    blur_sigma: float | None = None,
    memory_budget: int | None = None,
    show_progress: bool = False,
) -> Attribution:
    """Integrated Gradients that doubles its steps until every sample's completeness error is small.

    Starting at ``start_steps``, the samples whose ``|δ| > tolerance · (1 + |F(x) - F(x')|)``
    (a mixed absolute/relative test, as ``numpy.isclose``) are recomputed with
    twice the steps, until all pass or ``max_steps`` is reached. Each sample keeps
    the result of the first step count that passed (or of ``max_steps``).

    Args:
      tolerance: ``> 0``; see above.
      start_steps, max_steps: ``1 <= start_steps <= max_steps <= 10000``.
      memory_budget: the steps per call are fixed once from it (:func:`adaptive_chunk`) and
        sub-batches padded to a few bucket sizes, so doubling does not recompile.
      (others as :func:`integrated_gradients`; ``target="all"`` is not supported)

    Returns:
      :class:`Attribution` whose ``steps (N,)`` are the steps each sample used
      and ``convergence_delta (N,)`` its final error.
    """
    tolerance = check_float("tolerance", tolerance)
    if tolerance == 0:
        raise ValueError("expected tolerance > 0, got 0")
    rule, start_steps = check_rule(rule, start_steps, name="start_steps")
    _, max_steps = check_rule(rule, max_steps, name="max_steps")
    if max_steps < start_steps:
        raise ValueError(f"expected max_steps >= start_steps ({start_steps}), got {max_steps}")
    check_baseline(as_model(model), x, baseline, key=key, value=baseline_value, blur_sigma=blur_sigma)
    p = prepare(model, x, target=target, labels=labels, memory_budget=memory_budget)
    base = make_baseline(p.model, p.x, baseline, key=key, value=baseline_value, blur_sigma=blur_sigma)
    n = p.n
    rows = common.rows(p, memory_budget)
    scale = 1.0 + np.abs(np.asarray(common.delta(p, np.zeros(p.x.shape, p.x.dtype), base, memory_budget)))
    values, delta = np.zeros(p.x.shape, p.x.dtype), np.zeros((n,), p.x.dtype)
    used = np.zeros((n,), np.int32)
    todo = np.arange(n)
    steps = start_steps
    while todo.size:
        # Only unconverged samples are recomputed, padded (repeating the first) to a bucket size, and
        # every round uses the same (samples, steps) per call, so the compiled shapes are few: at most
        # 1 + log2(N / _MIN_BUCKET) buckets however many times the steps double.
        bucket = _bucket(todo.size, n)
        idx = np.concatenate([todo, np.full(bucket - todo.size, todo[0])])
        sub = p.rows(idx)
        batch = max(1, min(bucket, rows))
        per_call = adaptive_chunk(max(1, rows // batch), start_steps)
        alphas, weights = quadrature(rule, steps)
        nodes = np.stack([alphas, weights], axis=1).astype(p.x.dtype)
        fn = functools.partial(_path_chunk, p.model.apply, p.model.params)
        v = chunking.map_rows(
            fn, sub.x, sub.target, base[idx], batch=batch, draws=nodes, per_call=per_call, show_progress=show_progress
        )
        d = np.asarray(common.delta(sub, v, base[idx], memory_budget))
        v, d = v[: todo.size], d[: todo.size]
        values[todo], delta[todo], used[todo] = v, d, steps
        todo = todo[np.abs(d) > tolerance * scale[todo]]
        if steps >= max_steps:
            break
        steps = min(2 * steps, max_steps)
    return Attribution(
        jax.device_put(values),
        "integrated_gradients_adaptive",
        p.target.name,
        convergence_delta=jnp.asarray(delta),
        steps=jnp.asarray(used),
    )


_MIN_BUCKET = 8  # below this many samples a compile costs more than the padded rows


def _bucket(todo: int, n: int) -> int:
    """Padded sub-batch size for ``todo`` of ``n`` samples: the next power of two, at least ``min(n, 8)``."""
    return min(n, max(_MIN_BUCKET, 1 << (todo - 1).bit_length()))


def adaptive_chunk(cap: int, start_steps: int) -> int:
    """Steps per compiled call for every round of the adaptive loop, fixed once.

    At most ``start_steps`` (so the chunk is never clamped and its shape never
    changes) and at most ``cap`` (the memory bound). The largest divisor of
    ``start_steps`` within that is preferred, since it divides every doubled
    step count and no chunk is padded, unless it is under half the cap.
    """
    cap = max(1, min(cap, start_steps))
    divisor = max(d for d in range(1, cap + 1) if start_steps % d == 0)
    return divisor if 2 * divisor >= cap else cap
